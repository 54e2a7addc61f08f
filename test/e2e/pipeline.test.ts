/**
 * The whole product path in small, as real processes: record demonstrations in simulation, validate
 * them, compute norm stats, train a few steps, load the checkpoint, serve it, and roll it out; every
 * artefact on the way is checked. Minutes of real training are in the slow suite and the recipes.
 */
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PolicyClient } from '@vla-orchestrator/client';
import { describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { exampleObservation } from '../../src/client/examples.js';
import { loadRobot } from '../../src/config/load.js';
import { loadPolicyModel } from '../../src/model/policy.js';
import { serveCheckpointLocally } from '../../src/serving/local.js';
import { workspace } from './workspace.js';

describe('end to end: record → validate → stats → train → load → serve → roll out', () => {
  it('produces a valid dataset, norm stats, a loadable checkpoint, a server that answers and an eval report', async () => {
    const { ws, vla } = workspace('vla-e2e-', {
      name: 'e2e',
      lines: [
        'robot: single_arm_sim',
        'model: { preset: tiny, action_horizon: 8 }',
        'data: { dataset: datasets/pp, asset_id: pp, augment: null }',
        'train: { steps: 3, batch_size: 2, log_interval: 1, save_interval: 3, eval_task: pick_place, eval_interval: 3, eval_episodes: 1 }',
      ],
    });

    await vla(...'sim record --task pick_place --episodes 2 --out datasets/pp --seed 7'.split(' '));
    const validated = await vla('data', 'validate', 'datasets/pp');
    expect(validated.stdout).toMatch(/ok: every invariant holds/);

    await vla('data', 'stats', 'e2e');
    const stats = JSON.parse(readFileSync(path.join(ws, 'assets', 'pp', 'norm_stats.json'), 'utf8'));
    expect(stats.norm_stats.state.mean).toHaveLength(8);
    expect(stats.norm_stats.actions.std).toHaveLength(8);
    // The scene the demonstrations came from travels from the dataset into the stats (and checkpoints).
    const info = JSON.parse(readFileSync(path.join(ws, 'datasets', 'pp', 'meta', 'info.json'), 'utf8'));
    expect(info.simulation).toMatchObject({ task: 'pick_place', scene: 'robots/mjcf/single_arm_sim.xml' });
    expect(stats.computed_with.simulation).toEqual(info.simulation);

    const trained = await vla('train', 'e2e', '--exp-name', 'smoke');
    expect(trained.stdout + trained.stderr).toMatch(/finished at step 3/);
    const ckpt = path.join(ws, 'checkpoints', 'e2e', 'smoke', '3');
    for (const f of [
      'params.safetensors',
      'train_state.safetensors',
      'config.yaml',
      'assets/pp/norm_stats.json',
    ]) {
      expect(existsSync(path.join(ckpt, f)), f).toBe(true);
    }
    await setupBackend();
    // The periodic eval rolled the step-3 checkpoint out in simulation and logged its success rate.
    const metrics = readFileSync(path.join(ws, 'checkpoints', 'e2e', 'smoke', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(metrics.map((m) => m.step)).toEqual([1, 2, 3, 3]);
    expect(metrics[3]).toMatchObject({
      step: 3,
      eval_pc_success: expect.any(Number),
      eval_avg_max_reward: expect.any(Number),
    });
    const plot = path.join(ws, 'loss.svg');
    await vla('jobs', 'plot', '1', '--out', plot);
    expect(readFileSync(plot, 'utf8')).toMatch(/eval success/);

    const model = await loadPolicyModel(ckpt);
    expect(model.cameras).toEqual(['exterior_image_1_left', 'wrist_image_left']);
    model.dispose();

    const { server } = await serveCheckpointLocally(ckpt);
    try {
      const client = await PolicyClient.connect(server.url);
      const reply = await client.infer(
        exampleObservation(loadRobot('single_arm_sim'), { prompt: 'put the red cube in the bowl' }),
      );
      expect([reply.horizon, reply.actionDim]).toEqual([8, 8]);
      expect(reply.actions.every(Number.isFinite)).toBe(true);
      await client.close();
    } finally {
      await server.close();
    }

    const evalOut = path.join(ws, 'outputs', 'eval');
    await vla(
      'sim',
      'eval',
      '--task',
      'pick_place',
      '--checkpoint',
      ckpt,
      '--episodes',
      '1',
      '--videos',
      '1',
      '--out',
      evalOut,
    );
    const report = JSON.parse(readFileSync(path.join(evalOut, 'eval_info.json'), 'utf8'));
    expect(report.per_task[0].aggregated).toMatchObject({ task: 'pick_place', episodes: 1, failed: 0 });
    expect(existsSync(path.join(evalOut, 'videos', 'pick_place_episode_000.mp4'))).toBe(true);
    expect(report.warnings).toBeUndefined();

    // A checkpoint whose demonstrations came from another version of the scene is evaluated, with a warning.
    const stale = path.join(ws, 'stale');
    cpSync(ckpt, stale, { recursive: true });
    const staleStats = path.join(stale, 'assets', 'pp', 'norm_stats.json');
    const doc = JSON.parse(readFileSync(staleStats, 'utf8'));
    doc.computed_with.simulation.scene_sha256 = '0'.repeat(64);
    writeFileSync(staleStats, JSON.stringify(doc));
    const staleOut = path.join(ws, 'outputs', 'stale');
    const warned = await vla(
      'sim',
      'eval',
      '--task',
      'pick_place',
      '--checkpoint',
      stale,
      '--episodes',
      '1',
      '--videos',
      '0',
      '--out',
      staleOut,
    );
    expect(warned.stderr).toMatch(
      /warning: checkpoint .*stale: its demonstrations were recorded in robots\/mjcf\/single_arm_sim.xml with sha256 000000000000/,
    );
    const staleReport = JSON.parse(readFileSync(path.join(staleOut, 'eval_info.json'), 'utf8'));
    expect(staleReport.warnings).toHaveLength(1);
  }, 240_000);
});

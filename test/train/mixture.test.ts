/**
 * A mixture of two robots (simulated ALOHA and the single arm) trains in one model and serves either
 * robot from one checkpoint, each with its own norm stats, cameras and dims, its name in the prompt.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PolicyClient } from '@vla-orchestrator/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { exampleObservation } from '../../src/client/examples.js';
import { loadRobot } from '../../src/config/load.js';
import { robotConfig } from '../../src/config/mixture.js';
import { actionDim, stateDim } from '../../src/config/robot.js';
import { TrainConfig } from '../../src/config/schema.js';
import { openTrainingData } from '../../src/data/loader.js';
import { computeNormStats, computeRobotNormStats } from '../../src/data/normstats.js';
import { createDataset } from '../../src/data/writer.js';
import { serveCheckpointForRobots, simEvaluation } from '../../src/jobs/evaluation.js';
import { loadPolicyModel } from '../../src/model/policy.js';
import { serveCheckpointLocally } from '../../src/serving/local.js';
import { findNormStats, runTraining } from '../../src/train/run.js';
import { type AssetNormStats, writeNormStats } from '../../src/transforms/normalize.js';

const run = promisify(execFile);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-mixture-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/**
 * A small dataset of `robot`'s features (two episodes, 24×32 images) at its control rate (ALOHA 50 Hz, the
 * single arm 15 Hz: robots of one mixture may differ in fps), values offset by `bias`.
 */
async function robotDataset(robot: string, task: string, bias: number): Promise<string> {
  const spec = loadRobot(robot);
  const [sd, ad] = [stateDim(spec), actionDim(spec)];
  const dir = path.join(tmp, robot);
  const cameras = spec.cameras.map((c) => ({ name: c.name, height: 24, width: 32 }));
  const w = await createDataset(dir, {
    fps: spec.control_hz,
    robotType: robot,
    format: 'v2.1',
    video: false,
    features: {
      state: { names: Array.from({ length: sd }, (_, i) => `s${i}`) },
      action: { names: Array.from({ length: ad }, (_, i) => `a${i}`) },
      cameras,
    },
  });
  for (let e = 0; e < 2; e++) {
    for (let f = 0; f < 10; f++) {
      w.addFrame({
        state: Float32Array.from({ length: sd }, (_, k) => bias + Math.sin(e + f * 0.2 + k)),
        action: Float32Array.from({ length: ad }, (_, k) => bias + Math.cos(e + f * 0.2 + k)),
        images: Object.fromEntries(
          cameras.map((c, i) => [c.name, new Uint8Array(24 * 32 * 3).fill(40 * i + f)]),
        ),
        task,
      });
    }
    await w.saveEpisode();
  }
  await w.finalize();
  return dir;
}

describe('a mixture of robots', () => {
  let config: TrainConfig;
  beforeAll(async () => {
    await setupBackend({ backend: 'wasm' });
    const aloha = await robotDataset('aloha_sim', 'transfer the cube', 5);
    const arm = await robotDataset('single_arm_sim', 'pick up the cube', -3);
    config = TrainConfig.parse({
      name: 'mix_test',
      robot: 'aloha_sim',
      model: { preset: 'tiny', image_size: 32, action_horizon: 4, action_dim: 16, num_steps: 2 },
      data: {
        asset_id: 'aloha_mix',
        augment: null,
        mixture: [
          { dataset: aloha, weight: 1 },
          // The arm's chunks reach 2 of the model's 4 steps (as a 15 Hz arm beside a 50 Hz ALOHA).
          { dataset: arm, weight: 1, robot: 'single_arm_sim', delta_action_mask: null, action_horizon: 2 },
        ],
      },
      train: { steps: 2, batch_size: 8, log_interval: 1, save_interval: 2, keep_period: null },
    });
  }, 60_000);

  it("refuses chunk steps beyond the model's, or two for one robot, naming the entry", async () => {
    const entries = config.data.mixture!;
    const withSteps = (a: number | null, b: number | null) =>
      TrainConfig.safeParse({
        ...config,
        data: {
          ...config.data,
          mixture: [entries[0], { ...entries[1], action_horizon: a }, { ...entries[1], action_horizon: b }],
        },
      });
    expect(withSteps(2, 2).success).toBe(true);
    expect(JSON.stringify(withSteps(5, 2).error?.issues)).toMatch(
      /"path":\["data","mixture",1,"action_horizon"\],"message":"expected at most model.action_horizon \(4\) steps, got 5"/,
    );
    // Two chunk lengths for one robot: refused where its datasets are opened, as two fps would be.
    const arm = entries[1]!.dataset;
    const opts = {
      imageSize: 32,
      horizon: 4,
      normStats: new Map(),
      frameCache: { dir: path.join(tmp, 'cache') },
      cwd: tmp,
    };
    await expect(openTrainingData(withSteps(2, 3).data!, opts)).rejects.toThrow(
      `config mix_test: data.mixture[2].dataset (${arm}): action_horizon 3, expected 2 as data.mixture[1].dataset (${arm})`,
    );
  });

  it('keeps norm stats per robot, pads each robot into one layout, names the robot in the prompt', async () => {
    await expect(computeNormStats(config)).rejects.toThrow(
      'config mix_test: its mixture holds robots aloha_sim, single_arm_sim, whose norm stats are kept apart',
    );
    const per = await computeRobotNormStats(config, { cwd: tmp });
    expect(per.map((p) => [p.robot, p.assetId, path.relative(tmp, p.file)])).toEqual([
      ['aloha_sim', 'aloha_mix', 'assets/aloha_mix/norm_stats.json'],
      ['single_arm_sim', 'single_arm_sim', 'assets/single_arm_sim/norm_stats.json'],
    ]);
    expect(per.map((p) => p.result.stats.state.mean.length)).toEqual([14, 8]);
    // Each robot's action stats over its own chunk steps: ALOHA's 4, the arm's 2.
    expect(per.map((p) => p.result.actionRows / p.result.frames)).toEqual([4, 2]);
    // Each robot's own numbers: ALOHA's states sit near +5, the arm's near -3.
    expect(per[0]!.result.stats.state.mean[0]).toBeGreaterThan(4);
    expect(per[1]!.result.stats.state.mean[0]).toBeLessThan(-2);
    expect(robotConfig(config, 'single_arm_sim').data.mixture).toHaveLength(1);

    const stats: AssetNormStats = new Map(per.map((p) => [p.assetId, p.result.stats]));
    const opts = {
      imageSize: 32,
      horizon: 4,
      normStats: stats,
      frameCache: { dir: path.join(tmp, 'cache') },
    };
    await expect(openTrainingData(config, { ...opts, normStats: per[0]!.result.stats })).rejects.toThrow(
      'config mix_test: trains on robots aloha_sim, single_arm_sim: expected norm stats per asset, got one set',
    );
    const data = await openTrainingData(config, opts);
    expect(data.cameras).toEqual([
      'cam_high|exterior_image_1_left',
      'cam_left_wrist|wrist_image_left',
      'cam_right_wrist',
    ]);
    expect([data.stateDim, data.actionDim]).toEqual([14, 14]);
    // Row 20 is the arm's first frame: slots past its two cameras masked, state and actions zero-padded.
    const b = data.batchOfRows([0, 20]);
    expect(b.prompts).toEqual(['aloha_sim: transfer the cube', 'single_arm_sim: pick up the cube']);
    expect([...b.actionDims!]).toEqual([14, 8]);
    expect([...b.imageMask]).toEqual([1, 1, 1, 1, 1, 0]);
    expect([...b.state.subarray(14 + 8, 28)]).toEqual(new Array(6).fill(0));
    expect([...b.actions.subarray(4 * 14 + 8, 4 * 14 + 14)]).toEqual(new Array(6).fill(0));
    // ALOHA's chunk trains all 4 steps (its episodes run past them), the arm's its first 2.
    expect([...b.actionPad]).toEqual([0, 0, 0, 0, 0, 0, 1, 1]);
    // And the model hides the arm's tokens past its 2 steps (ModelInputs.horizons).
    expect([...b.horizons!]).toEqual([4, 2]);
    expect(data.batchOfRows([0, 1]).horizons).toBeUndefined();
    data.close();
  });

  it("reads one robot's norm stats from a base's assets_dir, computes the other's; one robot, one assets_dir", async () => {
    const base = path.join(tmp, 'base_assets');
    const armStats = (await computeRobotNormStats(config, { cwd: tmp }))[1]!.result.stats;
    writeNormStats(path.join(base, 'arm_base', 'norm_stats.json'), armStats);
    const entries = config.data.mixture!;
    const continued = TrainConfig.parse({
      ...config,
      robot: 'single_arm_sim',
      data: {
        ...config.data,
        asset_id: 'arm_base',
        assets_dir: base,
        mixture: [
          { ...entries[1]!, robot: null },
          { ...entries[0]!, robot: 'aloha_sim' },
        ],
      },
    });
    // The arm keeps its base's stats; only ALOHA's are computed, under its robot's name.
    const per = await computeRobotNormStats(continued, { cwd: tmp });
    expect(per.map((p) => [p.robot, path.relative(tmp, p.file)])).toEqual([
      ['aloha_sim', 'assets/aloha_sim/norm_stats.json'],
    ]);
    writeNormStats(per[0]!.file, per[0]!.result.stats);
    const found = findNormStats(continued, tmp) as AssetNormStats;
    expect([...found.keys()]).toEqual(['arm_base', 'aloha_sim']);
    expect(found.get('arm_base')).toEqual(armStats);
    // A base's stats that cannot describe the data (a joint it never moved) are refused before training.
    const frozen = {
      ...armStats,
      actions: { ...armStats.actions, std: armStats.actions.std.map((v, i) => (i === 2 ? 1e-4 : v)) },
    };
    writeNormStats(path.join(base, 'arm_base', 'norm_stats.json'), frozen);
    await expect(
      runTraining({
        config: continued,
        runDir: path.join(tmp, 'misfit'),
        resume: false,
        normStats: new Map([...found, ['arm_base', frozen]]),
      }),
    ).rejects.toThrow(
      new RegExp(
        `^config mix_test: the norm stats in ${base}/arm_base do not fit .*: actions\\[2\\]: the data's std [0-9.e-]+, mean -?[0-9.]+; the stats' std 0\\.000101, mean -?[0-9.]+ \\(\\d+× their spread\\)\\..*set the assets_dir of robot single_arm_sim's datasets to null and run .vla data stats mix_test.`,
      ),
    );
    writeNormStats(path.join(base, 'arm_base', 'norm_stats.json'), armStats);
    // Two entries of one robot reading two stats folders: refused where its datasets are opened.
    const split = TrainConfig.parse({
      ...continued,
      data: {
        ...continued.data,
        mixture: [...continued.data.mixture!, { ...entries[1]!, robot: null, assets_dir: null }],
      },
    });
    await expect(
      openTrainingData(split, {
        imageSize: 32,
        horizon: 4,
        normStats: found,
        frameCache: { dir: path.join(tmp, 'cache') },
        cwd: tmp,
      }),
    ).rejects.toThrow(
      `config mix_test: data.mixture[2].dataset (${entries[1]!.dataset}): assets_dir null, expected ${JSON.stringify(base)} as data.mixture[0].dataset (${entries[1]!.dataset})`,
    );
  });

  it('trains a few steps and serves either robot from the one checkpoint, with its own stats', async () => {
    const stats: AssetNormStats = new Map(
      (await computeRobotNormStats(config, { cwd: tmp })).map((p) => [p.assetId, p.result.stats]),
    );
    const runDir = path.join(tmp, 'run');
    const result = await runTraining({ config, runDir, resume: false, normStats: stats });
    expect(result.step).toBe(2);
    // The loss per dataset beside the batch's, each line's from the samples each drew.
    const lines = readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, number>);
    const perSource = lines.flatMap((l) => Object.keys(l).filter((k) => k.startsWith('loss/')));
    expect(new Set(perSource)).toEqual(new Set(['loss/aloha_sim', 'loss/single_arm_sim']));
    for (const l of lines) for (const k of perSource) if (k in l) expect(l[k]).toBeGreaterThan(0);
    const ckpt = path.join(runDir, '2');
    for (const id of ['aloha_mix', 'single_arm_sim'])
      expect(existsSync(path.join(ckpt, 'assets', id, 'norm_stats.json'))).toBe(true);
    expect(readFileSync(path.join(ckpt, 'config.yaml'), 'utf8')).toMatch(/robot: single_arm_sim/);

    for (const [robot, cams, ad] of [
      ['aloha_sim', 3, 14],
      ['single_arm_sim', 2, 8],
    ] as const) {
      const policy = await loadPolicyModel(ckpt, undefined, { sampler: 'tfjs' }, robot);
      expect([policy.config.robot, policy.cameras.length, policy.actionDim, policy.promptRobot]).toEqual([
        robot,
        cams,
        ad,
        robot,
      ]);
      expect(policy.normStats).toEqual(stats.get(robot === 'aloha_sim' ? 'aloha_mix' : robot));
      const actions = await policy.sampleActions({
        images: new Uint8Array(cams * 32 * 32 * 3).fill(90),
        imageMask: new Uint8Array(cams).fill(1),
        state: new Float32Array(policy.stateDim),
        prompts: ['do it'],
        batchSize: 1,
      });
      expect(actions.length).toBe(4 * ad);
      expect(actions.every(Number.isFinite)).toBe(true);
      policy.dispose();
    }
    await expect(loadPolicyModel(ckpt, undefined, {}, 'droid')).rejects.toThrow(
      `checkpoint ${ckpt} was trained for robots aloha_sim, single_arm_sim, not droid`,
    );

    // Over the wire: one server per robot from the one checkpoint, each answering its robot's chunks.
    // Each robot gets its own chunk steps: ALOHA the model's 4, the arm its 2.
    for (const [robot, ad, steps] of [
      ['aloha_sim', 14, 4],
      ['single_arm_sim', 8, 2],
    ] as const) {
      const { server } = await serveCheckpointLocally(ckpt, { robot, backend: 'wasm' });
      const client = await PolicyClient.connect(server.url);
      try {
        const reply = await client.infer(exampleObservation(loadRobot(robot), { prompt: 'do it' }));
        expect([reply.horizon, reply.actionDim]).toEqual([steps, ad]);
        expect(reply.actions.every(Number.isFinite)).toBe(true);
      } finally {
        await client.close();
        await server.close();
      }
    }
    await expect(serveCheckpointLocally(ckpt, { robot: 'droid' })).rejects.toThrow(
      `checkpoint ${ckpt} was trained for robots aloha_sim, single_arm_sim, not droid`,
    );

    // The periodic evaluation of such a base: each robot's task rolled out on its robot, each task's
    // figures and their mean.
    const evalOf = (eval_task: string[]) =>
      simEvaluation({ ...config, train: { ...config.train, eval_task, eval_episodes: 1 } });
    const { metrics, summary } = await evalOf(['aloha_transfer_cube', 'pick_place'])!(ckpt, 2);
    const success = ['aloha_transfer_cube', 'pick_place'].map((t) => metrics[`eval_pc_success/${t}`]!);
    for (const v of success) expect([0, 100]).toContain(v);
    expect(metrics.eval_pc_success).toBe((success[0]! + success[1]!) / 2);
    for (const t of ['aloha_transfer_cube', 'pick_place'])
      expect(metrics[`eval_avg_max_reward/${t}`]).toBeGreaterThanOrEqual(0);
    expect(summary).toMatch(
      /^\d+% success on aloha_transfer_cube, \d+% success on pick_place over 1 episodes each$/,
    );
    // The same from the command line: one checkpoint served for each robot its tasks run.
    const out = path.join(tmp, 'eval');
    await run(process.execPath, [
      path.resolve(import.meta.dirname, '../../bin/vla.js'),
      ...['sim', 'eval', '--checkpoint', ckpt, '--task', 'aloha_transfer_cube,pick_place'],
      ...['--episodes', '1', '--out', out],
    ]);
    const info = JSON.parse(readFileSync(path.join(out, 'eval_info.json'), 'utf8'));
    expect(info.per_task.map((t: { task: string }) => t.task)).toEqual(['aloha_transfer_cube', 'pick_place']);
    expect(info.per_task.map((t: { per_episode: unknown[] }) => t.per_episode.length)).toEqual([1, 1]);
    await expect(serveCheckpointForRobots(ckpt, [])).rejects.toThrow(
      `--checkpoint ${ckpt}: expected at least one simulated robot to serve it for, got none`,
    );
    expect(() => evalOf(['pick_place', 'stak'])).toThrow(
      'config mix_test: train.eval_task: expected simulated tasks (aloha_transfer_cube, aloha_insertion, pick_place, stack, push, aloha_lift), got "stak"',
    );
  }, 240_000);
});

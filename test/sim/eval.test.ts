import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pack } from '@vla-orchestrator/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import YAML from 'yaml';
import { configToYaml, loadRobot, resolveConfig } from '../../src/config/load.js';
import { openParquet, readColumns } from '../../src/data/parquet.js';
import { validateDataset } from '../../src/data/validate.js';
import { serveCheckpointForSim } from '../../src/jobs/evaluation.js';
import type { PolicySpec } from '../../src/serving/policy.js';
import { inlineRunner } from '../../src/serving/runner.js';
import { PolicyServer } from '../../src/serving/server.js';
import { runEval } from '../../src/sim/eval.js';
import { simProvenance } from '../../src/sim/provenance.js';
import { recordDataset } from '../../src/sim/record.js';
import { ALOHA_SIM } from '../../src/sim/robots.js';
import { getTask } from '../../src/sim/tasks/index.js';
import { pickPlacePlan } from '../../src/sim/tasks/pick_place.js';

async function serve(robot: string, spec: PolicySpec, horizon = 50): Promise<PolicyServer> {
  const runner = await inlineRunner(spec, { robot, horizon, metadata: {}, defaultPrompt: null });
  return PolicyServer.start(runner, loadRobot(robot), {
    host: '127.0.0.1',
    port: 0,
    apiKey: null,
    maxMessageBytes: 64 << 20,
    maxConnections: 8,
    maxBatch: 4,
    maxWaitMs: 0,
    defaultPrompt: null,
  });
}

describe('recording and evaluation', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vla-sim-eval-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('records expert demonstrations that pass validation, and a served replay of them succeeds in eval', async () => {
    const ds = path.join(dir, 'pick');
    const report = await recordDataset({ task: 'pick_place', episodes: 1, out: ds, format: 'v2.1', seed: 0 });
    expect(report.saved).toBe(1);
    expect(report.frames).toBe(getTask('pick_place').task.episodeSteps);
    const validation = await validateDataset(ds);
    expect(validation.problems).toEqual([]);
    expect([validation.episodes, validation.videos]).toEqual([1, 2]);
    const info = JSON.parse(readFileSync(path.join(ds, 'meta/info.json'), 'utf8'));
    expect(info.fps).toBe(15);
    expect(info.robot_type).toBe('single_arm_sim');
    expect(info.simulation).toEqual(simProvenance(getTask('pick_place').task));
    expect(Object.keys(info.features)).toEqual(
      expect.arrayContaining(['observation.state', 'action', 'observation.images.exterior_image_1_left']),
    );
    const tasks = readFileSync(path.join(ds, 'meta/tasks.jsonl'), 'utf8');
    expect(tasks).toMatch(/put the (red|green|blue) cube in the bowl/);

    // Replaying the recorded actions through the wire, with the same seeds, must reproduce the successes.
    const server = await serve('single_arm_sim', { kind: 'replay', dataset: ds, episode: null });
    try {
      const videoDir = path.join(dir, 'videos');
      const ev = await runEval({
        task: 'pick_place',
        url: server.url,
        episodes: 1,
        workers: 1,
        seed: 0,
        videos: 1,
        videoDir,
      });
      expect(ev.results.map((r) => r.error)).toEqual([undefined]);
      expect(ev.summary.pc_success).toBe(100);
      expect(ev.summary.avg_max_reward).toBe(3);
      expect(ev.videos).toEqual([path.join(videoDir, 'pick_place_episode_000.mp4')]);
      // The same recorded actions, asked for another cube: the replay still fetches the recorded one,
      // so success (which follows the prompt) is gone. A policy that reads its prompt would follow it.
      const swapped = await runEval({
        task: 'pick_place',
        url: server.url,
        episodes: 1,
        workers: 1,
        seed: 0,
        videos: 0,
        swapPrompts: true,
      });
      expect(swapped.summary.pc_success).toBe(0);
      // Under a simulated latency (200 ms: 3 steps at 15 Hz), every execution mode runs whole episodes,
      // and a mode's run repeats exactly (the delays are drawn per episode from its seed).
      const latent = (execution: 'sync' | 'async' | 'ensemble' | 'rtc') =>
        runEval({
          task: 'pick_place',
          url: server.url,
          episodes: 1,
          workers: 1,
          seed: 0,
          videos: 0,
          execution,
          latencyMs: [150, 250],
          maxSteps: 40,
        });
      for (const mode of ['sync', 'async', 'ensemble', 'rtc'] as const) {
        const a = await latent(mode);
        expect(
          a.results.map((r) => [r.error, r.steps]),
          mode,
        ).toEqual([[undefined, 40]]);
        if (mode === 'rtc') expect((await latent(mode)).results[0]!.sumReward).toBe(a.results[0]!.sumReward);
      }
    } finally {
      await server.close();
    }
  }, 120_000);

  it('skips and counts episodes the expert fails, then gives up past the limit', async () => {
    // An expert that always fetches the red cube succeeds only on seeds whose prompt names red.
    const ds = path.join(dir, 'red-only');
    const rec = await recordDataset({
      task: 'pick_place',
      episodes: 1,
      out: ds,
      format: 'v3.0',
      seed: 0,
      width: 32,
      height: 32,
      plan: pickPlacePlan('red'),
    });
    expect(rec.saved).toBe(1);
    expect(rec.failed).toBeGreaterThan(0);
    expect(rec.seeds).toHaveLength(1);
    const names = JSON.parse(readFileSync(path.join(ds, 'meta/info.json'), 'utf8')).total_episodes;
    expect(names).toBe(1);
    await expect(
      recordDataset({
        task: 'pick_place',
        episodes: 1,
        out: path.join(dir, 'never'),
        format: 'v2.1',
        seed: 0,
        width: 32,
        height: 32,
        plan: () => [[]],
        maxFailures: 0,
      }),
    ).rejects.toThrow('pick_place: the expert failed 1 episode (saved 0); giving up');
  }, 60_000);

  it('records DART demonstrations: perturbed states, the clean expert actions as labels, reproducible per seed', async () => {
    const record = async (name: string, noise?: { std: number; tau: number }) => {
      const out = path.join(dir, name);
      const rec = await recordDataset({
        task: 'pick_place',
        episodes: 1,
        out,
        format: 'v2.1',
        seed: 0,
        width: 32,
        height: 32,
        actionNoise: noise,
      });
      expect(rec.seeds).toEqual([0]);
      const pq = await openParquet(path.join(out, 'data/chunk-000/episode_000000.parquet'));
      const cols = await readColumns(pq, ['observation.state', 'action']);
      const info = JSON.parse(readFileSync(path.join(out, 'meta/info.json'), 'utf8'));
      const rows = (k: string) => (cols[k] as ArrayLike<number>[]).map((r) => Array.from(r));
      return { state: rows('observation.state'), action: rows('action'), info };
    };
    const clean = await record('clean');
    const noisy = await record('noisy', { std: 0.02, tau: 10 });
    const again = await record('noisy-again', { std: 0.02, tau: 10 });
    // The labels are the expert's own actions (its plan is fixed at reset), the states are not its states.
    expect(noisy.action).toEqual(clean.action);
    const drift = noisy.state.map((row, t) =>
      Math.max(...row.slice(0, 7).map((v, j) => Math.abs(v - clean.state[t]![j]!))),
    );
    expect(Math.max(...drift)).toBeGreaterThan(0.01);
    expect(Math.max(...drift)).toBeLessThan(0.2);
    // The same seed draws the same noise.
    expect(again.state).toEqual(noisy.state);
    expect(noisy.info.recording).toEqual({ seed: 0, action_noise: { std: 0.02, tau: 10 } });
    expect(clean.info.recording).toEqual({ seed: 0 });
    await expect(
      recordDataset({
        task: 'pick_place',
        episodes: 1,
        out: path.join(dir, 'bad-noise'),
        format: 'v2.1',
        seed: 0,
        actionNoise: { std: 0.02, tau: 0.5 },
      }),
    ).rejects.toThrow('action noise: expected std >= 0 and tau >= 1 step, got std 0.02 and tau 0.5');
  }, 90_000);

  it('runs episodes in worker threads; zero actions never succeed', async () => {
    const server = await serve('single_arm_sim', { kind: 'zeros' });
    try {
      const opts = { task: 'pick_place', url: server.url, episodes: 2, workers: 2, seed: 5, videos: 0 };
      const ev = await runEval(opts);
      expect(ev.results.map((r) => [r.episode, r.seed, r.steps, r.error])).toEqual([
        [0, 5, 100, undefined],
        [1, 6, 100, undefined],
      ]);
      expect(ev.summary.pc_success).toBe(0);
      // A longer episode than the task's, in the worker thread too.
      const longer = await runEval({ ...opts, maxSteps: 130 });
      expect(longer.results.map((r) => r.steps)).toEqual([130, 130]);
    } finally {
      await server.close();
    }
  }, 60_000);

  it('reports which episode failed and why when the server sends actions of the wrong dimension', async () => {
    // A robot that looks like aloha_sim on the way in but answers with 7-dim actions.
    const spec = YAML.parse(
      readFileSync(path.resolve(import.meta.dirname, '../../robots/aloha_sim.yaml'), 'utf8'),
    );
    spec.name = 'aloha_sim_7';
    spec.action.names = spec.action.names.slice(0, 7);
    const file = path.join(dir, 'aloha_sim_7.yaml');
    writeFileSync(file, YAML.stringify(spec));
    const server = await serve(file, { kind: 'zeros' }, 10);
    try {
      const ev = await runEval({
        task: 'aloha_transfer_cube',
        url: server.url,
        episodes: 1,
        workers: 1,
        seed: 0,
        videos: 0,
      });
      expect(ev.summary.failed).toBe(1);
      expect(ev.results[0]!.error).toMatch(/server sent actions of dimension 7 .*robot aloha_sim expects 14/);
      expect(ev.summary.pc_success).toBe(0);
    } finally {
      await server.close();
    }
  }, 60_000);

  it('fails an episode, not the eval, when the server never answers', async () => {
    // A server that sends its metadata frame and then stays silent.
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    wss.on('connection', (ws) => ws.send(pack({})));
    await new Promise((r) => wss.once('listening', r));
    try {
      const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
      const ev = await runEval({
        task: 'pick_place',
        url,
        episodes: 1,
        workers: 1,
        seed: 0,
        videos: 0,
        inferTimeoutMs: 300,
      });
      expect(ev.results[0]!.error).toBe('no reply from the server within 0.3 s');
      expect(ev.summary.failed).toBe(1);
    } finally {
      for (const c of wss.clients) c.terminate();
      await new Promise((r) => wss.close(r));
    }
  });

  it('refuses a checkpoint trained for another robot, naming both', async () => {
    const ckpt = path.join(dir, 'ckpt');
    const { config } = resolveConfig('pi0_droid');
    mkdirSync(ckpt, { recursive: true });
    writeFileSync(path.join(ckpt, 'config.yaml'), configToYaml(config));
    await expect(serveCheckpointForSim(ckpt, ALOHA_SIM)).rejects.toThrow(
      /trained for robot droid \(8-dim actions\), but this task runs aloha_sim \(14-dim actions/,
    );
  });

  it('names an unknown task and the ones that exist', () => {
    expect(() => getTask('fold_laundry')).toThrow(
      'unknown task "fold_laundry": expected one of aloha_transfer_cube, aloha_insertion, pick_place',
    );
  });
});

describe.runIf(process.env.VLA_SLOW)('ALOHA replay eval (slow)', () => {
  it('a served replay of recorded transfer-cube demonstrations succeeds on the same seeds, in v3.0 too', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vla-sim-aloha-'));
    try {
      const ds = path.join(dir, 'transfer');
      const rec = await recordDataset({
        task: 'aloha_transfer_cube',
        episodes: 2,
        out: ds,
        format: 'v3.0',
        seed: 40,
      });
      expect(rec.seeds).toEqual([40, 41]);
      expect((await validateDataset(ds)).problems).toEqual([]);
      const server = await serve('aloha_sim', { kind: 'replay', dataset: ds, episode: null });
      try {
        const ev = await runEval({
          task: 'aloha_transfer_cube',
          url: server.url,
          episodes: 2,
          workers: 1,
          seed: 40,
          videos: 0,
        });
        expect(ev.summary.pc_success).toBe(100);
        expect(ev.summary.avg_max_reward).toBe(4);
      } finally {
        await server.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});

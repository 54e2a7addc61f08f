/**
 * What the dashboard's tests look at, made with the project's own code in a temporary workspace: jobs
 * launched and run through the job layer (finished, failed, one whose run folder was removed, one
 * running in its own process), a dataset recorded with the dataset writer, an evaluation folder as
 * `vla sim eval` leaves it (eval_info.json and an mp4 from the video writer), and the dashboard itself.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type DashboardOptions, DashboardServer } from '../../src/dashboard/server.js';
import { VideoEncoder } from '../../src/data/video.js';
import { createDataset } from '../../src/data/writer.js';
import { prepareLaunch, registerLaunch } from '../../src/jobs/launch.js';
import { metricsPath } from '../../src/jobs/metrics.js';
import { type Job, JobRegistry } from '../../src/jobs/registry.js';
import { runJob } from '../../src/jobs/run-job.js';

export const TOKEN = 'test-token-0123456789abcdef';
const LIVE_JOB = path.resolve(import.meta.dirname, 'live-job.ts');

export interface Workspace {
  dir: string;
  registry: JobRegistry;
  children: ChildProcess[];
  cleanup(): Promise<void>;
}

export function newWorkspace(tag: string): Workspace {
  const dir = mkdtempSync(path.join(os.tmpdir(), `vla-dashboard-${tag}-`));
  const registry = JobRegistry.open(dir);
  const ws: Workspace = {
    dir,
    registry,
    children: [],
    async cleanup() {
      for (const c of ws.children) {
        if (c.exitCode === null && c.signalCode === null) {
          c.kill('SIGKILL');
          await new Promise((r) => c.once('exit', r));
        }
      }
      registry.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return ws;
}

/** A job queued as `vla train pi0_aloha --exp-name EXP --set …` queues it. */
export function launch(ws: Workspace, exp: string, sets: string[]): Job {
  return registerLaunch(
    ws.registry,
    prepareLaunch(
      ws.registry,
      { config: 'pi0_aloha', overrides: sets, expName: exp, resume: false, overwrite: false },
      ws.dir,
    ),
  );
}

const metricsRow = (step: number, steps: number) => ({
  step,
  loss: 1.5 * Math.exp((-3 * step) / steps) + 0.05 + 0.02 * Math.sin(step),
  grad_norm: 2 * Math.exp(-step / steps) + 0.3,
  lr: step < steps / 10 ? (1e-4 * step) / (steps / 10) : 1e-4 * (1 - step / steps / 2),
  samples_per_s: 30 + (step % 7),
});

/**
 * A job run to its end in this process through the job layer, its trainer logging `steps` metrics lines
 * (and, every `evalEvery` steps, the periodic evaluation's); `fail` makes the trainer throw half-way.
 */
export async function runFinishedJob(
  ws: Workspace,
  exp: string,
  opts: { steps: number; dataset: string; evalEvery?: number; fail?: string },
): Promise<Job> {
  const sets = [`data.dataset=${opts.dataset}`, `train.steps=${opts.steps}`];
  if (opts.evalEvery) sets.push('train.eval_task=pick_place', `train.eval_interval=${opts.evalEvery}`);
  const job = launch(ws, exp, sets);
  await runJob(ws.registry, job.id, {
    train: async ({ runDir, onProgress }) => {
      mkdirSync(runDir, { recursive: true });
      const lines: string[] = [];
      const last = opts.fail ? Math.floor(opts.steps / 2) : opts.steps;
      for (let step = 1; step <= last; step++) {
        const row = metricsRow(step, opts.steps);
        lines.push(JSON.stringify({ ...row, time: new Date().toISOString() }));
        if (opts.evalEvery && step % opts.evalEvery === 0) {
          const success = Math.min(100, (100 * step) / opts.steps + 10 * Math.sin(step));
          lines.push(
            JSON.stringify({
              step,
              eval_pc_success: Math.max(0, success),
              eval_avg_sum_reward: success / 50,
            }),
          );
        }
        onProgress?.({
          step,
          totalSteps: opts.steps,
          loss: row.loss,
          gradNorm: row.grad_norm,
          lr: row.lr,
          samplesPerSec: row.samples_per_s,
        });
      }
      appendFileSync(metricsPath(runDir), `${lines.join('\n')}\n`);
      if (opts.fail) throw new Error(opts.fail);
      return {
        step: opts.steps,
        stopped: false,
        checkpoint: null,
        loss: metricsRow(opts.steps, opts.steps).loss,
      };
    },
  }).catch((e: Error) => {
    if (!opts.fail) throw e;
  });
  const end = ws.registry.require(job.id);
  // The lines a job process writes to its log around the trainer's.
  mkdirSync(path.dirname(end.logPath), { recursive: true });
  appendFileSync(
    end.logPath,
    `job ${end.id}: starting pi0_aloha/${exp}\n${opts.fail ? `job ${end.id} failed: ${opts.fail}` : `job ${end.id} finished at step ${end.step}`}\n`,
  );
  return end;
}

/** A job running in its own process (live-job.ts), logging a step every `intervalMs`; resolves once it runs. */
export async function startLiveJob(
  ws: Workspace,
  exp: string,
  opts: { steps: number; dataset: string; intervalMs: number },
): Promise<Job> {
  const job = launch(ws, exp, [`data.dataset=${opts.dataset}`, `train.steps=${opts.steps}`]);
  mkdirSync(path.dirname(job.logPath), { recursive: true });
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', LIVE_JOB, ws.dir, String(job.id), String(opts.intervalMs)],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => appendFileSync(job.logPath, d));
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  ws.children.push(child);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const now = ws.registry.require(job.id);
    if (now.status === 'running' && now.step > 0) return now;
    if (child.exitCode !== null) throw new Error(`live job exited with ${child.exitCode}: ${out}`);
    if (Date.now() > deadline) throw new Error(`live job did not start within 30 s: ${out}`);
    await sleep(100);
  }
}

/**
 * A camera's view of a cube crossing a table: the light rises with the frame (so a scrubbed frame can
 * be told apart by its brightness) and the cube moves with it.
 */
export function picture(h: number, w: number, frame: number, episode: number): Uint8Array {
  const img = new Uint8Array(h * w * 3);
  const level = 20 + frame * 6;
  const size = Math.round(h / 5);
  const cx = Math.round((w - size) * (0.1 + 0.8 * ((frame % 30) / 29)));
  const cy = Math.round(h * 0.55 - size / 2 - (episode % 2) * size);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = (y * w + x) * 3;
      const table = y > h * 0.45;
      const cube = x >= cx && x < cx + size && y >= cy && y < cy + size;
      img[p] = cube ? 220 : Math.min(255, level + (table ? 60 : 20) + x / 4);
      img[p + 1] = cube ? 40 : Math.min(255, level + (table ? 40 : 30) + y / 4);
      img[p + 2] = cube ? 40 : Math.min(255, level + (table ? 20 : 60));
    }
  }
  return img;
}

export const DATASET_CAMERA = { name: 'cam_high', height: 96, width: 128 };

/** A LeRobot v2.1 dataset written by the project's writer: `episodes` episodes of `length` frames, h264 video. */
export async function recordDataset(dir: string, episodes: number, length: number): Promise<void> {
  const w = await createDataset(dir, {
    fps: 10,
    robotType: 'test_bot',
    format: 'v2.1',
    features: { state: { names: ['x', 'y', 'z'] }, action: { names: ['u', 'v'] }, cameras: [DATASET_CAMERA] },
  });
  for (let e = 0; e < episodes; e++) {
    for (let f = 0; f < length; f++) {
      w.addFrame({
        state: Float32Array.from([Math.sin(f / 4 + e), Math.cos(f / 5), f / length]),
        action: Float32Array.from([Math.sin(f / 3), Math.cos(f / 3 + e)]),
        images: { [DATASET_CAMERA.name]: picture(DATASET_CAMERA.height, DATASET_CAMERA.width, f, e) },
        task: e % 2 === 0 ? 'pick up the cube' : 'place the cube',
      });
    }
    await w.saveEpisode();
  }
  await w.finalize();
}

/** A folder that claims to be a dataset and is not: its info.json is `{}`. */
export function brokenDataset(dir: string): void {
  mkdirSync(path.join(dir, 'meta'), { recursive: true });
  writeFileSync(path.join(dir, 'meta', 'info.json'), '{}');
}

/**
 * An evaluation folder as `vla sim eval --out DIR --videos 1` writes it: eval_info.json with LeRobot's
 * names and one rollout video of `frames` frames at 10 fps.
 */
export async function writeEval(dir: string, frames: number): Promise<void> {
  const videos = path.join(dir, 'videos');
  mkdirSync(videos, { recursive: true });
  const file = path.join(videos, 'pick_place_episode_000.mp4');
  const enc = new VideoEncoder(file, { width: 128, height: 96, fps: 10 });
  for (let f = 0; f < frames; f++) enc.write(picture(96, 128, f % 30, 0));
  await enc.close();
  const episodes = [
    {
      episode_ix: 0,
      seed: 7,
      prompt: 'pick up the red cube',
      sum_reward: 41.5,
      max_reward: 1,
      success: true,
      success_step: 61,
      steps: 100,
    },
    {
      episode_ix: 1,
      seed: 8,
      prompt: 'pick up the blue cube',
      sum_reward: 12.25,
      max_reward: 0.5,
      success: false,
      success_step: null,
      steps: 100,
    },
  ];
  const aggregated = {
    task: 'pick_place',
    episodes: 2,
    failed: 0,
    pc_success: 50,
    avg_sum_reward: 26.875,
    avg_max_reward: 0.75,
    eval_s: 3.2,
    eval_ep_s: 1.6,
  };
  const info = {
    per_task: [
      {
        task: 'pick_place',
        aggregated,
        per_episode: episodes,
        videos: [path.join('outputs', 'sim_eval', 'videos', 'pick_place_episode_000.mp4')],
      },
    ],
    overall: { episodes: 2, pc_success: 50, avg_sum_reward: 26.875, avg_max_reward: 0.75 },
    checkpoint: 'checkpoints/pi0_aloha/base/400',
    noise_scale: 0,
  };
  writeFileSync(path.join(dir, 'eval_info.json'), `${JSON.stringify(info, null, 2)}\n`);
}

export function startDashboard(
  ws: Workspace,
  opts: Partial<DashboardOptions> = {},
): Promise<DashboardServer> {
  return DashboardServer.start({
    host: '127.0.0.1',
    port: 0,
    token: TOKEN,
    registry: ws.registry,
    data: [],
    evals: [path.join(ws.dir, 'outputs')],
    servers: [],
    liveIntervalMs: 250,
    serverIntervalMs: 500,
    ...opts,
  });
}

/**
 * `vla sim eval`: episodes of a task against a policy server, as a robot client, spread over worker
 * threads (each with its own MuJoCo, renderer and connection). Episode i uses seed `seed + i`, so a
 * run is repeatable; an episode that fails (server error, bad action) is reported with its reason and
 * the others go on.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { type ExecutionMode, executionOptions, ServerError } from '@vla-orchestrator/client';
import { UserError } from '../config/errors.js';
import { loadRobot } from '../config/load.js';
import { VideoEncoder } from '../data/video.js';
import { startWorker } from '../threads.js';
import { SimEnv } from './env.js';
import { PolicyClientAgent, specCameraNames } from './policy-agent.js';
import { Rng } from './rng.js';
import { type EpisodeResult, runEpisode, summarize, type TaskSummary } from './rollout.js';
import { getTask } from './tasks/index.js';

export interface EvalOptions {
  task: string;
  url: string;
  apiKey?: string | null;
  episodes: number;
  workers: number;
  /** Seed of episode 0. */
  seed: number;
  /** Where MP4s of the first `videos` episodes go (none when absent). */
  videoDir?: string;
  videos: number;
  /** Ask for a new chunk after this many steps (default: the whole chunk). */
  replanEvery?: number;
  /** ACT's temporal ensembling with this coefficient (asks every step unless `replanEvery` says otherwise). */
  temporalEnsemble?: number;
  /**
   * How the robot meets the latency (client broker's execution modes): `sync` waits for each chunk,
   * holding still; `async` switches on arrival; `ensemble` averages chunks; `rtc` sends the committed
   * prefix. Default: `ensemble` with `temporalEnsemble`, else `sync`.
   */
  execution?: ExecutionMode;
  /**
   * Simulated latency, ms [low, high]: a chunk asked at step t is used from step t + d on, d = ceil(ms /
   * control period), ms drawn per request between low and high, seeded by the episode.
   */
  latencyMs?: [number, number];
  /** An episode fails when the server takes longer than this to answer (default 120 s). */
  inferTimeoutMs?: number;
  /** How the robot reads actions (the single arm also takes joint velocities, as openpi's DROID policy emits). */
  actionMode?: 'joint_position' | 'joint_velocity';
  /** Ask for another cube than the task drew (language-conditioned tasks): success follows the asked one. */
  swapPrompts?: boolean;
  /** Episode length in steps (default: the task's). */
  maxSteps?: number;
}

export interface EvalReport {
  summary: TaskSummary;
  results: EpisodeResult[];
  videos: string[];
}

/** Runs the given episodes on this thread; `onResult` sees each as it finishes. */
export async function evalEpisodes(
  opts: EvalOptions,
  episodes: number[],
  onResult: (r: EpisodeResult, video: string | null) => void,
): Promise<void> {
  const { task } = getTask(opts.task);
  const spec = loadRobot(task.robot.name);
  const cameras = specCameraNames(spec).filter((c) => c in task.robot.cameras);
  const videoCam = cameras[0]!;
  // No cameras in every observation: the agent draws them on the steps it asks the server.
  const env = await SimEnv.create(task, { actionMode: opts.actionMode, swapPrompts: opts.swapPrompts });
  // The latency's draws: a stream per episode (reset below), so a run's delays repeat exactly.
  let latencyRng = new Rng(opts.seed);
  const latency = opts.latencyMs;
  const periodMs = 1000 / task.robot.controlHz;
  const delay = latency && (() => Math.ceil(latencyRng.uniform(latency[0], latency[1]) / periodMs - 1e-9));
  const mode = opts.execution ?? (opts.temporalEnsemble !== undefined ? 'ensemble' : 'sync');
  const connect = () =>
    PolicyClientAgent.connect(opts.url, task.robot.name, {
      apiKey: opts.apiKey,
      broker: executionOptions(mode, {
        replanEvery: opts.replanEvery,
        temporalEnsemble: opts.temporalEnsemble,
        ...(delay && { delay }),
      }),
      inferTimeoutMs: opts.inferTimeoutMs,
    });
  let agent: PolicyClientAgent | null = null;
  try {
    for (const episode of episodes) {
      const seed = opts.seed + episode;
      let video: VideoEncoder | null = null;
      if (opts.videoDir && episode < opts.videos) {
        mkdirSync(opts.videoDir, { recursive: true });
        video = new VideoEncoder(
          path.join(opts.videoDir, `${task.name}_episode_${String(episode).padStart(3, '0')}.mp4`),
          { width: env.width, height: env.height, fps: task.robot.controlHz },
        );
      }
      let result: EpisodeResult;
      try {
        agent ??= await connect();
        latencyRng = new Rng(seed ^ 0x5eed);
        result = await runEpisode(env, agent, episode, seed, {
          maxSteps: opts.maxSteps,
          onStep: async (_obs, _action, _reward, e) => {
            video?.write(e.render(videoCam));
            await video?.drain();
          },
        });
      } catch (e) {
        result = {
          episode,
          seed,
          prompt: env.prompt,
          success: false,
          sumReward: 0,
          maxReward: 0,
          steps: env.stepCount,
          successStep: null,
          error: (e as Error).message,
        };
        // The server closes a connection after an error: the next episode starts a fresh one.
        await agent?.close();
        agent = null;
      }
      let file: string | null = null;
      if (video && video.frames === 0) video.abort();
      else if (video) {
        await video.close();
        file = video.file;
      }
      onResult(result, file);
    }
  } finally {
    await agent?.close();
    env.free();
  }
}

type FromWorker =
  | { type: 'result'; result: EpisodeResult; video: string | null }
  | { type: 'done' }
  | { type: 'fatal'; message: string };

export async function runEval(
  opts: EvalOptions,
  onResult: (r: EpisodeResult) => void = () => {},
): Promise<EvalReport> {
  const { task } = getTask(opts.task);
  const mode = opts.actionMode ?? 'joint_position';
  if (!task.robot.actionModes.includes(mode)) {
    throw new UserError(
      `--action-mode ${mode}: ${task.robot.name} takes ${task.robot.actionModes.join(', ')}`,
    );
  }
  // Fail fast, once, when the server is unreachable or refuses us, rather than once per episode.
  let probe: PolicyClientAgent;
  try {
    probe = await PolicyClientAgent.connect(opts.url, task.robot.name, { apiKey: opts.apiKey });
  } catch (e) {
    if (e instanceof UserError || e instanceof ServerError) throw e;
    throw new UserError(
      `${(e as Error).message} (is a policy server running there? start one with vla serve)`,
    );
  }
  await probe.close();
  const results: EpisodeResult[] = [];
  const videos: string[] = [];
  const collect = (r: EpisodeResult, video: string | null) => {
    results.push(r);
    if (video) videos.push(video);
    onResult(r);
  };
  const workers = Math.max(1, Math.min(opts.workers, opts.episodes));
  // Episodes dealt round-robin, so the first few (the ones with videos) run at once.
  const shares = Array.from({ length: workers }, (_, w) =>
    Array.from({ length: opts.episodes }, (_, i) => i).filter((i) => i % workers === w),
  );
  // This thread runs the first share itself: one worker fewer to start (each costs a second or two of
  // module loading), and it would otherwise sit idle waiting for results.
  await Promise.all([
    evalEpisodes(opts, shares[0]!, collect),
    ...shares.slice(1).map((episodes) => runWorker(opts, episodes, collect)),
  ]);
  results.sort((a, b) => a.episode - b.episode);
  videos.sort();
  return { summary: summarize(opts.task, results), results, videos };
}

function runWorker(
  opts: EvalOptions,
  episodes: number[],
  collect: (r: EpisodeResult, video: string | null) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker: Worker = startWorker(new URL('./eval-worker.ts', import.meta.url), {
      workerData: { opts, episodes },
    });
    let finished = false;
    worker.on('message', (msg: FromWorker) => {
      if (msg.type === 'result') collect(msg.result, msg.video);
      else if (msg.type === 'done') {
        finished = true;
        resolve();
      } else {
        finished = true;
        reject(new Error(msg.message));
      }
    });
    worker.on('error', (e) => {
      finished = true;
      reject(e);
    });
    worker.on('exit', (code) => {
      if (!finished) reject(new Error(`eval worker exited with code ${code} before finishing`));
    });
  });
}

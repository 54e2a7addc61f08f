import path from 'node:path';
import { UserError } from '../config/errors.js';
import { assetIdFor, chunkSteps, robotConfig, robotsOf } from '../config/mixture.js';
import type { TrainConfig } from '../config/schema.js';
import { type NormStats, type NormStatsEntry, normStatsProvenance } from '../transforms/normalize.js';
import { actionChunk, episodeRows, openPipelines, type Pipeline } from './pipeline.js';
import { quantileSorted } from './stats.js';

/** Where `vla data stats` writes and training reads: `assets/<asset_id>/norm_stats.json` (asset_id defaults to the robot). */
export function normStatsFile(config: TrainConfig, cwd = process.cwd()): string {
  return path.join(cwd, 'assets', assetIdFor(config, config.robot), 'norm_stats.json');
}

/**
 * Each robot's norm stats of the config (one robot but for a mixture of robots), with its asset and file;
 * a robot that reads its stats from an `assets_dir` (its base's) is left out.
 */
export async function computeRobotNormStats(
  config: TrainConfig,
  opts: {
    maxFrames?: number;
    cwd?: string;
    onProgress?: (robot: string, done: number, total: number) => void;
  } = {},
): Promise<Array<{ robot: string; assetId: string; file: string; result: NormStatsResult }>> {
  const out = [];
  for (const robot of robotsOf(config)) {
    const rc = robotConfig(config, robot);
    if (rc.data.assets_dir) continue;
    const result = await computeNormStats(rc, {
      maxFrames: opts.maxFrames,
      cwd: opts.cwd,
      onProgress: (done, total) => opts.onProgress?.(robot, done, total),
    });
    out.push({ robot, assetId: assetIdFor(rc, robot), file: normStatsFile(rc, opts.cwd), result });
  }
  return out;
}

/** mean, std (population), q01 and q99 per dim of `rows` packed `dim` wide. */
export function entryStats(rows: Float32Array, dim: number): NormStatsEntry {
  const n = rows.length / dim;
  const mean: number[] = [];
  const std: number[] = [];
  const q01: number[] = [];
  const q99: number[] = [];
  const col = new Float32Array(n);
  for (let d = 0; d < dim; d++) {
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const v = rows[i * dim + d]!;
      col[i] = v;
      sum += v;
    }
    const m = sum / n;
    let sq = 0;
    for (let i = 0; i < n; i++) sq += (col[i]! - m) ** 2;
    col.sort();
    mean.push(m);
    std.push(Math.sqrt(sq / n));
    q01.push(quantileSorted(col, 0.01));
    q99.push(quantileSorted(col, 0.99));
  }
  return { mean, std, q01, q99 };
}

export interface NormStatsResult {
  stats: NormStats;
  /** Observations used (frames), and action rows (frames × horizon). */
  frames: number;
  actionRows: number;
}

/**
 * openpi's compute_norm_stats: over (a subsample of) the dataset's frames, the state at t and the
 * action chunk t..t+H-1 after the config's transforms (adapter, delta actions), every chunk row counted
 * (H: the robot's `data.action_horizon`, else the model's).
 * A mixture's datasets are counted together (one robot, one set of stats), each frame once, a
 * subsample taken from each in proportion to its frames.
 */
export async function computeNormStats(
  config: TrainConfig,
  opts: { maxFrames?: number; cwd?: string; onProgress?: (done: number, total: number) => void } = {},
): Promise<NormStatsResult> {
  const horizon = chunkSteps(config);
  const { pipelines, state, actions, n, stateDim, actionDim } = await gatherChunks(config, {
    ...opts,
    horizon,
  });
  // The simulated scene the frames came from, so a checkpoint can tell when it has changed since: kept
  // where every dataset names the same one.
  const scenes = new Set(pipelines.map((p) => JSON.stringify(p.dataset.info.simulation ?? null)));
  const simulation = scenes.size === 1 ? pipelines[0]!.dataset.info.simulation : undefined;
  return {
    stats: {
      state: entryStats(state, stateDim),
      actions: entryStats(actions, actionDim),
      computedWith: { ...normStatsProvenance(config), ...(simulation && { simulation }) },
    },
    frames: n,
    actionRows: n * horizon,
  };
}

/** The states and action chunks (after the config's transforms, before normalisation) of evenly spaced frames. */
export interface GatheredChunks {
  pipelines: Pipeline[];
  /** [n, stateDim] */
  state: Float32Array;
  /** [n, horizon, actionDim] */
  actions: Float32Array;
  n: number;
  stateDim: number;
  actionDim: number;
}

/**
 * The state at t and the action chunk t..t+H-1 of (a subsample of) the config's frames, after its
 * transforms (adapter, delta actions): evenly spaced across every dataset, so a subsample still covers
 * every episode, each dataset in proportion to its frames. One robot (a mixture of robots is gathered per robot).
 */
export async function gatherChunks(
  config: TrainConfig,
  opts: {
    maxFrames?: number;
    cwd?: string;
    onProgress?: (done: number, total: number) => void;
    /** Steps per chunk (default: the model's). */
    horizon?: number;
  } = {},
): Promise<GatheredChunks> {
  const robots = robotsOf(config);
  if (robots.length > 1) {
    throw new UserError(
      `config ${config.name}: its mixture holds robots ${robots.join(', ')}, whose norm stats are kept apart: compute them per robot (computeRobotNormStats)`,
    );
  }
  const pipelines = (await openPipelines(config, opts.cwd)).map((s) => s.pipeline);
  const horizon = opts.horizon ?? config.model.action_horizon;
  const { stateDim, actionDim } = pipelines[0]!;
  const total = pipelines.reduce((n, p) => n + p.dataset.numFrames, 0);
  const want = Math.min(total, opts.maxFrames ?? total);
  const takes = pipelines.map((p) =>
    Math.min(p.dataset.numFrames, Math.ceil((want * p.dataset.numFrames) / total)),
  );
  const rowsTaken = takes.reduce((a, b) => a + b, 0);
  const state = new Float32Array(rowsTaken * stateDim);
  const actions = new Float32Array(rowsTaken * horizon * actionDim);
  let n = 0;
  let done = 0;
  for (const [i, p] of pipelines.entries()) {
    const frames = p.dataset.numFrames;
    const take = takes[i]!;
    const picked = new Uint8Array(frames);
    for (let k = 0; k < take; k++) picked[Math.floor((k * frames) / take)] = 1;
    let seen = 0;
    for (const ep of p.dataset.episodes) {
      const wanted: number[] = [];
      for (let t = 0; t < ep.length; t++) if (picked[seen + t]) wanted.push(t);
      if (wanted.length > 0) {
        const rows = await episodeRows(p, ep.index);
        for (const t of wanted) {
          state.set(rows.state.subarray(t * stateDim, (t + 1) * stateDim), n * stateDim);
          actionChunk(p, rows, t, horizon, actions, n * horizon * actionDim);
          n++;
        }
      }
      seen += ep.length;
      done += ep.length;
      opts.onProgress?.(done, total);
    }
  }
  return {
    pipelines,
    state: state.subarray(0, n * stateDim),
    actions: actions.subarray(0, n * horizon * actionDim),
    n,
    stateDim,
    actionDim,
  };
}

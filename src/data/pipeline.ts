/**
 * The config's data transforms on raw dataset rows, shared by the norm stats and the training loader
 * so both see the same numbers: robot adapter (ALOHA's `adapt_to_pi`), then action chunks from frame t
 * padded with the episode's last action (LeRobot's clamped `delta_timestamps`), then openpi's
 * DeltaActions (masked dims minus the state at t). Normalization comes after, with the stats.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../config/errors.js';
import { loadRobot } from '../config/load.js';
import { actionDim, type RobotSpec, stateDim } from '../config/robot.js';
import type { TrainConfig } from '../config/schema.js';
import { alohaActionsToPi, alohaStateToPi } from '../transforms/aloha.js';
import { type LeRobotDataset, openDataset } from './reader.js';

/** `data.dataset` as a folder: a path relative to the workspace, else a name under `datasets/`. */
export function resolveDatasetPath(config: TrainConfig, cwd = process.cwd()): string {
  const name = config.data.dataset;
  if (!name) {
    throw new UserError(
      `config ${config.name}: data.dataset: expected a dataset folder, got null (set it with --set data.dataset=PATH)`,
    );
  }
  const direct = path.resolve(cwd, name);
  if (existsSync(direct)) return direct;
  const named = path.join(cwd, 'datasets', name);
  if (existsSync(named)) return named;
  throw new UserError(`config ${config.name}: data.dataset: no dataset at ${direct} or ${named}`);
}

/** Rows of one episode after the robot adapter, ready for chunking. */
export interface EpisodeRows {
  episode: number;
  length: number;
  state: Float32Array;
  action: Float32Array;
  taskIndex: Int32Array;
}

export interface Pipeline {
  config: TrainConfig;
  robot: RobotSpec;
  dataset: LeRobotDataset;
  stateDim: number;
  actionDim: number;
  /** Per action dim: subtract the state's value at t (openpi's DeltaActions). */
  deltaMask: boolean[];
}

export async function openPipeline(config: TrainConfig, cwd = process.cwd()): Promise<Pipeline> {
  const robot = loadRobot(config.robot, cwd);
  const dataset = await openDataset(resolveDatasetPath(config, cwd));
  const sd = stateDim(robot);
  const ad = actionDim(robot);
  const feats = dataset.info.features;
  const dsState = feats['observation.state']?.shape.reduce((a, b) => a * b, 1);
  const dsAction = feats.action?.shape.reduce((a, b) => a * b, 1);
  if (dsState !== sd) {
    throw new UserError(
      `${dataset.dir}: observation.state has ${dsState ?? 'no'} dims, robot ${robot.name} expects ${sd} (config ${config.name})`,
    );
  }
  if (dsAction !== ad) {
    throw new UserError(
      `${dataset.dir}: action has ${dsAction ?? 'no'} dims, robot ${robot.name} expects ${ad} (config ${config.name})`,
    );
  }
  const mask = config.data.delta_action_mask ?? [];
  if (mask.length > ad) {
    throw new UserError(
      `config ${config.name}: data.delta_action_mask: expected at most ${ad} entries (action dims), got ${mask.length}`,
    );
  }
  if (mask.some((m, d) => m && d >= sd)) {
    throw new UserError(
      `config ${config.name}: data.delta_action_mask: delta dims must exist in the state (${sd} dims)`,
    );
  }
  const deltaMask = Array.from({ length: ad }, (_, d) => mask[d] ?? false);
  return { config, robot, dataset, stateDim: sd, actionDim: ad, deltaMask };
}

export async function episodeRows(p: Pipeline, episode: number): Promise<EpisodeRows> {
  const d = await p.dataset.readEpisode(episode);
  const state = d.state!;
  const action = d.action!;
  if (p.config.data.adapt_to_pi) {
    alohaStateToPi(state, p.stateDim);
    alohaActionsToPi(action, p.actionDim);
  }
  return { episode, length: d.length, state, action, taskIndex: d.taskIndex };
}

/** `x * mul + add` per dim: a normalization folded into one multiply-add. */
export interface Affine {
  mul: Float64Array;
  add: Float64Array;
}

/**
 * Writes the chunk of `horizon` actions from frame t into `out` at `offset`, delta-converted against
 * the state at t and, when `affine` is given, normalized; pad flags go to `pad` at `padOffset`.
 */
export function actionChunk(
  p: Pipeline,
  rows: EpisodeRows,
  t: number,
  horizon: number,
  out: Float32Array,
  offset: number,
  pad?: Uint8Array,
  padOffset = 0,
  affine?: Affine,
): void {
  const ad = p.actionDim;
  const base = t * p.stateDim;
  const mask = p.deltaMask;
  const last = rows.length - 1;
  for (let k = 0; k < horizon; k++) {
    const src = Math.min(t + k, last);
    if (pad) pad[padOffset + k] = t + k > last ? 1 : 0;
    const o = offset + k * ad;
    const a0 = src * ad;
    for (let d = 0; d < ad; d++) {
      let a = rows.action[a0 + d]!;
      if (mask[d]) a -= rows.state[base + d]!;
      out[o + d] = affine ? a * affine.mul[d]! + affine.add[d]! : a;
    }
  }
}

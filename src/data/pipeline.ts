/**
 * The config's dataset as the transforms see it, shared by the norm stats and the training loader so
 * both see the same numbers: episode rows through the per-frame transforms (the robot adapter), then
 * action chunks from frame t padded with the episode's last action (LeRobot's clamped
 * `delta_timestamps`), then the per-chunk transforms (delta actions). The transforms themselves are
 * composed in transforms/group.ts; normalisation and images come after, with the stats.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../config/errors.js';
import { loadRobot } from '../config/load.js';
import { type DataSource, dataSources } from '../config/mixture.js';
import { actionDim, type RobotSpec, stateDim } from '../config/robot.js';
import type { TrainConfig } from '../config/schema.js';
import { type Floats, frames } from '../transforms/frames.js';
import { applyInputs, type TransformGroup, transformGroup } from '../transforms/group.js';
import { type LeRobotDataset, openDataset } from './reader.js';

/** `data.dataset` as a folder: a path relative to the workspace, else a name under `datasets/`. */
export function resolveDatasetPath(config: TrainConfig, cwd = process.cwd()): string {
  const name = config.data.dataset;
  if (config.data.mixture !== null) {
    throw new UserError(
      `config ${config.name}: expected one dataset here, got a data.mixture of ${config.data.mixture.length} (read each through dataSources)`,
    );
  }
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

/** Rows of one episode after the per-frame transforms, ready for chunking. */
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
  /** The config's transforms without the model side (no stats yet when computing them). */
  transforms: TransformGroup;
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
  const transforms = transformGroup(config, { stateDim: sd, actionDim: ad });
  return { config, robot, dataset, stateDim: sd, actionDim: ad, transforms };
}

/**
 * A pipeline per data source of the config (its dataset, or each mixture entry's), checked to agree:
 * one robot's datasets must share fps, chunk steps (`action_horizon`), norm stats (`assets_dir`) and
 * the state and action shapes, or their chunks would mean different things; the error names the entry,
 * its dataset and the field.
 * Robots may differ in fps, as π0's robots do (ALOHA at 50 Hz, DROID at 15 Hz): a chunk is so many of
 * its robot's control steps.
 */
export async function openPipelines(
  config: TrainConfig,
  cwd = process.cwd(),
): Promise<Array<{ source: DataSource; pipeline: Pipeline }>> {
  const out: Array<{ source: DataSource; pipeline: Pipeline }> = [];
  for (const source of dataSources(config)) {
    const pipeline = await openPipeline(source.config, cwd);
    const disagree = (other: DataSource, field: string, got: unknown, want: unknown) =>
      new UserError(
        `config ${config.name}: ${source.field} (${source.dataset}): ${field} ${JSON.stringify(got)}, expected ${JSON.stringify(want)} as ${other.field} (${other.dataset})`,
      );
    const info = pipeline.dataset.info;
    const same = out.find((o) => o.source.robot === source.robot);
    if (same) {
      if (info.fps !== same.pipeline.dataset.info.fps)
        throw disagree(same.source, 'fps', info.fps, same.pipeline.dataset.info.fps);
      const [steps, sameSteps] = [source.config.data.action_horizon, same.source.config.data.action_horizon];
      if (steps !== sameSteps) throw disagree(same.source, 'action_horizon', steps, sameSteps);
      const [dir, sameDir] = [source.config.data.assets_dir, same.source.config.data.assets_dir];
      if (dir !== sameDir) throw disagree(same.source, 'assets_dir', dir, sameDir);
      for (const key of ['observation.state', 'action']) {
        const [want, got] = [same.pipeline.dataset.info.features[key]?.shape, info.features[key]?.shape];
        if (JSON.stringify(got) !== JSON.stringify(want))
          throw disagree(same.source, `features.${key}.shape`, got, want);
      }
    }
    out.push({ source, pipeline });
  }
  return out;
}

export async function episodeRows(p: Pipeline, episode: number): Promise<EpisodeRows> {
  const d = await p.dataset.readEpisode(episode);
  const state = d.state!;
  const action = d.action!;
  const { stateDim, actionDim } = p;
  const rows = frames({ size: d.length, stateDim, actionDim, horizon: 1, state, actions: action });
  applyInputs(p.transforms.perFrame, rows);
  return { episode, length: d.length, state, action, taskIndex: d.taskIndex };
}

/**
 * Writes the chunk of `horizon` actions from frame t into `out` at `offset`, the episode's last action
 * repeated past its end; pad flags go to `pad` at `padOffset`.
 */
export function gatherChunk(
  p: Pipeline,
  rows: EpisodeRows,
  t: number,
  horizon: number,
  out: Floats,
  offset: number,
  pad?: Uint8Array,
  padOffset = 0,
): void {
  const ad = p.actionDim;
  const inside = Math.max(0, Math.min(horizon, rows.length - t));
  out.set(rows.action.subarray(t * ad, (t + inside) * ad), offset);
  if (inside < horizon) {
    const last = rows.action.subarray((rows.length - 1) * ad, rows.length * ad);
    for (let k = inside; k < horizon; k++) out.set(last, offset + k * ad);
  }
  if (pad) {
    pad.fill(0, padOffset, padOffset + inside);
    pad.fill(1, padOffset + inside, padOffset + horizon);
  }
}

/** The chunk from frame t through the per-chunk transforms (delta actions against the state at t). */
export function actionChunk(
  p: Pipeline,
  rows: EpisodeRows,
  t: number,
  horizon: number,
  out: Float32Array,
  offset: number,
): void {
  gatherChunk(p, rows, t, horizon, out, offset);
  const { stateDim, actionDim } = p;
  const chunk = frames({
    size: 1,
    stateDim,
    actionDim,
    horizon,
    state: rows.state.subarray(t * stateDim, (t + 1) * stateDim),
    actions: out.subarray(offset, offset + horizon * actionDim),
  });
  applyInputs(p.transforms.perChunk, chunk);
}

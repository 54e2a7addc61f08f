import path from 'node:path';
import { UserError } from '../config/errors.js';
import { readInfo } from './info.js';
import { describeLeftovers, findLeftovers } from './leftovers.js';
import { type LeRobotDataset, openDataset, TIMESTAMP_TOLERANCE_S } from './reader.js';

export interface ValidationReport {
  dir: string;
  version: string;
  episodes: number;
  frames: number;
  videos: number;
  /** One line per violated invariant, naming the file or episode. */
  problems: string[];
  /** What needs no fix for the dataset to be read as it is, such as a killed writer's temporary files. */
  warnings: string[];
}

/** Whether `vla sim record` wrote the dataset, when its info.json can be read at all. */
function recordedInSimulation(dir: string): boolean {
  try {
    return readInfo(dir).simulation !== null;
  } catch {
    return false;
  }
}

/**
 * Temporary files are no part of the dataset (no reader opens them), so they are a warning: they tell
 * that a writer was killed, or is still writing, and how to clean up.
 */
function leftoverWarnings(dir: string, recorded: boolean): string[] {
  const leftovers = findLeftovers(dir);
  if (leftovers.length === 0) return [];
  const cleanup = recorded
    ? `vla sim record --resume (with the arguments it was started with) goes on with the recording and removes them, or delete them`
    : 'delete them once no writer runs';
  return [
    `temporary files a dataset writer left (killed mid-way, or still writing): ${describeLeftovers(leftovers)}; ${cleanup}`,
  ];
}

const MAX_PER_KIND = 5;

/**
 * Checks the invariants real LeRobot datasets hold: contiguous `index`, `frame_index` from 0 in each
 * episode, `timestamp == frame_index / fps`, episode lengths summing to the rows, videos with as many
 * frames as their episode and the matching duration, every task index resolving.
 */
export async function validateDataset(dir: string): Promise<ValidationReport> {
  let ds: LeRobotDataset;
  try {
    ds = await openDataset(dir);
  } catch (e) {
    if (e instanceof UserError) {
      const warnings = leftoverWarnings(dir, recordedInSimulation(dir));
      return { dir, version: '?', episodes: 0, frames: 0, videos: 0, problems: [e.message], warnings };
    }
    throw e;
  }
  const problems: string[] = [...ds.warnings];
  const counts = new Map<string, number>();
  const problem = (kind: string, text: string) => {
    const n = (counts.get(kind) ?? 0) + 1;
    counts.set(kind, n);
    if (n <= MAX_PER_KIND) problems.push(text);
    else if (n === MAX_PER_KIND + 1) problems.push(`(further "${kind}" problems not listed)`);
  };
  const rel = (f: string) => path.relative(ds.dir, f);
  const fps = ds.info.fps;
  let expectedFrom = 0;
  let videos = 0;
  const fileRows = new Map<string, number>();
  const taskValues = new Set(ds.tasks.values());
  for (const ep of ds.episodes) {
    if (ep.from !== expectedFrom) {
      problem(
        'range',
        `episode ${ep.index}: starts at index ${ep.from}, expected ${expectedFrom} (episodes must be contiguous)`,
      );
    }
    expectedFrom = ep.to;
    for (const t of ep.tasks) {
      if (!taskValues.has(t))
        problem('task', `episode ${ep.index}: task ${JSON.stringify(t)} is not in the tasks metadata`);
    }
    let data: Awaited<ReturnType<LeRobotDataset['readEpisode']>>;
    try {
      const pq = await ds.parquet(ep.dataFile);
      fileRows.set(ep.dataFile, pq.numRows);
      data = await ds.readEpisode(ep.index);
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      problem('data', `episode ${ep.index}: ${e.message}`);
      continue;
    }
    const file = rel(ep.dataFile);
    for (let i = 0; i < data.length; i++) {
      if (data.index[i] !== ep.from + i) {
        problem(
          'index',
          `${file}: episode ${ep.index}, row ${i}: index is ${data.index[i]}, expected ${ep.from + i} (contiguous)`,
        );
        break;
      }
    }
    for (let i = 0; i < data.length; i++) {
      if (data.frameIndex[i] !== i) {
        problem(
          'frame_index',
          `${file}: episode ${ep.index}, row ${i}: frame_index is ${data.frameIndex[i]}, expected ${i}`,
        );
        break;
      }
    }
    for (let i = 0; i < data.length; i++) {
      if (data.episodeIndex[i] !== ep.index) {
        problem(
          'episode_index',
          `${file}: episode ${ep.index}, row ${i}: episode_index is ${data.episodeIndex[i]}`,
        );
        break;
      }
    }
    for (let i = 0; i < data.length; i++) {
      const want = data.frameIndex[i]! / fps;
      if (Math.abs(data.timestamp[i]! - want) > TIMESTAMP_TOLERANCE_S) {
        problem(
          'timestamp',
          `${file}: episode ${ep.index}, frame ${data.frameIndex[i]}: timestamp is ${data.timestamp[i]}, expected frame_index / fps = ${want.toFixed(6)}`,
        );
        break;
      }
    }
    for (let i = 0; i < data.length; i++) {
      if (!ds.tasks.has(data.taskIndex[i]!)) {
        problem(
          'task',
          `${file}: episode ${ep.index}, frame ${i}: task_index ${data.taskIndex[i]} does not resolve to a task`,
        );
        break;
      }
    }
    for (const cam of ds.cameras.filter((c) => c.video)) {
      const v = ep.videos[cam.key];
      if (!v) {
        problem('video', `episode ${ep.index}: no video entry for ${cam.key}`);
        continue;
      }
      videos++;
      let pts: number[];
      try {
        pts = (await ds.probe(v.file)).pts;
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
        problem('video', `episode ${ep.index}, camera ${cam.key}: ${e.message}`);
        continue;
      }
      const end = v.toTimestamp ?? Number.POSITIVE_INFINITY;
      const inside = pts.filter(
        (p) => p >= v.fromTimestamp - TIMESTAMP_TOLERANCE_S && p < end - TIMESTAMP_TOLERANCE_S,
      );
      if (inside.length !== ep.length) {
        problem(
          'video',
          `${rel(v.file)}: episode ${ep.index}, camera ${cam.key}: ${inside.length} video frames, the episode has ${ep.length}`,
        );
        continue;
      }
      const duration = inside[inside.length - 1]! - inside[0]! + 1 / fps;
      const last = data.timestamp[data.length - 1]! + 1 / fps;
      if (Math.abs(duration - last) > 1 / fps / 2) {
        problem(
          'video',
          `${rel(v.file)}: episode ${ep.index}, camera ${cam.key}: video lasts ${duration.toFixed(4)} s, the episode ${last.toFixed(4)} s`,
        );
      }
    }
  }
  const rows = [...fileRows.values()].reduce((a, b) => a + b, 0);
  if (problems.length === 0 && rows !== ds.numFrames) {
    problems.push(`data files hold ${rows} rows but the episodes' lengths sum to ${ds.numFrames}`);
  }
  return {
    dir,
    version: ds.info.codebaseVersion,
    episodes: ds.episodes.length,
    frames: ds.numFrames,
    videos,
    problems,
    warnings: leftoverWarnings(ds.dir, ds.info.simulation !== null),
  };
}

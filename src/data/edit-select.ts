/**
 * Which episodes go where: `vla data merge` (all episodes of several datasets, in order), `split` (by
 * episode ranges or consecutive fractions, for held-out evaluation sets) and `filter` (drop episodes by
 * index or by a failed `success` flag). Each is a choice of episodes that edit.ts writes.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../config/errors.js';
import { type EditOptions, type EditReport, type EpisodeRef, writeEpisodes } from './edit.js';
import { readJsonl } from './info.js';
import { openParquet, readColumns } from './parquet.js';
import { type LeRobotDataset, openDataset } from './reader.js';

/**
 * Episode indices from a list such as `0:40,45,50:52` (ranges are half-open, as Python's); each must be
 * one of the dataset's. `what` names the option in errors.
 */
export function parseEpisodeList(spec: string, ds: LeRobotDataset, what: string): number[] {
  const known = new Set(ds.episodes.map((e) => e.index));
  const out: number[] = [];
  for (const part of spec.split(',').map((p) => p.trim())) {
    const m = /^(\d+)(?::(\d+))?$/.exec(part);
    if (!m || (m[2] !== undefined && Number(m[2]) <= Number(m[1]))) {
      throw new UserError(
        `${what} ${spec}: "${part}": expected an episode index N or a range A:B with A < B`,
      );
    }
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo + 1 : Number(m[2]);
    for (let i = lo; i < hi; i++) {
      if (!known.has(i)) {
        throw new UserError(
          `${what} ${spec}: episode ${i}: expected one of ${ds.dir}'s episodes (0..${ds.episodes.length - 1}), got none with that index`,
        );
      }
      out.push(i);
    }
  }
  return out;
}

/** A fraction written as 0.8 or 80%, or null when `spec` is not one. */
function fractionOf(spec: string): number | null {
  const m = /^(\d*\.?\d+)(%?)$/.exec(spec.trim());
  if (!m || spec.includes(':') || spec.includes(',')) return null;
  const v = Number(m[1]) / (m[2] ? 100 : 1);
  return m[2] || spec.includes('.') ? v : null;
}

export interface SplitPart {
  out: string;
  /** Episode ranges (`0:40,45`) or a fraction (`0.8`, `80%`) of the episodes. */
  spec: string;
}

/**
 * The episodes of each part. Fractions take consecutive shares of the episodes in order (the first
 * fraction the first episodes), rounded at their cumulative boundaries; ranges name episodes. No episode
 * may go to two parts: a held-out set that overlaps its training set holds nothing out.
 */
export function planSplit(ds: LeRobotDataset, parts: SplitPart[]): number[][] {
  const n = ds.episodes.length;
  let used = 0;
  const owner = new Map<number, string>();
  return parts.map((part) => {
    const fraction = fractionOf(part.spec);
    let episodes: number[];
    if (fraction !== null) {
      if (!(fraction > 0) || used + fraction > 1 + 1e-9) {
        throw new UserError(
          `split ${part.out}=${part.spec}: fraction: expected more than 0 and the fractions' sum at most 1, got a sum of ${(used + fraction).toFixed(3)}`,
        );
      }
      const lo = Math.round(n * used);
      used += fraction;
      const hi = Math.round(n * used);
      if (hi === lo) {
        throw new UserError(
          `split ${part.out}=${part.spec}: expected at least one of ${n} episodes, got 0 after rounding`,
        );
      }
      episodes = ds.episodes.slice(lo, hi).map((e) => e.index);
    } else {
      episodes = parseEpisodeList(part.spec, ds, `split ${part.out}=`);
    }
    for (const e of episodes) {
      const before = owner.get(e);
      if (before !== undefined) {
        throw new UserError(
          `split: episode ${e}: expected in one part only, got it in ${before} and ${part.out}: parts must not overlap`,
        );
      }
      owner.set(e, part.out);
    }
    return episodes;
  });
}

/**
 * Each episode's success as the dataset records it: a `success` key in the episodes metadata (v2.x's
 * episodes.jsonl, v3.0's episodes parquet), else a per-frame `next.success` feature (success when any
 * frame says so), as LeRobot's simulation datasets carry it.
 */
export async function episodeSuccess(ds: LeRobotDataset): Promise<Map<number, boolean>> {
  const out = new Map<number, boolean>();
  if (ds.info.version === 'v3.0') {
    const dir = path.join(ds.dir, 'meta', 'episodes');
    const files = readdirSync(dir, { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.parquet'))
      .sort();
    for (const file of files.map((f) => path.join(dir, f))) {
      const pq = await openParquet(file);
      if (!pq.columns.includes('success')) continue;
      const cols = await readColumns(pq, ['episode_index', 'success']);
      cols.episode_index!.forEach((e, r) => {
        out.set(Number(e), cols.success![r] === true);
      });
    }
  } else {
    for (const row of readJsonl(path.join(ds.dir, 'meta', 'episodes.jsonl'))) {
      const r = row as { episode_index?: unknown; success?: unknown };
      if (typeof r.success === 'boolean') out.set(Number(r.episode_index), r.success);
    }
  }
  if (out.size > 0) return out;
  if (!ds.info.features['next.success']) {
    throw new UserError(
      `${ds.dir}: success: expected a success key in the episodes metadata or a next.success feature, got neither: drop episodes by index instead`,
    );
  }
  for (const ep of ds.episodes) {
    const pq = await ds.parquet(ep.dataFile);
    const cols = await readColumns(pq, ['next.success'], ep.fileRow, ep.fileRow + ep.length);
    out.set(
      ep.index,
      cols['next.success']!.some((v) => v === true || v === 1 || v === 1n),
    );
  }
  return out;
}

const refsOf = (ds: LeRobotDataset, indices: number[]): EpisodeRef[] =>
  indices.map((i) => ({ ds, episode: ds.episode(i) }));

/** Several datasets of one robot into one: their episodes in the order given, tasks re-indexed. */
export async function mergeDatasets(
  inputs: string[],
  out: string,
  opts: EditOptions = {},
): Promise<EditReport> {
  if (inputs.length < 2) throw new UserError(`merge: datasets: expected at least 2, got ${inputs.length}`);
  const datasets = await Promise.all(inputs.map((dir) => openDataset(dir)));
  const dirs = new Set<string>();
  for (const ds of datasets) {
    if (dirs.has(ds.dir)) throw new UserError(`merge: ${ds.dir}: expected each dataset once, got it twice`);
    dirs.add(ds.dir);
  }
  return writeEpisodes(
    datasets.flatMap((ds) =>
      refsOf(
        ds,
        ds.episodes.map((e) => e.index),
      ),
    ),
    out,
    opts,
  );
}

/** One dataset into parts (see planSplit); every part is checked before the first is written. */
export async function splitDataset(
  input: string,
  parts: SplitPart[],
  opts: EditOptions = {},
): Promise<EditReport[]> {
  if (parts.length === 0) throw new UserError('split: parts: expected at least one OUT=EPISODES, got none');
  const ds = await openDataset(input);
  const plan = planSplit(ds, parts);
  const reports: EditReport[] = [];
  for (const [i, part] of parts.entries())
    reports.push(await writeEpisodes(refsOf(ds, plan[i]!), part.out, opts));
  return reports;
}

export interface FilterSpec {
  /** Episodes to drop (`3,10:12`). */
  drop?: string;
  /** Drop the episodes whose recorded success flag is false. */
  dropFailed?: boolean;
}

/** A copy of a dataset without the dropped episodes. */
export async function filterDataset(
  input: string,
  out: string,
  spec: FilterSpec,
  opts: EditOptions = {},
): Promise<EditReport & { droppedEpisodes: number[] }> {
  if (!spec.drop && !spec.dropFailed) {
    throw new UserError('filter: expected --drop EPISODES or --drop-failed, got neither');
  }
  const ds = await openDataset(input);
  const drop = new Set(spec.drop ? parseEpisodeList(spec.drop, ds, '--drop') : []);
  if (spec.dropFailed) {
    const success = await episodeSuccess(ds);
    for (const e of ds.episodes) if (success.get(e.index) === false) drop.add(e.index);
  }
  const kept = ds.episodes.map((e) => e.index).filter((i) => !drop.has(i));
  if (kept.length === 0) {
    throw new UserError(
      `filter ${input}: expected at least one episode kept, got all ${ds.episodes.length} dropped`,
    );
  }
  const report = await writeEpisodes(refsOf(ds, kept), out, opts);
  return { ...report, droppedEpisodes: [...drop].sort((a, b) => a - b) };
}

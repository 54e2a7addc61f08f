import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../config/errors.js';

/** openpi's per-key statistics: arrays of the feature's dim. */
export interface NormStatsEntry {
  mean: number[];
  std: number[];
  q01?: number[];
  q99?: number[];
}

/** openpi's norm_stats.json: `{"norm_stats": {"state": {...}, "actions": {...}}}`. */
export interface NormStats {
  state: NormStatsEntry;
  actions: NormStatsEntry;
}

export type NormMode = 'zscore' | 'quantile';

const EPS = 1e-6;

function entryOf(
  stats: NormStats,
  key: 'state' | 'actions',
  mode: NormMode,
  dim: number,
  file = '',
): NormStatsEntry {
  const entry = stats[key];
  const where = file ? `${file}: ` : '';
  if (!entry) throw new UserError(`${where}norm_stats.${key}: expected statistics, got nothing (missing)`);
  const needed: Array<keyof NormStatsEntry> = mode === 'zscore' ? ['mean', 'std'] : ['q01', 'q99'];
  for (const field of needed) {
    const values = entry[field];
    if (!Array.isArray(values) || values.length < dim) {
      throw new UserError(
        `${where}norm_stats.${key}.${field}: expected ${dim} numbers (${mode} normalization), got ${Array.isArray(values) ? values.length : 'nothing'}`,
      );
    }
  }
  return entry;
}

/**
 * Normalize rows of `dim` values in place: z-score `(x-mean)/(std+1e-6)` or quantile
 * `(x-q01)/(q99-q01+1e-6)*2-1`, as openpi does. Works on any number of rows (a state, a chunk, a batch).
 */
export function normalize(
  x: Float32Array,
  stats: NormStats,
  key: 'state' | 'actions',
  mode: NormMode,
  dim: number,
) {
  const e = entryOf(stats, key, mode, dim);
  for (let i = 0; i < x.length; i++) {
    const d = i % dim;
    x[i] =
      mode === 'zscore'
        ? (x[i]! - e.mean[d]!) / (e.std[d]! + EPS)
        : ((x[i]! - e.q01![d]!) / (e.q99![d]! - e.q01![d]! + EPS)) * 2 - 1;
  }
  return x;
}

/** The inverse of `normalize`, in place. */
export function unnormalize(
  x: Float32Array,
  stats: NormStats,
  key: 'state' | 'actions',
  mode: NormMode,
  dim: number,
) {
  const e = entryOf(stats, key, mode, dim);
  for (let i = 0; i < x.length; i++) {
    const d = i % dim;
    x[i] =
      mode === 'zscore'
        ? x[i]! * (e.std[d]! + EPS) + e.mean[d]!
        : ((x[i]! + 1) / 2) * (e.q99![d]! - e.q01![d]! + EPS) + e.q01![d]!;
  }
  return x;
}

export function readNormStats(file: string): NormStats {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: cannot read norm stats (${(e as Error).message})`);
  }
  const stats = (raw as { norm_stats?: NormStats })?.norm_stats;
  if (!stats || typeof stats !== 'object') {
    throw new UserError(
      `${file}: expected {"norm_stats": {"state": ..., "actions": ...}}, got no norm_stats key`,
    );
  }
  for (const key of ['state', 'actions'] as const) {
    const e = stats[key];
    if (!e || !Array.isArray(e.mean) || !Array.isArray(e.std)) {
      throw new UserError(
        `${file}: norm_stats.${key}: expected mean and std arrays, got ${JSON.stringify(e)?.slice(0, 80)}`,
      );
    }
  }
  return stats;
}

/** Atomic write (temporary file, then rename) in openpi's layout. */
export function writeNormStats(file: string, stats: NormStats): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify({ norm_stats: stats }, null, 2)}\n`);
  renameSync(tmp, file);
}

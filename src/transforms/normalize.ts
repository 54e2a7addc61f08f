import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../config/errors.js';
import { chunkSteps, datasetLabel } from '../config/mixture.js';
import type { TrainConfig } from '../config/schema.js';
import type { Floats, Transform } from './frames.js';

/** openpi's per-key statistics: arrays of the feature's dim. */
export interface NormStatsEntry {
  mean: number[];
  std: number[];
  q01?: number[];
  q99?: number[];
}

/**
 * The transforms the action statistics were computed through. Stats of absolute actions used on delta
 * actions (or the reverse) put the normalized targets far from unit scale and quietly ruin training, so
 * `vla data stats` records them and training checks them.
 */
export interface NormStatsProvenance {
  dataset: string | null;
  action_horizon: number;
  delta_action_mask: boolean[] | null;
  adapt_to_pi: boolean;
  /**
   * For demonstrations recorded in simulation: the scene they came from (`vla sim eval` compares it).
   * Carried as the dataset wrote it (data/info.ts's SimProvenance) and read back unchecked, so its
   * readers parse it (sim/provenance.ts).
   */
  simulation?: unknown;
}

/** Norm stats by asset id (one per robot of a mixture of robots), as a checkpoint's `assets/` holds them. */
export type AssetNormStats = Map<string, NormStats>;

/**
 * openpi's norm_stats.json: `{"norm_stats": {"state": {...}, "actions": {...}}}`. We add a top-level
 * `computed_with` beside `norm_stats` (openpi's reader ignores other keys); files without it still load.
 */
export interface NormStats {
  state: NormStatsEntry;
  actions: NormStatsEntry;
  /** Read from and written to the file's top-level `computed_with`, never inside `norm_stats`. */
  computedWith?: NormStatsProvenance;
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

/** One key's statistics, checked against its dims once, as per-dim constants. */
interface KeyNorm {
  mode: NormMode;
  dim: number;
  /** mean, or q01 */
  center: Float64Array;
  /** std + 1e-6, or q99 - q01 + 1e-6 */
  spread: Float64Array;
}

function keyNorm(stats: NormStats, key: 'state' | 'actions', mode: NormMode, dim: number): KeyNorm {
  const e = entryOf(stats, key, mode, dim);
  const center = new Float64Array(dim);
  const spread = new Float64Array(dim);
  for (let d = 0; d < dim; d++) {
    center[d] = mode === 'zscore' ? e.mean[d]! : e.q01![d]!;
    spread[d] = mode === 'zscore' ? e.std[d]! + EPS : e.q99![d]! - e.q01![d]! + EPS;
  }
  return { mode, dim, center, spread };
}

/**
 * Where data's own statistics fall outside the stats it would be normalized with (a base's, say): the
 * dim whose spread most exceeds the stats' (or whose centre lies furthest off it), in units of the stats'
 * spread, when that exceeds `factor`; else null. A base whose joint never moved (std 1e-4) turns a new
 * task's motion of that joint into values of thousands of σ, and its loss into millions.
 */
export function statsMisfit(used: NormStats, data: NormStats, mode: NormMode, factor = 10): string | null {
  let worst: { ratio: number; text: string } | null = null;
  for (const key of ['state', 'actions'] as const) {
    const dim = Math.min(data[key].mean.length, used[key].mean.length);
    const u = keyNorm(used, key, mode, dim);
    const d = keyNorm(data, key, mode, dim);
    const [what, at] = mode === 'zscore' ? ['std', 'mean'] : ['q01..q99 range', 'q01'];
    for (let i = 0; i < dim; i++) {
      const wider = d.spread[i]! / u.spread[i]!;
      const off = Math.abs(d.center[i]! - u.center[i]!) / u.spread[i]!;
      const ratio = Math.max(wider, off);
      if (ratio <= factor || (worst && worst.ratio >= ratio)) continue;
      const pair = (n: KeyNorm) => `${what} ${n.spread[i]!.toPrecision(3)}, ${at} ${n.center[i]!.toFixed(3)}`;
      worst = {
        ratio,
        text: `${key}[${i}]: the data's ${pair(d)}; the stats' ${pair(u)} (${Math.round(ratio)}× their spread)`,
      };
    }
  }
  return worst?.text ?? null;
}

/** `dst = normalize(src)` over rows of `n.dim` values (`dst` may be `src`). */
function normalizeRows<T extends Floats>(src: Floats, dst: T, n: KeyNorm): T {
  const { dim, center: c, spread: s } = n;
  const quantile = n.mode === 'quantile';
  for (let i = 0, d = 0; i < src.length; i++) {
    const z = (src[i]! - c[d]!) / s[d]!;
    dst[i] = quantile ? z * 2 - 1 : z;
    if (++d === dim) d = 0;
  }
  return dst;
}

/** The inverse of normalizeRows, in place. */
function unnormalizeRows<T extends Floats>(x: T, n: KeyNorm): T {
  const { dim, center: c, spread: s } = n;
  const quantile = n.mode === 'quantile';
  for (let i = 0, d = 0; i < x.length; i++) {
    x[i] = (quantile ? (x[i]! + 1) / 2 : x[i]!) * s[d]! + c[d]!;
    if (++d === dim) d = 0;
  }
  return x;
}

/** `x · mul + add` per dim, over rows of `mul.length` values, rounded to float32 once. */
function affineRows(x: Floats, mul: Float64Array, add: Float64Array): Float32Array {
  const dim = mul.length;
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i += dim) {
    for (let d = 0; d < dim; d++) out[i + d] = x[i + d]! * mul[d]! + add[d]!;
  }
  return out;
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
  return normalizeRows(x, x, keyNorm(stats, key, mode, dim));
}

/** The inverse of `normalize`, in place. */
export function unnormalize(
  x: Float32Array,
  stats: NormStats,
  key: 'state' | 'actions',
  mode: NormMode,
  dim: number,
) {
  return unnormalizeRows(x, keyNorm(stats, key, mode, dim));
}

/**
 * The config's normalisation as a transform, its stats checked once: the state into `modelState` and
 * recorded chunks into `modelActions` on the way in; the model's actions back in place on the way out.
 * Chunks take one multiply-add per value (training's hot loop), so a float64 chunk rounds to float32 once.
 */
export function normalization(
  stats: NormStats,
  mode: NormMode,
  stateDim: number,
  actionDim: number,
): Transform {
  const state = keyNorm(stats, 'state', mode, stateDim);
  const actions = keyNorm(stats, 'actions', mode, actionDim);
  const mul = new Float64Array(actionDim);
  const add = new Float64Array(actionDim);
  for (let d = 0; d < actionDim; d++) {
    mul[d] = (mode === 'zscore' ? 1 : 2) / actions.spread[d]!;
    add[d] = -actions.center[d]! * mul[d]! - (mode === 'zscore' ? 0 : 1);
  }
  return {
    name: 'normalize',
    input: (f) => {
      f.modelState = normalizeRows(f.state, new Float32Array(f.state.length), state);
      if (f.actions) f.modelActions = affineRows(f.actions, mul, add);
    },
    output: (f) => {
      f.actions = unnormalizeRows(f.modelActions!, actions);
    },
  };
}

/** A checkpoint's `assets/<asset_id>/norm_stats.json` (the first asset id in name order), or null. */
export function checkpointNormStatsFile(dir: string): string | null {
  const assets = path.join(dir, 'assets');
  if (!existsSync(assets)) return null;
  for (const id of readdirSync(assets).sort()) {
    const file = path.join(assets, id, 'norm_stats.json');
    if (existsSync(file)) return file;
  }
  return null;
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
  const provenance = (raw as { computed_with?: NormStatsProvenance }).computed_with;
  const { state, actions } = stats;
  return provenance && typeof provenance === 'object'
    ? { state, actions, computedWith: provenance }
    : { state, actions };
}

/** Atomic write (temporary file, then rename) in openpi's layout. */
export function writeNormStats(file: string, stats: NormStats): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const { computedWith, state, actions } = stats;
  const doc = computedWith
    ? { norm_stats: { state, actions }, computed_with: computedWith }
    : { norm_stats: { state, actions } };
  writeFileSync(tmp, `${JSON.stringify(doc, null, 2)}\n`);
  renameSync(tmp, file);
}

/** What `vla data stats` records of a config's transforms beside its stats. */
export function normStatsProvenance(config: TrainConfig): NormStatsProvenance {
  return {
    dataset: datasetLabel(config),
    action_horizon: chunkSteps(config),
    delta_action_mask: config.data.delta_action_mask,
    adapt_to_pi: config.data.adapt_to_pi,
  };
}

/**
 * Refuses stats computed through other action transforms than the config's (absolute actions' stats on
 * delta actions, or the reverse). Files without `computed_with` (openpi's) are trusted as they are.
 */
export function checkNormStatsProvenance(config: TrainConfig, stats: NormStats, file: string): void {
  const was = stats.computedWith;
  if (!was) return;
  const now = normStatsProvenance(config);
  const same = (a: boolean[] | null, b: boolean[] | null) => {
    const on = (m: boolean[] | null) =>
      (m ?? [])
        .map((v, i) => (v ? i : -1))
        .filter((i) => i >= 0)
        .join(',');
    return on(a) === on(b);
  };
  const fix = `run \`vla data stats ${config.name}\` again`;
  if (!same(was.delta_action_mask, now.delta_action_mask)) {
    throw new UserError(
      `${file}: norm stats were computed with data.delta_action_mask ${JSON.stringify(was.delta_action_mask)}, config ${config.name} has ${JSON.stringify(now.delta_action_mask)}: expected the same action transforms; ${fix}`,
    );
  }
  if (Boolean(was.adapt_to_pi) !== now.adapt_to_pi) {
    throw new UserError(
      `${file}: norm stats were computed with data.adapt_to_pi ${was.adapt_to_pi}, config ${config.name} has ${now.adapt_to_pi}: expected the same action transforms; ${fix}`,
    );
  }
}

/**
 * Delta actions' spread grows with the chunk: stats computed for shorter chunks than the config trains
 * normalise its later steps to larger values. Allowed (a fine-tune to longer chunks may keep its base's
 * stats so the shared steps stay as they were), but said: the line to log, or null. `config` is the
 * robot's own (`robotConfig` in a mixture): its chunk steps and delta actions.
 */
export function normStatsHorizonNote(config: TrainConfig, stats: NormStats, file: string): string | null {
  const was = stats.computedWith;
  const h = chunkSteps(config);
  if (!was || was.action_horizon === h || !(config.data.delta_action_mask ?? []).some(Boolean)) return null;
  return `${file}: norm stats were computed for ${was.action_horizon}-step delta-action chunks, config ${config.name} trains ${h}-step ones; run \`vla data stats ${config.name}\` for stats of its own chunks`;
}

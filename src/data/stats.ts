/**
 * LeRobot's feature statistics (`episodes_stats.jsonl`, `stats.json`): min, max, mean, std (population),
 * count, and in v3.0 the quantiles q01, q10, q50, q90, q99. Image features get per-channel values in
 * [0, 1] shaped [3, 1, 1], as LeRobot writes them.
 */

export type StatsEntry = Record<string, unknown>;
export type StatsMap = Record<string, StatsEntry>;

export const QUANTILES: Array<[string, number]> = [
  ['q01', 0.01],
  ['q10', 0.1],
  ['q50', 0.5],
  ['q90', 0.9],
  ['q99', 0.99],
];

/** numpy's default (linear) quantile of an ascending array. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const pos = (n - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** Stats of `rows` (packed, `dim` values per row) per dim. */
export function vectorStats(rows: ArrayLike<number>, dim: number, withQuantiles = true): StatsEntry {
  const n = Math.floor(rows.length / dim);
  const min = new Array<number>(dim).fill(Number.POSITIVE_INFINITY);
  const max = new Array<number>(dim).fill(Number.NEGATIVE_INFINITY);
  const sum = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let d = 0; d < dim; d++) {
      const v = rows[i * dim + d]!;
      if (v < min[d]!) min[d] = v;
      if (v > max[d]!) max[d] = v;
      sum[d]! += v;
    }
  }
  const mean = Array.from(sum, (s) => s / n);
  const sq = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let d = 0; d < dim; d++) {
      const x = rows[i * dim + d]! - mean[d]!;
      sq[d]! += x * x;
    }
  }
  const entry: StatsEntry = { min, max, mean, std: Array.from(sq, (s) => Math.sqrt(s / n)), count: [n] };
  if (withQuantiles) {
    const qs = QUANTILES.map(() => new Array<number>(dim));
    const col = new Float64Array(n);
    for (let d = 0; d < dim; d++) {
      for (let i = 0; i < n; i++) col[i] = rows[i * dim + d]!;
      col.sort();
      for (const [j, [, q]] of QUANTILES.entries()) qs[j]![d] = quantileSorted(col, q);
    }
    for (const [j, [name]] of QUANTILES.entries()) entry[name] = qs[j];
  }
  return entry;
}

/**
 * Per-channel stats of sampled RGB pixels (packed triplets of 0..255) scaled to [0, 1], shaped
 * [3, 1, 1] as LeRobot writes image stats; `count` is the number of frames the pixels came from.
 */
export function imageStats(pixels: ArrayLike<number>, frames: number, withQuantiles = true): StatsEntry {
  const scaled = Float64Array.from(pixels, (v) => v / 255);
  const shaped: StatsEntry = {};
  for (const [k, v] of Object.entries(vectorStats(scaled, 3, withQuantiles))) {
    shaped[k] = k === 'count' ? [frames] : (v as number[]).map((x) => [[x]]);
  }
  return shaped;
}

const flat = (v: unknown): number[] => (Array.isArray(v) ? v.flat(3).map(Number) : [Number(v)]);

function reshapeLike(values: number[], like: unknown): unknown {
  if (Array.isArray(like) && Array.isArray(like[0])) return values.map((x) => [[x]]);
  return values;
}

/**
 * Global stats from per-episode stats as LeRobot aggregates them: min of mins, max of maxes, means
 * weighted by count, the pooled variance, and quantiles as count-weighted means.
 */
export function aggregateStats(list: StatsMap[]): StatsMap {
  const out: StatsMap = {};
  const keys = new Set(list.flatMap((s) => Object.keys(s)));
  for (const key of keys) {
    const entries = list.map((s) => s[key]).filter((e): e is StatsEntry => !!e && e.mean !== undefined);
    if (entries.length === 0) continue;
    const counts = entries.map((e) => flat(e.count ?? [1])[0]!);
    const total = counts.reduce((a, b) => a + b, 0);
    const like = entries[0]!.mean;
    const dim = flat(like).length;
    const mean = new Array<number>(dim).fill(0);
    const second = new Array<number>(dim).fill(0);
    const min = new Array<number>(dim).fill(Number.POSITIVE_INFINITY);
    const max = new Array<number>(dim).fill(Number.NEGATIVE_INFINITY);
    for (const [i, e] of entries.entries()) {
      const w = counts[i]! / total;
      const m = flat(e.mean);
      const s = flat(e.std);
      const lo = flat(e.min);
      const hi = flat(e.max);
      for (let d = 0; d < dim; d++) {
        mean[d]! += w * m[d]!;
        second[d]! += w * (s[d]! * s[d]! + m[d]! * m[d]!);
        min[d] = Math.min(min[d]!, lo[d]!);
        max[d] = Math.max(max[d]!, hi[d]!);
      }
    }
    const std = mean.map((m, d) => Math.sqrt(Math.max(0, second[d]! - m * m)));
    const entry: StatsEntry = {
      min: reshapeLike(min, like),
      max: reshapeLike(max, like),
      mean: reshapeLike(mean, like),
      std: reshapeLike(std, like),
      count: [total],
    };
    for (const [name] of QUANTILES) {
      if (!entries.every((e) => e[name] !== undefined)) continue;
      const q = new Array<number>(dim).fill(0);
      for (const [i, e] of entries.entries()) {
        const v = flat(e[name]);
        for (let d = 0; d < dim; d++) q[d]! += (counts[i]! / total) * v[d]!;
      }
      entry[name] = reshapeLike(q, like);
    }
    out[key] = entry;
  }
  return out;
}

/**
 * The FAST action tokenizer (Pertsch et al. 2025, "FAST: Efficient Action Tokenization for VLAs"), as
 * π0-FAST uses it: an action chunk of H steps × D dims goes through an orthonormal DCT along time, its
 * coefficients are scaled and rounded, flattened low frequencies first, shifted to non-negative symbols
 * and compressed by byte-pair encoding. Smooth chunks put almost everything in the first few
 * frequencies, so the many zero coefficients after them merge into a handful of tokens.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describeValue, UserError } from '../config/errors.js';

export const FAST_FORMAT = 'vla-fast-tokenizer/1';
/** The tokenizer's file name, beside norm_stats.json in a checkpoint's or dataset's assets/<asset_id>/. */
export const FAST_TOKENIZER_FILE = 'fast_tokenizer.json';
/** Pair keys are left · vocabSize + right, which must stay an exact integer. */
const MAX_VOCAB = 1 << 24;

/** What fast_tokenizer.json holds. */
export interface FastTokenizerSpec {
  format: typeof FAST_FORMAT;
  horizon: number;
  actionDim: number;
  /** Coefficients are multiplied by this before rounding: larger is finer and needs more tokens. */
  scale: number;
  /** The vocabulary asked for: the alphabet plus at most vocabSize − alphabet merges. */
  vocabSize: number;
  /** The smallest and largest quantised coefficient seen in training; others are clamped to them. */
  minValue: number;
  maxValue: number;
  /** Merge i joins the pair into token id (maxValue − minValue + 1) + i. */
  merges: Array<[number, number]>;
  /** Filled by the trainer: how well its own training chunks come back. */
  report?: FastRoundTripReport;
}

export interface FastRoundTripReport {
  chunks: number;
  /** Per dim: the largest |decoded − original| over all chunks and steps. */
  maxAbsError: number[];
  /** Per dim: max − min of the data. */
  range: number[];
  /** Max over dims of maxAbsError / range (a dim with zero range counts its absolute error). */
  maxErrorOfRange: number;
  tokensPerChunk: { mean: number; max: number; p50: number };
  /** Quantised coefficients outside [minValue, maxValue], clamped to them. */
  clamped: number;
  /** How often each token id occurs in the chunks' encodings (a model's head starts from these: fastHeadPrior). */
  tokenCounts?: number[];
}

export interface FastEncoded {
  tokens: Int32Array;
  /** How many coefficients were clamped to [minValue, maxValue]. */
  clamped: number;
}

/** `padded`: coefficients a short decode lacked, taken as 0 (see decode's `padShort`). */
export type FastDecoded = { ok: true; actions: Float32Array; padded: number } | { ok: false; reason: string };

export interface FastTrainOptions {
  horizon: number;
  actionDim: number;
  scale: number;
  vocabSize: number;
  /** Called after each merge with the merges learned and the merges wanted. */
  onProgress?: (done: number, total: number) => void;
}

// ---- DCT ----

const bases = new Map<number, Float64Array>();

/** The orthonormal DCT-II matrix for h steps: C[k·h + t], row k a frequency, column t a step. */
function dctBasis(h: number): Float64Array {
  let c = bases.get(h);
  if (!c) {
    c = new Float64Array(h * h);
    for (let k = 0; k < h; k++) {
      const norm = Math.sqrt((k === 0 ? 1 : 2) / h);
      for (let t = 0; t < h; t++) c[k * h + t] = norm * Math.cos((Math.PI * (2 * t + 1) * k) / (2 * h));
    }
    bases.set(h, c);
  }
  return c;
}

/**
 * coef[k·d + j] = Σ_t C[k][t] · x[t·d + j]. Each dim is first copied out contiguously, so the inner loop
 * is a plain dot product.
 */
function forwardDct(x: ArrayLike<number>, h: number, d: number): Float64Array {
  const c = dctBasis(h);
  const out = new Float64Array(h * d);
  const column = new Float64Array(h);
  for (let j = 0; j < d; j++) {
    for (let t = 0; t < h; t++) column[t] = x[t * d + j]!;
    for (let k = 0; k < h; k++) {
      const row = k * h;
      let sum = 0;
      for (let t = 0; t < h; t++) sum += c[row + t]! * column[t]!;
      out[k * d + j] = sum;
    }
  }
  return out;
}

/** x[t·d + j] = Σ_k C[k][t] · coef[k·d + j]: C is orthonormal, so its transpose inverts it. */
function inverseDct(coef: ArrayLike<number>, h: number, d: number): Float64Array {
  const c = dctBasis(h);
  const out = new Float64Array(h * d);
  const column = new Float64Array(h);
  for (let j = 0; j < d; j++) {
    for (let k = 0; k < h; k++) column[k] = coef[k * d + j]!;
    for (let k = 0; k < h; k++) {
      const w = column[k]!;
      if (w === 0) continue;
      const row = k * h;
      for (let t = 0; t < h; t++) out[t * d + j]! += c[row + t]! * w;
    }
  }
  return out;
}

function checkShape(what: string, length: number, h: number, d: number): void {
  if (!Number.isInteger(h) || h < 1 || !Number.isInteger(d) || d < 1) {
    throw new Error(`${what}: expected positive integer steps and dims, got ${h} steps × ${d} dims`);
  }
  if (length !== h * d) {
    throw new Error(`${what}: expected ${h * d} values (${h} steps × ${d} dims), got ${length}`);
  }
}

/** Orthonormal DCT-II along time of a step-major [h, d] chunk; the result has the same layout, [k, d]. */
export function dct(x: Float32Array, h: number, d: number): Float32Array {
  checkShape('dct', x.length, h, d);
  return Float32Array.from(forwardDct(x, h, d));
}

/** The inverse of dct (an orthonormal DCT-III): [k, d] coefficients back to [h, d] values. */
export function idct(c: Float32Array, h: number, d: number): Float32Array {
  checkShape('idct', c.length, h, d);
  return Float32Array.from(inverseDct(c, h, d));
}

// ---- a binary min-heap ordered by (first, second) ----

class PairHeap {
  private first: Float64Array;
  private second: Float64Array;
  size = 0;

  constructor(capacity = 64) {
    this.first = new Float64Array(Math.max(capacity, 1));
    this.second = new Float64Array(Math.max(capacity, 1));
  }

  get topFirst(): number {
    return this.first[0]!;
  }

  get topSecond(): number {
    return this.second[0]!;
  }

  private less(i: number, j: number): boolean {
    const a = this.first[i]!;
    const b = this.first[j]!;
    return a < b || (a === b && this.second[i]! < this.second[j]!);
  }

  private swap(i: number, j: number): void {
    const f = this.first[i]!;
    this.first[i] = this.first[j]!;
    this.first[j] = f;
    const s = this.second[i]!;
    this.second[i] = this.second[j]!;
    this.second[j] = s;
  }

  push(first: number, second: number): void {
    if (this.size === this.first.length) {
      const f = new Float64Array(this.size * 2);
      f.set(this.first);
      this.first = f;
      const s = new Float64Array(this.size * 2);
      s.set(this.second);
      this.second = s;
    }
    let i = this.size++;
    this.first[i] = first;
    this.second[i] = second;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): void {
    const last = --this.size;
    this.first[0] = this.first[last]!;
    this.second[0] = this.second[last]!;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= last) break;
      const r = l + 1;
      const child = r < last && this.less(r, l) ? r : l;
      if (!this.less(child, i)) break;
      this.swap(i, child);
      i = child;
    }
  }
}

/**
 * Merge ranks by pair: open addressing over typed arrays, a few times faster than a Map in the encoder's
 * inner loop.
 */
class RankTable {
  private readonly lefts: Int32Array;
  private readonly rights: Int32Array;
  private readonly ranks: Int32Array;
  private readonly mask: number;

  constructor(merges: ReadonlyArray<readonly [number, number]>) {
    let size = 16;
    while (size < merges.length * 2) size *= 2;
    this.mask = size - 1;
    this.lefts = new Int32Array(size).fill(-1);
    this.rights = new Int32Array(size);
    this.ranks = new Int32Array(size);
    for (const [rank, [a, b]] of merges.entries()) {
      let slot = this.slot(a, b);
      while (this.lefts[slot] !== -1) slot = (slot + 1) & this.mask;
      this.lefts[slot] = a;
      this.rights[slot] = b;
      this.ranks[slot] = rank;
    }
  }

  private slot(a: number, b: number): number {
    return (Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x7f4a7c15, 0x85ebca77)) & this.mask;
  }

  /** The merge rank of the pair, or −1 if it is never merged. */
  get(a: number, b: number): number {
    for (let slot = this.slot(a, b); ; slot = (slot + 1) & this.mask) {
      const l = this.lefts[slot]!;
      if (l === -1) return -1;
      if (l === a && this.rights[slot] === b) return this.ranks[slot]!;
    }
  }
}

// ---- the spec ----

function checkSpec(raw: unknown, source: string): FastTokenizerSpec {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new UserError(`${source}: expected a FAST tokenizer spec (a map), got ${describeValue(raw)}`);
  }
  const s = raw as Record<string, unknown>;
  const fail = (field: string, expected: string, actual: unknown) =>
    new UserError(`${source}: ${field}: expected ${expected}, got ${describeValue(actual)}`);
  if (s['format'] !== FAST_FORMAT) throw fail('format', `"${FAST_FORMAT}"`, s['format']);
  const integer = (field: string, min: number, max: number, expected: string): number => {
    const v = s[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw fail(field, expected, v);
    return v;
  };
  const horizon = integer('horizon', 1, 1e6, 'a positive integer');
  const actionDim = integer('actionDim', 1, 1e6, 'a positive integer');
  const scale = s['scale'];
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale <= 0) {
    throw fail('scale', 'a positive number', scale);
  }
  const vocabSize = integer('vocabSize', 1, MAX_VOCAB, `an integer from 1 to ${MAX_VOCAB}`);
  const minValue = integer('minValue', -MAX_VOCAB, MAX_VOCAB, 'an integer');
  const maxValue = integer('maxValue', minValue, minValue + MAX_VOCAB, `an integer ≥ minValue (${minValue})`);
  const alphabet = maxValue - minValue + 1;
  if (alphabet > vocabSize) {
    throw fail(
      'vocabSize',
      `at least the alphabet of ${alphabet} symbols (${minValue}..${maxValue})`,
      vocabSize,
    );
  }
  const rawMerges = s['merges'];
  if (!Array.isArray(rawMerges)) throw fail('merges', 'a list of [left, right] token id pairs', rawMerges);
  if (rawMerges.length > vocabSize - alphabet) {
    throw fail(
      'merges',
      `at most ${vocabSize - alphabet} merges (vocabSize ${vocabSize} less the alphabet of ${alphabet})`,
      rawMerges,
    );
  }
  const seen = new Map<number, number>();
  const merges = rawMerges.map((m: unknown, i): [number, number] => {
    const below = alphabet + i;
    const isId = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < below;
    if (!Array.isArray(m) || m.length !== 2 || !isId(m[0]) || !isId(m[1])) {
      throw fail(
        `merges[${i}]`,
        `a pair of token ids below ${below} (the alphabet of ${alphabet} and the ${i} merges before it)`,
        m,
      );
    }
    const [a, b] = m as [number, number];
    const earlier = seen.get(a * vocabSize + b);
    if (earlier !== undefined) {
      throw new UserError(`${source}: merges[${i}]: [${a}, ${b}] repeats merges[${earlier}]`);
    }
    seen.set(a * vocabSize + b, i);
    return [a, b];
  });
  const report = s['report'];
  if (report !== undefined && (report === null || typeof report !== 'object' || Array.isArray(report))) {
    throw fail('report', 'a round-trip report (a map) or nothing', report);
  }
  const spec: FastTokenizerSpec = {
    format: FAST_FORMAT,
    horizon,
    actionDim,
    scale,
    vocabSize,
    minValue,
    maxValue,
    merges,
  };
  if (report) spec.report = structuredClone(report) as FastRoundTripReport;
  return spec;
}

// ---- the tokenizer ----

export class FastTokenizer {
  readonly spec: FastTokenizerSpec;
  /** Symbols 0..alphabet−1 are quantised values minValue..maxValue; merges follow. */
  private readonly alphabet: number;
  private readonly total: number;
  private readonly ranks: RankTable;
  /** For each merged token (id − alphabet): its two parts. */
  private readonly left: Int32Array;
  private readonly right: Int32Array;
  /** How many symbols each token id stands for (a double: a hostile spec can make it huge). */
  private readonly lengths: Float64Array;

  constructor(spec: FastTokenizerSpec, source = 'FAST tokenizer spec') {
    this.spec = checkSpec(spec, source);
    const { minValue, maxValue, merges } = this.spec;
    this.alphabet = maxValue - minValue + 1;
    this.total = this.alphabet + merges.length;
    this.left = new Int32Array(merges.length);
    this.right = new Int32Array(merges.length);
    this.lengths = new Float64Array(this.total).fill(1, 0, this.alphabet);
    this.ranks = new RankTable(merges);
    for (const [i, [a, b]] of merges.entries()) {
      this.left[i] = a;
      this.right[i] = b;
      this.lengths[this.alphabet + i] = this.lengths[a]! + this.lengths[b]!;
    }
  }

  /** Token ids in use: the alphabet and the merges (fewer than spec.vocabSize if training ran out of pairs). */
  get vocabSize(): number {
    return this.total;
  }

  /** How many quantised values token `id` stands for (a decoder's budget: a chunk holds H·D). */
  valuesOf(id: number): number {
    return this.lengths[id] ?? Number.POSITIVE_INFINITY;
  }

  /** The values in a chunk: H·D. */
  get chunkValues(): number {
    return this.spec.horizon * this.spec.actionDim;
  }

  private get shape(): string {
    const { horizon, actionDim } = this.spec;
    return `${horizon * actionDim} values (${horizon} steps × ${actionDim} dims)`;
  }

  /** The token ids of one normalised, step-major [horizon, actionDim] chunk. */
  encode(chunk: Float32Array): Int32Array {
    return this.encodeCounted(chunk).tokens;
  }

  /** encode, also counting the coefficients clamped to the trained range. */
  encodeCounted(chunk: Float32Array): FastEncoded {
    const { horizon, actionDim, scale, minValue, maxValue } = this.spec;
    const n = horizon * actionDim;
    if (chunk.length !== n) {
      throw new UserError(
        `FAST tokenizer: expected an action chunk of ${this.shape}, got ${chunk.length} values`,
      );
    }
    checkFinite(chunk, actionDim, 'FAST tokenizer: action chunk');
    const coef = forwardDct(chunk, horizon, actionDim);
    const symbols = new Int32Array(n);
    let clamped = 0;
    for (let i = 0; i < n; i++) {
      let q = Math.round(coef[i]! * scale);
      if (q < minValue || q > maxValue) {
        q = q < minValue ? minValue : maxValue;
        clamped++;
      }
      symbols[i] = q - minValue;
    }
    return { tokens: this.applyMerges(symbols), clamped };
  }

  /**
   * Standard BPE: the lowest-ranked adjacent pair first, equal pairs left to right. A pair that a merge
   * creates holds the new token, so its rank is above the one being merged: ranks come up in order, and a
   * bucket per rank (a linked list of left positions) replaces a priority queue. Positions that an earlier
   * merge changed are checked against the rank's pair and skipped.
   */
  private applyMerges(symbols: Int32Array): Int32Array {
    const n = symbols.length;
    const { ranks, left, right, alphabet } = this;
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    // Bucket r: first[r] → entries linked by link[], each holding a position in at[].
    const first = new Int32Array(left.length).fill(-1);
    const at = new Int32Array(3 * n);
    const link = new Int32Array(3 * n);
    let entries = 0;
    let lowest = left.length;
    let highest = -1;
    const add = (rank: number, position: number) => {
      at[entries] = position;
      link[entries] = first[rank]!;
      first[rank] = entries++;
      if (rank < lowest) lowest = rank;
      if (rank > highest) highest = rank;
    };
    // Added back to front, so each bucket's list of initial positions runs left to right.
    for (let i = n - 1; i >= 0; i--) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
      if (i + 1 < n) {
        const r = ranks.get(symbols[i]!, symbols[i + 1]!);
        if (r >= 0) add(r, i);
      }
    }
    let alive = n;
    const run: number[] = [];
    for (let rank = lowest; rank <= highest; rank++) {
      const a = left[rank]!;
      const b = right[rank]!;
      const z = alphabet + rank;
      run.length = 0;
      for (let e = first[rank]!; e >= 0; e = link[e]!) run.push(at[e]!);
      // "a a a" must become (a a) a: positions ascending. Only a run of one symbol can overlap itself.
      if (a === b && run.length > 1) run.sort((x, y) => x - y);
      for (const i of run) {
        const j = next[i]!;
        if (symbols[i] !== a || j < 0 || symbols[j] !== b) continue;
        const k = next[j]!;
        symbols[i] = z;
        symbols[j] = -1;
        alive--;
        next[i] = k;
        if (k >= 0) prev[k] = i;
        const p = prev[i]!;
        if (p >= 0) {
          const r = ranks.get(symbols[p]!, z);
          if (r >= 0) add(r, p);
        }
        if (k >= 0) {
          const r = ranks.get(z, symbols[k]!);
          if (r >= 0) add(r, i);
        }
      }
    }
    const tokens = new Int32Array(alive);
    for (let i = 0, o = 0; i >= 0 && i < n; i = next[i]!) tokens[o++] = symbols[i]!;
    return tokens;
  }

  /**
   * The chunk back from its tokens. `padShort`: tokens that decode to fewer than H·D values still make a
   * chunk, the missing values taken as 0. They are the last in the layout, the highest frequencies, which
   * are mostly 0 in the data anyway, so the chunk is its low-pass version. More than H·D values, or an id
   * outside the vocabulary, is never a chunk.
   */
  decode(tokens: ArrayLike<number>, opts: { padShort?: boolean } = {}): FastDecoded {
    const { horizon, actionDim, scale, minValue } = this.spec;
    const n = horizon * actionDim;
    let count = 0;
    for (let i = 0; i < tokens.length; i++) {
      const id = tokens[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.total) {
        return {
          ok: false,
          reason: `token ${i} is ${id}, outside the vocabulary 0..${this.total - 1}; expected ${this.shape}`,
        };
      }
      count += this.lengths[id]!;
    }
    if (count > n || (count < n && !opts.padShort)) {
      return { ok: false, reason: `decoded ${count} values, expected ${this.shape}` };
    }
    const coef = new Float64Array(n);
    const stack: number[] = [];
    let o = 0;
    for (let i = 0; i < tokens.length; i++) {
      stack.push(tokens[i]!);
      while (stack.length > 0) {
        const id = stack.pop()!;
        if (id < this.alphabet) {
          coef[o++] = (id + minValue) / scale;
        } else {
          stack.push(this.right[id - this.alphabet]!, this.left[id - this.alphabet]!);
        }
      }
    }
    return { ok: true, actions: Float32Array.from(inverseDct(coef, horizon, actionDim)), padded: n - count };
  }

  /** Encodes and decodes each chunk: the error per dim, the token counts, the clamps. */
  roundTrip(chunks: Float32Array[]): FastRoundTripReport {
    const d = this.spec.actionDim;
    const maxAbsError = new Array<number>(d).fill(0);
    const lo = new Array<number>(d).fill(Number.POSITIVE_INFINITY);
    const hi = new Array<number>(d).fill(Number.NEGATIVE_INFINITY);
    const counts: number[] = [];
    const tokenCounts = new Array<number>(this.vocabSize).fill(0);
    let clamped = 0;
    for (const [c, chunk] of chunks.entries()) {
      const encoded = this.encodeCounted(chunk);
      clamped += encoded.clamped;
      counts.push(encoded.tokens.length);
      for (const t of encoded.tokens) tokenCounts[t]!++;
      const decoded = this.decode(encoded.tokens);
      if (!decoded.ok)
        throw new Error(`FAST tokenizer: chunk ${c} does not decode its own tokens: ${decoded.reason}`);
      for (let i = 0; i < chunk.length; i += d) {
        for (let j = 0; j < d; j++) {
          const v = chunk[i + j]!;
          const e = Math.abs(decoded.actions[i + j]! - v);
          if (e > maxAbsError[j]!) maxAbsError[j] = e;
          if (v < lo[j]!) lo[j] = v;
          if (v > hi[j]!) hi[j] = v;
        }
      }
    }
    const range = chunks.length > 0 ? hi.map((h, j) => h - lo[j]!) : new Array<number>(d).fill(0);
    const maxErrorOfRange = Math.max(0, ...maxAbsError.map((e, j) => (range[j]! > 0 ? e / range[j]! : e)));
    const sorted = counts.toSorted((a, b) => a - b);
    const tokensPerChunk = {
      mean: counts.length > 0 ? counts.reduce((a, b) => a + b, 0) / counts.length : 0,
      max: sorted.at(-1) ?? 0,
      p50: sorted[(sorted.length - 1) >> 1] ?? 0,
    };
    return {
      chunks: chunks.length,
      maxAbsError,
      range,
      maxErrorOfRange,
      tokensPerChunk,
      clamped,
      tokenCounts,
    };
  }

  toJSON(): FastTokenizerSpec {
    return structuredClone(this.spec);
  }
}

function checkFinite(chunk: ArrayLike<number>, d: number, what: string): void {
  for (let i = 0; i < chunk.length; i++) {
    if (!Number.isFinite(chunk[i])) {
      throw new UserError(
        `${what}: step ${Math.floor(i / d)}, dim ${i % d}: expected a finite number, got ${chunk[i]}`,
      );
    }
  }
}

// ---- training ----

/**
 * Learns minValue/maxValue from the quantised DCT coefficients of the chunks, then BPE merges until
 * vocabSize tokens (or until no pair occurs twice), and fills the spec's report from a round trip of
 * the same chunks.
 */
export function trainFastTokenizer(chunks: Float32Array[], opts: FastTrainOptions): FastTokenizer {
  const what = 'FAST tokenizer training';
  const positive = (field: 'horizon' | 'actionDim' | 'vocabSize', max: number) => {
    const v = opts[field];
    if (!Number.isInteger(v) || v < 1 || v > max) {
      throw new UserError(`${what}: ${field}: expected an integer from 1 to ${max}, got ${describeValue(v)}`);
    }
    return v;
  };
  const horizon = positive('horizon', 1e6);
  const actionDim = positive('actionDim', 1e6);
  const vocabSize = positive('vocabSize', MAX_VOCAB);
  const { scale } = opts;
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale <= 0) {
    throw new UserError(`${what}: scale: expected a positive number, got ${describeValue(scale)}`);
  }
  if (chunks.length === 0) throw new UserError(`${what}: expected at least one action chunk, got none`);
  const n = horizon * actionDim;
  const quantised = new Float64Array(chunks.length * n);
  let minValue = Number.POSITIVE_INFINITY;
  let maxValue = Number.NEGATIVE_INFINITY;
  for (const [c, chunk] of chunks.entries()) {
    if (chunk.length !== n) {
      throw new UserError(
        `${what}: chunk ${c}: expected ${n} values (${horizon} steps × ${actionDim} dims), got ${chunk.length}`,
      );
    }
    checkFinite(chunk, actionDim, `${what}: chunk ${c}`);
    const coef = forwardDct(chunk, horizon, actionDim);
    for (let i = 0; i < n; i++) {
      const q = Math.round(coef[i]! * scale);
      quantised[c * n + i] = q;
      if (q < minValue) minValue = q;
      if (q > maxValue) maxValue = q;
    }
  }
  // -0 would survive JSON as 0 anyway; keep the spec's numbers plain.
  minValue += 0;
  maxValue += 0;
  const alphabet = maxValue - minValue + 1;
  if (alphabet > vocabSize) {
    throw new UserError(
      `${what}: vocabSize: expected at least ${alphabet}, the alphabet of quantised DCT coefficients ` +
        `from ${minValue} to ${maxValue} at scale ${scale}, got ${vocabSize}: raise vocabSize or lower scale`,
    );
  }
  const symbols = new Int32Array(quantised.length);
  for (let i = 0; i < symbols.length; i++) symbols[i] = quantised[i]! - minValue;
  const merges = learnMerges(symbols, n, alphabet, vocabSize, opts.onProgress);
  const tokenizer = new FastTokenizer({
    format: FAST_FORMAT,
    horizon,
    actionDim,
    scale,
    vocabSize,
    minValue,
    maxValue,
    merges,
  });
  return new FastTokenizer({ ...tokenizer.spec, report: tokenizer.roundTrip(chunks) });
}

interface PairStats {
  count: number;
  /** Left positions where the pair occurred (some since merged away: checked when used), ascending. */
  where: number[];
}

/**
 * BPE training over sequences of `length` symbols laid end to end. Pair counts are kept incrementally:
 * a merge only visits the positions of the merged pair and adjusts the counts of its neighbours' pairs.
 * The most frequent pair comes from a lazy heap of (−count, key): counts only fall after an entry is
 * pushed, except for pairs holding the new token, which are pushed after each merge, so an entry whose
 * count no longer matches is pushed again with its current count. Ties go to the smallest (left, right).
 */
function learnMerges(
  symbols: Int32Array,
  length: number,
  alphabet: number,
  vocabSize: number,
  onProgress?: (done: number, total: number) => void,
): Array<[number, number]> {
  const n = symbols.length;
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const t = i % length;
    prev[i] = t > 0 ? i - 1 : -1;
    next[i] = t < length - 1 ? i + 1 : -1;
  }
  const V = vocabSize;
  const pairs = new Map<number, PairStats>();
  for (let i = 0; i < n; i++) {
    const j = next[i]!;
    if (j < 0) continue;
    const key = symbols[i]! * V + symbols[j]!;
    const p = pairs.get(key);
    if (p) {
      p.count++;
      p.where.push(i);
    } else {
      pairs.set(key, { count: 1, where: [i] });
    }
  }
  const heap = new PairHeap();
  for (const [key, p] of pairs) heap.push(-p.count, key);

  const wanted = vocabSize - alphabet;
  const merges: Array<[number, number]> = [];
  const touched = new Set<number>();
  const drop = (key: number) => {
    const p = pairs.get(key)!;
    if (--p.count === 0) pairs.delete(key);
  };
  const add = (key: number, at: number) => {
    const p = pairs.get(key);
    if (p) {
      p.count++;
      p.where.push(at);
    } else {
      pairs.set(key, { count: 1, where: [at] });
    }
    touched.add(key);
  };
  while (merges.length < wanted && heap.size > 0) {
    const count = -heap.topFirst;
    const key = heap.topSecond;
    heap.pop();
    const pair = pairs.get(key);
    if (!pair || pair.count !== count) {
      if (pair) heap.push(-pair.count, key);
      continue;
    }
    if (count < 2) break;
    const a = Math.floor(key / V);
    const b = key - a * V;
    const z = alphabet + merges.length;
    merges.push([a, b]);
    // A run like "a a a" must merge left to right; positions are ascending, but make sure for runs.
    if (a === b) pair.where.sort((x, y) => x - y);
    touched.clear();
    for (const i of pair.where) {
      if (symbols[i] !== a) continue;
      const j = next[i]!;
      if (j < 0 || symbols[j] !== b) continue;
      const p = prev[i]!;
      const k = next[j]!;
      if (p >= 0) drop(symbols[p]! * V + a);
      if (k >= 0) drop(b * V + symbols[k]!);
      symbols[i] = z;
      symbols[j] = -1;
      next[i] = k;
      if (k >= 0) prev[k] = i;
      if (p >= 0) add(symbols[p]! * V + z, p);
      if (k >= 0) add(z * V + symbols[k]!, i);
    }
    pairs.delete(key);
    for (const t of touched) {
      const p = pairs.get(t);
      if (p) heap.push(-p.count, t);
    }
    onProgress?.(merges.length, wanted);
  }
  return merges;
}

// ---- files ----

export function readFastTokenizer(file: string): FastTokenizer {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: cannot read the FAST tokenizer (${(e as Error).message})`);
  }
  return new FastTokenizer(raw as FastTokenizerSpec, file);
}

/** Atomic: a temporary file in the same folder, then a rename. One merge per line, for diffs. */
export function writeFastTokenizer(file: string, t: FastTokenizer): void {
  const { merges, ...rest } = t.toJSON();
  const head = JSON.stringify(rest, null, 2).replace(/\n}$/, '');
  const body = merges.length > 0 ? `[\n${merges.map(([a, b]) => `    [${a}, ${b}]`).join(',\n')}\n  ]` : '[]';
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, `${head},\n  "merges": ${body}\n}\n`);
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * The KV-cached sampler (sampler.ts) run outside TensorFlow.js's op-by-op engine, for one chunk's
 * latency: the same arithmetic on the same rearranged weights (`samplingWeights`), every product an
 * OpenBLAS sgemm on memory in place and every element-wise pass a WASM SIMD kernel (fused.wat), with
 * no op dispatch between them, optionally split over two threads.
 *
 * Two threads split every transformer block by heads (tensor parallelism): each computes the queries,
 * keys and values of half the heads, their attention, and that half's share of the output projection;
 * the two shares are summed (an exchange through shared memory); likewise the MLP by halves of its
 * hidden units. Both threads then hold the same residual stream, bit for bit (both sum in the same
 * order), and compute the small per-token steps (embeddings, norms) themselves rather than wait for each
 * other: two exchanges a block, ~100 a chunk of the `small` model.
 *
 * Why: at batch 1 a chunk is ~800 kernels of 10–300 µs; between them TensorFlow.js's engine bookkeeping
 * and a second core left idle (OpenBLAS's own threads lose more than they gain at these sizes, see
 * blas.ts). Measured numbers: `npm run bench -- native`.
 *
 * Memory: one shared WebAssembly memory holds the weights (each thread's shard), the inputs, the
 * caches and each thread's scratch; the worker thread (rank 1) gets the same memory and a layout of
 * offsets, and the threads meet at barriers on an Int32Array in it.
 */
import os from 'node:os';
import type { Worker } from 'node:worker_threads';
import { type Blas, loadBlas, NO_TRANS, type Precision, TRANS, useProducts } from '../backend/native/blas.js';
import { type FusedExports, loadFused, RMS_EPS } from '../backend/native/fused.js';
import { startWorker } from '../threads.js';
import { type Committed, checkCommitted, withCommitted } from './committed.js';
import type { ModelDims } from './config.js';
import { checkModelInputs, type ModelInputs, patchifyInto } from './inputs.js';
import { keyBiasInto, prefixValidity, promptPooling } from './masks.js';
import type { SamplingWeights } from './sampler.js';

/** The parts of the WebAssembly API used here (this project's TypeScript lib has no DOM types). */
interface SharedMemory {
  buffer: SharedArrayBuffer;
}
const WA = (
  globalThis as unknown as {
    WebAssembly: { Memory: new (d: { initial: number; maximum: number; shared: boolean }) => SharedMemory };
  }
).WebAssembly;

/** One transformer block's shard for one rank: float offsets into the arena. */
interface BlockShard {
  /** [in, 3·W/P] (q | k | v of this rank's heads), or [in, 2·W/P] for a keys-and-values-only block. */
  qkv: number;
  kvOnly: boolean;
  /** [W/P, out] rows of the output projection for this rank's heads. */
  o: number;
  /** [in, M/P] and [M/P, out]: this rank's hidden units of the MLP. */
  up: number;
  down: number;
  /** Input (= output) width and this rank's hidden units. */
  width: number;
  mlp: number;
}

/** Offsets (floats) of everything in the arena, and the sizes they were made for. Plain data: posted to the worker. */
export interface Layout {
  dims: ModelDims;
  parts: number;
  /** Largest batch the scratch buffers hold. */
  maxBatch: number;
  cameras: number;
  maxPromptLen: number;
  /** Weights every rank reads whole, by sampling-weight name. */
  shared: Record<string, number>;
  /** Per rank, per block name: its shard. */
  blocks: Array<Record<string, BlockShard>>;
  /** Inputs rank 0 writes before a job. */
  input: {
    patches: number;
    /** Int32 view: prompt ids [B·L]. */
    ids: number;
    /** Int32 view: prompt mask [B·L], image mask [B·cams], then the job's header (see JOB). */
    masks: number;
    state: number;
    noise: number;
    /** Flow-time embeddings [steps, B, E] of every step. */
    times: number;
    /** The flow-time embedding of t = 0 [E], which committed steps keep (training-time real-time chunking). */
    time0: number;
    /** Int32 view: each sample's committed steps [B] (0: none). */
    delays: number;
    maxSteps: number;
  };
  /** Per rank: scratch buffers and caches. */
  scratch: Array<{
    x: number;
    /** The noisy chunk x_t [B·H, A], and each step's velocity·dt before it is added. */
    y: number;
    out: number;
    norm: number;
    rinv: number;
    qkv: number;
    att: number;
    hidden: number;
    scores: number;
    /** The key bias hiding the prefix's padding [B, keys], for the phase running (prefix, state, actions). */
    bias: number;
    tokens: number;
    film: number;
    /** time0 through the expert's time projection [E]. */
    time0: number;
    /** Per layer: keys | values [B·(Tp + 1 + H), 2·W/P] of the prefix, state and action tokens (this rank's heads). */
    cache: number[];
    /** Two exchange buffers [rows, width] (alternating), read by the other rank. */
    exchange: [number, number];
  }>;
  /** Int32 index of the control words (barrier counters, job counter, error flag). */
  control: number;
  /** Floats in the arena. */
  size: number;
  /** A barrier that waits this long (ms) means the other thread is gone. */
  stallMs: number;
}

/** Control words (Int32, from layout.control): each rank's barrier count, the job count, an error flag and the job header. */
const BARRIER = 0;
const JOB = 2;
const FAILED = 3;
const HEADER = 4;
/** Spins before a barrier sleeps in Atomics.wait: a block's other half usually arrives within microseconds. */
const SPINS = 20000;
/** A barrier that waits this long (ms) means the other thread is gone (a chunk takes ~25 ms). */
const STALL_MS = 10_000;

const align = (n: number) => Math.ceil(n / 16) * 16;

/**
 * Plans the arena for `dims` split over `parts` threads, `maxBatch` observations of `cameras` images and
 * prompts of up to `maxPromptLen` tokens, and up to `maxSteps` flow steps.
 */
export function planLayout(
  dims: ModelDims,
  sw: SamplingWeights,
  parts: number,
  maxBatch: number,
  cameras: number,
  maxPromptLen: number,
  maxSteps: number,
): Layout {
  const d = dims;
  const why = nativeSamplerUnavailable(d, parts);
  if (why) throw new Error(`native sampler: ${why}`);
  let top = 0;
  const alloc = (n: number) => {
    const at = top;
    top += align(n);
    return at;
  };
  const size = (name: string) => {
    const t = sw.get(name);
    if (!t) throw new Error(`native sampler: sampling weight ${name} is missing`);
    return t.size;
  };
  const shared: Record<string, number> = {};
  for (const [name, t] of sw) if (!/block_\d+\//.test(name)) shared[name] = alloc(t.size);
  const blockNames = [
    ...new Set([...sw.keys()].filter((n) => /block_\d+\//.test(n)).map((n) => n.replace(/\/[^/]+$/, ''))),
  ];
  const W = d.heads * d.headDim;
  const blocks: Array<Record<string, BlockShard>> = [];
  for (let r = 0; r < parts; r++) {
    const mine: Record<string, BlockShard> = {};
    for (const g of blockNames) {
      const kvOnly = sw.has(`${g}/kv`);
      const width = sw.get(kvOnly ? `${g}/kv` : `${g}/qkv`)!.shape[0]!;
      const mlpAll = kvOnly ? 0 : sw.get(`${g}/up`)!.shape[1]!;
      const mlp = mlpAll / parts;
      mine[g] = {
        qkv: alloc((width * (kvOnly ? 2 : 3) * W) / parts),
        kvOnly,
        o: kvOnly ? -1 : alloc(((W / parts) * size(`${g}/o`)) / W),
        up: kvOnly ? -1 : alloc(width * mlp),
        down: kvOnly ? -1 : alloc(mlp * width),
        width,
        mlp,
      };
    }
    blocks.push(mine);
  }
  const n = (d.imageSize / d.patchSize) ** 2;
  const length = cameras * n + maxPromptLen;
  const maxRows = maxBatch * Math.max(cameras * n, length, d.horizon);
  const maxWidth = Math.max(d.width, d.expertWidth);
  const maxMlp = Math.max(d.mlpDim, d.expertMlpDim) / parts;
  const maxT = Math.max(n, length, d.horizon);
  const maxKeys = Math.max(n, length, length + 1 + d.horizon);
  const patchDim = d.patchSize * d.patchSize * 3;
  const input = {
    patches: alloc(maxBatch * cameras * n * patchDim),
    ids: alloc(maxBatch * maxPromptLen),
    masks: alloc(maxBatch * maxPromptLen + maxBatch * cameras),
    state: alloc(maxBatch * d.actionDim),
    noise: alloc(maxBatch * d.horizon * d.actionDim),
    times: alloc(maxSteps * maxBatch * d.expertWidth),
    time0: alloc(d.expertWidth),
    delays: alloc(maxBatch),
    maxSteps,
  };
  const scratch: Layout['scratch'] = [];
  for (let r = 0; r < parts; r++) {
    scratch.push({
      x: alloc(maxRows * maxWidth),
      y: alloc(maxBatch * d.horizon * d.actionDim),
      out: alloc(maxBatch * d.horizon * d.actionDim),
      norm: alloc(maxRows * maxWidth),
      rinv: alloc(maxRows),
      qkv: alloc((maxRows * 3 * W) / parts),
      att: alloc((maxRows * W) / parts),
      hidden: alloc(maxRows * maxMlp),
      scores: alloc(maxT * maxKeys),
      bias: alloc(maxBatch * maxKeys),
      tokens: alloc(maxBatch * maxPromptLen * d.width),
      film: alloc(maxBatch * 3 * d.width),
      time0: alloc(d.expertWidth),
      cache: Array.from({ length: d.depth }, () =>
        alloc((maxBatch * (length + 1 + d.horizon) * 2 * W) / parts),
      ),
      exchange: [alloc(maxRows * maxWidth), alloc(maxRows * maxWidth)],
    });
  }
  const control = alloc(16);
  return {
    dims: d,
    parts,
    maxBatch,
    cameras,
    maxPromptLen,
    shared,
    blocks,
    input,
    scratch,
    control,
    size: top,
    stallMs: STALL_MS,
  };
}

/** Copies the sampling weights into the arena: whole, or each rank's shard of each block. */
async function fillWeights(f32: Float32Array, layout: Layout, sw: SamplingWeights): Promise<void> {
  const W = layout.dims.heads * layout.dims.headDim;
  const P = layout.parts;
  for (const [name, at] of Object.entries(layout.shared))
    f32.set((await sw.get(name)!.data()) as Float32Array, at);
  for (let r = 0; r < P; r++) {
    for (const [g, s] of Object.entries(layout.blocks[r]!)) {
      // Columns [groups of W] → this rank's W/P of each group.
      const kernel = sw.get(`${g}/${s.kvOnly ? 'kv' : 'qkv'}`)!;
      const src = (await kernel.data()) as Float32Array;
      const cols = kernel.shape[1]!;
      const groups = cols / W;
      const wp = W / P;
      for (let i = 0; i < s.width; i++)
        for (let gi = 0; gi < groups; gi++)
          f32.set(
            src.subarray(i * cols + gi * W + r * wp, i * cols + gi * W + (r + 1) * wp),
            s.qkv + i * groups * wp + gi * wp,
          );
      if (s.kvOnly) continue;
      const o = (await sw.get(`${g}/o`)!.data()) as Float32Array;
      f32.set(o.subarray(r * wp * s.width, (r + 1) * wp * s.width), s.o);
      const up = sw.get(`${g}/up`)!;
      const upv = (await up.data()) as Float32Array;
      const mAll = up.shape[1]!;
      for (let i = 0; i < s.width; i++)
        f32.set(upv.subarray(i * mAll + r * s.mlp, i * mAll + (r + 1) * s.mlp), s.up + i * s.mlp);
      const down = (await sw.get(`${g}/down`)!.data()) as Float32Array;
      f32.set(down.subarray(r * s.mlp * s.width, (r + 1) * s.mlp * s.width), s.down);
    }
  }
}

/** A job's header: what rank 0 tells the others besides the inputs. */
interface Job {
  batch: number;
  promptLen: number;
  steps: number;
}

/**
 * One rank's computation over the arena. Rank 0 runs on the caller's thread, the others in workers;
 * every rank runs the same code and meets the others at `allReduce`.
 */
export class Engine {
  private readonly f32: Float32Array;
  private readonly i32: Int32Array;
  private readonly views = new Map<number, Float32Array>();
  private barriers = 0;
  private readonly s: Layout['scratch'][number];
  private readonly blocks: Record<string, BlockShard>;

  constructor(
    memory: SharedMemory,
    private readonly layout: Layout,
    private readonly rank: number,
    private readonly blas: Blas,
    private readonly k: FusedExports,
  ) {
    this.f32 = new Float32Array(memory.buffer);
    this.i32 = new Int32Array(memory.buffer);
    this.s = layout.scratch[rank]!;
    this.blocks = layout.blocks[rank]!;
  }

  /** A view of the arena from float `at` on (kept: sgemm takes views, and ~4,000 calls a chunk add up). */
  private v(at: number): Float32Array {
    let view = this.views.get(at);
    if (!view) {
      view = this.f32.subarray(at);
      this.views.set(at, view);
    }
    return view;
  }

  /** C[m,n] = beta·C + A[m,k]·B[k,n] (row-major, leading dimensions given). */
  private gemm(
    m: number,
    n: number,
    k: number,
    a: number,
    lda: number,
    b: number,
    ldb: number,
    c: number,
    ldc: number,
    beta = 0,
    transB = false,
  ): void {
    if (m === 0 || n === 0) return;
    if (k === 0) {
      if (beta === 0) for (let i = 0; i < m; i++) this.f32.fill(0, c + i * ldc, c + i * ldc + n);
      return;
    }
    this.blas.sgemm(
      NO_TRANS,
      transB ? TRANS : NO_TRANS,
      m,
      n,
      k,
      1,
      this.v(a),
      lda,
      this.v(b),
      ldb,
      beta,
      this.v(c),
      ldc,
    );
  }

  /** Rows of x / rms(x) into out. */
  private normalize(x: number, out: number, rows: number, cols: number): void {
    this.k.rms_norm(x * 4, 0, out * 4, this.s.rinv * 4, rows, cols, RMS_EPS);
  }

  /** Waits until every rank has arrived here as often as this one. */
  private barrier(): void {
    const P = this.layout.parts;
    if (P === 1) return;
    const c = this.layout.control;
    const n = ++this.barriers;
    Atomics.store(this.i32, c + BARRIER + this.rank, n);
    Atomics.notify(this.i32, c + BARRIER + this.rank);
    for (let r = 0; r < P; r++) {
      if (r === this.rank) continue;
      let spins = 0;
      let waited = 0;
      for (;;) {
        const seen = Atomics.load(this.i32, c + BARRIER + r);
        if (seen >= n) break;
        if (Atomics.load(this.i32, c + FAILED) !== 0)
          throw new Error('native sampler: the other thread failed');
        if (++spins < SPINS) continue;
        const t = Date.now();
        Atomics.wait(this.i32, c + BARRIER + r, seen, 50);
        waited += Date.now() - t;
        if (waited > this.layout.stallMs)
          throw new Error(`native sampler: the other thread has not answered in ${this.layout.stallMs} ms`);
      }
    }
  }

  /**
   * x [rows, cols] += the ranks' partial sums, which each rank has put in its exchange buffer `at`
   * (the same order on every rank: every rank's x stays identical). One rank: its partial went into x.
   */
  private allReduce(x: number, rows: number, cols: number, slot: number): void {
    const P = this.layout.parts;
    if (P === 1) return;
    this.barrier();
    for (let r = 0; r < P; r++)
      this.k.add_to(x * 4, this.layout.scratch[r]!.exchange[slot]! * 4, rows * cols);
  }

  /** Where this rank puts a partial sum for x: x itself (one rank, summed by beta = 1) or an exchange buffer. */
  private partial(x: number): { at: number; beta: number; slot: number } {
    if (this.layout.parts === 1) return { at: x, beta: 1, slot: 0 };
    const slot = this.barriers & 1;
    return { at: this.s.exchange[slot]!, beta: 0, slot };
  }

  /**
   * One block over x [rows, width] in place: `batches` groups of T tokens. Their keys and values go to
   * the cache, rows [at, at + T) of each group's segment (`stride` rows apart), and each token attends to
   * its segment's first at + T rows (cached tokens, then the group's own): one product for the scores and
   * one for the output per head. With `bias`, the arena's bias buffer [batches, at + T] adds over keys.
   */
  private block(
    g: string,
    x: number,
    batches: number,
    T: number,
    cache: number,
    at: number,
    stride: number,
    bias: boolean,
  ): void {
    const b = this.blocks[g];
    if (!b) throw new Error(`native sampler: block ${g} is missing`);
    const d = this.layout.dims;
    const wp = (d.heads * d.headDim) / this.layout.parts;
    const hp = d.heads / this.layout.parts;
    const hd = d.headDim;
    const rows = batches * T;
    const s = this.s;
    const width = b.width;
    const cols = b.kvOnly ? 2 * wp : 3 * wp;
    this.normalize(x, s.norm, rows, width);
    this.gemm(rows, cols, width, s.norm, width, b.qkv, cols, s.qkv, cols);
    const kvCols = 2 * wp;
    const off = b.kvOnly ? 0 : wp;
    for (let i = 0; i < batches; i++)
      for (let t = 0; t < T; t++) {
        const src = s.qkv + (i * T + t) * cols + off;
        this.f32.copyWithin(cache + (i * stride + at + t) * kvCols, src, src + kvCols);
      }
    if (b.kvOnly) return;
    const keys = at + T;
    const sc = s.scores;
    for (let i = 0; i < batches; i++) {
      for (let h = 0; h < hp; h++) {
        const q = s.qkv + i * T * cols + h * hd;
        const k = cache + i * stride * kvCols + h * hd;
        this.gemm(T, keys, hd, q, cols, k, kvCols, sc, keys, 0, true);
        if (bias)
          for (let t = 0; t < T; t++) this.k.add_to((sc + t * keys) * 4, (s.bias + i * keys) * 4, keys);
        this.k.softmax_rows(sc * 4, T, keys, keys);
        this.gemm(T, hd, keys, sc, keys, k + wp, kvCols, s.att + i * T * wp + h * hd, wp);
      }
    }
    let p = this.partial(x);
    this.gemm(rows, width, wp, s.att, wp, b.o, width, p.at, width, p.beta);
    this.allReduce(x, rows, width, p.slot);
    this.normalize(x, s.norm, rows, width);
    this.gemm(rows, b.mlp, width, s.norm, width, b.up, b.mlp, s.hidden, b.mlp);
    this.k.x_sigmoid(s.hidden * 4, s.hidden * 4, rows * b.mlp, 1.702);
    p = this.partial(x);
    this.gemm(rows, width, b.mlp, s.hidden, b.mlp, b.down, width, p.at, width, p.beta);
    this.allReduce(x, rows, width, p.slot);
  }

  private w(name: string): number {
    const at = this.layout.shared[name];
    if (at === undefined) throw new Error(`native sampler: sampling weight ${name} is missing`);
    return at;
  }

  /** rows [rows, cols] += bias [cols] (or [per, cols] repeating every `per` rows). */
  private addRows(x: number, rows: number, cols: number, bias: number, per = 1): void {
    const f = this.f32;
    for (let r = 0; r < rows; r++) {
      const b = bias + (r % per) * cols;
      const o = x + r * cols;
      for (let j = 0; j < cols; j++) f[o + j]! += f[b + j]!;
    }
  }

  /** Writes the key bias of the phase about to run into the arena (keyBiasInto); whether there is one. */
  private keyBias(valid: Uint8Array, b: number, p: number, extra: number): boolean {
    return keyBiasInto(this.f32.subarray(this.s.bias, this.s.bias + b * (p + extra)), valid, b, p, extra);
  }

  /** Reads the job header rank 0 wrote. */
  job(): Job {
    const h = this.layout.control + HEADER;
    return { batch: this.i32[h]!, promptLen: this.i32[h + 1]!, steps: this.i32[h + 2]! };
  }

  /** One chunk: the prefix, the state token, then the flow steps; the result is in this rank's `y`. */
  run(job: Job): void {
    const L = this.layout;
    const d = L.dims;
    const s = this.s;
    const f = this.f32;
    const { batch: b, promptLen: l, steps } = job;
    const c = L.cameras;
    const n = (d.imageSize / d.patchSize) ** 2;
    const W = d.width;
    const E = d.expertWidth;
    const images = b * c;
    const patchDim = d.patchSize * d.patchSize * 3;
    const promptMask = this.i32.subarray(L.input.masks, L.input.masks + b * l);
    const imageMask = this.i32.subarray(L.input.masks + b * l, L.input.masks + b * l + b * c);
    const ids = this.i32.subarray(L.input.ids, L.input.ids + b * l);

    // Prompt tokens: embedding rows (zero for padding) + positions.
    const tok = s.tokens;
    const emb = this.w('prefix/token_embedding');
    const pos = this.w('prefix/prompt_pos_embedding');
    for (let r = 0; r < b * l; r++) {
      const o = tok + r * W;
      const pp = pos + (r % l) * W;
      if (promptMask[r]) {
        const e = emb + ids[r]! * W;
        for (let j = 0; j < W; j++) f[o + j] = f[e + j]! + f[pp + j]!;
      } else for (let j = 0; j < W; j++) f[o + j] = f[pp + j]!;
    }

    // Patches → patch embeddings + positions (+ the prompt's FiLM) → the vision blocks.
    const v = s.x;
    this.gemm(images * n, W, patchDim, L.input.patches, patchDim, this.w('vision/patch_embed'), W, v, W);
    this.addRows(v, images * n, W, this.w('vision/patch_bias'));
    this.addRows(v, images * n, W, this.w('vision/pos_embedding'), n);
    if (d.promptFilm) {
      const pool = promptPooling({ batch: b, promptLen: l, promptMask: Uint8Array.from(promptMask) });
      const pooled = s.film;
      f.fill(0, pooled, pooled + b * W);
      for (let i = 0; i < b; i++)
        for (let r = 0; r < b * l; r++) {
          const wgt = pool[i * b * l + r]!;
          if (wgt === 0) continue;
          for (let j = 0; j < W; j++) f[pooled + i * W + j]! += wgt * f[tok + r * W + j]!;
        }
      const film = s.film + b * W;
      this.gemm(b, 2 * W, W, pooled, W, this.w('vision/film'), 2 * W, film, 2 * W);
      this.addRows(film, b, 2 * W, this.w('vision/film_bias'));
      for (let r = 0; r < images * n; r++) {
        const fb = film + Math.floor(r / (c * n)) * 2 * W;
        const o = v + r * W;
        for (let j = 0; j < W; j++) f[o + j] = f[o + j]! * (f[fb + j]! + 1) + f[fb + W + j]!;
      }
    }
    // Each image's patches attend to each other: segments of n rows of the first layer's cache (free until the prefix).
    for (let i = 0; i < d.visionDepth; i++)
      this.block(`vision/block_${i}`, v, images, n, s.cache[0]!, 0, n, false);

    // The prefix: normalised image tokens · final scale + camera embedding, then the prompt's tokens.
    const length = c * n + l;
    const img = s.norm;
    this.normalize(v, img, images * n, W);
    const scale = this.w('vision/final_scale');
    const cam = this.w('prefix/camera_embedding');
    const px = s.x;
    for (let i = 0; i < b; i++) {
      for (let t = 0; t < c * n; t++) {
        const o = px + (i * length + t) * W;
        const src = img + (i * c * n + t) * W;
        const ce = cam + Math.floor(t / n) * W;
        for (let j = 0; j < W; j++) f[o + j] = f[src + j]! * f[scale + j]! + f[ce + j]!;
      }
      f.copyWithin(px + (i * length + c * n) * W, tok + i * l * W, tok + (i + 1) * l * W);
    }
    const valid = prefixValidity(
      {
        batch: b,
        cameras: c,
        promptLen: l,
        imageMask: Uint8Array.from(imageMask),
        promptMask: Uint8Array.from(promptMask),
      },
      n,
    );
    // Each observation's segment of a layer's cache: its prefix, its state token, its action tokens.
    const stride = length + 1 + d.horizon;
    const prefixBias = this.keyBias(valid, b, length, 0);
    for (let i = 0; i < d.depth; i++)
      this.block(`prefix/block_${i}`, px, b, length, s.cache[i]!, 0, stride, prefixBias);

    // The state token through the expert against the prefix; its keys and values join the cache.
    const st = s.x;
    this.gemm(b, E, d.actionDim, L.input.state, d.actionDim, this.w('expert/state_proj'), E, st, E);
    this.addRows(st, b, E, this.w('expert/state_bias'));
    const stateBias = this.keyBias(valid, b, length, 1);
    for (let i = 0; i < d.depth; i++) {
      const g = `expert/block_${i}`;
      if (i < d.depth - 1) this.block(g, st, b, 1, s.cache[i]!, length, stride, stateBias);
      else this.keysValues(g, st, b, s.cache[i]!, length, stride);
    }

    // Flow steps: x ← x + v(x, t)·dt from t = 1 to 0.
    const H = d.horizon;
    const A = d.actionDim;
    const xt = s.y;
    f.copyWithin(xt, L.input.noise, L.input.noise + b * H * A);
    const dt = -1 / steps;
    const actionBias = this.keyBias(valid, b, length, 1 + H);
    const ya = s.x;
    const time = s.film;
    // Training-time real-time chunking: a sample's first delays[i] steps are committed, held as given
    // (the noise came with them in place) at flow time 0, as the model saw them in training.
    const delays = this.i32.subarray(L.input.delays, L.input.delays + b);
    const committed = delays.some((v) => v > 0);
    if (committed) {
      this.gemm(1, E, E, L.input.time0, E, this.w('expert/time_in'), E, s.time0, E);
      this.addRows(s.time0, 1, E, this.w('expert/action_in_bias'));
    }
    for (let k = 0; k < steps; k++) {
      // time = temb·time_in + bias [B, E]; mixed = silu(x·action_in + time) [B·H, E]; y = mixed·time_out + pos.
      this.gemm(b, E, E, L.input.times + k * b * E, E, this.w('expert/time_in'), E, time, E);
      this.addRows(time, b, E, this.w('expert/action_in_bias'));
      this.gemm(b * H, E, A, xt, A, this.w('expert/action_in'), E, s.hidden, E);
      for (let r = 0; r < b * H; r++) {
        const o = s.hidden + r * E;
        const i = Math.floor(r / H);
        const tb = r - i * H < delays[i]! ? s.time0 : time + i * E;
        for (let j = 0; j < E; j++) f[o + j]! += f[tb + j]!;
      }
      this.k.x_sigmoid(s.hidden * 4, s.hidden * 4, b * H * E, 1);
      this.gemm(b * H, E, E, s.hidden, E, this.w('expert/time_out'), E, ya, E);
      this.addRows(ya, b * H, E, this.w('expert/action_pos'), H);
      for (let i = 0; i < d.depth; i++)
        this.block(`expert/block_${i}`, ya, b, H, s.cache[i]!, length + 1, stride, actionBias);
      this.normalize(ya, s.norm, b * H, E);
      // out = norm·action_out + bias; x += out·dt.
      this.gemm(b * H, A, E, s.norm, E, this.w('expert/action_out'), A, s.out, A);
      const ob = this.w('expert/action_out_bias');
      for (let r = 0; r < b * H; r++) {
        if (committed && r % H < delays[Math.floor(r / H)]!) continue;
        for (let j = 0; j < A; j++) f[xt + r * A + j]! += (f[s.out + r * A + j]! + f[ob + j]!) * dt;
      }
    }
  }

  /** The last expert block for the state token: only its keys and values, into the cache after the prefix. */
  private keysValues(g: string, x: number, b: number, cache: number, at: number, stride: number): void {
    const sh = this.blocks[g]!;
    const d = this.layout.dims;
    const wp = (d.heads * d.headDim) / this.layout.parts;
    const cols = 3 * wp;
    this.normalize(x, this.s.norm, b, sh.width);
    this.gemm(b, cols, sh.width, this.s.norm, sh.width, sh.qkv, cols, this.s.qkv, cols);
    for (let i = 0; i < b; i++) {
      const src = this.s.qkv + i * cols + wp;
      this.f32.copyWithin(cache + (i * stride + at) * 2 * wp, src, src + 2 * wp);
    }
  }

  /** The worker's loop: waits for a job, runs it, meets rank 0 at the end; until told to stop. */
  serve(): void {
    const c = this.layout.control;
    let done = 0;
    for (;;) {
      Atomics.wait(this.i32, c + JOB, done);
      const n = Atomics.load(this.i32, c + JOB);
      if (n < 0) return;
      if (n === done) continue;
      done = n;
      try {
        this.run(this.job());
        this.barrier();
      } catch (e) {
        Atomics.store(this.i32, c + FAILED, 1);
        throw e;
      }
    }
  }

  /** Rank 0: posts a job to the workers, runs its own share, and waits for them to finish. */
  runJob(job: Job): void {
    const c = this.layout.control;
    const h = c + HEADER;
    this.i32[h] = job.batch;
    this.i32[h + 1] = job.promptLen;
    this.i32[h + 2] = job.steps;
    if (this.layout.parts > 1) {
      Atomics.add(this.i32, c + JOB, 1);
      Atomics.notify(this.i32, c + JOB);
    }
    try {
      this.run(job);
      this.barrier();
    } catch (e) {
      // The workers stop waiting for this thread at their next barrier.
      Atomics.store(this.i32, c + FAILED, 1);
      throw new NativeSamplerFailure((e as Error).message);
    }
  }

  get result(): Float32Array {
    return this.f32.subarray(this.s.y);
  }
}

/** The engine failed mid-chunk (a thread died or stalled): the sampler cannot be used again. */
export class NativeSamplerFailure extends Error {
  override name = 'NativeSamplerFailure';
}

/** What the sampler's worker thread gets. */
export interface WorkerSetup {
  memory: SharedMemory;
  layout: Layout;
  rank: number;
  precision: Precision;
}

/** Why the native sampler cannot run here (a one-line reason), or null when it can. */
export function nativeSamplerUnavailable(dims: ModelDims, parts: number): string | null {
  if (dims.variant !== 'pi0') return `the native sampler runs π0 only (model.variant ${dims.variant})`;
  if (typeof SharedArrayBuffer === 'undefined') return 'no SharedArrayBuffer';
  if (dims.heads % parts !== 0 || dims.mlpDim % parts !== 0 || dims.expertMlpDim % parts !== 0)
    return `${dims.heads} heads or the MLPs do not split over ${parts} threads`;
  return null;
}

/**
 * The threads a chunk runs on. `explicit` (the user's, from the command's edge, or an API caller's)
 * wins; then one under OpenBLAS threads of its own (`--blas-threads 2`: they would contend for the
 * same cores) or where the model's heads or MLPs do not split in two; then the caller's preference (a
 * server beside a simulation prefers 1); else one per core, up to two.
 */
export function samplerThreads(
  dims: ModelDims,
  opts: { explicit?: number; preferred?: number; blasThreads?: number } = {},
): number {
  if (opts.explicit !== undefined) return opts.explicit;
  if ((opts.blasThreads ?? 1) > 1 || nativeSamplerUnavailable(dims, 2) !== null) return 1;
  return opts.preferred ?? Math.min(2, os.availableParallelism());
}

/**
 * The native sampler for one model's sampling weights: its arena, its engine on this thread and its
 * worker (with two threads). Sizes grow on demand (a larger batch or prompt re-plans the arena).
 */
export class NativeSampler {
  private readonly f32: Float32Array;
  private readonly i32: Int32Array;

  private constructor(
    readonly dims: ModelDims,
    readonly threads: number,
    readonly precision: Precision,
    private readonly layout: Layout,
    private readonly engine: Engine,
    private readonly workers: Worker[],
    memory: SharedMemory,
  ) {
    this.f32 = new Float32Array(memory.buffer);
    this.i32 = new Int32Array(memory.buffer);
  }

  /**
   * Copies `sw` into a new arena and starts the worker. Throws with a one-line reason where the binding
   * or the fused kernels are missing (the caller then keeps the TensorFlow.js sampler).
   */
  static async create(
    dims: ModelDims,
    sw: SamplingWeights,
    opts: {
      threads?: number;
      batch?: number;
      cameras: number;
      promptLen?: number;
      steps?: number;
      /** How long a thread waits for the other before the chunk fails (default 10 s). */
      stallMs?: number;
      /** The products' precision (default fp32), on every thread. */
      precision?: Precision;
    },
  ): Promise<NativeSampler> {
    const threads = samplerThreads(dims, { explicit: opts.threads });
    const why = nativeSamplerUnavailable(dims, threads);
    if (why) throw new Error(`native sampler: ${why}`);
    const blas = loadBlas();
    if ('error' in blas) throw new Error(`native sampler: ${blas.error}`);
    const precision = opts.precision ?? 'fp32';
    const productsOff = useProducts(blas, precision);
    if (productsOff) throw new Error(`native sampler: ${productsOff}`);
    const layout = planLayout(
      dims,
      sw,
      threads,
      opts.batch ?? 1,
      opts.cameras,
      opts.promptLen ?? dims.maxTokenLen,
      opts.steps ?? dims.numSteps,
    );
    if (opts.stallMs !== undefined) layout.stallMs = opts.stallMs;
    const pages = Math.ceil((layout.size * 4) / 65536);
    const memory = new WA.Memory({ initial: pages, maximum: pages, shared: true });
    await fillWeights(new Float32Array(memory.buffer), layout, sw);
    const fused = await loadFused(memory);
    if ('error' in fused) throw new Error(`native sampler: ${fused.error}`);
    const workers: Worker[] = [];
    try {
      for (let rank = 1; rank < threads; rank++) {
        const setup: WorkerSetup = { memory, layout, rank, precision };
        const worker = startWorker(new URL('./native-sampler-worker.ts', import.meta.url), {
          workerData: setup as unknown as Record<string, unknown>,
        });
        workers.push(worker);
        await new Promise<void>((resolve, reject) => {
          worker.once('message', (m: { ready?: boolean; error?: string }) =>
            m.ready ? resolve() : reject(new Error(`native sampler worker: ${m.error}`)),
          );
          worker.once('error', reject);
          worker.once('exit', (code) =>
            reject(new Error(`native sampler worker exited (${code}) before it was ready`)),
          );
        });
        worker.unref();
      }
    } catch (e) {
      for (const w of workers) void w.terminate();
      throw e;
    }
    return new NativeSampler(
      dims,
      threads,
      precision,
      layout,
      new Engine(memory, layout, 0, blas, fused),
      workers,
      memory,
    );
  }

  /** What the arena was planned for. */
  get capacity(): { batch: number; promptLen: number; steps: number } {
    const L = this.layout;
    return { batch: L.maxBatch, promptLen: L.maxPromptLen, steps: L.input.maxSteps };
  }

  /** Whether `inp` fits the arena as planned (a larger batch or prompt or more steps needs a new one). */
  fits(inp: ModelInputs, steps: number): boolean {
    const L = this.layout;
    return (
      inp.batch <= L.maxBatch &&
      inp.cameras === L.cameras &&
      inp.promptLen <= L.maxPromptLen &&
      steps <= L.input.maxSteps
    );
  }

  /**
   * Action chunks float32 [B·H·A] from `noise` by `steps` Euler steps; `timeEmbedding` is the model's
   * (Pi0.timeEmbedding). With `committed` (a checkpoint trained with train.rtc), each sample's first
   * steps are those actions, kept. Blocks this thread for the chunk (the worker computes beside it).
   */
  sample(
    inp: ModelInputs,
    noise: Float32Array,
    steps: number,
    timeEmbedding: (t: Float32Array) => Float32Array,
    committed?: Committed,
  ): Float32Array {
    if (!this.fits(inp, steps))
      throw new Error('native sampler: the inputs do not fit its arena (call fits first)');
    const d = this.dims;
    const L = this.layout;
    const b = inp.batch;
    const l = inp.promptLen;
    const { f32, i32 } = this;
    checkModelInputs(inp, d, 'native sampler');
    if (noise.length !== b * d.horizon * d.actionDim)
      throw new Error(
        `native sampler: noise has ${noise.length} values, expected ${b * d.horizon * d.actionDim}`,
      );
    patchifyInto(f32.subarray(L.input.patches), inp.images, b * inp.cameras, inp.imageSize, inp.patchSize);
    i32.set(inp.promptTokens, L.input.ids);
    for (let i = 0; i < b * l; i++) i32[L.input.masks + i] = inp.promptMask[i]!;
    for (let i = 0; i < b * inp.cameras; i++) i32[L.input.masks + b * l + i] = inp.imageMask[i]!;
    f32.set(inp.state, L.input.state);
    if (committed) {
      checkCommitted(committed, b, d.horizon, d.actionDim);
      f32.set(withCommitted(noise, committed, d.horizon, d.actionDim), L.input.noise);
      for (let i = 0; i < b; i++) i32[L.input.delays + i] = Math.min(d.horizon, committed.delays[i]!);
      f32.set(timeEmbedding(Float32Array.of(0)), L.input.time0);
    } else {
      f32.set(noise, L.input.noise);
      i32.fill(0, L.input.delays, L.input.delays + b);
    }
    const dt = -1 / steps;
    for (let k = 0; k < steps; k++)
      f32.set(timeEmbedding(new Float32Array(b).fill(1 + k * dt)), L.input.times + k * b * d.expertWidth);
    this.engine.runJob({ batch: b, promptLen: l, steps });
    return this.engine.result.slice(0, b * d.horizon * d.actionDim);
  }

  /** Stops the worker; the arena goes with the last reference to it. */
  async dispose(): Promise<void> {
    Atomics.store(this.i32, this.layout.control + JOB, -1);
    Atomics.notify(this.i32, this.layout.control + JOB);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

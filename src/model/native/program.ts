/**
 * The native sampler's program: one chunk's forward pass over the arena (layout.ts), every product an
 * OpenBLAS sgemm on memory in place (in bf16, oneDNN's, each weight rounded once: `bf16Weight`) and every
 * element-wise pass a WASM SIMD kernel (fused.wat), on each of the P ranks (threads.ts) at once.
 *
 * Tensor parallelism: each rank computes the queries, keys and values of its share of the heads, their
 * attention, and that share's part of the output projection; the ranks' parts are summed (an exchange
 * through shared memory); likewise the MLP by shares of its hidden units. Every rank then holds the
 * same residual stream, bit for bit (all sum in the same order), and computes the small per-token steps
 * (embeddings, norms, the flow update) itself rather than wait for the others: two exchanges a block.
 *
 * One block (`block`) serves every pass: vision, prefix, π0's state token, the action tokens; it is
 * sampler.ts's (and Pi0.layer's) block. Where the variants differ the program reads the layout's
 * `variant` (variant.ts): the prefix's state tokens, the suffix's state token, how action tokens are
 * embedded, and how the expert's norms are conditioned (`Conditioning`: plain, or π0.5's adaptive
 * RMSNorm with a gated residual). π0-FAST's action tokens are decoded one a step instead of flow steps
 * (`decodeTokens`): the ranks make the logits in column shares, then each reads them all and makes the
 * same greedy choice (fast-decode.ts).
 */
import { type Blas, NO_TRANS, TRANS } from '../../backend/native/blas.js';
import { type FusedExports, RMS_EPS } from '../../backend/native/fused.js';
import type { OneDnn } from '../../backend/native/onednn.js';
import { GreedyDecode } from '../fast-decode.js';
import { stateBin } from '../inputs.js';
import { keyBiasInto, prefixValidity, promptPooling, sequenceValid, suffixLengths } from '../masks.js';
import { type BlockShard, type Layout, prefixLength, type SharedMemory } from './layout.js';
import { Team } from './threads.js';
import { modulationAt, modulationWidth, suffixTokens } from './variant.js';

/** A job's header: what rank 0 tells the others besides the inputs. */
export interface Job {
  batch: number;
  promptLen: number;
  steps: number;
  /**
   * Adaptive norms (π0.5): which conditions to make (again) before the steps, CONDITION_STEPS and/or
   * CONDITION_TIME0; those not asked for are the last job's (the flow times repeat from chunk to chunk).
   */
  conditions: number;
}
const JOB_WORDS = 4;
/** Job.conditions: every step's flow times changed; flow time 0's (committed steps) is needed and not made yet. */
export const CONDITION_STEPS = 1;
export const CONDITION_TIME0 = 2;

/** Rows [row, row + rows) of a pass that share one condition, whose modulation row starts at float `at`. */
interface Run {
  row: number;
  rows: number;
  at: number;
}

/**
 * How a pass's norms are conditioned: null, plain RMSNorm (the gains folded into the kernels after);
 * or, adaptive (π0.5), runs of rows each with its modulation row (scale | shift | gate per norm, see
 * variant.ts's modulationWidth): the normalised rows ·(1 + scale) + shift, the residual gated.
 */
type Conditioning = Run[] | null;

/**
 * One rank's computation over the arena. Rank 0 runs on the caller's thread, the others in workers;
 * every rank runs the same code and meets the others at `allReduce`.
 */
export class Engine {
  private readonly f32: Float32Array;
  private readonly i32: Int32Array;
  private readonly views = new Map<number, Float32Array>();
  private readonly bf16Weights = new Map<number, Uint16Array>();
  private readonly team: Team;
  private readonly s: Layout['scratch'][number];
  private readonly blocks: Record<string, BlockShard>;
  /** π0-FAST: the last job's decode (its tokens are read on rank 0). */
  private decoded: GreedyDecode | null = null;

  constructor(
    memory: SharedMemory,
    private readonly layout: Layout,
    rank: number,
    private readonly blas: Blas,
    private readonly k: FusedExports,
  ) {
    this.f32 = new Float32Array(memory.buffer);
    this.i32 = new Int32Array(memory.buffer);
    this.team = new Team(memory, layout, rank);
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
    const one = this.blas.precision === 'bf16' && b < this.layout.weights ? this.blas.bf16 : null;
    if (one && !('error' in one)) {
      // A weight in bf16: rounded once (bf16Weight), not on every product as sgemmBf16 would.
      const len = transB ? (n - 1) * ldb + k : (k - 1) * ldb + n;
      const bw = this.bf16Weight(one, b, len);
      one.sgemmBf16B(
        NO_TRANS,
        transB ? TRANS : NO_TRANS,
        m,
        n,
        k,
        1,
        this.v(a),
        lda,
        bw,
        ldb,
        beta,
        this.v(c),
        ldc,
      );
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

  /**
   * The weight at float `at` (at least `len` floats) as bf16 bits, rounded on first use and kept: the
   * weights never change after the arena is filled, and rounding a [128, 768] kernel cost more than the
   * bf16 product of 50 tokens through it.
   */
  private bf16Weight(one: OneDnn, at: number, len: number): Uint16Array {
    let w = this.bf16Weights.get(at);
    if (!w || w.length < len) {
      w = one.toBf16(this.f32.subarray(at, at + len));
      this.bf16Weights.set(at, w);
    }
    return w;
  }

  /** Rows of x / rms(x) into out. */
  private normalize(x: number, out: number, rows: number, cols: number): void {
    this.k.rms_norm(x * 4, 0, out * 4, this.s.rinv * 4, rows, cols, RMS_EPS);
  }

  /**
   * Rows of x normalised into out: plainly, or conditioned: each run's rows ·(1 + scale) + shift, its
   * scale and shift at `off` in the run's modulation row.
   */
  private norm(x: number, out: number, rows: number, cols: number, cond: Conditioning, off: number): void {
    if (!cond) {
      this.normalize(x, out, rows, cols);
      return;
    }
    for (const r of cond) {
      const m = r.at + off;
      this.k.rms_norm(
        (x + r.row * cols) * 4,
        m * 4,
        (out + r.row * cols) * 4,
        this.s.rinv * 4,
        r.rows,
        cols,
        RMS_EPS,
      );
      this.addRows(out + r.row * cols, r.rows, cols, m + cols);
    }
  }

  /**
   * x [rows, cols] += the ranks' partial sums, which each rank has put in its exchange buffer `slot`
   * (the same order on every rank: every rank's x stays identical); with a gate, each partial's rows ⊙
   * their run's gate (at `off` + 2·cols in its modulation row). One rank, ungated: its partial went into x.
   */
  private allReduce(
    x: number,
    rows: number,
    cols: number,
    slot: number,
    gate: Conditioning,
    off: number,
  ): void {
    const P = this.layout.parts;
    if (P === 1 && !gate) return;
    this.team.barrier();
    for (let r = 0; r < P; r++) {
      const part = this.layout.scratch[r]!.exchange[slot]!;
      if (!gate) this.k.add_to(x * 4, part * 4, rows * cols);
      else for (const run of gate) this.addGated(x, part, run, cols, run.at + off + 2 * cols);
    }
  }

  /** x's rows of `run` += part's ⊙ gate [cols]. */
  private addGated(x: number, part: number, run: Run, cols: number, gate: number): void {
    const at = run.row * cols;
    this.k.add_rows((x + at) * 4, (part + at) * 4, cols, gate * 4, run.rows, cols);
  }

  /**
   * Where this rank puts a partial sum for x: x itself (one rank, ungated: summed by beta = 1) or an
   * exchange buffer.
   */
  private partial(x: number, gated: boolean): { at: number; beta: number; slot: number } {
    if (this.layout.parts === 1 && !gated) return { at: x, beta: 1, slot: 0 };
    const slot = this.team.passed & 1;
    return { at: this.s.exchange[slot]!, beta: 0, slot };
  }

  /**
   * One block over x [rows, width] in place: `batches` groups of T tokens. Their keys and values go to
   * the cache, rows [at, at + T) of each group's segment (`stride` rows apart), and each token attends to
   * its segment's first at + T rows (cached tokens, then the group's own): one product for the scores and
   * one for the output per head. With `bias`, the arena's bias buffer [batches, at + T] adds over keys.
   * `cond`: how its norms are conditioned (an expert block `layer` of π0.5), else plain.
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
    cond: Conditioning = null,
    layer = 0,
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
    const ln1 = cond ? modulationAt(d, layer, 'ln1') : 0;
    const ln2 = cond ? modulationAt(d, layer, 'ln2') : 0;
    this.norm(x, s.norm, rows, width, cond, ln1);
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
        if (bias) this.k.add_rows(sc * 4, (s.bias + i * keys) * 4, 0, 0, T, keys);
        this.k.softmax_rows(sc * 4, T, keys, keys);
        this.gemm(T, hd, keys, sc, keys, k + wp, kvCols, s.att + i * T * wp + h * hd, wp);
      }
    }
    let p = this.partial(x, cond !== null);
    this.gemm(rows, width, wp, s.att, wp, b.o, width, p.at, width, p.beta);
    this.allReduce(x, rows, width, p.slot, cond, ln1);
    this.norm(x, s.norm, rows, width, cond, ln2);
    this.gemm(rows, b.mlp, width, s.norm, width, b.up, b.mlp, s.hidden, b.mlp);
    this.k.x_sigmoid(s.hidden * 4, s.hidden * 4, rows * b.mlp, 1.702);
    p = this.partial(x, cond !== null);
    this.gemm(rows, width, b.mlp, s.hidden, b.mlp, b.down, width, p.at, width, p.beta);
    this.allReduce(x, rows, width, p.slot, cond, ln2);
  }

  private w(name: string): number {
    const at = this.layout.shared[name];
    if (at === undefined) throw new Error(`native sampler: sampling weight ${name} is missing`);
    return at;
  }

  /** rows [rows, cols] += bias [cols] (or [per, cols] repeating every `per` rows). */
  private addRows(x: number, rows: number, cols: number, bias: number, per = 1): void {
    if (per === 1) this.k.add_rows(x * 4, bias * 4, 0, 0, rows, cols);
    else
      for (let r = 0; r < rows; r += per)
        this.k.add_rows((x + r * cols) * 4, bias * 4, cols, 0, Math.min(per, rows - r), cols);
  }

  /** Writes the key bias of the phase about to run into the arena (keyBiasInto); whether there is one. */
  private keyBias(valid: Uint8Array, b: number, p: number, extra: number, lengths?: Int32Array): boolean {
    const out = this.f32.subarray(this.s.bias, this.s.bias + b * (p + extra));
    return keyBiasInto(out, valid, b, p, extra, lengths);
  }

  /** Reads the job header rank 0 posted. */
  private job(): Job {
    const h = this.team.header(JOB_WORDS);
    return { batch: h[0]!, promptLen: h[1]!, steps: h[2]!, conditions: h[3]! };
  }

  /** A worker's loop: runs each job rank 0 posts, until told to stop. */
  serve(): void {
    this.team.serve(() => this.run(this.job()));
  }

  /** Rank 0: posts a job to the workers, runs its own share, and waits for them to finish. */
  runJob(job: Job): void {
    this.team.post([job.batch, job.promptLen, job.steps, job.conditions], () => this.run(job));
  }

  /** Tells the workers to stop. */
  stop(): void {
    this.team.stop();
  }

  get result(): Float32Array {
    return this.f32.subarray(this.s.y);
  }

  /** π0-FAST: each sample's tokens from the last job (the end left out). */
  get tokens(): number[][] {
    if (!this.decoded) throw new Error('native sampler: no decode has run (model.variant pi0_fast only)');
    return this.decoded.tokens;
  }

  /** One chunk: the prefix, π0's state token, then the flow steps; the result is in this rank's `y`. */
  run(job: Job): void {
    const L = this.layout;
    const d = L.dims;
    const variant = L.variant;
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
      let scores: Float32Array | undefined;
      if (d.promptFilmPool === 'attention') {
        // Each token's dot product with the learned query: the pool's softmax weighs by it.
        const q = this.w('vision/film_query');
        scores = new Float32Array(b * l);
        for (let r = 0; r < b * l; r++) {
          let dot = 0;
          for (let j = 0; j < W; j++) dot += f[q + j]! * f[tok + r * W + j]!;
          scores[r] = dot;
        }
      }
      const pool = promptPooling({ batch: b, promptLen: l, promptMask: Uint8Array.from(promptMask) }, scores);
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

    // The prefix: normalised image tokens · final scale + camera embedding, the prompt's tokens, then
    // (π0.5) the state's tokens: each dim's bin's embedding + its position.
    const length = prefixLength(d, variant, c, l);
    const A = d.actionDim;
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
    if (variant.prefixStateTokens > 0) {
      const table = this.w('prefix/state_embedding');
      const spos = this.w('prefix/state_pos_embedding');
      for (let i = 0; i < b; i++)
        for (let a = 0; a < variant.prefixStateTokens; a++) {
          const o = px + (i * length + c * n + l + a) * W;
          const e = table + stateBin(f[L.input.state + i * A + a]!) * W;
          const pp = spos + a * W;
          for (let j = 0; j < W; j++) f[o + j] = f[e + j]! + f[pp + j]!;
        }
    }
    const valid = this.prefixValid(b, c, l, n, length, promptMask, imageMask);
    // Each observation's segment of a layer's cache: its prefix, then its suffix (π0's state token, the actions).
    const H = d.horizon;
    const stride = length + suffixTokens(d, variant);
    const prefixBias = this.keyBias(valid, b, length, 0);
    for (let i = 0; i < d.depth; i++)
      this.block(`prefix/block_${i}`, px, b, length, s.cache[i]!, 0, stride, prefixBias);
    if (variant.actionTokens === 'decoded') {
      this.decodeTokens(b, valid, length, stride);
      return;
    }

    if (variant.suffixStateTokens > 0) {
      // π0's state token through the expert against the prefix; its keys and values join the cache.
      const st = s.x;
      this.gemm(b, E, A, L.input.state, A, this.w('expert/state_proj'), E, st, E);
      this.addRows(st, b, E, this.w('expert/state_bias'));
      const stateBias = this.keyBias(valid, b, length, 1);
      for (let i = 0; i < d.depth; i++) {
        const g = `expert/block_${i}`;
        if (i < d.depth - 1) this.block(g, st, b, 1, s.cache[i]!, length, stride, stateBias);
        else this.keysValues(g, st, b, s.cache[i]!, length, stride);
      }
    }

    // Flow steps: x ← x + v(x, t)·dt from t = 1 to 0.
    const xt = s.y;
    f.copyWithin(xt, L.input.noise, L.input.noise + b * H * A);
    const dt = -1 / steps;
    const actionsAt = length + variant.suffixStateTokens;
    // Action tokens past a sample's own chunk (ModelInputs.horizons) are hidden from the others.
    const horizons = this.i32.slice(L.input.horizons, L.input.horizons + b);
    const suffix = variant.suffixStateTokens + H;
    const actionBias = this.keyBias(valid, b, length, suffix, suffixLengths(horizons, suffix, H));
    const ya = s.x;
    // Training-time real-time chunking: a sample's first delays[i] steps are committed, held as given
    // (the noise came with them in place) at flow time 0, as the model saw them in training.
    const delays = this.i32.subarray(L.input.delays, L.input.delays + b);
    const committed = delays.some((v) => v > 0);
    const adaptive = variant.expertNorms === 'adaptive';
    if (adaptive) this.conditions(b, steps, job.conditions);
    else if (committed) {
      this.gemm(1, E, E, L.input.time0, E, this.w('expert/time_in'), E, s.time0, E);
      this.addRows(s.time0, 1, E, this.w('expert/action_in_bias'));
    }
    for (let k = 0; k < steps; k++) {
      if (variant.actionTokens === 'time-mlp') this.mixedActionTokens(k, b, delays, ya);
      else {
        // ya = x·action_in + (bias + pos).
        this.gemm(b * H, E, A, xt, A, this.w('expert/action_in'), E, ya, E);
        this.addRows(ya, b * H, E, this.w('expert/action_pos'), H);
      }
      const cond = adaptive ? this.runs(k, b, delays) : null;
      for (let i = 0; i < d.depth; i++)
        this.block(`expert/block_${i}`, ya, b, H, s.cache[i]!, actionsAt, stride, actionBias, cond, i);
      this.norm(ya, s.norm, b * H, E, cond, cond ? modulationAt(d, d.depth, 'final') : 0);
      // out = norm·action_out + bias; x += out·dt.
      this.gemm(b * H, A, E, s.norm, E, this.w('expert/action_out'), A, s.out, A);
      const ob = this.w('expert/action_out_bias');
      for (let r = 0; r < b * H; r++) {
        if (committed && r % H < delays[Math.floor(r / H)]!) continue;
        for (let j = 0; j < A; j++) f[xt + r * A + j]! += (f[s.out + r * A + j]! + f[ob + j]!) * dt;
      }
    }
  }

  /**
   * π0-FAST: greedy decoding against the prefix's cache, one token per sample a step through the
   * expert's blocks (its keys and values appended after the prefix), until every sample has ended its
   * chunk or `fast.max_tokens`; as Pi0.sampleTokens. The logits, a product with the whole token table
   * (most of a step's time: the table is read from memory once a token), are made by the ranks in column
   * shares into rank 0's buffer; after a barrier every rank reads them all and makes the same choice.
   */
  private decodeTokens(b: number, valid: Uint8Array, length: number, stride: number): void {
    const L = this.layout;
    const d = L.dims;
    const rules = L.decode!;
    const E = d.expertWidth;
    const V = rules.vocab;
    const f = this.f32;
    const s = this.s;
    const table = this.w('expert/token_embedding');
    const pos = this.w('expert/token_pos_embedding');
    const out = this.w('expert/token_out');
    const outBias = this.w('expert/token_out_bias');
    const logits = L.scratch[0]!.logits;
    const share = Math.ceil(V / L.parts);
    const c0 = Math.min(V, this.team.rank * share);
    const cols = Math.min(V, c0 + share) - c0;
    const x = s.x;
    const dec = new GreedyDecode(rules, b);
    this.decoded = dec;
    while (!dec.finished) {
      const j = dec.step;
      // Each sample's last token: its row of the table + position j.
      for (let i = 0; i < b; i++) {
        const e = table + dec.ids[i]! * E;
        const o = x + i * E;
        for (let c = 0; c < E; c++) f[o + c] = f[e + c]! + f[pos + j * E + c]!;
      }
      // Every token decoded so far is visible to the next (a sample's tokens after its end are never read).
      const bias = this.keyBias(valid, b, length, j + 1);
      for (let i = 0; i < d.depth; i++)
        this.block(`expert/block_${i}`, x, b, 1, s.cache[i]!, length + j, stride, bias);
      this.normalize(x, s.norm, b, E);
      // This rank's columns; no rank writes them again before every rank has chosen (the next step's
      // first block meets at a barrier first).
      this.gemm(b, cols, E, s.norm, E, out + c0, V, logits + c0, V);
      for (let i = 0; i < b; i++)
        this.k.add_rows((logits + i * V + c0) * 4, (outBias + c0) * 4, 0, 0, 1, cols);
      this.team.barrier();
      dec.choose(f.subarray(logits, logits + b * V));
    }
  }

  /** [B, Tp]: which prefix tokens are real (present cameras, prompt tokens; state tokens always). */
  private prefixValid(
    b: number,
    c: number,
    l: number,
    n: number,
    length: number,
    promptMask: Int32Array,
    imageMask: Int32Array,
  ): Uint8Array {
    const seen = prefixValidity(
      {
        batch: b,
        cameras: c,
        promptLen: l,
        imageMask: Uint8Array.from(imageMask),
        promptMask: Uint8Array.from(promptMask),
      },
      n,
    );
    const p = c * n + l;
    return p === length ? seen : sequenceValid(seen, p, length - p, b);
  }

  /**
   * π0's action tokens of step k into ya [B·H, E]: time = temb·time_in + bias [B, E];
   * mixed = silu(x·action_in + time) [B·H, E] (committed steps at time 0); ya = mixed·time_out + pos.
   */
  private mixedActionTokens(k: number, b: number, delays: Int32Array, ya: number): void {
    const L = this.layout;
    const d = L.dims;
    const { horizon: H, actionDim: A, expertWidth: E } = d;
    const s = this.s;
    const time = s.film;
    this.gemm(b, E, E, L.input.times + k * b * E, E, this.w('expert/time_in'), E, time, E);
    this.addRows(time, b, E, this.w('expert/action_in_bias'));
    this.gemm(b * H, E, A, s.y, A, this.w('expert/action_in'), E, s.hidden, E);
    // Each sample's committed steps take flow time 0's embedding, the rest its own time's.
    for (let i = 0; i < b; i++) {
      const held = delays[i]!;
      const rows = s.hidden + i * H * E;
      if (held > 0) this.k.add_rows(rows * 4, s.time0 * 4, 0, 0, held, E);
      if (held < H) this.k.add_rows((rows + held * E) * 4, (time + i * E) * 4, 0, 0, H - held, E);
    }
    this.k.x_sigmoid(s.hidden * 4, s.hidden * 4, b * H * E, 1);
    this.gemm(b * H, E, E, s.hidden, E, this.w('expert/time_out'), E, ya, E);
    this.addRows(ya, b * H, E, this.w('expert/action_pos'), H);
  }

  /** Row of the conditions (and modulations) that holds flow time 0's, for committed steps. */
  private get timeZeroRow(): number {
    return this.layout.input.maxSteps * this.layout.maxBatch;
  }

  /**
   * π0.5: the condition of every step's flow time, silu(silu(temb·time_mlp_in + b)·time_mlp_out + b)
   * [steps·B, E] (and of t = 0, for committed steps), and its modulations: a product each, made where
   * `which` asks (they depend on the flow times alone, the same from chunk to chunk).
   */
  private conditions(b: number, steps: number, which: number): void {
    const L = this.layout;
    const d = L.dims;
    const E = d.expertWidth;
    const M = modulationWidth(d);
    const s = this.s;
    const chain = (temb: number, row: number, rows: number) => {
      const hidden = s.condHidden + row * E;
      const cond = s.cond + row * E;
      const mods = s.mods + row * M;
      this.gemm(rows, E, E, temb, E, this.w('expert/time_mlp_in'), E, hidden, E);
      this.addRows(hidden, rows, E, this.w('expert/time_mlp_in_bias'));
      this.k.x_sigmoid(hidden * 4, hidden * 4, rows * E, 1);
      this.gemm(rows, E, E, hidden, E, this.w('expert/time_mlp_out'), E, cond, E);
      this.addRows(cond, rows, E, this.w('expert/time_mlp_out_bias'));
      this.k.x_sigmoid(cond * 4, cond * 4, rows * E, 1);
      this.gemm(rows, M, E, cond, E, this.w('expert/modulation'), M, mods, M);
      this.addRows(mods, rows, M, this.w('expert/modulation_bias'));
    };
    if (which & CONDITION_STEPS) chain(L.input.times, 0, steps * b);
    if (which & CONDITION_TIME0) chain(L.input.time0, this.timeZeroRow, 1);
  }

  /** π0.5, step k: each sample's action rows with their modulation row (committed steps: t = 0's). */
  private runs(k: number, b: number, delays: Int32Array): Run[] {
    const d = this.layout.dims;
    const H = d.horizon;
    const M = modulationWidth(d);
    const mods = this.s.mods;
    const runs: Run[] = [];
    for (let i = 0; i < b; i++) {
      const held = Math.min(H, delays[i]!);
      if (held > 0) runs.push({ row: i * H, rows: held, at: mods + this.timeZeroRow * M });
      if (held < H) runs.push({ row: i * H + held, rows: H - held, at: mods + (k * b + i) * M });
    }
    return runs;
  }

  /** The last expert block for π0's state token: only its keys and values, into the cache after the prefix. */
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
}

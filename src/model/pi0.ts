/**
 * The π0-style policy: a prefix of image patch tokens and prompt tokens, and a suffix (the action
 * expert, with its own, narrower weights) of one state token and H action tokens, all attending through
 * shared attention with π0's masks. Trained by flow matching; sampled by Euler steps from t = 1 to 0
 * with the prefix's keys and values computed once.
 *
 * Reading order: parameters → inputs → prefix → suffix → loss → sampling.
 */
import * as tf from '@tensorflow/tfjs-core';
import { filledTensor } from '../backend/index.js';
import { cachedAttentionFast } from '../backend/native/attention.js';
import { concatTokens } from '../backend/native/train-attention.js';
import { UserError } from '../config/errors.js';
import type { Batch } from '../transforms/batch.js';
import { type Committed, committedPad, committedTimes, freeSteps, withCommitted } from './committed.js';
import { MAX_CAMERAS, type ModelDims } from './config.js';
import {
  decodedChunks,
  type FastDecodeRules,
  fastDecodeRules,
  fastSpecialTokens,
  fastTokenCount,
  GreedyDecode,
} from './fast-decode.js';
import type { FastTokenizer } from './fast-tokenizer.js';
import {
  checkHorizons,
  type ModelInputs,
  patchTensor,
  promptOneHot,
  STATE_BINS,
  stateOneHot,
} from './inputs.js';
import {
  applyFilm,
  attention,
  attentionPool,
  concatAxis1,
  gelu,
  matmul2d,
  matmul2dFrozenB,
  matmul2dInputA,
  rmsNorm,
  silu,
  sliceAxis1,
} from './layers.js';
import {
  attentionBiasInto,
  fastBlockStarts,
  pi0BlockStarts,
  pi05BlockStarts,
  prefixValidity,
  promptPooling,
  sequenceValid,
  suffixLengths,
} from './masks.js';
import { param as get, globToRegExp, isLoraParam, mergedKernel, type Params } from './params.js';
import { Rng } from './rng.js';
import { type SamplingWeights, sampleCached, samplingWeights } from './sampler.js';
import { tokenizePrompts, VOCAB_SIZE } from './tokenizer.js';

// ---------------------------------------------------------------- parameters

interface ParamSpec {
  shape: number[];
  init: 'fan_in' | 'zeros' | 'embed' | 'small' | 'lora_a' | 'sincos1d' | 'sincos2d';
}

/**
 * Every parameter's name, shape and initialiser, in a stable order. The last prefix block has keys and
 * values only: the suffix reads them, and nothing reads the prefix's output after it.
 */
export function paramSpecs(d: ModelDims): Map<string, ParamSpec> {
  const specs = new Map<string, ParamSpec>();
  const kernel = (name: string, fanIn: number, out: number) =>
    specs.set(`${name}/kernel`, { shape: [fanIn, out], init: 'fan_in' });
  const bias = (name: string, n: number) => specs.set(`${name}/bias`, { shape: [n], init: 'zeros' });
  const norm = (name: string, n: number) => specs.set(`${name}/scale`, { shape: [n], init: 'zeros' });
  const block = (g: string, width: number, mlp: number, kvOnly: boolean) => {
    norm(`${g}/ln1`, width);
    if (!kvOnly) kernel(`${g}/attn/q`, width, d.width);
    kernel(`${g}/attn/k`, width, d.width);
    kernel(`${g}/attn/v`, width, d.width);
    if (kvOnly) return;
    kernel(`${g}/attn/o`, d.width, width);
    norm(`${g}/ln2`, width);
    kernel(`${g}/mlp/up`, width, mlp);
    kernel(`${g}/mlp/down`, mlp, width);
  };
  const p = d.patchSize;
  const patches = (d.imageSize / p) ** 2;
  kernel('vision/patch_embed', p * p * 3, d.width);
  bias('vision/patch_embed', d.width);
  // Fixed-frequency sine-cosine starting points (as MAE's ViT): trained from scratch on a few hundred
  // demonstrations, patches know where they are from the first step instead of learning it.
  specs.set('vision/pos_embedding', { shape: [patches, d.width], init: 'sincos2d' });
  if (d.promptFilm) {
    // Zeros: every patch passes unchanged until training finds a use for the prompt there.
    specs.set('vision/film/kernel', { shape: [d.width, 2 * d.width], init: 'zeros' });
    bias('vision/film', 2 * d.width);
    // Zeros: every real token scores alike, so the pool starts as the mean.
    if (d.promptFilmPool === 'attention') specs.set('vision/film/query', { shape: [d.width], init: 'zeros' });
  }
  for (let i = 0; i < d.visionDepth; i++) block(`vision/block_${i}`, d.width, d.mlpDim, false);
  norm('vision/final_norm', d.width);

  specs.set('prefix/camera_embedding', { shape: [MAX_CAMERAS, d.width], init: 'small' });
  specs.set('prefix/token_embedding', { shape: [VOCAB_SIZE, d.width], init: 'embed' });
  specs.set('prefix/prompt_pos_embedding', { shape: [d.maxTokenLen, d.width], init: 'sincos1d' });
  const pi05 = d.variant === 'pi05';
  if (stateInPrefix(d)) {
    // π0.5 and π0-FAST: each dim of the normalised state a token of its own, from 256 bins.
    specs.set('prefix/state_embedding', { shape: [STATE_BINS, d.width], init: 'embed' });
    specs.set('prefix/state_pos_embedding', { shape: [d.stateTokens, d.width], init: 'sincos1d' });
  }
  for (let i = 0; i < d.depth; i++) block(`prefix/block_${i}`, d.width, d.mlpDim, i === d.depth - 1);

  const e = d.expertWidth;
  if (d.variant === 'pi0_fast') {
    // π0-FAST: the expert reads action tokens (FAST's, then start and end of the chunk) and predicts the
    // next through the same table, transposed (tied, as PaliGemma's embedding and head are).
    specs.set('expert/token_embedding', { shape: [fastTokenCount(d), e], init: 'embed' });
    specs.set('expert/token_pos_embedding', { shape: [d.fast.maxTokens + 1, e], init: 'sincos1d' });
    for (let i = 0; i < d.depth; i++) block(`expert/block_${i}`, e, d.expertMlpDim, false);
    norm('expert/final_norm', e);
    bias('expert/token_out', fastTokenCount(d));
  } else {
    if (!pi05) {
      kernel('expert/state_proj', d.actionDim, e);
      bias('expert/state_proj', e);
    }
    kernel('expert/action_in', d.actionDim, e);
    bias('expert/action_in', e);
    specs.set('expert/action_pos_embedding', { shape: [d.horizon, e], init: 'sincos1d' });
    // π0 mixes [action, time] in the MLP; π0.5 turns the time alone into the norms' condition.
    kernel('expert/time_mlp_in', pi05 ? e : 2 * e, e);
    bias('expert/time_mlp_in', e);
    kernel('expert/time_mlp_out', e, e);
    bias('expert/time_mlp_out', e);
    // Adaptive RMSNorm (π0.5): scale, shift and gate per sample from the time; zeros, so each block starts
    // as the identity (DiT's adaLN-Zero, openpi's adaRMS).
    const modulation = (name: string, parts: number) => {
      specs.set(`${name}/mod/kernel`, { shape: [e, parts * e], init: 'zeros' });
      bias(`${name}/mod`, parts * e);
    };
    for (let i = 0; i < d.depth; i++) {
      block(`expert/block_${i}`, e, d.expertMlpDim, false);
      if (pi05) for (const ln of ['ln1', 'ln2']) modulation(`expert/block_${i}/${ln}`, 3);
    }
    norm('expert/final_norm', e);
    if (pi05) modulation('expert/final_norm', 2);
    kernel('expert/action_out', e, d.actionDim);
    bias('expert/action_out', d.actionDim);
  }

  if (d.lora) {
    const targets = d.lora.targets.map(globToRegExp);
    for (const [name, spec] of [...specs]) {
      if (!name.endsWith('/kernel') || !targets.some((r) => r.test(name))) continue;
      const base = name.slice(0, -'/kernel'.length);
      specs.set(`${base}/lora_a`, { shape: [spec.shape[0]!, d.lora.rank], init: 'lora_a' });
      specs.set(`${base}/lora_b`, { shape: [d.lora.rank, spec.shape[1]!], init: 'zeros' });
    }
  }
  return specs;
}

/**
 * Fresh weights from a seed (the same seed gives the same weights on every backend). π0-FAST's head
 * bias starts at the log frequency of each token in the tokenizer's training chunks (fastHeadPrior), where
 * the tokenizer has counted them.
 */
export function initParams(d: ModelDims, seed: number, actionTokenizer: FastTokenizer | null = null): Params {
  const rng = new Rng(seed, 1);
  const params: Params = new Map();
  for (const [name, spec] of paramSpecs(d)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    let values: Float32Array;
    switch (spec.init) {
      case 'zeros':
        values = new Float32Array(n);
        break;
      case 'fan_in':
      case 'lora_a':
        values = rng.normals(n, 1 / Math.sqrt(spec.shape[0]!));
        break;
      case 'embed':
        values = rng.normals(n, 1);
        break;
      case 'small':
        values = rng.normals(n, 0.02);
        break;
      case 'sincos1d':
        values = sincos(spec.shape[0]!, spec.shape[1]!, (i) => [i]);
        break;
      case 'sincos2d': {
        const side = Math.round(Math.sqrt(spec.shape[0]!));
        values = sincos(spec.shape[0]!, spec.shape[1]!, (i) => [Math.floor(i / side), i % side]);
        break;
      }
    }
    if (name === 'expert/token_out/bias' && actionTokenizer)
      values = fastHeadPrior(d, actionTokenizer) ?? values;
    params.set(name, tf.tensor(values, spec.shape, 'float32'));
  }
  return params;
}

/**
 * log p(token) of the next-token targets in the tokenizer's training chunks (each chunk's tokens and its
 * end token; add-one smoothed; the start token, never a target, far below): the unigram model, which a
 * head starting from zeros takes thousands of Adam steps to reach (each step moves a bias by about the
 * learning rate). Null where the tokenizer has no counts.
 */
export function fastHeadPrior(d: ModelDims, tok: FastTokenizer): Float32Array | null {
  const report = tok.spec.report;
  if (!report?.tokenCounts) return null;
  const n = fastTokenCount(d);
  const { bos, eos } = fastSpecialTokens(d);
  const counts = new Float64Array(n);
  report.tokenCounts.forEach((c, i) => {
    if (i < d.fast.vocabSize) counts[i] = c;
  });
  counts[eos] = report.chunks;
  let total = 0;
  for (let i = 0; i < n; i++) if (i !== bos) total += counts[i]! + 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = i === bos ? -20 : Math.log((counts[i]! + 1) / total);
  return out;
}

/**
 * Sine-cosine position codes, `width` wide for `n` positions: the width split evenly between the
 * coordinates `coords(i)` gives (one for a sequence, row and column for a patch grid), each part half
 * sines, half cosines, over geometric frequencies from 1 to 1/10000.
 */
function sincos(n: number, width: number, coords: (i: number) => number[]): Float32Array {
  const out = new Float32Array(n * width);
  const parts = coords(0).length;
  const per = Math.floor(width / parts / 2) * 2;
  const half = per / 2;
  for (let i = 0; i < n; i++) {
    coords(i).forEach((c, p) => {
      for (let k = 0; k < half; k++) {
        const angle = c / 10000 ** (k / half);
        out[i * width + p * per + k] = Math.sin(angle);
        out[i * width + p * per + half + k] = Math.cos(angle);
      }
    });
  }
  return out;
}

/**
 * Folds LoRA adapters into their kernels (W + A·B·alpha/rank) for inference, where they never change:
 * the same outputs without the adapters' extra matmuls. Takes ownership of `w`'s tensors.
 */
export function mergeLora(w: Params, d: ModelDims): Params {
  if (!d.lora) return w;
  const out: Params = new Map();
  for (const [name, t] of w) {
    if (isLoraParam(name)) continue;
    const base = name.endsWith('/kernel') ? name.slice(0, -'/kernel'.length) : null;
    if (base === null || !w.has(`${base}/lora_a`)) {
      out.set(name, t);
      continue;
    }
    out.set(name, mergedKernel(w, base, d.lora));
    tf.dispose([t, w.get(`${base}/lora_a`)!, w.get(`${base}/lora_b`)!]);
  }
  return out;
}

// ---------------------------------------------------------------- inputs

/** What the model reads from a batch, prepared in plain arrays (no per-element tensor walks). */
export interface Observation {
  batchSize: number;
  cameras: number;
  imageSize: number;
  images: Uint8Array;
  imageMask: Uint8Array;
  state: Float32Array;
  stateDim: number;
  prompts: string[];
  /** [B]: each sample's chunk steps, where its robot's are fewer than the model's (ModelInputs.horizons). */
  horizons?: Int32Array;
}

export function prepareInputs(d: ModelDims, obs: Observation): ModelInputs {
  const { batchSize: b, cameras: c, imageSize: s } = obs;
  if (s !== d.imageSize)
    throw new Error(`images are ${s}×${s}, the model takes ${d.imageSize}×${d.imageSize}`);
  if (c < 1 || c > MAX_CAMERAS) throw new Error(`expected 1 to ${MAX_CAMERAS} cameras, got ${c}`);
  if (obs.images.length !== b * c * s * s * 3) {
    throw new Error(`images: expected ${b}×${c}×${s}×${s}×3 bytes, got ${obs.images.length}`);
  }
  if (obs.stateDim > d.actionDim) {
    throw new Error(`state dim ${obs.stateDim} is larger than the model's action_dim ${d.actionDim}`);
  }
  if (d.stateTokens > 0 && obs.stateDim > d.stateTokens) {
    throw new Error(
      `state dim ${obs.stateDim} is larger than the model's state_tokens ${d.stateTokens} (the dims ${d.variant} tokenises)`,
    );
  }
  if (obs.state.length !== b * obs.stateDim) {
    throw new Error(`state: expected ${b}×${obs.stateDim} values, got ${obs.state.length}`);
  }
  if (obs.prompts.length !== b) throw new Error(`expected ${b} prompts, got ${obs.prompts.length}`);
  if (obs.horizons) checkHorizons(obs.horizons, b, d.horizon);
  const tok = tokenizePrompts(obs.prompts, d.maxTokenLen);
  const state = new Float32Array(b * d.actionDim);
  for (let i = 0; i < b; i++) {
    state.set(obs.state.subarray(i * obs.stateDim, (i + 1) * obs.stateDim), i * d.actionDim);
  }
  return {
    batch: b,
    cameras: c,
    images: obs.images,
    imageSize: s,
    patchSize: d.patchSize,
    imageMask: obs.imageMask,
    promptLen: tok.length,
    promptTokens: tok.tokens,
    promptMask: tok.mask,
    state,
    ...(obs.horizons?.some((h) => h < d.horizon) && { horizons: obs.horizons }),
  };
}

export function batchObservation(batch: Batch): Observation {
  return {
    batchSize: batch.size,
    cameras: batch.cameras.length,
    imageSize: batch.imageSize,
    images: batch.images,
    imageMask: batch.imageMask,
    state: batch.state,
    stateDim: batch.stateDim,
    prompts: batch.prompts,
    ...(batch.horizons && { horizons: batch.horizons }),
  };
}

// ---------------------------------------------------------------- the network

/** Keys and values of a run of tokens, token-major [B·T, W] each. */
type Segment = [tf.Tensor2D, tf.Tensor2D];

/** Tokens of one part of a sequence through one block's weights (see Pi0.layer). */
interface Stream {
  /** [B·len, width of block g] */
  x: tf.Tensor2D;
  /** The block's parameter group, e.g. `prefix/block_0`. */
  g: string;
  /** Tokens per sample. */
  len: number;
  /** Keys and values only (no queries, no output). */
  kvOnly?: boolean;
  /** π0.5's condition [B, E] (from the flow time): its norms are adaptive, its residuals gated. */
  cond?: tf.Tensor2D | null;
}

/** Every layer's prefix keys and values: what the KV cache holds. */
export interface PrefixKV {
  /** Per layer, token-major [B·Tp, W], as the projections make them (attention reads heads in place). */
  keys: tf.Tensor2D[];
  values: tf.Tensor2D[];
  /** [B, Tp]: which prefix tokens are real (present cameras, prompt tokens). */
  valid: Uint8Array;
  length: number;
}

export class Pi0 {
  /** Parameters training leaves alone (their gradients are not computed); the trainer sets it. */
  frozen = new Set<string>();
  /** While sampling no gradient is taken: matmuls skip the custom-gradient wrapper (its bookkeeping per op). */
  private sampling = false;
  /** π0-FAST: what its greedy decoding may choose, made once from the tokenizer. */
  private decodeRules: FastDecodeRules | null = null;
  /** Guided sampling differentiates the actions through the model: gradients reach its inputs too. */
  private inputGrads = false;

  constructor(
    readonly dims: ModelDims,
    /** π0-FAST's action tokenizer (the checkpoint's or the config's assets); other variants take none. */
    readonly actionTokenizer: FastTokenizer | null = null,
  ) {
    if (actionTokenizer) checkTokenizerFits(dims, actionTokenizer);
  }

  get patchesPerImage(): number {
    return (this.dims.imageSize / this.dims.patchSize) ** 2;
  }

  /** π0: the state token and H action tokens; π0.5: the H action tokens (its state is in the prefix). */
  get suffixLen(): number {
    return this.dims.variant === 'pi05' ? this.dims.horizon : 1 + this.dims.horizon;
  }

  /** Block starts of the whole sequence (π0's or π0.5's mask) for a prefix of `prefixLen` tokens. */
  private blockStarts(prefixLen: number): Uint8Array {
    return this.dims.variant === 'pi05'
      ? pi05BlockStarts(prefixLen, this.dims.horizon)
      : pi0BlockStarts(prefixLen, this.dims.horizon);
  }

  /**
   * `x @ kernel (+ bias)`, with the LoRA path `(x @ A) @ B · alpha/rank` where the params have one.
   * `input`: x is a model input, not an activation, so no gradient flows into it.
   */
  linear(w: Params, x: tf.Tensor, name: string, input = false): tf.Tensor2D {
    const kernel = `${name}/kernel`;
    const mm = this.sampling
      ? plainMatmul
      : input && !this.inputGrads
        ? matmul2dInputA
        : this.frozen.has(kernel)
          ? matmul2dFrozenB
          : matmul2d;
    let y = mm(x, get(w, kernel));
    const a = w.get(`${name}/lora_a`);
    if (a) {
      const lora = this.dims.lora!;
      const mm2 = this.sampling ? plainMatmul : matmul2d;
      const delta = mm2(mm2(x, a), get(w, `${name}/lora_b`));
      y = tf.add(y, tf.mul(delta, lora.alpha / lora.rank));
    }
    const b = w.get(`${name}/bias`);
    return b ? tf.add(y, b) : y;
  }

  private mlp(w: Params, x: tf.Tensor2D, g: string, cond: tf.Tensor2D | null = null): tf.Tensor2D {
    const { h, gate } = this.norm(w, x, `${g}/ln2`, cond);
    return this.residual(x, this.linear(w, gelu(this.linear(w, h, `${g}/mlp/up`)), `${g}/mlp/down`), gate);
  }

  /**
   * RMSNorm `name` of x [B·T, E]. With a condition (π0.5's adaptive RMSNorm) the normalised tokens of
   * each sample are scaled by 1 + scale and shifted, and the gate for the residual comes back too, all
   * three from `name/mod` applied to the sample's condition [B, E].
   */
  private norm(
    w: Params,
    x: tf.Tensor2D,
    name: string,
    cond: tf.Tensor2D | null,
  ): { h: tf.Tensor2D; gate: tf.Tensor3D | null } {
    const h = rmsNorm(x, get(w, `${name}/scale`));
    if (!cond) return { h, gate: null };
    // A condition per sample [B, E] is shared by its tokens; one per token [B·T, E] (training-time
    // real-time chunking: committed steps at flow time 0) modulates each token.
    const [rows, e] = cond.shape;
    const mod = tf.reshape(this.linear(w, cond, `${name}/mod`), [rows, 1, -1]) as tf.Tensor3D;
    const part = (k: number) => tf.slice(mod, [0, 0, k * e], [rows, 1, e]) as tf.Tensor3D;
    const h3 = tf.add(tf.mul(tf.reshape(h, [rows, -1, e]), tf.add(part(0), 1)), part(1));
    return { h: tf.reshape(h3, [-1, e]) as tf.Tensor2D, gate: mod.shape[2] > 2 * e ? part(2) : null };
  }

  /** x + y, or x + gate·y where the norm before y was adaptive (the gate per sample or per token). */
  private residual(x: tf.Tensor2D, y: tf.Tensor2D, gate: tf.Tensor3D | null): tf.Tensor2D {
    if (!gate) return tf.add(x, y);
    const [rows, , e] = gate.shape;
    return tf.add(x, tf.reshape(tf.mul(tf.reshape(y, [rows, -1, e]), gate), [-1, e])) as tf.Tensor2D;
  }

  /** One block's keys and values, token-major [B·T, W]: the layout the KV cache keeps. */
  private projectKV(w: Params, h: tf.Tensor2D, g: string): Segment {
    return [this.linear(w, h, `${g}/attn/k`), this.linear(w, h, `${g}/attn/v`)];
  }

  /**
   * One transformer layer, π0's block, written once for every pass (vision, prefix, the action expert
   * with or without the cache): each stream of tokens (a part of the sequence with weights of its own,
   * `g`) normalised and projected through its own weights; one attention of every stream's queries
   * (joined per sample in sequence order) over the `cached` keys and values, then every stream's;
   * each stream's output through its own projection and MLP. A `kvOnly` stream (the prefix's last
   * layer, which nothing reads after) gives its keys and values only. `bias` is the queries' rows of
   * π0's mask. Returns each stream's new tokens (null where kvOnly) and keys and values.
   */
  private layer(
    w: Params,
    streams: Stream[],
    cached: Segment[],
    bias: tf.Tensor | null,
    b: number,
  ): { x: Array<tf.Tensor2D | null>; kv: Segment[] } {
    const d = this.dims;
    const normed = streams.map((s) => this.norm(w, s.x, `${s.g}/ln1`, s.cond ?? null));
    const hs = normed.map((n) => n.h);
    const kv = streams.map((s, i) => this.projectKV(w, hs[i]!, s.g));
    const active = streams.flatMap((s, i) => (s.kvOnly ? [] : [i]));
    const x: Array<tf.Tensor2D | null> = streams.map(() => null);
    if (active.length === 0) return { x, kv };
    const qs = active.map((i) => this.linear(w, hs[i]!, `${streams[i]!.g}/attn/q`));
    const lens = active.map((i) => streams[i]!.len);
    const total = lens.reduce((a, n) => a + n, 0);
    const q =
      qs.length === 1
        ? qs[0]!
        : (tf.reshape(concatAxis1(qs.map((t, k) => tf.reshape(t, [b, lens[k]!, d.width]) as tf.Tensor3D)), [
            b * total,
            d.width,
          ]) as tf.Tensor2D);
    const out = attention(q, [...cached, ...kv], bias, d.heads, b, 1 / Math.sqrt(d.headDim));
    let at = 0;
    for (const [k, i] of active.entries()) {
      const own =
        active.length === 1
          ? out
          : (tf.reshape(sliceAxis1(tf.reshape(out, [b, total, d.width]) as tf.Tensor3D, at, lens[k]!), [
              b * lens[k]!,
              d.width,
            ]) as tf.Tensor2D);
      at += lens[k]!;
      const { g, cond } = streams[i]!;
      const attended = this.residual(streams[i]!.x, this.linear(w, own, `${g}/attn/o`), normed[i]!.gate);
      x[i] = this.mlp(w, attended, g, cond ?? null);
    }
    return { x, kv };
  }

  /**
   * Patch tokens of each camera through the vision blocks (attention within one image): [B·cams·N, W].
   * `tokens`: the prompt's embedded tokens [B·L, W], which FiLM the patches where `prompt_film` is on.
   */
  private encodeImages(w: Params, inp: ModelInputs, tokens: tf.Tensor2D): tf.Tensor2D {
    const d = this.dims;
    const n = this.patchesPerImage;
    const images = inp.batch * inp.cameras;
    const patches = patchTensor(inp);
    let x = this.linear(w, patches, 'vision/patch_embed', true);
    let x3 = tf.add(tf.reshape(x, [images, n, d.width]), get(w, 'vision/pos_embedding')) as tf.Tensor3D;
    if (d.promptFilm) {
      const pooled =
        d.promptFilmPool === 'attention'
          ? attentionPool(tokens, get(w, 'vision/film/query'), inp)
          : (this.sampling ? plainMatmul : matmul2dInputA)(
              tf.tensor2d(promptPooling(inp), [inp.batch, inp.batch * inp.promptLen]),
              tokens,
            );
      const film = this.linear(w, pooled, 'vision/film');
      x3 = applyFilm(tf.reshape(x3, [inp.batch, inp.cameras * n, d.width]), film);
    }
    x = tf.reshape(x3, [images * n, d.width]);
    for (let i = 0; i < d.visionDepth; i++) {
      // Attention within each image: the images are the batch.
      x = this.layer(w, [{ x, g: `vision/block_${i}`, len: n }], [], null, images).x[0]!;
    }
    return rmsNorm(x, get(w, 'vision/final_norm/scale'));
  }

  /** The prefix tokens [B·Tp, W] (cameras' patches, then the prompt) and which of them are real. */
  embedPrefix(w: Params, inp: ModelInputs): { x: tf.Tensor2D; valid: Uint8Array; length: number } {
    const d = this.dims;
    const { batch: b, cameras: c, promptLen: l } = inp;
    const n = this.patchesPerImage;
    const cam = tf.slice(get(w, 'prefix/camera_embedding'), [0, 0], [c, d.width]);
    const onehot = promptOneHot(inp);
    const tokens = tf.add(
      tf.reshape((this.sampling ? plainMatmul : matmul2dInputA)(onehot, get(w, 'prefix/token_embedding')), [
        b,
        l,
        d.width,
      ]),
      tf.slice(get(w, 'prefix/prompt_pos_embedding'), [0, 0], [l, d.width]),
    );
    const img = tf.add(
      tf.reshape(this.encodeImages(w, inp, tf.reshape(tokens, [b * l, d.width])), [b, c, n, d.width]),
      tf.reshape(cam, [1, c, 1, d.width]),
    );
    const parts: tf.Tensor3D[] = [tf.reshape(img, [b, c * n, d.width]), tokens as tf.Tensor3D];
    let valid = prefixValidity(inp, n);
    if (stateInPrefix(d)) {
      // π0.5 and π0-FAST: the state's first dims as tokens after the prompt, every one real.
      const a = d.stateTokens;
      const state = (this.sampling ? plainMatmul : matmul2dInputA)(
        stateOneHot(inp, d.actionDim, a),
        get(w, 'prefix/state_embedding'),
      );
      parts.push(
        tf.add(tf.reshape(state, [b, a, d.width]), get(w, 'prefix/state_pos_embedding')) as tf.Tensor3D,
      );
      valid = sequenceValid(valid, c * n + l, a, b);
    }
    const length = c * n + l + d.stateTokens;
    const x: tf.Tensor2D = tf.reshape(concatAxis1(parts), [b * length, d.width]) as tf.Tensor2D;
    return { x, valid, length };
  }

  /** Runs the prefix blocks once and keeps every layer's keys and values (the KV cache). */
  prefixKV(w: Params, inp: ModelInputs): PrefixKV {
    const d = this.dims;
    const b = inp.batch;
    const { x: x0, valid, length: t } = this.embedPrefix(w, inp);
    const bias = attentionBias(valid, new Uint8Array(t), b, 0, t);
    const keys: tf.Tensor2D[] = [];
    const values: tf.Tensor2D[] = [];
    let x = x0;
    for (let i = 0; i < d.depth; i++) {
      const stream = { x, g: `prefix/block_${i}`, len: t, kvOnly: i === d.depth - 1 };
      const out = this.layer(w, [stream], [], bias, b);
      keys.push(out.kv[0]![0]);
      values.push(out.kv[0]![1]);
      x = out.x[0] ?? x;
    }
    return { keys, values, valid, length: t };
  }

  /** Sine-cosine embedding of the flow time (π0's `posemb_sincos`, periods 4e-3 to 4). */
  timeEmbedding(t: Float32Array): Float32Array {
    const e = this.dims.expertWidth;
    const half = e / 2;
    const out = new Float32Array(t.length * e);
    for (let b = 0; b < t.length; b++) {
      for (let i = 0; i < half; i++) {
        const period = 4e-3 * (4 / 4e-3) ** (i / Math.max(1, half - 1));
        const angle = (t[b]! * 2 * Math.PI) / period;
        out[b * e + i] = Math.sin(angle);
        out[b * e + half + i] = Math.cos(angle);
      }
    }
    return out;
  }

  /**
   * The suffix tokens and their condition. π0: [B·(1+H), E], the state token, then action tokens mixing
   * x_t with the flow time; no condition. π0.5: [B·H, E] action tokens of x_t alone, and the flow
   * time's embedding through the time MLP as the condition [B, E] of the expert's adaptive norms.
   */
  embedSuffix(
    w: Params,
    state: tf.Tensor2D,
    xt: tf.Tensor3D,
    t: Float32Array,
  ): { y: tf.Tensor2D; cond: tf.Tensor2D | null } {
    const d = this.dims;
    const e = d.expertWidth;
    const b = state.shape[0];
    // Times per sample [B], or per action token [B·H] (training-time real-time chunking).
    const perToken = t.length === b * d.horizon && d.horizon > 1;
    const act = this.linear(w, tf.reshape(xt, [b * d.horizon, d.actionDim]), 'expert/action_in', true);
    if (d.variant === 'pi05') {
      const time = tf.tensor2d(this.timeEmbedding(t), [t.length, e]);
      const hidden = silu(this.linear(w, time, 'expert/time_mlp_in', true)) as tf.Tensor2D;
      const cond = silu(this.linear(w, hidden, 'expert/time_mlp_out')) as tf.Tensor2D;
      const y = tf.add(tf.reshape(act, [b, d.horizon, e]), get(w, 'expert/action_pos_embedding'));
      return { y: tf.reshape(y, [b * d.horizon, e]) as tf.Tensor2D, cond };
    }
    const stateTok = tf.reshape(this.linear(w, state, 'expert/state_proj', true), [b, 1, e]);
    // π0 concatenates [action, time] before the MLP; splitting the kernel instead adds the time part once per sample.
    const kIn = get(w, 'expert/time_mlp_in/kernel');
    const timePart = (this.sampling ? plainMatmul : matmul2dInputA)(
      tf.tensor2d(this.timeEmbedding(t), [t.length, e]),
      tf.slice(kIn, [e, 0], [e, e]),
    );
    let h: tf.Tensor = tf.add(
      tf.reshape((this.sampling ? plainMatmul : matmul2d)(act, tf.slice(kIn, [0, 0], [e, e])), [
        b,
        d.horizon,
        e,
      ]),
      tf.reshape(timePart, [b, perToken ? d.horizon : 1, e]),
    );
    h = silu(tf.add(h, get(w, 'expert/time_mlp_in/bias')));
    h = this.linear(w, tf.reshape(h, [b * d.horizon, e]), 'expert/time_mlp_out');
    const actTok = tf.add(tf.reshape(h, [b, d.horizon, e]), get(w, 'expert/action_pos_embedding'));
    return {
      y: tf.reshape(concatAxis1([stateTok, actTok]), [b * this.suffixLen, e]) as tf.Tensor2D,
      cond: null,
    };
  }

  /**
   * The suffix's attention bias [B,1,1+H,Tp+1+H] from π0's mask over the whole sequence; with
   * `horizons`, each sample's action tokens past its chunk hidden (ModelInputs.horizons).
   */
  suffixBias(prefixValid: Uint8Array, prefixLen: number, b: number, horizons?: Int32Array): tf.Tensor4D {
    const s = this.suffixLen;
    const t = prefixLen + s;
    const valid = sequenceValid(prefixValid, prefixLen, s, b, suffixLengths(horizons, s, this.dims.horizon));
    return attentionBias(valid, this.blockStarts(prefixLen), b, prefixLen, t);
  }

  /** The predicted velocity [B,H,A] for x_t at times t, reading the prefix through its keys and values. */
  velocity(
    w: Params,
    kv: PrefixKV,
    bias: tf.Tensor4D,
    state: tf.Tensor2D,
    xt: tf.Tensor3D,
    t: Float32Array,
  ): tf.Tensor3D {
    const d = this.dims;
    const b = state.shape[0];
    let { y, cond } = this.embedSuffix(w, state, xt, t);
    for (let i = 0; i < d.depth; i++) {
      const stream = { x: y, g: `expert/block_${i}`, len: this.suffixLen, cond };
      y = this.layer(w, [stream], [[kv.keys[i]!, kv.values[i]!]], bias, b).x[0]!;
    }
    return this.actionsOut(w, y, b, cond);
  }

  private actionsOut(w: Params, y: tf.Tensor2D, b: number, cond: tf.Tensor2D | null): tf.Tensor3D {
    const d = this.dims;
    const e = d.expertWidth;
    const { h } = this.norm(w, y, 'expert/final_norm', cond);
    // π0's state token gives no action: the H tokens after it do.
    const act =
      this.suffixLen === d.horizon
        ? h
        : tf.reshape(sliceAxis1(tf.reshape(h, [b, this.suffixLen, e]), 1, d.horizon), [b * d.horizon, e]);
    return tf.reshape(this.linear(w, act, 'expert/action_out'), [b, d.horizon, d.actionDim]);
  }

  /**
   * The same velocity without a cache, as π0 computes it on one sequence: prefix and suffix tokens
   * together, each through its own weights, one attention over all of them with π0's full mask.
   */
  velocityUncached(
    w: Params,
    inp: ModelInputs,
    state: tf.Tensor2D,
    xt: tf.Tensor3D,
    t: Float32Array,
  ): tf.Tensor3D {
    const d = this.dims;
    const b = inp.batch;
    const s = this.suffixLen;
    const { x: x0, valid, length: p } = this.embedPrefix(w, inp);
    const total = p + s;
    const seqValid = sequenceValid(valid, p, s, b, suffixLengths(inp.horizons, s, d.horizon));
    const starts = this.blockStarts(p);
    const full = attentionBias(seqValid, starts, b, 0, total);
    const suffixRows = attentionBias(seqValid, starts, b, p, total);
    let x = x0;
    let { y, cond } = this.embedSuffix(w, state, xt, t);
    for (let i = 0; i < d.depth; i++) {
      // The prefix's keys then the expert's: every token attends over both (π0's mask says which). The
      // prefix's last layer gives keys and values only: nothing reads its output.
      const last = i === d.depth - 1;
      const streams = [
        { x, g: `prefix/block_${i}`, len: p, kvOnly: last },
        { x: y, g: `expert/block_${i}`, len: s, cond },
      ];
      const out = this.layer(w, streams, [], last ? suffixRows : full, b);
      x = out.x[0] ?? x;
      y = out.x[1]!;
    }
    return this.actionsOut(w, y, b, cond);
  }

  // ------------------------------------------------------------ flow matching

  /**
   * The flow-matching loss: x_t = t·noise + (1−t)·actions, target velocity noise − actions, squared
   * error averaged over the chunk's steps that lie inside the episode (actionPad = 0) and all model
   * action dims. `actions` [B,H,A] and `noise` are already padded to the model's action_dim.
   */
  flowLoss(
    w: Params,
    inp: ModelInputs,
    actions: Float32Array,
    actionPad: Uint8Array,
    noise: Float32Array,
    t: Float32Array,
    opts: FlowLossOptions = {},
  ): tf.Scalar {
    const d = this.dims;
    const b = inp.batch;
    if (d.variant === 'pi0_fast') return this.tokenLoss(w, inp, actions, opts.lossDims, opts.denominator);
    const k = opts.samples ?? 1;
    const kb = k * b;
    if (noise.length !== kb * d.horizon * d.actionDim || t.length !== kb) {
      throw new Error(`flowLoss: expected noise and times for ${k} sample(s) of a batch of ${b}`);
    }
    const tiled = k === 1 ? actions : repeatRows(actions, k);
    // Training-time real-time chunking: a sample's first `delay` steps are given, clean (time 0), and
    // not scored; the model learns to continue a committed prefix.
    const delays = opts.delays && (k === 1 ? opts.delays : repeatRows(opts.delays, k));
    const times = delays ? committedTimes(t, delays, d.horizon) : t;
    let pad = k === 1 ? actionPad : repeatRows(actionPad, k);
    if (delays) pad = committedPad(pad, delays, d.horizon);
    const { xt, target } = flowTargets(tiled, noise, times);
    const kv = this.prefixKV(w, inp);
    // Each observation's prefix runs once; its keys and values serve k draws of (noise, time).
    const rep = k === 1 ? kv : repeatKV(kv, k);
    const v = this.velocity(
      w,
      rep,
      this.suffixBias(
        rep.valid,
        rep.length,
        kb,
        inp.horizons && (k === 1 ? inp.horizons : repeatRows(inp.horizons, k)),
      ),
      tf.tensor2d(k === 1 ? inp.state : repeatRows(inp.state, k), [kb, d.actionDim]),
      tf.tensor3d(xt, [kb, d.horizon, d.actionDim]),
      times,
    );
    return maskedMse(v, tf.tensor3d(target, v.shape), pad, {
      lossDims: typeof opts.lossDims === 'object' && k > 1 ? repeatRows(opts.lossDims, k) : opts.lossDims,
      perSample: opts.perSample,
      reduction: opts.reduction,
      denominator: opts.denominator,
    });
  }

  /**
   * Action chunks [B,H,A] from noise by `numSteps` Euler steps from t = 1 to 0. With `cache` (the
   * default) the prefix runs once and each step runs only the action expert against its keys and values.
   */
  sample(
    w: Params,
    inp: ModelInputs,
    noise: Float32Array,
    opts: {
      numSteps?: number;
      cache?: boolean;
      weights?: SamplingWeights;
      guidance?: Guidance;
      committed?: Committed;
      /** π0-FAST: why each sample's tokens gave no chunk (null where they did); its rows are NaN. */
      failures?: Array<string | null>;
    } = {},
  ): tf.Tensor3D {
    const numSteps = opts.numSteps ?? this.dims.numSteps;
    if (this.dims.variant === 'pi0_fast') {
      if (opts.guidance || opts.committed)
        throw new Error(
          'π0-FAST decodes tokens: real-time chunking (guidance, a committed prefix) is for the flow variants',
        );
      return this.sampleTokens(w, inp, opts.failures);
    }
    if (opts.guidance) {
      this.inputGrads = true;
      try {
        return this.sampleGuided(w, inp, noise, numSteps, opts.guidance);
      } finally {
        this.inputGrads = false;
      }
    }
    if (opts.cache !== false && this.fastSampling() && !opts.committed) {
      // Rearranged weights are worth keeping across calls (PolicyModel does); made here, they last one chunk.
      const sw = opts.weights ?? samplingWeights(this, w);
      try {
        return tf.tidy(() => sampleCached(this, sw, inp, noise, numSteps));
      } finally {
        if (!opts.weights) tf.dispose([...sw.values()]);
      }
    }
    this.sampling = true;
    try {
      return this.sampleTidy(w, inp, noise, numSteps, opts.cache !== false, opts.committed);
    } finally {
      this.sampling = false;
    }
  }

  /**
   * Whether `sample` with the cache runs the fast sampler (sampler.ts) on the active backend, which
   * needs its attention op fast there; else the training path's KV-cached velocity.
   */
  fastSampling(): boolean {
    // sampler.ts is written for π0's suffix; π0.5 samples through the cached velocity.
    return this.dims.variant === 'pi0' && cachedAttentionFast();
  }

  /** The weights rearranged for `sample` (see sampler.ts); the caller owns and disposes them. */
  samplingWeights(w: Params): SamplingWeights {
    return samplingWeights(this, w);
  }

  /**
   * Real-time chunking's guided sampling (Black, Galliker and Levine 2025, "ΠGDM" guidance): each Euler
   * step predicts the finished chunk Â = x − t·v, and pulls the velocity towards actions whose chunk
   * agrees with the committed prefix Y where the weights W say (1 over the delay, decaying over the
   * rest of the overlap, 0 after): v ← v − c·(∂Â/∂x)ᵀ W(Y − Â), c = min(β, ((1−t)² + t²)/((1−t)·t)), the
   * vector-Jacobian product taken by TensorFlow.js's gradients through the cached velocity.
   */
  private sampleGuided(
    w: Params,
    inp: ModelInputs,
    noise: Float32Array,
    numSteps: number,
    g: Guidance,
  ): tf.Tensor3D {
    const d = this.dims;
    const b = inp.batch;
    const per = d.horizon * d.actionDim;
    if (g.prefix.length !== b * per || g.weights.length !== b * d.horizon)
      throw new Error(
        `guidance: expected a prefix of ${b}×${d.horizon}×${d.actionDim} and weights of ${b}×${d.horizon}, got ${g.prefix.length} and ${g.weights.length}`,
      );
    return tf.tidy(() => {
      const state = tf.tensor2d(inp.state, [b, d.actionDim]);
      const kv = this.prefixKV(w, inp);
      const bias = this.suffixBias(kv.valid, kv.length, b, inp.horizons);
      const target = tf.tensor3d(g.prefix, [b, d.horizon, d.actionDim]);
      const weights = tf.tensor3d(g.weights, [b, d.horizon, 1]);
      return eulerIntegrate(tf.tensor3d(noise, [b, d.horizon, d.actionDim]), numSteps, (x, t) => {
        const times = new Float32Array(b).fill(t);
        // One forward and one backward: the gradient of ½·Σ W(Y − Â)² is −(∂Â/∂x)ᵀ W(Y − Â), the pull,
        // and Â is kept from the same forward pass.
        let ahat: tf.Tensor | null = null;
        const { grad } = tf.valueAndGrad((xx: tf.Tensor) => {
          const a = tf.sub(xx, tf.mul(this.velocity(w, kv, bias, state, xx as tf.Tensor3D, times), t));
          ahat = tf.keep(a);
          return tf.mul(tf.sum(tf.mul(weights, tf.square(tf.sub(target, a)))), 0.5) as tf.Scalar;
        })(x);
        const v = tf.div(tf.sub(x, ahat!), t) as tf.Tensor3D;
        tf.dispose(ahat!);
        const c = Math.min(g.maxGuidance, ((1 - t) ** 2 + t ** 2) / Math.max(1e-9, (1 - t) * t));
        return tf.add(v, tf.mul(grad, c)) as tf.Tensor3D;
      });
    });
  }

  private sampleTidy(
    w: Params,
    inp: ModelInputs,
    noise: Float32Array,
    numSteps: number,
    cache: boolean,
    committed?: Committed,
  ): tf.Tensor3D {
    const d = this.dims;
    const b = inp.batch;
    return tf.tidy(() => {
      const state = tf.tensor2d(inp.state, [b, d.actionDim]);
      // A committed prefix (training-time real-time chunking) stays as given, at flow time 0: its
      // tokens start as the prefix and their velocity is held at 0.
      const start = committed ? withCommitted(noise, committed, d.horizon, d.actionDim) : noise;
      const free = committed && tf.tensor3d(freeSteps(committed.delays, d.horizon), [b, d.horizon, 1]);
      const times = (t: number) => {
        const all = new Float32Array(b).fill(t);
        return committed ? committedTimes(all, committed.delays, d.horizon) : all;
      };
      const hold = (v: tf.Tensor3D) => (free ? (tf.mul(v, free) as tf.Tensor3D) : v);
      const x1 = tf.tensor3d(start, [b, d.horizon, d.actionDim]);
      if (!cache) {
        return eulerIntegrate(x1, numSteps, (x, t) =>
          hold(this.velocityUncached(w, inp, state, x, times(t))),
        );
      }
      const kv = this.prefixKV(w, inp);
      const bias = this.suffixBias(kv.valid, kv.length, b, inp.horizons);
      return eulerIntegrate(x1, numSteps, (x, t) => hold(this.velocity(w, kv, bias, state, x, times(t))));
    });
  }

  // ------------------------------------------------------------ π0-FAST: action tokens

  private tokenizer(): FastTokenizer {
    if (!this.actionTokenizer)
      throw new UserError(
        'model.variant pi0_fast: no action tokenizer (assets/<asset_id>/fast_tokenizer.json): run `vla data tokenizer <config>` after `vla data stats`',
      );
    return this.actionTokenizer;
  }

  /**
   * Action tokens [B·len, E] at positions start.. (token ids [B, len], each sample's row of the token
   * table plus its position's embedding).
   */
  private embedActionTokens(w: Params, ids: Int32Array, b: number, len: number, start: number): tf.Tensor2D {
    const d = this.dims;
    if (this.sampling && len === 1) {
      // Decoding: one token per sample, looked up (no gradient to carry).
      const pos = tf.slice(get(w, 'expert/token_pos_embedding'), [start, 0], [1, d.expertWidth]);
      return tf.add(
        tf.gather(get(w, 'expert/token_embedding'), tf.tensor1d(ids, 'int32')),
        pos,
      ) as tf.Tensor2D;
    }
    const vocab = fastTokenCount(d);
    const onehot = filledTensor([b * len, vocab], (out) => {
      out.fill(0);
      for (let i = 0; i < ids.length; i++) out[i * vocab + ids[i]!] = 1;
    });
    const x = (this.sampling ? plainMatmul : matmul2dInputA)(onehot, get(w, 'expert/token_embedding'));
    const pos = tf.slice(get(w, 'expert/token_pos_embedding'), [start, 0], [len, d.expertWidth]);
    return tf.reshape(tf.add(tf.reshape(x, [b, len, d.expertWidth]), pos), [
      b * len,
      d.expertWidth,
    ]) as tf.Tensor2D;
  }

  /**
   * The next token's logits [B·len, vocab] after each of `len` action tokens per sample, reading the
   * prefix's keys and values (and the keys and values of the tokens before, `past`, when decoding).
   * Returns the tokens' own keys and values per layer too.
   */
  private tokenLogits(
    w: Params,
    kv: PrefixKV,
    past: Segment[] | null,
    x0: tf.Tensor2D,
    len: number,
    bias: tf.Tensor4D,
    b: number,
  ): { logits: tf.Tensor2D; kv: Segment[] } {
    let x = x0;
    const own: Segment[] = [];
    for (let i = 0; i < this.dims.depth; i++) {
      const cached: Segment[] = [[kv.keys[i]!, kv.values[i]!]];
      if (past) cached.push(past[i]!);
      const out = this.layer(w, [{ x, g: `expert/block_${i}`, len }], cached, bias, b);
      x = out.x[0]!;
      own.push(out.kv[0]!);
    }
    const h = rmsNorm(x, get(w, 'expert/final_norm/scale'));
    // The token table read backwards (tied weights), scaled as the tokens were normalised: 1/√E.
    const table = get(w, 'expert/token_embedding');
    const logits = tf.add(
      tf.matMul(tf.mul(h, 1 / Math.sqrt(this.dims.expertWidth)), table, false, true),
      get(w, 'expert/token_out/bias'),
    ) as tf.Tensor2D;
    return { logits, kv: own };
  }

  /**
   * π0-FAST's loss: each chunk's FAST tokens (its robot's dims, `lossDims`), after a start token and
   * followed by an end token, predicted one by one (next-token cross-entropy over the real positions),
   * every token seeing the whole prefix and the tokens before it.
   */
  private tokenLoss(
    w: Params,
    inp: ModelInputs,
    actions: Float32Array,
    lossDims?: number | Int32Array,
    denominator?: { value: number },
  ): tf.Scalar {
    const d = this.dims;
    const b = inp.batch;
    const seq = actionTokenSequences(this.dims, this.tokenizer(), actions, b, lossDims);
    const kv = this.prefixKV(w, inp);
    const p = kv.length;
    const valid = sequenceValid(kv.valid, p, seq.length, b, seq.lengths);
    const bias = attentionBias(valid, fastBlockStarts(p, seq.length), b, p, p + seq.length);
    const x = this.embedActionTokens(w, seq.inputs, b, seq.length, 0);
    const { logits } = this.tokenLogits(w, kv, null, x, seq.length, bias, b);
    const real = new Uint8Array(b * seq.length);
    for (let i = 0; i < b; i++) real.fill(1, i * seq.length, i * seq.length + seq.lengths[i]!);
    return tokenCrossEntropy(logits, seq.targets, fastTokenCount(d), real, denominator);
  }

  /**
   * Greedy decoding with the KV cache: the prefix once, then one action token per step through the
   * expert, each step's keys and values appended, until every sample has ended its chunk (or
   * `fast.max_tokens`). Each sample's tokens through the tokenizer back to actions [B, H, A]; a sample
   * whose tokens make no chunk gets NaN rows and its reason in `failures`.
   */
  private sampleTokens(w: Params, inp: ModelInputs, failures?: Array<string | null>): tf.Tensor3D {
    const d = this.dims;
    const b = inp.batch;
    const tok = this.tokenizer();
    this.decodeRules ??= fastDecodeRules(d, tok);
    const dec = new GreedyDecode(this.decodeRules, b);
    this.sampling = true;
    try {
      let prefix: { valid: Uint8Array; length: number } = { valid: new Uint8Array(), length: 0 };
      const tensors = tf.tidy(() => {
        const { keys, values, ...rest } = this.prefixKV(w, inp);
        prefix = rest;
        return { keys, values };
      }) as { keys: tf.Tensor2D[]; values: tf.Tensor2D[] };
      const kv: PrefixKV = { ...tensors, ...prefix };
      let past: Segment[] | null = null;
      try {
        while (!dec.finished) {
          const j = dec.step;
          const prev: Segment[] | null = past;
          const step = tf.tidy(() => {
            const p = kv.length;
            const valid = sequenceValid(kv.valid, p, j + 1, b);
            const bias = attentionBias(valid, fastBlockStarts(p, j + 1), b, p + j, p + j + 1);
            const x = this.embedActionTokens(w, dec.ids, b, 1, j);
            const out = this.tokenLogits(w, kv, prev, x, 1, bias, b);
            const joined = out.kv.map(
              ([k, v], i): Segment =>
                prev ? [concatTokens([prev[i]![0], k], b), concatTokens([prev[i]![1], v], b)] : [k, v],
            );
            return {
              logits: out.logits,
              joined: joined.map(([k, v]) => [tf.keep(k), tf.keep(v)] as Segment),
            };
          });
          if (prev) for (const [k, v] of prev) tf.dispose([k, v]);
          past = step.joined;
          // Read back once and chosen in script: a mask tensor, its sum and an argMax were three ops and
          // an upload per token.
          const logits = step.logits.dataSync() as Float32Array;
          step.logits.dispose();
          dec.choose(logits);
        }
      } finally {
        if (past) for (const [k, v] of past) tf.dispose([k, v]);
        tf.dispose([...kv.keys, ...kv.values]);
      }
    } finally {
      this.sampling = false;
    }
    const out = decodedChunks(dec.tokens, tok, d.horizon, d.actionDim, failures);
    return tf.tensor3d(out, [b, d.horizon, d.actionDim]);
  }
}

/** Whether the state enters the prefix as binned tokens (π0.5, π0-FAST) rather than the suffix (π0). */
function stateInPrefix(d: ModelDims): boolean {
  return d.stateTokens > 0;
}

/** An action tokenizer this model can use: its chunk length, its dims and its vocabulary; else an error naming both. */
export function checkTokenizerFits(d: ModelDims, tok: FastTokenizer, where = 'fast_tokenizer.json'): void {
  const s = tok.spec;
  const problem =
    s.horizon !== d.horizon
      ? `a chunk of ${s.horizon} steps; the model's model.action_horizon is ${d.horizon}`
      : s.actionDim > d.actionDim
        ? `${s.actionDim} action dims; the model's model.action_dim is ${d.actionDim}`
        : tok.vocabSize > d.fast.vocabSize
          ? `${tok.vocabSize} tokens; the model's model.fast.vocab_size is ${d.fast.vocabSize}`
          : null;
  if (d.variant !== 'pi0_fast')
    throw new UserError(
      `${where}: an action tokenizer is for model.variant pi0_fast; the model is ${d.variant}`,
    );
  if (problem)
    throw new UserError(
      `${where}: ${problem}: expected a tokenizer made for this config (vla data tokenizer)`,
    );
}

/**
 * Each chunk's token sequence for next-token training: inputs [B, L] (the start token, then the chunk's
 * tokens), targets [B, L] (the chunk's tokens, then the end token; 0 past the end) and each sample's
 * length; L is the longest in the batch, at most `fast.max_tokens` + 1 (a longer chunk is cut there).
 */
export function actionTokenSequences(
  d: ModelDims,
  tok: FastTokenizer,
  actions: Float32Array,
  b: number,
  lossDims?: number | Int32Array,
): { inputs: Int32Array; targets: Int32Array; lengths: Int32Array; length: number } {
  const { bos, eos } = fastSpecialTokens(d);
  const dims = tok.spec.actionDim;
  const per = d.horizon * d.actionDim;
  const chunk = new Float32Array(d.horizon * dims);
  const seqs: Int32Array[] = [];
  for (let i = 0; i < b; i++) {
    const robotDims = lossDims === undefined ? dims : typeof lossDims === 'number' ? lossDims : lossDims[i]!;
    chunk.fill(0);
    for (let t = 0; t < d.horizon; t++) {
      const row = actions.subarray(
        i * per + t * d.actionDim,
        i * per + t * d.actionDim + Math.min(dims, robotDims),
      );
      chunk.set(row, t * dims);
    }
    seqs.push(tok.encode(chunk));
  }
  const lengths = Int32Array.from(seqs, (s) => Math.min(s.length, d.fast.maxTokens) + 1);
  const length = Math.max(...lengths);
  const inputs = new Int32Array(b * length);
  const targets = new Int32Array(b * length);
  seqs.forEach((s, i) => {
    const n = lengths[i]! - 1;
    inputs[i * length] = bos;
    inputs.set(s.subarray(0, n), i * length + 1);
    targets.set(s.subarray(0, n), i * length);
    targets[i * length + n] = s.length > n ? s[n]! : eos;
  });
  return { inputs, targets, lengths, length };
}

/** Mean next-token cross-entropy of logits [B·L, V] against targets [B·L] over the rows `mask` marks real. */
function tokenCrossEntropy(
  logits: tf.Tensor2D,
  targets: Int32Array,
  vocab: number,
  mask: Uint8Array,
  denominator?: { value: number },
): tf.Scalar {
  const rows = logits.shape[0];
  const onehot = filledTensor([rows, vocab], (out) => {
    out.fill(0);
    for (let i = 0; i < rows; i++) if (mask[i]) out[i * vocab + targets[i]!] = 1;
  });
  let kept = 0;
  for (let i = 0; i < rows; i++) if (mask[i]) kept++;
  if (denominator) denominator.value = kept;
  const logp = tf.logSoftmax(logits);
  return tf.div(tf.neg(tf.sum(tf.mul(onehot, logp))), Math.max(1, kept)) as tf.Scalar;
}

/**
 * Integrates dx/dt = v(x, t) from t = 1 to t = 0 in `numSteps` equal Euler steps (π0's sampler).
 * Each step's tensors are freed as it goes, so a long integration keeps a flat tensor count.
 */
export function eulerIntegrate(
  x1: tf.Tensor3D,
  numSteps: number,
  v: (x: tf.Tensor3D, t: number) => tf.Tensor3D,
): tf.Tensor3D {
  const dt = -1 / numSteps;
  let x = x1;
  for (let i = 0; i < numSteps; i++) {
    const t = 1 + i * dt;
    const prev = x;
    x = tf.tidy(() => tf.add(prev, tf.mul(v(prev, t), dt)));
    if (prev !== x1) prev.dispose();
  }
  return x;
}

/** What a guided chunk must agree with (real-time chunking; see Pi0.sampleGuided). */
export interface Guidance {
  /** [B, H, A] the committed actions in the model's numbers (normalised, padded), step i of this chunk at i. */
  prefix: Float32Array;
  /** [B, H] how strongly each step is held to the prefix (rtcWeights: 1, decaying, 0). */
  weights: Float32Array;
  /** β: the largest guidance weight (the paper's 5). */
  maxGuidance: number;
}

/**
 * Real-time chunking's soft mask over a chunk of `horizon` steps: 1 for the `delay` steps the robot
 * executes before the new chunk arrives (frozen), then exponentially decaying over the rest of the
 * `overlap` steps the committed prefix covers, 0 after (the paper's schedule).
 */
export function rtcWeights(horizon: number, delay: number, overlap: number): Float32Array {
  const w = new Float32Array(horizon);
  const end = Math.min(horizon, overlap);
  for (let i = 0; i < end; i++) {
    if (i < delay) w[i] = 1;
    else {
      const c = (end - i) / (end - delay + 1);
      w[i] = (c * Math.expm1(c)) / Math.expm1(1);
    }
  }
  return w;
}

/** x_t = t·noise + (1−t)·actions and the velocity that carries it, noise − actions ([B,H,A] each). */
export function flowTargets(
  actions: Float32Array,
  noise: Float32Array,
  t: Float32Array,
): { xt: Float32Array; target: Float32Array } {
  const per = actions.length / t.length;
  const xt = new Float32Array(actions.length);
  const target = new Float32Array(actions.length);
  for (let i = 0; i < actions.length; i++) {
    const ti = t[Math.floor(i / per)]!;
    xt[i] = ti * noise[i]! + (1 - ti) * actions[i]!;
    target[i] = noise[i]! - actions[i]!;
  }
  return { xt, target };
}

/**
 * How a loss over a batch is averaged: over every scored entry (`entries`, each (step, dim) counting
 * once, as openpi), or over samples, each sample's own mean first (`samples`: a mixture's 16-step
 * 8-dim arm chunk then weighs as much as a 50-step 14-dim ALOHA one).
 */
export type LossReduction = 'entries' | 'samples';

/** What else a masked loss takes and tells (see maskedMse). */
export interface MaskedLossOptions {
  /** The robot's action dims: one count for the batch, or each sample's (a mixture of robots). */
  lossDims?: number | Int32Array;
  /** Where to add each sample's summed error and scored entries. */
  perSample?: SampleLoss;
  reduction?: LossReduction;
  /** Set to what the mean divided by: scored entries, or under `samples` the samples scored. */
  denominator?: { value: number };
}

/**
 * Mean squared error over [B,H,A], leaving out the chunk steps past the episode's end (pad [B,H] = 1)
 * and the action dims past `lossDims`, averaged as `reduction` says (default `entries`). With
 * `perSample`, also each sample's summed error and scored entries (rows past its length fold onto row
 * `i mod length`: the draws of one observation).
 */
export function maskedMse(
  v: tf.Tensor3D,
  target: tf.Tensor3D,
  pad: Uint8Array,
  opts: MaskedLossOptions = {},
): tf.Scalar {
  const { lossDims, perSample, reduction = 'entries' } = opts;
  const [b, h, a] = v.shape;
  const dimsOf = (i: number) =>
    Math.min(a, lossDims === undefined ? a : typeof lossDims === 'number' ? lossDims : lossDims[i]!);
  const err = tf.sub(v, target);
  const keptOf = new Float64Array(b);
  let sq: tf.Tensor3D;
  if (typeof lossDims !== 'object') {
    const dims = dimsOf(0);
    const weight = new Float32Array(b * h);
    for (let i = 0; i < weight.length; i++) {
      weight[i] = pad[i] ? 0 : 1;
      keptOf[Math.floor(i / h)]! += weight[i]! * dims;
    }
    sq = tf.mul(tf.mul(err, err), tf.tensor3d(weight, [b, h, 1]));
    if (dims < a) {
      const dimWeight = new Float32Array(a).fill(1, 0, dims);
      sq = tf.mul(sq, tf.tensor3d(dimWeight, [1, 1, a]));
    }
  } else {
    // Per sample: the weight of (sample, step, dim) is 1 inside both its episode and its robot's dims.
    const weight = new Float32Array(b * h * a);
    for (let i = 0; i < b; i++) {
      const dims = dimsOf(i);
      for (let t = 0; t < h; t++) {
        if (pad[i * h + t]) continue;
        weight.fill(1, (i * h + t) * a, (i * h + t) * a + dims);
        keptOf[i]! += dims;
      }
    }
    sq = tf.mul(tf.mul(err, err), tf.tensor3d(weight, [b, h, a]));
  }
  if (perSample) {
    // A side reading, outside the loss's graph: what each sample contributes, for logging.
    const rows = perSample.err.length;
    const perRow = tf.sum(sq, [1, 2]);
    const sums = perRow.dataSync();
    perRow.dispose();
    for (let i = 0; i < b; i++) {
      perSample.err[i % rows]! += sums[i]!;
      perSample.kept[i % rows]! += keptOf[i]!;
    }
  }
  if (reduction === 'samples') {
    // Each sample's mean, then the mean over the samples that score anything.
    const scale = new Float32Array(b);
    let scored = 0;
    for (let i = 0; i < b; i++) if (keptOf[i]! > 0) scored++;
    for (let i = 0; i < b; i++) if (keptOf[i]! > 0) scale[i] = 1 / (keptOf[i]! * scored);
    if (opts.denominator) opts.denominator.value = scored;
    return tf.sum(tf.mul(tf.sum(sq, [1, 2]), tf.tensor1d(scale))) as tf.Scalar;
  }
  const kept = keptOf.reduce((x, y) => x + y, 0);
  if (opts.denominator) opts.denominator.value = kept;
  return tf.div(tf.sum(sq), Math.max(1, kept)) as tf.Scalar;
}

/** Each sample's part of a flow loss: its summed squared error and the count of entries scored. */
export interface SampleLoss {
  err: Float64Array;
  kept: Float64Array;
}

export interface FlowLossOptions {
  /**
   * The robot's action dims (the leading ones): padding dims beyond them carry no information, so the
   * loss leaves them out (openpi averages over all of action_dim). Per sample for a mixture of robots.
   */
  lossDims?: number | Int32Array;
  /** Draws of (noise, time) per observation, sharing one prefix pass; noise and times hold them all. */
  samples?: number;
  /** [B] training-time real-time chunking: each sample's first steps given clean and not scored. */
  delays?: Int32Array;
  /** Where to add each sample's part of the loss ([B] each; the flow variants fill it). */
  perSample?: SampleLoss;
  /** How the flow loss averages over the batch (default `entries`); π0-FAST's token loss ignores it. */
  reduction?: LossReduction;
  /**
   * Set to what the loss's mean divided by (scored entries, or samples under `samples`; π0-FAST's,
   * its real tokens): a part's weight where data-parallel parts' means make the batch's.
   */
  denominator?: { value: number };
}

/** `k` copies of `x` one after another (sample-major: copy j of row i lands at row j·rows + i). */
function repeatRows<T extends Float32Array | Uint8Array | Int32Array>(x: T, k: number): T {
  const out = new (x.constructor as new (n: number) => T)(x.length * k);
  for (let j = 0; j < k; j++) out.set(x, j * x.length);
  return out;
}

function repeatKV(kv: PrefixKV, k: number): PrefixKV {
  return {
    keys: kv.keys.map((t) => tf.tile(t, [k, ...t.shape.slice(1).map(() => 1)])),
    values: kv.values.map((t) => tf.tile(t, [k, ...t.shape.slice(1).map(() => 1)])),
    valid: repeatRows(kv.valid, k),
    length: kv.length,
  };
}

/** π0's additive attention bias [B, 1, r1 − r0, T] for query rows [r0, r1), built in the tensor's memory. */
function attentionBias(
  valid: Uint8Array,
  blockStarts: Uint8Array,
  b: number,
  r0: number,
  r1: number,
): tf.Tensor4D {
  const t = blockStarts.length;
  return filledTensor([b, 1, r1 - r0, t], (out) =>
    attentionBiasInto(out, valid, blockStarts, b, r0, r1),
  ) as tf.Tensor4D;
}

/** Flow times for training: t ~ Beta(1.5, 1)·0.999 + 0.001 (Beta(a, 1) is U^(1/a)), as π0. */
export function sampleFlowTimes(rng: Rng, n: number): Float32Array {
  const t = new Float32Array(n);
  for (let i = 0; i < n; i++) t[i] = rng.uniform() ** (1 / 1.5) * 0.999 + 0.001;
  return t;
}

const plainMatmul = (a: tf.Tensor, b: tf.Tensor): tf.Tensor2D =>
  tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D);

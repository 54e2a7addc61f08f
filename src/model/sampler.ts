/**
 * Sampling with the KV cache, written for latency at batch 1, where each tfjs op costs a fixed 5–20 µs
 * whatever its size and a 10-step chunk runs thousands of them. Same function as `Pi0.velocity`
 * integrated by Euler steps (the tests hold it to the uncached path), fewer and larger ops:
 *
 * - Weights are rearranged once (`samplingWeights`): each RMSNorm scale folded into the projections
 *   that read the normalised activations, q, k and v in one kernel with q's 1/√hd folded in, the action
 *   input projection folded into the time MLP's first kernel, LoRA adapters merged.
 * - The state token sees only the prefix and itself (π0's mask), so it does not depend on the noisy
 *   actions or the flow time: it runs once per chunk, and its keys and values join the prefix's in the
 *   cache. Each flow step then runs the H action tokens alone, whose attention reaches every cached
 *   token: no mask at all when every prefix token is real.
 * - Attention is one op (`cachedAttention`): the kernel pack's CachedAttention reads each head straight
 *   out of the packed q|k|v and the token-major cache, so no head is split, transposed or concatenated.
 *
 * `small` model, one chunk at batch 1 on this machine's WASM + OpenBLAS: 2,652 ops and 44 ms before,
 * 1,201 ops and 32 ms after (`npm run bench -- model`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { cachedAttention } from '../backend/native/attention.js';
import { fusedActive, RMS_NORM } from '../backend/native/fused.js';
import type { ModelDims } from './config.js';
import { MAX_CAMERAS } from './config.js';
import { type ModelInputs, patchTensor, promptOneHot } from './inputs.js';
import { applyFilm, attentionPool, gelu, silu } from './layers.js';
import { keyBiasInto, prefixValidity, promptPooling, suffixLengths } from './masks.js';
import { param as get, mergedKernel, type Params } from './params.js';

/** What the sampler needs of the model (Pi0 provides it): its dims, the patches per image, the flow time's embedding. */
export interface SamplerModel {
  readonly dims: ModelDims;
  readonly patchesPerImage: number;
  timeEmbedding(t: Float32Array): Float32Array;
}

/** Weights laid out for `sampleCached`; owns its tensors (dispose them with `tf.dispose([...sw.values()])`). */
export type SamplingWeights = Map<string, tf.Tensor>;

/** diag(1 + scale) · kernel: an RMSNorm's scale moved into the matmul that reads its output. */
function scaleRows(kernel: tf.Tensor2D, scale: tf.Tensor): tf.Tensor2D {
  return tf.mul(kernel, tf.reshape(tf.add(scale, 1), [-1, 1]));
}

/** Puts a sampling weight in the map being made (its own tensor, kept out of the tidy). */
export type KeepWeight = (name: string, t: tf.Tensor) => void;

/**
 * A map of sampling weights made by `fill` inside one tidy: every tensor is the map's own, a parameter
 * passed through unchanged cloned (shared memory on WASM with the kernel pack).
 */
export function makeSamplingWeights(w: Params, fill: (keep: KeepWeight) => void): SamplingWeights {
  const out: SamplingWeights = new Map();
  const params = new Set(w.values());
  tf.tidy(() => fill((name, t) => out.set(name, tf.keep(params.has(t) ? tf.clone(t) : t))));
  return out;
}

/**
 * One block's sampling weights: q | k | v in one kernel (q's 1/√hd folded in), the output projection,
 * the MLP's. `foldNorms`: the RMSNorm scales go into the kernels that read the normalised tokens (off
 * where the norm is adaptive and its gain goes into the modulation instead, see native/weights.ts).
 */
export function blockSamplingWeights(
  d: ModelDims,
  w: Params,
  keep: KeepWeight,
  g: string,
  kvOnly: boolean,
  foldNorms = true,
): void {
  const kernel = (base: string) => mergedKernel(w, base, d.lora);
  const fold = (k: tf.Tensor2D, norm: string) => (foldNorms ? scaleRows(k, get(w, `${g}/${norm}/scale`)) : k);
  const parts = [kernel(`${g}/attn/k`), kernel(`${g}/attn/v`)];
  if (!kvOnly) parts.unshift(tf.mul(kernel(`${g}/attn/q`), 1 / Math.sqrt(d.headDim)));
  keep(`${g}/${kvOnly ? 'kv' : 'qkv'}`, fold(tf.concat(parts, 1), 'ln1'));
  if (kvOnly) return;
  keep(`${g}/o`, kernel(`${g}/attn/o`));
  keep(`${g}/up`, fold(kernel(`${g}/mlp/up`), 'ln2'));
  keep(`${g}/down`, kernel(`${g}/mlp/down`));
}

/** The sampling weights of the images and the prefix (every flow variant's): embeddings, vision and prefix blocks. */
export function prefixSamplingWeights(d: ModelDims, w: Params, keep: KeepWeight): void {
  const kernel = (base: string) => mergedKernel(w, base, d.lora);
  keep('vision/patch_embed', kernel('vision/patch_embed'));
  keep('vision/patch_bias', get(w, 'vision/patch_embed/bias'));
  keep('vision/pos_embedding', get(w, 'vision/pos_embedding'));
  if (d.promptFilm) {
    keep('vision/film', kernel('vision/film'));
    keep('vision/film_bias', get(w, 'vision/film/bias'));
    if (d.promptFilmPool === 'attention') keep('vision/film_query', get(w, 'vision/film/query'));
  }
  for (let i = 0; i < d.visionDepth; i++) blockSamplingWeights(d, w, keep, `vision/block_${i}`, false);
  keep('vision/final_scale', tf.add(get(w, 'vision/final_norm/scale'), 1));
  keep('prefix/camera_embedding', get(w, 'prefix/camera_embedding'));
  keep('prefix/token_embedding', get(w, 'prefix/token_embedding'));
  keep('prefix/prompt_pos_embedding', get(w, 'prefix/prompt_pos_embedding'));
  for (let i = 0; i < d.depth; i++) blockSamplingWeights(d, w, keep, `prefix/block_${i}`, i === d.depth - 1);
}

export function samplingWeights(model: SamplerModel, w: Params): SamplingWeights {
  const d = model.dims;
  const kernel = (base: string) => mergedKernel(w, base, d.lora);
  return makeSamplingWeights(w, (keep) => {
    prefixSamplingWeights(d, w, keep);
    const e = d.expertWidth;
    keep('expert/state_proj', kernel('expert/state_proj'));
    keep('expert/state_bias', get(w, 'expert/state_proj/bias'));
    // (x·A + a)·T + t = x·(A·T) + (a·T + t): the action projection and the time MLP's action half in one.
    const kIn = kernel('expert/time_mlp_in');
    const actHalf = tf.slice(kIn, [0, 0], [e, e]);
    keep('expert/action_in', tf.matMul(kernel('expert/action_in'), actHalf));
    keep(
      'expert/action_in_bias',
      tf.add(
        tf.matMul(tf.reshape(get(w, 'expert/action_in/bias'), [1, e]), actHalf),
        tf.reshape(get(w, 'expert/time_mlp_in/bias'), [1, e]),
      ),
    );
    keep('expert/time_in', tf.slice(kIn, [e, 0], [e, e]));
    keep('expert/time_out', kernel('expert/time_mlp_out'));
    // The time MLP's output bias is a per-token constant like the position embedding: one add.
    keep(
      'expert/action_pos',
      tf.add(get(w, 'expert/action_pos_embedding'), get(w, 'expert/time_mlp_out/bias')),
    );
    for (let i = 0; i < d.depth; i++) blockSamplingWeights(d, w, keep, `expert/block_${i}`, false);
    keep('expert/action_out', scaleRows(kernel('expert/action_out'), get(w, 'expert/final_norm/scale')));
    keep('expert/action_out_bias', get(w, 'expert/action_out/bias'));
  });
}

/** x / rms(x), the scale having gone into the next matmul. */
function normalize<T extends tf.Tensor>(x: T): T {
  if (fusedActive()) {
    // The fused RMSNorm without a scale (a gain of exactly 1): one kernel where this was five.
    const [y, r] = tf.engine().runKernel(RMS_NORM, { x }) as tf.Tensor[];
    r!.dispose();
    return y as T;
  }
  return tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.mul(x, x), -1, true), 1e-6)));
}

/** Keys and values [B·Tc, 2W] (per batch, Tc rows) with `next` [B·T, 2W] appended per batch. */
function append(cache: tf.Tensor2D, next: tf.Tensor2D, b: number): tf.Tensor2D {
  const w2 = cache.shape[1];
  if (b === 1) return tf.concat([cache, next], 0);
  const joined = tf.concat([tf.reshape(cache, [b, -1]), tf.reshape(next, [b, -1])], 1);
  return tf.reshape(joined, [-1, w2]);
}

/** The keys and values of a packed q|k|v projection [N, 3W]: [N, 2W]. */
function keysValues(qkv: tf.Tensor2D): tf.Tensor2D {
  const w = qkv.shape[1] / 3;
  return tf.slice(qkv, [0, w], [qkv.shape[0], 2 * w]);
}

interface Cache {
  /** Per layer [B·Tc, 2W]: keys | values of the prefix's tokens, then the state token's. */
  kv: tf.Tensor2D[];
  /** Additive bias [B, Tc + H] for the action tokens, or null when every cached token is real. */
  actionBias: tf.Tensor2D | null;
}

class Sampler {
  private readonly heads: number;
  private readonly empty: tf.Tensor2D;

  constructor(
    private readonly model: SamplerModel,
    private readonly sw: SamplingWeights,
  ) {
    this.heads = model.dims.heads;
    this.empty = tf.zeros([0, 2 * model.dims.width]);
  }

  private w(name: string): tf.Tensor2D {
    const t = this.sw.get(name);
    if (!t) throw new Error(`sampling weight ${name} is missing`);
    return t as tf.Tensor2D;
  }

  /** x [B·T, in] → its packed q|k|v [B·T, 3W] (norm scale and q's 1/√hd folded into the kernel). */
  private qkv(g: string, x: tf.Tensor2D): tf.Tensor2D {
    return tf.matMul(normalize(x), this.w(`${g}/qkv`));
  }

  /** Attention over `cache` and the tokens' own keys, then the output projection, residual and MLP. */
  private finishBlock(
    g: string,
    x: tf.Tensor2D,
    qkv: tf.Tensor2D,
    cache: tf.Tensor2D,
    bias: tf.Tensor2D | null,
    b: number,
  ): tf.Tensor2D {
    const att = cachedAttention(qkv, cache, bias, this.heads, b);
    const y: tf.Tensor2D = tf.add(x, tf.matMul(att, this.w(`${g}/o`)));
    const up = gelu(tf.matMul(normalize(y), this.w(`${g}/up`))) as tf.Tensor2D;
    return tf.add(y, tf.matMul(up, this.w(`${g}/down`)));
  }

  /** The prefix's tokens through its blocks; per layer its keys | values [B·Tp, 2W]. */
  prefix(inp: ModelInputs): { kv: tf.Tensor2D[]; valid: Uint8Array; length: number } {
    const d = this.model.dims;
    const { batch: b, cameras: c, promptLen: l } = inp;
    const n = this.model.patchesPerImage;
    const images = b * c;
    const patches = patchTensor(inp);
    let v: tf.Tensor2D = tf.add(
      tf.matMul(patches, this.w('vision/patch_embed')),
      this.w('vision/patch_bias'),
    );
    const onehot = promptOneHot(inp);
    const posAll = this.w('prefix/prompt_pos_embedding');
    const tokens = tf.add(
      tf.reshape(tf.matMul(onehot, this.w('prefix/token_embedding')), [b, l, d.width]),
      l === posAll.shape[0] ? posAll : tf.slice(posAll, [0, 0], [l, d.width]),
    );
    let v3 = tf.add(tf.reshape(v, [images, n, d.width]), this.w('vision/pos_embedding')) as tf.Tensor3D;
    if (d.promptFilm) {
      const flat = tf.reshape(tokens, [b * l, d.width]) as tf.Tensor2D;
      const pooled =
        d.promptFilmPool === 'attention'
          ? attentionPool(flat, this.w('vision/film_query'), inp)
          : tf.matMul(tf.tensor2d(promptPooling(inp), [b, b * l]), flat);
      const film = tf.add(
        tf.matMul(pooled, this.w('vision/film')),
        this.w('vision/film_bias'),
      ) as tf.Tensor2D;
      v3 = applyFilm(tf.reshape(v3, [b, c * n, d.width]), film);
    }
    v = tf.reshape(v3, [images * n, d.width]);
    for (let i = 0; i < d.visionDepth; i++) {
      const g = `vision/block_${i}`;
      v = this.finishBlock(g, v, this.qkv(g, v), this.empty, null, images);
    }
    const cam = this.w('prefix/camera_embedding');
    const img = tf.add(
      tf.reshape(tf.mul(normalize(v), this.w('vision/final_scale')), [b, c, n, d.width]),
      tf.reshape(c === MAX_CAMERAS ? cam : tf.slice(cam, [0, 0], [c, d.width]), [1, c, 1, d.width]),
    );
    const length = c * n + l;
    let x = tf.reshape(
      tf.concat([tf.reshape(img, [b, c * n * d.width]), tf.reshape(tokens, [b, l * d.width])], 1),
      [b * length, d.width],
    ) as tf.Tensor2D;
    const valid = prefixValidity(inp, n);
    // Prefix tokens attend to every real prefix token (the padding rows' outputs are never read).
    const bias = keyBias(valid, b, length, 0);
    const kv: tf.Tensor2D[] = [];
    for (let i = 0; i < d.depth; i++) {
      const g = `prefix/block_${i}`;
      if (i === d.depth - 1) {
        kv.push(tf.matMul(normalize(x), this.w(`${g}/kv`)));
        break;
      }
      const qkv = this.qkv(g, x);
      kv.push(keysValues(qkv));
      x = this.finishBlock(g, x, qkv, this.empty, bias, b);
    }
    return { kv, valid, length };
  }

  /**
   * The state token through the expert's blocks against the prefix cache, keeping its keys and values
   * per layer: the cache each flow step reads.
   */
  cache(inp: ModelInputs, state: tf.Tensor2D): Cache {
    const d = this.model.dims;
    const b = inp.batch;
    const p = this.prefix(inp);
    const stateBias = keyBias(p.valid, b, p.length, 1);
    let s: tf.Tensor2D = tf.add(tf.matMul(state, this.w('expert/state_proj')), this.w('expert/state_bias'));
    const kv: tf.Tensor2D[] = [];
    for (let i = 0; i < d.depth; i++) {
      const g = `expert/block_${i}`;
      const qkv = this.qkv(g, s);
      kv.push(append(p.kv[i]!, keysValues(qkv), b));
      // The last block's output is never read: the action tokens need only its keys and values.
      if (i < d.depth - 1) s = this.finishBlock(g, s, qkv, p.kv[i]!, stateBias, b);
    }
    // Action tokens past a sample's own chunk (ModelInputs.horizons) are hidden from the others.
    const lengths = suffixLengths(inp.horizons, 1 + d.horizon, d.horizon);
    return { kv, actionBias: keyBias(p.valid, b, p.length, 1 + d.horizon, lengths) };
  }

  /** Velocity [B·H, A]·dt for the noisy chunk x [B·H, A] at flow time t, with `out` = action_out·dt. */
  step(
    cache: Cache,
    x: tf.Tensor2D,
    t: number,
    b: number,
    out: tf.Tensor2D,
    outBias: tf.Tensor,
  ): tf.Tensor2D {
    const d = this.model.dims;
    const e = d.expertWidth;
    const h = d.horizon;
    const time = tf.add(
      tf.matMul(
        tf.tensor2d(this.model.timeEmbedding(new Float32Array(b).fill(t)), [b, e]),
        this.w('expert/time_in'),
      ),
      this.w('expert/action_in_bias'),
    );
    const mixed = silu(
      tf.add(tf.reshape(tf.matMul(x, this.w('expert/action_in')), [b, h, e]), tf.reshape(time, [b, 1, e])),
    );
    let y = tf.reshape(
      tf.add(
        tf.reshape(tf.matMul(tf.reshape(mixed, [b * h, e]), this.w('expert/time_out')), [b, h, e]),
        this.w('expert/action_pos'),
      ),
      [b * h, e],
    ) as tf.Tensor2D;
    for (let i = 0; i < d.depth; i++) {
      const g = `expert/block_${i}`;
      y = this.finishBlock(g, y, this.qkv(g, y), cache.kv[i]!, cache.actionBias, b);
    }
    return tf.add(tf.matMul(normalize(y), out), outBias);
  }
}

/** keyBiasInto's bias as a tensor [B, Tp + extra], or null when nothing is hidden. */
function keyBias(
  prefixValid: Uint8Array,
  b: number,
  p: number,
  extra: number,
  extraLengths?: Int32Array,
): tf.Tensor2D | null {
  const bias = new Float32Array(b * (p + extra));
  return keyBiasInto(bias, prefixValid, b, p, extra, extraLengths) ? tf.tensor2d(bias, [b, p + extra]) : null;
}

/**
 * Action chunks [B,H,A] from noise [B,H,A] by `numSteps` Euler steps from t = 1 to 0, the prefix and
 * the state token computed once. Call inside a tidy (Pi0.sample does).
 */
export function sampleCached(
  model: SamplerModel,
  sw: SamplingWeights,
  inp: ModelInputs,
  noise: Float32Array,
  numSteps: number,
): tf.Tensor3D {
  const d = model.dims;
  const b = inp.batch;
  const sampler = new Sampler(model, sw);
  const cache = sampler.cache(inp, tf.tensor2d(inp.state, [b, d.actionDim]));
  const dt = -1 / numSteps;
  // Euler's x + v·dt with dt folded into the output projection.
  const out = tf.mul(sw.get('expert/action_out')!, dt) as tf.Tensor2D;
  const outBias = tf.mul(sw.get('expert/action_out_bias')!, dt);
  let x = tf.tensor2d(noise, [b * d.horizon, d.actionDim]);
  for (let i = 0; i < numSteps; i++) {
    const prev = x;
    x = tf.tidy(() => tf.add(prev, sampler.step(cache, prev, 1 + i * dt, b, out, outBias)));
    prev.dispose();
  }
  return tf.reshape(x, [b, d.horizon, d.actionDim]);
}

/**
 * The building blocks, written so that every matmul the WASM backend runs is a plain 2-D one: its fast
 * engine takes only those (a [B,T,D]×[D,N] matmul or one with a transposed operand fell to paths 10–40×
 * slower here, see notes/tfjs-on-this-machine.md). Activations stay 2-D ([tokens, features]) and are
 * reshaped to heads only inside attention.
 */
import * as tf from '@tensorflow/tfjs-core';
import { fusedActive, GELU_GRAD, RMS_NORM, RMS_NORM_GRAD } from '../backend/native/fused.js';
import { packInstalled } from '../backend/native/pack.js';
import {
  attentionKernelsActive,
  attentionOp,
  checkAttentionShapes,
} from '../backend/native/train-attention.js';

/**
 * Whether the active backend runs transposed matmuls at full speed: native TensorFlow, or WASM and cpu
 * with the BLAS kernel pack. Plain WASM runs them 10–30× slower than a transpose plus a plain matmul.
 */
function transposedMatmulsFast(): boolean {
  const backend = tf.getBackend();
  if (backend === 'wasm' || backend === 'cpu') return packInstalled(backend);
  return true;
}

/**
 * `a @ b` with a gradient that uses transposed matmuls where the backend has them fast and otherwise
 * transposes explicitly and runs plain matmuls (tfjs's built-in gradient always asks for transposed
 * matmuls). A custom gradient computes every input's gradient it returns, so the variants below skip
 * the ones nobody needs: a frozen weight's, or a model input's.
 */
function explicitMatmul(needA: boolean, needB: boolean) {
  return tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [a, b, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    save([a, b]);
    return {
      value: tf.matMul(a, b),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sa, sb] = saved as [tf.Tensor2D, tf.Tensor2D];
        const d = dy as tf.Tensor2D;
        const fast = transposedMatmulsFast();
        const da = () => (fast ? tf.matMul(d, sb, false, true) : tf.matMul(d, tf.transpose(sb)));
        const db = () => (fast ? tf.matMul(sa, d, true, false) : tf.matMul(tf.transpose(sa), d));
        return [needA ? da() : tf.zerosLike(sa), needB ? db() : tf.zerosLike(sb)];
      },
    };
  }) as (a: tf.Tensor, b: tf.Tensor) => tf.Tensor2D;
}

export const matmul2d = explicitMatmul(true, true);
/** For a frozen weight `b`: only the activation's gradient. */
export const matmul2dFrozenB = explicitMatmul(true, false);
/** For a model input `a` (patches, one-hot tokens): only the weight's gradient. */
export const matmul2dInputA = explicitMatmul(false, true);

/**
 * Gemma's RMSNorm: x / rms(x) · (1 + scale), scale starting at zero. Its gradient is written out: the
 * one tfjs derives goes through Mean's, which builds a tensor of ones the size of x in JavaScript on
 * every call (its memory freshly faulted in: the largest cost outside the matmuls in a training step).
 * With n = x·r, r = 1/√(mean(x²) + ε) per row and g = dy·(1 + scale):
 * dx = r·(g − n·mean(g·n)), dscale = Σ_rows dy·n.
 * On WASM with the kernel pack, one fused kernel each way (backend/native/fused.ts); else tfjs ops.
 */
export function rmsNorm(x: tf.Tensor2D, scale: tf.Tensor): tf.Tensor2D {
  if (!fusedActive()) return taping() ? rmsNormOpsWithGrad(x, scale) : rmsNormOps(x, scale).value;
  if (taping()) return rmsNormFusedWithGrad(x, scale);
  const [y, r] = tf.engine().runKernel(RMS_NORM, { x, scale }) as tf.Tensor[];
  r!.dispose();
  return y as tf.Tensor2D;
}

function rmsNormOps(x: tf.Tensor2D, scale: tf.Tensor) {
  const r = tf.rsqrt(tf.add(tf.mean(tf.mul(x, x), -1, true), 1e-6));
  const n = tf.mul(x, r);
  const gain = tf.add(scale, 1);
  return { value: tf.mul(n, gain) as tf.Tensor2D, n, r, gain };
}

const rmsNormOpsWithGrad = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, scale, save] = args as [tf.Tensor2D, tf.Tensor, tf.GradSaveFunc];
  const { value, n, r, gain } = rmsNormOps(x, scale);
  save([n, r, gain]);
  return {
    value,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sn, sr, sgain] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
      const g = tf.mul(dy, sgain);
      const dx = tf.mul(sr, tf.sub(g, tf.mul(sn, tf.mean(tf.mul(g, sn), -1, true))));
      return [dx, tf.sum(tf.mul(dy, sn), 0)];
    },
  };
}) as (x: tf.Tensor2D, scale: tf.Tensor) => tf.Tensor2D;

const rmsNormFusedWithGrad = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, scale, save] = args as [tf.Tensor2D, tf.Tensor, tf.GradSaveFunc];
  const [y, r] = tf.engine().runKernel(RMS_NORM, { x, scale }) as tf.Tensor[];
  save([x, r!, scale]);
  // save keeps its own copy while a gradient is recorded.
  r!.dispose();
  return {
    value: y as tf.Tensor2D,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sx, sr, sscale] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
      return tf.engine().runKernel(RMS_NORM_GRAD, { dy, x: sx, r: sr, scale: sscale }) as tf.Tensor[];
    },
  };
}) as (x: tf.Tensor2D, scale: tf.Tensor) => tf.Tensor2D;

/**
 * GELU in its sigmoid form, x·σ(1.702x): three cheap ops where the tanh form needs a cube and more. The
 * gradient, dy·(s + 1.702·x·s·(1 − s)) with s = σ(1.702x) kept from the forward pass, is written out
 * (tfjs's own goes through the product rule with a cast per factor); on WASM with the kernel pack it is
 * one fused kernel.
 */
export function gelu(x: tf.Tensor): tf.Tensor {
  return taping() ? geluWithGrad(x) : geluValue(x);
}

/** Whether tfjs is recording a gradient tape now (its own test): off while sampling. */
function taping(): boolean {
  const state = tf.engine().state;
  return state.gradientDepth > 0 && state.kernelDepth === 0;
}

function geluValue(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)));
}

const geluWithGrad = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  const s = tf.sigmoid(tf.mul(x, 1.702));
  save([x, s]);
  return {
    value: tf.mul(x, s),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sx, ss] = saved as [tf.Tensor, tf.Tensor];
      if (fusedActive()) return [tf.engine().runKernel(GELU_GRAD, { x: sx, s: ss, dy }) as tf.Tensor];
      const slope = tf.add(ss, tf.mul(tf.mul(sx, 1.702), tf.mul(ss, tf.sub(1, ss))));
      return [tf.mul(dy, slope)];
    },
  };
}) as (x: tf.Tensor) => tf.Tensor;

export function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

/** [B·T, H·hd] → queries, keys or values by head: [B·H, T, hd]. */
export function splitHeads(x: tf.Tensor, b: number, t: number, heads: number): tf.Tensor3D {
  const hd = x.shape[1]! / heads;
  return tf.reshape(tf.transpose(tf.reshape(x, [b, t, heads, hd]), [0, 2, 1, 3]), [b * heads, t, hd]);
}

/**
 * Scaled dot-product attention over heads for a batch of `b`. q [B·H,Tq,hd] (already scaled by 1/√hd),
 * k and v [B·H,Tk,hd], bias [B,1,Tq,Tk] additive (0 where allowed, a large negative number where
 * masked) or null. Returns [B·Tq, H·hd]. Keys stay [.., Tk, hd] (the score matmul transposes them) so
 * that appending the suffix's keys to the cached prefix's is a concat over an outer axis.
 */
export function attend(
  q: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  bias: tf.Tensor | null,
  b: number,
): tf.Tensor2D {
  const [bh, tq, hd] = q.shape;
  const h = bh / b;
  const tk = k.shape[1];
  let scores: tf.Tensor = tf.matMul(q, k, false, true);
  if (bias) scores = tf.reshape(tf.add(tf.reshape(scores, [b, h, tq, tk]), bias), [bh, tq, tk]);
  const out = tf.reshape(tf.matMul(tf.softmax(scores), v), [b, h, tq, hd]);
  return tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [b * tq, h * hd]);
}

/**
 * Multi-head attention, token-major: q [B·Tq, W] (unscaled), `segments` one or two [keys, values] pairs
 * of [B·T_i, W] whose tokens are joined in order (a block's own, or the prefix's then the expert's),
 * bias [B,1,Tq,ΣT_i] additive or null, scores scaled by `scale`. Returns [B·Tq, W]. With the kernel
 * pack, one kernel forward and one backward (see backend/native/train-attention.ts); otherwise heads
 * split out, joined and attended with plain ops.
 */
export function attention(...args: Parameters<typeof attentionOps>): tf.Tensor2D {
  return attentionKernelsActive() ? attentionOp(...args) : attentionOps(...args);
}

/** `attention` in plain tfjs ops: the reference for the kernels, and the path without them. */
export function attentionOps(
  q: tf.Tensor2D,
  segments: Array<[tf.Tensor2D, tf.Tensor2D]>,
  bias: tf.Tensor | null,
  heads: number,
  batch: number,
  scale: number,
): tf.Tensor2D {
  checkAttentionShapes(q, segments, bias, heads, batch);
  const split = (x: tf.Tensor2D) => splitHeads(x, batch, x.shape[0] / batch, heads);
  const join = (xs: tf.Tensor3D[]) => (xs.length === 1 ? xs[0]! : (concatAxis1(xs) as tf.Tensor3D));
  const k = join(segments.map(([key]) => split(key)));
  const v = join(segments.map(([, value]) => split(value)));
  return attend(split(tf.mul(q, scale) as tf.Tensor2D), k, v, bias, batch);
}

/**
 * Concatenates along axis 1 of tensors shaped [N, T_i, ...rest] through 2-D views [N, T_i·rest]: WASM
 * slices (the gradient of a concat) copy one innermost row per call, so a rank-4 split over tokens made
 * ~18k JS calls where the 2-D one makes N.
 */
export function concatAxis1(parts: tf.Tensor[]): tf.Tensor {
  const n = parts[0]!.shape[0]!;
  const rest = parts[0]!.shape.slice(2);
  const flat = parts.map((p) => tf.reshape(p, [n, p.size / n]));
  const total = parts.reduce((t, p) => t + p.shape[1]!, 0);
  return tf.reshape(tf.concat(flat, 1), [n, total, ...rest]);
}

/** x[:, start:start+len] along axis 1 of [N, T, ...rest], through a 2-D view (see concatAxis1). */
export function sliceAxis1(x: tf.Tensor, start: number, len: number): tf.Tensor {
  const [n, t] = x.shape as [number, number];
  const inner = x.size / (n * t);
  const rest = x.shape.slice(2);
  return tf.reshape(tf.slice(tf.reshape(x, [n, t * inner]), [0, start * inner], [n, len * inner]), [
    n,
    len,
    ...rest,
  ]);
}

/**
 * The prompt pooled for the FiLM by a learned query (`model.prompt_film_pool: attention`): each
 * prompt's real tokens [B·L, W] weighed by the softmax of their dot products with `query` [W], [B, W].
 * Differentiable (training); masks.ts's `promptPooling` gives the same weights from the scores (the
 * native sampler).
 */
export function attentionPool(
  tokens: tf.Tensor2D,
  query: tf.Tensor,
  inp: { batch: number; promptLen: number; promptMask: Uint8Array },
): tf.Tensor2D {
  const { batch: b, promptLen: l } = inp;
  const width = tokens.shape[1];
  const scores = tf.reshape(tf.matMul(tokens, tf.reshape(query, [width, 1])), [b, l]);
  const hidden = tf.tensor2d(
    Float32Array.from(inp.promptMask.subarray(0, b * l), (m) => (m ? 0 : -1e9)),
    [b, l],
  );
  const weights = tf.softmax(tf.add(scores, hidden) as tf.Tensor2D);
  return tf.reshape(tf.matMul(tf.reshape(weights, [b, 1, l]), tf.reshape(tokens, [b, l, width])), [b, width]);
}

/** x [B, T, W] · (1 + γ) + β per batch element, where film [B, 2W] is γ | β. */
export function applyFilm(x: tf.Tensor3D, film: tf.Tensor2D): tf.Tensor3D {
  const [b, , width] = x.shape;
  const gamma = tf.reshape(tf.slice(film, [0, 0], [b, width]), [b, 1, width]);
  const beta = tf.reshape(tf.slice(film, [0, width], [b, width]), [b, 1, width]);
  return tf.add(tf.mul(x, tf.add(gamma, 1)), beta) as tf.Tensor3D;
}

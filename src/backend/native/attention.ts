/**
 * `CachedAttention`: multi-head attention of new tokens over cached keys and values and their own, in
 * one kernel, for sampling (no gradient). Token-major throughout, as the projections produce it:
 *
 *   qkv   [B·T, 3W]  the new tokens' queries (already scaled by 1/√hd), keys and values side by side
 *   cache [B·Tc, 2W] earlier tokens' keys and values side by side (Tc may be 0)
 *   bias  [B, Tc+T]  optional additive bias over keys (a large negative number hides a key)
 *   → out [B·T, W]   each head's output in its W/H columns, ready for the output projection
 *
 * Each head's operands are strided views (BLAS leading dimensions) into those tensors, so nothing is
 * transposed, split or concatenated: a 10-step chunk of the `small` model ran ~40 such ops per step
 * around two batched matmuls, each a fixed 5–50 µs on WASM. Scores land in one [B·H·T, Tc+T] buffer
 * that the host's own vectorised Softmax normalises.
 */
import type { KernelBackend, KernelFunc, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { type Blas, NO_TRANS, TRANS } from './blas.js';
import type { Host } from './matmul.js';

export const CACHED_ATTENTION = 'VlaCachedAttention';

export interface CachedAttentionAttrs {
  heads: number;
  batch: number;
}

/**
 * Whether `cachedAttention` runs fast on the active backend: the kernel pack's kernel (WASM, cpu), or
 * native TensorFlow running the plain-op form. Plain WASM would run that form's transposed batched
 * matmuls 10–30× slower than a transpose and a plain matmul.
 */
export function cachedAttentionFast(): boolean {
  const backend = tf.getBackend();
  return Boolean(tf.getKernel(CACHED_ATTENTION, backend)) || (backend !== 'wasm' && backend !== 'cpu');
}

/** The op: runs the kernel where the backend has it, else the same computation in plain tfjs ops. */
export function cachedAttention(
  qkv: tf.Tensor2D,
  cache: tf.Tensor2D,
  bias: tf.Tensor2D | null,
  heads: number,
  batch: number,
): tf.Tensor2D {
  checkShapes(qkv.shape, cache.shape, bias?.shape ?? null, heads, batch);
  if (tf.getKernel(CACHED_ATTENTION, tf.getBackend())) {
    const inputs: tf.NamedTensorMap = bias ? { qkv, cache, bias } : { qkv, cache };
    const attrs: CachedAttentionAttrs = { heads, batch };
    return tf
      .engine()
      .runKernel(CACHED_ATTENTION, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor2D;
  }
  return cachedAttentionOps(qkv, cache, bias, heads, batch);
}

function checkShapes(qkv: number[], cache: number[], bias: number[] | null, heads: number, batch: number) {
  const w3 = qkv[1]!;
  if (w3 % (3 * heads) !== 0)
    throw new Error(`cachedAttention: qkv width ${w3} is not 3 × heads(${heads}) × head dim`);
  const w = w3 / 3;
  if (qkv[0]! % batch !== 0) throw new Error(`cachedAttention: ${qkv[0]} query rows for a batch of ${batch}`);
  if (cache[1] !== 2 * w || cache[0]! % batch !== 0) {
    throw new Error(`cachedAttention: cache is [${cache}], expected [${batch}·Tc, ${2 * w}]`);
  }
  const tk = cache[0]! / batch + qkv[0]! / batch;
  if (bias && (bias[0] !== batch || bias[1] !== tk)) {
    throw new Error(`cachedAttention: bias is [${bias}], expected [${batch}, ${tk}]`);
  }
}

/** The reference: the same attention through reshapes, transposes and batched matmuls. */
export function cachedAttentionOps(
  qkv: tf.Tensor2D,
  cache: tf.Tensor2D,
  bias: tf.Tensor2D | null,
  heads: number,
  batch: number,
): tf.Tensor2D {
  return tf.tidy(() => {
    const w = qkv.shape[1] / 3;
    const hd = w / heads;
    const t = qkv.shape[0] / batch;
    const tc = cache.shape[0] / batch;
    // [B, T, parts, H, hd] → [parts, B, H, T, hd]
    const byHead = (x: tf.Tensor, rows: number, parts: number) =>
      tf.transpose(tf.reshape(x, [batch, rows, parts, heads, hd]), [2, 0, 3, 1, 4]);
    const [q, kn, vn] = tf.unstack(byHead(qkv, t, 3));
    const [kc, vc] = tf.unstack(byHead(cache, tc, 2));
    const k = tf.concat([kc!, kn!], 2);
    const v = tf.concat([vc!, vn!], 2);
    let scores = tf.matMul(q as tf.Tensor4D, k as tf.Tensor4D, false, true); // [B, H, T, Tk]
    if (bias) scores = tf.add(scores, tf.reshape(bias, [batch, 1, 1, tc + t]));
    const out = tf.matMul(tf.softmax(scores), v as tf.Tensor4D); // [B, H, T, hd]
    return tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [batch * t, w]);
  });
}

type HostKernel = (
  backend: KernelBackend,
  name: string,
  inputs: NamedTensorInfoMap,
  attrs?: object,
) => TensorInfo;

/**
 * The kernel on BLAS. `host` reaches tensor memory; `run` calls one of the host backend's own kernels
 * (Softmax, Add) directly.
 */
export function cachedAttentionKernel(
  blas: Blas,
  hostFor: (b: KernelBackend) => Host,
  run: HostKernel,
): KernelFunc {
  return (args) => {
    const { qkv, cache, bias } = args.inputs as NamedTensorInfoMap & {
      qkv: TensorInfo;
      cache: TensorInfo;
      bias?: TensorInfo;
    };
    const { heads, batch } = args.attrs as unknown as CachedAttentionAttrs;
    // Shapes were checked by the op (the only caller of this kernel name).
    for (const [name, t] of Object.entries({ qkv, cache, bias })) {
      if (t && t.dtype !== 'float32')
        throw new Error(`cachedAttention: ${name} is ${t.dtype}, expected float32`);
    }
    const backend = args.backend as KernelBackend;
    const host = hostFor(backend);
    const w = qkv.shape[1]! / 3;
    const hd = w / heads;
    const t = qkv.shape[0]! / batch;
    const tc = cache.shape[0]! / batch;
    const tk = tc + t;
    // Scores of every (batch, head) stacked: rows (b·H + h)·T + i.
    let scores = host.alloc([batch * heads * t, tk]);
    {
      const q = host.view(qkv);
      const c = host.view(cache);
      const s = host.view(scores);
      for (let b = 0; b < batch; b++) {
        for (let h = 0; h < heads; h++) {
          const sOff = (b * heads + h) * t * tk;
          const qOff = b * t * 3 * w + h * hd;
          if (tc > 0) {
            // S[:, :Tc] = Q·Kcᵀ
            const kOff = b * tc * 2 * w + h * hd;
            blas.sgemm(
              NO_TRANS,
              TRANS,
              t,
              tc,
              hd,
              1,
              q.subarray(qOff),
              3 * w,
              c.subarray(kOff),
              2 * w,
              0,
              s.subarray(sOff),
              tk,
            );
          }
          // S[:, Tc:] = Q·Knᵀ
          blas.sgemm(
            NO_TRANS,
            TRANS,
            t,
            t,
            hd,
            1,
            q.subarray(qOff),
            3 * w,
            q.subarray(qOff + w),
            3 * w,
            0,
            s.subarray(sOff + tc),
            tk,
          );
        }
      }
    }
    if (bias) {
      const biased = run(backend, 'Add', {
        a: { ...scores, shape: [batch, heads * t, tk] },
        b: { ...bias, shape: [batch, 1, tk] },
      });
      backend.disposeData(scores.dataId);
      scores = { ...biased, shape: [batch * heads * t, tk] };
    }
    // The host kernel takes the axis as the op hands it over: non-negative.
    const probs = run(backend, 'Softmax', { logits: scores }, { dim: 1 });
    backend.disposeData(scores.dataId);
    const out = host.alloc([batch * t, w]);
    // Views only after the last allocation: a growing WASM heap detaches earlier ones.
    const q = host.view(qkv);
    const c = host.view(cache);
    const p = host.view(probs);
    const o = host.view(out);
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        const pOff = (b * heads + h) * t * tk;
        const oOff = b * t * w + h * hd;
        let beta = 0;
        if (tc > 0) {
          // O = P[:, :Tc]·Vc
          const vOff = b * tc * 2 * w + w + h * hd;
          blas.sgemm(
            NO_TRANS,
            NO_TRANS,
            t,
            hd,
            tc,
            1,
            p.subarray(pOff),
            tk,
            c.subarray(vOff),
            2 * w,
            0,
            o.subarray(oOff),
            w,
          );
          beta = 1;
        }
        // O += P[:, Tc:]·Vn
        const vnOff = b * t * 3 * w + 2 * w + h * hd;
        blas.sgemm(
          NO_TRANS,
          NO_TRANS,
          t,
          hd,
          t,
          1,
          p.subarray(pOff + tc),
          tk,
          q.subarray(vnOff),
          3 * w,
          beta,
          o.subarray(oOff),
          w,
        );
      }
    }
    backend.disposeData(probs.dataId);
    return out;
  };
}

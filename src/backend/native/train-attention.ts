/**
 * `VlaAttention` and `VlaAttentionGrad`: multi-head attention for training, forward and backward, on
 * BLAS. Token-major throughout, as the projections produce it and the output projection takes it:
 *
 *   q      [B·Tq, W]     queries (the kernel scales the scores by attribute `scale`, 1/√hd)
 *   k0, v0 [B·T0, W]     a first segment of keys and values (the prefix's, or a block's own)
 *   k1, v1 [B·T1, W]     optionally a second (the action expert's own, after the prefix's)
 *   bias   [B, 1, Tq, Tk] optional additive mask over Tk = T0 + T1 keys, shared by the heads
 *   → out  [B·Tq, W]     each head's output in its W/H columns
 *   → probs [B·H·Tq, Tk] the attention weights, kept for the gradient
 *
 * Each head's operands are strided views (BLAS leading dimensions) into those tensors, so the heads are
 * never split out, transposed back or concatenated with the other segment: the plain-op form made about
 * 25 engine ops per attention forward and as many backward, three transposes and a concat among them,
 * and ran its batched products at 60 GFLOP/s where one product per head runs near BLAS's peak. The
 * softmax, the bias and the softmax's gradient run on the host's own vectorised kernels.
 */
import type { KernelBackend, KernelFunc, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { type Blas, NO_TRANS, TRANS } from './blas.js';
import { softmaxGrad } from './fused.js';
import type { Host } from './matmul.js';

export const ATTENTION = 'VlaAttention';
export const ATTENTION_GRAD = 'VlaAttentionGrad';

export interface AttentionAttrs {
  heads: number;
  batch: number;
  /** Multiplies the scores Q·Kᵀ (BLAS's alpha: no pass of its own). */
  scale: number;
}

type HostKernel = (
  backend: KernelBackend,
  name: string,
  inputs: NamedTensorInfoMap,
  attrs?: object,
) => TensorInfo;

/** A key/value segment: its tensors and its tokens per batch element. */
interface Segment {
  k: TensorInfo;
  v: TensorInfo;
  t: number;
  /** Its first column in the scores. */
  at: number;
}

interface Layout {
  scale: number;
  batch: number;
  heads: number;
  w: number;
  hd: number;
  tq: number;
  tk: number;
  segments: Segment[];
}

function layoutOf(inputs: NamedTensorInfoMap, attrs: AttentionAttrs): Layout {
  const { q, k0, v0, k1, v1 } = inputs as NamedTensorInfoMap & Record<string, TensorInfo | undefined>;
  const { heads, batch, scale } = attrs;
  for (const [name, t] of Object.entries(inputs)) {
    if (t && t.dtype !== 'float32') throw new Error(`attention: ${name} is ${t.dtype}, expected float32`);
  }
  const w = q!.shape[1]!;
  const segments: Segment[] = [];
  let at = 0;
  for (const [k, v] of [
    [k0, v0],
    [k1, v1],
  ] as const) {
    if (!k || !v) continue;
    const t = k.shape[0]! / batch;
    segments.push({ k, v, t, at });
    at += t;
  }
  return { scale, batch, heads, w, hd: w / heads, tq: q!.shape[0]! / batch, tk: at, segments };
}

/** Checks the op's shapes, naming the one that does not fit. */
export function checkAttentionShapes(
  qt: { shape: number[] },
  segmentTensors: Array<[{ shape: number[] }, { shape: number[] }]>,
  biasTensor: { shape: number[] } | null,
  heads: number,
  batch: number,
): void {
  const q = qt.shape;
  const segments = segmentTensors.map(([k, v]) => [k.shape, v.shape] as const);
  const bias = biasTensor?.shape ?? null;
  const w = q[1]!;
  if (q.length !== 2 || w % heads !== 0)
    throw new Error(`attention: queries are [${q}], expected [B·Tq, W] with W a multiple of ${heads} heads`);
  if (q[0]! % batch !== 0) throw new Error(`attention: ${q[0]} query rows for a batch of ${batch}`);
  let tk = 0;
  for (const [i, [k, v]] of segments.entries()) {
    if (k.length !== 2 || k[1] !== w || k[0]! % batch !== 0 || v.join() !== k.join())
      throw new Error(`attention: keys/values ${i} are [${k}]/[${v}], expected [B·T, ${w}] both`);
    tk += k[0]! / batch;
  }
  const tq = q[0]! / batch;
  if (bias && bias.join() !== [batch, 1, tq, tk].join())
    throw new Error(`attention: bias is [${bias}], expected [${batch}, 1, ${tq}, ${tk}]`);
}

export function attentionKernel(
  blas: Blas,
  hostFor: (b: KernelBackend) => Host,
  run: HostKernel,
): KernelFunc {
  return (args) => {
    const backend = args.backend as KernelBackend;
    const host = hostFor(backend);
    const l = layoutOf(args.inputs, args.attrs as unknown as AttentionAttrs);
    const { batch, heads, w, hd, tq, tk } = l;
    const { q, bias } = args.inputs as NamedTensorInfoMap & { q: TensorInfo; bias?: TensorInfo };
    let scores = host.alloc([batch * heads * tq, tk]);
    perHead(l, (b, h) => {
      const qv = host.view(q);
      const s = host.view(scores);
      for (const seg of l.segments) {
        // S[:, seg] = scale·Q·Kᵀ
        blas.sgemm(
          NO_TRANS,
          TRANS,
          tq,
          seg.t,
          hd,
          l.scale,
          qv.subarray(b * tq * w + h * hd),
          w,
          host.view(seg.k).subarray(b * seg.t * w + h * hd),
          w,
          0,
          s.subarray((b * heads + h) * tq * tk + seg.at),
          tk,
        );
      }
    });
    if (bias) {
      const biased = run(backend, 'Add', {
        a: { ...scores, shape: [batch, heads, tq, tk] },
        b: bias,
      });
      backend.disposeData(scores.dataId);
      scores = { ...biased, shape: [batch * heads * tq, tk] };
    }
    const probs = run(backend, 'Softmax', { logits: scores }, { dim: 1 });
    backend.disposeData(scores.dataId);
    const out = host.alloc([batch * tq, w]);
    const p = host.view(probs);
    const o = host.view(out);
    perHead(l, (b, h) => {
      for (const [i, seg] of l.segments.entries()) {
        // O (+)= P[:, seg]·V
        blas.sgemm(
          NO_TRANS,
          NO_TRANS,
          tq,
          hd,
          seg.t,
          1,
          p.subarray((b * heads + h) * tq * tk + seg.at),
          tk,
          host.view(seg.v).subarray(b * seg.t * w + h * hd),
          w,
          i === 0 ? 0 : 1,
          o.subarray(b * tq * w + h * hd),
          w,
        );
      }
    });
    return [out, probs];
  };
}

/**
 * The gradient: inputs dy [B·Tq, W], probs, and the forward's q, k0, v0 (k1, v1); outputs dq, dk0,
 * dv0 (dk1, dv1). With dP = dO·Vᵀ: dV = Pᵀ·dO, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = scale·dS·K,
 * dK = scale·dSᵀ·Q.
 */
export function attentionGradKernel(
  blas: Blas,
  hostFor: (b: KernelBackend) => Host,
  run: HostKernel,
): KernelFunc {
  return (args) => {
    const backend = args.backend as KernelBackend;
    const host = hostFor(backend);
    const { dy, probs, q, ...rest } = args.inputs as NamedTensorInfoMap & {
      dy: TensorInfo;
      probs: TensorInfo;
      q: TensorInfo;
    };
    const l = layoutOf({ q, ...rest }, args.attrs as unknown as AttentionAttrs);
    const { batch, heads, w, hd, tq, tk } = l;
    const dp = host.alloc([batch * heads * tq, tk]);
    const dvs = l.segments.map((seg) => host.alloc(seg.v.shape));
    perHead(l, (b, h) => {
      const g = host.view(dy).subarray(b * tq * w + h * hd);
      const p = host.view(probs);
      const d = host.view(dp);
      const row = (b * heads + h) * tq * tk;
      for (const [i, seg] of l.segments.entries()) {
        const kv = b * seg.t * w + h * hd;
        // dV = P[:, seg]ᵀ·dO
        blas.sgemm(
          TRANS,
          NO_TRANS,
          seg.t,
          hd,
          tq,
          1,
          p.subarray(row + seg.at),
          tk,
          g,
          w,
          0,
          host.view(dvs[i]!).subarray(kv),
          w,
        );
        // dP[:, seg] = dO·Vᵀ
        blas.sgemm(
          NO_TRANS,
          TRANS,
          tq,
          seg.t,
          hd,
          1,
          g,
          w,
          host.view(seg.v).subarray(kv),
          w,
          0,
          d.subarray(row + seg.at),
          tk,
        );
      }
    });
    // dS = P ⊙ (dP − Σ_row dP ⊙ P): one fused pass on WASM, else four of the host's kernels.
    let ds = softmaxGrad(backend, probs, dp);
    if (!ds) {
      const pdp = run(backend, 'Multiply', { a: dp, b: probs });
      const rowSum = run(backend, 'Sum', { x: pdp }, { axis: [1], keepDims: true });
      backend.disposeData(pdp.dataId);
      const centred = run(backend, 'Sub', { a: dp, b: rowSum });
      backend.disposeData(rowSum.dataId);
      ds = run(backend, 'Multiply', { a: centred, b: probs });
      backend.disposeData(centred.dataId);
    }
    backend.disposeData(dp.dataId);
    const dq = host.alloc(q.shape);
    const dks = l.segments.map((seg) => host.alloc(seg.k.shape));
    perHead(l, (b, h) => {
      const s = host.view(ds);
      const qOff = b * tq * w + h * hd;
      const row = (b * heads + h) * tq * tk;
      for (const [i, seg] of l.segments.entries()) {
        const kv = b * seg.t * w + h * hd;
        // dQ (+)= scale·dS[:, seg]·K
        blas.sgemm(
          NO_TRANS,
          NO_TRANS,
          tq,
          hd,
          seg.t,
          l.scale,
          s.subarray(row + seg.at),
          tk,
          host.view(seg.k).subarray(kv),
          w,
          i === 0 ? 0 : 1,
          host.view(dq).subarray(qOff),
          w,
        );
        // dK = scale·dS[:, seg]ᵀ·Q
        blas.sgemm(
          TRANS,
          NO_TRANS,
          seg.t,
          hd,
          tq,
          l.scale,
          s.subarray(row + seg.at),
          tk,
          host.view(q).subarray(qOff),
          w,
          0,
          host.view(dks[i]!).subarray(kv),
          w,
        );
      }
    });
    backend.disposeData(ds.dataId);
    const out = [dq];
    for (const [i] of l.segments.entries()) out.push(dks[i]!, dvs[i]!);
    return out;
  };
}

/** Calls f for every (batch element, head). Views must be taken inside: allocations may move WASM's heap. */
function perHead(l: Layout, f: (b: number, h: number) => void): void {
  for (let b = 0; b < l.batch; b++) for (let h = 0; h < l.heads; h++) f(b, h);
}

/** Whether the active backend has the kernels (the pack installed on wasm or cpu). */
export function attentionKernelsActive(): boolean {
  return Boolean(tf.getKernel(ATTENTION, tf.getBackend()));
}

/**
 * The op with its gradient, through the kernels: `segments` are one or two [keys, values] pairs. The
 * caller checks for the kernels first (attentionKernelsActive) and otherwise uses plain ops.
 */
/**
 * Token-major [B·T_i, W] tensors as one [B·ΣT_i, W], each batch element's tokens in order (one sample's
 * are already in order: one concat, no views).
 */
export function concatTokens(ts: tf.Tensor2D[], batch: number): tf.Tensor2D {
  if (batch === 1) return tf.concat(ts, 0);
  const w = ts[0]!.shape[1];
  return tf.reshape(
    tf.concat(
      ts.map((t) => tf.reshape(t, [batch, -1])),
      1,
    ),
    [-1, w],
  ) as tf.Tensor2D;
}

export function attentionOp(
  q: tf.Tensor2D,
  segments: Array<[tf.Tensor2D, tf.Tensor2D]>,
  bias: tf.Tensor | null,
  heads: number,
  batch: number,
  scale: number,
): tf.Tensor2D {
  checkAttentionShapes(q, segments, bias, heads, batch);
  // The kernel reads two segments (k0/v0, k1/v1): more (π0-FAST's decoding: the prefix, the tokens so
  // far and the new one) are joined, per batch element, into the second.
  if (segments.length > 2) {
    const rest = segments.slice(1);
    segments = [
      segments[0]!,
      [
        concatTokens(
          rest.map(([k]) => k),
          batch,
        ),
        concatTokens(
          rest.map(([, v]) => v),
          batch,
        ),
      ],
    ];
  }
  const attrs = { heads, batch, scale } as unknown as tf.NamedAttrMap;
  const engine = tf.engine();
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args.pop() as tf.GradSaveFunc;
    const ts = args as tf.Tensor[];
    const inputs: tf.NamedTensorMap = { q: ts[0]! };
    for (let i = 0; i < segments.length; i++) {
      inputs[`k${i}`] = ts[1 + 2 * i]!;
      inputs[`v${i}`] = ts[2 + 2 * i]!;
    }
    if (bias) inputs.bias = bias;
    const [out, probs] = engine.runKernel(ATTENTION, inputs, attrs) as tf.Tensor[];
    save([...ts, probs!]);
    // save keeps its own copy while a gradient is being recorded; this one is not needed after.
    probs!.dispose();
    return {
      value: out as tf.Tensor2D,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const named: tf.NamedTensorMap = { dy, probs: saved.at(-1)!, q: saved[0]! };
        for (let i = 0; i < segments.length; i++) {
          named[`k${i}`] = saved[1 + 2 * i]!;
          named[`v${i}`] = saved[2 + 2 * i]!;
        }
        return engine.runKernel(ATTENTION_GRAD, named, attrs) as tf.Tensor[];
      },
    };
  }) as (...t: tf.Tensor[]) => tf.Tensor2D;
  return f(q, ...segments.flat());
}

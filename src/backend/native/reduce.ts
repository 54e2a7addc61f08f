/**
 * Sum over leading axes as one BLAS product (ones[1, N] · X[N, M]). The host backends reduce only
 * innermost axes, so they transpose first: a bias or norm-scale gradient, the sum over the rows of a
 * [2048, 128] activation gradient, took 1.2 ms on WASM where the product takes microseconds, and a
 * training step of the sim recipes runs dozens of them.
 */
import type { KernelBackend, KernelFunc, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { backend_util, util } from '@tensorflow/tfjs-core';
import { type Blas, NO_TRANS } from './blas.js';
import type { Host } from './matmul.js';

let ones = new Float32Array(0);

function onesOf(n: number): Float32Array {
  if (ones.length < n) ones = new Float32Array(Math.max(n, 2 * ones.length)).fill(1);
  return ones.subarray(0, n);
}

/** How many leading axes `axes` names (all of 0..k−1 and nothing else), or 0 when it is not such a set. */
export function leadingAxes(axes: number[], rank: number): number {
  const sorted = [...new Set(axes)].sort((a, b) => a - b);
  if (sorted.length === 0 || sorted.length >= rank) return 0;
  return sorted.every((a, i) => a === i) ? sorted.length : 0;
}

export function sumKernel(blas: Blas, hostFor: (b: KernelBackend) => Host, original: KernelFunc): KernelFunc {
  return (args) => {
    const { x } = args.inputs as NamedTensorInfoMap & { x: TensorInfo };
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
    if (x.dtype !== 'float32') return original(args);
    const axes = util.parseAxisParam(axis, x.shape);
    const k = leadingAxes(axes, x.shape.length);
    if (k === 0) return original(args);
    const n = util.sizeFromShape(x.shape.slice(0, k));
    const rest = x.shape.slice(k);
    const m = util.sizeFromShape(rest);
    if (n === 0 || m === 0) return original(args);
    const host = hostFor(args.backend as KernelBackend);
    const out = host.alloc(rest);
    blas.sgemm(NO_TRANS, NO_TRANS, 1, m, n, 1, onesOf(n), n, host.view(x), m, 0, host.view(out), m);
    if (keepDims) return { ...out, shape: backend_util.expandShapeToKeepDim(rest, axes) };
    return out;
  };
}

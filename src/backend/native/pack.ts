import type {
  _FusedMatMulAttrs,
  BatchMatMulAttrs,
  KernelConfig,
  KernelFunc,
  NamedTensorInfoMap,
  TensorInfo,
} from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { broadcast_util } from '@tensorflow/tfjs-core';
import { CACHED_ATTENTION, cachedAttentionKernel } from './attention.js';
import type { Blas } from './blas.js';
import { removeFused } from './fused.js';
import {
  type Activation,
  cpuHost,
  gemm,
  type Host,
  type Problem,
  problemOf,
  type WasmBackendInternals,
  wasmHost,
} from './matmul.js';
import { sumKernel } from './reduce.js';
import { sliceKernel, splitVKernel } from './slice.js';
import { ATTENTION, ATTENTION_GRAD, attentionGradKernel, attentionKernel } from './train-attention.js';

/** Host backends the pack knows how to reach the memory of. */
export const PACK_HOSTS = ['wasm', 'cpu'] as const;
export type PackHost = (typeof PACK_HOSTS)[number];

/**
 * The kernels the pack replaces on each host: tf.matMul runs as BatchMatMul, tf.fused.matMul as
 * _FusedMatMul; on WASM also Identity, which copies there where the cpu backend shares the memory, and
 * Cast to the dtype a tensor already has, which WASM copies too (tfjs's gradients of Mul and Div cast
 * each factor to float32: a few hundred copies per training step); Slice and SplitV, which copy the
 * whole input out of the heap before slicing it (see slice.ts); on both, Sum over leading axes, which
 * the hosts transpose before reducing (see reduce.ts).
 */
export const PACK_KERNELS: Record<PackHost, readonly string[]> = {
  wasm: ['BatchMatMul', '_FusedMatMul', 'Identity', 'Cast', 'Slice', 'SplitV', 'Sum'],
  cpu: ['BatchMatMul', '_FusedMatMul', 'Sum'],
};

/**
 * Whether BLAS beats the host's own kernel for a problem. Measured with `npm run bench -- kernels`
 * (wasm host, OpenBLAS on 1 thread, a loaded machine): BLAS won at every model shape (2.3–4× on plain
 * products, 25–160× on transposed and batched ones, where WASM runs at 0.2–1.4 GFLOP/s) and tied or
 * won on single products down to 4×4. It lost on large batches of tiny products, where the binding's
 * ~1 µs per call dominates (512 × [2,2]·[2,2]: 2× slower; 2048 × [4,4]·[4,4]: 2× faster in one run,
 * 2× slower in another), so batches of products under 8×8×8 stay on the host.
 */
export function blasWins(_host: PackHost, p: Problem): boolean {
  return p.batch === 1 || p.m * p.n * p.k >= 8 ** 3;
}

export interface PackStats {
  /** Kernel calls BLAS ran. */
  blas: number;
  /** Kernel calls handed back to the host's own kernel (small shapes, dtypes or activations it lacks). */
  fallback: number;
}

const stats: PackStats = { blas: 0, fallback: 0 };
const originals = new Map<string, KernelConfig>();

/** Counters since the process started (tests check the pack actually ran; benchmarks report the mix). */
export function packStats(): PackStats {
  return { ...stats };
}

function hostFor(name: PackHost, backend: tf.KernelBackend): Host {
  return name === 'wasm' ? wasmHost(backend) : cpuHost(backend);
}

/** Decides per call whether BLAS runs it; benchmarks pass `() => true` to time BLAS at every shape. */
export type Chooser = (host: PackHost, p: Problem) => boolean;

function matMulKernel(blas: Blas, hostName: PackHost, original: KernelFunc, choose: Chooser): KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as NamedTensorInfoMap & { a: TensorInfo; b: TensorInfo };
    const attrs = args.attrs as unknown as BatchMatMulAttrs;
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(original, args);
    const p = problemOf(a, b, Boolean(attrs.transposeA), Boolean(attrs.transposeB));
    if (!choose(hostName, p)) return fallback(original, args);
    const host = hostFor(hostName, args.backend as tf.KernelBackend);
    const out = host.alloc(p.outShape);
    gemm(blas, p, host.view(a), host.view(b), host.view(out));
    stats.blas++;
    return out;
  };
}

/** The host kernel that applies each fusable activation after the product. */
const ACTIVATION_KERNELS: Record<Activation, string | null> = {
  linear: null,
  relu: 'Relu',
  relu6: 'Relu6',
  elu: 'Elu',
  leakyrelu: 'LeakyRelu',
  prelu: 'Prelu',
  sigmoid: 'Sigmoid',
};

/** Runs one of the host backend's own kernels directly (not through the engine: no tape, no tracking). */
function hostKernel(
  host: PackHost,
  name: string,
  args: Omit<Parameters<KernelFunc>[0], 'attrs'> & { attrs?: object },
): TensorInfo {
  const kernel = tf.getKernel(name, host);
  if (!kernel) throw new Error(`native matmul: the ${host} backend has no ${name} kernel`);
  return kernel.kernelFunc({ attrs: {}, ...args } as Parameters<KernelFunc>[0]) as TensorInfo;
}

/**
 * The product on BLAS, then the bias and activation on the host's own vectorised element-wise kernels
 * (a JS loop over the output was 3× slower than WASM's, and BLAS's beta = 1 accumulate slower still).
 */
function fusedMatMulKernel(
  blas: Blas,
  hostName: PackHost,
  original: KernelFunc,
  choose: Chooser,
): KernelFunc {
  return (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as NamedTensorInfoMap & {
      a: TensorInfo;
      b: TensorInfo;
      bias?: TensorInfo;
      preluActivationWeights?: TensorInfo;
    };
    const attrs = args.attrs as unknown as _FusedMatMulAttrs;
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return fallback(original, args);
    const activation = ACTIVATION_KERNELS[attrs.activation];
    if (activation === undefined) return fallback(original, args);
    const p = problemOf(a, b, Boolean(attrs.transposeA), Boolean(attrs.transposeB));
    if (
      bias != null &&
      !sameShape(broadcast_util.assertAndGetBroadcastShape(p.outShape, bias.shape), p.outShape)
    ) {
      return fallback(original, args);
    }
    if (!choose(hostName, p)) return fallback(original, args);
    const host = hostFor(hostName, args.backend as tf.KernelBackend);
    let out = host.alloc(p.outShape);
    gemm(blas, p, host.view(a), host.view(b), host.view(out));
    const then = (next: TensorInfo) => {
      (args.backend as tf.KernelBackend).disposeData(out.dataId);
      out = next;
    };
    if (bias != null)
      then(hostKernel(hostName, 'Add', { inputs: { a: out, b: bias }, backend: args.backend }));
    if (activation === 'Prelu') {
      then(
        hostKernel(hostName, 'Prelu', {
          inputs: { x: out, alpha: preluActivationWeights! },
          backend: args.backend,
        }),
      );
    } else if (activation === 'LeakyRelu') {
      const alpha = attrs.leakyreluAlpha ?? 0.2;
      then(
        hostKernel(hostName, 'LeakyRelu', { inputs: { x: out }, backend: args.backend, attrs: { alpha } }),
      );
    } else if (activation !== null) {
      then(hostKernel(hostName, activation, { inputs: { x: out }, backend: args.backend }));
    }
    stats.blas++;
    return out;
  };
}

function sameShape(x: number[], y: number[]): boolean {
  return x.length === y.length && x.every((d, i) => d === y[i]);
}

/**
 * Identity without the copy, as the cpu backend does it: tensors are immutable (a variable's assign
 * takes new memory), so sharing is safe, and a training step makes hundreds of these (tf.clone,
 * variables, custom-gradient inputs).
 */
function identityKernel(original: KernelFunc): KernelFunc {
  return (args) => {
    const { x } = args.inputs as NamedTensorInfoMap & { x: TensorInfo };
    if (x.dtype === 'string') return original(args);
    (args.backend as tf.KernelBackend).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
}

/**
 * Cast to the same dtype shares the memory, as Identity does. A cast to bool is x ≠ 0 (WASM's own copies
 * the numbers, so an int32 2 became a bool holding 2). Other casts run the host's own.
 */
function castKernel(original: KernelFunc): KernelFunc {
  const identity = identityKernel(original);
  return (args) => {
    const { x } = args.inputs as NamedTensorInfoMap & { x: TensorInfo };
    const dtype = (args.attrs as { dtype?: string }).dtype;
    if (dtype === x.dtype) return identity(args);
    if (dtype !== 'bool' || x.dtype === 'string' || x.dtype === 'complex64') return original(args);
    const backend = args.backend as unknown as WasmBackendInternals;
    const out = backend.makeOutput(x.shape, 'bool');
    const src = backend.typedArrayFromHeap(x);
    const dst = backend.typedArrayFromHeap(out);
    for (let i = 0; i < src.length; i++) dst[i] = src[i] !== 0 ? 1 : 0;
    return out;
  };
}

function fallback(original: KernelFunc, args: Parameters<KernelFunc>[0]): ReturnType<KernelFunc> {
  stats.fallback++;
  return original(args);
}

/**
 * Replaces the host backend's matmul kernels with BLAS ones that fall back to the originals shape by
 * shape. The host backend must already be initialised (its kernels' set-up has run).
 */
export function installPack(blas: Blas, host: PackHost, choose: Chooser = blasWins): void {
  for (const name of PACK_KERNELS[host]) {
    const key = `${host}/${name}`;
    let original = originals.get(key);
    if (!original) {
      original = tf.getKernel(name, host);
      if (!original) continue;
      originals.set(key, original);
    }
    tf.unregisterKernel(name, host);
    const kernelFunc =
      name === 'Identity'
        ? identityKernel(original.kernelFunc)
        : name === 'Cast'
          ? castKernel(original.kernelFunc)
          : name === 'Slice'
            ? sliceKernel(original.kernelFunc)
            : name === 'SplitV'
              ? splitVKernel(original.kernelFunc)
              : name === 'Sum'
                ? sumKernel(blas, (backend) => hostFor(host, backend), original.kernelFunc)
                : (name === 'BatchMatMul' ? matMulKernel : fusedMatMulKernel)(
                    blas,
                    host,
                    original.kernelFunc,
                    choose,
                  );
    tf.registerKernel({ ...original, kernelFunc });
  }
  const reach = (backend: tf.KernelBackend) => hostFor(host, backend);
  const run = (backend: tf.KernelBackend, name: string, inputs: NamedTensorInfoMap, attrs?: object) =>
    hostKernel(host, name, { inputs, backend, attrs });
  for (const [kernelName, make] of [
    [CACHED_ATTENTION, cachedAttentionKernel],
    [ATTENTION, attentionKernel],
    [ATTENTION_GRAD, attentionGradKernel],
  ] as const) {
    if (tf.getKernel(kernelName, host)) tf.unregisterKernel(kernelName, host);
    tf.registerKernel({ kernelName, backendName: host, kernelFunc: make(blas, reach, run) });
  }
}

/** Puts the host's own kernels back (`--no-native` after the pack was on, and tests). */
export function removePack(host: PackHost): void {
  for (const name of PACK_KERNELS[host]) {
    const original = originals.get(`${host}/${name}`);
    if (!original) continue;
    tf.unregisterKernel(name, host);
    tf.registerKernel(original);
    originals.delete(`${host}/${name}`);
  }
  for (const name of [CACHED_ATTENTION, ATTENTION, ATTENTION_GRAD]) {
    if (tf.getKernel(name, host)) tf.unregisterKernel(name, host);
  }
  if (host === 'wasm') removeFused();
}

export function packInstalled(host: PackHost): boolean {
  return PACK_KERNELS[host].some((name) => originals.has(`${host}/${name}`));
}

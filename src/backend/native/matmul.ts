import {
  type _FusedMatMulAttrs,
  broadcast_util,
  type KernelBackend,
  type TensorInfo,
  util,
} from '@tensorflow/tfjs-core';
import { type Blas, NO_TRANS, TRANS } from './blas.js';

/**
 * Where a host backend keeps tensor memory, as Float32Array views the BLAS binding reads and writes in
 * place: the WASM heap (views at each tensor's offset) or the cpu backend's own typed arrays.
 */
export interface Host {
  /** A view of a float32 tensor's memory. On WASM, take views only after the last allocation of a call. */
  view(t: TensorInfo): Float32Array;
  /** A new uninitialised float32 tensor. */
  alloc(shape: number[]): TensorInfo;
}

/**
 * What the pack reaches inside tfjs-backend-wasm (internals of its Emscripten build, shared by the
 * kernels here, in slice.ts, pack.ts and fused.ts).
 */
export interface WasmBackendInternals {
  wasm: {
    HEAPU8: Uint8Array;
    /** The threaded build's shared heap; the plain build's is `asm.memory`. */
    wasmMemory?: { buffer: ArrayBuffer | SharedArrayBuffer };
    asm?: { memory?: { buffer: ArrayBuffer | SharedArrayBuffer } };
  };
  dataIdMap: { get(id: unknown): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: string): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/**
 * The WASM heap's current buffer: the threaded build's is a growable SharedArrayBuffer whose HEAP views
 * can lag behind it; the plain build replaces HEAPU8 whenever the heap grows.
 */
export function heapBuffer(backend: WasmBackendInternals): ArrayBuffer | SharedArrayBuffer {
  return backend.wasm.wasmMemory ? backend.wasm.wasmMemory.buffer : backend.wasm.HEAPU8.buffer;
}

/** A tensor's byte offset in the WASM heap. */
export function heapOffset(backend: WasmBackendInternals, t: TensorInfo): number {
  return backend.dataIdMap.get(t.dataId).memoryOffset;
}

interface CpuBackendInternals {
  data: { get(id: unknown): { values: unknown } };
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): TensorInfo;
}

export function wasmHost(backend: KernelBackend): Host {
  const be = backend as unknown as WasmBackendInternals;
  return {
    view: (t) => new Float32Array(heapBuffer(be), heapOffset(be, t), util.sizeFromShape(t.shape)),
    alloc: (shape) => be.makeOutput(shape, 'float32'),
  };
}

export function cpuHost(backend: KernelBackend): Host {
  const be = backend as unknown as CpuBackendInternals;
  return {
    view(t) {
      const values = be.data.get(t.dataId).values;
      if (!(values instanceof Float32Array))
        throw new Error('native matmul: cpu tensor data is not a Float32Array');
      return values;
    },
    alloc: (shape) => be.makeTensorInfo(shape, 'float32', new Float32Array(util.sizeFromShape(shape))),
  };
}

/** A matmul problem in BLAS terms: `batch` products of [m, k]·[k, n], operands possibly transposed. */
export interface Problem {
  m: number;
  n: number;
  k: number;
  /** Output batch size (after broadcasting). */
  batch: number;
  transA: boolean;
  transB: boolean;
  /** For each output batch, which batch of a and of b it reads (broadcasting repeats them). */
  aIndex: Int32Array;
  bIndex: Int32Array;
  outShape: number[];
}

/** Shapes, transposes and batch broadcasting of tf.matMul, as the WASM kernel reads them. */
export function problemOf(a: TensorInfo, b: TensorInfo, transA: boolean, transB: boolean): Problem {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const m = transA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const k = transA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const kb = transB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
  const n = transB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  if (k !== kb) {
    throw new Error(
      `Error in matMul: inner shapes (${k}) and (${kb}) of Tensors with shapes ${a.shape} and ${b.shape} and transposeA=${transA} and transposeB=${transB} must match.`,
    );
  }
  const aOuter = a.shape.slice(0, -2);
  const bOuter = b.shape.slice(0, -2);
  const outOuter = broadcast_util.assertAndGetBroadcastShape(aOuter, bOuter);
  const batch = util.sizeFromShape(outOuter);
  return {
    m,
    n,
    k,
    batch,
    transA,
    transB,
    aIndex: broadcastIndex(aOuter, outOuter),
    bIndex: broadcastIndex(bOuter, outOuter),
    outShape: [...outOuter, m, n],
  };
}

/** For each flat index into `outer`, the flat index into `inner` that broadcasting reads. */
function broadcastIndex(inner: number[], outer: number[]): Int32Array {
  const size = util.sizeFromShape(outer);
  const index = new Int32Array(size);
  const innerSize = util.sizeFromShape(inner);
  if (innerSize === 1) return index;
  if (innerSize === size) {
    for (let i = 0; i < size; i++) index[i] = i;
    return index;
  }
  const pad = outer.length - inner.length;
  const innerStrides = new Array<number>(inner.length);
  let stride = 1;
  for (let d = inner.length - 1; d >= 0; d--) {
    innerStrides[d] = inner[d] === 1 ? 0 : stride;
    stride *= inner[d]!;
  }
  for (let i = 0; i < size; i++) {
    let rest = i;
    let j = 0;
    for (let d = outer.length - 1; d >= 0; d--) {
      const coord = rest % outer[d]!;
      rest = Math.floor(rest / outer[d]!);
      if (d >= pad) j += coord * innerStrides[d - pad]!;
    }
    index[i] = j;
  }
  return index;
}

/**
 * Runs the problem on BLAS, reading a and b and writing `out` in place. With `accumulate`, adds to
 * what `out` holds (BLAS beta = 1), which is how a bias pre-filled into `out` is applied for free.
 */
export function gemm(
  blas: Blas,
  p: Problem,
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
  accumulate = false,
): void {
  const { m, n, k, batch, transA, transB, aIndex, bIndex } = p;
  if (m === 0 || n === 0) return;
  if (k === 0) {
    if (!accumulate) out.fill(0);
    return;
  }
  const ta = transA ? TRANS : NO_TRANS;
  const tb = transB ? TRANS : NO_TRANS;
  const lda = transA ? m : k;
  const ldb = transB ? k : n;
  const beta = accumulate ? 1 : 0;
  const aSize = m * k;
  const bSize = k * n;
  const cSize = m * n;
  // One b shared by every batch, and a's rows consecutive: the whole batch is one taller GEMM.
  if (batch > 1 && !transA && sharedAcrossBatch(bIndex) && isIdentity(aIndex)) {
    blas.sgemm(ta, tb, batch * m, n, k, 1, a, lda, b, ldb, beta, out, n);
    return;
  }
  if (batch === 1) {
    blas.sgemm(ta, tb, m, n, k, 1, a, lda, b, ldb, beta, out, n);
    return;
  }
  for (let i = 0; i < batch; i++) {
    const ai = aIndex[i]! * aSize;
    const bi = bIndex[i]! * bSize;
    blas.sgemm(
      ta,
      tb,
      m,
      n,
      k,
      1,
      a.subarray(ai, ai + aSize),
      lda,
      b.subarray(bi, bi + bSize),
      ldb,
      beta,
      out.subarray(i * cSize, (i + 1) * cSize),
      n,
    );
  }
}

function sharedAcrossBatch(index: Int32Array): boolean {
  for (let i = 0; i < index.length; i++) if (index[i] !== 0) return false;
  return true;
}

function isIdentity(index: Int32Array): boolean {
  for (let i = 0; i < index.length; i++) if (index[i] !== i) return false;
  return true;
}

export type Activation = _FusedMatMulAttrs['activation'];

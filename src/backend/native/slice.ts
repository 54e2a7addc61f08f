/**
 * Slice and SplitV for the WASM host that copy straight from the heap. The WASM backend's own Slice
 * first reads the whole input out of the heap into a fresh array (`readSync`), then copies the slice
 * from that: a [128, 12736] gradient split in two (the backward pass of a token concat) copied 6.5 MB
 * three times and took 20 ms of a 1.9 s training step; q, k and v sliced out of one fused projection
 * cost 114 µs each where the copy itself is a few µs.
 */
import type { KernelBackend, KernelFunc, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { backend_util, slice_util, util } from '@tensorflow/tfjs-core';
import { heapBuffer, heapOffset, type WasmBackendInternals } from './matmul.js';

/** 4-byte dtypes copy as 32-bit words whatever they hold; others (bool, strings, complex) go back to WASM. */
const WORD_DTYPES = new Set(['float32', 'int32']);

function words(be: WasmBackendInternals, t: TensorInfo): Int32Array {
  return new Int32Array(heapBuffer(be), heapOffset(be, t), util.sizeFromShape(t.shape));
}

/**
 * Copies x[begin : begin + size] into `out` (row-major, any rank): the innermost run that is contiguous
 * in x (the last axis cut short, with every axis after it whole) is copied at once, outer indices are
 * walked like an odometer.
 */
export function copySlice(
  x: Int32Array | Float32Array,
  shape: number[],
  begin: number[],
  size: number[],
  out: Int32Array | Float32Array,
): void {
  const rank = shape.length;
  const strides = util.computeStrides(shape);
  const stride = (d: number) => (d === rank - 1 ? 1 : strides[d]!);
  // The last axis whose slice does not span the whole axis: everything inside it is one run.
  let cut = -1;
  for (let d = rank - 1; d >= 0; d--) {
    if (size[d] !== shape[d]) {
      cut = d;
      break;
    }
  }
  if (cut <= 0) {
    // One contiguous block (the slice cuts at most the outermost axis).
    const offset = rank === 0 ? 0 : begin[0]! * stride(0);
    out.set(x.subarray(offset, offset + out.length));
    return;
  }
  const run = size[cut]! * stride(cut);
  const outer = cut; // axes 0..cut-1 are walked
  const index = begin.slice(0, outer);
  let src = 0;
  for (let d = 0; d < outer; d++) src += index[d]! * stride(d);
  src += begin[cut]! * stride(cut);
  const rows = out.length / run;
  const short = run < 16;
  for (let r = 0, dst = 0; r < rows; r++, dst += run) {
    if (short) for (let i = 0; i < run; i++) out[dst + i] = x[src + i]!;
    else out.set(x.subarray(src, src + run), dst);
    // Advance the odometer over the outer axes.
    for (let d = outer - 1; d >= 0; d--) {
      index[d]!++;
      src += stride(d);
      if (index[d]! < begin[d]! + size[d]!) break;
      index[d] = begin[d]!;
      src -= size[d]! * stride(d);
    }
  }
}

function sliceOne(be: WasmBackendInternals, x: TensorInfo, begin: number[], size: number[]): TensorInfo {
  const out = be.makeOutput(size, x.dtype);
  if (util.sizeFromShape(size) === 0) return out;
  // Views only after the allocation: growing the heap detaches earlier ones.
  copySlice(words(be, x), x.shape, begin, size, words(be, out));
  return out;
}

export function sliceKernel(original: KernelFunc): KernelFunc {
  return (args) => {
    const { x } = args.inputs as NamedTensorInfoMap & { x: TensorInfo };
    if (!WORD_DTYPES.has(x.dtype)) return original(args);
    const { begin, size } = args.attrs as unknown as { begin: number | number[]; size?: number | number[] };
    const [b, s] = slice_util.parseSliceParams(x, begin, size);
    return sliceOne(args.backend as unknown as WasmBackendInternals, x, b!, s!);
  };
}

export function splitVKernel(original: KernelFunc): KernelFunc {
  return (args) => {
    const { x } = args.inputs as NamedTensorInfoMap & { x: TensorInfo };
    if (!WORD_DTYPES.has(x.dtype)) return original(args);
    const { numOrSizeSplits, axis } = args.attrs as unknown as {
      numOrSizeSplits: number | number[];
      axis: number | number[];
    };
    const ax = util.parseAxisParam(axis, x.shape)[0]!;
    const sizes = backend_util.prepareSplitSize(x, numOrSizeSplits, ax);
    const begin = new Array<number>(x.shape.length).fill(0);
    const be = args.backend as KernelBackend as unknown as WasmBackendInternals;
    return sizes.map((s) => {
      const size = [...x.shape];
      size[ax] = s;
      const out = sliceOne(be, x, begin, size);
      begin[ax]! += s;
      return out;
    });
  };
}

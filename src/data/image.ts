/**
 * Image resizing as openpi's `resize_with_pad` does it: keep the aspect ratio, resize with PIL's
 * antialiased bilinear filter, centre on a black square. Images are packed uint8 HWC RGB.
 */

interface Taps {
  /** First source index per output index. */
  start: Int32Array;
  /** Number of taps per output index. */
  count: Int32Array;
  /** Weights, `maxTaps` per output index. */
  weights: Float32Array;
  maxTaps: number;
}

const tapsCache = new Map<string, Taps>();

/** PIL's bilinear (triangle) filter, widened by the scale when shrinking so it antialiases. */
function taps(inSize: number, outSize: number): Taps {
  const key = `${inSize}:${outSize}`;
  const cached = tapsCache.get(key);
  if (cached) return cached;
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const maxTaps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float32Array(outSize * maxTaps);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(0, Math.floor(center - support + 0.5));
    const hi = Math.min(inSize, Math.floor(center + support + 0.5));
    let total = 0;
    const n = Math.min(hi - lo, maxTaps);
    for (let k = 0; k < n; k++) {
      const x = (lo + k - center + 0.5) / filterScale;
      const w = Math.max(0, 1 - Math.abs(x));
      weights[o * maxTaps + k] = w;
      total += w;
    }
    for (let k = 0; k < n; k++) weights[o * maxTaps + k]! /= total || 1;
    start[o] = lo;
    count[o] = n;
  }
  const t = { start, count, weights, maxTaps };
  tapsCache.set(key, t);
  return t;
}

/** Resizes an HWC RGB image to outW×outH (no padding), into `out` at byte offset `outOffset` with row stride `outStride`. */
export function resizeInto(
  src: Uint8Array,
  w: number,
  h: number,
  outW: number,
  outH: number,
  out: Uint8Array,
  outOffset = 0,
  outStride = outW * 3,
): void {
  const tx = taps(w, outW);
  const ty = taps(h, outH);
  // Horizontal pass first into float rows, then vertical: each source pixel is touched once per pass.
  const mid = new Float32Array(h * outW * 3);
  for (let y = 0; y < h; y++) {
    const row = y * w * 3;
    const mrow = y * outW * 3;
    for (let o = 0; o < outW; o++) {
      const s = tx.start[o]!;
      const n = tx.count[o]!;
      const wb = o * tx.maxTaps;
      let r = 0;
      let g = 0;
      let b = 0;
      for (let k = 0; k < n; k++) {
        const wt = tx.weights[wb + k]!;
        const p = row + (s + k) * 3;
        r += src[p]! * wt;
        g += src[p + 1]! * wt;
        b += src[p + 2]! * wt;
      }
      const m = mrow + o * 3;
      mid[m] = r;
      mid[m + 1] = g;
      mid[m + 2] = b;
    }
  }
  const rowLen = outW * 3;
  for (let o = 0; o < outH; o++) {
    const s = ty.start[o]!;
    const n = ty.count[o]!;
    const wb = o * ty.maxTaps;
    const dst = outOffset + o * outStride;
    for (let x = 0; x < rowLen; x++) {
      let v = 0;
      for (let k = 0; k < n; k++) v += mid[(s + k) * rowLen + x]! * ty.weights[wb + k]!;
      out[dst + x] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
    }
  }
}

/** The size an image takes inside the square, and where it sits (openpi's integer rounding). */
export function padGeometry(w: number, h: number, size: number) {
  const ratio = Math.max(w / size, h / size);
  const rw = Math.trunc(w / ratio);
  const rh = Math.trunc(h / ratio);
  return {
    rw,
    rh,
    padX: Math.max(0, Math.trunc((size - rw) / 2)),
    padY: Math.max(0, Math.trunc((size - rh) / 2)),
  };
}

/**
 * openpi's `resize_with_pad`: the image fits the size×size square, aspect kept, black bars.
 * Writes into `out` (size*size*3 bytes at `outOffset`), which is fully overwritten.
 */
export function resizeWithPad(
  src: Uint8Array,
  w: number,
  h: number,
  size: number,
  out: Uint8Array = new Uint8Array(size * size * 3),
  outOffset = 0,
): Uint8Array {
  const { rw, rh, padX, padY } = padGeometry(w, h, size);
  out.fill(0, outOffset, outOffset + size * size * 3);
  if (rw === w && rh === h) {
    for (let y = 0; y < h; y++) {
      out.set(src.subarray(y * w * 3, (y + 1) * w * 3), outOffset + ((y + padY) * size + padX) * 3);
    }
    return out;
  }
  resizeInto(src, w, h, rw, rh, out, outOffset + (padY * size + padX) * 3, size * 3);
  return out;
}

/** CHW planes → HWC pixels (LeRobot image features may be written channel-first). */
export function chwToHwc(src: Uint8Array, c: number, h: number, w: number): Uint8Array {
  const out = new Uint8Array(src.length);
  const plane = h * w;
  for (let i = 0; i < plane; i++) for (let k = 0; k < c; k++) out[i * c + k] = src[k * plane + i]!;
  return out;
}

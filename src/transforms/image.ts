/**
 * Image resizing as openpi's `resize_with_pad` does it: keep the aspect ratio, resize with PIL's
 * antialiased bilinear filter, centre on a black square. Images are packed uint8 HWC RGB.
 */

interface Taps {
  /** First source index per output index. */
  start: Int32Array;
  /** Number of taps per output index. */
  count: Int32Array;
  /** Fixed-point weights (PRECISION bits), `maxTaps` per output index. */
  weights: Int32Array;
  maxTaps: number;
}

/** PIL's fixed-point precision for 8-bit images: weights are integers scaled by 2^22. */
const PRECISION = 22;
const HALF = 1 << (PRECISION - 1);

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
  const weights = new Int32Array(outSize * maxTaps);
  const w = new Float64Array(maxTaps);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    const n = Math.min(hi - lo, maxTaps);
    let total = 0;
    for (let k = 0; k < n; k++) {
      w[k] = Math.max(0, 1 - Math.abs((lo + k - center + 0.5) / filterScale));
      total += w[k]!;
    }
    for (let k = 0; k < n; k++)
      weights[o * maxTaps + k] = Math.trunc(0.5 + (w[k]! / (total || 1)) * (1 << PRECISION));
    start[o] = lo;
    count[o] = n;
  }
  const t = { start, count, weights, maxTaps };
  tapsCache.set(key, t);
  return t;
}

const clip8 = (v: number) => {
  const x = (v + HALF) >> PRECISION;
  return x < 0 ? 0 : Math.min(x, 255);
};

/**
 * Resizes an HWC RGB image to outW×outH (no padding), into `out` at byte offset `outOffset` with row
 * stride `outStride`. As PIL: a horizontal pass into an 8-bit image, then a vertical pass, both in
 * fixed point with rounding, so results match PIL's `Image.resize(..., BILINEAR)` closely.
 */
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
  const rowLen = outW * 3;
  const mid = new Uint8Array(h * rowLen);
  for (let y = 0; y < h; y++) {
    const row = y * w * 3;
    const mrow = y * rowLen;
    for (let o = 0; o < outW; o++) {
      const n = tx.count[o]!;
      const wb = o * tx.maxTaps;
      let p = row + tx.start[o]! * 3;
      let r = 0;
      let g = 0;
      let b = 0;
      for (let k = 0; k < n; k++, p += 3) {
        const wt = tx.weights[wb + k]!;
        r += src[p]! * wt;
        g += src[p + 1]! * wt;
        b += src[p + 2]! * wt;
      }
      const m = mrow + o * 3;
      mid[m] = clip8(r);
      mid[m + 1] = clip8(g);
      mid[m + 2] = clip8(b);
    }
  }
  for (let o = 0; o < outH; o++) {
    const s = ty.start[o]!;
    const n = ty.count[o]!;
    const wb = o * ty.maxTaps;
    const dst = outOffset + o * outStride;
    for (let x = 0; x < rowLen; x++) {
      let v = 0;
      for (let k = 0, p = s * rowLen + x; k < n; k++, p += rowLen) v += mid[p]! * ty.weights[wb + k]!;
      out[dst + x] = clip8(v);
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

/** A camera image in either layout, letterboxed into the size×size HWC square at `out[offset]`. */
export function squareImage(
  data: Uint8Array,
  width: number,
  height: number,
  layout: 'hwc' | 'chw',
  size: number,
  out: Uint8Array,
  offset: number,
): void {
  const hwc = layout === 'chw' ? chwToHwc(data, 3, height, width) : data;
  resizeWithPad(hwc, width, height, size, out, offset);
}

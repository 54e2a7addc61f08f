/**
 * The safetensors format, written and read by our own code (no maintained npm package exists): an
 * 8-byte little-endian header length, a JSON header of name → {dtype, shape, data_offsets}, then the
 * raw little-endian bytes. Python's `safetensors` and numpy read what this writes.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { UserError } from '../config/errors.js';

export type SafeDtype = 'F32' | 'F16' | 'I64' | 'U32';

export interface SafeTensor {
  dtype: SafeDtype;
  shape: number[];
  /** F32 and F16 tensors are given and returned as float32 values; F16 is converted on write and read. */
  data: Float32Array | BigInt64Array | Uint32Array;
}

const BYTES: Record<SafeDtype, number> = { F32: 4, F16: 2, I64: 8, U32: 4 };

function encode(t: SafeTensor): Uint8Array {
  if (t.dtype === 'F16') {
    const src = t.data as Float32Array;
    const out = new Uint16Array(src.length);
    for (let i = 0; i < src.length; i++) out[i] = toHalf(src[i]!);
    return new Uint8Array(out.buffer);
  }
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Writes atomically (a temporary file renamed into place). `metadata` lands under `__metadata__`. */
export function writeSafetensors(
  file: string,
  tensors: Map<string, SafeTensor>,
  metadata: Record<string, string> = {},
): void {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length)
      throw new Error(`${name}: shape [${t.shape}] holds ${n} values, data has ${t.data.length}`);
    const bytes = encode(t);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(head.length));
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, len);
    writeSync(fd, head);
    for (const c of chunks) writeSync(fd, c);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

export interface SafetensorsFile {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

export function readSafetensors(file: string): SafetensorsFile {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (e) {
    throw new UserError(`${file}: cannot read (${(e as Error).message})`);
  }
  if (buf.length < 8)
    throw new UserError(`${file}: not a safetensors file (${buf.length} bytes, expected at least 8)`);
  const headerLen = Number(buf.readBigUInt64LE(0));
  if (headerLen > buf.length - 8) {
    throw new UserError(`${file}: header length ${headerLen} runs past the file's ${buf.length} bytes`);
  }
  let header: Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>
  >;
  try {
    header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8'));
  } catch (e) {
    throw new UserError(`${file}: the header is not JSON (${(e as Error).message})`);
  }
  const start = 8 + headerLen;
  const tensors = new Map<string, SafeTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const {
      dtype,
      shape,
      data_offsets: off,
    } = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (!(dtype in BYTES)) {
      throw new UserError(
        `${file}: ${name}: dtype ${dtype} is not supported (expected F32, F16, I64 or U32)`,
      );
    }
    const dt = dtype as SafeDtype;
    const n = shape.reduce((a, b) => a * b, 1);
    if (off[1] - off[0] !== n * BYTES[dt] || start + off[1] > buf.length) {
      throw new UserError(
        `${file}: ${name}: data_offsets [${off}] do not fit shape [${shape}] of ${dt} in the file`,
      );
    }
    // Copy into an aligned buffer: the data section need not be aligned inside the file's Buffer.
    const bytes = new Uint8Array(buf.subarray(start + off[0], start + off[1]));
    let data: SafeTensor['data'];
    if (dt === 'F16') {
      const half = new Uint16Array(bytes.buffer);
      data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = fromHalf(half[i]!);
    } else if (dt === 'F32') data = new Float32Array(bytes.buffer);
    else if (dt === 'I64') data = new BigInt64Array(bytes.buffer);
    else data = new Uint32Array(bytes.buffer);
    tensors.set(name, { dtype: dt, shape, data });
  }
  return { tensors, metadata };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 → IEEE half bits, rounding to nearest even; overflow becomes ±Inf. */
export function toHalf(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

export function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/**
 * openpi's wire format: msgpack where numpy arrays are maps with **bin** keys (`__ndarray__`, `data`,
 * `dtype`, `shape`) and numpy scalars maps with `__npgeneric__`, `data`, `dtype` (openpi_client's
 * msgpack_numpy). msgpackr's default decoder refuses bin keys, so we decode maps as Maps and turn
 * them into NdArrays and plain objects in one pass; array bytes stay views into the message.
 */
import { Packr, Unpackr } from 'msgpackr';
import { CodecError, checkMessage, DEFAULT_LIMITS, type DecodeLimits } from './msgpack-limits.js';
import { DTYPE_BYTES, type DType, NdArray, type TypedArray } from './ndarray.js';

export { CodecError, DEFAULT_LIMITS, type DecodeLimits };

const unpackr = new Unpackr({ mapsAsObjects: false, useRecords: false, int64AsType: 'number' });
const PACK_OPTIONS = { useRecords: false, variableMapSize: true } as const;
const packr = new Packr(PACK_OPTIONS);

const KEY = {
  ndarray: Buffer.from('__ndarray__'),
  npgeneric: Buffer.from('__npgeneric__'),
  data: Buffer.from('data'),
  dtype: Buffer.from('dtype'),
  shape: Buffer.from('shape'),
};

type Ctor = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => TypedArray;
const CTORS: Record<DType, Ctor> = {
  '<f4': Float32Array,
  '<f8': Float64Array,
  '|u1': Uint8Array,
  '|i1': Int8Array,
  '<i2': Int16Array,
  '<u2': Uint16Array,
  '<i4': Int32Array,
  '<u4': Uint32Array,
  '<i8': BigInt64Array,
  '<u8': BigUint64Array,
  '|b1': Uint8Array,
};

/** numpy writes single-byte dtypes with `|`, but `<u1` and `=f4` style strings are equally valid. */
function canonicalDtype(raw: unknown): DType {
  if (typeof raw !== 'string')
    throw new CodecError(`array dtype: expected a numpy dtype string, got ${typeof raw}`);
  const kind = raw.slice(1);
  const order = raw[0];
  if (order === '>' && !kind.endsWith('1')) {
    throw new CodecError(`array dtype: expected little-endian data, got big-endian "${raw}"`);
  }
  const dtype = (['u1', 'i1', 'b1'].includes(kind) ? `|${kind}` : `<${kind}`) as DType;
  if (!(dtype in CTORS)) {
    throw new CodecError(
      `array dtype: expected one of float32/float64/(u)int8..64/bool, got "${raw}" (complex, object and void dtypes are refused)`,
    );
  }
  return dtype;
}

/** A typed-array view on the bytes when aligned; one copy when the message put them off alignment. */
function view(bytes: Uint8Array, dtype: DType, count: number): TypedArray {
  const size = DTYPE_BYTES[dtype];
  if (bytes.byteLength !== count * size) {
    throw new CodecError(
      `array data: expected ${count * size} bytes for ${count} elements of ${dtype}, got ${bytes.byteLength}`,
    );
  }
  const Ctor = CTORS[dtype];
  if (bytes.byteOffset % size === 0) return new Ctor(bytes.buffer, bytes.byteOffset, count);
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Ctor(copy.buffer, 0, count);
}

/** Compared in script: for keys of a few bytes that is several times cheaper than a native Buffer.compare. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function getBin(map: Map<unknown, unknown>, key: Buffer): unknown {
  for (const [k, v] of map) if (k instanceof Uint8Array && sameBytes(k, key)) return v;
  return undefined;
}

function fromMap(map: Map<unknown, unknown>): unknown {
  if (getBin(map, KEY.ndarray) === true) {
    const dtype = canonicalDtype(getBin(map, KEY.dtype));
    const shape = getBin(map, KEY.shape);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new CodecError(
        `array shape: expected a list of non-negative integers, got ${JSON.stringify(shape)}`,
      );
    }
    const data = getBin(map, KEY.data);
    if (!(data instanceof Uint8Array)) throw new CodecError('array data: expected bytes');
    const count = shape.reduce((a: number, b: number) => a * b, 1);
    return new NdArray(view(data, dtype, count), shape, dtype);
  }
  if (getBin(map, KEY.npgeneric) === true) {
    const dtype = canonicalDtype(getBin(map, KEY.dtype));
    const arr = new CTORS[dtype](new ArrayBuffer(DTYPE_BYTES[dtype]), 0, 1);
    arr[0] = scalarValue(getBin(map, KEY.data), dtype, arr) as never;
    return new NdArray(arr, [], dtype);
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of map) {
    const key =
      k instanceof Uint8Array ? Buffer.from(k.buffer, k.byteOffset, k.byteLength).toString() : String(k);
    // A key "__proto__" is data like any other, not the object's prototype.
    if (key === '__proto__') {
      Object.defineProperty(out, key, {
        value: revive(v),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } else out[key] = revive(v);
  }
  return out;
}

/** A numpy scalar's value, refused where its dtype cannot hold it exactly (1.5 as `<i8`, 300 as `|u1`). */
function scalarValue(value: unknown, dtype: DType, probe: TypedArray): number | bigint {
  const v = typeof value === 'boolean' ? Number(value) : value;
  if (typeof v !== 'number' && typeof v !== 'bigint') {
    throw new CodecError(`numpy scalar data: expected a number, got ${typeof value}`);
  }
  if (dtype === '<f4' || dtype === '<f8') return Number(v);
  if (typeof v === 'number' && !Number.isInteger(v)) {
    throw new CodecError(`numpy scalar data: expected an integer for dtype ${dtype}, got ${v}`);
  }
  const exact = dtype === '<i8' || dtype === '<u8' ? BigInt(v) : Number(v);
  probe[0] = exact as never;
  if (probe[0] !== exact || (dtype === '|b1' && exact !== 0 && exact !== 1)) {
    throw new CodecError(`numpy scalar data: expected a value that fits dtype ${dtype}, got ${v}`);
  }
  return exact;
}

function revive(value: unknown): unknown {
  if (value instanceof Map) return fromMap(value);
  if (Array.isArray(value)) return value.map(revive);
  return value;
}

/**
 * Decode one message: maps become plain objects, numpy arrays `NdArray`s viewing the message bytes.
 * The message's structure is checked against `limits` first, so that no message costs more than a
 * bounded amount of decoding and every refusal is in our words.
 */
export function unpack(message: Uint8Array, limits: DecodeLimits = DEFAULT_LIMITS): unknown {
  checkMessage(message, limits);
  let raw: unknown;
  try {
    raw = unpackr.unpack(message);
  } catch (e) {
    // The check above leaves msgpackr nothing to refuse; should it still, say so without its internals.
    throw new CodecError(`message: not decodable as msgpack (${(e as Error).name})`);
  }
  return revive(raw);
}

function bytesOf(a: TypedArray): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Turn NdArrays into msgpack_numpy maps (bin keys, as Python's msgpack writes them). */
function toWire(value: unknown): unknown {
  if (value instanceof NdArray) {
    return new Map<unknown, unknown>([
      [KEY.ndarray, true],
      [KEY.data, bytesOf(value.data)],
      [KEY.dtype, value.dtype],
      [KEY.shape, [...value.shape]],
    ]);
  }
  if (Array.isArray(value)) return value.map(toWire);
  if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toWire(v);
    return out;
  }
  return value;
}

/** Encode one message in openpi's format. */
export function pack(value: unknown): Buffer {
  return packr.pack(toWire(value));
}

/**
 * Encodes messages into one buffer of its own, the same bytes as `pack`, for a sender of large
 * messages one at a time (a robot's observations). `pack` writes each message to memory never touched
 * before: for 0.3–0.6 MB of images that costs page faults and cache misses, several times the copy
 * itself, on every request. Here the buffer is warm from the previous message. What `pack` returns is
 * overwritten by the next call: the caller must be done with it (sent it) by then.
 */
export class ReusingPacker {
  private readonly packr = new Packr(PACK_OPTIONS);
  private buffer = Buffer.allocUnsafeSlow(64 * 1024);

  pack(value: unknown): Buffer {
    this.packr.useBuffer(this.buffer);
    const out = this.packr.pack(toWire(value));
    // A message larger than the buffer went to a new one msgpackr allocated; the next gets room enough.
    if (out.buffer !== this.buffer.buffer)
      this.buffer = Buffer.allocUnsafeSlow(Math.ceil(out.byteLength * 1.25));
    return out;
  }
}

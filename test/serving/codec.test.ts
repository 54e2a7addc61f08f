import { describe, expect, it } from 'vitest';
import { CodecError, pack, unpack } from '../../src/serving/codec.js';
import { NdArray } from '../../src/serving/ndarray.js';

/** msgpack bytes built by hand from the spec, the way Python's msgpack + openpi's msgpack_numpy write them. */
const bin = (s: string) => [0xc4, s.length, ...Buffer.from(s)];
const str = (s: string) => [0xa0 | s.length, ...Buffer.from(s)];

/** {"actions": ndarray float32 [2, 2] = [[1, 2], [3, 4]]} */
function handBuiltActions(): Buffer {
  const data = Buffer.alloc(16);
  [1, 2, 3, 4].forEach((v, i) => data.writeFloatLE(v, i * 4));
  return Buffer.from([
    0x81,
    ...str('actions'),
    0x84,
    ...bin('__ndarray__'),
    0xc3,
    ...bin('data'),
    0xc4,
    16,
    ...data,
    ...bin('dtype'),
    ...str('<f4'),
    ...bin('shape'),
    0x92,
    0x02,
    0x02,
  ]);
}

describe('msgpack_numpy codec (openpi wire format)', () => {
  it('decodes a hand-built openpi array map into an NdArray', () => {
    const decoded = unpack(handBuiltActions()) as { actions: NdArray };
    expect(decoded.actions).toBeInstanceOf(NdArray);
    expect(decoded.actions.dtype).toBe('<f4');
    expect(decoded.actions.shape).toEqual([2, 2]);
    expect(Array.from(decoded.actions.data as Float32Array)).toEqual([1, 2, 3, 4]);
  });

  it('encodes byte for byte as Python msgpack with use_bin_type does', () => {
    const out = pack({ actions: new NdArray(new Float32Array([1, 2, 3, 4]), [2, 2]) });
    expect(out.equals(handBuiltActions())).toBe(true);
  });

  it('decodes image bytes as a view into the message, without copying', () => {
    const pixels = new Uint8Array(3 * 4 * 5).map((_, i) => i);
    const msg = pack({ images: { cam_high: new NdArray(pixels, [3, 4, 5]) } });
    const obs = unpack(msg) as { images: { cam_high: NdArray } };
    const img = obs.images.cam_high.data;
    expect(img.buffer).toBe(msg.buffer);
    expect(Array.from(img as Uint8Array)).toEqual(Array.from(pixels));
    expect(obs.images.cam_high.shape).toEqual([3, 4, 5]);
  });

  it('copies once when float64 data sits off 8-byte alignment, and keeps the values', () => {
    const state = new Float64Array([0.5, -1.25, 3]);
    const msg = pack({ state: new NdArray(state, [3]) });
    const shifted = Buffer.alloc(msg.length + 3);
    msg.copy(shifted, 3);
    const decoded = unpack(shifted.subarray(3)) as { state: NdArray };
    expect(Array.from(decoded.state.data as Float64Array)).toEqual([0.5, -1.25, 3]);
  });

  it('round-trips every supported dtype, numpy scalars, strings and nested maps', () => {
    const value = {
      f8: new NdArray(new Float64Array([1.5, -2]), [2]),
      u1: new NdArray(new Uint8Array([0, 255]), [2, 1]),
      i4: new NdArray(new Int32Array([-7]), [1]),
      i8: new NdArray(new BigInt64Array([-9n]), [1]),
      b1: new NdArray(new Uint8Array([1, 0]), [2], '|b1'),
      prompt: 'pick up the cube',
      nested: { a: [1, 2], b: null },
    };
    const back = unpack(pack(value)) as typeof value;
    expect(Array.from(back.f8.data)).toEqual([1.5, -2]);
    expect(back.u1.shape).toEqual([2, 1]);
    expect(back.i4.dtype).toBe('<i4');
    expect(back.i8.data[0]).toBe(-9n);
    expect(back.b1.dtype).toBe('|b1');
    expect(back.prompt).toBe('pick up the cube');
    expect(back.nested).toEqual({ a: [1, 2], b: null });
  });

  it('decodes a numpy scalar (__npgeneric__) as a 0-d array', () => {
    const msg = Buffer.from([
      0x81,
      ...str('g'),
      0x83,
      ...bin('__npgeneric__'),
      0xc3,
      ...bin('data'),
      0xcb,
      ...Buffer.from([0x3f, 0xe0, 0, 0, 0, 0, 0, 0]),
      ...bin('dtype'),
      ...str('<f8'),
    ]);
    const g = (unpack(msg) as { g: NdArray }).g;
    expect(g.shape).toEqual([]);
    expect(g.data[0]).toBe(0.5);
  });

  it('refuses complex, object and big-endian dtypes, and byte counts that disagree with the shape', () => {
    const arr = (dtype: string, bytes: number, shape: number[]) =>
      Buffer.from([
        0x84,
        ...bin('__ndarray__'),
        0xc3,
        ...bin('data'),
        0xc4,
        bytes,
        ...Buffer.alloc(bytes),
        ...bin('dtype'),
        ...str(dtype),
        ...bin('shape'),
        0x90 | shape.length,
        ...shape,
      ]);
    expect(() => unpack(arr('<c8', 8, [1]))).toThrow(/complex, object and void dtypes are refused/);
    expect(() => unpack(arr('|O', 8, [1]))).toThrow(CodecError);
    expect(() => unpack(arr('>f4', 4, [1]))).toThrow(/big-endian/);
    expect(() => unpack(arr('<f4', 8, [3]))).toThrow(
      'array data: expected 12 bytes for 3 elements of <f4, got 8',
    );
    expect(() => unpack(Buffer.from([0x92, 0x01]))).toThrow(
      'message: truncated at byte 2: expected 1 more bytes for a value, got 0',
    );
  });
});

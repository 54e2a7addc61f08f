import { CodecError, NdArray, pack, unpack } from '@vla-orchestrator/client';
import { describe, expect, it } from 'vitest';
import { ReusingPacker } from '../../packages/client/src/codec.js';

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

  it('packs into a buffer it reuses the same bytes as pack, growing once for a larger message', () => {
    const observation = (side: number, seed: number) => ({
      state: new NdArray(
        new Float64Array(14).map((_, i) => i * seed),
        [14],
      ),
      images: { cam_high: new NdArray(new Uint8Array(3 * side * side).fill(seed), [3, side, side]) },
      prompt: `task ${seed}`,
    });
    const packer = new ReusingPacker();
    const small = packer.pack(observation(8, 1));
    expect(small.equals(pack(observation(8, 1)))).toBe(true);
    // 150 KB: more than the buffer it starts with.
    const large = packer.pack(observation(224, 2));
    expect(large.equals(pack(observation(224, 2)))).toBe(true);
    const next = Buffer.from(packer.pack(observation(224, 3)));
    const again = packer.pack(observation(224, 4));
    expect(next.equals(pack(observation(224, 3)))).toBe(true);
    expect(again.equals(pack(observation(224, 4)))).toBe(true);
    // From the second large message on, every one is written where the one before it was.
    expect(packer.pack(observation(224, 5)).buffer).toBe(again.buffer);
    expect(packer.pack(observation(8, 6)).equals(pack(observation(8, 6)))).toBe(true);
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

describe('limits checked before decoding', () => {
  const limits = { maxDepth: 3, maxValues: 10, maxStringBytes: 8 };

  it('accepts what is within every limit, counting depth, values and string bytes exactly', () => {
    // [[[1]]]: three deep; {"a": [1..8]}: 1 + 8 values; an 8-byte string.
    expect(unpack(Buffer.from([0x91, 0x91, 0x91, 0x01]), limits)).toEqual([[[1]]]);
    expect(unpack(Buffer.from([0x81, 0xa1, 0x61, 0x98, 1, 2, 3, 4, 5, 6, 7, 8]), limits)).toEqual({
      a: [1, 2, 3, 4, 5, 6, 7, 8],
    });
    expect(unpack(Buffer.from([0xa8, ...Buffer.from('abcdefgh')]), limits)).toBe('abcdefgh');
    // Bytes are not strings: a bin of 100 bytes is skipped, not limited.
    expect((unpack(Buffer.from([0xc4, 100, ...Buffer.alloc(100)]), limits) as Buffer).length).toBe(100);
  });

  it('refuses one past each limit, naming the limit and where', () => {
    expect(() => unpack(Buffer.from([0x91, 0x91, 0x91, 0x91, 0x01]), limits)).toThrow(
      'message: expected maps and arrays nested at most 3 deep, got deeper at byte 4',
    );
    expect(() =>
      unpack(Buffer.from([0x81, 0xa1, 0x61, 0x9a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), limits),
    ).toThrow('message: expected at most 10 values in all, got a list of 10 entries at byte 4 (11 so far)');
    expect(() => unpack(Buffer.from([0xa9, ...Buffer.from('abcdefghi')]), limits)).toThrow(
      'message: expected strings of at most 8 bytes, got one of 9 at byte 1',
    );
    // A map32 announcing a million entries is refused from its header, before any entry is read.
    expect(() => unpack(Buffer.from([0xdf, 0x00, 0x0f, 0x42, 0x40]))).toThrow(
      'message: expected at most 10000 values in all, got a map of 1000000 entries at byte 5 (1000000 so far)',
    );
  });

  it('refuses extension types, 0xc1, truncation and trailing bytes in its own words', () => {
    expect(() => unpack(Buffer.from([0xd4, 0x73, 0x00]))).toThrow(
      'message: expected maps, lists, strings, bytes, numbers, booleans or nil, got a msgpack extension type (0xd4) at byte 0',
    );
    expect(() => unpack(Buffer.from([0xc1]))).toThrow('message: byte 0 is 0xc1, which msgpack never uses');
    expect(() => unpack(Buffer.from([0xc5, 0x01]))).toThrow(
      'message: truncated at byte 1: expected 2 more bytes for the length of bytes, got 1',
    );
    expect(() => unpack(Buffer.from([0xc4, 0x05, 1, 2]))).toThrow(
      'message: truncated at byte 2: expected 5 more bytes for bytes, got 2',
    );
    expect(() => unpack(Buffer.from([0x01, 0x02]))).toThrow(
      'message: expected one msgpack value, got 1 bytes after it (from byte 1)',
    );
  });

  it('checks numpy scalars against their dtype', () => {
    const scalar = (value: number[], dtype: string) =>
      Buffer.from([
        0x83,
        ...bin('__npgeneric__'),
        0xc3,
        ...bin('data'),
        ...value,
        ...bin('dtype'),
        ...str(dtype),
      ]);
    const f = Buffer.alloc(9);
    f[0] = 0xcb;
    f.writeDoubleBE(1.5, 1);
    expect(() => unpack(scalar([...f], '<i8'))).toThrow(
      'numpy scalar data: expected an integer for dtype <i8, got 1.5',
    );
    expect(() => unpack(scalar([0xcd, 0x01, 0x2c], '|u1'))).toThrow(
      'numpy scalar data: expected a value that fits dtype |u1, got 300',
    );
    expect(() => unpack(scalar([0x02], '|b1'))).toThrow(
      'numpy scalar data: expected a value that fits dtype |b1, got 2',
    );
    expect(() => unpack(scalar([0xff], '<u4'))).toThrow(
      'numpy scalar data: expected a value that fits dtype <u4, got -1',
    );
    expect((unpack(scalar([0x07], '<i8')) as NdArray).data[0]).toBe(7n);
    expect((unpack(scalar([0xc3], '|b1')) as NdArray).data[0]).toBe(1);
  });

  it('keeps a "__proto__" key as data, not as the prototype', () => {
    const decoded = unpack(Buffer.from([0x81, ...str('__proto__'), 0x81, ...str('state'), 0x01])) as Record<
      string,
      unknown
    >;
    expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
    expect(decoded.state).toBeUndefined();
    expect(Object.keys(decoded)).toEqual(['__proto__']);
  });
});

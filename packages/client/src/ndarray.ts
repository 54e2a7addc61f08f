/**
 * A numpy-style array as it travels on openpi's wire: a typed array in C order, its shape, and numpy's
 * dtype string. The codec turns these into msgpack_numpy maps and back without copying element by
 * element; robot clients and the simulator build observations from them.
 */
export type DType = '<f4' | '<f8' | '|u1' | '|i1' | '<i2' | '<u2' | '<i4' | '<u4' | '<i8' | '<u8' | '|b1';

export type TypedArray =
  | Float32Array
  | Float64Array
  | Uint8Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

export const DTYPE_BYTES: Record<DType, number> = {
  '<f4': 4,
  '<f8': 8,
  '|u1': 1,
  '|i1': 1,
  '<i2': 2,
  '<u2': 2,
  '<i4': 4,
  '<u4': 4,
  '<i8': 8,
  '<u8': 8,
  '|b1': 1,
};

function dtypeOf(data: TypedArray): DType {
  if (data instanceof Float32Array) return '<f4';
  if (data instanceof Float64Array) return '<f8';
  if (data instanceof Uint8Array) return '|u1';
  if (data instanceof Int8Array) return '|i1';
  if (data instanceof Int16Array) return '<i2';
  if (data instanceof Uint16Array) return '<u2';
  if (data instanceof Int32Array) return '<i4';
  if (data instanceof Uint32Array) return '<u4';
  if (data instanceof BigInt64Array) return '<i8';
  return '<u8';
}

export class NdArray<T extends TypedArray = TypedArray> {
  readonly dtype: DType;

  /** `dtype` defaults from the typed array; pass `|b1` to send a Uint8Array of 0/1 as numpy bools. */
  constructor(
    readonly data: T,
    readonly shape: readonly number[],
    dtype?: DType,
  ) {
    this.dtype = dtype ?? dtypeOf(data);
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== data.length) {
      throw new Error(`NdArray: shape [${shape.join(', ')}] holds ${n} elements, data has ${data.length}`);
    }
  }

  get size(): number {
    return this.data.length;
  }

  /** The values as float32 (state and actions are float32 inside the model). */
  toFloat32(): Float32Array {
    if (this.data instanceof Float32Array) return this.data;
    const out = new Float32Array(this.data.length);
    for (let i = 0; i < out.length; i++) out[i] = Number(this.data[i]);
    return out;
  }
}

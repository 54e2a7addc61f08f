/**
 * bf16 products through the kernel pack (train.precision / serve.precision): each kind of product the
 * pack runs — plain, transposed, batched, the training attention and its gradients — in bf16 against
 * the same in fp32, relative errors printed per shape; and the fallback where bf16 cannot run.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeBackend, setProductPrecision, setupBackend } from '../../src/backend/index.js';
import { loadOneDnn } from '../../src/backend/native/onednn.js';
import { attentionOp } from '../../src/backend/native/train-attention.js';

const onednn = loadOneDnn(1);
const skip = 'error' in onednn ? onednn.error : null;
if (skip) console.warn(`bf16 product tests skipped: ${skip}`);

/** max |got − want| / max |want|: products round in a different order; cancelling sums make element-wise errors meaningless. */
function relErr(got: tf.Tensor, want: tf.Tensor): number {
  return tf.tidy(() => {
    const scale = tf.max(tf.abs(want)).dataSync()[0]!;
    return tf.max(tf.abs(tf.sub(got, want))).dataSync()[0]! / Math.max(scale, 1e-30);
  });
}

/** The same computation in fp32 and in bf16 products: [fp32 result, bf16 result], each a list of tensors. */
function both(f: () => tf.Tensor[]): [tf.Tensor[], tf.Tensor[]] {
  setProductPrecision('fp32');
  const a = tf.tidy(f);
  expect(setProductPrecision('bf16')).toBeNull();
  const b = tf.tidy(f);
  setProductPrecision('fp32');
  return [a, b];
}

describe.skipIf(skip !== null)('bf16 products in the kernel pack', () => {
  beforeAll(async () => {
    const info = await setupBackend({ backend: 'wasm', native: true });
    if (!info.native) throw new Error(`the kernel pack is off: ${info.nativeOff}`);
  });
  afterAll(() => {
    setProductPrecision('fp32');
  });

  it('names bf16 products on the backend line, and runs every product within bf16 rounding of fp32', async () => {
    expect(setProductPrecision('bf16')).toBeNull();
    const info = await setupBackend({ backend: 'wasm', native: true, precision: 'bf16' });
    expect(describeBackend(info)).toMatch(
      /bf16 products on oneDNN \d+\.\d+\.\d+, avx512_core_bf16|bf16 products on oneDNN/,
    );
    const r = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, 'float32', seed);
    const cases: Array<[string, () => tf.Tensor[]]> = [
      ['[50,128]·[128,768]', () => [tf.matMul(r([50, 128], 1), r([128, 768], 2))]],
      ['[33,65]ᵀ·[33,17]', () => [tf.matMul(r([33, 65], 3), r([33, 17], 4), true, false)]],
      ['[37,43]·[41,43]ᵀ', () => [tf.matMul(r([37, 43], 5), r([41, 43], 6), false, true)]],
      ['batched 8×[20,32]·[32,24]', () => [tf.matMul(r([8, 20, 32], 7), r([8, 32, 24], 8))]],
      [
        'fused matmul + bias + relu',
        () => [
          tf.fused.matMul({ a: r([40, 64], 9), b: r([64, 48], 10), bias: r([48], 11), activation: 'relu' }),
        ],
      ],
      [
        'gradients of a 2-layer linear product',
        () => {
          const x = r([32, 64], 12);
          const w1 = r([64, 96], 13);
          const w2 = r([96, 16], 14);
          const g = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
            tf.sum(tf.square(tf.matMul(tf.matMul(x, a), b))),
          );
          return g([w1, w2]);
        },
      ],
      [
        'training attention and its gradients',
        () => {
          // Batch 2, 4 heads of 16, 12 tokens: q, keys and values [B·T, heads·16].
          const [q, k, v] = [15, 16, 17].map((seed) => r([24, 64], seed) as tf.Tensor2D) as [
            tf.Tensor2D,
            tf.Tensor2D,
            tf.Tensor2D,
          ];
          const attend = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
            attentionOp(a as tf.Tensor2D, [[b as tf.Tensor2D, c as tf.Tensor2D]], null, 4, 2, 0.25);
          const g = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
            tf.sum(tf.square(attend(a, b, c))),
          );
          return [attend(q, k, v), ...g([q, k, v])];
        },
      ],
    ];
    const rows: string[] = [];
    for (const [name, f] of cases) {
      const [fp32, bf16] = both(f);
      const errs = fp32.map((t, i) => relErr(bf16[i]!, t));
      rows.push(`${name.padEnd(40)} ${errs.map((e) => e.toExponential(1)).join(' ')}`);
      // bf16 keeps 8 bits of mantissa (2⁻⁹ relative rounding) and accumulates in fp32. (Through a relu
      // the gradients may differ by more: an activation near zero can change sign under bf16 rounding.)
      for (const e of errs) {
        expect(e).toBeLessThan(2e-2);
        expect(e).toBeGreaterThan(1e-6);
      }
      tf.dispose([...fp32, ...bf16]);
    }
    console.log(`relative error of bf16 against fp32 products, per output:\n${rows.join('\n')}`);
  });

  it('goes back to fp32 exactly: the same products as before bf16 was switched on', () => {
    const a = tf.randomNormal([30, 40], 0, 1, 'float32', 21);
    const b = tf.randomNormal([40, 50], 0, 1, 'float32', 22);
    const before = tf.matMul(a, b).dataSync().slice();
    setProductPrecision('bf16');
    tf.matMul(a, b).dispose();
    setProductPrecision('fp32');
    expect(Array.from(tf.matMul(a, b).dataSync())).toEqual(Array.from(before));
  });
});

describe('bf16 where it cannot run', () => {
  it('without the kernel pack, says why and keeps fp32', async () => {
    const info = await setupBackend({ backend: 'wasm', native: false, precision: 'bf16' });
    expect(info.native).toBeNull();
    expect(setProductPrecision('bf16')).toMatch(
      /^bf16 products off: they run on the native kernel pack, which is off/,
    );
    await setupBackend({ backend: 'wasm', native: true });
  });

  it('a binding that cannot load is a one-line reason', () => {
    const missing = loadOneDnn(1, () => {
      throw Object.assign(new Error("Cannot find module 'vla-onednn'"), { code: 'MODULE_NOT_FOUND' });
    });
    expect(missing).toEqual({ error: 'vla-onednn not built (apt-get install libdnnl-dev, then npm ci)' });
    const noBf16 = loadOneDnn(1, () => ({
      sgemmBf16: () => {},
      setNumThreads: () => {},
      info: () => ({ version: '2.6.3', bf16Hardware: false, isa: 'avx2' }),
    }));
    expect(noBf16).toEqual({ error: 'this CPU has no AVX512-BF16 or AMX-BF16 (oneDNN 2.6.3, avx2)' });
  });

  it('bf16 products measured slower than fp32 ones are said so on the products line, and still run as asked', () => {
    // The 2×2 self-check computes; the 384³ rate probe costs 0 ms in fp32 and ≥ 1 ms in bf16.
    const busy = (ms: number) => {
      const t = performance.now();
      while (performance.now() - t < ms);
    };
    const selfCheck = (m: number, c: Float32Array) => {
      if (m === 2) c.set([5, 11, 11, 25]);
    };
    const fake = (bf16Ms: number) =>
      loadOneDnn(1, () => ({
        sgemm: (_ta: number, _tb: number, m: number, ..._r: unknown[]) => selfCheck(m, _r[8] as Float32Array),
        sgemmBf16: (_ta: number, _tb: number, m: number, ...r: unknown[]) => {
          selfCheck(m, r[8] as Float32Array);
          if (m !== 2) busy(bf16Ms);
        },
        setNumThreads: () => {},
        info: () => ({ version: '2.6.3', bf16Hardware: true, isa: 'avx512_core_bf16' }),
      }));
    const slow = fake(1);
    if ('error' in slow) throw new Error(slow.error);
    expect(slow.rate).toBeLessThan(0.95);
    expect(slow.describe).toMatch(
      /^oneDNN 2\.6\.3, avx512_core_bf16; bf16 products measured at 0\.\d\d× float32's rate on this CPU .*slower, not faster$/,
    );
    expect(typeof slow.sgemmBf16).toBe('function');
    if (!('error' in onednn)) {
      // The real binding's probe: a rate, and the warning exactly where it is below 0.95.
      expect(onednn.rate).toBeGreaterThan(0);
      expect(onednn.describe.includes('slower, not faster')).toBe(onednn.rate < 0.95);
    }
  });
});

import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeBackend, setupBackend } from '../../src/backend/index.js';
import { CACHED_ATTENTION, cachedAttention, cachedAttentionOps } from '../../src/backend/native/attention.js';
import { blasCoreFor, blasCoreNote, loadBlas } from '../../src/backend/native/blas.js';
import {
  fusedActive,
  GELU_GRAD,
  installFused,
  loadFused,
  RMS_NORM,
  removeFused,
} from '../../src/backend/native/fused.js';
import { type Chooser, installPack, packStats, removePack } from '../../src/backend/native/pack.js';
import { ATTENTION, attentionOp } from '../../src/backend/native/train-attention.js';
import { attentionOps, gelu, rmsNorm } from '../../src/model/layers.js';
import { Rng } from '../../src/model/rng.js';

const require = createRequire(import.meta.url);
const blas = loadBlas();
const haveBlas = !('error' in blas);
if (!haveBlas) console.warn(`native kernel pack tests skipped: ${(blas as { error: string }).error}`);

/**
 * Error relative to the result's scale: max |got − want| / max |want|. Element-wise relative error is
 * meaningless for sums of products that cancel to near zero; both kernels round in float32, in a
 * different order.
 */
function relErr(got: tf.Tensor, want: tf.Tensor): number {
  expect(got.shape).toEqual(want.shape);
  return tf.tidy(() => {
    const scale = tf.max(tf.abs(want)).dataSync()[0]!;
    return tf.max(tf.abs(tf.sub(got, want))).dataSync()[0]! / Math.max(scale, 1e-30);
  });
}

/** Runs `f` with the host's own kernels, then with the pack; returns both results (the pack's first). */
function bothWays<T extends tf.Tensor | tf.Tensor[]>(
  host: 'wasm' | 'cpu',
  f: () => T,
  choose?: Chooser,
): [T, T] {
  if (!haveBlas) throw new Error('unreachable');
  removePack(host);
  const own = f();
  installPack(blas as Exclude<typeof blas, { error: string }>, host, choose);
  const before = packStats().blas;
  const pack = f();
  // The pack really ran (a test comparing the WASM kernel with itself could not fail).
  expect(packStats().blas).toBeGreaterThan(before);
  return [pack, own];
}

interface Shape {
  what: string;
  a: number[];
  b: number[];
  transA?: boolean;
  transB?: boolean;
  /** a's or b's batch dimensions are broadcast. */
  broadcast?: boolean;
}

/** The model's matmuls at batch 2 (config A: 89 tokens, width 256, MLP 1024, 4 heads of 64). */
const ROWS = 2 * 89;
const SHAPES: Shape[] = [
  { what: 'dense', a: [ROWS, 256], b: [256, 1024] },
  { what: 'dense, transposed a', a: [256, ROWS], b: [256, 1024], transA: true },
  { what: 'dense, transposed b', a: [ROWS, 256], b: [1024, 256], transB: true },
  { what: 'dense, both transposed', a: [256, ROWS], b: [1024, 256], transA: true, transB: true },
  { what: 'rank-3 activations · shared weight', a: [2, 89, 256], b: [256, 64], broadcast: true },
  { what: 'attention q·kᵀ', a: [8, 89, 64], b: [8, 89, 64], transB: true },
  { what: 'attention p·v', a: [8, 89, 89], b: [8, 89, 64] },
  { what: 'attention pᵀ·dy', a: [8, 89, 89], b: [8, 89, 64], transA: true },
  { what: 'rank-4 heads, broadcast batch', a: [2, 4, 50, 32], b: [1, 4, 32, 89], broadcast: true },
  { what: 'KV-cache chunk q·kᵀ', a: [4, 50, 32], b: [4, 199, 32], transB: true },
  { what: 'action projection', a: [16, 7], b: [7, 256] },
  { what: 'one token', a: [1, 256], b: [256, 256] },
];

/** The pack's Sum over leading axes against the host's own, on `host` (within float32 rounding). */
function checkSum(host: 'wasm' | 'cpu'): void {
  it('sums over leading axes match the host kernel; other reductions are the host kernel’s', () => {
    const rng = new Rng(77);
    const x2 = tf.tensor2d(rng.normals(2048 * 128), [2048, 128]);
    const x4 = tf.tensor4d(rng.normals(3 * 4 * 5 * 6), [3, 4, 5, 6]);
    const cases = (): tf.Tensor[] => [
      tf.sum(x2, 0),
      tf.sum(x2, 0, true),
      tf.sum(x4, [0, 1]),
      tf.sum(x4, [1, 0], true),
      tf.sum(x4, 0),
      tf.sum(x4, -1), // innermost: the host's kernel
      tf.sum(x4, [0, 2]), // not leading: the host's kernel
      tf.sum(tf.cast(x4, 'int32'), 0),
      // a broadcast bias's gradient is such a sum
      tf.grad((b: tf.Tensor) => tf.sum(tf.mul(tf.add(x2, b), x2)))(tf.zeros([128])),
    ];
    removePack(host);
    const own = cases();
    installPack(blas as Exclude<typeof blas, { error: string }>, host);
    const pack = cases();
    pack.forEach((p, i) => {
      expect(p.shape).toEqual(own[i]!.shape);
      expect(p.dtype).toBe(own[i]!.dtype);
      expect(relErr(p, own[i]!)).toBeLessThan(1e-5);
    });
    tf.dispose([x2, x4, ...own, ...pack]);
  });
}

/** Attention shapes the sampler runs: prefix self-attention (no cache), the state token, a flow step. */
const ATTENTION_CASES = [
  {
    what: 'flow step: 50 tokens over 94 cached, 4 heads of 64',
    batch: 1,
    heads: 4,
    w: 256,
    t: 50,
    tc: 94,
    masked: false,
  },
  {
    what: 'prefix: self-attention, no cache, padding masked, batch 2',
    batch: 2,
    heads: 2,
    w: 32,
    t: 9,
    tc: 0,
    masked: true,
  },
  {
    what: 'state token: 1 token over 6 cached, batch 3, masked',
    batch: 3,
    heads: 1,
    w: 8,
    t: 1,
    tc: 6,
    masked: true,
  },
  { what: 'batch 2, 4 heads, cache and own keys', batch: 2, heads: 4, w: 32, t: 5, tc: 7, masked: false },
];

/** The pack's CachedAttention against the same attention in plain tfjs ops, on `host`. */
function checkAttention(host: 'wasm' | 'cpu'): void {
  for (const c of ATTENTION_CASES) {
    it(`cached attention matches plain ops: ${c.what}`, () => {
      const rng = new Rng(c.t * 7 + c.tc);
      const qkv = tf.tensor2d(rng.normals(c.batch * c.t * 3 * c.w), [c.batch * c.t, 3 * c.w]);
      const cache = tf.tensor2d(rng.normals(c.batch * c.tc * 2 * c.w), [c.batch * c.tc, 2 * c.w]);
      let bias: tf.Tensor2D | null = null;
      if (c.masked) {
        const tk = c.tc + c.t;
        const values = new Float32Array(c.batch * tk);
        for (let i = 0; i < values.length; i++) if (i % 3 === 1 && i % tk < tk - 1) values[i] = -1e9;
        bias = tf.tensor2d(values, [c.batch, tk]);
      }
      removePack(host);
      expect(tf.getKernel(CACHED_ATTENTION, host)).toBeUndefined();
      const want = cachedAttentionOps(qkv, cache, bias, c.heads, c.batch);
      installPack(blas as Exclude<typeof blas, { error: string }>, host);
      expect(tf.getKernel(CACHED_ATTENTION, host)).toBeDefined();
      const before = tf.memory().numTensors;
      const got = cachedAttention(qkv, cache, bias, c.heads, c.batch);
      expect(tf.memory().numTensors).toBe(before + 1); // no intermediate left behind
      expect(got.shape).toEqual([c.batch * c.t, c.w]);
      expect(relErr(got, want)).toBeLessThan(1e-5);
      tf.dispose([qkv, cache, got, want, ...(bias ? [bias] : [])]);
    });
  }

  // The training attention at the model's kinds of call: a block over its own tokens (vision: no mask;
  // prefix: a mask), and the expert over the prefix's keys then its own, with padded prefix tokens.
  const TRAIN_CASES = [
    { what: 'own keys, no mask', batch: 3, heads: 2, w: 16, tq: 5, segs: [5], masked: false },
    { what: 'own keys, masked', batch: 2, heads: 4, w: 32, tq: 7, segs: [7], masked: true },
    { what: 'prefix then own keys, masked', batch: 2, heads: 4, w: 32, tq: 6, segs: [9, 6], masked: true },
    { what: 'one head, one query', batch: 1, heads: 1, w: 8, tq: 1, segs: [4, 1], masked: true },
  ];
  for (const c of TRAIN_CASES) {
    it(`training attention matches plain ops, forward and gradients: ${c.what}`, () => {
      const rng = new Rng(c.tq * 13 + c.segs.length);
      const mat = (rows: number) => tf.tensor2d(rng.normals(rows * c.w), [rows, c.w]);
      const q = mat(c.batch * c.tq);
      const segments = c.segs.map((t) => [mat(c.batch * t), mat(c.batch * t)] as [tf.Tensor2D, tf.Tensor2D]);
      const tk = c.segs.reduce((a, b) => a + b, 0);
      let bias: tf.Tensor | null = null;
      if (c.masked) {
        const values = new Float32Array(c.batch * c.tq * tk);
        for (let i = 0; i < values.length; i++) if (i % 5 === 2 && i % tk !== 0) values[i] = -1e9;
        bias = tf.tensor4d(values, [c.batch, 1, c.tq, tk]);
      }
      const scale = 1 / Math.sqrt(c.w / c.heads);
      const dy = mat(c.batch * c.tq);
      const inputs = [q, ...segments.flat()];
      const run = (f: typeof attentionOp) =>
        tf.grads((...xs: tf.Tensor[]) => {
          const segs = c.segs.map((_, i) => [xs[1 + 2 * i], xs[2 + 2 * i]] as [tf.Tensor2D, tf.Tensor2D]);
          return f(xs[0] as tf.Tensor2D, segs, bias, c.heads, c.batch, scale);
        })(inputs, dy);
      removePack(host);
      expect(tf.getKernel(ATTENTION, host)).toBeUndefined();
      const want = attentionOps(q, segments, bias, c.heads, c.batch, scale);
      const wantGrads = run(attentionOps);
      installPack(blas as Exclude<typeof blas, { error: string }>, host);
      const before = tf.memory().numTensors;
      const got = attentionOp(q, segments, bias, c.heads, c.batch, scale);
      expect(tf.memory().numTensors).toBe(before + 1); // no intermediate left behind
      expect(relErr(got, want)).toBeLessThan(1e-5);
      const grads = run(attentionOp);
      expect(grads.length).toBe(inputs.length);
      for (const [i, g] of grads.entries())
        expect(relErr(g, wantGrads[i]!), `gradient ${i}`).toBeLessThan(1e-5);
      tf.dispose([...inputs, dy, got, want, ...grads, ...wantGrads, ...(bias ? [bias] : [])]);
    });
  }

  it('training attention refuses shapes that do not fit, naming them', () => {
    installPack(blas as Exclude<typeof blas, { error: string }>, host);
    const q = tf.zeros([6, 8]) as tf.Tensor2D;
    const kv = tf.zeros([4, 8]) as tf.Tensor2D;
    expect(() => attentionOp(q, [[kv, kv]], tf.zeros([2, 1, 3, 3]), 2, 2, 1)).toThrow(
      /bias is \[2,1,3,3\], expected \[2, 1, 3, 2\]/,
    );
    expect(() => attentionOp(q, [[kv, tf.zeros([4, 6]) as tf.Tensor2D]], null, 2, 2, 1)).toThrow(
      /keys\/values 0 are \[4,8\]\/\[4,6\]/,
    );
    expect(() => attentionOp(q, [[kv, kv]], null, 3, 2, 1)).toThrow(/multiple of 3 heads/);
  });

  it('cached attention refuses shapes that do not fit, naming them', () => {
    installPack(blas as Exclude<typeof blas, { error: string }>, host);
    const qkv = tf.zeros([4, 24]) as tf.Tensor2D;
    expect(() => cachedAttention(qkv, tf.zeros([3, 10]) as tf.Tensor2D, null, 2, 1)).toThrow(
      /cache is \[3,10\], expected \[1·Tc, 16\]/,
    );
    expect(() =>
      cachedAttention(qkv, tf.zeros([2, 16]) as tf.Tensor2D, tf.zeros([1, 5]) as tf.Tensor2D, 2, 1),
    ).toThrow(/bias is \[1,5\], expected \[1, 6\]/);
    expect(() => cachedAttention(qkv, tf.zeros([0, 16]) as tf.Tensor2D, null, 3, 1)).toThrow(
      /not 3 × heads\(3\)/,
    );
  });
}

describe('fused kernels of the native sampler, on a shared memory of its own', () => {
  // x·σ(a·x) (GELU's sigmoid form, SiLU), row softmax and x += a against float64 references, over
  // lengths that are and are not multiples of the 4 SIMD lanes; inputs out to where e^x would overflow.
  const WA = (
    globalThis as unknown as { WebAssembly: { Memory: new (d: object) => { buffer: SharedArrayBuffer } } }
  ).WebAssembly;
  const memory = new WA.Memory({ initial: 16, maximum: 16, shared: true });
  const f = new Float32Array(memory.buffer);

  it('x_sigmoid: relative error < 1e-5 for |x| up to 120, tails untouched', async () => {
    const k = await loadFused(memory);
    if ('error' in k) throw new Error(k.error);
    for (const n of [1, 3, 4, 7, 1001]) {
      for (const a of [1.702, 1]) {
        const rng = new Rng(n);
        const x = Float32Array.from(rng.normals(n, 30));
        x[0] = n > 1 ? -120 : 120;
        f.set(x, 0);
        f.fill(7, 4096, 4096 + n + 8);
        k.x_sigmoid(0, 4096 * 4, n, a);
        for (let i = 0; i < n; i++) {
          const ref = x[i]! / (1 + Math.exp(-a * x[i]!));
          expect(Math.abs(f[4096 + i]! - ref)).toBeLessThanOrEqual(1e-5 * Math.abs(ref) + 1e-30);
        }
        expect(Array.from(f.subarray(4096 + n, 4096 + n + 8))).toEqual(new Array(8).fill(7));
      }
    }
  });

  it('softmax_rows: rows sum to 1 and match a float64 softmax to 1e-5; padding between rows untouched', async () => {
    const k = await loadFused(memory);
    if ('error' in k) throw new Error(k.error);
    for (const [rows, cols, ld] of [
      [1, 1, 1],
      [3, 5, 9],
      [50, 199, 199],
      [7, 64, 70],
    ] as const) {
      const rng = new Rng(rows * cols);
      const x = Float32Array.from(rng.normals(rows * ld, 8));
      f.set(x, 0);
      k.softmax_rows(0, rows, cols, ld);
      for (let r = 0; r < rows; r++) {
        const row = Array.from(x.subarray(r * ld, r * ld + cols));
        const m = Math.max(...row);
        const e = row.map((v) => Math.exp(v - m));
        const sum = e.reduce((p, q) => p + q, 0);
        let total = 0;
        for (let j = 0; j < cols; j++) {
          expect(Math.abs(f[r * ld + j]! - e[j]! / sum)).toBeLessThanOrEqual(1e-5 * (e[j]! / sum) + 1e-12);
          total += f[r * ld + j]!;
        }
        expect(total).toBeCloseTo(1, 5);
        for (let j = cols; j < ld; j++) expect(f[r * ld + j]).toBe(x[r * ld + j]);
      }
    }
  });

  it('add_to: x += a exactly, over whole vectors and a tail', async () => {
    const k = await loadFused(memory);
    if ('error' in k) throw new Error(k.error);
    const rng = new Rng(3);
    const x = Float32Array.from(rng.normals(13));
    const a = Float32Array.from(rng.normals(13));
    f.set(x, 0);
    f.set(a, 64);
    f[13] = 5;
    k.add_to(0, 64 * 4, 13);
    expect(Array.from(f.subarray(0, 13))).toEqual(Array.from(x).map((v, i) => Math.fround(v + a[i]!)));
    expect(f[13]).toBe(5);
  });
});

describe('fused element-wise kernels on wasm', () => {
  // RMSNorm each way and GELU's gradient, one WASM SIMD pass each, against the same functions in tfjs ops; row widths
  // that are and are not multiples of the 4 SIMD lanes, and the model's own sizes.
  const CASES = [
    [37, 24],
    [5, 7],
    [3, 1],
    [1632, 128],
    [4736, 256],
  ] as const;
  beforeAll(async () => {
    await setupBackend({ backend: 'wasm', native: false });
  });
  afterAll(() => removeFused());

  it('install on wasm and leave with the pack', async () => {
    expect(await installFused()).toBeNull();
    expect(fusedActive()).toBe(true);
    removePack('wasm');
    expect(fusedActive()).toBe(false);
  });

  for (const [rows, cols] of CASES) {
    it(`rmsNorm and gelu match tfjs ops, forward and gradients: [${rows}, ${cols}]`, async () => {
      const rng = new Rng(rows + cols);
      const x = tf.tensor2d(rng.normals(rows * cols, 2), [rows, cols]);
      const scale = tf.tensor1d(rng.normals(cols, 0.3));
      const dy = tf.tensor2d(rng.normals(rows * cols), [rows, cols]);
      const run = () => {
        const norm = tf.grads((a: tf.Tensor, s: tf.Tensor) => rmsNorm(a as tf.Tensor2D, s))([x, scale], dy);
        // The sampler's normalisation: no scale, a gain of exactly 1.
        const unit = fusedActive()
          ? (tf.engine().runKernel(RMS_NORM, { x }) as tf.Tensor[])
          : [tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.mul(x, x), -1, true), 1e-6))), tf.scalar(0)];
        tf.dispose(unit[1]!);
        return [rmsNorm(x, scale), ...norm, gelu(x), tf.grad(gelu)(x, dy), unit[0]!];
      };
      removeFused();
      const want = run();
      expect(await installFused()).toBeNull();
      const before = tf.memory().numTensors;
      const got = tf.tidy(() => [rmsNorm(x, scale), gelu(x)]);
      expect(tf.memory().numTensors).toBe(before + 2); // no intermediate left behind
      tf.dispose(got);
      const fused = run();
      for (const [i, g] of fused.entries()) expect(relErr(g, want[i]!), `output ${i}`).toBeLessThan(1e-5);
      tf.dispose([x, scale, dy, ...want, ...fused]);
    });
  }

  // [batch, heads, width, Tq, T0, T1, masked]: two segments with a bias (the action expert's), one
  // without (a prefix layer's), odd sizes, and B's prefix at batch 2.
  const FUSED_ATTENTION_CASES = [
    [2, 4, 32, 6, 9, 6, true],
    [2, 4, 32, 6, 9, 0, false],
    [1, 3, 24, 5, 7, 3, true],
    [2, 4, 256, 148, 148, 0, true],
  ] as const;
  for (const [batch, heads, w, tq, t0, t1, masked] of FUSED_ATTENTION_CASES) {
    it.runIf(haveBlas)(
      `the training attention through the fused kernels (bias, softmax in place per head; its gradient) matches plain ops: B ${batch}, ${heads} heads, W ${w}, Tq ${tq}, keys ${t0}+${t1}${masked ? ', masked' : ''}`,
      async () => {
        const rng = new Rng(21 + tq);
        const mat = (rows: number) => tf.tensor2d(rng.normals(rows * w), [rows, w]);
        const q = mat(batch * tq);
        const segments: Array<[tf.Tensor2D, tf.Tensor2D]> = [[mat(batch * t0), mat(batch * t0)]];
        if (t1 > 0) segments.push([mat(batch * t1), mat(batch * t1)]);
        const values = new Float32Array(batch * tq * (t0 + t1));
        if (masked) for (let i = 0; i < values.length; i++) if (i % 7 === 3) values[i] = -1e9;
        const bias = masked ? tf.tensor4d(values, [batch, 1, tq, t0 + t1]) : null;
        const dy = mat(batch * tq);
        const inputs = [q, ...segments.flat()];
        const call = (f: typeof attentionOp, xs: tf.Tensor[]) =>
          f(
            xs[0] as tf.Tensor2D,
            segments.map((_, i) => [xs[1 + 2 * i], xs[2 + 2 * i]] as [tf.Tensor2D, tf.Tensor2D]),
            bias,
            heads,
            batch,
            0.25,
          );
        const run = (f: typeof attentionOp) => ({
          out: call(f, inputs),
          grads: tf.grads((...xs: tf.Tensor[]) => call(f, xs))(inputs, dy),
        });
        removePack('wasm');
        const want = run(attentionOps);
        installPack(blas as Exclude<typeof blas, { error: string }>, 'wasm');
        expect(await installFused()).toBeNull();
        const got = run(attentionOp);
        expect(relErr(got.out, want.out), 'output').toBeLessThan(1e-5);
        for (const [i, g] of got.grads.entries())
          expect(relErr(g, want.grads[i]!), `gradient ${i}`).toBeLessThan(1e-5);
        removePack('wasm');
        tf.dispose([...inputs, dy, want.out, got.out, ...want.grads, ...got.grads]);
        if (bias) bias.dispose();
      },
    );
  }

  it('refuses sizes that do not fit (they would read past the tensor), naming the input', async () => {
    expect(await installFused()).toBeNull();
    const x = tf.zeros([4, 6]) as tf.Tensor2D;
    expect(() => rmsNorm(x, tf.zeros([5]))).toThrow(
      /VlaRmsNorm: scale is \[5\], expected 6 values \(x's last axis, \[4,6\]\)/,
    );
    expect(() => tf.engine().runKernel(GELU_GRAD, { x, s: tf.zeros([4, 5]), dy: x })).toThrow(
      /VlaGeluGrad: s is \[4,5\], expected 24 values/,
    );
    removeFused();
    // The same attention shapes are refused on the plain-op path as through the kernels.
    expect(() => attentionOps(x, [[x, tf.zeros([4, 5]) as tf.Tensor2D]], null, 2, 2, 1)).toThrow(
      /keys\/values 0 are \[4,6\]\/\[4,5\]/,
    );
  });

  it('refuses other dtypes, naming the input', async () => {
    expect(await installFused()).toBeNull();
    const s = tf.tensor1d([0.5, 0.5]);
    expect(() => tf.engine().runKernel(GELU_GRAD, { x: tf.tensor1d([1, 2], 'int32'), s, dy: s })).toThrow(
      /VlaGeluGrad: x is int32, expected float32/,
    );
  });
});

describe.runIf(haveBlas)('native kernel pack on wasm: matches the WASM kernels', () => {
  beforeAll(async () => {
    await setupBackend({ backend: 'wasm', native: false });
  });
  afterAll(() => removePack('wasm'));

  for (const s of SHAPES) {
    it(`matMul forward: ${s.what}`, () => {
      const a = tf.randomNormal(s.a, 0, 1, 'float32', 1);
      const b = tf.randomNormal(s.b, 0, 1, 'float32', 2);
      const [pack, own] = bothWays('wasm', () => tf.matMul(a, b, s.transA, s.transB));
      expect(relErr(pack, own)).toBeLessThan(1e-5);
      tf.dispose([a, b, pack, own]);
    });
  }

  // tfjs's own BatchMatMul gradient does not reduce over broadcast batch dimensions (it fails the same
  // way without the pack), so gradients are checked on the shapes without broadcasting.
  for (const s of SHAPES.filter((x) => x.what !== 'one token' && !x.broadcast)) {
    it(`matMul gradients: ${s.what}`, () => {
      const a = tf.randomNormal(s.a, 0, 1, 'float32', 3);
      const b = tf.randomNormal(s.b, 0, 1, 'float32', 4);
      const out = tf.matMul(a, b, s.transA, s.transB);
      const w = tf.randomNormal(out.shape, 0, 1, 'float32', 5);
      const f = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y, s.transA, s.transB), w));
      const [pack, own] = bothWays('wasm', () => tf.grads(f)([a, b]));
      expect(relErr(pack[0]!, own[0]!)).toBeLessThan(1e-5);
      expect(relErr(pack[1]!, own[1]!)).toBeLessThan(1e-5);
      tf.dispose([a, b, out, w, ...pack, ...own]);
    });
  }

  const activations = ['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'sigmoid'] as const;
  for (const activation of activations) {
    it(`fused matMul + bias + ${activation}, forward and gradients`, () => {
      const a = tf.randomNormal([ROWS, 256], 0, 1, 'float32', 6);
      const b = tf.randomNormal([256, 128], 0, 0.1, 'float32', 7);
      const bias = tf.randomNormal([128], 0, 1, 'float32', 8);
      const run = () => tf.fused.matMul({ a, b, bias, activation, leakyreluAlpha: 0.1 }) as tf.Tensor;
      const [pack, own] = bothWays('wasm', run);
      expect(relErr(pack, own)).toBeLessThan(1e-5);
      const loss = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
        tf.sum(tf.square(tf.fused.matMul({ a: x, b: y, bias: z, activation, leakyreluAlpha: 0.1 })));
      const [gPack, gOwn] = bothWays('wasm', () => tf.grads(loss)([a, b, bias]));
      for (let i = 0; i < 3; i++) expect(relErr(gPack[i]!, gOwn[i]!)).toBeLessThan(1e-5);
      tf.dispose([a, b, bias, pack, own, ...gPack, ...gOwn]);
    });
  }

  it('fused matMul with prelu weights and transposes', () => {
    const a = tf.randomNormal([256, ROWS], 0, 1, 'float32', 9);
    const b = tf.randomNormal([64, 256], 0, 0.1, 'float32', 10);
    const alpha = tf.randomUniform([64], 0, 0.5, 'float32', 11);
    const [pack, own] = bothWays(
      'wasm',
      () =>
        tf.fused.matMul({
          a,
          b,
          transposeA: true,
          transposeB: true,
          activation: 'prelu',
          preluActivationWeights: alpha,
        }) as tf.Tensor,
    );
    expect(relErr(pack, own)).toBeLessThan(1e-5);
    tf.dispose([a, b, alpha, pack, own]);
  });

  it('hands large batches of tiny products back to the WASM kernel, with the same results', () => {
    installPack(blas as Exclude<typeof blas, { error: string }>, 'wasm');
    const a = tf.randomNormal([512, 2, 2], 0, 1, 'float32', 14);
    const before = packStats();
    const got = tf.matMul(a, a);
    expect(packStats().fallback).toBe(before.fallback + 1);
    expect(packStats().blas).toBe(before.blas);
    const [pack, own] = bothWays(
      'wasm',
      () => tf.matMul(a, a),
      () => true,
    );
    expect(relErr(pack, own)).toBeLessThan(1e-5);
    expect(relErr(got, own)).toBe(0);
  });

  it('tf.clone shares memory on WASM (as on cpu) and outlives the original', () => {
    installPack(blas as Exclude<typeof blas, { error: string }>, 'wasm');
    const x = tf.tensor1d([1, 2, 3]);
    const buffers = tf.memory().numDataBuffers;
    const y = tf.clone(x);
    expect(tf.memory().numDataBuffers).toBe(buffers);
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3]);
    const v = tf.variable(y);
    v.assign(tf.tensor1d([4, 5, 6]));
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3]);
    expect(Array.from(v.dataSync())).toEqual([4, 5, 6]);
    tf.dispose([y, v]);
  });

  it('a cast to the same dtype shares memory on WASM; a cast to another converts', () => {
    installPack(blas as Exclude<typeof blas, { error: string }>, 'wasm');
    const x = tf.tensor1d([1.5, -2, 3]);
    const buffers = tf.memory().numDataBuffers;
    const same = tf.cast(x, 'float32');
    expect(tf.memory().numDataBuffers).toBe(buffers);
    x.dispose();
    expect(Array.from(same.dataSync())).toEqual([1.5, -2, 3]);
    const ints = tf.cast(same, 'int32');
    expect(ints.dtype).toBe('int32');
    expect(Array.from(ints.dataSync())).toEqual([1, -2, 3]);
    const bools = tf.cast(tf.tensor1d([0, 2, 0], 'int32'), 'bool');
    expect(Array.from(bools.dataSync())).toEqual([0, 1, 0]);
    tf.dispose([same, ints, bools]);
  });

  it('keeps tensor memory flat (no leaked intermediates)', () => {
    installPack(blas as Exclude<typeof blas, { error: string }>, 'wasm');
    const a = tf.randomNormal([ROWS, 256]);
    const b = tf.randomNormal([256, 128]);
    const bias = tf.randomNormal([128]);
    const before = tf.memory().numTensors;
    const beforeBytes = tf.memory().numBytes;
    for (let i = 0; i < 5; i++) {
      tf.tidy(() => {
        tf.matMul(a, b);
        tf.fused.matMul({ a, b, bias, activation: 'relu' });
        tf.grads((x: tf.Tensor) => tf.sum(tf.matMul(x, b)))([a]);
      });
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.memory().numBytes).toBe(beforeBytes);
    tf.dispose([a, b, bias]);
  });

  it('a zero-inner-dimension product is zeros (the WASM kernel returns uninitialised memory there)', () => {
    // Freed memory full of ones is what the output is likely to be allocated from.
    const zeroInner = () => {
      tf.ones([3, 4]).dispose();
      return tf.matMul(tf.zeros([3, 0]), tf.zeros([0, 4]));
    };
    const [pack] = bothWays('wasm', zeroInner);
    expect(Array.from(pack.dataSync())).toEqual(new Array(12).fill(0));
    const [empty] = bothWays('wasm', () => tf.matMul(tf.zeros([0, 3]), tf.zeros([3, 4])));
    expect(empty.shape).toEqual([0, 4]);
  });

  /** Runs `f` with WASM's own Slice/SplitV, then with the pack's; the results must be bit-identical. */
  function slicesBothWays(f: () => tf.Tensor[]): void {
    removePack('wasm');
    const wasmSlice = tf.getKernel('Slice', 'wasm')!.kernelFunc;
    const own = f();
    installPack(blas as Exclude<typeof blas, { error: string }>, 'wasm');
    // The pack's kernels are in place (a test comparing the WASM kernel with itself could not fail).
    expect(tf.getKernel('Slice', 'wasm')!.kernelFunc).not.toBe(wasmSlice);
    const pack = f();
    expect(pack.length).toBe(own.length);
    pack.forEach((p, i) => {
      expect(p.shape).toEqual(own[i]!.shape);
      expect(p.dtype).toBe(own[i]!.dtype);
      expect(Array.from(p.dataSync())).toEqual(Array.from(own[i]!.dataSync()));
    });
    tf.dispose([...own, ...pack]);
  }

  const counting = (shape: number[], dtype: 'float32' | 'int32' | 'bool' = 'float32') =>
    tf.tensor(
      Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) =>
        dtype === 'bool' ? Number(i % 3 === 0) : dtype === 'int32' ? i : i * 0.5,
      ),
      shape,
      dtype,
    );

  it('slices match the WASM kernel: contiguous, strided, every rank, int32, bool and empty', () => {
    slicesBothWays(() => [
      tf.slice(counting([12, 51, 64]), [4, 0, 0], [4, 51, 64]), // outer rows: one block
      tf.slice(counting([7, 9]), [2, 3], [4, 5]), // rows of a matrix
      tf.slice(counting([3, 4, 5, 6]), [1, 1, 2, 0], [2, 2, 2, 6]), // whole inner axis, cut above
      tf.slice(counting([3, 4, 5, 6]), [0, 1, 1, 2], [3, 3, 3, 3]), // cut innermost: short runs
      tf.slice(counting([2, 3, 4, 5, 6]), [1, 0, 1, 2, 1], [1, 3, 2, 2, 4]), // rank 5
      tf.slice(counting([10]), [3], [5]),
      tf.slice(counting([4, 40], 'int32'), [1, 7], [2, 30]),
      tf.slice(counting([4, 6], 'bool'), [1, 1], [2, 3]), // handed back to WASM
      tf.slice(counting([4, 6]), [2, 0], [0, 6]),
      tf.slice(counting([5, 6]), [1, 2], [-1, -1]),
    ]);
  });

  it('splits match the WASM kernel, and a concat gradient through them is unchanged', () => {
    slicesBothWays(() => [
      ...tf.split(counting([128, 3 * 64]), [64, 100, 28], 1),
      ...tf.split(counting([6, 5, 4]), 3, 0),
      ...tf.split(counting([2, 6, 4]), [1, 5], 1),
      ...tf.split(counting([4, 6], 'int32'), 2, 1),
      tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.concat([a, b], 1), counting([3, 9]))))([
        counting([3, 4]),
        counting([3, 5]),
      ])[1]!,
    ]);
  });

  checkAttention('wasm');
  checkSum('wasm');
});

describe.runIf(haveBlas)('native kernel pack on cpu', () => {
  beforeAll(async () => {
    await setupBackend({ backend: 'cpu', native: false });
  });
  afterAll(async () => {
    removePack('cpu');
    await setupBackend({ backend: 'wasm', native: false });
  });

  checkAttention('cpu');
  checkSum('cpu');

  for (const s of [SHAPES[1]!, SHAPES[5]!, SHAPES[6]!]) {
    it(`matches the cpu kernel: ${s.what}, forward and gradients`, () => {
      const a = tf.randomNormal(s.a, 0, 1, 'float32', 12);
      const b = tf.randomNormal(s.b, 0, 1, 'float32', 13);
      const [pack, own] = bothWays('cpu', () => tf.matMul(a, b, s.transA, s.transB));
      expect(relErr(pack, own)).toBeLessThan(1e-5);
      const f = (x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.square(tf.matMul(x, y, s.transA, s.transB)));
      const [gPack, gOwn] = bothWays('cpu', () => tf.grads(f)([a, b]));
      for (let i = 0; i < 2; i++) expect(relErr(gPack[i]!, gOwn[i]!)).toBeLessThan(1e-5);
    });
  }

  it('hands int32 products back to the cpu kernel', () => {
    installPack(blas as Exclude<typeof blas, { error: string }>, 'cpu');
    const before = packStats().fallback;
    const c = tf.matMul(tf.tensor2d([[1, 2]], [1, 2], 'int32'), tf.tensor2d([[3], [4]], [2, 1], 'int32'));
    expect(c.dtype).toBe('int32');
    expect(Array.from(c.dataSync())).toEqual([11]);
    expect(packStats().fallback).toBe(before + 1);
  });
});

/** Loads packages for real, except those named, which fail as a missing or broken install does. */
function loaderWithout(missing: Record<string, 'missing' | 'broken' | object>) {
  return (pkg: string) => {
    const how = missing[pkg];
    if (how === 'missing')
      throw Object.assign(new Error(`Cannot find module '${pkg}'`), { code: 'MODULE_NOT_FOUND' });
    if (how === 'broken')
      throw new Error('libopenblas.so.0: cannot open shared object file: No such file or directory');
    if (how !== undefined) return how;
    return require(pkg);
  };
}

describe('native kernel pack: set-up and fallback', () => {
  afterAll(async () => {
    await setupBackend({ backend: 'wasm', native: false });
  });

  it.runIf(haveBlas)('is on by default on wasm, and the backend line says so', async () => {
    const info = await setupBackend({ backend: 'wasm' });
    expect(info.native?.library).toBe('openblas');
    expect(describeBackend(info)).toMatch(
      /^backend: wasm \(.*\) · kernels wasm\+blas \(openblas( \w+)?, \d+ threads?\) \+ fused norm\/gelu · tfjs 4\.22\.0/,
    );
    const before = packStats().blas;
    tf.matMul(tf.ones([64, 64]), tf.ones([64, 64]), false, true).dispose();
    expect(packStats().blas).toBe(before + 1);
  });

  it.runIf(haveBlas)(
    'loads in worker threads too, after this thread has it (nblas is not context-aware)',
    async () => {
      const { startWorker } = await import('../../src/threads.js');
      const worker = startWorker(new URL('./blas-worker.ts', import.meta.url), { workerData: {} });
      const [msg] = await once(worker, 'message');
      await worker.terminate();
      expect(msg).toMatchObject({ library: 'openblas', product: [5, 11, 11, 25] });
    },
  );

  it.runIf(haveBlas)(
    'a worker setting up its backend after this thread did gets the kernels too (the policy server’s case)',
    async () => {
      await setupBackend({ backend: 'wasm' });
      const { startWorker } = await import('../../src/threads.js');
      const worker = startWorker(new URL('./backend-worker.ts', import.meta.url), { workerData: {} });
      const [line] = await once(worker, 'message');
      await worker.terminate();
      expect(line).toContain('kernels wasm+blas (openblas');
    },
  );

  it.runIf(haveBlas)(
    'a worker that loads OpenBLAS first gets one thread, set in the real environment',
    () => {
      const env = { ...process.env };
      for (const k of ['OPENBLAS_NUM_THREADS', 'GOTO_NUM_THREADS', 'OMP_NUM_THREADS', 'OPENBLAS_CORETYPE'])
        delete env[k];
      const out = execFileSync(
        process.execPath,
        ['--import', 'tsx', fileURLToPath(new URL('./blas-first-in-worker.ts', import.meta.url))],
        { env, encoding: 'utf8' },
      );
      // A worker's process.env is a copy: only the main thread's setting reaches OpenBLAS's getenv.
      const core = blasCoreFor(existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '');
      expect(JSON.parse(out.trim().split('\n').at(-1)!)).toEqual({
        library: 'openblas',
        product: [5, 11, 11, 25],
        threads: 1,
        env: '1',
        core: process.arch === 'x64' ? core : null,
        coreEnv: process.arch === 'x64' ? core : null,
      });
    },
  );

  it('asks OpenBLAS for its AVX-512 kernels on every CPU that has them (it misreads newer ones), and only there', () => {
    const info = (vendor: string, flags: string) =>
      `processor\t: 0\nvendor_id\t: ${vendor}\nflags\t\t: ${flags}\n\nprocessor\t: 1\n`;
    const avx512 = 'fpu sse avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16';
    expect(blasCoreFor(info('AuthenticAMD', avx512))).toBe('SkylakeX');
    // Zen 2/3: AVX2 only, which OpenBLAS recognises.
    expect(blasCoreFor(info('AuthenticAMD', 'fpu sse avx avx2 fma'))).toBeNull();
    // A subset is not enough for the SkylakeX kernels.
    expect(blasCoreFor(info('AuthenticAMD', 'avx2 avx512f avx512cd'))).toBeNull();
    // Intel too: OpenBLAS 0.3.21 ran a VM's Emerald Rapids Xeon on its SSE3 kernels.
    expect(blasCoreFor(info('GenuineIntel', avx512))).toBe('SkylakeX');
    expect(blasCoreFor('')).toBeNull();
    // A family set by hand is never overridden; the backend line says what it leaves unused.
    expect(blasCoreNote(info('AuthenticAMD', avx512), 'Haswell')).toBe(
      "OPENBLAS_CORETYPE=Haswell leaves this CPU's AVX-512 unused (SkylakeX kernels: ~1.9× the sgemm speed on an AMD EPYC)",
    );
    expect(blasCoreNote(info('GenuineIntel', avx512), 'ZEN')).toContain('OPENBLAS_CORETYPE=ZEN leaves');
    expect(blasCoreNote(info('AuthenticAMD', avx512), 'SkylakeX')).toBeNull();
    expect(blasCoreNote(info('AuthenticAMD', 'avx avx2 fma'), 'Haswell')).toBeNull();
    expect(blasCoreNote(info('AuthenticAMD', avx512), undefined)).toBeNull();
  });

  it('native: false keeps the WASM kernels and says so', async () => {
    const info = await setupBackend({ backend: 'wasm', native: false });
    expect(info.native).toBeNull();
    expect(describeBackend(info)).toContain('kernels wasm (blas off: --no-native or VLA_NATIVE=0)');
    const before = packStats();
    tf.matMul(tf.ones([64, 64]), tf.ones([64, 64])).dispose();
    expect(packStats()).toEqual(before);
  });

  it('VLA_NATIVE=0 turns it off when no option is given', async () => {
    process.env.VLA_NATIVE = '0';
    try {
      expect((await setupBackend({ backend: 'wasm' })).native).toBeNull();
    } finally {
      delete process.env.VLA_NATIVE;
    }
  });

  it('a missing binding falls back to WASM with a one-line reason', async () => {
    const info = await setupBackend({ backend: 'wasm', load: loaderWithout({ nblas: 'missing' }) });
    expect(info.name).toBe('wasm');
    expect(info.native).toBeNull();
    expect(info.nativeOff).toBe('nblas not installed');
    expect(describeBackend(info)).toContain('kernels wasm (blas off: nblas not installed)');
    const c = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]]));
    expect(Array.from(c.dataSync())).toEqual([11]);
  });

  it('a binding whose OpenBLAS cannot load falls back the same way', async () => {
    const info = await setupBackend({ backend: 'wasm', load: loaderWithout({ nblas: 'broken' }) });
    expect(info.native).toBeNull();
    expect(info.nativeOff).toBe(
      'nblas: libopenblas.so.0: cannot open shared object file: No such file or directory',
    );
    expect(info.nativeOff).not.toContain('\n');
  });

  it('a binding that computes wrong answers is refused', () => {
    const bad = loadBlas({ load: loaderWithout({ nblas: { sgemm: () => undefined } }) });
    expect(bad).toEqual({ error: 'nblas: sgemm self-check gave 0,0,0,0, expected 5,11,11,25' });
    expect(loadBlas({ load: loaderWithout({ nblas: {} }) })).toEqual({
      error: 'nblas has no sgemm (not a CBLAS binding?)',
    });
  });

  it('a thread count that is not a whole number is an error naming where it came from', async () => {
    process.env.VLA_WASM_THREADS = 'two';
    try {
      await expect(setupBackend({ backend: 'wasm', native: false, load: loaderWithout({}) })).rejects.toThrow(
        'VLA_WASM_THREADS: expected a whole number of threads ≥ 1, got "two"',
      );
    } finally {
      delete process.env.VLA_WASM_THREADS;
    }
  });
});

// The optional oneDNN addon (packages/onednn, package `vla-onednn`): fp32 and bf16 products against a
// float64 reference, the edge cases, the fp32→bf16 rounding, and two worker threads at once.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';

type OneDnn = typeof import('../../packages/onednn/index.js');

const require = createRequire(import.meta.url);
let dnn: OneDnn | null = null;
let dnnPath = '';
try {
  dnnPath = require.resolve('vla-onednn');
  dnn = require('vla-onednn') as OneDnn;
} catch (e) {
  console.warn(
    `vla-onednn tests skipped: ${(e as Error).message.split('\n')[0]} (the addon builds at npm install when libdnnl-dev is installed)`,
  );
}

const NO_TRANS = 111;
const TRANS = 112;

/** Deterministic uniform numbers in [-1, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** bf16 bits of a float32 (round to nearest even; NaNs quieted), as the addon's toBf16. */
function bf16Bits(x: number): number {
  f32[0] = x;
  const u = u32[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
/** x rounded to bf16, back as a number. */
function bf16(x: number): number {
  u32[0] = bf16Bits(x) << 16;
  return f32[0]!;
}

interface Case {
  m: number;
  n: number;
  k: number;
  ta: boolean;
  tb: boolean;
  alpha: number;
  beta: number;
  /** Extra columns beyond the row length in A, B and C (their leading dimensions). */
  pad: [number, number, number];
  /** Offset (in elements) of A, B and C inside larger buffers: typed-array views with a byteOffset. */
  offset?: number;
  /** Fill C with NaN (with beta = 0 it must be overwritten, as BLAS does). */
  nanC?: boolean;
}

interface Problem {
  c: Case;
  a: Float32Array;
  lda: number;
  b: Float32Array;
  ldb: number;
  c0: Float32Array;
  ldc: number;
}

function problem(c: Case, seed: number): Problem {
  const r = rng(seed);
  // BLAS wants a leading dimension ≥ 1 even for an empty row (K = 0).
  const lda = Math.max(1, c.ta ? c.m : c.k) + c.pad[0];
  const ldb = Math.max(1, c.tb ? c.k : c.n) + c.pad[1];
  const ldc = c.n + c.pad[2];
  const off = c.offset ?? 0;
  const view = (len: number, fill: () => number) => {
    const buf = Float32Array.from({ length: len + off }, fill);
    return off ? buf.subarray(off) : buf;
  };
  const a = view((c.ta ? c.k : c.m) * lda, r);
  const b = view((c.tb ? c.n : c.k) * ldb, r);
  const c0 = view(c.m * ldc, c.nanC ? () => Number.NaN : r);
  return { c, a, lda, b, ldb, c0, ldc };
}

/**
 * float64 reference: C = alpha·op(A)·op(B) + beta·C0 (row-major, m×n packed), and per entry the scale
 * |alpha|·Σ_k|a_ik·b_kj| + |beta·c0_ij| that rounding errors are bounded by. `round` maps the inputs
 * (identity, or rounding to bf16).
 */
function reference(p: Problem, round: (x: number) => number): { ref: Float64Array; scale: Float64Array } {
  const { m, n, k, ta, tb, alpha, beta } = p.c;
  const ref = new Float64Array(m * n);
  const scale = new Float64Array(m * n);
  const A = Float64Array.from(p.a, round);
  const B = Float64Array.from(p.b, round);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      let sa = 0;
      for (let l = 0; l < k; l++) {
        const x = (ta ? A[l * p.lda + i] : A[i * p.lda + l])! * (tb ? B[j * p.ldb + l] : B[l * p.ldb + j])!;
        s += x;
        sa += Math.abs(x);
      }
      const c0 = beta === 0 ? 0 : p.c0[i * p.ldc + j]!;
      ref[i * n + j] = alpha * s + beta * c0;
      scale[i * n + j] = Math.abs(alpha) * sa + Math.abs(beta * c0);
    }
  }
  return { ref, scale };
}

interface Errors {
  /** max_ij |C − ref| / (|alpha|·Σ_k|a·b| + |beta·c0|): the quantity rounding error is bounded by. */
  elem: number;
  /** max_ij |C − ref| / max_ij |ref|. */
  norm: number;
  /** Padding columns of C (beyond n, up to ldc) left untouched. */
  padOk: boolean;
}

function errors(p: Problem, got: Float32Array, { ref, scale }: ReturnType<typeof reference>): Errors {
  const { m, n } = p.c;
  let elem = 0;
  let diff = 0;
  let max = 0;
  let padOk = true;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const d = Math.abs(got[i * p.ldc + j]! - ref[i * n + j]!);
      elem = Math.max(elem, d === 0 ? 0 : d / scale[i * n + j]!); // NaN (or d > 0 with scale 0) → fails
      if (Number.isNaN(d)) elem = Number.POSITIVE_INFINITY;
      diff = Math.max(diff, d);
      max = Math.max(max, Math.abs(ref[i * n + j]!));
    }
    for (let j = n; j < p.ldc; j++) {
      if (!Object.is(got[i * p.ldc + j], p.c0[i * p.ldc + j])) padOk = false;
    }
  }
  return { elem, norm: max === 0 ? diff : diff / max, padOk };
}

function run(fn: OneDnn['sgemm'], p: Problem): Float32Array {
  const { m, n, k, ta, tb, alpha, beta } = p.c;
  const c = p.c0.slice();
  fn(ta ? TRANS : NO_TRANS, tb ? TRANS : NO_TRANS, m, n, k, alpha, p.a, p.lda, p.b, p.ldb, beta, c, p.ldc);
  return c;
}

const label = (c: Case) =>
  `${c.m}x${c.n}x${c.k} ${c.ta ? 'T' : 'N'}${c.tb ? 'T' : 'N'} α=${c.alpha} β=${c.beta}` +
  (c.pad.some((x) => x > 0) ? ` ld+${c.pad.join('/')}` : '') +
  (c.offset ? ' view' : '') +
  (c.nanC ? ' C=NaN' : '');

const CASES: Case[] = [
  { m: 1, n: 1, k: 1, ta: false, tb: false, alpha: 1, beta: 0, pad: [0, 0, 0] },
  { m: 7, n: 13, k: 5, ta: false, tb: false, alpha: 1, beta: 0, pad: [0, 0, 0] },
  // all four transpose combinations on one odd shape, padded, alpha/beta ≠ 1/0
  ...[false, true].flatMap((ta) =>
    [false, true].map(
      (tb) => ({ m: 19, n: 23, k: 31, ta, tb, alpha: 0.75, beta: -0.5, pad: [2, 3, 1] }) as Case,
    ),
  ),
  { m: 33, n: 17, k: 65, ta: true, tb: false, alpha: 1, beta: 1, pad: [0, 0, 0], offset: 3 },
  { m: 37, n: 41, k: 43, ta: true, tb: true, alpha: -1.5, beta: 0.25, pad: [3, 5, 7] },
  { m: 50, n: 768, k: 128, ta: false, tb: true, alpha: 1, beta: 0, pad: [0, 0, 0], nanC: true },
  { m: 128, n: 96, k: 50, ta: true, tb: false, alpha: 1, beta: 1, pad: [0, 0, 0] },
  { m: 129, n: 65, k: 1000, ta: false, tb: true, alpha: 0.5, beta: 2, pad: [1, 2, 3] },
  // K = 0 and alpha = 0: C = beta·C (beta = 0 clears it, NaN included)
  { m: 5, n: 6, k: 0, ta: false, tb: false, alpha: 1, beta: 0.5, pad: [0, 0, 2] },
  { m: 5, n: 6, k: 0, ta: true, tb: true, alpha: 1, beta: 0, pad: [0, 0, 2], nanC: true },
  { m: 4, n: 9, k: 8, ta: false, tb: false, alpha: 0, beta: -2, pad: [0, 0, 1] },
];

const FP32_TOL = 1e-5;
const BF16_TOL = 1e-2;
/** bf16 against the float64 product of the bf16-rounded inputs: only fp32 accumulation fits under this. */
const ACC_TOL = 1e-5;

describe.skipIf(dnn === null)('vla-onednn', () => {
  const d = dnn!;

  it('reports its version, CPU bf16 support and ISA', () => {
    const info = d.info();
    console.log('vla-onednn', JSON.stringify(info));
    expect(info.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(typeof info.isa).toBe('string');
    expect(info.bf16Hardware).toBe(info.avx512Bf16 || info.amxBf16);
    expect(d.getNumThreads()).toBeGreaterThanOrEqual(1);
  });

  it('sgemm and sgemmBf16 match a float64 reference (elementwise, relative to Σ|a·b|)', () => {
    const rows: string[] = [];
    const fail: string[] = [];
    CASES.forEach((c, idx) => {
      const p = problem(c, 1000 + idx);
      const exact = reference(p, (x) => x);
      const rounded = reference(p, bf16);
      const e32 = errors(p, run(d.sgemm, p), exact);
      const cb = run(d.sgemmBf16, p);
      const e16 = errors(p, cb, exact);
      const acc = errors(p, cb, rounded);
      const name = label(c);
      rows.push(
        `${name.padEnd(40)} ${e32.elem.toExponential(1).padStart(8)} ${e32.norm.toExponential(1).padStart(8)}` +
          ` ${e16.elem.toExponential(1).padStart(8)} ${e16.norm.toExponential(1).padStart(8)} ${acc.elem.toExponential(1).padStart(8)}`,
      );
      if (!(e32.elem <= FP32_TOL)) fail.push(`${name}: fp32 ${e32.elem}`);
      if (!(e16.elem <= BF16_TOL)) fail.push(`${name}: bf16 ${e16.elem}`);
      if (!(acc.elem <= ACC_TOL)) fail.push(`${name}: bf16 vs rounded inputs ${acc.elem}`);
      if (!e32.padOk || !e16.padOk) fail.push(`${name}: padding of C written`);
    });
    console.log(
      [
        `${'shape'.padEnd(40)} ${'fp32'.padStart(8)} ${'fp32 nw'.padStart(8)} ${'bf16'.padStart(8)} ${'bf16 nw'.padStart(8)} ${'bf16/rnd'.padStart(8)}`,
        ...rows,
        'columns: max |C−ref|/(|α|Σ|a·b|+|β·c|) (asserted: fp32 ≤ 1e-5, bf16 ≤ 1e-2); nw: max|C−ref|/max|ref|;',
        'bf16/rnd: bf16 against float64 of the bf16-rounded inputs (asserted ≤ 1e-5: fp32 accumulation)',
      ].join('\n'),
    );
    expect(fail).toEqual([]);
  });

  it("sgemmBf16B (B rounded once by toBf16) gives sgemmBf16's products bit for bit", () => {
    CASES.forEach((c, idx) => {
      const p = problem(c, 2000 + idx);
      const b16 = d.toBf16(p.b);
      const got = p.c0.slice();
      d.sgemmBf16B(
        c.ta ? TRANS : NO_TRANS,
        c.tb ? TRANS : NO_TRANS,
        c.m,
        c.n,
        c.k,
        c.alpha,
        p.a,
        p.lda,
        b16,
        p.ldb,
        c.beta,
        got,
        p.ldc,
      );
      const want = run(d.sgemmBf16, p);
      expect(new Uint32Array(got.buffer), label(c)).toEqual(new Uint32Array(want.buffer));
    });
    const a = new Float32Array(4);
    expect(() => d.sgemmBf16B(NO_TRANS, NO_TRANS, 2, 2, 2, 1, a, 2, a as never, 2, 0, a, 2)).toThrow(
      /B a Uint16Array of bf16 bits/,
    );
    expect(() =>
      d.sgemmBf16B(NO_TRANS, NO_TRANS, 2, 2, 3, 1, new Float32Array(6), 3, new Uint16Array(4), 2, 0, a, 2),
    ).toThrow(/too small/);
  });

  it('takes nblas sgemm arguments: same product as nblas on the same call', () => {
    let nblas: { sgemm: OneDnn['sgemm'] };
    try {
      nblas = require('nblas');
    } catch {
      console.warn('nblas not installed: cross-check skipped');
      return;
    }
    for (const [ta, tb] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      const p = problem({ m: 9, n: 11, k: 13, ta, tb, alpha: 1.25, beta: 0.5, pad: [1, 2, 3] }, 7);
      const ours = run(d.sgemm, p);
      const theirs = run(nblas.sgemm, p);
      let e = 0;
      for (let i = 0; i < ours.length; i++) e = Math.max(e, Math.abs(ours[i]! - theirs[i]!));
      expect(e).toBeLessThan(1e-5);
    }
  });

  it('rounds fp32 to bf16 to nearest even, bit for bit (denormals, NaN, Inf, ties)', () => {
    const r = rng(99);
    const x = Float32Array.from({ length: 1000 }, () => r() * 2 ** Math.floor(r() * 60));
    const bits = new Uint32Array(x.buffer);
    // ±0, ±Inf; NaNs (signalling, with payload, quiet); max float (→ Inf), ties to even (down, up), above
    // a tie; denormals (one a tie).
    const special = [
      [0x00000000, 0x80000000, 0x7f800000, 0xff800000],
      [0x7f800001, 0xff800001, 0x7fa12345, 0x7fc00000],
      [0x7f7fffff, 0x3f808000, 0x3f818000, 0x3f80c000],
      [0x00000001, 0x807fffff, 0x00408000, 0x00018000],
    ].flat();
    special.forEach((b, i) => {
      bits[100 + i] = b >>> 0; // inside a 32-element block: exercises the vector path's denormal fallback
      bits[997 - (i % 3)] = b >>> 0; // and the scalar tail
    });
    const got = d.toBf16(x);
    const want = Uint16Array.from(x, bf16Bits);
    const wrong: string[] = [];
    for (let i = 0; i < x.length; i++) {
      if (got[i] !== want[i])
        wrong.push(`${bits[i]!.toString(16)}: ${got[i]!.toString(16)} ≠ ${want[i]!.toString(16)}`);
    }
    expect(wrong).toEqual([]);
    expect(got[109]).toBe(0x3f80); // 1 + 2^-8: tie, rounds to even (down)
    expect(got[110]).toBe(0x3f82); // 1 + 3·2^-8: tie, rounds to even (up)
    const dst = new Uint16Array(1000);
    expect(d.toBf16(x, dst)).toBe(dst);
  });

  it('rejects bad arguments with an exception', () => {
    const a = new Float32Array(4);
    expect(() => d.sgemm(0 as 111, NO_TRANS, 2, 2, 2, 1, a, 2, a, 2, 0, a, 2)).toThrow(RangeError);
    expect(() => d.sgemm(NO_TRANS, NO_TRANS, 2, 2, 3, 1, a, 3, a, 2, 0, a, 2)).toThrow(/too small/);
    expect(() => d.sgemmBf16(NO_TRANS, NO_TRANS, 2, 2, 2, 1, a, 1, a, 2, 0, a, 2)).toThrow(
      /leading dimension/,
    );
    expect(() =>
      d.sgemm(NO_TRANS, NO_TRANS, 2, 2, 2, 1, new Float64Array(4) as never, 2, a, 2, 0, a, 2),
    ).toThrow(TypeError);
    expect(() => d.setNumThreads(0)).toThrow(RangeError);
  });

  it('loads and computes in two worker threads at once (and the main thread alongside)', async () => {
    // Shapes large enough that the bf16 conversion of B runs in parallel, and different per thread so
    // that a shared scratch buffer would be resized and overwritten under the other thread.
    const shapes: Case[][] = [
      [
        { m: 48, n: 256, k: 256, ta: false, tb: false, alpha: 1, beta: 0, pad: [1, 0, 2] },
        { m: 32, n: 120, k: 100, ta: true, tb: false, alpha: 0.5, beta: 1, pad: [0, 0, 0] },
      ],
      [
        { m: 24, n: 300, k: 256, ta: false, tb: true, alpha: 1, beta: 0, pad: [0, 3, 0] },
        { m: 40, n: 96, k: 112, ta: true, tb: true, alpha: -1, beta: 0.5, pad: [2, 0, 1] },
      ],
    ];
    const jobs = shapes.map((cases, w) =>
      cases.map((c, i) => {
        const p = problem(c, 5000 + 10 * w + i);
        const exact = reference(p, (x) => x);
        const rounded = reference(p, bf16);
        return { ...p, ref: exact.ref, scale: exact.scale, refR: rounded.ref, scaleR: rounded.scale };
      }),
    );
    const barrier = new SharedArrayBuffer(4);
    const mainThreads = d.getNumThreads();
    const workers = jobs.map(
      (job, w) =>
        new Worker(WORKER_SOURCE, {
          eval: true,
          workerData: { path: dnnPath, jobs: job, threads: w + 1, rounds: 15, barrier, parties: 3 },
        }),
    );
    const results = workers.map(
      (worker) =>
        new Promise<WorkerResult>((resolve, reject) => {
          worker.once('message', resolve);
          worker.once('error', reject);
          worker.once('exit', (code) => reject(new Error(`worker exited with ${code} before reporting`)));
        }),
    );
    // The main thread joins the race with products of its own.
    const flag = new Int32Array(barrier);
    Atomics.add(flag, 0, 1);
    while (Atomics.load(flag, 0) < 3) Atomics.wait(flag, 0, Atomics.load(flag, 0), 5);
    const mine = problem(
      { m: 128, n: 96, k: 50, ta: true, tb: false, alpha: 1, beta: 1, pad: [0, 0, 0] },
      77,
    );
    const mineRef = reference(mine, bf16);
    let mainWorst = 0;
    for (let i = 0; i < 10; i++)
      mainWorst = Math.max(mainWorst, errors(mine, run(d.sgemmBf16, mine), mineRef).elem);
    const got = await Promise.all(results);
    await Promise.all(workers.map((w) => w.terminate()));
    console.log('worker threads:', JSON.stringify(got), 'main thread bf16/rnd', mainWorst.toExponential(1));
    got.forEach((r, w) => {
      expect(r.error).toBeUndefined();
      expect(r.threads).toBe(w + 1); // setNumThreads is per thread
      expect(r.fp32).toBeLessThanOrEqual(FP32_TOL);
      expect(r.bf16).toBeLessThanOrEqual(ACC_TOL);
    });
    expect(mainWorst).toBeLessThanOrEqual(ACC_TOL);
    expect(d.getNumThreads()).toBe(mainThreads);
  });
});

interface WorkerResult {
  error?: string;
  threads: number;
  /** Worst sgemm error over all rounds, relative to Σ|a·b| against the float64 reference. */
  fp32: number;
  /** Worst sgemmBf16 error against the float64 product of the bf16-rounded inputs. */
  bf16: number;
}

/** Plain CommonJS run by each worker: loads the addon itself, waits for the others, multiplies. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { path, jobs, threads, rounds, barrier, parties } = workerData;
try {
  const d = require(path);
  d.setNumThreads(threads);
  const flag = new Int32Array(barrier);
  Atomics.add(flag, 0, 1);
  while (Atomics.load(flag, 0) < parties) Atomics.wait(flag, 0, Atomics.load(flag, 0), 5);
  const worst = { fp32: 0, bf16: 0 };
  for (let round = 0; round < rounds; round++) {
    for (const j of jobs) {
      const { m, n, k, ta, tb, alpha, beta } = j.c;
      for (const [fn, key, ref, scale] of [['sgemm', 'fp32', j.ref, j.scale], ['sgemmBf16', 'bf16', j.refR, j.scaleR]]) {
        const c = j.c0.slice();
        d[fn](ta ? 112 : 111, tb ? 112 : 111, m, n, k, alpha, j.a, j.lda, j.b, j.ldb, beta, c, j.ldc);
        for (let i = 0; i < m; i++) for (let q = 0; q < n; q++) {
          const e = Math.abs(c[i * j.ldc + q] - ref[i * n + q]) / scale[i * n + q];
          worst[key] = Math.max(worst[key], Number.isNaN(e) ? Infinity : e);
        }
      }
    }
  }
  parentPort.postMessage({ threads: d.getNumThreads(), ...worst });
} catch (e) {
  parentPort.postMessage({ error: String(e && e.stack || e), threads: 0, fp32: Infinity, bf16: Infinity });
}
`;

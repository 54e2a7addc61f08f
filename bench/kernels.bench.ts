/**
 * `npm run bench -- kernels`: the native kernel pack (OpenBLAS through nblas) against the host
 * backend's own matmul, shape by shape, at the shapes the π0-style model runs (reference configs A and
 * B of ../shared/notes/tfjs-on-this-machine.md: width 256, MLP 1024, 4 heads of 64, B·T rows).
 * Prints the median time of each, the ratio, and what the pack's per-shape choice (`blasWins`) picks:
 * the "picked" column is what a model gets, so it must never be slower than the host kernel.
 * `BENCH_HOST=cpu` measures the pack on the cpu backend instead of wasm. On wasm, two more tables: the
 * Slice/SplitV/Sum kernels, and the attention and fused element-wise kernels through the model's own
 * functions with their gradients.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { registerGradients } from '../src/backend/gradients.js';
import { loadBlas } from '../src/backend/native/blas.js';
import { installFused } from '../src/backend/native/fused.js';
import { problemOf } from '../src/backend/native/matmul.js';
import { blasWins, installPack, type PackHost, removePack } from '../src/backend/native/pack.js';
import { attention, gelu, rmsNorm } from '../src/model/layers.js';
import { adamwUpdate, emaUpdate, globalNorm, initAdam } from '../src/train/optimizer.js';

interface Case {
  what: string;
  a: number[];
  b: number[];
  transA?: boolean;
  transB?: boolean;
  fused?: boolean;
}

/** Rows: config A is batch 16 × 89 tokens (64 patches, 16 prompt, 8 actions, 1 state); B is 32 × 199. */
const A_ROWS = 16 * 89;
const B_ROWS = 32 * 199;

const CASES: Case[] = [
  { what: 'A dense fwd', a: [A_ROWS, 256], b: [256, 1024] },
  { what: 'A dense fwd (fused bias+relu)', a: [1, A_ROWS, 256], b: [1, 256, 1024], fused: true },
  { what: 'A mlp down', a: [A_ROWS, 1024], b: [1024, 256] },
  { what: 'A dW = xᵀ·dy', a: [A_ROWS, 256], b: [A_ROWS, 1024], transA: true },
  { what: 'A dx = dy·Wᵀ', a: [A_ROWS, 1024], b: [256, 1024], transB: true },
  { what: 'A patch embed', a: [16 * 64, 192], b: [192, 256] },
  { what: 'A action proj', a: [16 * 8, 7], b: [7, 256] },
  { what: 'A attn q·kᵀ', a: [64, 89, 64], b: [64, 89, 64], transB: true },
  { what: 'A attn p·v', a: [64, 89, 89], b: [64, 89, 64] },
  { what: 'A attn dp = dy·vᵀ', a: [64, 89, 64], b: [64, 89, 64], transB: true },
  { what: 'A attn dv = pᵀ·dy', a: [64, 89, 89], b: [64, 89, 64], transA: true },
  { what: 'B dense fwd', a: [B_ROWS, 256], b: [256, 1024] },
  { what: 'B dW = xᵀ·dy', a: [B_ROWS, 256], b: [B_ROWS, 1024], transA: true },
  { what: 'B expert dense', a: [32 * 50, 128], b: [128, 512] },
  { what: 'B attn q·kᵀ', a: [128, 199, 64], b: [128, 199, 64], transB: true },
  { what: 'B attn p·v', a: [128, 199, 199], b: [128, 199, 64] },
  { what: 'infer: chunk q·kᵀ (KV cache)', a: [4, 50, 32], b: [4, 199, 32], transB: true },
  { what: 'infer: expert dense, batch 1', a: [50, 128], b: [128, 512] },
  { what: 'infer: one token', a: [1, 256], b: [256, 256] },
  { what: 'square 1024', a: [1024, 1024], b: [1024, 1024] },
  { what: 'tiny 4', a: [4, 4], b: [4, 4] },
  { what: 'tiny 8', a: [8, 8], b: [8, 8] },
  { what: 'tiny 16', a: [16, 16], b: [16, 16] },
  { what: 'tiny 32', a: [32, 32], b: [32, 32] },
  { what: 'tiny 16, transposed', a: [16, 16], b: [16, 16], transB: true },
  { what: 'tiny batched 8×[8,8]', a: [8, 8, 8], b: [8, 8, 8] },
  { what: 'many tiny 512×[2,2]', a: [512, 2, 2], b: [512, 2, 2] },
  { what: 'many tiny 2048×[4,4]', a: [2048, 4, 4], b: [2048, 4, 4] },
];

function run1(c: Case, x: tf.Tensor, y: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  if (c.fused) {
    return tf.fused.matMul({
      a: x,
      b: y,
      transposeA: c.transA,
      transposeB: c.transB,
      bias,
      activation: 'relu',
    });
  }
  return tf.matMul(x, y, c.transA, c.transB);
}

/** Median ms per call over `reps` timed batches, each long enough (~15 ms) to be measured. */
function time(f: () => tf.Tensor, reps = 9): number {
  f().dispose();
  let t0 = performance.now();
  let inner = 0;
  while (performance.now() - t0 < 15 || inner < 1) {
    f().dispose();
    inner++;
  }
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    t0 = performance.now();
    for (let i = 0; i < inner; i++) f().dispose();
    samples.push((performance.now() - t0) / inner);
  }
  samples.sort((p, q) => p - q);
  return samples[Math.floor(samples.length / 2)]!;
}

export async function run(): Promise<void> {
  const host = (process.env.BENCH_HOST ?? 'wasm') as PackHost;
  await tf.setBackend(host);
  const blas = loadBlas();
  if ('error' in blas) {
    console.log(`native kernel pack unavailable: ${blas.error}`);
    return;
  }
  console.log(
    `host ${host}, BLAS ${blas.library} with ${blas.threads} thread(s) (OPENBLAS_NUM_THREADS=${process.env.OPENBLAS_NUM_THREADS ?? 'unset'}); medians, shared machine: expect noise`,
  );
  const rows: string[][] = [];
  for (const c of CASES) {
    const x = tf.randomNormal(c.a);
    const y = tf.randomNormal(c.b);
    const p = problemOf(x, y, Boolean(c.transA), Boolean(c.transB));
    const bias = tf.randomNormal([p.n]);
    const flops = 2 * p.m * p.n * p.k * p.batch;
    removePack(host);
    const own = time(() => run1(c, x, y, bias));
    installPack(blas, host, () => true);
    const pack = time(() => run1(c, x, y, bias));
    removePack(host);
    const picked = blasWins(host, p);
    const op = `${c.fused ? 'fused ' : ''}[${c.a}]${c.transA ? 'ᵀ' : ''}·[${c.b}]${c.transB ? 'ᵀ' : ''}`;
    rows.push([
      c.what,
      op,
      own.toFixed(3),
      (flops / own / 1e6).toFixed(1),
      pack.toFixed(3),
      (flops / pack / 1e6).toFixed(1),
      `${(own / pack).toFixed(2)}×`,
      picked ? 'blas' : host,
      picked && pack > own * 1.1 ? 'SLOWER' : !picked && own > pack * 1.1 ? 'missed' : '',
    ]);
    tf.dispose([x, y, bias]);
  }
  printTable(['shape', 'op', `${host} ms`, 'GFLOP/s', 'blas ms', 'GFLOP/s', 'speed-up', 'picked', ''], rows);
  if (host === 'wasm') {
    copyKernels(blas);
    await modelKernels(blas);
  }
}

/**
 * The pack's attention and fused kernels through the model's own functions (layers.ts, optimizer.ts),
 * forward and backward, against the same functions on WASM's own kernels, at A's and B's shapes.
 */
async function modelKernels(blas: Exclude<ReturnType<typeof loadBlas>, { error: string }>): Promise<void> {
  await registerGradients();
  const norm = (rows: number) => {
    const x = tf.randomNormal([rows, 256]) as tf.Tensor2D;
    const scale = tf.randomNormal([256], 0, 0.1);
    return () => tf.grads((a: tf.Tensor, s: tf.Tensor) => rmsNorm(a as tf.Tensor2D, s))([x, scale]);
  };
  const act = (rows: number) => {
    const x = tf.randomNormal([rows, 1024]);
    return () => [tf.grad(gelu)(x)];
  };
  const attend = (batch: number, tq: number, segs: number[]) => {
    const q = tf.randomNormal([batch * tq, 256]) as tf.Tensor2D;
    const kv = segs.map((t) => [tf.randomNormal([batch * t, 256]), tf.randomNormal([batch * t, 256])]);
    const tk = segs.reduce((a, b) => a + b, 0);
    const bias = tf.zeros([batch, 1, tq, tk]);
    return () =>
      tf.grads((...xs: tf.Tensor[]) => {
        const pairs = segs.map((_, i) => [xs[1 + 2 * i], xs[2 + 2 * i]] as [tf.Tensor2D, tf.Tensor2D]);
        return attention(xs[0] as tf.Tensor2D, pairs, bias, 4, batch, 0.125);
      })([q, ...kv.flat()]);
  };
  const adam = (shape: number[]) => {
    const p = new Map([['w', tf.variable(tf.randomNormal(shape))]]);
    const g = { w: tf.randomNormal(shape, 0, 0.01) };
    const state = initAdam(p, `bench-${shape.join('x')}`);
    const opts = { lr: 1e-4, b1: 0.9, b2: 0.95, eps: 1e-8, weightDecay: 1e-10, step: 1, clipScale: 1 };
    return () => {
      globalNorm(g);
      adamwUpdate(p, g, state, opts);
      emaUpdate(state.m, p, 0.99);
      return [tf.scalar(0)];
    };
  };
  const cases: Array<[string, () => tf.Tensor[]]> = [
    ['RMSNorm fwd+bwd, A prefix [1280, 256]', norm(16 * 80)],
    ['RMSNorm fwd+bwd, B prefix [4736, 256]', norm(32 * 148)],
    ['GELU fwd+bwd, A MLP [1280, 1024]', act(16 * 80)],
    ['GELU fwd+bwd, B MLP [4736, 1024]', act(32 * 148)],
    ['attention fwd+bwd, A prefix 16×4 heads, 80 tokens', attend(16, 80, [80])],
    ['attention fwd+bwd, B prefix 32×4 heads, 148 tokens', attend(32, 148, [148])],
    ['attention fwd+bwd, B expert 51 over 148+51 keys', attend(32, 51, [148, 51])],
    ['AdamW + EMA + norm, a [256, 1024] weight', adam([256, 1024])],
  ];
  const rows: string[][] = [];
  for (const [what, f] of cases) {
    const call = () => tf.tidy(() => f()[0]!);
    removePack('wasm');
    const own = time(call, 5);
    installPack(blas, 'wasm');
    const fused = await installFused();
    if (fused) throw new Error(`fused kernels: ${fused}`);
    const pack = time(call, 5);
    removePack('wasm');
    rows.push([
      what,
      own.toFixed(3),
      pack.toFixed(3),
      `${(own / pack).toFixed(2)}×`,
      pack > own * 1.1 ? 'SLOWER' : '',
    ]);
  }
  console.log();
  printTable(['model kernels (with their gradients)', 'wasm ms', 'pack ms', 'speed-up', ''], rows);
}

/** Slices and sums the model takes (B's shapes), by WASM's own kernels and by the pack's. */
const COPY_CASES: Array<{ what: string; shape: number[]; f: (x: tf.Tensor) => tf.Tensor | tf.Tensor[] }> = [
  {
    what: 'B train: token-concat gradient, split [128, 148·64 | 51·64]',
    shape: [128, 199 * 64],
    f: (x) => tf.split(x, [148 * 64, 51 * 64], 1),
  },
  {
    what: 'B train: state token out of the suffix [32, 1 | 50, 128]',
    shape: [32, 51, 128],
    f: (x) => tf.slice(x, [0, 1, 0], [32, 50, 128]),
  },
  {
    what: 'infer: k out of a fused q|k|v [3·4, 50·64]',
    shape: [12, 50 * 64],
    f: (x) => tf.slice(x, [4, 0], [4, 50 * 64]),
  },
  { what: 'infer: half a kernel [256, 128]', shape: [256, 128], f: (x) => tf.slice(x, [128, 0], [128, 128]) },
  {
    what: 'short runs [64, 64, 8] → [64, 64, 3]',
    shape: [64, 64, 8],
    f: (x) => tf.slice(x, [0, 0, 2], [64, 64, 3]),
  },
  { what: 'Sum: a bias gradient over [2048, 128] rows', shape: [2048, 128], f: (x) => tf.sum(x, 0) },
  {
    what: 'Sum: a norm-scale gradient over [32, 148, 256]',
    shape: [32, 148, 256],
    f: (x) => tf.sum(x, [0, 1]),
  },
];

function copyKernels(blas: Exclude<ReturnType<typeof loadBlas>, { error: string }>): void {
  const rows: string[][] = [];
  for (const c of COPY_CASES) {
    const x = tf.randomNormal(c.shape);
    const call = () => {
      const out = c.f(x);
      const list = Array.isArray(out) ? out : [out];
      for (const t of list.slice(1)) t.dispose();
      return list[0]!;
    };
    removePack('wasm');
    const own = time(call);
    installPack(blas, 'wasm', () => true);
    const pack = time(call);
    removePack('wasm');
    rows.push([
      c.what,
      own.toFixed(3),
      pack.toFixed(3),
      `${(own / pack).toFixed(2)}×`,
      pack > own * 1.1 ? 'SLOWER' : '',
    ]);
    x.dispose();
  }
  console.log();
  printTable(['Slice, SplitV, Sum', 'wasm ms', 'pack ms', 'speed-up', ''], rows);
}

function printTable(head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(line(head));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
}

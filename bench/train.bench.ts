/**
 * Training throughput of the default `small` model at batch 32 (2 cameras at its resolution, a
 * 20-token prompt, H = 50, action_dim 32): samples/s, the model's matmul FLOP/s as a fraction of the
 * same backend's 1024×1024 matMul FLOP/s measured in this run, and the process's resident memory.
 * Each row runs in a child process with one way of using the cores (see SETTINGS; VLA_BENCH_SETTINGS
 * picks some by label). The machine is shared: compare within a run.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describeBackend, setupBackend } from '../src/backend/index.js';
import { table } from '../src/cli/output.js';
import { TrainConfig } from '../src/config/schema.js';
import { type ModelDims, modelDims } from '../src/model/config.js';
import { paramCount } from '../src/model/params.js';
import { initParams } from '../src/model/pi0.js';
import { Rng } from '../src/model/rng.js';
import { Trainer } from '../src/train/trainer.js';
import type { Batch } from '../src/transforms/batch.js';

const BATCH = Number(process.env.VLA_BENCH_BATCH ?? 32);
const STEPS = Number(process.env.VLA_BENCH_STEPS ?? 5);
const CAMERAS = ['cam_high', 'cam_left_wrist'];
const PROMPT = 'pick up the red cube';

function randomBatch(d: ModelDims, b: number, seed: number): Batch {
  const rng = new Rng(seed);
  const s = d.imageSize;
  return {
    size: b,
    imageSize: s,
    cameras: CAMERAS,
    images: new Uint8Array(b * CAMERAS.length * s * s * 3).map(() => rng.nextU32() & 255),
    imageMask: new Uint8Array(b * CAMERAS.length).fill(1),
    state: rng.normals(b * 14),
    stateDim: 14,
    actions: rng.normals(b * d.horizon * 14),
    actionDim: 14,
    horizon: d.horizon,
    actionPad: new Uint8Array(b * d.horizon),
    prompts: new Array(b).fill(PROMPT),
  };
}

/** Multiply-adds of one forward pass for one sample, counted from the model's shapes (matmuls only). */
export function forwardMacs(d: ModelDims, cams: number, promptLen: number): number {
  const w = d.width;
  const e = d.expertWidth;
  const n = (d.imageSize / d.patchSize) ** 2;
  const block = (tokens: number, width: number, mlp: number) =>
    tokens * (3 * width * w + w * width + 2 * width * mlp);
  let macs = cams * n * d.patchSize * d.patchSize * 3 * w;
  macs += d.visionDepth * cams * (block(n, w, d.mlpDim) + 2 * n * n * w);
  macs += promptLen * 258 * w;
  const p = cams * n + promptLen;
  macs += (d.depth - 1) * (block(p, w, d.mlpDim) + 2 * p * p * w) + p * 2 * w * w;
  const s = 1 + d.horizon;
  macs += d.actionDim * e + d.horizon * d.actionDim * e + d.horizon * e * e + e * e + d.horizon * e * e;
  macs += d.depth * (block(s, e, d.expertMlpDim) + 2 * s * (p + s) * w);
  macs += d.horizon * e * d.actionDim;
  return macs;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function matmulFlops(n: number): Promise<number> {
  const a = tf.randomNormal([n, n]);
  const b = tf.randomNormal([n, n]);
  const times: number[] = [];
  for (let i = 0; i < 4; i++) {
    const t0 = performance.now();
    const c = tf.matMul(a, b);
    await c.data();
    c.dispose();
    if (i > 0) times.push(performance.now() - t0);
  }
  tf.dispose([a, b]);
  return (2 * n ** 3) / (median(times) / 1000);
}

interface Measured {
  backend: string;
  params: number;
  stepMs: number;
  modelFlops: number;
  matmulFlops: number;
  peakRssMb: number;
  flopsPerStep: number;
}

/** One configuration, measured in this process. */
async function measure(): Promise<Measured> {
  const info = await setupBackend();
  const config = TrainConfig.parse({
    name: 'bench',
    robot: 'aloha',
    model: { preset: 'small' },
    train: { batch_size: BATCH },
  });
  const d = modelDims(config.model);
  const trainer = new Trainer(config, initParams(d, 0));
  trainer.checkSource({ cameras: CAMERAS, stateDim: 14, actionDim: 14 });
  const batches = [randomBatch(d, BATCH, 1), randomBatch(d, BATCH, 2)];
  const params = paramCount(trainer.params);
  let peakRss = process.memoryUsage().rss;
  trainer.trainStep(batches[0]!);
  const tensors = tf.memory().numTensors;
  const times: number[] = [];
  const peaks: number[] = [];
  // Steps and the reference matmul alternate, so that both see the same share of a busy machine.
  for (let i = 0; i < STEPS; i++) {
    const t0 = performance.now();
    trainer.trainStep(batches[i % 2]!);
    times.push(performance.now() - t0);
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    peaks.push(await matmulFlops(1024));
  }
  if (tf.memory().numTensors !== tensors) throw new Error('training leaked tensors');
  trainer.dispose();
  const stepMs = median(times);
  const flopsPerStep = 3 * 2 * forwardMacs(d, CAMERAS.length, PROMPT.length + 1) * BATCH;
  return {
    backend: describeBackend(info),
    params,
    stepMs,
    modelFlops: flopsPerStep / (stepMs / 1000),
    matmulFlops: median(peaks),
    peakRssMb: process.memoryUsage().rss / 2 ** 20,
    flopsPerStep,
  };
}

/**
 * How the cores are used, each setting in its own process (thread counts are fixed once a library
 * starts): OpenBLAS on all cores (the default), OpenBLAS on one, and WASM's own threads without BLAS.
 */
const SETTINGS: Array<[string, Record<string, string>]> = [
  ['default', {}],
  ['OpenBLAS 1 thread', { OPENBLAS_NUM_THREADS: '1' }],
  ['OpenBLAS + WASM 2 threads', { VLA_WASM_THREADS: '2' }],
  // WASM alone is several times slower: fewer steps keep the benchmark within minutes.
  ['WASM only, 1 thread', { VLA_NATIVE: '0', VLA_BENCH_STEPS: '2' }],
  ['WASM only, 2 threads', { VLA_NATIVE: '0', VLA_WASM_THREADS: '2', VLA_BENCH_STEPS: '2' }],
];

export async function run(): Promise<void> {
  if (process.env.VLA_TRAIN_BENCH_CHILD) {
    console.log(`RESULT ${JSON.stringify(await measure())}`);
    return;
  }
  const { execFileSync } = await import('node:child_process');
  const only = process.env.VLA_BENCH_SETTINGS?.split(',');
  const rows: string[][] = [];
  let flopsPerStep = 0;
  for (const [label, env] of SETTINGS) {
    if (only && !only.includes(label)) continue;
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'bench/run.ts', 'train'], {
      env: { ...process.env, ...env, VLA_TRAIN_BENCH_CHILD: '1' },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const line = out.split('\n').find((l) => l.startsWith('RESULT '));
    if (!line) throw new Error(`the ${label} run printed no result:\n${out}`);
    const m = JSON.parse(line.slice(7)) as Measured;
    flopsPerStep = m.flopsPerStep;
    console.log(`${label}: ${m.backend}`);
    rows.push([
      label,
      `${(m.params / 1e6).toFixed(2)}M`,
      String(BATCH),
      m.stepMs.toFixed(0),
      ((BATCH * 1000) / m.stepMs).toFixed(1),
      (m.modelFlops / 1e9).toFixed(1),
      (m.matmulFlops / 1e9).toFixed(1),
      `${((100 * m.modelFlops) / m.matmulFlops).toFixed(0)}%`,
      m.peakRssMb.toFixed(0),
    ]);
  }
  console.log(
    table(
      [
        'small model',
        'params',
        'batch',
        'step p50 ms',
        'samples/s',
        'model GFLOP/s',
        '1024² matMul GFLOP/s',
        'fraction',
        'peak RSS MB',
      ],
      rows,
    ),
  );
  console.log(
    `(${(flopsPerStep / 1e9).toFixed(1)} GFLOP per step counted from the matmul shapes: forward × 3 for forward + backward; the matMul reference is measured between the steps of the same process)`,
  );
}

/**
 * `npm run bench -- native`: the π0-style model at the two reference configurations of
 * ../shared/notes/tfjs-on-this-machine.md ("The peer"), trained and sampled with and without the
 * native kernel pack, printed beside PyTorch 1.13's figures measured on this machine (2 threads).
 *
 * A: width 256, 2 layers, 4 heads, one 64×64 camera, patch 8, 16 prompt tokens, H 8, 7-dim actions,
 *    batch 16 (PyTorch: 1.9M params, 152 samples/s, chunk 11.7 ms with the KV cache / 28.0 without).
 * B: width 256, expert width 128, 4 layers, 4 heads, two 96×96 cameras, patch 12, 20 prompt tokens,
 *    H 50, action dim 32, batch 32 (PyTorch: 4.5M params, 40 samples/s, chunk 29.9 / 110 ms).
 * Sizes the note leaves open take the values whose parameter count comes nearest PyTorch's: MLP 1024,
 * expert MLP 512, expert width 128 in A too, one vision-only block in B and none in A.
 *
 * Rows: `wasm` is the WASM backend's own kernels, `wasm+blas` the pack (OpenBLAS on 1 thread),
 * `wasm+blas 2 threads` the pack with OpenBLAS on both cores, `wasm+blas 2 replicas` the pack with `train.data_parallel: 2` (each
 * batch cut in two, one half on a worker thread: training only), `cpu+blas` the pack under the cpu
 * backend (to choose the host: its element-wise kernels are plain JS), `… bf16` the same with bfloat16
 * products on oneDNN (`train.precision: bf16`; the row fails, saying why, where they cannot run). WASM takes VLA_WASM_THREADS
 * (default 1). Each row runs in a child process of its own (see measureInChild). BENCH_STEPS sets the
 * timed training steps (default 4), BENCH_WARMUP the untimed ones before them (default 2);
 * BENCH_KERNELS (say `wasm+blas`) runs only the rows of those kernels.
 * Training runs without image augmentation, as the PyTorch probe (synthetic data, the model alone):
 * augmentation is data preparation, on by default in `vla train` (about 5% of A's step here).
 * The machine is shared with other work: compare rows of one run, and expect noise.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { type BackendName, describeBackend, setupBackend } from '../src/backend/index.js';
import { packStats } from '../src/backend/native/pack.js';
import { table } from '../src/cli/output.js';
import { TrainConfig } from '../src/config/schema.js';
import { ChunkSampler } from '../src/model/chunk-sampler.js';
import { type ModelDims, modelDims } from '../src/model/config.js';
import { paramCount } from '../src/model/params.js';
import { initParams, Pi0, prepareInputs } from '../src/model/pi0.js';
import { Rng } from '../src/model/rng.js';
import { Trainer } from '../src/train/trainer.js';
import type { Batch } from '../src/transforms/batch.js';

interface Reference {
  name: string;
  model: Record<string, unknown>;
  batch: number;
  cameras: string[];
  /** The robot's own state/action dims (the model pads them to action_dim). */
  robotDim: number;
  /** A prompt of (tokens − 1) bytes: the tokenizer adds BOS. */
  prompt: string;
  torch: { params: number; samplesPerSec: number; chunkCached: number; chunkUncached: number };
}

const REFERENCES: Reference[] = [
  {
    name: 'A',
    model: {
      preset: 'small',
      width: 256,
      depth: 2,
      heads: 4,
      mlp_dim: 1024,
      expert_width: 128,
      expert_mlp_dim: 512,
      image_size: 64,
      patch_size: 8,
      vision_depth: 0,
      max_token_len: 16,
      action_horizon: 8,
      action_dim: 7,
    },
    batch: 16,
    cameras: ['cam_high'],
    robotDim: 7,
    prompt: 'pick up the cub',
    torch: { params: 1.9e6, samplesPerSec: 152, chunkCached: 11.7, chunkUncached: 28.0 },
  },
  {
    name: 'B',
    model: {
      preset: 'small',
      width: 256,
      depth: 4,
      heads: 4,
      mlp_dim: 1024,
      expert_width: 128,
      expert_mlp_dim: 512,
      image_size: 96,
      patch_size: 12,
      vision_depth: 1,
      max_token_len: 20,
      action_horizon: 50,
      action_dim: 32,
    },
    batch: 32,
    cameras: ['cam_high', 'cam_left_wrist'],
    robotDim: 14,
    prompt: 'pick up the red cub',
    torch: { params: 4.5e6, samplesPerSec: 40, chunkCached: 29.9, chunkUncached: 110 },
  },
];

interface Mode {
  label: string;
  backend: BackendName;
  native: boolean;
  /** train.data_parallel: replicas sharing each batch, one per core (training only). */
  replicas?: number;
  /** OpenBLAS threads (default 1, whatever OPENBLAS_NUM_THREADS says to the bench). */
  blasThreads?: number;
  /** The products' precision (default fp32): bf16 runs them on oneDNN (train.precision). */
  precision?: 'fp32' | 'bf16';
}

/** A count from the environment, at least `min`; anything else is refused, naming the variable. */
function countFromEnv(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}: expected an integer ≥ ${min}, got '${raw}'`);
  return n;
}

const STEPS = countFromEnv('BENCH_STEPS', 4, 1);
/** Untimed first steps: the first compiles and allocates, and a replica's first two run cold. */
const WARMUP = countFromEnv('BENCH_WARMUP', 2, 1);
const MODES: Mode[] = [
  { label: 'wasm', backend: 'wasm', native: false },
  { label: 'wasm+blas', backend: 'wasm', native: true },
  { label: 'wasm+blas 2 threads', backend: 'wasm', native: true, blasThreads: 2 },
  { label: 'wasm+blas 2 replicas', backend: 'wasm', native: true, replicas: 2 },
  { label: 'cpu+blas', backend: 'cpu', native: true },
  { label: 'wasm+blas bf16', backend: 'wasm', native: true, precision: 'bf16' },
  { label: 'wasm+blas 2 replicas bf16', backend: 'wasm', native: true, replicas: 2, precision: 'bf16' },
];

/** BENCH_KERNELS=wasm+blas,cpu+blas runs only those rows. */
const ONLY = (process.env.BENCH_KERNELS ?? '').split(',').filter(Boolean);
const unknownKernels = ONLY.filter((k) => !MODES.some((m) => m.label === k));
if (unknownKernels.length > 0) {
  throw new Error(
    `BENCH_KERNELS: unknown ${unknownKernels.join(', ')}; expected some of ${MODES.map((m) => m.label).join(', ')}`,
  );
}

function randomBatch(ref: Reference, d: ModelDims, seed: number): Batch {
  const rng = new Rng(seed);
  const b = ref.batch;
  const s = d.imageSize;
  const cams = ref.cameras.length;
  return {
    size: b,
    imageSize: s,
    cameras: ref.cameras,
    images: new Uint8Array(b * cams * s * s * 3).map(() => rng.nextU32() & 255),
    imageMask: new Uint8Array(b * cams).fill(1),
    state: rng.normals(b * ref.robotDim),
    stateDim: ref.robotDim,
    actions: rng.normals(b * d.horizon * ref.robotDim),
    actionDim: ref.robotDim,
    horizon: d.horizon,
    actionPad: new Uint8Array(b * d.horizon),
    prompts: new Array(b).fill(ref.prompt),
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Median training step time (ms) after WARMUP steps; also the loss of the first step. */
async function timeTraining(
  ref: Reference,
  config: TrainConfig,
): Promise<{ stepMs: number; firstLoss: number; params: number }> {
  const d = modelDims(config.model);
  const trainer = new Trainer(config, initParams(d, 0));
  await trainer.startDataParallel();
  trainer.checkSource({ cameras: ref.cameras, stateDim: ref.robotDim, actionDim: ref.robotDim });
  const batches = [randomBatch(ref, d, 1), randomBatch(ref, d, 2)];
  const firstLoss = trainer.trainStep(batches[0]!).loss;
  for (let i = 1; i < WARMUP; i++) trainer.trainStep(batches[i % 2]!);
  const tensors = tf.memory().numTensors;
  const times: number[] = [];
  for (let i = 0; i < STEPS; i++) {
    const t0 = performance.now();
    trainer.trainStep(batches[(i + 1) % 2]!);
    times.push(performance.now() - t0);
  }
  if (tf.memory().numTensors !== tensors) throw new Error('training leaked tensors');
  const params = paramCount(trainer.params);
  trainer.dispose();
  return { stepMs: median(times), firstLoss, params };
}

/** Which sampler a chunk runs on: what the product picks (`default`), or one named. */
type SamplerChoice = 'default' | 'tfjs' | 'native 1 thread' | 'native 2 threads';

/** Latencies (ms) of one action chunk at batch 1, 10 flow steps, observation preparation included. */
async function timeChunk(
  ref: Reference,
  config: TrainConfig,
  cache: boolean,
  reps: number,
  sampler: SamplerChoice = 'default',
): Promise<{ p50: number; p90: number; line: string }> {
  const d = modelDims(config.model);
  const model = new Pi0(d);
  const w = initParams(d, 0);
  const rng = new Rng(3);
  const cams = ref.cameras.length;
  const images = new Uint8Array(cams * d.imageSize * d.imageSize * 3).map(() => rng.nextU32() & 255);
  // Kept across chunks, as a server keeps it (PolicyModel).
  const chunks = new ChunkSampler(model, w, {
    sampler: sampler === 'tfjs' ? 'tfjs' : sampler === 'default' ? undefined : 'native',
    threads: sampler === 'native 1 thread' ? 1 : sampler === 'native 2 threads' ? 2 : undefined,
  });
  const times: number[] = [];
  // Two untimed chunks: the first starts the sampler (its worker, its arena), the second warms the JIT.
  for (let i = 0; i < reps + 2; i++) {
    const t0 = performance.now();
    const inp = prepareInputs(d, {
      batchSize: 1,
      cameras: cams,
      imageSize: d.imageSize,
      images,
      imageMask: new Uint8Array(cams).fill(1),
      state: rng.normals(ref.robotDim),
      stateDim: ref.robotDim,
      prompts: [ref.prompt],
    });
    await chunks.sample(inp, rng.normals(d.horizon * d.actionDim), { cache });
    if (i > 1) times.push(performance.now() - t0);
  }
  const line = chunks.describe();
  await chunks.dispose();
  tf.dispose([...w.values()]);
  times.sort((a, b) => a - b);
  return {
    p50: median(times),
    p90: times[Math.min(times.length - 1, Math.floor(times.length * 0.9))]!,
    line,
  };
}

/** One row of the table, the backend line it ran under, and the sampler rows (the pack's row only). */
interface Measured {
  row: string[];
  line: string;
  samplers: string[][];
}

async function measure(ref: Reference, mode: Mode): Promise<Measured> {
  const config = TrainConfig.parse({
    name: `native-${ref.name}`,
    robot: 'aloha',
    model: ref.model,
    data: { augment: null },
    train: { batch_size: ref.batch, data_parallel: mode.replicas ?? 1, precision: mode.precision ?? 'fp32' },
  });
  const info = await setupBackend({ backend: mode.backend, native: mode.native, precision: mode.precision });
  if (mode.precision === 'bf16' && info.native?.productsOff) throw new Error(info.native.productsOff);
  const line = describeBackend(info).replace(/ \(passed over.*$/, '');
  const before = packStats();
  const train = await timeTraining(ref, config);
  const after = packStats();
  // Sampling does not use the replicas: their row repeats the plain one's chunk.
  const chunks = mode.replicas
    ? null
    : {
        cached: await timeChunk(ref, config, true, ref.name === 'A' ? 15 : 9),
        uncached: await timeChunk(ref, config, false, ref.name === 'A' ? 7 : 3),
      };
  // The pack's own row also compares the samplers, each in this same process, one after another.
  const samplers: string[][] = [];
  if (mode.label === 'wasm+blas' || mode.label === 'wasm+blas bf16') {
    for (const choice of ['tfjs', 'native 1 thread', 'native 2 threads'] as const) {
      const c = await timeChunk(ref, config, true, ref.name === 'A' ? 31 : 21, choice);
      samplers.push([
        ref.name,
        `${c.line}${mode.precision === 'bf16' ? ' (bf16)' : ''}`,
        c.p50.toFixed(1),
        c.p90.toFixed(1),
        String(ref.torch.chunkCached),
        `${(ref.torch.chunkCached / c.p50).toFixed(2)}×`,
      ]);
    }
  }
  const samples = (ref.batch * 1000) / train.stepMs;
  const blasShare = after.blas + after.fallback - before.blas - before.fallback;
  const row = [
    ref.name,
    `${(train.params / 1e6).toFixed(2)}M (torch ${(ref.torch.params / 1e6).toFixed(1)}M)`,
    mode.label,
    train.stepMs.toFixed(0),
    samples.toFixed(1),
    String(ref.torch.samplesPerSec),
    `${(samples / ref.torch.samplesPerSec).toFixed(2)}×`,
    chunks ? `${chunks.cached.p50.toFixed(1)} / ${chunks.uncached.p50.toFixed(1)}` : '-',
    `${ref.torch.chunkCached} / ${ref.torch.chunkUncached}`,
    train.firstLoss.toFixed(5),
    mode.native ? `${after.blas - before.blas}/${blasShare}` : '-',
  ];
  return { row, line, samplers };
}

/**
 * One row measured in a process of its own, as `vla train` and `vla serve` run: OpenBLAS reads its
 * thread count once per process, and rows measured one after another in one process ran slower the
 * later they came (B with 2 replicas: 902 ms a step after the other rows, 813-844 ms alone), the WASM
 * heap and V8's grown by the rows before.
 */
function measureInChild(ref: Reference, mode: Mode): Measured {
  const env: NodeJS.ProcessEnv = { ...process.env, BENCH_ROW: `${ref.name}|${mode.label}` };
  env.OPENBLAS_NUM_THREADS = String(mode.blasThreads ?? 1);
  const out = execFileSync(
    process.execPath,
    ['--import', 'tsx', path.join(import.meta.dirname, 'run.ts'), 'native'],
    {
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 1 << 24,
    },
  );
  const result = out.split('\n').find((l) => l.startsWith('ROW '));
  if (!result) throw new Error(`bench row ${ref.name} ${mode.label}: the child printed no result`);
  return JSON.parse(result.slice(4)) as Measured;
}

export async function run(): Promise<void> {
  const child = process.env.BENCH_ROW;
  if (child) {
    const [name, label] = child.split('|');
    const ref = REFERENCES.find((r) => r.name === name)!;
    const mode = MODES.find((m) => m.label === label)!;
    console.log(`ROW ${JSON.stringify(await measure(ref, mode))}`);
    return;
  }
  const rows: string[][] = [];
  const samplerRows: string[][] = [];
  const lines = new Set<string>();
  for (const ref of REFERENCES) {
    for (const mode of MODES) {
      if (ONLY.length > 0 && !ONLY.includes(mode.label)) continue;
      // The cpu backend's element-wise kernels make B too slow to be worth the minutes; A decides the host.
      if (mode.backend === 'cpu' && ref.name !== 'A') continue;
      const { row, line, samplers } = measureInChild(ref, mode);
      rows.push(row);
      samplerRows.push(...samplers);
      lines.add(line);
      console.error(`done: ${ref.name} ${mode.label}`);
    }
  }
  for (const line of lines) console.log(line);
  console.log(
    `medians of ${STEPS} training steps after ${WARMUP} warm-up step${WARMUP > 1 ? 's' : ''}, each row in a process of its own; chunk = 10 flow steps at batch 1; shared machine: expect noise`,
  );
  console.log(
    table(
      [
        'config',
        'params',
        'kernels',
        'step ms',
        'samples/s',
        'torch samples/s',
        'vs torch',
        'chunk ms cache/none (default sampler)',
        'torch chunk ms',
        'first loss',
        'matmuls on blas',
      ],
      rows,
    ),
  );
  if (samplerRows.length > 0) {
    console.log(
      '\nchunk with the KV cache at batch 1 by sampler (wasm+blas row; p50/p90 of 31 chunks for A, 21 for B)',
    );
    console.log(table(['config', 'sampler', 'p50 ms', 'p90 ms', 'torch ms', 'torch / ours'], samplerRows));
  }
}

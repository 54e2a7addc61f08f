/**
 * The training loader: samples are (observation at frame t, actions t..t+H-1) for every frame of every
 * episode; batches come in a seeded permutation per epoch, so the batch of a step depends on
 * (seed, step, batch size) alone and a resumed run sees exactly the data an uninterrupted one would.
 */
import { UserError } from '../config/errors.js';
import type { TrainConfig } from '../config/schema.js';
import { type NormMode, type NormStats, normalize } from '../transforms/normalize.js';
import type { Batch } from './batch.js';
import { type FrameCache, openFrameCache } from './cache.js';
import { CAMERA_PREFIX } from './info.js';
import {
  type Affine,
  actionChunk,
  type EpisodeRows,
  episodeRows,
  openPipeline,
  type Pipeline,
} from './pipeline.js';

export interface TrainingDataOptions {
  imageSize: number;
  horizon: number;
  normStats: NormStats;
  /** Where decoded frames are cached (default: $VLA_CACHE_DIR or ~/.cache/vla-orchestrator/frames). */
  cacheDir?: string;
  /** Progress of the frame cache build, in frames over all cameras. */
  onProgress?: (done: number, total: number) => void;
  /** Folder that relative dataset paths and robot names resolve from. */
  cwd?: string;
  /** A stop request: ends a frame cache build early (see `CacheBuildAborted`). */
  signal?: AbortSignal;
}

export interface TrainingData {
  /** Samples per epoch: the dataset's frames, with `data.oversample_start`'s frames counted as often as drawn. */
  numSamples: number;
  /** The dataset's frames. */
  numFrames: number;
  /** The robot's camera names, in the order of the batch's image axis. */
  cameras: string[];
  stateDim: number;
  actionDim: number;
  imageSize: number;
  horizon: number;
  /** Per camera: whether the dataset has it (a missing one is fed as a masked black image). */
  present: boolean[];
  batchAt(step: number, batchSize: number, seed: number): Batch;
  /** The batch of these dataset rows (numbered episode after episode, frame by frame), in order. */
  batchOfRows(rows: ArrayLike<number>): Batch;
  close(): void;
}

const EPS = 1e-6;

/**
 * The config's action normalization as one multiply-add per value (the same formulas as
 * transforms/normalize.ts, which also checks that the stats cover every dim).
 */
function actionAffine(stats: NormStats, mode: NormMode, dim: number): Affine {
  normalize(new Float32Array(dim), stats, 'actions', mode, dim);
  const e = stats.actions;
  const mul = new Float64Array(dim);
  const add = new Float64Array(dim);
  for (let d = 0; d < dim; d++) {
    if (mode === 'zscore') {
      mul[d] = 1 / (e.std[d]! + EPS);
      add[d] = -e.mean[d]! * mul[d]!;
    } else {
      mul[d] = 2 / (e.q99![d]! - e.q01![d]! + EPS);
      add[d] = -e.q01![d]! * mul[d]! - 1;
    }
  }
  return { mul, add };
}

/** splitmix32: a small, well-mixed PRNG; the permutation must not depend on Math.random. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}

/** The sample order of one epoch: a Fisher–Yates shuffle seeded by (seed, epoch). */
export function epochPermutation(n: number, seed: number, epoch: number): Uint32Array {
  const next = rng(Math.imul(seed ^ 0x5bd1e995, 0x27d4eb2d) ^ Math.imul(epoch + 1, 0x165667b1));
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    const t = perm[i]!;
    perm[i] = perm[j]!;
    perm[j] = t;
  }
  return perm;
}

/**
 * The rows an epoch draws: every row once, and rows whose frame index is below `oversample.frames`
 * `oversample.factor` times in all.
 */
export function drawOrder(
  frameIndex: Int32Array,
  oversample: { frames: number; factor: number } | null,
): Uint32Array {
  const n = frameIndex.length;
  if (!oversample) return Uint32Array.from({ length: n }, (_, i) => i);
  let extra = 0;
  for (let i = 0; i < n; i++) if (frameIndex[i]! < oversample.frames) extra += oversample.factor - 1;
  const out = new Uint32Array(n + extra);
  let k = 0;
  for (let i = 0; i < n; i++) {
    const times = frameIndex[i]! < oversample.frames ? oversample.factor : 1;
    for (let r = 0; r < times; r++) out[k++] = i;
  }
  return out;
}

class Loader implements TrainingData {
  readonly numSamples: number;
  readonly numFrames: number;
  readonly cameras: string[];
  readonly stateDim: number;
  readonly actionDim: number;
  private readonly perms = new Map<number, Uint32Array>();
  /** Per sample (= dataset row): its episode's rows and the frame within. */
  private readonly sampleEpisode: Int32Array;
  private readonly sampleFrame: Int32Array;
  /** Per epoch position: the dataset row it draws (each row once, early ones `factor` times when oversampled). */
  private readonly drawRow: Uint32Array;
  /** Normalized state per row. */
  private readonly stateNorm: Float32Array;
  private readonly prompts: string[];
  private readonly samplePrompt: Int32Array;
  private readonly affine: Affine;

  constructor(
    private readonly p: Pipeline,
    private readonly rows: EpisodeRows[],
    private readonly caches: Array<FrameCache | null>,
    private readonly opts: TrainingDataOptions,
  ) {
    const total = rows.reduce((n, r) => n + r.length, 0);
    this.numFrames = total;
    this.cameras = p.robot.cameras.map((c) => c.name);
    this.stateDim = p.stateDim;
    this.actionDim = p.actionDim;
    this.sampleEpisode = new Int32Array(total);
    this.sampleFrame = new Int32Array(total);
    this.stateNorm = new Float32Array(total * p.stateDim);
    this.samplePrompt = new Int32Array(total);
    const promptIds = new Map<string, number>();
    this.prompts = [];
    const data = p.config.data;
    let row = 0;
    for (const [e, r] of rows.entries()) {
      for (let t = 0; t < r.length; t++, row++) {
        this.sampleEpisode[row] = e;
        this.sampleFrame[row] = t;
        const task = data.prompt_from_task ? p.dataset.tasks.get(r.taskIndex[t]!) : undefined;
        const prompt = task ?? data.default_prompt;
        if (prompt === null || prompt === undefined) {
          throw new UserError(
            `config ${p.config.name}: episode ${r.episode} frame ${t} has no prompt: ${data.prompt_from_task ? `task_index ${r.taskIndex[t]} resolves to no task` : 'prompt_from_task is false'} and data.default_prompt is null`,
          );
        }
        let id = promptIds.get(prompt);
        if (id === undefined) {
          id = this.prompts.length;
          this.prompts.push(prompt);
          promptIds.set(prompt, id);
        }
        this.samplePrompt[row] = id;
      }
      this.stateNorm.set(r.state, (row - r.length) * p.stateDim);
    }
    this.drawRow = drawOrder(this.sampleFrame, data.oversample_start);
    this.numSamples = this.drawRow.length;
    normalize(this.stateNorm, opts.normStats, 'state', data.norm, p.stateDim);
    this.affine = actionAffine(opts.normStats, data.norm, p.actionDim);
  }

  get imageSize() {
    return this.opts.imageSize;
  }

  get horizon() {
    return this.opts.horizon;
  }

  get present(): boolean[] {
    return this.caches.map((c) => c !== null);
  }

  private permutation(seed: number, epoch: number): Uint32Array {
    const key = seed * 1_000_003 + epoch;
    let perm = this.perms.get(key);
    if (!perm) {
      perm = epochPermutation(this.numSamples, seed, epoch);
      // A batch touches at most two epochs; keep the few most recent.
      if (this.perms.size >= 4) this.perms.delete(this.perms.keys().next().value!);
      this.perms.set(key, perm);
    }
    return perm;
  }

  batchAt(step: number, batchSize: number, seed: number): Batch {
    if (!Number.isInteger(step) || step < 0)
      throw new UserError(`batchAt: step: expected an integer >= 0, got ${step}`);
    if (!Number.isInteger(batchSize) || batchSize <= 0) {
      throw new UserError(`batchAt: batchSize: expected a positive integer, got ${batchSize}`);
    }
    const N = this.numSamples;
    const rows = new Uint32Array(batchSize);
    for (let b = 0; b < batchSize; b++) {
      const pos = step * batchSize + b;
      rows[b] = this.drawRow[this.permutation(seed, Math.floor(pos / N))[pos % N]!]!;
    }
    return this.batchOfRows(rows);
  }

  batchOfRows(rows: ArrayLike<number>): Batch {
    for (let b = 0; b < rows.length; b++) {
      const r = rows[b]!;
      if (!Number.isInteger(r) || r < 0 || r >= this.numFrames)
        throw new UserError(
          `batchOfRows: rows[${b}]: expected an integer in 0..${this.numFrames - 1}, got ${r}`,
        );
    }
    const { imageSize: S, horizon: H } = this.opts;
    const B = rows.length;
    const C = this.cameras.length;
    const sd = this.stateDim;
    const ad = this.actionDim;
    const frameBytes = S * S * 3;
    const images = new Uint8Array(B * C * frameBytes);
    const imageMask = new Uint8Array(B * C);
    const state = new Float32Array(B * sd);
    const actions = new Float32Array(B * H * ad);
    const actionPad = new Uint8Array(B * H);
    const prompts: string[] = [];
    for (let b = 0; b < B; b++) {
      const sample = rows[b]!;
      const e = this.sampleEpisode[sample]!;
      const t = this.sampleFrame[sample]!;
      state.set(this.stateNorm.subarray(sample * sd, (sample + 1) * sd), b * sd);
      actionChunk(this.p, this.rows[e]!, t, H, actions, b * H * ad, actionPad, b * H, this.affine);
      for (let c = 0; c < C; c++) {
        const cache = this.caches[c];
        if (!cache) continue;
        cache.read(sample, images, (b * C + c) * frameBytes);
        imageMask[b * C + c] = 1;
      }
      prompts.push(this.prompts[this.samplePrompt[sample]!]!);
    }
    return {
      size: B,
      imageSize: S,
      cameras: this.cameras,
      images,
      imageMask,
      state,
      stateDim: sd,
      actions,
      actionDim: ad,
      horizon: H,
      actionPad,
      prompts,
    };
  }

  close(): void {
    for (const c of this.caches) c?.close();
  }
}

/**
 * Opens the config's dataset for training: reads every episode's state and actions, builds (or
 * reuses) the frame cache of each robot camera the dataset has, and returns the batch source.
 */
export async function openTrainingData(
  config: TrainConfig,
  opts: TrainingDataOptions,
): Promise<TrainingData> {
  if (!Number.isInteger(opts.imageSize) || opts.imageSize <= 0) {
    throw new UserError(`openTrainingData: imageSize: expected a positive integer, got ${opts.imageSize}`);
  }
  if (!Number.isInteger(opts.horizon) || opts.horizon <= 0) {
    throw new UserError(`openTrainingData: horizon: expected a positive integer, got ${opts.horizon}`);
  }
  const p = await openPipeline(config, opts.cwd);
  const ds = p.dataset;
  if (ds.numFrames === 0) throw new UserError(`${ds.dir}: the dataset has no frames`);
  const dsCams = new Set(ds.cameras.map((c) => c.key));
  const mapped = config.data.camera_keys;
  for (const [cam, key] of Object.entries(mapped)) {
    if (!p.robot.cameras.some((c) => c.name === cam)) {
      throw new UserError(
        `config ${config.name}: data.camera_keys.${cam}: not a camera of robot ${p.robot.name} (${p.robot.cameras.map((c) => c.name).join(', ')})`,
      );
    }
    if (!dsCams.has(key)) {
      throw new UserError(
        `config ${config.name}: data.camera_keys.${cam}: the dataset has no feature ${key} (cameras: ${[...dsCams].join(', ') || 'none'})`,
      );
    }
  }
  const keys = p.robot.cameras.map((c) => {
    const key = mapped[c.name] ?? CAMERA_PREFIX + c.name;
    return dsCams.has(key) ? key : null;
  });
  if (keys.every((k) => k === null)) {
    throw new UserError(
      `${ds.dir}: none of robot ${p.robot.name}'s cameras (${p.robot.cameras.map((c) => CAMERA_PREFIX + c.name).join(', ')}) is in the dataset (${[...dsCams].join(', ') || 'no cameras'})`,
    );
  }
  const rows: EpisodeRows[] = [];
  for (const ep of ds.episodes) rows.push(await episodeRows(p, ep.index));
  const present = keys.filter((k) => k !== null).length;
  const caches: Array<FrameCache | null> = [];
  let built = 0;
  for (const key of keys) {
    if (key === null) {
      caches.push(null);
      continue;
    }
    const base = built * ds.numFrames;
    caches.push(
      await openFrameCache(ds, key, opts.imageSize, {
        cacheDir: opts.cacheDir,
        onProgress: (done) => opts.onProgress?.(base + done, present * ds.numFrames),
        signal: opts.signal,
      }),
    );
    built++;
  }
  return new Loader(p, rows, caches, opts);
}

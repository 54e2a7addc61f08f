/**
 * The training loader: samples are (observation at frame t, actions t..t+H-1) for every frame of every
 * episode; batches come in a seeded permutation per epoch, so the batch of a step depends on
 * (seed, step, batch size) alone and a resumed run sees exactly the data an uninterrupted one would.
 */
import path from 'node:path';
import { UserError } from '../config/errors.js';
import { type DataSource, mixesRobots, promptsNameRobot, robotsOf } from '../config/mixture.js';
import type { TrainConfig } from '../config/schema.js';
import { type Batch, checkBatchRequest } from '../transforms/batch.js';
import { frames, type Transform } from '../transforms/frames.js';
import { applyInputs, transformGroup } from '../transforms/group.js';
import type { AssetNormStats, NormStats } from '../transforms/normalize.js';
import { type FrameCache, type FrameCacheOptions, openFrameCache } from './cache.js';
import { CAMERA_PREFIX } from './info.js';
import { MixtureData } from './mixture.js';
import { type EpisodeRows, episodeRows, gatherChunk, openPipelines, type Pipeline } from './pipeline.js';

export interface TrainingDataOptions {
  imageSize: number;
  horizon: number;
  /** The stats to normalize with: one set, or one per asset (each robot's, for a mixture of robots). */
  normStats: NormStats | AssetNormStats;
  /** Where decoded frames are cached and how large a cache is read into memory (commands: VLA_CACHE_DIR, VLA_CACHE_MEM_MB). */
  frameCache?: FrameCacheOptions;
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

/** One dataset's samples (the whole of a one-dataset config's data, or one source of a mixture). */
export class Loader implements TrainingData {
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
  private readonly prompts: string[];
  private readonly samplePrompt: Int32Array;
  /** The transforms after the per-frame ones (those ran on the episodes' rows): per chunk, then the model side. */
  private readonly transforms: Transform[];
  /** The batch's chunks before normalisation, reused from batch to batch (every value is written each time). */
  private chunks = new Float64Array(0);

  constructor(
    private readonly p: Pipeline,
    private readonly rows: EpisodeRows[],
    private readonly caches: Array<FrameCache | null>,
    private readonly opts: SourceOptions,
  ) {
    const total = rows.reduce((n, r) => n + r.length, 0);
    this.numFrames = total;
    this.cameras = p.robot.cameras.map((c) => c.name);
    this.stateDim = p.stateDim;
    this.actionDim = p.actionDim;
    this.sampleEpisode = new Int32Array(total);
    this.sampleFrame = new Int32Array(total);
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
    }
    this.drawRow = drawOrder(this.sampleFrame, data.oversample_start);
    this.numSamples = this.drawRow.length;
    const g = transformGroup(p.config, p, {
      normStats: opts.normStats,
      cameras: this.cameras.length,
      imageSize: opts.imageSize,
    });
    this.transforms = [...g.perChunk, ...g.model];
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

  /** The row an epoch position at fraction `u` ∈ [0, 1) of the epoch draws (oversampling counted). */
  drawnRow(u: number): number {
    return this.drawRow[Math.min(this.drawRow.length - 1, Math.floor(u * this.drawRow.length))]!;
  }

  batchAt(step: number, batchSize: number, seed: number): Batch {
    checkBatchRequest(step, batchSize);
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
    const sd = this.stateDim;
    const ad = this.actionDim;
    const state = new Float32Array(B * sd);
    if (this.chunks.length < B * H * ad) this.chunks = new Float64Array(B * H * ad);
    const actions = this.chunks.subarray(0, B * H * ad);
    const actionPad = new Uint8Array(B * H);
    const steps = this.p.config.data.action_horizon ?? H;
    const prompts: string[] = [];
    for (let b = 0; b < B; b++) {
      const sample = rows[b]!;
      const episode = this.rows[this.sampleEpisode[sample]!]!;
      const t = this.sampleFrame[sample]!;
      state.set(episode.state.subarray(t * sd, (t + 1) * sd), b * sd);
      gatherChunk(this.p, episode, t, H, actions, b * H * ad, actionPad, b * H);
      // Steps past the robot's own chunk are padding: the loss leaves them out.
      if (steps < H) actionPad.fill(1, b * H + steps, (b + 1) * H);
      prompts.push(this.prompts[this.samplePrompt[sample]!]!);
    }
    const f = frames({
      size: B,
      stateDim: sd,
      actionDim: ad,
      horizon: H,
      state,
      actions,
      prompts,
      // The frame caches hold every frame letterboxed already.
      cameraSource: (b, c, out, offset) => {
        const cache = this.caches[c];
        if (!cache) return false;
        cache.read(rows[b]!, out, offset);
        return true;
      },
    });
    applyInputs(this.transforms, f);
    return {
      size: B,
      imageSize: S,
      cameras: this.cameras,
      images: f.images!,
      imageMask: f.imageMask!,
      state: f.modelState!,
      stateDim: sd,
      actions: f.modelActions!,
      actionDim: ad,
      horizon: H,
      actionPad,
      prompts,
      ...(steps < H && { horizons: new Int32Array(B).fill(steps) }),
    };
  }

  close(): void {
    for (const c of this.caches) c?.close();
  }
}

/**
 * Opens the config's dataset (or each dataset of its mixture) for training: reads every episode's state
 * and actions, builds (or reuses) the frame cache of each robot camera the dataset has, and returns the
 * batch source.
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
  const sources = await openPipelines(config, opts.cwd);
  // Progress over every source's frames and cameras together.
  const work = sources.map(
    ({ pipeline: p }) => p.dataset.numFrames * presentCameras(p).filter(Boolean).length,
  );
  const total = work.reduce((a, b) => a + b, 0);
  const loaders: Loader[] = [];
  let base = 0;
  for (const [i, { source, pipeline }] of sources.entries()) {
    const from = base;
    loaders.push(
      await openSource(pipeline, {
        ...opts,
        normStats: statsOf(config, opts.normStats, source),
        onProgress: opts.onProgress && ((done) => opts.onProgress!(from + done, total)),
      }),
    );
    base += work[i]!;
  }
  // One dataset is its own batch source, unless its prompts must name the robot (MixtureData adds it).
  const named = promptsNameRobot(config);
  if (loaders.length === 1 && !named) return loaders[0]!;
  const robots = sources.map((s) => s.source.robot);
  return new MixtureData(
    loaders,
    sources.map((s) => s.source.weight),
    named ? robots : null,
    sourceNames(sources.map((s) => s.source.dataset)),
  );
}

/** Each dataset's folder name, numbered where two entries read the same one (`sim_push#2`). */
function sourceNames(datasets: string[]): string[] {
  const base = datasets.map((d) => path.basename(d));
  return base.map((b, i) => (base.indexOf(b) === i && base.lastIndexOf(b) === i ? b : `${b}#${i + 1}`));
}

/** The stats a source normalizes with: its asset's, where they are given per asset. */
function statsOf(config: TrainConfig, stats: NormStats | AssetNormStats, source: DataSource): NormStats {
  if (!(stats instanceof Map)) {
    if (mixesRobots(config))
      throw new UserError(
        `config ${config.name}: trains on robots ${robotsOf(config).join(', ')}: expected norm stats per asset, got one set`,
      );
    return stats;
  }
  const found = stats.get(source.assetId);
  if (!found)
    throw new UserError(
      `config ${config.name}: ${source.field}: no norm stats for asset ${source.assetId} (robot ${source.robot}); have ${[...stats.keys()].join(', ') || 'none'} (run vla data stats ${config.name})`,
    );
  return found;
}

/** Per robot camera: the dataset's feature holding it, or null where the dataset lacks it. */
function presentCameras(p: Pipeline): Array<string | null> {
  const config = p.config;
  const ds = p.dataset;
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
  return keys;
}

/** A source's options: its own stats. */
type SourceOptions = Omit<TrainingDataOptions, 'normStats'> & { normStats: NormStats };

/** One dataset's loader: its episodes' rows read, and a frame cache per robot camera it has. */
async function openSource(p: Pipeline, opts: SourceOptions): Promise<Loader> {
  const ds = p.dataset;
  if (ds.numFrames === 0) throw new UserError(`${ds.dir}: the dataset has no frames`);
  const keys = presentCameras(p);
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
        ...opts.frameCache,
        onProgress: (done) => opts.onProgress?.(base + done, present * ds.numFrames),
        signal: opts.signal,
      }),
    );
    built++;
  }
  return new Loader(p, rows, caches, opts);
}

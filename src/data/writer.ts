import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { encode as encodePng } from 'fast-png';
import type { SchemaElement } from 'hyparquet';
import { UserError } from '../config/errors.js';
import { runTool } from './ffmpeg.js';
import { CAMERA_PREFIX, fillTemplate } from './info.js';
import { SCRATCH_DIR } from './leftovers.js';
import { imageSchema, listSchema, scalarSchema, writeParquet } from './parquet.js';
import { aggregateStats, imageStats, type StatsEntry, type StatsMap, vectorStats } from './stats.js';
import { probeVideo, type VideoCodec, VideoEncoder } from './video.js';

export type WriteFormat = 'v2.1' | 'v3.0';

export interface WriterFeatures {
  state: { names: string[] };
  action: { names: string[] };
  cameras: Array<{ name: string; height: number; width: number }>;
}

export interface CreateOptions {
  fps: number;
  robotType: string;
  format: WriteFormat;
  features: WriterFeatures;
  /** Cameras as h264 mp4 (default) or as lossless PNG bytes inside the parquet rows (`false`). */
  video?: boolean;
  /** Video codec: h264 (default) or av1 (LeRobot's own, slower to encode, frames at least 64 px). */
  codec?: VideoCodec;
  /** Constant rate factor (quality): 18 by default for h264, 30 for av1. */
  crf?: number;
  /** v3.0 starts a new data / video file once the current one passes this size. */
  dataFileMb?: number;
  videoFileMb?: number;
  /** More top-level keys for meta/info.json (LeRobot keeps keys it does not know), e.g. `simulation`. */
  extraInfo?: Record<string, unknown>;
}

/** Where an episode came from, kept beside its length in the episodes metadata (LeRobot ignores keys it does not know). */
export interface EpisodeMeta {
  /** The simulation seed it was recorded from: an interrupted recording resumes with the seeds after it. */
  seed?: number;
}

export interface FrameInput {
  state: Float32Array;
  action: Float32Array;
  /** Per camera name: uint8 HWC RGB at the camera's declared size. */
  images: Record<string, Uint8Array>;
  task: string;
}

export interface DatasetWriter {
  readonly dir: string;
  /** Episodes saved so far. */
  readonly episodes: number;
  /** Frames in the episode being recorded. */
  readonly pendingFrames: number;
  addFrame(frame: FrameInput): void;
  /** Optional back-pressure for producers faster than video encoding (a converter, an importer). */
  drain(): Promise<void>;
  saveEpisode(meta?: EpisodeMeta): Promise<void>;
  discardEpisode(): void;
  finalize(): Promise<void>;
}

const V21_DATA = 'data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet';
const V21_VIDEO = 'videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4';
const V30_DATA = 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet';
const V30_VIDEO = 'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4';
export const CHUNKS_SIZE = 1000;
/** Frames sampled for image stats: every Nth frame, about this many pixels of each. */
const STATS_FRAME_STRIDE = 4;
const STATS_PIXELS = 4096;

/**
 * LeRobot reads meta/tasks.parquet with pandas and looks tasks up by the index: this metadata makes
 * pandas restore `__index_level_0__` as that (unnamed) index, as the file LeRobot itself writes does.
 */
const PANDAS_TASKS = JSON.stringify({
  index_columns: ['__index_level_0__'],
  column_indexes: [
    {
      name: null,
      field_name: null,
      pandas_type: 'unicode',
      numpy_type: 'object',
      metadata: { encoding: 'UTF-8' },
    },
  ],
  columns: [
    {
      name: 'task_index',
      field_name: 'task_index',
      pandas_type: 'int64',
      numpy_type: 'int64',
      metadata: null,
    },
    {
      name: null,
      field_name: '__index_level_0__',
      pandas_type: 'unicode',
      numpy_type: 'object',
      metadata: null,
    },
  ],
  attributes: {},
  creator: { library: 'vla-orchestrator', version: '0.1.0' },
  pandas_version: '2.3.3',
});

function writeAtomic(file: string, content: string | Uint8Array): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, content);
  renameSync(tmp, file);
}

const jsonl = (rows: unknown[]) => rows.map((r) => `${JSON.stringify(r)}\n`).join('');

export interface SavedEpisode {
  index: number;
  length: number;
  tasks: string[];
  from: number;
  seed: number | null;
  dataChunk: number;
  dataFile: number;
  videos: Record<string, { chunk: number; file: number; from: number; to: number }>;
  stats: StatsMap;
}

/** The columns of the v3.0 data file being filled (rewritten whole at each save). */
/** A data file with no rows yet, for the given camera names. */
export const emptyDataFile = (chunk: number, file: number, cams: string[]): OpenDataFile => ({
  chunk,
  file,
  rowGroups: [],
  state: [],
  action: [],
  timestamp: [],
  frameIndex: [],
  episodeIndex: [],
  index: [],
  taskIndex: [],
  images: Object.fromEntries(cams.map((c) => [c, []])),
  bytes: 0,
});

export interface OpenDataFile {
  chunk: number;
  file: number;
  rowGroups: number[];
  state: number[][];
  action: number[][];
  timestamp: number[];
  frameIndex: bigint[];
  episodeIndex: bigint[];
  index: bigint[];
  taskIndex: bigint[];
  images: Record<string, Array<{ bytes: Uint8Array; path: null }>>;
  bytes: number;
}

/** The v3.0 video file a camera is filling, and how many frames it holds. */
export interface OpenVideoFile {
  chunk: number;
  file: number;
  frames: number;
}

/** What a writer holds between episodes: enough to go on with a dataset that another writer started. */
export interface WriterState {
  saved: SavedEpisode[];
  /** Task strings, in task_index order. */
  tasks: string[];
  /** Each saved episode's state and action rows, packed (v3.0's global stats are exact over them). */
  state: Float32Array[];
  action: Float32Array[];
  dataFile: OpenDataFile | null;
  /** Per camera feature key. */
  videoFiles: Record<string, OpenVideoFile>;
}

export interface ContinuedWriter extends DatasetWriter {
  rewriteDataFile(): void;
}

class Writer implements ContinuedWriter {
  private saved: SavedEpisode[] = [];
  private readonly taskIndex = new Map<string, number>();
  private totalFrames = 0;
  /** Rows of the pending episode. */
  private rows: Array<{ state: Float32Array; action: Float32Array; task: number }> = [];
  private pngs: Record<string, Uint8Array[]> = {};
  private pixelSamples: Record<string, number[]> = {};
  private encoders: Record<string, VideoEncoder> = {};
  private readonly allState: Float32Array[] = [];
  private readonly allAction: Float32Array[] = [];
  private dataFile: OpenDataFile | null = null;
  /** Per camera: the v3.0 video file being filled and how many frames it holds. */
  private videoFiles: Record<string, OpenVideoFile> = {};
  private finalized = false;
  private readonly video: boolean;
  private readonly stateDim: number;
  private readonly actionDim: number;

  constructor(
    readonly dir: string,
    private readonly opts: CreateOptions,
    state?: WriterState,
  ) {
    this.video = opts.video ?? true;
    this.stateDim = opts.features.state.names.length;
    this.actionDim = opts.features.action.names.length;
    if (state) {
      this.saved = [...state.saved];
      for (const [i, task] of state.tasks.entries()) this.taskIndex.set(task, i);
      this.totalFrames = state.saved.reduce((n, e) => n + e.length, 0);
      this.allState.push(...state.state);
      this.allAction.push(...state.action);
      this.dataFile = state.dataFile;
      this.videoFiles = { ...state.videoFiles };
    }
  }

  get episodes(): number {
    return this.saved.length;
  }

  get pendingFrames(): number {
    return this.rows.length;
  }

  private get cameras() {
    return this.opts.features.cameras;
  }

  private segmentFile(cam: string): string {
    return path.join(this.dir, SCRATCH_DIR, `episode-${this.saved.length}-${cam}.mp4`);
  }

  addFrame(frame: FrameInput): void {
    if (this.finalized) throw new UserError(`${this.dir}: dataset already finalized`);
    const frameNo = this.rows.length;
    const check = (what: string, v: Float32Array, dim: number) => {
      if (!(v instanceof Float32Array) || v.length !== dim) {
        throw new UserError(
          `${this.dir}: frame ${frameNo}: ${what}: expected Float32Array of ${dim}, got ${v?.constructor?.name ?? typeof v} of ${v?.length}`,
        );
      }
    };
    check('state', frame.state, this.stateDim);
    check('action', frame.action, this.actionDim);
    if (typeof frame.task !== 'string' || frame.task === '') {
      throw new UserError(
        `${this.dir}: frame ${frameNo}: task: expected a non-empty string, got ${JSON.stringify(frame.task)}`,
      );
    }
    for (const cam of this.cameras) {
      const img = frame.images[cam.name];
      const bytes = cam.height * cam.width * 3;
      if (!(img instanceof Uint8Array) || img.length !== bytes) {
        throw new UserError(
          `${this.dir}: frame ${frameNo}: images.${cam.name}: expected ${cam.height}x${cam.width}x3 uint8 (${bytes} bytes), got ${img instanceof Uint8Array ? `${img.length} bytes` : typeof img}`,
        );
      }
    }
    for (const name of Object.keys(frame.images)) {
      if (!this.cameras.some((c) => c.name === name)) {
        throw new UserError(
          `${this.dir}: frame ${frameNo}: images.${name}: not a declared camera (${this.cameras.map((c) => c.name).join(', ')})`,
        );
      }
    }
    let task = this.taskIndex.get(frame.task);
    if (task === undefined) {
      task = this.taskIndex.size;
      this.taskIndex.set(frame.task, task);
    }
    for (const cam of this.cameras) {
      const img = frame.images[cam.name]!;
      if (this.video) {
        if (!this.encoders[cam.name]) {
          mkdirSync(path.join(this.dir, SCRATCH_DIR), { recursive: true });
          this.encoders[cam.name] = new VideoEncoder(this.segmentFile(cam.name), {
            width: cam.width,
            height: cam.height,
            fps: this.opts.fps,
            codec: this.opts.codec,
            crf: this.opts.crf,
          });
        }
        this.encoders[cam.name]!.write(img);
      } else {
        this.pngs[cam.name] = this.pngs[cam.name] ?? [];
        this.pngs[cam.name]!.push(
          encodePng({ width: cam.width, height: cam.height, data: img, channels: 3 }),
        );
      }
      if (frameNo % STATS_FRAME_STRIDE === 0) {
        this.pixelSamples[cam.name] = this.pixelSamples[cam.name] ?? [];
        const samples = this.pixelSamples[cam.name]!;
        const stride = Math.max(1, Math.floor((cam.width * cam.height) / STATS_PIXELS));
        for (let p = 0; p < cam.width * cam.height; p += stride)
          samples.push(img[p * 3]!, img[p * 3 + 1]!, img[p * 3 + 2]!);
      }
    }
    this.rows.push({ state: frame.state.slice(), action: frame.action.slice(), task });
  }

  /** Waits until the video encoders have taken the queued frames: bounds memory for fast producers. */
  async drain(): Promise<void> {
    for (const enc of Object.values(this.encoders)) await enc.drain();
  }

  discardEpisode(): void {
    for (const enc of Object.values(this.encoders)) enc.abort();
    this.resetEpisode();
  }

  private resetEpisode(): void {
    this.rows = [];
    this.pngs = {};
    this.pixelSamples = {};
    this.encoders = {};
    // Tasks first seen in a discarded episode must not take an index.
    const used = new Set(this.saved.flatMap((e) => e.tasks));
    for (const [task] of this.taskIndex) if (!used.has(task)) this.taskIndex.delete(task);
  }

  private episodeStats(state: Float32Array, action: Float32Array, first: number, episode: number): StatsMap {
    const n = this.rows.length;
    const withQ = this.opts.format === 'v3.0';
    const stats: StatsMap = {
      'observation.state': vectorStats(state, this.stateDim, withQ),
      action: vectorStats(action, this.actionDim, withQ),
      timestamp: vectorStats(
        Float64Array.from({ length: n }, (_, i) => i / this.opts.fps),
        1,
        withQ,
      ),
      frame_index: vectorStats(
        Float64Array.from({ length: n }, (_, i) => i),
        1,
        withQ,
      ),
      episode_index: vectorStats(new Float64Array(n).fill(episode), 1, withQ),
      index: vectorStats(
        Float64Array.from({ length: n }, (_, i) => first + i),
        1,
        withQ,
      ),
      task_index: vectorStats(
        Float64Array.from(this.rows, (r) => r.task),
        1,
        withQ,
      ),
    };
    for (const cam of this.cameras) {
      stats[CAMERA_PREFIX + cam.name] = imageStats(
        this.pixelSamples[cam.name] ?? [],
        Math.ceil(n / STATS_FRAME_STRIDE),
        withQ,
      );
    }
    return stats;
  }

  async saveEpisode(meta: EpisodeMeta = {}): Promise<void> {
    if (meta.seed !== undefined && !Number.isSafeInteger(meta.seed)) {
      throw new UserError(`${this.dir}: saveEpisode: seed: expected an integer, got ${meta.seed}`);
    }
    const n = this.rows.length;
    if (n === 0) throw new UserError(`${this.dir}: saveEpisode: the episode has no frames`);
    const episode = this.saved.length;
    const first = this.totalFrames;
    const state = new Float32Array(n * this.stateDim);
    const action = new Float32Array(n * this.actionDim);
    for (const [i, r] of this.rows.entries()) {
      state.set(r.state, i * this.stateDim);
      action.set(r.action, i * this.actionDim);
    }
    const encoders = this.encoders;
    try {
      for (const enc of Object.values(encoders)) await enc.close();
    } catch (e) {
      for (const enc of Object.values(encoders)) enc.abort();
      this.resetEpisode();
      throw e;
    }
    const tasks = [...new Set(this.rows.map((r) => r.task))].map(
      (t) => [...this.taskIndex].find(([, i]) => i === t)![0],
    );
    const record: SavedEpisode = {
      index: episode,
      length: n,
      tasks,
      from: first,
      seed: meta.seed ?? null,
      dataChunk: 0,
      dataFile: 0,
      videos: {},
      stats: this.episodeStats(state, action, first, episode),
    };
    if (this.opts.format === 'v2.1') this.writeV21Data(record, state, action);
    else await this.writeV30Data(record, state, action);
    this.saved.push(record);
    this.allState.push(state);
    this.allAction.push(action);
    this.totalFrames += n;
    this.resetEpisode();
    this.writeMeta();
  }

  private rowColumns(state: Float32Array, action: Float32Array, episode: number, first: number) {
    const n = this.rows.length;
    return {
      state: Array.from({ length: n }, (_, i) =>
        Array.from(state.subarray(i * this.stateDim, (i + 1) * this.stateDim)),
      ),
      action: Array.from({ length: n }, (_, i) =>
        Array.from(action.subarray(i * this.actionDim, (i + 1) * this.actionDim)),
      ),
      timestamp: Array.from({ length: n }, (_, i) => Math.fround(i / this.opts.fps)),
      frameIndex: Array.from({ length: n }, (_, i) => BigInt(i)),
      episodeIndex: Array.from({ length: n }, () => BigInt(episode)),
      index: Array.from({ length: n }, (_, i) => BigInt(first + i)),
      taskIndex: this.rows.map((r) => BigInt(r.task)),
    };
  }

  private parquetColumns(c: Omit<OpenDataFile, 'chunk' | 'file' | 'rowGroups' | 'bytes'>) {
    const cols: Array<{ schema: SchemaElement[]; data: unknown[] }> = [
      { schema: listSchema('observation.state', 'FLOAT'), data: c.state },
      { schema: listSchema('action', 'FLOAT'), data: c.action },
    ];
    if (!this.video) {
      for (const cam of this.cameras)
        cols.push({ schema: imageSchema(CAMERA_PREFIX + cam.name), data: c.images[cam.name]! });
    }
    cols.push(
      { schema: scalarSchema('timestamp', 'FLOAT'), data: c.timestamp },
      { schema: scalarSchema('frame_index', 'INT64'), data: c.frameIndex },
      { schema: scalarSchema('episode_index', 'INT64'), data: c.episodeIndex },
      { schema: scalarSchema('index', 'INT64'), data: c.index },
      { schema: scalarSchema('task_index', 'INT64'), data: c.taskIndex },
    );
    return cols;
  }

  /**
   * The column types as Hugging Face `datasets` records them, so LeRobot's loader sees lists of floats
   * and images rather than inferring them; v2.1's `datasets` (3.x) knows `Sequence`, v3.0's `List`.
   */
  private hfMetadata(): Record<string, string> {
    const list = this.opts.format === 'v2.1' ? 'Sequence' : 'List';
    const value = (dtype: string) => ({ dtype, _type: 'Value' });
    const vec = (n: number) => ({ feature: value('float32'), length: n, _type: list });
    const features: Record<string, unknown> = {
      'observation.state': vec(this.stateDim),
      action: vec(this.actionDim),
    };
    if (!this.video) for (const cam of this.cameras) features[CAMERA_PREFIX + cam.name] = { _type: 'Image' };
    Object.assign(features, {
      timestamp: value('float32'),
      frame_index: value('int64'),
      episode_index: value('int64'),
      index: value('int64'),
      task_index: value('int64'),
    });
    return { huggingface: JSON.stringify({ info: { features } }) };
  }

  private pngColumns(): Record<string, Array<{ bytes: Uint8Array; path: null }>> {
    const out: Record<string, Array<{ bytes: Uint8Array; path: null }>> = {};
    for (const cam of this.cameras)
      out[cam.name] = (this.pngs[cam.name] ?? []).map((bytes) => ({ bytes, path: null }));
    return out;
  }

  private writeV21Data(record: SavedEpisode, state: Float32Array, action: Float32Array): void {
    const chunk = Math.floor(record.index / CHUNKS_SIZE);
    record.dataChunk = chunk;
    for (const cam of this.cameras.filter(() => this.video)) {
      const key = CAMERA_PREFIX + cam.name;
      const target = path.join(
        this.dir,
        fillTemplate(V21_VIDEO, { episode_chunk: chunk, video_key: key, episode_index: record.index }),
      );
      mkdirSync(path.dirname(target), { recursive: true });
      renameSync(this.segmentFile(cam.name), target);
      record.videos[key] = { chunk, file: record.index, from: 0, to: record.length / this.opts.fps };
    }
    const file = path.join(
      this.dir,
      fillTemplate(V21_DATA, { episode_chunk: chunk, episode_index: record.index }),
    );
    mkdirSync(path.dirname(file), { recursive: true });
    const cols = { ...this.rowColumns(state, action, record.index, record.from), images: this.pngColumns() };
    writeParquet(file, this.parquetColumns(cols) as never, [record.length], this.hfMetadata());
  }

  private async writeV30Data(record: SavedEpisode, state: Float32Array, action: Float32Array): Promise<void> {
    const limit = (this.opts.dataFileMb ?? 100) * 1024 * 1024;
    if (!this.dataFile || this.dataFile.bytes > limit) {
      const next = this.dataFile ? this.dataFile.chunk * CHUNKS_SIZE + this.dataFile.file + 1 : 0;
      this.dataFile = emptyDataFile(
        Math.floor(next / CHUNKS_SIZE),
        next % CHUNKS_SIZE,
        this.cameras.map((c) => c.name),
      );
    }
    for (const cam of this.cameras.filter(() => this.video)) {
      const key = CAMERA_PREFIX + cam.name;
      record.videos[key] = await this.appendVideo(key, this.segmentFile(cam.name), record.length);
    }
    const df = this.dataFile;
    const cols = this.rowColumns(state, action, record.index, record.from);
    df.state.push(...cols.state);
    df.action.push(...cols.action);
    df.timestamp.push(...cols.timestamp);
    df.frameIndex.push(...cols.frameIndex);
    df.episodeIndex.push(...cols.episodeIndex);
    df.index.push(...cols.index);
    df.taskIndex.push(...cols.taskIndex);
    for (const [cam, list] of Object.entries(this.pngColumns())) df.images[cam]!.push(...list);
    df.rowGroups.push(record.length);
    record.dataChunk = df.chunk;
    record.dataFile = df.file;
    this.writeDataFile(df);
  }

  private writeDataFile(df: OpenDataFile): void {
    const file = path.join(this.dir, fillTemplate(V30_DATA, { chunk_index: df.chunk, file_index: df.file }));
    mkdirSync(path.dirname(file), { recursive: true });
    writeParquet(file, this.parquetColumns(df) as never, df.rowGroups, this.hfMetadata());
    df.bytes = statSync(file).size;
  }

  /**
   * Writes the open v3.0 data file again from the rows the writer holds: a writer killed after writing
   * an episode's rows but before its metadata left rows there that no episode lists.
   */
  rewriteDataFile(): void {
    if (this.dataFile) this.writeDataFile(this.dataFile);
  }

  /**
   * v3.0 packs episodes into one mp4 per camera: the new segment is appended by stream copy (no
   * re-encoding) into a new file that replaces the old one; where the episode starts is read back
   * from the result rather than assumed.
   */
  private async appendVideo(key: string, segment: string, length: number) {
    const limit = (this.opts.videoFileMb ?? 500) * 1024 * 1024;
    let cur = this.videoFiles[key];
    const fileOf = (c: { chunk: number; file: number }) =>
      path.join(
        this.dir,
        fillTemplate(V30_VIDEO, { video_key: key, chunk_index: c.chunk, file_index: c.file }),
      );
    if (!cur || statSync(fileOf(cur)).size > limit) {
      const next = cur ? cur.chunk * CHUNKS_SIZE + cur.file + 1 : 0;
      cur = { chunk: Math.floor(next / CHUNKS_SIZE), file: next % CHUNKS_SIZE, frames: 0 };
      this.videoFiles[key] = cur;
    }
    const target = fileOf(cur);
    mkdirSync(path.dirname(target), { recursive: true });
    const place = { chunk: cur.chunk, file: cur.file };
    if (!existsSync(target)) {
      renameSync(segment, target);
      const pts = (await probeVideo(target)).pts;
      cur.frames = pts.length;
      return { ...place, from: pts[0] ?? 0, to: (pts[0] ?? 0) + length / this.opts.fps };
    }
    const before = cur.frames;
    const list = `${segment}.txt`;
    const quote = (f: string) => `file '${f.replace(/'/g, "'\\''")}'\n`;
    writeFileSync(list, quote(target) + quote(segment));
    const tmp = `${target}.tmp-${process.pid}.mp4`;
    await runTool(
      'ffmpeg',
      ['-v', 'error', '-y', '-f', 'concat', '-safe', '0', '-i', list, '-c', 'copy', tmp],
      `${target}: cannot append an episode's video`,
    );
    const pts = (await probeVideo(tmp)).pts;
    if (pts.length !== before + length) {
      rmSync(tmp, { force: true });
      throw new UserError(
        `${target}: appending an episode gave ${pts.length} frames, expected ${before + length}`,
      );
    }
    renameSync(tmp, target);
    rmSync(list, { force: true });
    rmSync(segment, { force: true });
    cur.frames = pts.length;
    return { ...place, from: pts[before]!, to: pts[before]! + length / this.opts.fps };
  }

  private featuresJson(): Record<string, unknown> {
    const vec = (names: string[]) => ({ dtype: 'float32', shape: [names.length], names });
    const scalar = (dtype: string) => ({ dtype, shape: [1], names: null });
    const features: Record<string, unknown> = {
      'observation.state': vec(this.opts.features.state.names),
      action: vec(this.opts.features.action.names),
    };
    for (const cam of this.cameras) {
      features[CAMERA_PREFIX + cam.name] = this.video
        ? {
            dtype: 'video',
            shape: [cam.height, cam.width, 3],
            names: ['height', 'width', 'channels'],
            info: {
              'video.height': cam.height,
              'video.width': cam.width,
              'video.codec': this.opts.codec ?? 'h264',
              'video.pix_fmt': 'yuv420p',
              'video.is_depth_map': false,
              'video.fps': this.opts.fps,
              'video.channels': 3,
              has_audio: false,
            },
          }
        : { dtype: 'image', shape: [cam.height, cam.width, 3], names: ['height', 'width', 'channel'] };
    }
    Object.assign(features, {
      timestamp: scalar('float32'),
      frame_index: scalar('int64'),
      episode_index: scalar('int64'),
      index: scalar('int64'),
      task_index: scalar('int64'),
    });
    return features;
  }

  /** meta/info.json as it stands with the episodes saved so far. */
  info(): Record<string, unknown> {
    const v21 = this.opts.format === 'v2.1';
    const videoCams = this.video ? this.cameras.length : 0;
    const info: Record<string, unknown> = {
      codebase_version: this.opts.format,
      robot_type: this.opts.robotType,
      total_episodes: this.saved.length,
      total_frames: this.totalFrames,
      total_tasks: this.taskIndex.size,
      ...(v21
        ? {
            total_videos: this.saved.length * videoCams,
            total_chunks: Math.ceil(this.saved.length / CHUNKS_SIZE),
            chunks_size: CHUNKS_SIZE,
          }
        : {
            chunks_size: CHUNKS_SIZE,
            data_files_size_in_mb: this.opts.dataFileMb ?? 100,
            video_files_size_in_mb: this.opts.videoFileMb ?? 500,
          }),
      fps: this.opts.fps,
      splits: { train: `0:${this.saved.length}` },
      data_path: v21 ? V21_DATA : V30_DATA,
      video_path: videoCams > 0 ? (v21 ? V21_VIDEO : V30_VIDEO) : null,
      features: this.featuresJson(),
    };
    return Object.assign(info, this.opts.extraInfo);
  }

  private writeMeta(): void {
    const meta = path.join(this.dir, 'meta');
    const v21 = this.opts.format === 'v2.1';
    const info = this.info();
    // Data files are in place before the metadata that points at them, so a crash leaves a readable dataset.
    if (v21) {
      writeAtomic(
        path.join(meta, 'episodes.jsonl'),
        jsonl(
          this.saved.map((e) => ({
            episode_index: e.index,
            tasks: e.tasks,
            length: e.length,
            ...(e.seed !== null && { seed: e.seed }),
          })),
        ),
      );
      writeAtomic(
        path.join(meta, 'episodes_stats.jsonl'),
        jsonl(this.saved.map((e) => ({ episode_index: e.index, stats: e.stats }))),
      );
      writeAtomic(
        path.join(meta, 'tasks.jsonl'),
        jsonl([...this.taskIndex].map(([task, i]) => ({ task_index: i, task }))),
      );
    } else {
      this.writeV30Episodes(meta);
      const tasks = [...this.taskIndex];
      writeParquet(
        path.join(meta, 'tasks.parquet'),
        [
          { schema: scalarSchema('task_index', 'INT64'), data: tasks.map(([, i]) => BigInt(i)) },
          { schema: scalarSchema('__index_level_0__', 'STRING'), data: tasks.map(([t]) => t) },
        ] as never,
        [tasks.length],
        { pandas: PANDAS_TASKS },
      );
      writeAtomic(path.join(meta, 'stats.json'), `${JSON.stringify(this.globalStats(), null, 2)}\n`);
    }
    // Last: the episodes info.json counts are complete, which resume.ts relies on after a crash.
    writeAtomic(path.join(meta, 'info.json'), `${JSON.stringify(info, null, 4)}\n`);
  }

  /** Exact stats for state and actions over every frame; the rest pooled from the episodes. */
  private globalStats(): StatsMap {
    const stats = aggregateStats(this.saved.map((e) => e.stats));
    const concat = (parts: Float32Array[]) => {
      const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      let off = 0;
      for (const p of parts) {
        out.set(p, off);
        off += p.length;
      }
      return out;
    };
    stats['observation.state'] = vectorStats(concat(this.allState), this.stateDim);
    stats.action = vectorStats(concat(this.allAction), this.actionDim);
    return stats;
  }

  private writeV30Episodes(meta: string): void {
    const eps = this.saved;
    const int = (name: string, f: (e: SavedEpisode) => number) => ({
      schema: scalarSchema(name, 'INT64'),
      data: eps.map((e) => BigInt(f(e))),
    });
    const cols: Array<{ schema: SchemaElement[]; data: unknown[] }> = [
      int('episode_index', (e) => e.index),
      {
        schema: listSchema('tasks', 'STRING'),
        data: eps.map((e) => e.tasks),
      },
      int('length', (e) => e.length),
    ];
    if (eps.some((e) => e.seed !== null)) {
      cols.push({
        schema: scalarSchema('seed', 'INT64'),
        data: eps.map((e) => (e.seed === null ? null : BigInt(e.seed))),
      });
    }
    cols.push(
      int('data/chunk_index', (e) => e.dataChunk),
      int('data/file_index', (e) => e.dataFile),
      int('dataset_from_index', (e) => e.from),
      int('dataset_to_index', (e) => e.from + e.length),
    );
    for (const cam of this.cameras.filter(() => this.video)) {
      const key = CAMERA_PREFIX + cam.name;
      cols.push(
        int(`videos/${key}/chunk_index`, (e) => e.videos[key]!.chunk),
        int(`videos/${key}/file_index`, (e) => e.videos[key]!.file),
        {
          schema: scalarSchema(`videos/${key}/from_timestamp`, 'DOUBLE'),
          data: eps.map((e) => e.videos[key]!.from),
        },
        {
          schema: scalarSchema(`videos/${key}/to_timestamp`, 'DOUBLE'),
          data: eps.map((e) => e.videos[key]!.to),
        },
      );
    }
    const first = eps[0]!.stats;
    for (const [feature, entry] of Object.entries(first)) {
      for (const stat of Object.keys(entry)) {
        const nested = Array.isArray((entry[stat] as unknown[])[0]);
        const type = stat === 'count' ? 'INT64' : 'DOUBLE';
        const schema = nested
          ? nestedListSchema(`stats/${feature}/${stat}`)
          : listSchema(`stats/${feature}/${stat}`, type);
        const value = (e: SavedEpisode) => (e.stats[feature] as StatsEntry)[stat] as unknown[];
        cols.push({
          schema,
          data: eps.map((e) => (type === 'INT64' ? value(e).map((v) => BigInt(v as number)) : value(e))),
        });
      }
    }
    cols.push(
      int('meta/episodes/chunk_index', () => 0),
      int('meta/episodes/file_index', () => 0),
    );
    const file = path.join(meta, 'episodes', 'chunk-000', 'file-000.parquet');
    mkdirSync(path.dirname(file), { recursive: true });
    writeParquet(file, cols as never, [eps.length]);
  }

  async finalize(): Promise<void> {
    if (this.rows.length > 0) {
      throw new UserError(
        `${this.dir}: finalize: an episode of ${this.rows.length} frames is still open (call saveEpisode or discardEpisode first)`,
      );
    }
    if (this.saved.length === 0) throw new UserError(`${this.dir}: finalize: no episode was saved`);
    this.writeMeta();
    rmSync(path.join(this.dir, SCRATCH_DIR), { recursive: true, force: true });
    this.finalized = true;
  }
}

/** Image stats are [3][1][1] per stat: a list of lists of lists of doubles. */
function nestedListSchema(name: string): SchemaElement[] {
  const level = (n: string): SchemaElement[] => [
    {
      name: n,
      repetition_type: 'OPTIONAL',
      num_children: 1,
      converted_type: 'LIST',
      logical_type: { type: 'LIST' },
    },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
  ];
  return [
    ...level(name),
    ...level('element'),
    ...level('element'),
    { name: 'element', type: 'DOUBLE', repetition_type: 'OPTIONAL' },
  ];
}

/** The keys writeMeta fills in meta/info.json (either format): extraInfo may not replace them. */
const INFO_KEYS = new Set([
  'codebase_version',
  'robot_type',
  'total_episodes',
  'total_frames',
  'total_tasks',
  'total_videos',
  'total_chunks',
  'chunks_size',
  'data_files_size_in_mb',
  'video_files_size_in_mb',
  'fps',
  'splits',
  'data_path',
  'video_path',
  'features',
]);

/** The keys of meta/info.json that grow with the episodes; the others follow from the options. */
export const INFO_TOTALS = [
  'total_episodes',
  'total_frames',
  'total_tasks',
  'total_videos',
  'total_chunks',
  'splits',
];

/** meta/info.json as a writer with these options writes it, less its totals: what a dataset to go on with must hold. */
export function infoSettings(opts: CreateOptions): Record<string, unknown> {
  const info = new Writer('', opts).info();
  for (const key of INFO_TOTALS) delete info[key];
  return info;
}

/** Refuses options no dataset can be written with, before any file is touched. */
export function checkCreateOptions(opts: CreateOptions): void {
  if (!(opts.fps > 0)) throw new UserError(`createDataset: fps: expected a positive number, got ${opts.fps}`);
  if (opts.format !== 'v2.1' && opts.format !== 'v3.0') {
    throw new UserError(`createDataset: format: expected v2.1 or v3.0, got ${JSON.stringify(opts.format)}`);
  }
  for (const part of ['state', 'action'] as const) {
    if (!(opts.features[part]?.names?.length > 0)) {
      throw new UserError(`createDataset: features.${part}.names: expected at least one name`);
    }
  }
  const owned = Object.keys(opts.extraInfo ?? {}).filter((k) => INFO_KEYS.has(k));
  if (owned.length > 0) {
    throw new UserError(
      `createDataset: extraInfo: ${owned.join(', ')} ${owned.length === 1 ? 'is a key' : 'are keys'} LeRobot's info.json defines; expected keys of your own`,
    );
  }
  if (opts.codec !== undefined && opts.codec !== 'h264' && opts.codec !== 'av1') {
    throw new UserError(`createDataset: codec: expected h264 or av1, got ${JSON.stringify(opts.codec)}`);
  }
  const names = new Set<string>();
  for (const cam of opts.features.cameras) {
    if (opts.codec === 'av1' && (opts.video ?? true) && (cam.height < 64 || cam.width < 64)) {
      throw new UserError(
        `createDataset: camera ${cam.name}: SVT-AV1 needs frames of at least 64x64, got ${cam.height}x${cam.width}`,
      );
    }
    if (!/^[\w.-]+$/.test(cam.name) || names.has(cam.name)) {
      throw new UserError(
        `createDataset: camera name ${JSON.stringify(cam.name)}: expected a unique name of letters, digits, _ . -`,
      );
    }
    names.add(cam.name);
  }
}

/**
 * Starts a new LeRobot dataset in `dir` (which must be empty or absent). Each saved episode is on disk
 * with its metadata when `saveEpisode` resolves.
 */
export async function createDataset(dir: string, opts: CreateOptions): Promise<DatasetWriter> {
  checkCreateOptions(opts);
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new UserError(`${dir}: already exists and is not empty (choose a new folder)`);
  }
  mkdirSync(dir, { recursive: true });
  return new Writer(path.resolve(dir), opts);
}

/**
 * A writer that goes on with the dataset in `dir` from `state`, the episodes already there (see
 * resume.ts, which reads them back and checks that they were written with the same options).
 */
export function continueDataset(dir: string, opts: CreateOptions, state: WriterState): ContinuedWriter {
  checkCreateOptions(opts);
  return new Writer(path.resolve(dir), opts, state);
}

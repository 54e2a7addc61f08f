import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { decode as decodePng } from 'fast-png';
import { describeValue, UserError } from '../config/errors.js';
import { resizeWithPad } from '../transforms/image.js';
import {
  CAMERA_PREFIX,
  type CameraFeature,
  type DatasetInfo,
  fillTemplate,
  readInfo,
  readJson,
  readJsonl,
} from './info.js';
import { openParquet, type ParquetFile, readColumns, text, toNumber } from './parquet.js';
import { aggregateStats, type StatsMap } from './stats.js';
import { decodeFrames, probeVideo, type VideoProbe } from './video.js';

/** LeRobot's tolerance between a frame's timestamp and the video frame that shows it. */
export const TIMESTAMP_TOLERANCE_S = 1e-4;

export interface EpisodeVideo {
  file: string;
  /** Where the episode starts inside the file (v3.0 packs many episodes per file). */
  fromTimestamp: number;
  toTimestamp: number | null;
}

export interface Episode {
  index: number;
  length: number;
  tasks: string[];
  /** Rows [from, to) in the dataset's global `index`. */
  from: number;
  to: number;
  dataFile: string;
  /** The episode's first row inside dataFile. */
  fileRow: number;
  /** Per camera feature key. */
  videos: Record<string, EpisodeVideo>;
  stats: StatsMap | null;
  /** The simulation seed `vla sim record` recorded it from (our key `seed`), null for other datasets. */
  seed: number | null;
}

/** The frames of one episode, in frame order. Vectors are packed rows. */
export interface EpisodeData {
  episode: number;
  length: number;
  state: Float32Array | null;
  stateDim: number;
  action: Float32Array | null;
  actionDim: number;
  timestamp: Float64Array;
  frameIndex: Int32Array;
  index: Float64Array;
  episodeIndex: Int32Array;
  taskIndex: Int32Array;
}

export interface Frames {
  /** uint8 [n, height, width, 3]. */
  data: Uint8Array;
  count: number;
  width: number;
  height: number;
}

const rel = (dir: string, file: string) => path.relative(dir, file) || file;

function floatRows(
  values: unknown[],
  dim: number,
  file: string,
  column: string,
  firstRow: number,
): Float32Array {
  const out = new Float32Array(values.length * dim);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    const arr =
      Array.isArray(v) || ArrayBuffer.isView(v)
        ? (v as ArrayLike<number>)
        : typeof v === 'number'
          ? [v]
          : null;
    if (!arr || arr.length !== dim) {
      throw new UserError(
        `${file}: row ${firstRow + i}, column ${column}: expected ${dim} numbers, got ${describeValue(Array.isArray(v) ? v : arr ? Array.from(arr) : v)}`,
      );
    }
    for (let k = 0; k < dim; k++) out[i * dim + k] = Number(arr[k]);
  }
  return out;
}

function nearest(sorted: number[], t: number): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! < t) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && Math.abs(sorted[lo - 1]! - t) <= Math.abs(sorted[lo]! - t)) return lo - 1;
  return lo;
}

export class LeRobotDataset {
  /** Disagreements between info.json totals and the episodes' own metadata (the episodes win). */
  readonly warnings: string[] = [];
  private readonly parquets = new Map<string, Promise<ParquetFile>>();
  private readonly probes = new Map<string, Promise<VideoProbe>>();

  constructor(
    readonly dir: string,
    readonly info: DatasetInfo,
    readonly episodes: Episode[],
    /** Task strings by task_index. */
    readonly tasks: Map<number, string>,
    readonly stats: StatsMap | null,
  ) {
    const frames = episodes.reduce((n, e) => n + e.length, 0);
    if (info.totalEpisodes !== episodes.length) {
      this.warnings.push(
        `meta/info.json: total_episodes is ${info.totalEpisodes} but the episodes metadata lists ${episodes.length}`,
      );
    }
    if (info.totalFrames !== frames) {
      this.warnings.push(
        `meta/info.json: total_frames is ${info.totalFrames} but the episodes' lengths sum to ${frames}`,
      );
    }
    if (info.totalTasks !== null && info.totalTasks !== tasks.size) {
      this.warnings.push(
        `meta/info.json: total_tasks is ${info.totalTasks} but the tasks metadata lists ${tasks.size}`,
      );
    }
  }

  get numFrames(): number {
    return this.episodes.reduce((n, e) => n + e.length, 0);
  }

  get cameras(): CameraFeature[] {
    return this.info.cameras;
  }

  episode(index: number): Episode {
    const ep = this.episodes.find((e) => e.index === index);
    if (!ep) {
      const ids = this.episodes.map((e) => e.index);
      throw new UserError(
        `${this.dir}: no episode ${index} (episodes: ${ids.length > 0 ? `${Math.min(...ids)}..${Math.max(...ids)}` : 'none'})`,
      );
    }
    return ep;
  }

  camera(nameOrKey: string): CameraFeature {
    const cam =
      this.info.cameras.find((c) => c.key === nameOrKey) ??
      this.info.cameras.find((c) => c.key === CAMERA_PREFIX + nameOrKey);
    if (!cam) {
      throw new UserError(
        `${this.dir}: no camera ${JSON.stringify(nameOrKey)} (cameras: ${this.info.cameras.map((c) => c.key).join(', ') || 'none'})`,
      );
    }
    return cam;
  }

  parquet(file: string): Promise<ParquetFile> {
    let p = this.parquets.get(file);
    if (!p) {
      p = openParquet(file);
      this.parquets.set(file, p);
      p.catch(() => this.parquets.delete(file));
    }
    return p;
  }

  /** The episode's rows: state, action and the bookkeeping columns. */
  async readEpisode(index: number): Promise<EpisodeData> {
    const ep = this.episode(index);
    const pq = await this.parquet(ep.dataFile);
    const file = rel(this.dir, ep.dataFile);
    if (ep.fileRow + ep.length > pq.numRows) {
      throw new UserError(
        `${file}: episode ${index} needs rows ${ep.fileRow}..${ep.fileRow + ep.length} but the file has ${pq.numRows} rows`,
      );
    }
    const feats = this.info.features;
    const wanted = ['timestamp', 'frame_index', 'episode_index', 'index', 'task_index'].filter((c) =>
      pq.columns.includes(c),
    );
    const stateDim = feats['observation.state']?.shape.reduce((a, b) => a * b, 1) ?? 0;
    const actionDim = feats.action?.shape.reduce((a, b) => a * b, 1) ?? 0;
    if (stateDim > 0) wanted.push('observation.state');
    if (actionDim > 0) wanted.push('action');
    const cols = await readColumns(pq, wanted, ep.fileRow, ep.fileRow + ep.length);
    const n = ep.length;
    const ints = (name: string, fallback: (i: number) => number) => {
      const c = cols[name];
      return Int32Array.from({ length: n }, (_, i) => (c ? toNumber(c[i]) : fallback(i)));
    };
    const timestamp = cols.timestamp
      ? Float64Array.from(cols.timestamp, (v) => toNumber(v))
      : Float64Array.from({ length: n }, (_, i) => i / this.info.fps);
    return {
      episode: index,
      length: n,
      state:
        stateDim > 0
          ? floatRows(cols['observation.state']!, stateDim, file, 'observation.state', ep.fileRow)
          : null,
      stateDim,
      action: actionDim > 0 ? floatRows(cols.action!, actionDim, file, 'action', ep.fileRow) : null,
      actionDim,
      timestamp,
      frameIndex: ints('frame_index', (i) => i),
      index: Float64Array.from({ length: n }, (_, i) => (cols.index ? toNumber(cols.index[i]) : ep.from + i)),
      episodeIndex: ints('episode_index', () => index),
      taskIndex: ints('task_index', () => 0),
    };
  }

  /** The container's frame times, probed once per file. */
  probe(file: string): Promise<VideoProbe> {
    let p = this.probes.get(file);
    if (!p) {
      p = probeVideo(file);
      this.probes.set(file, p);
      p.catch(() => this.probes.delete(file));
    }
    return p;
  }

  /**
   * Calls `onFrame(i, rgb, width, height)` for the episode's frames (all, or those listed in `only`),
   * in ascending order, at the camera's native resolution. `rgb` is reused between calls.
   */
  async streamFrames(
    index: number,
    camera: string,
    onFrame: (i: number, rgb: Uint8Array, width: number, height: number) => void,
    only?: number[],
  ): Promise<void> {
    const ep = this.episode(index);
    const cam = this.camera(camera);
    const wanted = only ?? Array.from({ length: ep.length }, (_, i) => i);
    for (const i of wanted) {
      if (!Number.isInteger(i) || i < 0 || i >= ep.length) {
        throw new UserError(`episode ${index}: frame ${i} is outside 0..${ep.length - 1}`);
      }
    }
    if (cam.video) await this.streamVideo(ep, cam, wanted, onFrame);
    else await this.streamImages(ep, cam, wanted, onFrame);
  }

  private async streamVideo(
    ep: Episode,
    cam: CameraFeature,
    wanted: number[],
    onFrame: (i: number, rgb: Uint8Array, width: number, height: number) => void,
  ): Promise<void> {
    const video = ep.videos[cam.key];
    if (!video) throw new UserError(`episode ${ep.index}: no video recorded for camera ${cam.key}`);
    const file = rel(this.dir, video.file);
    if (!existsSync(video.file)) {
      throw new UserError(`${file}: video file is missing (episode ${ep.index}, camera ${cam.key})`);
    }
    if (wanted.length === 0) return;
    const data = await this.readEpisodeTimestamps(ep);
    const probe = await this.probe(video.file);
    const times = wanted.map((i) => video.fromTimestamp + data[i]!);
    const byDecoded = new Map<number, number[]>();
    const last = probe.pts[probe.pts.length - 1] ?? Number.NEGATIVE_INFINITY;
    const margin = 0.5 / this.info.fps;
    const from = times.reduce((a, b) => Math.min(a, b));
    const to = times.reduce((a, b) => Math.max(a, b));
    const first = probe.pts.findIndex((p) => p >= from - margin);
    for (const [j, t] of times.entries()) {
      if (t > last + TIMESTAMP_TOLERANCE_S) {
        throw new UserError(
          `${file}: episode ${ep.index}, camera ${cam.key}: frame ${wanted[j]} at timestamp ${t.toFixed(4)} s is beyond the video's end (last frame at ${last.toFixed(4)} s, ${probe.pts.length} frames)`,
        );
      }
      const k = nearest(probe.pts, t);
      if (Math.abs(probe.pts[k]! - t) > TIMESTAMP_TOLERANCE_S) {
        throw new UserError(
          `${file}: episode ${ep.index}, camera ${cam.key}: no video frame at timestamp ${t.toFixed(6)} s (nearest at ${probe.pts[k]!.toFixed(6)} s; tolerance ${TIMESTAMP_TOLERANCE_S} s)`,
        );
      }
      const list = byDecoded.get(k - first) ?? [];
      list.push(wanted[j]!);
      byDecoded.set(k - first, list);
    }
    const expected = probe.pts.filter((p) => p >= from - margin && p <= to + margin).length;
    const got = await decodeFrames(video.file, probe, { from, margin, count: expected }, (d, rgb) => {
      for (const i of byDecoded.get(d) ?? []) onFrame(i, rgb, probe.width, probe.height);
    });
    if (got !== expected) {
      throw new UserError(
        `${file}: episode ${ep.index}, camera ${cam.key}: decoded ${got} frames between ${from.toFixed(4)} s and ${to.toFixed(4)} s, the container lists ${expected}`,
      );
    }
  }

  private readonly timestampCache = new Map<number, Float64Array>();

  private async readEpisodeTimestamps(ep: Episode): Promise<Float64Array> {
    let ts = this.timestampCache.get(ep.index);
    if (!ts) {
      const pq = await this.parquet(ep.dataFile);
      if (pq.columns.includes('timestamp')) {
        const cols = await readColumns(pq, ['timestamp'], ep.fileRow, ep.fileRow + ep.length);
        ts = Float64Array.from(cols.timestamp!, (v) => toNumber(v));
      } else {
        ts = Float64Array.from({ length: ep.length }, (_, i) => i / this.info.fps);
      }
      this.timestampCache.set(ep.index, ts);
    }
    return ts;
  }

  private async streamImages(
    ep: Episode,
    cam: CameraFeature,
    wanted: number[],
    onFrame: (i: number, rgb: Uint8Array, width: number, height: number) => void,
  ): Promise<void> {
    const pq = await this.parquet(ep.dataFile);
    const file = rel(this.dir, ep.dataFile);
    const cols = await readColumns(pq, [cam.key], ep.fileRow, ep.fileRow + ep.length);
    for (const i of wanted) {
      const cell = cols[cam.key]![i] as { bytes?: Uint8Array } | Uint8Array | null;
      const bytes = cell instanceof Uint8Array ? cell : cell?.bytes;
      if (!(bytes instanceof Uint8Array)) {
        throw new UserError(
          `${file}: row ${ep.fileRow + i}, column ${cam.key}: expected PNG bytes, got ${describeValue(cell)}`,
        );
      }
      let png: ReturnType<typeof decodePng>;
      try {
        png = decodePng(bytes);
      } catch (e) {
        throw new UserError(
          `${file}: row ${ep.fileRow + i}, column ${cam.key}: not a PNG image (${(e as Error).message})`,
        );
      }
      onFrame(i, toRgb8(png), png.width, png.height);
    }
  }

  /**
   * The episode's frames of one camera as uint8 [n, H, W, 3] at native resolution, or letterboxed to
   * size×size (openpi's resize_with_pad) when `size` is given.
   */
  async readFrames(
    index: number,
    camera: string,
    opts: { size?: number; frames?: number[] } = {},
  ): Promise<Frames> {
    const ep = this.episode(index);
    const wanted = opts.frames ?? Array.from({ length: ep.length }, (_, i) => i);
    let out: Uint8Array | null = null;
    let width = 0;
    let height = 0;
    const slots = new Map<number, number[]>();
    for (const [j, f] of wanted.entries()) slots.set(f, [...(slots.get(f) ?? []), j]);
    const sorted = [...slots.keys()].sort((a, b) => a - b);
    await this.streamFrames(
      index,
      camera,
      (i, rgb, w, h) => {
        if (!out) {
          width = opts.size ?? w;
          height = opts.size ?? h;
          out = new Uint8Array(wanted.length * width * height * 3);
        }
        const frameBytes = width * height * 3;
        for (const j of slots.get(i) ?? []) {
          if (opts.size) resizeWithPad(rgb, w, h, opts.size, out, j * frameBytes);
          else out.set(rgb, j * frameBytes);
        }
      },
      sorted,
    );
    return { data: out ?? new Uint8Array(0), count: wanted.length, width, height };
  }
}

/** Any PNG (grey, alpha, 16-bit) as packed 8-bit RGB. */
function toRgb8(png: ReturnType<typeof decodePng>): Uint8Array {
  const { width, height, channels, depth, data } = png;
  const n = width * height;
  if (channels === 3 && depth === 8) return data as Uint8Array;
  const out = new Uint8Array(n * 3);
  const shift = depth === 16 ? 8 : 0;
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 3; k++) {
      const c = channels >= 3 ? k : 0;
      out[i * 3 + k] = (data[i * channels + c] as number) >> shift;
    }
  }
  return out;
}

function parseTasksJsonl(file: string): Map<number, string> {
  const tasks = new Map<number, string>();
  for (const [i, row] of readJsonl(file).entries()) {
    const r = row as { task_index?: unknown; task?: unknown };
    if (typeof r.task_index !== 'number' || typeof r.task !== 'string') {
      throw new UserError(
        `${file}:${i + 1}: expected {"task_index": int, "task": string}, got ${describeValue(row)}`,
      );
    }
    tasks.set(r.task_index, r.task);
  }
  return tasks;
}

function openV2(dir: string, info: DatasetInfo): LeRobotDataset {
  const meta = path.join(dir, 'meta');
  const epFile = path.join(meta, 'episodes.jsonl');
  const rows = readJsonl(epFile);
  const episodeStats = new Map<number, StatsMap>();
  const statsFile = path.join(meta, 'episodes_stats.jsonl');
  if (existsSync(statsFile)) {
    for (const row of readJsonl(statsFile)) {
      const r = row as { episode_index: number; stats: StatsMap };
      episodeStats.set(r.episode_index, r.stats);
    }
  }
  const parsed = rows.map((row, i) => {
    const r = row as { episode_index?: unknown; length?: unknown; tasks?: unknown; seed?: unknown };
    if (!Number.isInteger(r.episode_index) || !Number.isInteger(r.length) || (r.length as number) < 0) {
      throw new UserError(
        `${epFile}:${i + 1}: expected {"episode_index": int, "length": int, "tasks": [...]}, got ${describeValue(row)}`,
      );
    }
    return {
      index: r.episode_index as number,
      length: r.length as number,
      tasks: Array.isArray(r.tasks) ? r.tasks.map(String) : [],
      seed: Number.isSafeInteger(r.seed) ? (r.seed as number) : null,
    };
  });
  parsed.sort((a, b) => a.index - b.index);
  let from = 0;
  const episodes: Episode[] = parsed.map((p) => {
    const chunk = Math.floor(p.index / info.chunksSize);
    const videos: Record<string, EpisodeVideo> = {};
    for (const cam of info.cameras.filter((c) => c.video)) {
      videos[cam.key] = {
        file: path.join(
          dir,
          fillTemplate(info.videoPath!, { episode_chunk: chunk, video_key: cam.key, episode_index: p.index }),
        ),
        fromTimestamp: 0,
        toTimestamp: null,
      };
    }
    const ep: Episode = {
      index: p.index,
      length: p.length,
      tasks: p.tasks,
      from,
      to: from + p.length,
      dataFile: path.join(dir, fillTemplate(info.dataPath, { episode_chunk: chunk, episode_index: p.index })),
      fileRow: 0,
      videos,
      stats: episodeStats.get(p.index) ?? null,
      seed: p.seed,
    };
    from += p.length;
    return ep;
  });
  const tasks = parseTasksJsonl(path.join(meta, 'tasks.jsonl'));
  const globalFile = path.join(meta, 'stats.json');
  const stats = existsSync(globalFile)
    ? (readJson(globalFile) as StatsMap)
    : episodeStats.size > 0
      ? aggregateStats(episodes.filter((e) => e.stats).map((e) => e.stats!))
      : null;
  return new LeRobotDataset(dir, info, episodes, tasks, stats);
}

function listParquet(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
    a.name.localeCompare(b.name),
  )) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listParquet(p));
    else if (entry.name.endsWith('.parquet')) out.push(p);
  }
  return out;
}

/** v3.0 stores per-episode stats as flat `stats/<feature>/<stat>` columns. */
function episodeStatsOf(cols: Record<string, unknown[]>, row: number): StatsMap | null {
  const stats: StatsMap = {};
  for (const [name, values] of Object.entries(cols)) {
    const m = /^stats\/(.+)\/([^/]+)$/.exec(name);
    if (!m) continue;
    stats[m[1]!] = { ...stats[m[1]!], [m[2]!]: toPlain(values[row]) };
  }
  return Object.keys(stats).length > 0 ? stats : null;
}

function toPlain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(toPlain);
  return v;
}

async function openV3(dir: string, info: DatasetInfo): Promise<LeRobotDataset> {
  const meta = path.join(dir, 'meta');
  const files = listParquet(path.join(meta, 'episodes'));
  if (files.length === 0) throw new UserError(`${meta}/episodes: no episode metadata parquet files`);
  const episodes: Episode[] = [];
  for (const file of files) {
    const pq = await openParquet(file);
    const required = [
      'episode_index',
      'length',
      'data/chunk_index',
      'data/file_index',
      'dataset_from_index',
      'dataset_to_index',
    ];
    const cols = await readColumns(pq, pq.columns);
    for (const c of required) {
      if (!cols[c])
        throw new UserError(
          `${file}: column "${c}" is missing (columns: ${pq.columns.slice(0, 12).join(', ')}, ...)`,
        );
    }
    for (let r = 0; r < pq.numRows; r++) {
      const num = (c: string) => toNumber(cols[c]![r]);
      const videos: Record<string, EpisodeVideo> = {};
      for (const cam of info.cameras.filter((c) => c.video)) {
        const pre = `videos/${cam.key}/`;
        if (!cols[`${pre}chunk_index`]) continue;
        videos[cam.key] = {
          file: path.join(
            dir,
            fillTemplate(info.videoPath!, {
              video_key: cam.key,
              chunk_index: num(`${pre}chunk_index`),
              file_index: num(`${pre}file_index`),
            }),
          ),
          fromTimestamp: num(`${pre}from_timestamp`),
          toTimestamp: num(`${pre}to_timestamp`),
        };
      }
      const tasks = cols.tasks?.[r];
      const seed = cols.seed?.[r];
      episodes.push({
        index: num('episode_index'),
        length: num('length'),
        tasks: Array.isArray(tasks) ? tasks.map(text) : [],
        from: num('dataset_from_index'),
        to: num('dataset_to_index'),
        dataFile: path.join(
          dir,
          fillTemplate(info.dataPath, {
            chunk_index: num('data/chunk_index'),
            file_index: num('data/file_index'),
          }),
        ),
        fileRow: 0,
        videos,
        stats: episodeStatsOf(cols, r),
        seed: seed === null || seed === undefined ? null : toNumber(seed),
      });
    }
  }
  episodes.sort((a, b) => a.index - b.index);
  // A data file holds consecutive episodes; its first row is the smallest global index it holds.
  const fileStart = new Map<string, number>();
  for (const ep of episodes)
    fileStart.set(ep.dataFile, Math.min(fileStart.get(ep.dataFile) ?? ep.from, ep.from));
  for (const ep of episodes) {
    ep.fileRow = ep.from - fileStart.get(ep.dataFile)!;
    if (ep.to - ep.from !== ep.length) {
      throw new UserError(
        `${meta}/episodes: episode ${ep.index}: length is ${ep.length} but dataset_from_index..dataset_to_index is ${ep.from}..${ep.to}`,
      );
    }
  }
  const tasksFile = path.join(meta, 'tasks.parquet');
  const tpq = await openParquet(tasksFile);
  const taskCol = ['task', '__index_level_0__'].find((c) => tpq.columns.includes(c));
  if (!taskCol || !tpq.columns.includes('task_index')) {
    throw new UserError(
      `${tasksFile}: expected columns task_index and task (or __index_level_0__), got ${tpq.columns.join(', ')}`,
    );
  }
  const tcols = await readColumns(tpq, ['task_index', taskCol]);
  const tasks = new Map<number, string>();
  for (let r = 0; r < tpq.numRows; r++) tasks.set(toNumber(tcols.task_index![r]), text(tcols[taskCol]![r]));
  const statsFile = path.join(meta, 'stats.json');
  const stats = existsSync(statsFile) ? (readJson(statsFile) as StatsMap) : null;
  return new LeRobotDataset(dir, info, episodes, tasks, stats);
}

/** Opens a LeRobot dataset (v2.0, v2.1 or v3.0) from a local folder. */
export async function openDataset(dir: string): Promise<LeRobotDataset> {
  const abs = path.resolve(dir);
  if (!existsSync(abs)) throw new UserError(`${dir}: no such dataset folder`);
  const info = readInfo(abs);
  return info.version === 'v3.0' ? openV3(abs, info) : openV2(abs, info);
}

/**
 * Going on with a dataset whose writer was killed (`vla sim record --resume`). The writer puts an
 * episode's data and videos in place first and its metadata after, meta/info.json last: the episodes
 * that info.json counts are complete. Anything beyond them is what the killed writer was in the middle
 * of (its temporary files, the files of the episode it was saving, rows and frames that episode added to
 * v3.0's shared files); that is removed, so that the episodes written next follow on as if the writer
 * had never stopped.
 */
import { existsSync, readdirSync, renameSync, rmdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../config/errors.js';
import { runTool } from './ffmpeg.js';
import { CAMERA_PREFIX, FRAME_COLUMNS, readJson } from './info.js';
import { findLeftovers, removeLeftovers, SCRATCH_DIR } from './leftovers.js';
import { openParquet, readColumns, toNumber } from './parquet.js';
import { type Episode, type LeRobotDataset, openDataset } from './reader.js';
import { probeVideo } from './video.js';
import {
  CHUNKS_SIZE,
  type CreateOptions,
  checkCreateOptions,
  continueDataset,
  createDataset,
  type DatasetWriter,
  INFO_TOTALS,
  infoSettings,
  type OpenDataFile,
  type OpenVideoFile,
  type SavedEpisode,
  type WriterState,
} from './writer.js';

export interface KeptEpisode {
  length: number;
  /** The seed it was recorded from, as saveEpisode was given it; null when none was. */
  seed: number | null;
}

export interface ResumedDataset {
  writer: DatasetWriter;
  /** The complete episodes already there, in order. */
  kept: KeptEpisode[];
  /** What was removed, relative to the folder (a folder ends in `/`). */
  removed: string[];
}

const relative = (dir: string, file: string) => path.relative(dir, file).split(path.sep).join('/');

/** What a dataset writer puts at a dataset's root. */
const WRITER_ENTRIES = new Set([SCRATCH_DIR, 'data', 'videos', 'meta']);

/**
 * A writer for `dir` that goes on after the complete episodes already there. `opts` must be the options
 * the dataset was started with: any setting meta/info.json records differently is an error naming it.
 * An empty or absent folder starts a new dataset, as createDataset does.
 */
export async function resumeDataset(dir: string, opts: CreateOptions): Promise<ResumedDataset> {
  checkCreateOptions(opts);
  const entries = existsSync(dir) ? readdirSync(dir).sort() : [];
  const foreign = entries.filter((e) => !WRITER_ENTRIES.has(e));
  if (foreign.length > 0) {
    throw new UserError(
      `${dir}: holds ${foreign.slice(0, 5).join(', ')}, which a dataset writer does not write: expected a dataset folder a writer left unfinished`,
    );
  }
  if (!existsSync(path.join(dir, 'meta', 'info.json'))) {
    // Stopped before its first episode was saved: nothing to keep.
    for (const e of entries) rmSync(path.join(dir, e), { recursive: true, force: true });
    return { writer: await createDataset(dir, opts), kept: [], removed: entries.map((e) => `${e}/`) };
  }
  checkSettings(dir, opts);
  const ds = await openDataset(dir);
  const episodes = completeEpisodes(ds);
  const leftovers = findLeftovers(ds.dir);
  removeLeftovers(ds.dir, leftovers);
  const listed = new Set(
    episodes.flatMap((e) => [e.dataFile, ...Object.values(e.videos).map((v) => v.file)]),
  );
  const unlisted = removeUnlisted(ds.dir, listed);
  const state = await readState(ds, episodes, opts);
  const cut = await trimVideos(ds, episodes, state.videoFiles);
  const writer = continueDataset(ds.dir, opts, state);
  const dataFile = episodes[episodes.length - 1]!.dataFile;
  if (state.dataFile && (await openParquet(dataFile)).numRows > state.dataFile.index.length) {
    writer.rewriteDataFile();
    cut.push(relative(ds.dir, dataFile));
  }
  return {
    writer,
    kept: episodes.map((e) => ({ length: e.length, seed: e.seed })),
    removed: [
      ...leftovers.map((l) => l.path),
      ...unlisted,
      ...cut.map((f) => `${f} (rows or frames past the last complete episode)`),
    ],
  };
}

function show(value: unknown): string {
  if (value === undefined) return 'nothing (missing)';
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The first field where `actual` differs from `expected`, by dotted name; arrays compare whole. */
function difference(
  expected: unknown,
  actual: unknown,
  field: string,
): { field: string; expected: unknown; actual: unknown } | null {
  if (isRecord(expected) && isRecord(actual)) {
    const keys = [...Object.keys(expected), ...Object.keys(actual).filter((k) => !(k in expected))];
    for (const key of keys) {
      const d = difference(expected[key], actual[key], `${field}.${key}`);
      if (d) return d;
    }
    return null;
  }
  return JSON.stringify(expected) === JSON.stringify(actual) ? null : { field, expected, actual };
}

/**
 * meta/info.json must hold what a writer with `opts` writes there. What the dataset was started with is
 * the expected value; the caller's own keys (a recording's task and first seed) are compared first, as
 * they name what its user changed, and the features follow from them.
 */
function checkSettings(dir: string, opts: CreateOptions): void {
  const file = path.join(dir, 'meta', 'info.json');
  const raw = readJson(file);
  const started = isRecord(raw) ? raw : {};
  const now = infoSettings(opts);
  const own = Object.keys(opts.extraInfo ?? {});
  const keys = [
    ...own,
    ...Object.keys(now).filter((k) => !own.includes(k)),
    ...Object.keys(started).filter((k) => !(k in now) && !INFO_TOTALS.includes(k)),
  ];
  for (const key of keys) {
    const d = difference(started[key], now[key], key);
    if (d) {
      throw new UserError(
        `${file}: ${d.field}: expected ${show(d.expected)}, as the dataset was started, got ${show(d.actual)}: go on with the settings it was started with, or write a new folder`,
      );
    }
  }
}

/** The episodes meta/info.json counts (written last, so each is complete), checked to be 0..n-1. */
function completeEpisodes(ds: LeRobotDataset): Episode[] {
  const total = ds.info.totalEpisodes;
  if (total === 0) {
    throw new UserError(
      `${ds.dir}: meta/info.json: total_episodes is 0: a writer writes info.json with its first episode, so another tool wrote this one`,
    );
  }
  const episodes = ds.episodes.slice(0, total);
  if (episodes.length < total) {
    throw new UserError(
      `${ds.dir}: meta/info.json: total_episodes is ${total} but the episodes metadata lists ${episodes.length}: cannot tell which episodes are complete`,
    );
  }
  for (const [i, e] of episodes.entries()) {
    if (e.index !== i) {
      throw new UserError(`${ds.dir}: episodes metadata: expected episode ${i}, got episode ${e.index}`);
    }
  }
  return episodes;
}

/** Deletes the files under data/ and videos/ that no complete episode lists (those of the episode being saved). */
function removeUnlisted(dir: string, listed: Set<string>): string[] {
  const removed: string[] = [];
  const walk = (abs: string) => {
    for (const entry of readdirSync(abs, { withFileTypes: true })) {
      const p = path.join(abs, entry.name);
      if (entry.isDirectory()) {
        walk(p);
        // The new chunk or camera folder of the episode being saved: an uninterrupted writer has none.
        if (readdirSync(p).length === 0) rmdirSync(p);
      } else if (!listed.has(p)) {
        rmSync(p);
        removed.push(relative(dir, p));
      }
    }
  };
  for (const top of ['data', 'videos']) if (existsSync(path.join(dir, top))) walk(path.join(dir, top));
  return removed;
}

/** v3.0's per-episode file numbers, which the reader turns into paths. */
async function v3Places(ds: LeRobotDataset, count: number): Promise<Record<string, number[]>> {
  const file = path.join(ds.dir, 'meta', 'episodes', 'chunk-000', 'file-000.parquet');
  const pq = await openParquet(file);
  const wanted = ['data/chunk_index', 'data/file_index'];
  for (const cam of ds.cameras.filter((c) => c.video)) {
    wanted.push(`videos/${cam.key}/chunk_index`, `videos/${cam.key}/file_index`);
  }
  const cols = await readColumns(pq, wanted, 0, count);
  return Object.fromEntries(Object.entries(cols).map(([k, v]) => [k, v.map(toNumber)]));
}

async function readState(ds: LeRobotDataset, episodes: Episode[], opts: CreateOptions): Promise<WriterState> {
  const v3 = opts.format === 'v3.0';
  const places = v3 ? await v3Places(ds, episodes.length) : {};
  const videoCams = ds.cameras.filter((c) => c.video);
  const saved: SavedEpisode[] = episodes.map((e, i) => {
    if (!e.stats) throw new UserError(`${ds.dir}: episode ${e.index} has no stats in its metadata`);
    const chunk = Math.floor(e.index / CHUNKS_SIZE);
    const videos: SavedEpisode['videos'] = {};
    for (const cam of videoCams) {
      const v = e.videos[cam.key]!;
      // As the writer records them: v2.1 one file per episode, v3.0 a place in a shared file.
      videos[cam.key] = v3
        ? {
            chunk: places[`videos/${cam.key}/chunk_index`]![i]!,
            file: places[`videos/${cam.key}/file_index`]![i]!,
            from: v.fromTimestamp,
            to: v.toTimestamp!,
          }
        : { chunk, file: e.index, from: 0, to: e.length / opts.fps };
    }
    return {
      index: e.index,
      length: e.length,
      tasks: e.tasks,
      from: e.from,
      seed: e.seed,
      dataChunk: v3 ? places['data/chunk_index']![i]! : chunk,
      dataFile: v3 ? places['data/file_index']![i]! : 0,
      videos,
      stats: e.stats,
    };
  });
  const state: Float32Array[] = [];
  const action: Float32Array[] = [];
  for (const e of episodes) {
    const data = await ds.readEpisode(e.index);
    state.push(data.state!);
    action.push(data.action!);
  }
  const videoFiles: Record<string, OpenVideoFile> = {};
  const last = saved[saved.length - 1]!;
  for (const cam of v3 ? videoCams : []) {
    const place = last.videos[cam.key]!;
    const inFile = saved.filter(
      (e) => e.videos[cam.key]!.chunk === place.chunk && e.videos[cam.key]!.file === place.file,
    );
    videoFiles[cam.key] = {
      chunk: place.chunk,
      file: place.file,
      frames: inFile.reduce((n, e) => n + e.length, 0),
    };
  }
  return {
    saved,
    tasks: keptTasks(ds, episodes),
    state,
    action,
    dataFile: v3 ? await readDataFile(episodes, saved, opts) : null,
    videoFiles,
  };
}

/** The tasks of the complete episodes, in task_index order: indices 0..n-1, as the writer hands them out. */
function keptTasks(ds: LeRobotDataset, episodes: Episode[]): string[] {
  const used = new Set(episodes.flatMap((e) => e.tasks));
  const kept = [...ds.tasks].filter(([, task]) => used.has(task)).sort(([a], [b]) => a - b);
  for (const [i, [index, task]] of kept.entries()) {
    if (index !== i) {
      throw new UserError(
        `${ds.dir}: tasks metadata: task ${JSON.stringify(task)} has task_index ${index}, expected ${i} (indices 0..${kept.length - 1} in order)`,
      );
    }
  }
  return kept.map(([, task]) => task);
}

/** v3.0: the columns of the last data file, up to the end of the last complete episode. */
async function readDataFile(
  episodes: Episode[],
  saved: SavedEpisode[],
  opts: CreateOptions,
): Promise<OpenDataFile> {
  // The last complete episode's file: the one the writer goes on filling.
  const file = episodes[episodes.length - 1]!.dataFile;
  const inFile = episodes.filter((e) => e.dataFile === file);
  const rows = inFile.reduce((n, e) => n + e.length, 0);
  const pq = await openParquet(file);
  if (pq.numRows < rows) {
    throw new UserError(
      `${file}: holds ${pq.numRows} rows, expected at least ${rows} (the episodes listed in it)`,
    );
  }
  // Cameras as PNG bytes live in the data file's rows; as videos they have no column (and an empty list).
  const video = opts.video ?? true;
  const cams = video ? [] : opts.features.cameras.map((c) => c.name);
  const cols = await readColumns(pq, [...FRAME_COLUMNS, ...cams.map((c) => CAMERA_PREFIX + c)], 0, rows);
  const vectors = (c: unknown[]) => c.map((v) => Array.from(v as ArrayLike<number>));
  const ints = (c: unknown[]) => c.map((v) => BigInt(toNumber(v)));
  const last = saved[saved.length - 1]!;
  return {
    chunk: last.dataChunk,
    file: last.dataFile,
    rowGroups: inFile.map((e) => e.length),
    state: vectors(cols['observation.state']!),
    action: vectors(cols.action!),
    timestamp: cols.timestamp!.map(toNumber),
    frameIndex: ints(cols.frame_index!),
    episodeIndex: ints(cols.episode_index!),
    index: ints(cols.index!),
    taskIndex: ints(cols.task_index!),
    images: Object.fromEntries(
      opts.features.cameras.map((c) => [
        c.name,
        video
          ? []
          : cols[CAMERA_PREFIX + c.name]!.map((v) => ({
              bytes: (v as { bytes: Uint8Array }).bytes,
              path: null,
            })),
      ]),
    ),
    bytes: statSync(file).size,
  };
}

/**
 * v3.0: cuts each camera's open video file back to the frames of the complete episodes; the writer
 * appends an episode's frames there before writing its metadata. Stream copy, no re-encoding: every
 * episode starts on a keyframe. Returns the files it cut.
 */
async function trimVideos(
  ds: LeRobotDataset,
  episodes: Episode[],
  videoFiles: Record<string, OpenVideoFile>,
): Promise<string[]> {
  const trimmed: string[] = [];
  for (const [key, open] of Object.entries(videoFiles)) {
    const file = episodes[episodes.length - 1]!.videos[key]!.file;
    const frames = (await probeVideo(file)).pts.length;
    if (frames === open.frames) continue;
    if (frames < open.frames) {
      throw new UserError(
        `${file}: holds ${frames} frames, expected at least ${open.frames} (the episodes listed in it)`,
      );
    }
    const tmp = `${file}.tmp-${process.pid}.mp4`;
    await runTool(
      'ffmpeg',
      ['-v', 'error', '-y', '-i', file, '-map', '0', '-c', 'copy', '-frames:v', String(open.frames), tmp],
      `${file}: cannot cut it back to its listed episodes`,
    );
    const kept = (await probeVideo(tmp)).pts.length;
    if (kept !== open.frames) {
      rmSync(tmp, { force: true });
      throw new UserError(`${file}: cutting it back gave ${kept} frames, expected ${open.frames}`);
    }
    renameSync(tmp, file);
    trimmed.push(relative(ds.dir, file));
  }
  return trimmed;
}

/**
 * Dataset editing as LeRobot's dataset tools do it: a new dataset made of chosen episodes of one or more
 * datasets of one robot (merge, split, filter are each a choice of episodes; see edit-select.ts). Rows
 * are carried and renumbered (episode_index, index, task_index re-indexed by first use), videos are
 * carried without re-encoding (each episode's frames cut from its file by stream copy on its starting
 * keyframe, v3.0's files joined again by stream copy), per-episode stats are recomputed from the rows
 * (the images' carried, as the frames are the same), and the metadata is written by the project's own
 * writer, so the result is what a writer would have written. The output is built in a temporary folder
 * beside it, validated, then renamed into place; the inputs are only read.
 */
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../config/errors.js';
import { namesOr } from './convert.js';
import { runTool } from './ffmpeg.js';
import { type CameraFeature, cameraName, FRAME_COLUMNS, fillTemplate } from './info.js';
import { SCRATCH_DIR } from './leftovers.js';
import { readColumns } from './parquet.js';
import type { Episode, EpisodeData, LeRobotDataset } from './reader.js';
import { imageStats, QUANTILES, type StatsEntry, type StatsMap, vectorStats } from './stats.js';
import { validateDataset } from './validate.js';
import { probeVideo, type VideoCodec } from './video.js';
import {
  CHUNKS_SIZE,
  type CreateOptions,
  continueDataset,
  emptyDataFile,
  INFO_TOTALS,
  infoSettings,
  type OpenDataFile,
  type SavedEpisode,
  type WriteFormat,
  type WriterState,
} from './writer.js';

/** One episode of a source dataset, in the place it takes in the output. */
export interface EpisodeRef {
  ds: LeRobotDataset;
  episode: Episode;
}

export interface EditOptions {
  /** The output's format; the first input's by default (v2.0 is written as v2.1). */
  format?: WriteFormat;
  /** Replace an existing output folder. */
  force?: boolean;
  onEpisode?(done: number, total: number): void;
}

export interface EditReport {
  dir: string;
  format: WriteFormat;
  episodes: number;
  frames: number;
  tasks: number;
  /** Features of the inputs the output cannot hold (a writer writes state, action and cameras). */
  dropped: string[];
}

/** The features every output has (the frame columns); any other an input holds is dropped and reported. */
const CARRIED: readonly string[] = FRAME_COLUMNS;
/** Writer sizes (MB) for v3.0's shared files, LeRobot's defaults. */
const DATA_FILE_MB = 100;
const VIDEO_FILE_MB = 500;
/** As the writer samples frames for image stats. */
const STATS_FRAME_STRIDE = 4;
const STATS_PIXELS = 4096;

const show = (v: unknown) => JSON.stringify(v) ?? 'nothing';

function codecOf(ds: LeRobotDataset, cam: CameraFeature): VideoCodec {
  const codec = cam.codec ?? 'h264';
  if (/av1/.test(codec)) return 'av1';
  if (/h264|avc/.test(codec)) return 'h264';
  throw new UserError(
    `${ds.dir}: features.${cam.key}.info.video.codec: expected h264 or av1 (what a writer records), got ${show(cam.codec)}`,
  );
}

function dimOf(ds: LeRobotDataset, key: string): number {
  const f = ds.info.features[key];
  if (!f) {
    throw new UserError(
      `${ds.dir}: features.${key}: expected a feature (an edit carries observation.state and action), got none`,
    );
  }
  return f.shape.reduce((a, b) => a * b, 1);
}

/** The writer settings that reproduce `ds`'s features; `format` decides the layout. */
export function writerOptions(ds: LeRobotDataset, format: WriteFormat): CreateOptions {
  const cams = ds.cameras;
  const videos = cams.filter((c) => c.video);
  if (videos.length > 0 && videos.length < cams.length) {
    throw new UserError(
      `${ds.dir}: features: cameras mix video (${videos.map((c) => c.key).join(', ')}) and image features; an edit writes one kind`,
    );
  }
  const feats = ds.info.features;
  return {
    fps: ds.info.fps,
    robotType: ds.info.robotType ?? 'unknown',
    format,
    video: videos.length > 0 || cams.length === 0,
    ...(videos.length > 0 && { codec: codecOf(ds, videos[0]!) }),
    features: {
      state: {
        names: namesOr(feats['observation.state']?.names ?? null, dimOf(ds, 'observation.state'), 'state'),
      },
      action: { names: namesOr(feats.action?.names ?? null, dimOf(ds, 'action'), 'action') },
      cameras: cams.map((c) => ({ name: cameraName(c.key), height: c.height, width: c.width })),
    },
  };
}

/**
 * What must agree between the datasets whose episodes go into one output: one error naming the dataset,
 * the field, the value expected (the first dataset's) and the one found.
 */
export function checkCompatible(datasets: LeRobotDataset[]): void {
  const first = datasets[0]!;
  const facts = (ds: LeRobotDataset): Array<[string, unknown]> => {
    const f = ds.info.features;
    const cams = ds.cameras.map((c) => c.key).sort();
    return [
      ['fps', ds.info.fps],
      ['robot_type', ds.info.robotType],
      ['features.observation.state.shape', f['observation.state']?.shape],
      ['features.observation.state.names', f['observation.state']?.names],
      ['features.action.shape', f.action?.shape],
      ['features.action.names', f.action?.names],
      ['cameras', cams],
      ...ds.cameras.flatMap(
        (c): Array<[string, unknown]> => [
          [`features.${c.key}.dtype`, c.dtype],
          [`features.${c.key}.shape (height, width, channels)`, [c.height, c.width, c.channels]],
          [`features.${c.key}.info.video.codec`, c.video ? codecOf(ds, c) : null],
        ],
      ),
    ];
  };
  const expected = new Map(facts(first));
  for (const ds of datasets.slice(1)) {
    for (const [field, value] of facts(ds)) {
      if (show(value) !== show(expected.get(field))) {
        throw new UserError(
          `${ds.dir}: ${field}: expected ${show(expected.get(field))} (as in ${first.dir}), got ${show(value)}: an edit joins datasets of one robot recorded alike`,
        );
      }
    }
  }
}

/** The output must be new (or `force`), and never one of the inputs or inside one. */
function checkOutput(out: string, inputs: LeRobotDataset[], force: boolean): void {
  const abs = path.resolve(out);
  const within = (parent: string, child: string) => {
    const rel = path.relative(parent, child);
    return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
  };
  for (const ds of inputs) {
    if (within(ds.dir, abs) || within(abs, ds.dir)) {
      throw new UserError(
        `${out}: output folder: expected a folder apart from the inputs (an edit never modifies them), got one that holds or lies in the input ${ds.dir}`,
      );
    }
  }
  if (existsSync(abs) && !force) {
    throw new UserError(`${out}: already exists: choose a new folder, or pass --force to replace it`);
  }
}

/** Top-level info.json keys of the inputs' own (a recording's `simulation`) that all inputs agree on. */
function sharedExtraInfo(datasets: LeRobotDataset[], opts: CreateOptions): Record<string, unknown> {
  // Either format's own keys: an input of the other format holds some this one does not write.
  const formats: WriteFormat[] = ['v2.1', 'v3.0'];
  const owned = new Set([
    ...formats.flatMap((format) => Object.keys(infoSettings({ ...opts, format }))),
    ...INFO_TOTALS,
  ]);
  const raw = datasets.map((ds) => ds.info.raw as Record<string, unknown>);
  const extra: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw[0]!)) {
    if (!owned.has(key) && raw.every((r) => show(r[key]) === show(value))) extra[key] = value;
  }
  return extra;
}

/** Times of the keyframes of a video, read once per file. */
const keyframeCache = new Map<string, Promise<Set<string>>>();
function keyframes(file: string): Promise<Set<string>> {
  let p = keyframeCache.get(file);
  if (!p) {
    p = runTool(
      'ffprobe',
      [
        '-v',
        'error',
        '-select_streams',
        'v:0',
        '-show_entries',
        'packet=pts_time,flags',
        '-of',
        'csv=p=0',
        file,
      ],
      `${file}: cannot list its keyframes`,
    ).then(
      (out) =>
        new Set(
          out
            .toString()
            .split('\n')
            .filter((l) => l.split(',')[1]?.startsWith('K'))
            .map((l) => Number(l.split(',')[0]).toFixed(4)),
        ),
    );
    keyframeCache.set(file, p);
    p.catch(() => keyframeCache.delete(file));
  }
  return p;
}

/**
 * Cuts an episode's frames of one camera out of its video by stream copy into `target`, starting at 0:
 * the episode must start on a keyframe (writers encode each episode on its own, LeRobot's too).
 */
async function cutEpisodeVideo(ref: EpisodeRef, cam: CameraFeature, target: string): Promise<void> {
  const { ds, episode: ep } = ref;
  const video = ep.videos[cam.key];
  if (!video) throw new UserError(`${ds.dir}: episode ${ep.index}: no video recorded for camera ${cam.key}`);
  if (!existsSync(video.file)) {
    throw new UserError(`${video.file}: video file is missing (episode ${ep.index}, camera ${cam.key})`);
  }
  const from = video.fromTimestamp;
  if (from > 0 && !(await keyframes(video.file)).has(from.toFixed(4))) {
    throw new UserError(
      `${video.file}: episode ${ep.index}, camera ${cam.key}: expected a keyframe at ${from.toFixed(4)} s where the episode starts, got none: its frames cannot be carried without re-encoding`,
    );
  }
  const seek = from > 0 ? ['-ss', (from + 0.25 / ds.info.fps).toFixed(6)] : [];
  await runTool(
    'ffmpeg',
    [
      ...['-v', 'error', '-y', ...seek, '-i', video.file, '-map', '0:v:0', '-c', 'copy'],
      ...['-frames:v', String(ep.length), '-bsf:v', 'setts=pts=PTS-STARTPTS:dts=DTS-STARTDTS', target],
    ],
    `${video.file}: cannot cut episode ${ep.index}'s frames out`,
  );
  const got = (await probeVideo(target)).pts.length;
  if (got !== ep.length) {
    throw new UserError(
      `${video.file}: episode ${ep.index}, camera ${cam.key}: expected ${ep.length} frames from ${from.toFixed(4)} s, got ${got}`,
    );
  }
}

/** Joins episode videos into one file by stream copy; returns where each starts. */
async function joinVideos(segments: string[], lengths: number[], target: string): Promise<number[]> {
  mkdirSync(path.dirname(target), { recursive: true });
  const list = `${target}.txt`;
  writeFileSync(list, segments.map((f) => `file '${f.replace(/'/g, "'\\''")}'\n`).join(''));
  await runTool(
    'ffmpeg',
    ['-v', 'error', '-y', '-f', 'concat', '-safe', '0', '-i', list, '-c', 'copy', target],
    `${target}: cannot join the episodes' videos`,
  );
  rmSync(list);
  const pts = (await probeVideo(target)).pts;
  const total = lengths.reduce((a, b) => a + b, 0);
  if (pts.length !== total) {
    throw new UserError(
      `${target}: joining ${segments.length} episodes gave ${pts.length} frames, expected ${total}`,
    );
  }
  const starts: number[] = [];
  let at = 0;
  for (const n of lengths) {
    starts.push(pts[at]!);
    at += n;
  }
  for (const f of segments) rmSync(f);
  return starts;
}

/** An image feature's stats as the output's format holds them: carried, or sampled from the frames as the writer does. */
async function cameraStats(ref: EpisodeRef, cam: CameraFeature, withQ: boolean): Promise<StatsEntry> {
  const carried = ref.episode.stats?.[cam.key];
  const wanted = ['min', 'max', 'mean', 'std', 'count', ...(withQ ? QUANTILES.map(([q]) => q) : [])];
  if (carried && wanted.every((k) => carried[k] !== undefined)) {
    return Object.fromEntries(wanted.map((k) => [k, carried[k]]));
  }
  const n = ref.episode.length;
  const frames = Array.from({ length: Math.ceil(n / STATS_FRAME_STRIDE) }, (_, i) => i * STATS_FRAME_STRIDE);
  const img = await ref.ds.readFrames(ref.episode.index, cam.key, { frames });
  const pixels = img.width * img.height;
  const stride = Math.max(1, Math.floor(pixels / STATS_PIXELS));
  const samples: number[] = [];
  for (let f = 0; f < frames.length; f++) {
    for (let p = 0; p < pixels; p += stride) {
      const o = (f * pixels + p) * 3;
      samples.push(img.data[o]!, img.data[o + 1]!, img.data[o + 2]!);
    }
  }
  return imageStats(samples, frames.length, withQ);
}

function rowStats(data: EpisodeData, k: number, first: number, tasks: number[], withQ: boolean): StatsMap {
  const n = data.length;
  const scalar = (f: (i: number) => number) =>
    vectorStats(
      Float64Array.from({ length: n }, (_, i) => f(i)),
      1,
      withQ,
    );
  return {
    'observation.state': vectorStats(data.state!, data.stateDim, withQ),
    action: vectorStats(data.action!, data.actionDim, withQ),
    timestamp: scalar((i) => data.timestamp[i]!),
    frame_index: scalar((i) => data.frameIndex[i]!),
    episode_index: scalar(() => k),
    index: scalar((i) => first + i),
    task_index: scalar((i) => tasks[i]!),
  };
}

/** Writes one data file through the writer's own code (its parquet schema and metadata). */
function writeDataFile(dir: string, opts: CreateOptions, df: OpenDataFile): string {
  const state: WriterState = { saved: [], tasks: [], state: [], action: [], dataFile: df, videoFiles: {} };
  continueDataset(dir, opts, state).rewriteDataFile();
  return path.join(
    dir,
    'data',
    `chunk-${String(df.chunk).padStart(3, '0')}`,
    `file-${String(df.file).padStart(3, '0')}.parquet`,
  );
}

/** A v3.0 shared file being filled: its number, and an estimate of its size. */
interface Filling {
  chunk: number;
  file: number;
  bytes: number;
}

const nextFile = (f: Filling | null): Filling => {
  const next = f ? f.chunk * CHUNKS_SIZE + f.file + 1 : 0;
  return { chunk: Math.floor(next / CHUNKS_SIZE), file: next % CHUNKS_SIZE, bytes: 0 };
};

/**
 * Writes a new dataset at `out` holding `refs`' episodes in that order, renumbered from 0. The datasets
 * they come from must agree (checkCompatible); nothing of theirs is written to.
 */
export async function writeEpisodes(
  refs: EpisodeRef[],
  out: string,
  options: EditOptions = {},
): Promise<EditReport> {
  if (refs.length === 0) throw new UserError(`${out}: no episodes selected: expected at least one`);
  const datasets = [...new Set(refs.map((r) => r.ds))];
  checkCompatible(datasets);
  checkOutput(out, datasets, options.force ?? false);
  const first = datasets[0]!;
  const format = options.format ?? (first.info.version === 'v3.0' ? 'v3.0' : 'v2.1');
  const base = writerOptions(first, format);
  const opts: CreateOptions = { ...base, extraInfo: sharedExtraInfo(datasets, base) };
  const dropped = [
    ...new Set(
      datasets.flatMap((ds) =>
        Object.keys(ds.info.features).filter(
          (k) => !CARRIED.includes(k) && !ds.cameras.some((c) => c.key === k),
        ),
      ),
    ),
  ];
  const abs = path.resolve(out);
  const tmp = `${abs}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(path.join(tmp, SCRATCH_DIR), { recursive: true });
  try {
    const report = await build(refs, tmp, opts, options);
    const check = await validateDataset(tmp);
    if (check.problems.length > 0) {
      throw new UserError(
        `${out}: the edited dataset does not validate: ${check.problems.slice(0, 3).join('; ')}`,
      );
    }
    if (existsSync(abs)) {
      const old = `${abs}.old-${process.pid}`;
      renameSync(abs, old);
      renameSync(tmp, abs);
      rmSync(old, { recursive: true, force: true });
    } else {
      mkdirSync(path.dirname(abs), { recursive: true });
      renameSync(tmp, abs);
    }
    return { ...report, dir: abs, format, dropped };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

async function build(
  refs: EpisodeRef[],
  dir: string,
  opts: CreateOptions,
  options: EditOptions,
): Promise<Omit<EditReport, 'dir' | 'format' | 'dropped'>> {
  const v3 = opts.format === 'v3.0';
  const cams = refs[0]!.ds.cameras;
  const videoCams = opts.video ? cams : [];
  const imageCams = opts.video ? [] : cams;
  const taskIndex = new Map<string, number>();
  const saved: SavedEpisode[] = [];
  const allState: Float32Array[] = [];
  const allAction: Float32Array[] = [];
  let frames = 0;
  let df: OpenDataFile | null = null;
  let dataFilling: Filling | null = null;
  const flushData = () => {
    if (df && df.rowGroups.length > 0) writeDataFile(dir, opts, df);
  };
  // v3.0: per camera, the video file being filled and the episodes waiting to be joined into it.
  const videoFilling: Record<string, Filling | null> = {};
  const pending: Record<string, Array<{ record: SavedEpisode; segment: string }>> = {};
  const flushVideo = async (key: string) => {
    const place = videoFilling[key];
    const list = pending[key] ?? [];
    if (!place || list.length === 0) return;
    const target = path.join(
      dir,
      fillTemplate(infoSettings(opts).video_path as string, {
        video_key: key,
        chunk_index: place.chunk,
        file_index: place.file,
      }),
    );
    const starts = await joinVideos(
      list.map((p) => p.segment),
      list.map((p) => p.record.length),
      target,
    );
    for (const [i, p] of list.entries()) {
      p.record.videos[key] = {
        chunk: place.chunk,
        file: place.file,
        from: starts[i]!,
        to: starts[i]! + p.record.length / opts.fps,
      };
    }
    pending[key] = [];
  };

  for (const [k, ref] of refs.entries()) {
    const { ds, episode: ep } = ref;
    const data = await ds.readEpisode(ep.index);
    const tasks = Array.from(data.taskIndex, (t, f) => {
      const task = ds.tasks.get(t) ?? ep.tasks[0];
      if (task === undefined) {
        throw new UserError(
          `${ds.dir}: episode ${ep.index} frame ${f}: task_index: expected one of the dataset's tasks, got ${t}`,
        );
      }
      if (!taskIndex.has(task)) taskIndex.set(task, taskIndex.size);
      return taskIndex.get(task)!;
    });
    const record: SavedEpisode = {
      index: k,
      length: ep.length,
      tasks: [...new Set(tasks)].map((t) => [...taskIndex].find(([, i]) => i === t)![0]),
      from: frames,
      seed: ep.seed,
      dataChunk: 0,
      dataFile: 0,
      videos: {},
      stats: rowStats(data, k, frames, tasks, v3),
    };
    for (const cam of cams) record.stats[cam.key] = await cameraStats(ref, cam, v3);

    // Rows: v2.1 one file per episode; v3.0 shared files of about DATA_FILE_MB.
    const chunk = Math.floor(k / CHUNKS_SIZE);
    if (!v3) {
      df = emptyDataFile(
        chunk,
        k,
        imageCams.map((c) => cameraName(c.key)),
      );
    } else if (!dataFilling || dataFilling.bytes > DATA_FILE_MB * 1024 * 1024) {
      flushData();
      dataFilling = nextFile(dataFilling);
      df = emptyDataFile(
        dataFilling.chunk,
        dataFilling.file,
        imageCams.map((c) => cameraName(c.key)),
      );
    }
    const rows = df!;
    for (let i = 0; i < ep.length; i++) {
      rows.state.push(Array.from(data.state!.subarray(i * data.stateDim, (i + 1) * data.stateDim)));
      rows.action.push(Array.from(data.action!.subarray(i * data.actionDim, (i + 1) * data.actionDim)));
      rows.timestamp.push(data.timestamp[i]!);
      rows.frameIndex.push(BigInt(data.frameIndex[i]!));
      rows.episodeIndex.push(BigInt(k));
      rows.index.push(BigInt(frames + i));
      rows.taskIndex.push(BigInt(tasks[i]!));
    }
    if (imageCams.length > 0) {
      const cols = await readColumns(
        await ds.parquet(ep.dataFile),
        imageCams.map((c) => c.key),
        ep.fileRow,
        ep.fileRow + ep.length,
      );
      for (const cam of imageCams) {
        for (const cell of cols[cam.key]!) {
          const bytes = cell instanceof Uint8Array ? cell : (cell as { bytes: Uint8Array }).bytes;
          rows.images[cameraName(cam.key)]!.push({ bytes, path: null });
        }
      }
    }
    rows.rowGroups.push(ep.length);
    record.dataChunk = rows.chunk;
    record.dataFile = v3 ? rows.file : 0;
    if (v3)
      dataFilling!.bytes +=
        (statSync(ep.dataFile).size * ep.length) / Math.max(1, (await ds.parquet(ep.dataFile)).numRows);
    else {
      const written = writeDataFile(dir, opts, rows);
      const target = path.join(
        dir,
        fillTemplate(infoSettings(opts).data_path as string, { episode_chunk: chunk, episode_index: k }),
      );
      renameSync(written, target);
    }

    // Videos: v2.1 one file per episode; v3.0 joined into shared files of about VIDEO_FILE_MB.
    for (const cam of videoCams) {
      const segment = path.join(dir, SCRATCH_DIR, `episode-${k}-${cameraName(cam.key)}.mp4`);
      await cutEpisodeVideo(ref, cam, segment);
      if (!v3) {
        const target = path.join(
          dir,
          fillTemplate(infoSettings(opts).video_path as string, {
            episode_chunk: chunk,
            video_key: cam.key,
            episode_index: k,
          }),
        );
        mkdirSync(path.dirname(target), { recursive: true });
        renameSync(segment, target);
        record.videos[cam.key] = { chunk, file: k, from: 0, to: ep.length / opts.fps };
        continue;
      }
      const place = videoFilling[cam.key] ?? null;
      if (!place || place.bytes > VIDEO_FILE_MB * 1024 * 1024) {
        await flushVideo(cam.key);
        videoFilling[cam.key] = nextFile(place);
      }
      videoFilling[cam.key]!.bytes += statSync(segment).size;
      pending[cam.key] = [...(pending[cam.key] ?? []), { record, segment }];
    }
    saved.push(record);
    allState.push(data.state!);
    allAction.push(data.action!);
    frames += ep.length;
    options.onEpisode?.(k + 1, refs.length);
  }
  if (v3) flushData();
  for (const cam of videoCams) await flushVideo(cam.key);
  const state: WriterState = {
    saved,
    tasks: [...taskIndex.keys()],
    state: allState,
    action: allAction,
    dataFile: null,
    videoFiles: {},
  };
  await continueDataset(dir, opts, state).finalize();
  return { episodes: saved.length, frames, tasks: taskIndex.size };
}

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { UserError } from '../config/errors.js';
import { validate } from '../config/load.js';

/** Names as real datasets write them: a list, `{"motors": [...]}`, nested lists, or null. */
const Names = z
  .union([z.null(), z.string(), z.array(z.unknown()), z.record(z.string(), z.unknown())])
  .optional();

const FeatureJson = z.looseObject({
  dtype: z.string().min(1),
  shape: z.array(z.int().nonnegative()),
  names: Names,
  info: z.looseObject({}).nullable().optional(),
  video_info: z.looseObject({}).nullable().optional(),
});

/** meta/info.json: only the fields we rely on are checked; the rest is kept as written. */
export const InfoJson = z.looseObject({
  codebase_version: z.string().regex(/^v\d+\.\d+$/),
  robot_type: z.string().nullable().optional(),
  fps: z.number().positive(),
  total_episodes: z.int().nonnegative(),
  total_frames: z.int().nonnegative(),
  total_tasks: z.int().nonnegative().optional(),
  chunks_size: z.int().positive().default(1000),
  data_path: z.string().min(1),
  video_path: z.string().min(1).nullable().optional(),
  features: z.record(z.string(), FeatureJson),
});
export type InfoJson = z.infer<typeof InfoJson>;

export type Version = 'v2.0' | 'v2.1' | 'v3.0';

export interface Feature {
  key: string;
  dtype: string;
  shape: number[];
  /** One name per element (flattened), or null when the dataset gives none. */
  names: string[] | null;
}

/** A camera: `dtype` video (mp4 files) or image (PNG bytes in parquet). */
export interface CameraFeature extends Feature {
  height: number;
  width: number;
  channels: number;
  /** Whether `shape` was written channel-first (`[C,H,W]`). */
  channelFirst: boolean;
  video: boolean;
  codec: string | null;
}

export interface DatasetInfo {
  version: Version;
  codebaseVersion: string;
  robotType: string | null;
  fps: number;
  totalEpisodes: number;
  totalFrames: number;
  totalTasks: number | null;
  chunksSize: number;
  dataPath: string;
  videoPath: string | null;
  features: Record<string, Feature>;
  cameras: CameraFeature[];
  /** Where `vla sim record` made it (our key `simulation`), null for other datasets. */
  simulation: SimProvenance | null;
  raw: InfoJson;
}

/** The simulated scene a dataset was recorded in: the task, its MJCF file and that file's sha256. */
export interface SimProvenance {
  task: string;
  /** The MJCF file, relative to the package (robots/mjcf/…). */
  scene: string;
  scene_sha256: string;
}

/** A recorded `simulation` block, if `raw` holds a well-formed one. */
export function parseSimProvenance(raw: unknown): SimProvenance | null {
  if (!raw || typeof raw !== 'object') return null;
  const r = raw as Record<string, unknown>;
  return typeof r.task === 'string' && typeof r.scene === 'string' && typeof r.scene_sha256 === 'string'
    ? { task: r.task, scene: r.scene, scene_sha256: r.scene_sha256 }
    : null;
}

export const CAMERA_PREFIX = 'observation.images.';

/** The columns every frame of a dataset's data files holds, besides its cameras. */
export const FRAME_COLUMNS = [
  'observation.state',
  'action',
  'timestamp',
  'frame_index',
  'episode_index',
  'index',
  'task_index',
] as const;

/** The short camera name of a feature key: `observation.images.cam_high` → `cam_high`. */
export const cameraName = (key: string): string =>
  key.startsWith(CAMERA_PREFIX) ? key.slice(CAMERA_PREFIX.length) : key;

export function flattenNames(names: unknown): string[] | null {
  if (names === null || names === undefined) return null;
  if (typeof names === 'string') return [names];
  if (Array.isArray(names)) return names.flatMap((n) => flattenNames(n) ?? []);
  if (typeof names === 'object') return Object.values(names).flatMap((n) => flattenNames(n) ?? []);
  return [String(names)];
}

function cameraOf(key: string, f: z.infer<typeof FeatureJson>, file: string): CameraFeature {
  const info = (f.info ?? f.video_info ?? {}) as Record<string, unknown>;
  const names = flattenNames(f.names)?.map((n) => n.toLowerCase());
  if (f.shape.length !== 3) {
    throw new UserError(
      `${file}: features.${key}.shape: expected 3 dims ([H,W,C] or [C,H,W]), got [${f.shape.join(', ')}]`,
    );
  }
  let channelFirst: boolean;
  if (names && names.length === 3) channelFirst = names[0]!.startsWith('channel');
  else channelFirst = f.shape[0] === 3 && f.shape[2] !== 3;
  const [c, h, w] = channelFirst ? f.shape : [f.shape[2]!, f.shape[0]!, f.shape[1]!];
  const height = typeof info['video.height'] === 'number' ? (info['video.height'] as number) : h!;
  const width = typeof info['video.width'] === 'number' ? (info['video.width'] as number) : w!;
  return {
    key,
    dtype: f.dtype,
    shape: f.shape,
    names: flattenNames(f.names),
    height,
    width,
    channels: c!,
    channelFirst,
    video: f.dtype === 'video',
    codec: typeof info['video.codec'] === 'string' ? (info['video.codec'] as string) : null,
  };
}

export function versionOf(codebaseVersion: string, file: string): Version {
  if (codebaseVersion === 'v2.0') return 'v2.0';
  if (/^v2\.\d+$/.test(codebaseVersion)) return 'v2.1';
  if (/^v3\.\d+$/.test(codebaseVersion)) return 'v3.0';
  throw new UserError(
    `${file}: codebase_version: expected v2.0, v2.1 or v3.0, got ${JSON.stringify(codebaseVersion)} (v1.x datasets must be converted with LeRobot first)`,
  );
}

export function parseInfo(raw: unknown, file: string): DatasetInfo {
  const info = validate(InfoJson, raw, () => `${file}: `);
  const version = versionOf(info.codebase_version, file);
  const features: Record<string, Feature> = {};
  const cameras: CameraFeature[] = [];
  for (const [key, f] of Object.entries(info.features)) {
    if (f.dtype === 'video' || f.dtype === 'image') {
      const cam = cameraOf(key, f, file);
      cameras.push(cam);
      features[key] = cam;
    } else {
      features[key] = { key, dtype: f.dtype, shape: f.shape, names: flattenNames(f.names) };
    }
  }
  if (cameras.some((c) => c.video) && !info.video_path) {
    throw new UserError(
      `${file}: video_path: expected a path template because video features exist, got nothing`,
    );
  }
  return {
    version,
    codebaseVersion: info.codebase_version,
    robotType: info.robot_type ?? null,
    fps: info.fps,
    totalEpisodes: info.total_episodes,
    totalFrames: info.total_frames,
    totalTasks: info.total_tasks ?? null,
    chunksSize: info.chunks_size,
    dataPath: info.data_path,
    videoPath: info.video_path ?? null,
    features,
    cameras,
    simulation: parseSimProvenance(info.simulation),
    raw: info,
  };
}

export function readJson(file: string): unknown {
  if (!existsSync(file)) throw new UserError(`${file}: missing`);
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: invalid JSON (${(e as Error).message})`);
  }
}

/** JSON Lines, with the line number in errors. */
export function readJsonl(file: string): unknown[] {
  if (!existsSync(file)) throw new UserError(`${file}: missing`);
  const out: unknown[] = [];
  for (const [i, line] of readFileSync(file, 'utf8').split('\n').entries()) {
    if (line.trim() === '') continue;
    try {
      out.push(JSON.parse(line));
    } catch (e) {
      throw new UserError(`${file}:${i + 1}: invalid JSON (${(e as Error).message})`);
    }
  }
  return out;
}

export function readInfo(dir: string): DatasetInfo {
  const file = path.join(dir, 'meta', 'info.json');
  if (!existsSync(file)) {
    throw new UserError(`${dir}: not a LeRobot dataset (no meta/info.json)`);
  }
  return parseInfo(readJson(file), file);
}

/** Fills a LeRobot path template such as `data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet`. */
export function fillTemplate(template: string, values: Record<string, number | string>): string {
  return template.replace(/\{(\w+)(?::0?(\d+)d)?\}/g, (_, name: string, width?: string) => {
    const v = values[name];
    if (v === undefined) throw new UserError(`path template ${template}: no value for {${name}}`);
    return width ? String(v).padStart(Number(width), '0') : String(v);
  });
}

/**
 * The datasets the dashboard knows: the folders given with --data (a dataset, or a folder of them) and
 * the datasets its jobs train on. Read with src/data's reader and validator; camera frames decoded by
 * its video code and sent as PNG. The parquet and video code loads on the first dataset page, so a
 * dashboard that only watches jobs never pays for it.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../config/errors.js';
import type { DatasetInfo } from '../data/info.js';
import { readInfo } from '../data/info.js';
import type { LeRobotDataset } from '../data/reader.js';
import type { ValidationReport } from '../data/validate.js';
import { type Curve, minMaxDownsample } from './downsample.js';
import { type Folders, shownPath } from './folders.js';
import { FrameCache } from './frame-cache.js';
import { HttpError } from './http.js';

export interface DatasetEntry {
  /** The request name, null when the dataset could not be found at all. */
  id: string | null;
  dir: string;
  /** Why it is listed: `--data`, `job 3`, … */
  sources: string[];
  error: string | null;
  version: string | null;
  robotType: string | null;
  fps: number | null;
  episodes: number | null;
  frames: number | null;
  cameras: string[];
}

export interface DatasetDetail {
  id: string;
  dir: string;
  version: string;
  robotType: string | null;
  fps: number;
  totalEpisodes: number;
  totalFrames: number;
  features: Array<{ key: string; dtype: string; shape: number[]; names: string[] | null }>;
  cameras: Array<{ key: string; width: number; height: number; video: boolean; codec: string | null }>;
  tasks: string[];
  episodes: Array<{ index: number; length: number; tasks: string[]; seed: number | null }>;
  warnings: string[];
}

export interface EpisodeCurves {
  episode: number;
  length: number;
  fps: number;
  state: { names: string[]; curves: Curve[] } | null;
  action: { names: string[]; curves: Curve[] } | null;
}

const MAX_OPEN = 8;

/** Curves of an episode longer than this many frames are cut to it, per dimension. */
const MAX_EPISODE_POINTS = 4000;

const hasInfo = (dir: string) => existsSync(path.join(dir, 'meta', 'info.json'));

function namesOf(info: DatasetInfo, key: string, dim: number, prefix: string): string[] {
  const names = info.features[key]?.names;
  return names && names.length === dim ? names : Array.from({ length: dim }, (_, i) => `${prefix}${i}`);
}

function childFolders(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => path.join(dir, d.name))
    .sort();
}

function curvesOf(rows: Float32Array, dim: number, length: number): Curve[] {
  const x = Float64Array.from({ length }, (_, i) => i);
  return Array.from({ length: dim }, (_, d) => {
    const y = Float64Array.from({ length }, (_, i) => rows[i * dim + d]!);
    return minMaxDownsample(x, y, MAX_EPISODE_POINTS);
  });
}

export class DatasetsView {
  private readonly open = new Map<string, { stamp: number; ds: Promise<LeRobotDataset> }>();
  private readonly validations = new Map<string, { stamp: number; report: Promise<ValidationReport> }>();
  private readonly frames = new FrameCache();

  constructor(
    private readonly folders: Folders,
    /** The folders given with --data. */
    private readonly given: string[],
    private readonly workspace: string,
    /** Each job's dataset folder, or why it cannot be found. */
    private readonly jobDatasets: () => Array<{ job: number; dir: string | null; error: string | null }>,
  ) {}

  private rel(p: string): string {
    return shownPath(this.workspace, p);
  }

  /** Every dataset, each once, with where it was named and what is wrong with it. */
  list(): DatasetEntry[] {
    const byDir = new Map<string, DatasetEntry>();
    const blank = (dir: string, source: string, error: string | null): DatasetEntry => ({
      id: null,
      dir,
      sources: [source],
      error,
      version: null,
      robotType: null,
      fps: null,
      episodes: null,
      frames: null,
      cameras: [],
    });
    const entry = (dir: string, source: string, error: string | null = null) => {
      const abs = path.resolve(dir);
      const known = byDir.get(abs);
      if (known) {
        known.sources.push(source);
        return;
      }
      const e = blank(this.rel(abs), source, error);
      byDir.set(abs, e);
      if (error) return;
      e.id = this.folders.idOf(abs) ?? this.folders.add(abs).name;
      try {
        const info = readInfo(abs);
        Object.assign(e, {
          version: info.codebaseVersion,
          robotType: info.robotType,
          fps: info.fps,
          episodes: info.totalEpisodes,
          frames: info.totalFrames,
          cameras: info.cameras.map((c) => c.key),
        });
      } catch (err) {
        e.error = (err as Error).message;
      }
    };
    for (const dir of this.given) {
      if (!existsSync(dir)) entry(dir, '--data', `--data ${this.rel(dir)}: no such folder`);
      else if (hasInfo(dir) || !statSync(dir).isDirectory()) entry(dir, '--data');
      else {
        const inside = childFolders(dir).filter(hasInfo);
        if (inside.length === 0) {
          entry(
            dir,
            '--data',
            `--data ${this.rel(dir)}: not a LeRobot dataset (no meta/info.json), nor a folder of them`,
          );
        }
        for (const child of inside) entry(child, '--data');
      }
    }
    for (const j of this.jobDatasets()) {
      if (j.dir) entry(j.dir, `job ${j.job}`);
      else byDir.set(`job ${j.job}`, blank('-', `job ${j.job}`, j.error));
    }
    return [...byDir.values()];
  }

  /** The dataset a request names, its folder looked up afresh (a job may have named it since). */
  private locate(id: string): { dir: string; id: string } {
    if (!this.folders.list().some((f) => id === f.name || id.startsWith(`${f.name}/`))) this.list();
    const { file, id: name } = this.folders.resolve(id, 'dataset');
    if (!hasInfo(file)) {
      throw new HttpError(
        404,
        `dataset ${name}: ${this.rel(file)} is not a LeRobot dataset (no meta/info.json)`,
      );
    }
    return { dir: file, id: name };
  }

  /** The opened dataset, opened again when its info.json changed; a 422 naming it when it cannot be read. */
  private async dataset(id: string): Promise<{ ds: LeRobotDataset; id: string }> {
    const { dir, id: name } = this.locate(id);
    const stamp = statSync(path.join(dir, 'meta', 'info.json')).mtimeMs;
    let entry = this.open.get(dir);
    if (!entry || entry.stamp !== stamp) {
      const { openDataset } = await import('../data/reader.js');
      entry = { stamp, ds: openDataset(dir) };
      this.open.delete(dir);
      this.open.set(dir, entry);
      // Each open dataset keeps its parquet files' metadata: a few at once are enough for a page.
      while (this.open.size > MAX_OPEN) this.open.delete(this.open.keys().next().value!);
      // A dataset that failed to open is tried again on the next request (it may be being written).
      entry.ds.catch(() => this.open.delete(dir));
    }
    try {
      return { ds: await entry.ds, id: name };
    } catch (e) {
      if (e instanceof UserError) throw new HttpError(422, `dataset ${name} cannot be read: ${e.message}`);
      throw e;
    }
  }

  async detail(id: string): Promise<DatasetDetail> {
    const { ds, id: name } = await this.dataset(id);
    const info = ds.info;
    return {
      id: name,
      dir: this.rel(ds.dir),
      version: info.codebaseVersion,
      robotType: info.robotType,
      fps: info.fps,
      totalEpisodes: ds.episodes.length,
      totalFrames: ds.numFrames,
      features: Object.values(info.features).map((f) => ({
        key: f.key,
        dtype: f.dtype,
        shape: f.shape,
        names: f.names,
      })),
      cameras: info.cameras.map((c) => ({
        key: c.key,
        width: c.width,
        height: c.height,
        video: c.video,
        codec: c.codec,
      })),
      tasks: [...ds.tasks.values()],
      episodes: ds.episodes.map((e) => ({ index: e.index, length: e.length, tasks: e.tasks, seed: e.seed })),
      warnings: ds.warnings,
    };
  }

  async episode(id: string, index: number): Promise<EpisodeCurves> {
    const { ds, id: name } = await this.dataset(id);
    try {
      ds.episode(index);
      const data = await ds.readEpisode(index);
      const info = ds.info;
      return {
        episode: index,
        length: data.length,
        fps: info.fps,
        state: data.state
          ? {
              names: namesOf(info, 'observation.state', data.stateDim, 's'),
              curves: curvesOf(data.state, data.stateDim, data.length),
            }
          : null,
        action: data.action
          ? {
              names: namesOf(info, 'action', data.actionDim, 'a'),
              curves: curvesOf(data.action, data.actionDim, data.length),
            }
          : null,
      };
    } catch (e) {
      if (e instanceof UserError) throw new HttpError(422, `dataset ${name}, episode ${index}: ${e.message}`);
      throw e;
    }
  }

  /** One camera frame as PNG. */
  async framePng(id: string, index: number, camera: string, frame: number): Promise<Uint8Array> {
    const { ds, id: name } = await this.dataset(id);
    let length: number;
    let key: string;
    try {
      length = ds.episode(index).length;
      key = ds.camera(camera).key;
    } catch (e) {
      if (e instanceof UserError) throw new HttpError(404, `dataset ${name}: ${e.message}`);
      throw e;
    }
    if (frame >= length) {
      throw new HttpError(
        404,
        `dataset ${name}, episode ${index}: frame ${frame} is outside 0..${length - 1}`,
      );
    }
    let f: Awaited<ReturnType<FrameCache['get']>>;
    try {
      f = await this.frames.get(`${ds.dir}|${index}|${key}`, frame, length, (frames, onFrame) =>
        ds.streamFrames(index, key, onFrame, frames),
      );
    } catch (e) {
      if (e instanceof UserError) throw new HttpError(422, `dataset ${name}: ${e.message}`);
      throw e;
    }
    const { encode } = await import('fast-png');
    return encode({ width: f.width, height: f.height, data: f.rgb, channels: 3, depth: 8 });
  }

  /** src/data's validation of the dataset, run once per change of its info.json. */
  async validate(id: string): Promise<ValidationReport & { id: string }> {
    const { dir, id: name } = this.locate(id);
    const stamp = statSync(path.join(dir, 'meta', 'info.json')).mtimeMs;
    let entry = this.validations.get(dir);
    if (!entry || entry.stamp !== stamp) {
      const { validateDataset } = await import('../data/validate.js');
      entry = { stamp, report: validateDataset(dir) };
      this.validations.set(dir, entry);
      entry.report.catch(() => this.validations.delete(dir));
    }
    const report = await entry.report;
    return { ...report, dir: this.rel(report.dir), id: name };
  }
}

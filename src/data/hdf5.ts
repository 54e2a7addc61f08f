/**
 * Import of ALOHA's own recordings (one HDF5 file per episode: `/observations/qpos` [T, 14],
 * `/observations/qvel`, `/observations/images/<cam>` [T, H, W, 3] uint8, `/action` [T, 14]) into a
 * LeRobot dataset, as LeRobot's and openpi's ALOHA conversion scripts do.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import h5wasm from 'h5wasm/node';
import { UserError } from '../config/errors.js';
import { runTool } from './ffmpeg.js';
import type { VideoCodec } from './video.js';
import { createDataset, type WriteFormat } from './writer.js';

type H5File = InstanceType<typeof h5wasm.File>;
type H5Dataset = InstanceType<typeof h5wasm.Dataset>;

/** ALOHA's joint names, left arm then right (14 dims). */
export const ALOHA_NAMES = ['left', 'right'].flatMap((arm) =>
  ['waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper'].map(
    (j) => `${arm}_${j}`,
  ),
);

export interface AlohaImportOptions {
  format: WriteFormat;
  task: string;
  fps?: number;
  /** Store cameras as mp4 (default) or PNG in parquet. */
  video?: boolean;
  codec?: VideoCodec;
  onEpisode?: (done: number, total: number, file: string) => void;
}

/** The HDF5 files to import: the given files, or every `.hdf5`/`.h5` in a given folder (sorted naturally). */
export function listEpisodeFiles(inputs: string[]): string[] {
  const files: string[] = [];
  for (const input of inputs) {
    if (!existsSync(input)) throw new UserError(`${input}: no such file or folder`);
    if (statSync(input).isDirectory()) {
      const found = readdirSync(input)
        .filter((f) => /\.(hdf5|h5)$/.test(f))
        .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))
        .map((f) => path.join(input, f));
      if (found.length === 0) throw new UserError(`${input}: no .hdf5 files in this folder`);
      files.push(...found);
    } else files.push(input);
  }
  return files;
}

function dataset(f: H5File, name: string, file: string): H5Dataset {
  const d = f.get(name);
  if (!(d instanceof h5wasm.Dataset)) {
    throw new UserError(
      `${file}: /${name} is missing (found: ${f.keys().join(', ')}); expected ALOHA's episode layout`,
    );
  }
  return d;
}

function matrix(f: H5File, name: string, file: string): { data: Float32Array; rows: number; cols: number } {
  const d = dataset(f, name, file);
  const shape = d.shape ?? [];
  if (shape.length !== 2)
    throw new UserError(`${file}: /${name}: expected shape [T, D], got [${shape.join(', ')}]`);
  const value = d.value as ArrayLike<number>;
  return { data: Float32Array.from(value), rows: shape[0]!, cols: shape[1]! };
}

/** Decodes JPEG images (ALOHA's `compress` mode) through ffmpeg, one process per camera and episode. */
async function decodeJpegs(jpegs: Uint8Array[], what: string): Promise<Uint8Array[]> {
  const args = ['-v', 'error', '-f', 'image2pipe', '-c:v', 'mjpeg', '-i', 'pipe:0'];
  args.push('-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1');
  const all = await runTool('ffmpeg', args, `${what}: cannot decode the JPEG images`, jpegs);
  const size = all.length / jpegs.length;
  if (!Number.isInteger(size)) {
    throw new UserError(
      `${what}: ffmpeg decoded ${all.length} bytes for ${jpegs.length} JPEG images, expected a multiple of ${jpegs.length}`,
    );
  }
  return jpegs.map((_, i) => all.subarray(i * size, (i + 1) * size));
}

interface Camera {
  name: string;
  height: number;
  width: number;
  /** Frame t as packed HWC RGB. */
  frame: (t: number) => Uint8Array;
}

async function cameras(f: H5File, file: string, length: number): Promise<Camera[]> {
  const group = f.get('observations/images');
  if (!(group instanceof h5wasm.Group)) return [];
  const out: Camera[] = [];
  for (const name of group.keys().sort()) {
    const d = dataset(f, `observations/images/${name}`, file);
    const shape = d.shape ?? [];
    if (shape[0] !== length) {
      throw new UserError(
        `${file}: /observations/images/${name}: ${shape[0]} frames, /observations/qpos has ${length}`,
      );
    }
    if (shape.length === 4 && shape[3] === 3) {
      out.push({
        name,
        height: shape[1]!,
        width: shape[2]!,
        frame: (t) => d.slice([[t, t + 1]]) as Uint8Array,
      });
    } else if (shape.length === 2) {
      // Compressed recordings store each frame's JPEG bytes zero-padded to a common length.
      const lens =
        f.get('compress_len') instanceof h5wasm.Dataset
          ? (dataset(f, 'compress_len', file).value as ArrayLike<number>)
          : null;
      const cams = group.keys().sort();
      const ci = cams.indexOf(name);
      const jpegs = Array.from({ length }, (_, t) => {
        const row = d.slice([[t, t + 1]]) as Uint8Array;
        const n = lens ? Number(lens[ci * length + t]) : row.length;
        return row.subarray(0, n);
      });
      const frames = await decodeJpegs(jpegs, `${file}: /observations/images/${name}`);
      const probe = frames[0]!.length / 3;
      const width = jpegWidth(jpegs[0]!) ?? 0;
      if (!width || probe % width !== 0)
        throw new UserError(`${file}: /observations/images/${name}: cannot read the JPEG frame size`);
      out.push({ name, height: probe / width, width, frame: (t) => frames[t]! });
    } else {
      throw new UserError(
        `${file}: /observations/images/${name}: expected shape [T, H, W, 3] or [T, bytes] (JPEG), got [${shape.join(', ')}]`,
      );
    }
  }
  return out;
}

/** The width in a JPEG's start-of-frame marker. */
function jpegWidth(j: Uint8Array): number | null {
  let i = 2;
  while (i + 9 < j.length) {
    if (j[i] !== 0xff) return null;
    const marker = j[i + 1]!;
    const len = (j[i + 2]! << 8) | j[i + 3]!;
    if (marker >= 0xc0 && marker <= 0xc3) return (j[i + 7]! << 8) | j[i + 8]!;
    i += 2 + len;
  }
  return null;
}

/** Imports ALOHA HDF5 episodes (in the given order) into a new LeRobot dataset at `out`. */
export async function importAloha(
  inputs: string[],
  out: string,
  opts: AlohaImportOptions,
): Promise<{ episodes: number; frames: number }> {
  const files = listEpisodeFiles(inputs);
  await h5wasm.ready;
  let writer: Awaited<ReturnType<typeof createDataset>> | null = null;
  let layout = '';
  let frames = 0;
  for (const [i, file] of files.entries()) {
    let f: H5File;
    try {
      f = new h5wasm.File(file, 'r');
    } catch (e) {
      throw new UserError(`${file}: not a readable HDF5 file (${(e as Error).message})`);
    }
    try {
      const qpos = matrix(f, 'observations/qpos', file);
      const action = matrix(f, 'action', file);
      if (action.rows !== qpos.rows) {
        throw new UserError(`${file}: /action has ${action.rows} rows, /observations/qpos has ${qpos.rows}`);
      }
      const cams = await cameras(f, file, qpos.rows);
      const thisLayout = JSON.stringify([
        qpos.cols,
        action.cols,
        cams.map((c) => [c.name, c.height, c.width]),
      ]);
      if (!writer) {
        layout = thisLayout;
        writer = await createDataset(out, {
          fps: opts.fps ?? 50,
          robotType: 'aloha',
          format: opts.format,
          video: opts.video,
          codec: opts.codec,
          features: {
            state: {
              names:
                qpos.cols === 14 ? ALOHA_NAMES : Array.from({ length: qpos.cols }, (_, k) => `qpos_${k}`),
            },
            action: {
              names:
                action.cols === 14
                  ? ALOHA_NAMES
                  : Array.from({ length: action.cols }, (_, k) => `action_${k}`),
            },
            cameras: cams.map((c) => ({ name: c.name, height: c.height, width: c.width })),
          },
        });
      } else if (thisLayout !== layout) {
        throw new UserError(
          `${file}: its dims or cameras differ from the first episode's (${thisLayout} vs ${layout})`,
        );
      }
      for (let t = 0; t < qpos.rows; t++) {
        writer.addFrame({
          state: qpos.data.subarray(t * qpos.cols, (t + 1) * qpos.cols),
          action: action.data.subarray(t * action.cols, (t + 1) * action.cols),
          images: Object.fromEntries(cams.map((c) => [c.name, c.frame(t)])),
          task: opts.task,
        });
        if (t % 32 === 31) await writer.drain();
      }
      await writer.saveEpisode();
      frames += qpos.rows;
    } catch (e) {
      writer?.discardEpisode();
      throw e;
    } finally {
      f.close();
    }
    opts.onEpisode?.(i + 1, files.length, file);
  }
  await writer!.finalize();
  return { episodes: files.length, frames };
}

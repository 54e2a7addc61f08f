import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import h5wasm from 'h5wasm/node';
import { afterAll, vi } from 'vitest';
import YAML from 'yaml';
import { register } from '../../src/cli/data.js';
import { TrainConfig } from '../../src/config/schema.js';
import { toolPath } from '../../src/data/ffmpeg.js';
import { createDataset, type WriteFormat } from '../../src/data/writer.js';

const made: string[] = [];

/** A fresh folder under the system's temp dir, removed when the test file finishes. */
export const tmpDir = (tag: string) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), `vla-data-${tag}-`));
  made.push(dir);
  return dir;
};

afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

export const CAMERAS = [
  { name: 'cam_high', height: 48, width: 64 },
  { name: 'cam_left_wrist', height: 32, width: 32 },
];

/** A smooth, frame-dependent picture (h264 keeps smooth content close to the original). */
export function picture(h: number, w: number, episode: number, frame: number, cam: number): Uint8Array {
  const img = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = (y * w + x) * 3;
      img[p] = (x * 2 + frame * 9 + episode * 20) & 255;
      img[p + 1] = (y * 3 + cam * 60 + frame * 5) & 255;
      img[p + 2] = (128 + 60 * Math.sin((x + y) / 12 + frame / 3)) | 0;
    }
  }
  return img;
}

export const stateOf = (episode: number, frame: number) =>
  Float32Array.from({ length: 3 }, (_, k) => Math.sin(episode + frame * 0.1 + k) * (k + 1));
export const actionOf = (episode: number, frame: number) =>
  Float32Array.from({ length: 2 }, (_, k) => Math.cos(episode * 2 + frame * 0.07 + k) + k);

export const LENGTHS = [12, 9, 15];
export const taskOf = (episode: number) => (episode === 1 ? 'stack the blocks' : 'pick up the cube');

/** Writes the synthetic dataset (3 episodes, one discarded attempt between them). */
export async function writeSynthetic(
  dir: string,
  format: WriteFormat,
  video: boolean,
  fps = 10,
): Promise<void> {
  const w = await createDataset(dir, {
    fps,
    robotType: 'test_bot',
    format,
    video,
    features: { state: { names: ['a', 'b', 'c'] }, action: { names: ['u', 'v'] }, cameras: CAMERAS },
  });
  for (const [e, len] of LENGTHS.entries()) {
    if (e === 1) {
      for (let f = 0; f < 4; f++) {
        w.addFrame({
          state: stateOf(99, f),
          action: actionOf(99, f),
          images: Object.fromEntries(CAMERAS.map((c, ci) => [c.name, picture(c.height, c.width, 99, f, ci)])),
          task: 'a discarded task',
        });
      }
      w.discardEpisode();
    }
    for (let f = 0; f < len; f++) {
      w.addFrame({
        state: stateOf(e, f),
        action: actionOf(e, f),
        images: Object.fromEntries(CAMERAS.map((c, ci) => [c.name, picture(c.height, c.width, e, f, ci)])),
        task: taskOf(e),
      });
    }
    await w.saveEpisode();
  }
  await w.finalize();
}

/**
 * An ALOHA recording: qpos/qvel/action [T, 14] and one camera, raw [T, H, W, 3] or, `compressed`, as
 * ALOHA's recorder stores JPEGs (padded rows [T, max] and their lengths in /compress_len). Call after
 * `await h5wasm.ready`.
 */
export function writeAlohaEpisode(file: string, T: number, seed: number, compressed = false) {
  const f = new h5wasm.File(file, 'w');
  const obs = f.create_group('observations');
  const rows = (k: number) => Float64Array.from({ length: T * 14 }, (_, i) => Math.sin(seed + k + i * 0.01));
  obs.create_dataset({ name: 'qpos', data: rows(0), shape: [T, 14] });
  obs.create_dataset({ name: 'qvel', data: rows(1), shape: [T, 14] });
  f.create_dataset({ name: 'action', data: rows(2), shape: [T, 14] });
  const images = obs.create_group('images');
  const frames = Array.from({ length: T }, (_, t) => picture(24, 32, seed, t, 0));
  if (!compressed) {
    const all = new Uint8Array(T * 24 * 32 * 3);
    frames.forEach((fr, t) => all.set(fr, t * fr.length));
    images.create_dataset({ name: 'cam_high', data: all, shape: [T, 24, 32, 3], dtype: '<B' });
  } else {
    const jpegs = frames.map(
      (fr) =>
        spawnSync(
          toolPath('ffmpeg'),
          [
            '-v',
            'error',
            '-f',
            'rawvideo',
            '-pix_fmt',
            'rgb24',
            '-s',
            '32x24',
            '-i',
            '-',
            '-q:v',
            '2',
            '-f',
            'mjpeg',
            '-',
          ],
          {
            input: fr,
          },
        ).stdout,
    );
    const max = Math.max(...jpegs.map((j) => j.length));
    const padded = new Uint8Array(T * max);
    jpegs.forEach((j, t) => padded.set(j, t * max));
    images.create_dataset({ name: 'cam_high', data: padded, shape: [T, max], dtype: '<B' });
    f.create_dataset({
      name: 'compress_len',
      data: Float64Array.from(jpegs.map((j) => j.length)),
      shape: [1, T],
    });
  }
  f.close();
  return { frames, qpos: rows(0), action: rows(2) };
}

/** A workspace with a 3-state/2-action robot whose cameras are cam_high, cam_low (absent from the data) and cam_left_wrist. */
export function workspace(
  dataset: string,
  data: Record<string, unknown> = {},
  model: Record<string, unknown> = {},
) {
  const cwd = tmpDir('ws');
  mkdirSync(path.join(cwd, 'robots'));
  mkdirSync(path.join(cwd, 'configs'));
  writeFileSync(
    path.join(cwd, 'robots/test_bot.yaml'),
    `name: test_bot
control_hz: 10
state:
  names: [a, b, c]
  parts: [{ key: state, dim: 3 }]
action:
  names: [u, v]
cameras:
  - { name: cam_high, key: [images, cam_high], shape: [48, 64, 3], layout: hwc, required: true }
  - { name: cam_low, key: [images, cam_low], shape: [48, 64, 3], layout: hwc }
  - { name: cam_left_wrist, key: [images, cam_left_wrist], shape: [32, 32, 3], layout: hwc }
`,
  );
  const raw = {
    name: 'test_cfg',
    robot: 'test_bot',
    model: { action_horizon: 5, ...model },
    data: { dataset, asset_id: 'test_asset', default_prompt: 'do the thing', augment: null, ...data },
  };
  writeFileSync(path.join(cwd, 'configs/test_cfg.yaml'), YAML.stringify(raw));
  return { cwd, config: TrainConfig.parse(raw) };
}

/** Runs `vla data ...` in this process (no CLI start-up cost), from `cwd` if given, and returns what it printed. */
export async function runData(args: string[], cwd?: string): Promise<string> {
  const program = new Command('vla').exitOverride();
  register(program);
  const lines: string[] = [];
  const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => {
    lines.push(a.join(' '));
  });
  const before = process.cwd();
  try {
    if (cwd) process.chdir(cwd);
    await program.parseAsync(['node', 'vla', 'data', ...args]);
  } finally {
    process.chdir(before);
    spy.mockRestore();
  }
  return lines.join('\n');
}

/** Every file under `dir`, hidden ones included, relative with `/`, in order. */
export function filesUnder(dir: string, rel = ''): string[] {
  return readdirSync(path.join(dir, rel), { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory()
        ? filesUnder(dir, path.join(rel, e.name))
        : [path.join(rel, e.name).split(path.sep).join('/')],
    )
    .sort();
}

/** The files of `a` and `b` that are not byte for byte the same, or are missing from either. */
export function differingFiles(a: string, b: string): string[] {
  const all = [...new Set([...filesUnder(a), ...filesUnder(b)])].sort();
  return all.filter((f) => {
    const [fa, fb] = [path.join(a, f), path.join(b, f)];
    return !existsSync(fa) || !existsSync(fb) || !readFileSync(fa).equals(readFileSync(fb));
  });
}

/**
 * Dataset figures of issue 3: loader throughput from the frame cache, the cost of building the cache
 * from mp4 against ffmpeg decoding the same videos alone, and norm stats over 20,000 frames.
 * Datasets are synthetic, written by our own writer into a temporary folder.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { table } from '../src/cli/output.js';
import { TrainConfig } from '../src/config/schema.js';
import { openFrameCache } from '../src/data/cache.js';
import { openTrainingData } from '../src/data/loader.js';
import { computeNormStats } from '../src/data/normstats.js';
import { openDataset } from '../src/data/reader.js';
import { createDataset } from '../src/data/writer.js';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const DIM = 14;
const names = Array.from({ length: DIM }, (_, i) => `j${i}`);

function picture(h: number, w: number, seed: number, t: number): Uint8Array {
  const img = new Uint8Array(h * w * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = (y * w + x) * 3;
      img[p] = (x + t * 3 + seed * 40) & 255;
      img[p + 1] = (y * 2 + t) & 255;
      img[p + 2] = (128 + 100 * Math.sin((x - y + t) / 15)) | 0;
    }
  }
  return img;
}

async function writeData(
  dir: string,
  episodes: number,
  length: number,
  cameras: Array<{ name: string; height: number; width: number }>,
) {
  const w = await createDataset(dir, {
    fps: 50,
    robotType: 'bench',
    format: 'v2.1',
    features: { state: { names }, action: { names }, cameras },
  });
  for (let e = 0; e < episodes; e++) {
    for (let t = 0; t < length; t++) {
      const s = Float32Array.from({ length: DIM }, (_, k) => Math.sin(e + t * 0.01 + k));
      const a = Float32Array.from({ length: DIM }, (_, k) => Math.sin(e + (t + 1) * 0.01 + k));
      w.addFrame({
        state: s,
        action: a,
        images: Object.fromEntries(
          cameras.map((c, ci) => [c.name, picture(c.height, c.width, e * 7 + ci, t)]),
        ),
        task: 'bench task',
      });
    }
    await w.saveEpisode();
  }
  await w.finalize();
}

function workspace(root: string, dataset: string, cameras: string[]) {
  mkdirSync(path.join(root, 'robots'), { recursive: true });
  writeFileSync(
    path.join(root, 'robots/bench_bot.yaml'),
    `name: bench_bot
control_hz: 50
state: { names: [${names.join(', ')}], parts: [{ key: state, dim: ${DIM} }] }
action: { names: [${names.join(', ')}] }
cameras:
${cameras.map((c) => `  - { name: ${c}, key: [images, ${c}], shape: [224, 224, 3], layout: hwc }`).join('\n')}
`,
  );
  return TrainConfig.parse({
    name: 'bench',
    robot: 'bench_bot',
    model: { action_horizon: 50 },
    data: {
      dataset,
      delta_action_mask: [
        true,
        true,
        true,
        true,
        true,
        true,
        false,
        true,
        true,
        true,
        true,
        true,
        true,
        false,
      ],
    },
  });
}

function ffmpegDecode(file: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'ffmpeg',
      ['-v', 'error', '-i', file, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let bytes = 0;
    child.stdout.on('data', (d: Buffer) => {
      bytes += d.length;
    });
    child.on('error', reject);
    child.on('close', () => resolve(bytes));
  });
}

export async function run(): Promise<void> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'vla-bench-data-'));
  try {
    const cams = [
      { name: 'cam_high', height: 240, width: 320 },
      { name: 'cam_wrist', height: 240, width: 320 },
    ];
    const videoDir = path.join(root, 'video');
    let t0 = performance.now();
    await writeData(videoDir, 4, 250, cams);
    const writeS = (performance.now() - t0) / 1000;
    const config = workspace(root, videoDir, ['cam_high', 'cam_wrist']);
    const ds = await openDataset(videoDir);

    // Cache build (decode + letterbox to 96 + write) against ffmpeg decoding the same files alone.
    const buildMs: number[] = [];
    const decodeMs: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      t0 = performance.now();
      for (const ep of ds.episodes) await ffmpegDecode(ep.videos['observation.images.cam_high']!.file);
      decodeMs.push(performance.now() - t0);
      const dir = path.join(root, `cache-build-${rep}`);
      t0 = performance.now();
      (await openFrameCache(ds, 'observation.images.cam_high', 96, { dir })).close();
      buildMs.push(performance.now() - t0);
    }

    // Loader throughput from the cache: 2 cameras at 96×96, 14-dim state, 50-step chunks, batch 32.
    const cacheDir = path.join(root, 'cache');
    const stats = (await computeNormStats(config, { cwd: root })).stats;
    const data = await openTrainingData(config, {
      imageSize: 96,
      horizon: 50,
      normStats: stats,
      frameCache: { dir: cacheDir },
      cwd: root,
    });
    const B = 32;
    const steps = 100;
    const rates: number[] = [];
    for (let rep = 0; rep < 5; rep++) {
      t0 = performance.now();
      for (let s = 0; s < steps; s++) data.batchAt(rep * steps + s, B, 42);
      rates.push((steps * B) / ((performance.now() - t0) / 1000));
    }
    data.close();

    // Norm stats over 20,000 frames (no cameras: stats read state and actions only).
    const statsDir = path.join(root, 'stats');
    await writeData(statsDir, 20, 1000, []);
    const statsConfig = { ...config, data: { ...config.data, dataset: statsDir } };
    const statsS: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      t0 = performance.now();
      const r = await computeNormStats(statsConfig, { cwd: root });
      statsS.push((performance.now() - t0) / 1000);
      if (r.frames !== 20_000) throw new Error(`expected 20000 frames, got ${r.frames}`);
    }

    const frames = ds.numFrames;
    console.log(
      table(
        ['measure', 'median', 'target'],
        [
          ['write 1000 frames, 2 cams 320x240 h264 (s)', writeS.toFixed(2), '-'],
          [`ffmpeg decode alone, ${frames} frames 320x240 (ms)`, median(decodeMs).toFixed(0), '-'],
          [`cache build from mp4 to 96x96, ${frames} frames (ms)`, median(buildMs).toFixed(0), '-'],
          ['cache build / ffmpeg decode', (median(buildMs) / median(decodeMs)).toFixed(2), '<= 2'],
          ['loader samples/s (2 cams 96x96, H=50, batch 32)', median(rates).toFixed(0), '>= 5000'],
          ['norm stats, 20,000 frames, H=50 chunks (s)', median(statsS).toFixed(2), '< 10'],
        ],
      ),
    );
    console.log(
      `\n(${os.cpus().length} cores shared with other work: expect noise; ratios within this run are the fair comparison)`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

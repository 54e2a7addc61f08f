import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { register } from '../../src/cli/infer.js';
import { resolveConfig } from '../../src/config/load.js';
import { createDataset } from '../../src/data/writer.js';
import { runTraining } from '../../src/train/run.js';
import { writeNormStats } from '../../src/transforms/normalize.js';

const cwd = process.cwd();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-infer-'));
const D = 8;
/** The recorded action of (episode, frame, dim): easy to recognise in the printed table. */
const action = (e: number, f: number, d: number) => e * 10 + f + d / 10;

beforeAll(async () => {
  await setupBackend({ backend: 'wasm' });
  process.chdir(tmp);
  process.env.VLA_CACHE_DIR = path.join(tmp, 'cache');
  const writer = await createDataset(path.join(tmp, 'ds'), {
    fps: 15,
    robotType: 'single_arm_sim',
    format: 'v2.1',
    video: false,
    features: {
      state: { names: Array.from({ length: D }, (_, i) => `s${i}`) },
      action: { names: Array.from({ length: D }, (_, i) => `a${i}`) },
      cameras: [{ name: 'exterior_image_1_left', height: 32, width: 32 }],
    },
  });
  for (let e = 0; e < 2; e++) {
    for (let f = 0; f < 6; f++) {
      writer.addFrame({
        state: Float32Array.from({ length: D }, (_, d) => action(e, f, d) - 1),
        action: Float32Array.from({ length: D }, (_, d) => action(e, f, d)),
        images: { exterior_image_1_left: new Uint8Array(32 * 32 * 3).fill(40 * f) },
        task: 'put the cube in the bowl',
      });
    }
    await writer.saveEpisode();
  }
  await writer.finalize();
  mkdirSync(path.join(tmp, 'configs'));
  writeFileSync(
    path.join(tmp, 'configs', 'infer_test.yaml'),
    [
      'robot: single_arm_sim',
      'model: { preset: tiny, action_horizon: 4 }',
      `data: { dataset: ${path.join(tmp, 'ds')}, asset_id: t, augment: null }`,
      'train: { steps: 2, batch_size: 4, save_interval: 2, log_interval: 1 }',
    ].join('\n'),
  );
  const zero = new Array(D).fill(0);
  const one = new Array(D).fill(1);
  writeNormStats(path.join(tmp, 'assets', 't', 'norm_stats.json'), {
    state: { mean: zero, std: one },
    actions: { mean: zero, std: one },
  });
});

afterAll(() => {
  process.chdir(cwd);
  rmSync(tmp, { recursive: true, force: true });
});

/** Runs `vla <args>` in this process and returns what it printed to stdout. */
async function runInfer(args: string[]): Promise<string> {
  const printed: string[] = [];
  const spy = vi.spyOn(console, 'log').mockImplementation((line: string) => printed.push(line));
  const stderr = vi.spyOn(console, 'error').mockImplementation(() => {});
  try {
    const program = new Command('vla').exitOverride();
    register(program);
    await program.parseAsync(args, { from: 'user' });
  } finally {
    spy.mockRestore();
    stderr.mockRestore();
  }
  return printed.join('\n');
}

describe('vla infer', () => {
  it('samples a chunk for the asked frame and prints it beside the recorded actions', async () => {
    const { config } = resolveConfig('infer_test');
    const run = await runTraining({ config, runDir: path.join(tmp, 'run'), resume: false });
    expect(run.checkpoint).toBe(path.join(tmp, 'run', '2'));
    const out = await runInfer([
      'infer',
      '--checkpoint',
      run.checkpoint!,
      '--episode',
      '1',
      '--frame',
      '3',
      '--show',
      '4',
    ]);
    expect(out).toMatch(/episode 1 frame 3 · prompt "put the cube in the bowl" · 4-step chunk/);
    const rows = out.split('\n').filter((l) => /^\s+\d+\s/.test(l));
    expect(rows.length).toBe(4);
    const recorded = (row: string) =>
      row
        .trim()
        .split(/\s+/)
        .slice(1 + D, 1 + 2 * D)
        .map(Number);
    // frames 3, 4, 5 of episode 1, then past the episode's end
    for (let k = 0; k < 3; k++)
      expect(recorded(rows[k]!)).toEqual(
        Array.from({ length: D }, (_, d) => Number(action(1, 3 + k, d).toFixed(3))),
      );
    expect(rows[3]).toMatch(/past the episode end/);
    expect(out).toMatch(/normalized MSE vs the recording: [\d.]+ over 3 steps × 8 dims/);
  });

  it("--ablate compares the chunk error with the own inputs, another episode's cameras and another prompt", async () => {
    const ablate = (...more: string[]) =>
      runInfer([
        'infer',
        '--checkpoint',
        path.join(tmp, 'run', '2'),
        '--episode',
        '0',
        '--ablate',
        '2',
        ...more,
      ]);
    const out = await ablate('--frame', '2');
    expect(out).toMatch(/2 episodes from 0, frame 2, 2 noise seeds each/);
    expect(out).toMatch(/the frame's own cameras and prompt\s+\d+\.\d{4}/);
    expect(out).toMatch(/another episode's cameras\s+\d+\.\d{4}/);
    // This dataset has a single task: there is no other prompt to try.
    expect(out).toMatch(/another prompt\s+n\/a \(one prompt in the dataset\)/);
    // At noise scale 0 every seed gives the same chunk: one is drawn.
    const det = await ablate('--noise-scale', '0');
    expect(det).toMatch(/2 episodes from 0, frame 0, 1 noise seed each at noise scale 0/);
  });

  it('names the episodes there are when asked for one that is not', async () => {
    const program = new Command('vla').exitOverride();
    register(program);
    const stderr = vi.spyOn(console, 'error').mockImplementation(() => {});
    await expect(
      program.parseAsync(['infer', '--checkpoint', path.join(tmp, 'run', '2'), '--episode', '7'], {
        from: 'user',
      }),
    ).rejects.toThrow(/--episode 7: the dataset has episodes 0, 1/);
    stderr.mockRestore();
  });
});

import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register } from '../../src/cli/sim.js';
import { openDataset } from '../../src/data/reader.js';
import { type RecordOptions, recordDataset } from '../../src/sim/record.js';
import { pickPlacePlan } from '../../src/sim/tasks/pick_place.js';
import { runInProcess } from '../cli/in-process.js';
import { differingFiles } from '../data/helpers.js';

const VLA = path.resolve(import.meta.dirname, '../../bin/vla.js');

function vla(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [VLA, ...args], { encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** `vla sim …` in this process: for the commands that answer before any simulation runs. */
const sim = (...args: string[]) => runInProcess(register, ['sim', ...args]);

const savedEpisodes = (dir: string): number => {
  try {
    return JSON.parse(readFileSync(path.join(dir, 'meta/info.json'), 'utf8')).total_episodes;
  } catch {
    return 0;
  }
};

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'vla-sim-record-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('vla sim record --resume', () => {
  it('goes on with a recording killed (kill -9) mid-episode, to the same files as an uninterrupted one', async () => {
    const args = [
      'sim',
      'record',
      '--task',
      'pick_place',
      '--episodes',
      '2',
      '--seed',
      '7',
      '--size',
      '32x32',
    ];
    const full = path.join(dir, 'full');
    const part = path.join(dir, 'part');
    const uninterrupted = vla(...args, '--out', full);

    const child = spawn(process.execPath, [VLA, ...args, '--out', part], { stdio: 'ignore' });
    const exited = new Promise((done) => child.once('exit', done));
    // Killed once episode 0 is saved and episode 1 is being encoded (it takes seconds): a whole episode
    // on disk, and the start of another.
    const deadline = Date.now() + 60_000;
    const recording = () =>
      existsSync(path.join(part, '.tmp')) && readdirSync(path.join(part, '.tmp')).length > 0;
    while (!(savedEpisodes(part) >= 1 && recording())) {
      if (Date.now() > deadline) throw new Error('the recording saved no episode within 60 s');
      await sleep(20);
    }
    child.kill('SIGKILL');
    await exited;
    expect(savedEpisodes(part)).toBe(1);

    const record = args.slice(1);
    const again = await sim(...record, '--out', part);
    const otherSize = await sim(...record.slice(0, -1), '64x32', '--out', part, '--resume');
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      `vla: error: ${part}: already exists and is not empty: choose a new folder, or pass --resume to go on with the recording in it\n`,
    );
    expect(otherSize.code).toBe(1);
    expect(otherSize.stderr).toBe(
      `vla: error: ${part}/meta/info.json: features.observation.images.exterior_image_1_left.shape: expected [32,32,3], as the dataset was started, got [32,64,3]: go on with the settings it was started with, or write a new folder\n`,
    );

    const resumed = await vla(...args, '--out', part, '--resume');
    expect(resumed.stderr).toMatch(/^removed what the interrupted recording left unfinished: \.tmp\//m);
    expect(resumed.stdout).toMatch(
      new RegExp(
        `^kept 1 episode recorded before, recorded 1 episode \\(100 frames\\) of pick_place to ${part} in [\\d.]+ s; 0 failed expert episodes skipped\\n$`,
      ),
    );
    expect((await uninterrupted).code).toBe(0);

    // The same dataset: every file byte for byte (data, metadata and the h264 videos, which are deterministic).
    expect(differingFiles(full, part)).toEqual([]);
    const ds = await openDataset(part);
    expect(ds.episodes.map((e) => [e.length, e.seed])).toEqual([
      [100, 7],
      [100, 8],
    ]);

    const done = await sim(...record, '--out', part, '--resume');
    expect(done.stdout).toBe(`${part} already holds 2 episodes of pick_place, as asked: nothing to record\n`);
    expect(differingFiles(full, part)).toEqual([]);
  }, 90_000);

  it('tries the same seeds after a resume as without one, skipping those the expert fails', async () => {
    // An expert that always fetches the red cube fails every seed whose prompt names another.
    const opts = (out: string): RecordOptions => ({
      task: 'pick_place',
      episodes: 2,
      out,
      format: 'v3.0',
      seed: 0,
      width: 32,
      height: 32,
      plan: pickPlacePlan('red'),
    });
    const whole = await recordDataset(opts(path.join(dir, 'red-full')));
    expect(whole.failed).toBeGreaterThan(0);

    const out = path.join(dir, 'red-part');
    await expect(
      recordDataset({
        ...opts(out),
        onEpisode: (saved) => {
          if (saved === 1) throw new Error('interrupted');
        },
      }),
    ).rejects.toThrow('interrupted');
    const resumed = await recordDataset({ ...opts(out), resume: true });
    expect([resumed.kept, resumed.saved, resumed.seeds, resumed.failed]).toEqual([
      1,
      2,
      whole.seeds,
      whole.failed,
    ]);
    expect(differingFiles(path.join(dir, 'red-full'), out)).toEqual([]);
  }, 90_000);
});

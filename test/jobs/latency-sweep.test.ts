import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  checkpointLabel,
  findCell,
  readSweep,
  type SweepCell,
  type SweepPlan,
  saveCell,
} from '../../src/jobs/latency-sweep.js';
import type { TaskSummary } from '../../src/sim/rollout.js';

const run = promisify(execFile);
const VLA = path.resolve(import.meta.dirname, '../../bin/vla.js');
const ROOT = path.resolve(import.meta.dirname, '../..');

const summary = (pc: number, jump: number): TaskSummary => ({
  task: 'pick_place',
  episodes: 10,
  failed: 0,
  pc_success: pc,
  avg_sum_reward: 1,
  avg_max_reward: 1,
  avg_success_s: pc > 0 ? 4.5 : null,
  boundary_jump_max: 3 * jump,
  boundary_jump_mean: jump,
  step_mean: 0.01,
  boundary_joint_jump_mean: jump / 2,
  joint_step_mean: 0.005,
  mean_squared_jerk: 1234,
});

const cell = (execution: SweepCell['execution'], ms: number, pc: number, jump: number): SweepCell => ({
  checkpoint: 'checkpoints/base/pick_place_ft50',
  label: 'pick_place_ft50',
  trained_rtc: false,
  execution,
  latency_ms: ms,
  summary: summary(pc, jump),
  eval_s: 12,
});

describe('latency sweep report', () => {
  const plan: SweepPlan = {
    task: 'pick_place',
    episodes: 10,
    seed: 300000,
  };

  it('saves each cell atomically with its report and plot, resumes them, and refuses another protocol', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vla-sweep-'));
    try {
      const sweep = readSweep(dir, plan);
      expect(sweep.cells).toEqual([]);
      saveCell(dir, sweep, cell('sync', 0, 90, 0.08));
      saveCell(dir, sweep, cell('rtc', 200, 85, 0.02));
      saveCell(dir, sweep, cell('sync', 200, 70, 0.1));
      // The same cell again replaces it.
      saveCell(dir, sweep, cell('sync', 200, 75, 0.1));
      const again = readSweep(dir, plan);
      expect(again.cells).toHaveLength(3);
      expect(findCell(again, './checkpoints/base/pick_place_ft50', 'sync', 200)?.summary.pc_success).toBe(75);
      expect(findCell(again, 'checkpoints/base/pick_place_ft50', 'rtc', 0)).toBeUndefined();

      const report = readFileSync(path.join(dir, 'report.md'), 'utf8');
      expect(report).toContain('| checkpoint · execution | 0 ms | 200 ms |');
      expect(report).toContain('| pick_place_ft50 · sync | 90.0 | 75.0 |');
      expect(report).toContain('| pick_place_ft50 · rtc (guided) |  | 85.0 |');
      expect(report).toContain(
        '| pick_place_ft50 · rtc (guided) | 200 | 85.0 | 4.50 | 0.060 | 0.0200 | 0.0100 | 0.0100 | 0.0050 | 1.23e+3 | 0 | 12 |',
      );
      const svg = readFileSync(path.join(dir, 'sweep.svg'), 'utf8');
      expect(svg).toMatch(/^<svg/);
      expect(svg).toContain('latency (ms)');
      expect(svg).toContain('pick_place_ft50 · rtc (guided)');
      expect(existsSync(path.join(dir, 'sweep.json.tmp-' + process.pid))).toBe(false);

      expect(() => readSweep(dir, { ...plan, episodes: 200 })).toThrow(
        /sweep.json: episodes is 10, this sweep's is 200; use another --out/,
      );
      // A file cut short (or not a sweep's) is a named error, not a stack trace.
      writeFileSync(path.join(dir, 'sweep.json'), '{"task": "pick_pl');
      expect(() => readSweep(dir, plan)).toThrow(/sweep.json: expected a sweep's JSON, got unreadable text/);
      writeFileSync(path.join(dir, 'sweep.json'), '[1, 2]');
      expect(() => readSweep(dir, plan)).toThrow(
        /sweep.json: expected a sweep with a "cells" list, got \[1,2\]/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('labels a checkpoint by its path under checkpoints/', () => {
    expect(checkpointLabel('checkpoints/base/transfer_cube_ft50/')).toBe('transfer_cube_ft50');
    expect(checkpointLabel('./checkpoints/pi0_x/rtc/2000')).toBe('pi0_x/rtc/2000');
    expect(checkpointLabel('/data/ckpt/500')).toBe('/data/ckpt/500');
  });
});

const shipped = path.join(ROOT, 'checkpoints/base/pick_place_ft50');
describe.runIf(process.env.VLA_SLOW && existsSync(shipped))('vla sim sweep (slow, real processes)', () => {
  it('runs each mode at each latency against the served checkpoint, then adds a latency without redoing the rest', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'vla-sweep-cli-'));
    try {
      const args = [
        'sim',
        'sweep',
        '--task',
        'pick_place',
        '--checkpoint',
        shipped,
        '--episodes',
        '2',
        '--out',
        out,
      ];
      const first = await run(
        process.execPath,
        [VLA, ...args, '--execution', 'sync,rtc', '--latency-ms', '0,200'],
        {
          encoding: 'utf8',
        },
      );
      expect(first.stdout).toMatch(/pick_place_ft50 · rtc · 200 ms: \d+\.\d% success/);
      expect(first.stdout).toMatch(/rtc \(guided\)\s+200/);
      const second = await run(
        process.execPath,
        [VLA, ...args, '--execution', 'sync,rtc', '--latency-ms', '0,100,200'],
        {
          encoding: 'utf8',
        },
      );
      // Only the two new cells ran; the table holds all six.
      expect(second.stdout.match(/ ms: \d+\.\d% success/g)).toHaveLength(2);
      const sweep = JSON.parse(readFileSync(path.join(out, 'sweep.json'), 'utf8'));
      expect(sweep.cells).toHaveLength(6);
      for (const c of sweep.cells) {
        expect(c.summary.episodes).toBe(2);
        expect(c.summary.boundary_jump_max).toBeGreaterThan(0);
      }
      expect(readFileSync(path.join(out, 'report.md'), 'utf8')).toContain('| 0 ms | 100 ms | 200 ms |');
      await expect(
        run(process.execPath, [VLA, ...args, '--execution', 'sync,warp'], { encoding: 'utf8' }),
      ).rejects.toMatchObject({
        stderr: expect.stringContaining('--execution warp: expected modes among sync, async, ensemble, rtc'),
      });
      // A checkpoint of another robot is refused before anything is served.
      await expect(
        run(
          process.execPath,
          [VLA, ...args, '--checkpoint', path.join(ROOT, 'checkpoints/base/transfer_cube_ft50')],
          { encoding: 'utf8' },
        ),
      ).rejects.toMatchObject({
        stderr: expect.stringContaining(
          'trained for robot aloha_sim (14-dim actions), but this task runs single_arm_sim',
        ),
      });
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 180_000);
});

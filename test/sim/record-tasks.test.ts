import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { register } from '../../src/cli/sim.js';
import { openDataset } from '../../src/data/reader.js';
import { validateDataset } from '../../src/data/validate.js';
import { runInProcess } from '../cli/in-process.js';

const dir = mkdtempSync(path.join(tmpdir(), 'vla-sim-tasks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sim = (...args: string[]) => runInProcess(register, ['sim', ...args]);

describe('the added tasks', () => {
  it('vla sim tasks lists every task with its robot, the held-out ones marked', async () => {
    const { stdout } = await sim('tasks');
    for (const [task, robot] of [
      ['aloha_transfer_cube', 'aloha_sim'],
      ['aloha_insertion', 'aloha_sim'],
      ['aloha_lift', 'aloha_sim'],
      ['pick_place', 'single_arm_sim'],
      ['stack', 'single_arm_sim'],
      ['push', 'single_arm_sim'],
    ]) {
      expect(stdout).toMatch(new RegExp(`^${task} +${robot} `, 'm'));
    }
    expect(
      stdout
        .split('\n')
        .filter((l) => /\bheld out\b/.test(l) && !/^task/.test(l))
        .map((l) => l.split(' ')[0]),
    ).toEqual(['aloha_insertion', 'stack']);
  });

  it.each([
    ['stack', 100],
    ['push', 100],
    ['aloha_lift', 300],
  ])(
    'vla sim record --task %s writes 2 episodes that validate',
    async (task, steps) => {
      const out = path.join(dir, task);
      const r = await sim(
        'record',
        '--task',
        task,
        '--episodes',
        '2',
        '--seed',
        '3',
        '--size',
        '32x32',
        '--out',
        out,
      );
      expect(r.stderr).not.toMatch(/error/);
      expect(r.code).toBe(0);
      const report = await validateDataset(out);
      expect(report.problems).toEqual([]);
      const ds = await openDataset(out);
      expect(ds.episodes.map((e) => e.length)).toEqual([steps, steps]);
      expect(ds.info.simulation?.task).toBe(task);
    },
    90_000,
  );
});

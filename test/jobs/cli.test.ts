import { execFile, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { decode } from 'fast-png';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register } from '../../src/cli/jobs.js';
import { prepareLaunch, registerLaunch } from '../../src/jobs/launch.js';
import { JobRegistry, thisHost } from '../../src/jobs/registry.js';
import { runInProcess } from '../cli/in-process.js';
import { tinyWorkspace } from './synthetic.js';

const exec = promisify(execFile);
const VLA = path.resolve(import.meta.dirname, '../../bin/vla.js');

let ws: string;
async function vla(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [VLA, ...args], { cwd: ws, encoding: 'utf8' });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** `vla jobs …` in this process, from the test's workspace. */
const jobs = (...args: string[]) => runInProcess(register, ['jobs', ...args], ws);

beforeAll(() => {
  ws = mkdtempSync(path.join(os.tmpdir(), 'vla-jobs-cli-'));
});
afterAll(() => rmSync(ws, { recursive: true, force: true }));

// Each `vla` here is a real process; on a loaded machine one can take several seconds.
const SLOW_CLI = 90_000;

describe('vla train', () => {
  it(
    'prints a bad launch as one line, exits 1, and starts nothing (the checks themselves: launch.test.ts)',
    async () => {
      const r = await vla(
        'train',
        'pi0_aloha',
        '--exp-name',
        'e1',
        '--set',
        'data.dataset=nowhere',
        '--detach',
      );
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        'vla: error: data.dataset: "nowhere" does not exist (looked for nowhere and datasets/nowhere)\n',
      );
      expect(existsSync(path.join(ws, 'checkpoints'))).toBe(false);
    },
    SLOW_CLI,
  );
});

describe('vla jobs', () => {
  let id: number;
  beforeAll(() => {
    const reg = JobRegistry.open(ws);
    const runDir = path.join(ws, 'checkpoints', 'cfg', 'plotted');
    const job = reg.create({
      configName: 'cfg',
      config: { train: { steps: 40 } },
      expName: 'plotted',
      runDir,
      totalSteps: 40,
      resume: false,
    });
    id = job.id;
    reg.transition(id, 'running', 'started', { pid: 999_999, host: 'elsewhere' });
    reg.transition(id, 'finished', 'finished at step 40', {
      step: 40,
      metrics: { loss: 0.0123, lr: 1e-5, samples_per_s: 33.3 },
    });
    mkdirSync(runDir, { recursive: true });
    mkdirSync(path.dirname(job.logPath), { recursive: true });
    writeFileSync(job.logPath, 'first line\nsecond line\nlast line\n');
    const lines = [];
    for (let s = 1; s <= 40; s++) {
      lines.push(
        JSON.stringify({
          step: s,
          loss: 2 * Math.exp(-s / 8) + 0.01,
          // As a mixture's run logs them: its datasets' losses.
          'loss/sim_a': 3 * Math.exp(-s / 8) + 0.01,
          'loss/sim_b': Math.exp(-s / 4) + 0.02,
          grad_norm: 1,
          lr: s < 10 ? 1e-4 * (s / 10) : 1e-4,
          samples_per_s: 30,
          // As the trainer writes it: a line every 30 s.
          time: new Date(Date.UTC(2026, 11, 7, 12, 0, 30 * s)).toISOString(),
        }),
      );
    }
    lines.push(
      JSON.stringify({ step: 20, loss: 0.5, eval_success: 0.4 }),
      JSON.stringify({ step: 40, loss: 0.1, eval_success: 0.8 }),
    );
    writeFileSync(path.join(runDir, 'metrics.jsonl'), `${lines.join('\n')}\n{"step": 41, "lo`);
    reg.close();
  });

  it('list, show and logs print what the registry holds', async () => {
    const list = await jobs('list');
    const json = await jobs('list', '--json');
    const show = await jobs('show', String(id));
    const logs = await jobs('logs', String(id));
    const tail = await jobs('logs', String(id), '-n', '1');
    expect(list.stdout).toMatch(
      new RegExp(
        `^\\s*${id}\\s+finished\\s+cfg/plotted\\s+40/40\\s+0\\.0123\\s+1\\.00e-5\\s+33\\.3\\s+-`,
        'm',
      ),
    );
    const parsed = JSON.parse(json.stdout) as Array<{ id: number; status: string; alive: boolean }>;
    expect(parsed.find((j) => j.id === id)).toMatchObject({ status: 'finished', alive: false });
    expect(show.stdout).toMatch(/^status\s+finished$/m);
    expect(show.stdout).toMatch(/finished\s+finished at step 40/);
    expect(logs.stdout).toBe('first line\nsecond line\nlast line\n');
    expect(tail.stdout).toBe('last line\n');
  });

  it('refuses what cannot be done to a job, each with a clear error', async () => {
    const stop = await jobs('stop', String(id));
    const resume = await jobs('resume', String(id));
    const missing = await jobs('show', '4242');
    const badId = await jobs('show', 'x1');
    expect(stop.stderr.trim()).toBe(`vla: error: job ${id} is already finished (at step 40)`);
    expect(resume.stderr).toContain(`vla: error: job ${id} finished all 40 steps: nothing to resume`);
    expect(missing.stderr).toMatch(/vla: error: no job 4242 in \.vla\/jobs\.db: known ids are/);
    expect(badId.stderr.trim()).toBe('vla: error: job id: expected a positive integer, got "x1" (string)');
  });

  it('plots PNG and SVG files, overlaying several jobs', async () => {
    const png = await jobs('plot', String(id), '--out', 'out/p.png');
    expect(png.stderr).toBe('');
    expect(png.stdout).toBe('wrote out/p.png (42 points)\n');
    const img = decode(readFileSync(path.join(ws, 'out/p.png')));
    expect(img.width).toBe(800);
    expect(img.height).toBeGreaterThan(600);
    const svg = await jobs('plot', String(id), String(id), '--out', 'out/p.svg');
    expect(svg.code).toBe(0);
    const text = readFileSync(path.join(ws, 'out/p.svg'), 'utf8');
    expect(text).toMatch(/^<svg /);
    expect(text).toContain('eval success (%)');
    expect(text.match(/>job \d+: cfg\/plotted</g)).toHaveLength(2);
    const bad = await jobs('plot', String(id), '--out', 'p.pdf');
    expect(bad.stderr.trim()).toBe('vla: error: --out: expected a .png or .svg file, got "p.pdf" (string)');
    // One mixture run's loss per dataset, a curve (and legend entry) each.
    const byDataset = await jobs('plot', String(id), '--by-dataset', '--out', 'out/d.svg');
    expect(byDataset.stdout).toBe('wrote out/d.svg (42 points, 42 points)\n');
    const figure = readFileSync(path.join(ws, 'out/d.svg'), 'utf8');
    expect([figure.includes('>sim_a<'), figure.includes('>sim_b<')]).toEqual([true, true]);
    expect(figure).toContain(`>job ${id}: cfg/plotted, loss by dataset<`);
    // Several jobs' datasets, each curve named by job and dataset; against minutes of each run.
    const two = await jobs(
      'plot',
      String(id),
      String(id),
      '--by-dataset',
      '--x',
      'minutes',
      '--out',
      'out/t.svg',
    );
    expect(two.stdout).toBe('wrote out/t.svg (42 points, 42 points, 42 points, 42 points)\n');
    const both = readFileSync(path.join(ws, 'out/t.svg'), 'utf8');
    expect(both.match(new RegExp(`>job ${id} sim_[ab]<`, 'g'))).toHaveLength(4);
    expect(both).toContain('>minutes since the first logged step<');
    // Lines 30 s apart, the run as it stands ending at step 20 (its eval line at step 20 came after step
    // 40): 9.5 minutes, ticked 0, 2, …, 8, where its steps would be ticked 0, 5, …, 20.
    expect(both).toMatch(/>8</);
    expect(both).not.toMatch(/>15</);
    const axis = await jobs('plot', String(id), '--x', 'hours');
    expect(axis.stderr.trim()).toBe('vla: error: --x: expected step or minutes, got "hours" (string)');
    // A run whose lines carry no time cannot be placed by minutes: said, not drawn empty.
    const reg = JobRegistry.open(ws);
    const runDir = path.join(ws, 'checkpoints', 'cfg', 'untimed');
    const untimed = reg.create({
      configName: 'cfg',
      config: {},
      expName: 'untimed',
      runDir,
      totalSteps: 2,
      resume: false,
    });
    reg.close();
    mkdirSync(runDir, { recursive: true });
    writeFileSync(path.join(runDir, 'metrics.jsonl'), '{"step": 1, "loss": 1}\n{"step": 2, "loss": 0.5}\n');
    const noTime = await jobs('plot', String(untimed.id), '--x', 'minutes');
    expect(noTime.stderr.trim()).toBe(
      `vla: error: --x minutes: job ${untimed.id}'s metrics have no "time" field to place them by (checkpoints/cfg/untimed/metrics.jsonl); plot it by step`,
    );
  });

  it('rm removes the job and keeps its run folder unless --purge', async () => {
    const reg = JobRegistry.open(ws);
    const a = reg.create({
      configName: 'cfg',
      config: {},
      expName: 'rm1',
      runDir: path.join(ws, 'checkpoints/cfg/rm1'),
      totalSteps: 1,
      resume: false,
    });
    const b = reg.create({
      configName: 'cfg',
      config: {},
      expName: 'rm2',
      runDir: path.join(ws, 'checkpoints/cfg/rm2'),
      totalSteps: 1,
      resume: false,
    });
    reg.transition(a.id, 'failed', 'x');
    reg.transition(b.id, 'running', 'x', { pid: process.pid, host: thisHost() });
    reg.close();
    mkdirSync(a.runDir, { recursive: true });
    const busy = await jobs('rm', String(b.id));
    expect(busy.stderr.trim()).toBe(
      `vla: error: job ${b.id} is running: stop it first (vla jobs stop ${b.id})`,
    );
    const kept = await jobs('rm', String(a.id));
    expect(kept.stdout.trim()).toBe(`removed job ${a.id} (its run folder checkpoints/cfg/rm1 stays)`);
    expect(existsSync(a.runDir)).toBe(true);
    const reg2 = JobRegistry.open(ws);
    expect(reg2.get(a.id)).toBeUndefined();
    reg2.transition(b.id, 'stopped', 'x');
    reg2.close();
    mkdirSync(b.runDir, { recursive: true });
    const purged = await jobs('rm', String(b.id), '--purge');
    expect(purged.stdout.trim()).toBe(`removed job ${b.id} and deleted checkpoints/cfg/rm2`);
    expect(existsSync(b.runDir)).toBe(false);
  });
});

describe('vla jobs logs -f', () => {
  const SCRIPTED = path.join(import.meta.dirname, 'scripted-job.ts');

  /** A job launched as `vla train --detach` launches one, its process training by script (scripted-job.ts). */
  function start(exp: string, ending: 'finish' | 'fail' | 'stop' | 'hang'): { id: number; pid: number } {
    tinyWorkspace(ws, 4, 100);
    const reg = JobRegistry.open(ws);
    const req = { config: 'jobs_tiny', overrides: [], expName: exp, resume: false, overwrite: false };
    const job = registerLaunch(reg, prepareLaunch(reg, req, ws));
    reg.close();
    mkdirSync(path.dirname(job.logPath), { recursive: true });
    const out = openSync(job.logPath, 'a');
    const child = spawn(process.execPath, ['--import', 'tsx', SCRIPTED, ws, String(job.id), ending], {
      cwd: path.resolve(import.meta.dirname, '../..'),
      stdio: ['ignore', out, out],
    });
    closeSync(out);
    return { id: job.id, pid: child.pid! };
  }

  it(
    'exits 0 when the job finishes, non-zero with the registry’s account when it fails, dies or is stopped',
    async () => {
      const finish = start('finish', 'finish');
      const finished = await jobs('logs', String(finish.id), '-f');
      expect(finished.code).toBe(0);
      expect(finished.stdout).toMatch(/job \d+ finished at step 4\n/);
      expect(finished.stderr).toBe(`(job ${finish.id} finished at step 4)\n`);

      const fail = start('fail', 'fail');
      const failed = await jobs('logs', String(fail.id), '-f');
      expect(failed.code).toBe(1);
      expect(failed.stdout).toContain(`job ${fail.id} failed: the loss is NaN at step 2\n`);
      expect(failed.stderr).toBe(
        `vla: error: job ${fail.id} failed at step 2 of 4: Error: the loss is NaN at step 2\n`,
      );

      // Killed (kill -9, out of memory): no final status of its own; the follower finds it dead.
      const hang = start('hang', 'hang');
      const following = jobs('logs', String(hang.id), '-f');
      const reg = JobRegistry.open(ws);
      while (reg.require(hang.id).status !== 'running') await sleep(50);
      reg.close();
      process.kill(hang.pid, 'SIGKILL');
      const died = await following;
      expect(died.code).toBe(1);
      expect(died.stderr).toMatch(
        new RegExp(
          `^vla: error: job ${hang.id} failed at step \\d of 4: process ${hang.pid} died without a final status at step \\d; end of its log \\(vla jobs show ${hang.id} prints all of it\\)\\n$`,
        ),
      );

      const stop = start('stop', 'stop');
      const stopped = await jobs('logs', String(stop.id), '-f');
      expect(stopped.code).toBe(1);
      expect(stopped.stdout).toContain('SIGTERM: saving a checkpoint and stopping');
      expect(stopped.stderr).toBe(
        `vla: error: job ${stop.id} stopped at step 2 of 4 before finishing: vla jobs resume ${stop.id} goes on with it\n`,
      );
    },
    SLOW_CLI,
  );
});

import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareLaunch, prepareResume, registerLaunch } from '../../src/jobs/launch.js';
import { readMetrics } from '../../src/jobs/metrics.js';
import { type Job, JobRegistry } from '../../src/jobs/registry.js';
import { readSafetensors } from '../../src/model/safetensors.js';
import { workspace as dataWorkspace, writeSynthetic } from '../data/helpers.js';
import { tinyWorkspace } from './synthetic.js';

/*
 * Real trainer processes (the tiny model on a synthetic data source, see trainer-proc.ts) driven
 * through the registry and the `vla jobs` commands.
 */

const exec = promisify(execFile);
const VLA = path.resolve(import.meta.dirname, '../../bin/vla.js');
const TRAINER = path.join(import.meta.dirname, 'trainer-proc.ts');

let ws: string;
let registry: JobRegistry;

async function vla(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [VLA, ...args], { cwd: ws, encoding: 'utf8' });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

function launch(exp: string): Job {
  const p = prepareLaunch(
    registry,
    { config: 'jobs_tiny', overrides: [], expName: exp, resume: false, overwrite: false },
    ws,
  );
  return registerLaunch(registry, p);
}

/** Start a trainer process for a queued job, detached and logging to the job's file, as `--detach` does. */
function startTrainer(job: Job): number {
  mkdirSync(path.dirname(job.logPath), { recursive: true });
  const out = openSync(job.logPath, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', TRAINER, ws, String(job.id)], {
    cwd: path.resolve(import.meta.dirname, '../..'),
    detached: true,
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  child.unref();
  return child.pid!;
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function runToEnd(job: Job): Promise<Job> {
  startTrainer(job);
  await waitFor(`job ${job.id} to end`, () =>
    ['finished', 'failed', 'stopped'].includes(registry.require(job.id).status),
  );
  return registry.require(job.id);
}

function params(dir: string): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, t] of readSafetensors(path.join(dir, 'params.safetensors')).tensors)
    out.set(name, t.data as Float32Array);
  return out;
}

function maxDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let worst = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  }
  return worst;
}

function workspace(steps: number): void {
  beforeAll(() => {
    ws = mkdtempSync(path.join(os.tmpdir(), 'vla-jobs-trainer-'));
    tinyWorkspace(ws, steps, 5);
    registry = JobRegistry.open(ws);
  });
  afterAll(() => {
    registry.close();
    rmSync(ws, { recursive: true, force: true });
  });
}

describe('a detached trainer process', { timeout: 120_000 }, () => {
  // Far more steps than it gets to: the test stops it.
  const STEPS = 2000;
  workspace(STEPS);

  it('runs, reports progress to the registry, and stops with a checkpoint on vla jobs stop', async () => {
    const job = launch('stopped');
    const pid = startTrainer(job);
    await waitFor('step 7', () => registry.require(job.id).step >= 7);
    const running = registry.require(job.id);
    expect(running).toMatchObject({ status: 'running', pid });
    expect(running.metrics).toMatchObject({ loss: expect.any(Number), lr: expect.any(Number) });

    const stop = await vla('jobs', 'stop', String(job.id));
    expect(stop.stderr).toBe('');
    const end = registry.require(job.id);
    expect(end.status).toBe('stopped');
    expect(end.step).toBeGreaterThanOrEqual(7);
    expect(end.step).toBeLessThan(STEPS);
    expect(end.checkpoint).toBe(path.join(ws, 'checkpoints', 'jobs_tiny', 'stopped', String(end.step)));
    expect(existsSync(path.join(end.checkpoint!, 'params.safetensors'))).toBe(true);
    expect(stop.stdout).toContain(
      `job ${job.id} stopped at step ${end.step}, checkpoint checkpoints/jobs_tiny/stopped/${end.step}`,
    );
    const log = readFileSync(job.logPath, 'utf8');
    expect(log).toContain('SIGTERM: saving a checkpoint and stopping');
    expect(log).toMatch(/step 7\/2000 \d+% loss [\d.]+ lr/);
    expect(registry.events(job.id).map((e) => e.status)).toEqual([
      'queued',
      'running',
      'stopping',
      'stopped',
    ]);

    const again = await vla('train', 'jobs_tiny', '--exp-name', 'stopped');
    expect(again.stderr).toContain(
      `experiment jobs_tiny/stopped exists (job ${job.id}, stopped at step ${end.step}`,
    );
  });
});

describe.runIf(process.env.VLA_SLOW)('crash and resume (slow)', () => {
  // Enough steps that `vla jobs stop` (a CLI start-up, ~1.5 s) lands before the end: with the fused
  // kernels the tiny model ran 100 steps in less, and the job finished instead of stopping.
  const STEPS = 400;
  workspace(STEPS);

  it('a killed trainer is marked failed with its log; resumed runs end exactly where an unbroken run does', async () => {
    const reference = launch('reference');
    const crashed = launch('crashed');
    const stopped = launch('resumed');
    const crashPid = startTrainer(crashed);
    startTrainer(stopped);
    await waitFor('the crashing job to pass step 7', () => registry.require(crashed.id).step >= 7);
    process.kill(crashPid, 'SIGKILL');
    await waitFor('the stopping job to pass step 7', () => registry.require(stopped.id).step >= 7);
    await vla('jobs', 'stop', String(stopped.id));
    expect(registry.require(stopped.id).status).toBe('stopped');
    const ref = await runToEnd(reference);
    expect(ref).toMatchObject({ status: 'finished', step: STEPS });

    const shown = await vla('jobs', 'show', String(crashed.id), '--json');
    const failed = JSON.parse(shown.stdout) as Job;
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatch(
      new RegExp(`^process ${crashPid} died without a final status at step \\d+; end of its log:\\n`),
    );
    expect(failed.error).toMatch(new RegExp(`step \\d+/${STEPS}`));

    for (const job of [crashed, stopped]) {
      prepareResume(registry, job.id, ws);
      const end = await runToEnd(registry.require(job.id));
      expect(end).toMatchObject({ status: 'finished', step: STEPS });
      expect(readFileSync(job.logPath, 'utf8')).toMatch(
        /resuming jobs_tiny\/\w+.*\n.*resumed from .*\/(5|10|15|20|25|30|35|\d+) \(step \d+\)/,
      );
      // Same data order, noise and optimizer state: the same weights as the run that never stopped.
      expect(maxDiff(params(end.checkpoint!), params(ref.checkpoint!))).toBeLessThan(1e-5);
      const rows = readMetrics(path.join(end.runDir, 'metrics.jsonl'));
      expect(rows.at(-1)!.step).toBe(STEPS);
    }

    const plot = await vla(
      'jobs',
      'plot',
      String(reference.id),
      String(crashed.id),
      String(stopped.id),
      '--out',
      'cmp.svg',
    );
    expect(plot.stdout).toMatch(
      new RegExp(`^wrote cmp\\.svg \\(${STEPS} points, \\d+ points, \\d+ points\\)`),
    );
  }, 300_000);
});

describe.runIf(process.env.VLA_SLOW)('vla train on a real dataset (slow)', () => {
  it('runs in the foreground with progress and a summary, then refuses to start the experiment again', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vla-jobs-e2e-'));
    try {
      const ds = path.join(dir, 'ds');
      await writeSynthetic(ds, 'v3.0', false);
      const { cwd } = dataWorkspace(ds, {}, { preset: 'tiny', num_steps: 2, max_token_len: 8 });
      ws = cwd;
      expect((await vla('data', 'stats', 'test_cfg')).code).toBe(0);
      const args = [
        'train',
        'test_cfg',
        '--exp-name',
        'fg',
        '--set',
        'train.steps=6',
        '--set',
        'train.batch_size=2',
        '--set',
        'train.log_interval=2',
      ];
      const fg = await vla(...args);
      expect(fg.stderr).toMatch(/^backend: /m);
      expect(fg.stderr).toMatch(/^step 2\/6 33% loss [\d.]+ lr \S+ [\d.]+ samples\/s ETA /m);
      expect(fg.stderr).toMatch(
        /^job 1 finished at step 6\n6 steps in \d+s, now at 6\/6\nloss [\d.]+ \(first [\d.]+, min [\d.]+\), [\d.]+ samples\/s on average\ncheckpoint: checkpoints\/test_cfg\/fg\/6$/m,
      );
      const again = await vla(...args);
      expect(again.stderr.trim()).toBe(
        'vla: error: experiment test_cfg/fg exists (job 1, finished at step 6, checkpoints/test_cfg/fg): pass --resume to continue it or --overwrite to start over',
      );
      const over = await vla(...args, '--overwrite', '--detach');
      expect(over.stdout).toMatch(/^job 2 started in the background \(pid \d+\)/);
      const logs = await vla('jobs', 'logs', '2', '-f');
      expect(logs.stdout).toContain('job 2 finished at step 6');
      expect(logs.stderr).toBe('(job 2 finished at step 6)\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(ws, { recursive: true, force: true });
    }
  }, 120_000);
});

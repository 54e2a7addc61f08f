import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { register } from '../../src/cli/jobs.js';
import { resolveConfig } from '../../src/config/load.js';
import {
  connectQueue,
  listQueue,
  type QueueEntry,
  startWorker,
  submitTask,
  type TrainTask,
} from '../../src/jobs/queue.js';
import { JobRegistry } from '../../src/jobs/registry.js';
import { workspace as dataWorkspace, writeSynthetic } from '../data/helpers.js';
import { hasRedis, startRedis, waitFor } from './redis.js';

const exec = promisify(execFile);
const VLA = path.resolve(import.meta.dirname, '../../bin/vla.js');

async function submitCli(...args: string[]): Promise<string> {
  const program = new Command('vla').exitOverride();
  register(program);
  try {
    await program.parseAsync(['jobs', 'submit', ...args], { from: 'user' });
    return 'ok';
  } catch (e) {
    return (e as Error).message;
  }
}

describe('queue: bad input before anything is sent', () => {
  it('an unreachable queue, a URL of another kind, and a bad config are clear errors', async () => {
    await expect(connectQueue('redis://127.0.0.1:1')).rejects.toThrow(
      'cannot reach the queue at redis://127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1',
    );
    expect(await submitCli('pi0_aloha', '--exp-name', 'e', '--queue', 'http://host:6379')).toBe(
      '--queue: expected a redis:// or rediss:// URL, got "http://host:6379" (string)',
    );
    // The config is checked first: the unreachable queue is never tried.
    expect(await submitCli('nope', '--exp-name', 'e', '--queue', 'redis://127.0.0.1:1')).toMatch(
      /^unknown config "nope"/,
    );
    expect(
      await submitCli(
        'pi0_aloha',
        '--exp-name',
        'e',
        '--queue',
        'redis://127.0.0.1:1',
        '--set',
        'train.steps=0',
      ),
    ).toBe('--set train.steps: expected a value > 0, got 0 (number)');
  });
});

if (!hasRedis)
  console.warn(
    'redis-server is not installed: skipping the queue tests that need one (apt-get install redis-server)',
  );

describe.runIf(hasRedis)('queue on a real redis-server', () => {
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let ws: string;
  beforeAll(async () => {
    redis = await startRedis();
    ws = mkdtempSync(path.join(os.tmpdir(), 'vla-queue-'));
  });
  afterAll(async () => {
    await redis?.stop();
    rmSync(ws, { recursive: true, force: true });
  });

  it('a submitted job waits; a worker without its dataset fails it once, with the reason', async () => {
    const { config } = resolveConfig('pi0_aloha', ['data.dataset=not/here']);
    const task: TrainTask = {
      kind: 'train',
      config,
      expName: 'q1',
      resume: false,
      overwrite: false,
      submittedFrom: 'test',
    };
    const id = await submitTask(redis.url, task);
    expect((await listQueue(redis.url)).find((e) => e.id === id)).toMatchObject({
      state: 'waiting',
      experiment: 'pi0_aloha/q1',
      attempts: 0,
    });
    const lines: string[] = [];
    const worker = await startWorker({
      url: redis.url,
      concurrency: 1,
      workspace: ws,
      stallSeconds: 5,
      log: (l) => lines.push(l),
    });
    try {
      const failed = await waitFor('the job to fail', async () =>
        (await listQueue(redis.url)).find((e) => e.id === id && e.state === 'failed'),
      );
      expect(failed.failedReason).toBe(
        'data.dataset: "not/here" does not exist (looked for not/here and datasets/not/here)',
      );
      // Bad input is not retried.
      expect(failed.attempts).toBe(1);
      expect(lines).toContain(`queue job ${id}: failed: ${failed.failedReason}`);
      const reg = JobRegistry.open(ws);
      expect(reg.list()).toEqual([]);
      reg.close();
    } finally {
      await worker.close();
    }
  });
});

describe.runIf(hasRedis && process.env.VLA_SLOW)('two worker processes (slow)', () => {
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let dir: string;
  let ws: string;
  const workers: Array<{ pid: number; kill: (sig: NodeJS.Signals) => void }> = [];
  beforeAll(async () => {
    redis = await startRedis();
    dir = mkdtempSync(path.join(os.tmpdir(), 'vla-queue-slow-'));
    const ds = path.join(dir, 'ds');
    await writeSynthetic(ds, 'v3.0', false);
    ws = dataWorkspace(ds, {}, { preset: 'tiny', num_steps: 2, max_token_len: 8 }).cwd;
    await exec(process.execPath, [VLA, 'data', 'stats', 'test_cfg'], { cwd: ws });
    for (let i = 0; i < 2; i++) {
      const child = spawn(process.execPath, [VLA, 'worker', '--queue', redis.url, '--stall-timeout', '4'], {
        cwd: ws,
        stdio: 'ignore',
      });
      workers.push({ pid: child.pid!, kill: (sig) => child.kill(sig) });
    }
  }, 120_000);
  afterAll(async () => {
    for (const w of workers) w.kill('SIGKILL');
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
    rmSync(ws, { recursive: true, force: true });
  });

  const submit = async (exp: string, steps: number) => {
    const set = [
      `train.steps=${steps}`,
      'train.batch_size=2',
      'train.log_interval=10',
      'train.save_interval=50',
    ];
    const { config } = resolveConfig('test_cfg', set, ws);
    return submitTask(redis.url, {
      kind: 'train',
      config,
      expName: exp,
      resume: false,
      overwrite: false,
      submittedFrom: 'test',
    });
  };
  const entry = async (id: string): Promise<QueueEntry> =>
    (await listQueue(redis.url)).find((e) => e.id === id)!;

  it('share the jobs, and a killed worker’s job is finished by the other from its checkpoint', async () => {
    const a = await submit('qa', 20);
    const b = await submit('qb', 20);
    const done = await waitFor('both short jobs', async () => {
      const [ea, eb] = [await entry(a), await entry(b)];
      return ea.state === 'completed' && eb.state === 'completed' ? [ea, eb] : undefined;
    });
    expect(done.map((e) => (e.result as { step?: number } | null)?.step)).toEqual([20, 20]);
    expect(done[0]!.worker).not.toBe(done[1]!.worker);

    const long = await submit('qlong', 400);
    const running = await waitFor('the long job to pass step 60', async () => {
      const e = await entry(long);
      return e.state === 'active' && (e.progress.step ?? 0) >= 60 ? e : undefined;
    });
    const victim = running.progress.worker!;
    workers.find((w) => victim.endsWith(`:${w.pid}`))!.kill('SIGKILL');
    const end = await waitFor(
      'the long job to complete',
      async () => {
        const e = await entry(long);
        return e.state === 'completed' || e.state === 'failed' ? e : undefined;
      },
      240_000,
    );
    expect(end).toMatchObject({ state: 'completed', attempts: 2, result: { step: 400 } });
    expect(end.worker).not.toBe(victim);

    const reg = JobRegistry.open(ws);
    const local = reg.findByExperiment('test_cfg', 'qlong')!;
    const events = reg.events(local.id).map((e) => e.status);
    reg.close();
    // The orphaned trainer saved a checkpoint and stopped; the other worker resumed it.
    expect(events).toEqual(['queued', 'running', 'stopping', 'stopped', 'queued', 'running', 'finished']);
  }, 400_000);
});

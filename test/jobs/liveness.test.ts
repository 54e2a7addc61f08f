import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { processAlive, processStartTime, reapDeadJobs, tailFile } from '../../src/jobs/liveness.js';
import { JobRegistry, thisHost } from '../../src/jobs/registry.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vla-liveness-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A real process that prints a few lines and waits to be killed. */
function sleeper(): Promise<{ pid: number; kill: () => Promise<void> }> {
  const child = spawn(process.execPath, ['-e', "console.log('ready'); setInterval(() => {}, 1000)"], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve) => {
    child.stdout.once('data', () =>
      resolve({
        pid: child.pid!,
        kill: () =>
          new Promise((done) => {
            child.once('exit', () => done());
            child.kill('SIGKILL');
          }),
      }),
    );
  });
}

describe('process liveness and crash detection', () => {
  it('tells a live process from a dead one and from a reused pid', async () => {
    const p = await sleeper();
    const start = processStartTime(p.pid);
    expect(processAlive(p.pid, start)).toBe(true);
    expect(processAlive(p.pid, null)).toBe(true);
    // Same pid, another start time: some other process that got the pid later.
    if (start !== null) expect(processAlive(p.pid, start + 1)).toBe(false);
    await p.kill();
    expect(processAlive(p.pid, start)).toBe(false);
  });

  it('tails the end of a log', () => {
    const file = path.join(dir, 'x.log');
    writeFileSync(file, Array.from({ length: 50 }, (_, i) => `line ${i}`).join('\n') + '\n');
    expect(tailFile(file, 3)).toBe('line 47\nline 48\nline 49');
    expect(tailFile(path.join(dir, 'missing.log'), 3)).toBe('');
  });

  it('marks a job whose process was killed as failed, with the end of its log; live jobs are left alone', async () => {
    const reg = JobRegistry.open(dir);
    const dead = await sleeper();
    const live = await sleeper();
    const mk = (exp: string, pid: number) => {
      const job = reg.create({
        configName: 'c',
        config: {},
        expName: exp,
        runDir: path.join(dir, exp),
        totalSteps: 10,
        resume: false,
      });
      reg.transition(job.id, 'running', 'started', {
        pid,
        pidStart: processStartTime(pid),
        host: thisHost(),
        step: 3,
      });
      mkdirSync(path.dirname(job.logPath), { recursive: true });
      writeFileSync(job.logPath, 'step 1\nstep 2\nstep 3 loss 0.5\n');
      return job.id;
    };
    const deadId = mk('dead', dead.pid);
    const liveId = mk('live', live.pid);
    const elsewhere = reg.create({
      configName: 'c',
      config: {},
      expName: 'far',
      runDir: dir,
      totalSteps: 10,
      resume: false,
    });
    reg.transition(elsewhere.id, 'running', 'started', { pid: dead.pid, host: 'another-machine' });
    await dead.kill();

    const marked = reapDeadJobs(reg);
    expect(marked.map((j) => j.id)).toEqual([deadId]);
    const job = reg.require(deadId);
    expect(job.status).toBe('failed');
    expect(job.error).toBe(
      `process ${dead.pid} died without a final status at step 3; end of its log:\nstep 1\nstep 2\nstep 3 loss 0.5`,
    );
    expect(reg.require(liveId).status).toBe('running');
    expect(reg.require(elsewhere.id).status).toBe('running');
    expect(reapDeadJobs(reg)).toEqual([]);
    await live.kill();
    reg.close();
  });
});

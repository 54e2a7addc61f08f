import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobRegistry, MIGRATIONS, migrate } from '../../src/jobs/registry.js';
import { openDatabase } from '../../src/jobs/sqlite.js';

const run = promisify(execFile);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'vla-registry-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const newJob = (exp: string) => ({
  configName: 'pi0_aloha',
  config: { name: 'pi0_aloha', train: { steps: 100 } },
  expName: exp,
  runDir: path.join(dir, 'checkpoints', 'pi0_aloha', exp),
  totalSteps: 100,
  resume: false,
});

describe('job registry', () => {
  it('creates the database in WAL mode at the newest schema version', () => {
    const reg = JobRegistry.open(dir);
    expect(reg.file).toBe(path.join(dir, '.vla', 'jobs.db'));
    expect(reg.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(reg.db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    expect(reg.db.pragma('busy_timeout', { simple: true })).toBeGreaterThanOrEqual(5000);
    reg.close();
  });

  it('upgrades a database made by an older version and keeps its jobs', () => {
    const file = path.join(dir, 'old.db');
    const db = openDatabase(file);
    migrate(db, file, 1);
    db.prepare(
      `INSERT INTO jobs (config_name, config_json, exp_name, status, total_steps, run_dir, log_path, created_at, updated_at)
       VALUES ('c', '{}', 'e', 'stopped', 10, '/r', '/l', 1, 1)`,
    ).run();
    expect(db.pragma('user_version', { simple: true })).toBe(1);
    db.close();

    const reg = new JobRegistry(file);
    expect(reg.db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    const job = reg.require(1);
    expect(job).toMatchObject({ configName: 'c', expName: 'e', status: 'stopped', totalSteps: 10 });
    // The table added by the second migration works for the old job.
    reg.transition(1, 'queued', 'resume requested');
    expect(reg.events(1).map((e) => e.status)).toEqual(['queued']);
    reg.close();
    // Opening again runs nothing twice.
    const again = new JobRegistry(file);
    expect(again.list()).toHaveLength(1);
    again.close();
  });

  it('refuses a database from a newer vla', () => {
    const file = path.join(dir, 'future.db');
    const db = openDatabase(file);
    db.pragma(`user_version = ${MIGRATIONS.length + 3}`);
    db.close();
    expect(() => new JobRegistry(file)).toThrow(
      `schema version ${MIGRATIONS.length + 3} is newer than this vla knows (${MIGRATIONS.length}); upgrade`,
    );
  });

  it('records jobs, their history, and one job per experiment', () => {
    const reg = JobRegistry.open(dir);
    const job = reg.create(newJob('a'));
    expect(job).toMatchObject({ id: 1, status: 'queued', step: 0, pid: null, resume: false });
    expect(job.logPath).toBe(path.join(dir, '.vla', 'logs', 'job-1.log'));
    expect(() => reg.create(newJob('a'))).toThrow(/UNIQUE/);
    reg.transition(1, 'running', 'started', { pid: 123, host: 'h' });
    reg.update(1, { step: 5, metrics: { loss: 0.5, lr: 1e-4 } });
    reg.transition(1, 'stopped', 'stopped at step 5', { checkpoint: '/ck/5' });
    const got = reg.require(1);
    expect(got).toMatchObject({
      status: 'stopped',
      step: 5,
      pid: 123,
      checkpoint: '/ck/5',
      metrics: { loss: 0.5, lr: 1e-4 },
    });
    expect(got.finishedAt).not.toBeNull();
    expect(reg.events(1).map((e) => `${e.status}: ${e.message}`)).toEqual([
      'queued: created',
      'running: started',
      'stopped: stopped at step 5',
    ]);
    expect(reg.findByExperiment('pi0_aloha', 'a')?.id).toBe(1);
    reg.remove(1);
    expect(reg.get(1)).toBeUndefined();
    expect(reg.events(1)).toEqual([]);
    expect(() => reg.require(7)).toThrow('no job 7 in');
    reg.close();
  });

  it('applies a conditional change only while the status and pid still match', () => {
    const reg = JobRegistry.open(dir);
    const { id } = reg.create(newJob('a'));
    expect(reg.transition(id, 'running', 'claimed', { pid: 10 }, { status: ['queued'] })).toBe(true);
    // A second claimant loses: the job is no longer queued.
    expect(reg.transition(id, 'running', 'claimed', { pid: 11 }, { status: ['queued'] })).toBe(false);
    expect(reg.transition(id, 'failed', 'dead', {}, { status: ['running'], pid: 11 })).toBe(false);
    expect(reg.require(id)).toMatchObject({ status: 'running', pid: 10 });
    expect(reg.events(id)).toHaveLength(2);
    reg.close();
  });

  it('four processes writing at once lose nothing and leave the file intact', async () => {
    const reg = JobRegistry.open(dir);
    const shared = reg.create(newJob('shared'));
    const writer = path.join(import.meta.dirname, 'writer.ts');
    const n = 60;
    const procs = Array.from({ length: 4 }, () =>
      run(process.execPath, ['--import', 'tsx', writer, reg.file, String(shared.id), String(n)]),
    );
    // The reader keeps reading while they write (WAL: readers never block writers).
    let reads = 0;
    const reading = (async () => {
      for (let i = 0; i < 40; i++) {
        reads += reg.list().length > 0 ? 1 : 0;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await Promise.all([...procs, reading]);
    expect(reads).toBe(40);
    const jobs = reg.list();
    expect(jobs).toHaveLength(1 + 4 * n);
    expect(jobs.filter((j) => j.status === 'finished')).toHaveLength(4 * n);
    expect(new Set(jobs.map((j) => j.expName)).size).toBe(jobs.length);
    const events = reg.db.prepare('SELECT COUNT(*) AS n FROM job_events').get() as { n: number };
    expect(events.n).toBe(1 + 4 * n * 3);
    expect(reg.require(shared.id).step).toBe(n);
    expect(reg.db.pragma('integrity_check', { simple: true })).toBe('ok');
    reg.close();
  });
});

import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LaunchRequest, prepareLaunch, registerLaunch } from '../../src/jobs/launch.js';
import { JobRegistry, thisHost } from '../../src/jobs/registry.js';

let ws: string;
let registry: JobRegistry;
let cwd: string;

beforeAll(() => {
  ws = mkdtempSync(path.join(os.tmpdir(), 'vla-launch-'));
  // A folder that passes the launch check for a dataset (nothing here reaches the trainer).
  mkdirSync(path.join(ws, 'datasets', 'ds', 'meta'), { recursive: true });
  writeFileSync(path.join(ws, 'datasets', 'ds', 'meta', 'info.json'), '{}');
  registry = JobRegistry.open(ws);
  // Error messages name paths relative to where the command runs.
  cwd = process.cwd();
  process.chdir(ws);
});
afterAll(() => {
  process.chdir(cwd);
  registry.close();
  rmSync(ws, { recursive: true, force: true });
});

const req = (over: Partial<LaunchRequest> & { set?: string[] } = {}): LaunchRequest => ({
  config: 'pi0_aloha',
  overrides: over.set ?? ['data.dataset=ds'],
  expName: 'e1',
  resume: false,
  overwrite: false,
  ...over,
});

describe('launch checks: a clear error before anything starts', () => {
  it.each([
    [
      { config: 'nope' },
      'unknown config "nope": expected one of pi05_sim_pick_place, pi05_sim_transfer_cube',
    ],
    [
      { set: ['data.dataset=ds', 'train.batch_size=zero'] },
      '--set train.batch_size: expected number, got "zero" (string)',
    ],
    [{ set: ['data.dataset=ds', 'robot=hexapod'] }, 'unknown robot "hexapod"'],
    [
      { set: [] },
      'config pi0_aloha: data.dataset: expected a dataset folder (or a data.mixture), got null (set it with --set data.dataset=PATH)',
    ],
    [
      { set: ['data.dataset=nowhere'] },
      'data.dataset: "nowhere" does not exist (looked for nowhere and datasets/nowhere)',
    ],
    [
      { set: ['data.dataset=datasets/ds/meta'] },
      'data.dataset: datasets/ds/meta is not a LeRobot dataset (it has no meta/info.json)',
    ],
    [
      { set: ['data.dataset=datasets/ds/meta/info.json'] },
      'data.dataset: expected a dataset folder, got the file datasets/ds/meta/info.json',
    ],
    [
      { set: ['data.dataset=ds', 'train.init_from=checkpoints/none'] },
      'train.init_from: checkpoint folder checkpoints/none does not exist',
    ],
    [{ resume: true, overwrite: true }, '--resume and --overwrite: expected one of them, got both'],
    [
      { expName: '../up' },
      `--exp-name: expected letters, digits, '.', '_' or '-' (not starting with a symbol), got "../up" (string)`,
    ],
  ] as Array<[Partial<LaunchRequest> & { set?: string[] }, string]>)('%j', (over, message) => {
    expect(() => prepareLaunch(registry, req(over), ws)).toThrow(message);
    expect(existsSync(path.join(ws, 'checkpoints'))).toBe(false);
    expect(registry.list()).toEqual([]);
  });
});

describe('experiments that exist', () => {
  it('a used run folder needs --resume or --overwrite', () => {
    mkdirSync(path.join(ws, 'checkpoints', 'pi0_aloha', 'old', '100'), { recursive: true });
    expect(() => prepareLaunch(registry, req({ expName: 'old' }), ws)).toThrow(
      'experiment pi0_aloha/old exists (checkpoints/pi0_aloha/old): pass --resume to continue it or --overwrite to start over',
    );
    const resumed = registerLaunch(
      registry,
      prepareLaunch(registry, req({ expName: 'old', resume: true }), ws),
    );
    expect(resumed).toMatchObject({ status: 'queued', resume: true, expName: 'old' });
    registry.transition(resumed.id, 'stopped', 'test');
    const over = registerLaunch(
      registry,
      prepareLaunch(registry, req({ expName: 'old', overwrite: true }), ws),
    );
    expect(over.id).not.toBe(resumed.id);
    expect(over.resume).toBe(false);
    expect(registry.get(resumed.id)).toBeUndefined();
    expect(existsSync(path.join(ws, 'checkpoints', 'pi0_aloha', 'old'))).toBe(false);
  });

  it('a job of the experiment that is running blocks even --resume; a stopped one is reused by --resume', () => {
    const job = registerLaunch(registry, prepareLaunch(registry, req({ expName: 'busy' }), ws));
    registry.transition(job.id, 'running', 'started', { pid: process.pid, host: thisHost(), step: 12 });
    expect(() => prepareLaunch(registry, req({ expName: 'busy', resume: true }), ws)).toThrow(
      `experiment pi0_aloha/busy is running as job ${job.id} (pid ${process.pid}): stop it first with vla jobs stop ${job.id}`,
    );
    registry.transition(job.id, 'stopped', 'test');
    expect(() => prepareLaunch(registry, req({ expName: 'busy' }), ws)).toThrow(
      `experiment pi0_aloha/busy exists (job ${job.id}, stopped at step 12): pass --resume`,
    );
    const again = registerLaunch(
      registry,
      prepareLaunch(registry, req({ expName: 'busy', resume: true }), ws),
    );
    expect(again).toMatchObject({ id: job.id, status: 'queued', pid: null, resume: true });
    expect(registry.events(job.id).at(-1)?.message).toBe('resume requested from step 12');
  });
});

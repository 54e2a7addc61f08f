import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { describeValue, UserError } from '../config/errors.js';
import { loadRobot, PACKAGE_ROOT, resolveConfig, validate } from '../config/load.js';
import { dataSources } from '../config/mixture.js';
import { TrainConfig } from '../config/schema.js';
import { jobAlive, processStartTime, reapDeadJobs } from './liveness.js';
import { isFinal, type Job, type JobRegistry, thisHost } from './registry.js';

export interface LaunchRequest {
  /** A config name or a path to a YAML file. */
  config: string;
  overrides: string[];
  expName: string;
  resume: boolean;
  overwrite: boolean;
}

/** Everything checked and resolved, nothing started or written yet. */
export interface PreparedLaunch {
  config: TrainConfig;
  expName: string;
  runDir: string;
  /** The registry's job for this experiment, if there is one. */
  existing: Job | undefined;
  /** The run folder already holds files (checkpoints, metrics). */
  runDirUsed: boolean;
  resume: boolean;
  overwrite: boolean;
}

const rel = (p: string) => path.relative(process.cwd(), p) || p;

/** Where runs of a config write, as openpi: `checkpoints/<config>/<exp>/`. */
export function runDirFor(workspace: string, configName: string, expName: string): string {
  return path.join(workspace, 'checkpoints', configName, expName);
}

/**
 * The dataset folders a config names (its `data.dataset`, or each of its `data.mixture`'s): a path
 * relative to the workspace, or a name under `datasets/`. Throws a clear error, naming the field, when
 * one does not hold a LeRobot dataset. Returns the first (the only one but for a mixture).
 */
export function resolveDataset(workspace: string, config: TrainConfig): string {
  const relTo = (p: string) => path.relative(workspace, p) || p;
  const found: string[] = [];
  for (const { field, dataset: name } of dataSources(config)) {
    const candidates = [path.resolve(workspace, name), path.join(workspace, 'datasets', name)];
    const dir = candidates.find((c) => existsSync(c));
    if (!dir) {
      throw new UserError(
        `${field}: "${name}" does not exist (looked for ${candidates.map(relTo).join(' and ')})`,
      );
    }
    if (!statSync(dir).isDirectory()) {
      throw new UserError(`${field}: expected a dataset folder, got the file ${relTo(dir)}`);
    }
    if (!existsSync(path.join(dir, 'meta', 'info.json'))) {
      throw new UserError(`${field}: ${relTo(dir)} is not a LeRobot dataset (it has no meta/info.json)`);
    }
    found.push(dir);
  }
  return found[0]!;
}

const EXP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The checks a launch makes wherever it is asked for: flags, experiment name, config and robot. */
export function resolveLaunchConfig(req: LaunchRequest, workspace = process.cwd()): TrainConfig {
  if (req.resume && req.overwrite)
    throw new UserError('--resume and --overwrite: expected one of them, got both');
  if (!EXP_NAME.test(req.expName)) {
    throw new UserError(
      `--exp-name: expected letters, digits, '.', '_' or '-' (not starting with a symbol), got ${describeValue(req.expName)}`,
    );
  }
  const { config } = resolveConfig(req.config, req.overrides, workspace);
  loadRobot(config.robot, workspace);
  return config;
}

/**
 * Check a launch before anything starts: the config resolves and validates, its robot and dataset
 * exist, and the experiment either is new or is named with --resume / --overwrite.
 */
export function prepareLaunch(
  registry: JobRegistry,
  req: LaunchRequest,
  workspace = process.cwd(),
): PreparedLaunch {
  const config = resolveLaunchConfig(req, workspace);
  resolveDataset(workspace, config);
  if (config.train.init_from !== null && !existsSync(path.resolve(workspace, config.train.init_from))) {
    throw new UserError(`train.init_from: checkpoint folder ${config.train.init_from} does not exist`);
  }

  reapDeadJobs(registry);
  const runDir = runDirFor(workspace, config.name, req.expName);
  const existing = registry.findByExperiment(config.name, req.expName);
  if (existing && !isFinal(existing.status)) {
    const where =
      existing.host === thisHost() ? `pid ${existing.pid}` : `pid ${existing.pid} on ${existing.host}`;
    throw new UserError(
      `experiment ${config.name}/${req.expName} is ${existing.status} as job ${existing.id} (${where}): stop it first with vla jobs stop ${existing.id}`,
    );
  }
  const runDirUsed = existsSync(runDir) && readdirSync(runDir).length > 0;
  if ((existing || runDirUsed) && !req.resume && !req.overwrite) {
    const what = [
      existing ? `job ${existing.id}, ${existing.status} at step ${existing.step}` : null,
      runDirUsed ? rel(runDir) : null,
    ]
      .filter(Boolean)
      .join(', ');
    throw new UserError(
      `experiment ${config.name}/${req.expName} exists (${what}): pass --resume to continue it or --overwrite to start over`,
    );
  }
  return {
    config,
    expName: req.expName,
    runDir,
    existing,
    runDirUsed,
    resume: req.resume,
    overwrite: req.overwrite,
  };
}

/** Record the launch in the registry (and clear the old run for --overwrite). The job is left queued. */
export function registerLaunch(registry: JobRegistry, p: PreparedLaunch): Job {
  if (p.overwrite) {
    rmSync(p.runDir, { recursive: true, force: true });
    if (p.existing) {
      rmSync(p.existing.logPath, { force: true });
      registry.remove(p.existing.id);
    }
  }
  const resume = p.resume && (p.runDirUsed || (p.existing?.step ?? 0) > 0);
  if (p.resume && p.existing) {
    registry.transition(p.existing.id, 'queued', `resume requested from step ${p.existing.step}`, {
      config: p.config,
      totalSteps: p.config.train.steps,
      resume,
      pid: null,
      pidStart: null,
      host: null,
      error: null,
      finishedAt: null,
    });
    return registry.require(p.existing.id);
  }
  return registry.create({
    configName: p.config.name,
    config: p.config,
    expName: p.expName,
    runDir: p.runDir,
    totalSteps: p.config.train.steps,
    resume,
  });
}

export const VLA_BIN = path.join(PACKAGE_ROOT, 'bin', 'vla.js');

/**
 * Start a queued job as its own process, detached from this one (its own session, so closing the shell
 * does not end it), writing to the job's log. The process records itself in the registry when it runs.
 */
export function spawnDetached(registry: JobRegistry, job: Job, backend?: string): number {
  mkdirSync(path.dirname(job.logPath), { recursive: true });
  const out = openSync(job.logPath, 'a');
  const args = [VLA_BIN, ...(backend ? ['--backend', backend] : []), 'jobs', '_run', String(job.id)];
  const child = spawn(process.execPath, args, {
    cwd: workspaceOf(registry),
    detached: true,
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start the trainer process for job ${job.id}`);
  // Written here too (not only by the child) so a process that dies before it starts is still found.
  registry.update(
    job.id,
    { pid, pidStart: processStartTime(pid), host: thisHost() },
    { status: ['queued'], pid: null },
  );
  return pid;
}

/** The workspace a registry belongs to: the folder holding `.vla/`. */
export function workspaceOf(registry: JobRegistry): string {
  return path.dirname(path.dirname(registry.file));
}

/** Whether a job's process can be signalled from here. */
export function assertLocal(job: Job): number {
  if (job.pid === null) throw new UserError(`job ${job.id} has no process (status ${job.status})`);
  if (job.host !== thisHost()) {
    throw new UserError(
      `job ${job.id} runs on ${job.host}, not on this machine (${thisHost()}): run the command there`,
    );
  }
  if (!jobAlive(job)) throw new UserError(`job ${job.id}: process ${job.pid} is not running`);
  return job.pid;
}

/**
 * Ask a job's process to save a checkpoint and exit (SIGTERM), as `vla jobs stop` and the dashboard's
 * stop button do. A job whose process has not claimed it yet never starts: it finds itself stopped.
 * Returns the pid signalled; the job reaches its final status when the process has saved.
 */
export function requestStop(registry: JobRegistry, id: number): number {
  reapDeadJobs(registry);
  const job = registry.require(id);
  if (isFinal(job.status))
    throw new UserError(`job ${job.id} is already ${job.status} (at step ${job.step})`);
  const pid = assertLocal(job);
  if (!registry.transition(job.id, 'stopped', 'stopped before it started', {}, { status: ['queued'] })) {
    registry.transition(job.id, 'stopping', 'stop requested', {}, { status: ['running'] });
  }
  process.kill(pid, 'SIGTERM');
  return pid;
}

/** Queue a stopped, failed or unfinished job again, to continue from its newest checkpoint. */
export function prepareResume(registry: JobRegistry, id: number, workspace = process.cwd()): Job {
  reapDeadJobs(registry);
  const job = registry.require(id);
  if (!isFinal(job.status)) {
    throw new UserError(`job ${id} is ${job.status}: expected a stopped, failed or finished job`);
  }
  if (job.status === 'finished' && job.step >= job.totalSteps) {
    throw new UserError(
      `job ${id} finished all ${job.totalSteps} steps: nothing to resume (to train longer: vla train ${job.configName} --exp-name ${job.expName} --resume --set train.steps=N)`,
    );
  }
  const config = validate(TrainConfig, job.config, () => `job ${id}'s stored config: `);
  resolveDataset(workspace, config);
  const runDirUsed = existsSync(job.runDir) && readdirSync(job.runDir).length > 0;
  registry.transition(id, 'queued', `resume requested from step ${job.step}`, {
    resume: runDirUsed,
    pid: null,
    pidStart: null,
    host: null,
    error: null,
    finishedAt: null,
  });
  return registry.require(id);
}

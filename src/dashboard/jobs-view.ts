/**
 * The job registry as the dashboard shows it: every job with its progress and ETA, one job in full
 * (config, history, log, what is wrong with it), its curves, and the stop and resume actions, which
 * call what `vla jobs stop` and `vla jobs resume` call.
 */
import { existsSync } from 'node:fs';
import { UserError } from '../config/errors.js';
import { configToYaml } from '../config/load.js';
import { evalTasks, type TrainConfig } from '../config/schema.js';
import { prepareResume, requestStop, resolveDataset, spawnDetached, workspaceOf } from '../jobs/launch.js';
import { jobAlive, reapDeadJobs, tailFile } from '../jobs/liveness.js';
import { metricsPath } from '../jobs/metrics.js';
import { formatDuration, ProgressTracker } from '../jobs/progress.js';
import { isFinal, type Job, type JobEvent, type JobMetrics, type JobRegistry } from '../jobs/registry.js';
import type { Curve } from './downsample.js';
import { shownPath } from './folders.js';
import { HttpError } from './http.js';
import { type RunMetrics, RunMetricsCache, runCurves } from './run-metrics.js';

export interface JobSummary {
  id: number;
  status: Job['status'];
  configName: string;
  expName: string;
  step: number;
  totalSteps: number;
  metrics: JobMetrics | null;
  /** Seconds left, null when unknown or not running. */
  etaSeconds: number | null;
  eta: string;
  alive: boolean;
  host: string | null;
  pid: number | null;
  createdAt: number;
  startedAt: number | null;
  updatedAt: number;
  finishedAt: number | null;
  /** The first line of the error a failed job recorded. */
  error: string | null;
  runDirExists: boolean;
  resumable: boolean;
}

export interface TrainingEvals {
  id: number;
  label: string;
  /** `eval_pc_success` and the other `eval_*` fields, by step. */
  curves: Record<string, Curve>;
  /** Why the run's metrics could not be read. */
  error: string | null;
}

export interface JobDetail extends JobSummary {
  configYaml: string;
  runDir: string;
  logPath: string;
  checkpoint: string | null;
  fullError: string | null;
  events: JobEvent[];
  /** What the page should say is wrong, each naming the thing. */
  problems: string[];
}

/** How often the registry is searched for jobs whose process died. */
const REAP_INTERVAL_MS = 2000;

/** The trainer's batch size from a job's stored config, for an ETA before two readings exist. */
function batchSize(config: unknown): number | null {
  const n = (config as { train?: { batch_size?: unknown } } | null)?.train?.batch_size;
  return typeof n === 'number' && n > 0 ? n : null;
}

export class JobsView {
  readonly workspace: string;
  readonly metrics = new RunMetricsCache();
  private readonly trackers = new Map<
    number,
    { started: number | null; lastStep: number; eta: number; tracker: ProgressTracker }
  >();
  private lastReap = 0;

  constructor(
    readonly registry: JobRegistry,
    private readonly opts: { backend?: string } = {},
  ) {
    this.workspace = workspaceOf(registry);
  }

  private rel(p: string): string {
    return shownPath(this.workspace, p);
  }

  /** As `vla jobs list` does: jobs of this machine whose process died are marked failed first. */
  private reap(): void {
    const now = Date.now();
    if (now - this.lastReap < REAP_INTERVAL_MS) return;
    this.lastReap = now;
    reapDeadJobs(this.registry);
  }

  /** The job, or a 404 naming the ids there are. */
  job(id: number): Job {
    try {
      return this.registry.require(id);
    } catch (e) {
      if (e instanceof UserError) throw new HttpError(404, e.message);
      throw e;
    }
  }

  /**
   * Seconds left: the trainer's measured time per step between the registry's readings (the same
   * tracker the job's own progress line uses), less the time since the last one.
   */
  private eta(job: Job): number | null {
    if (job.status !== 'running' && job.status !== 'stopping') {
      this.trackers.delete(job.id);
      return null;
    }
    let t = this.trackers.get(job.id);
    if (!t || t.started !== job.startedAt) {
      t = { started: job.startedAt, lastStep: -1, eta: Number.NaN, tracker: new ProgressTracker() };
      this.trackers.set(job.id, t);
    }
    const m = job.metrics ?? {};
    if (job.step !== t.lastStep) {
      t.lastStep = job.step;
      t.eta = t.tracker.update(
        {
          step: job.step,
          totalSteps: job.totalSteps,
          loss: m.loss ?? Number.NaN,
          gradNorm: m.grad_norm ?? Number.NaN,
          lr: m.lr ?? Number.NaN,
          samplesPerSec: m.samples_per_s ?? Number.NaN,
        },
        job.updatedAt,
      ).etaSeconds;
    }
    let eta = t.eta;
    if (!Number.isFinite(eta)) {
      // Before two readings: the trainer's own speed, which leaves out checkpoint saves.
      const batch = batchSize(job.config);
      const rate = m.samples_per_s;
      if (batch === null || rate === undefined || !(rate > 0)) return null;
      eta = (Math.max(0, job.totalSteps - job.step) * batch) / rate;
    }
    return Math.max(0, eta - (Date.now() - job.updatedAt) / 1000);
  }

  summary(job: Job): JobSummary {
    const etaSeconds = this.eta(job);
    return {
      id: job.id,
      status: job.status,
      configName: job.configName,
      expName: job.expName,
      step: job.step,
      totalSteps: job.totalSteps,
      metrics: job.metrics,
      etaSeconds,
      eta: etaSeconds === null ? '-' : formatDuration(etaSeconds),
      alive: jobAlive(job),
      host: job.host,
      pid: job.pid,
      createdAt: job.createdAt,
      startedAt: job.startedAt,
      updatedAt: job.updatedAt,
      finishedAt: job.finishedAt,
      error: job.error === null ? null : job.error.split('\n')[0]!,
      runDirExists: existsSync(job.runDir),
      resumable: isFinal(job.status) && !(job.status === 'finished' && job.step >= job.totalSteps),
    };
  }

  list(): JobSummary[] {
    this.reap();
    return this.registry.list().map((j) => this.summary(j));
  }

  detail(id: number): JobDetail {
    this.reap();
    const job = this.job(id);
    const problems: string[] = [];
    if (!existsSync(job.runDir)) {
      problems.push(
        `run folder ${this.rel(job.runDir)} was removed: job ${id}'s metrics and checkpoints are gone (the registry still lists it; vla jobs rm ${id} forgets it)`,
      );
    }
    if (job.checkpoint && !existsSync(job.checkpoint)) {
      problems.push(`checkpoint ${this.rel(job.checkpoint)} was removed`);
    }
    if (!existsSync(job.logPath) && job.status !== 'queued') {
      problems.push(`log ${this.rel(job.logPath)} is missing`);
    }
    let configYaml: string;
    try {
      configYaml = configToYaml(job.config as TrainConfig);
    } catch {
      configYaml = JSON.stringify(job.config, null, 2);
    }
    return {
      ...this.summary(job),
      configYaml,
      runDir: this.rel(job.runDir),
      logPath: this.rel(job.logPath),
      checkpoint: job.checkpoint === null ? null : this.rel(job.checkpoint),
      fullError: job.error,
      events: this.registry.events(id),
      problems,
    };
  }

  /** The job's metrics as they stand; a 410 when its run folder was removed. */
  runMetrics(id: number): RunMetrics {
    const job = this.job(id);
    if (!existsSync(job.runDir)) {
      throw new HttpError(
        410,
        `job ${id}: run folder ${this.rel(job.runDir)} was removed, and its metrics.jsonl with it (the registry still lists the job)`,
      );
    }
    try {
      return this.metrics.read(metricsPath(job.runDir));
    } catch (e) {
      if (e instanceof UserError) throw new HttpError(422, `job ${id}: ${e.message}`);
      throw e;
    }
  }

  log(id: number, lines: number): string {
    return tailFile(this.job(id).logPath, lines);
  }

  stop(id: number): { pid: number; job: JobSummary } {
    this.job(id);
    try {
      const pid = requestStop(this.registry, id);
      return { pid, job: this.summary(this.registry.require(id)) };
    } catch (e) {
      if (e instanceof UserError) throw new HttpError(409, e.message);
      throw e;
    }
  }

  resume(id: number): { pid: number; job: JobSummary } {
    this.job(id);
    try {
      const job = prepareResume(this.registry, id, this.workspace);
      const pid = spawnDetached(this.registry, job, this.opts.backend);
      return { pid, job: this.summary(this.registry.require(id)) };
    } catch (e) {
      if (e instanceof UserError) throw new HttpError(409, e.message);
      throw e;
    }
  }

  /**
   * The success of each run's periodic evaluations over its training steps (the `eval_*` fields its
   * metrics.jsonl gets from `train.eval_task`), for the jobs configured with one.
   */
  trainingEvals(points: number): TrainingEvals[] {
    const out: TrainingEvals[] = [];
    for (const job of this.registry.list()) {
      const tasks = evalTasks((job.config as { train?: { eval_task?: unknown } } | null)?.train);
      if (tasks.length === 0 || !existsSync(job.runDir)) continue;
      const label = `job ${job.id}: ${job.configName}/${job.expName} (${tasks.join(', ')})`;
      let run: RunMetrics;
      try {
        run = this.metrics.read(metricsPath(job.runDir));
      } catch (e) {
        out.push({ id: job.id, label, curves: {}, error: (e as Error).message });
        continue;
      }
      const keys = [...run.curves.keys()].filter((k) => k.startsWith('eval_'));
      if (keys.length > 0) out.push({ id: job.id, label, curves: runCurves(run, keys, points), error: null });
    }
    return out;
  }

  /** The dataset folder each job trains on, or why it cannot be found. */
  datasets(): Array<{ job: number; dir: string | null; error: string | null }> {
    return this.registry.list().map((j) => {
      try {
        return { job: j.id, dir: resolveDataset(this.workspace, j.config as TrainConfig), error: null };
      } catch (e) {
        return { job: j.id, dir: null, error: (e as Error).message };
      }
    });
  }
}

import path from 'node:path';
import { validate } from '../config/load.js';
import { TrainConfig } from '../config/schema.js';
import { listCheckpoints } from '../train/checkpoint.js';
import { recordedSceneWarning, simEvaluation } from './evaluation.js';
import { processStartTime } from './liveness.js';
import type { Job, JobRegistry } from './registry.js';
import { thisHost } from './registry.js';
import type { RunTraining, RunTrainingResult, TrainProgress } from './trainer.js';

/** Progress goes to the registry at most this often: every trainer shares the one database file. */
const REGISTRY_WRITE_MS = 1000;

export interface RunJobOptions {
  train: RunTraining;
  signal?: AbortSignal;
  onProgress?: (p: TrainProgress) => void;
  log?: (line: string) => void;
}

export interface RunJobOutcome {
  job: Job;
  result: RunTrainingResult | null;
}

const metricsOf = (p: TrainProgress) => ({
  loss: p.loss,
  grad_norm: p.gradNorm,
  lr: p.lr,
  samples_per_s: p.samplesPerSec,
});

/**
 * Run a queued job in this process: claim it, train, and write its final status. Every way out of
 * the trainer ends in a final status (finished, stopped or failed); only a killed process leaves none,
 * which `reapDeadJobs` then finds. Returns `result: null` when the job was no longer queued (stopped
 * before it started).
 */
export async function runJob(registry: JobRegistry, id: number, opts: RunJobOptions): Promise<RunJobOutcome> {
  const job = registry.require(id);
  const workspaceDir = path.dirname(path.dirname(registry.file));
  const config = validate(TrainConfig, job.config, () => `job ${id}'s stored config: `);
  const claimed = registry.transition(
    id,
    'running',
    `${job.resume ? 'resumed' : 'started'} as pid ${process.pid} on ${thisHost()}`,
    // Any later start of this job continues from its checkpoints.
    {
      pid: process.pid,
      pidStart: processStartTime(process.pid),
      host: thisHost(),
      startedAt: Date.now(),
      resume: true,
    },
    { status: ['queued'] },
  );
  if (!claimed) return { job: registry.require(id), result: null };

  let lastWrite = 0;
  let last: TrainProgress | null = null;
  const onProgress = (p: TrainProgress) => {
    last = p;
    const now = Date.now();
    if (now - lastWrite >= REGISTRY_WRITE_MS || p.step === p.totalSteps) {
      lastWrite = now;
      // The newest complete checkpoint, so a job that dies later shows where it can resume from.
      const checkpoint = listCheckpoints(job.runDir).at(-1)?.dir ?? null;
      registry.update(id, { step: p.step, totalSteps: p.totalSteps, metrics: metricsOf(p), checkpoint });
    }
    opts.onProgress?.(p);
  };

  let result: RunTrainingResult;
  try {
    const drift = await recordedSceneWarning(config);
    if (drift) opts.log?.(`warning: ${drift}`);
    result = await opts.train({
      config,
      runDir: job.runDir,
      resume: job.resume,
      signal: opts.signal,
      onProgress,
      evaluate: simEvaluation(config),
      log: opts.log,
    });
  } catch (e) {
    const err = e as Error;
    const step = (last as TrainProgress | null)?.step ?? job.step;
    registry.transition(id, 'failed', `trainer error at step ${step}`, {
      step,
      error: `${err.name}: ${err.message}`,
    });
    throw e;
  }
  const patch = {
    step: result.step,
    checkpoint: result.checkpoint,
    ...(last ? { metrics: metricsOf(last) } : {}),
  };
  const where = result.checkpoint ? `; checkpoint ${path.relative(workspaceDir, result.checkpoint)}` : '';
  if (result.stopped) registry.transition(id, 'stopped', `stopped at step ${result.step}${where}`, patch);
  else registry.transition(id, 'finished', `finished at step ${result.step}${where}`, patch);
  return { job: registry.require(id), result };
}

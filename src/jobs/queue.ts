import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FlowProducer, Queue, type Job as QueueJob, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { describeValue, UserError } from '../config/errors.js';
import { validate } from '../config/load.js';
import { TrainConfig } from '../config/schema.js';
import { type EpisodeResult, summarize, type TaskSummary } from '../sim/rollout.js';
import { type PreparedLaunch, registerLaunch, resolveDataset, runDirFor, VLA_BIN } from './launch.js';
import { processStartTime, reapDeadJobs } from './liveness.js';
import { isFinal, JobRegistry, thisHost } from './registry.js';

/** The one BullMQ queue all vla workers of a Redis share. */
export const QUEUE_NAME = 'vla-jobs';

/** What `vla jobs submit` puts on the queue: the resolved config, so every worker trains the same thing. */
export interface TrainTask {
  kind: 'train';
  config: TrainConfig;
  expName: string;
  resume: boolean;
  overwrite: boolean;
  submittedFrom: string;
  /** Set by the first worker that starts it: any later attempt continues from the run's checkpoints. */
  started?: boolean;
}

/**
 * One share of an evaluation: episodes `first .. first + episodes - 1` of a run whose episode i uses
 * seed `seed0 + i`, rolled out on a worker against the checkpoint served there.
 */
export interface EvalShardTask {
  kind: 'eval-shard';
  task: string;
  /** The checkpoint folder, relative to the worker's workspace (or absolute). */
  checkpoint: string;
  seed0: number;
  first: number;
  episodes: number;
  shard: number;
  shards: number;
  submittedFrom: string;
}

/** The parent of an evaluation's shards: it runs once they all finished and adds them up. */
export interface EvalTask {
  kind: 'eval';
  task: string;
  checkpoint: string;
  episodes: number;
  shards: number;
  submittedFrom: string;
}

export type QueueTask = TrainTask | EvalTask | EvalShardTask;

export interface EvalShardResult {
  worker: string;
  results: EpisodeResult[];
}

export interface EvalResult {
  summary: TaskSummary;
  results: EpisodeResult[];
  /** Which worker ran which shard. */
  workers: string[];
}

export interface TaskProgress {
  step: number;
  totalSteps: number;
  loss: number;
  lr: number;
  samplesPerSec: number;
  worker: string;
}

export interface TaskResult {
  worker: string;
  /** The job's id in that worker's workspace registry. */
  localJob: number;
  step: number;
  loss: number | null;
  checkpoint: string | null;
}

export function parseQueueUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UserError(`--queue: expected a URL such as redis://HOST:6379, got ${describeValue(url)}`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new UserError(`--queue: expected a redis:// or rediss:// URL, got ${describeValue(url)}`);
  }
  return parsed;
}

/**
 * A connection to the queue's Redis, checked before anything is sent: an address that cannot be
 * reached is a clear error within a few seconds, not a client retrying forever.
 */
export async function connectQueue(url: string, timeoutMs = 3000): Promise<Redis> {
  parseQueueUrl(url);
  const redis = new Redis(url, {
    lazyConnect: true,
    // BullMQ's workers block on Redis commands; it requires this to be null.
    maxRetriesPerRequest: null,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
  });
  // The socket's own error (ECONNREFUSED, ENOTFOUND) arrives as an event; connect() only says "closed".
  let cause: Error | null = null;
  redis.on('error', (e: Error) => {
    cause ??= e;
  });
  try {
    await redis.connect();
    await redis.ping();
  } catch (e) {
    redis.disconnect();
    const why = (cause as Error | null)?.message ?? (e as Error).message;
    throw new UserError(`cannot reach the queue at ${url}: ${why}`);
  }
  // Reachable now: from here on, ride out short outages instead of failing.
  redis.options.retryStrategy = (times: number) => Math.min(times * 200, 2000);
  return redis;
}

/**
 * An evaluation split into `shards` queue jobs that any workers take, under a parent job that adds
 * their episodes up (a BullMQ flow: the parent waits for its children). Returns the parent's id.
 */
export async function submitEval(
  url: string,
  spec: {
    task: string;
    checkpoint: string;
    episodes: number;
    seed: number;
    shards: number;
    submittedFrom: string;
  },
): Promise<string> {
  const shards = Math.max(1, Math.min(spec.shards, spec.episodes));
  const connection = await connectQueue(url);
  const flow = new FlowProducer({ connection });
  try {
    const per = Math.ceil(spec.episodes / shards);
    const children = Array.from({ length: shards }, (_, shard) => {
      const first = shard * per;
      const data: EvalShardTask = {
        kind: 'eval-shard',
        task: spec.task,
        checkpoint: spec.checkpoint,
        seed0: spec.seed,
        first,
        episodes: Math.min(per, spec.episodes - first),
        shard,
        shards,
        submittedFrom: spec.submittedFrom,
      };
      return { name: 'eval-shard', queueName: QUEUE_NAME, data, opts: { attempts: 2 } };
    }).filter((c) => c.data.episodes > 0);
    const parent: EvalTask = {
      kind: 'eval',
      task: spec.task,
      checkpoint: spec.checkpoint,
      episodes: spec.episodes,
      shards: children.length,
      submittedFrom: spec.submittedFrom,
    };
    const node = await flow.add({ name: 'eval', queueName: QUEUE_NAME, data: parent, children });
    return node.job.id!;
  } finally {
    await flow.close();
    connection.disconnect();
  }
}

export async function submitTask(url: string, task: TrainTask): Promise<string> {
  const connection = await connectQueue(url);
  const queue = new Queue<TrainTask>(QUEUE_NAME, { connection });
  try {
    // Two attempts: a run the worker stopped (it shut down) goes back to the queue once more.
    const job = await queue.add('train', task, { attempts: 2 });
    return job.id!;
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

/** What a queue job is, in a few words, for `vla jobs list --queue`. */
export function describeTask(t: QueueTask): string {
  if (t.kind === 'eval') return `eval ${t.task} ${t.checkpoint} (${t.episodes} episodes, ${t.shards} shards)`;
  if (t.kind === 'eval-shard') {
    return `eval ${t.task} shard ${t.shard + 1}/${t.shards} (episodes ${t.first}..${t.first + t.episodes - 1})`;
  }
  return `${t.config.name}/${t.expName}`;
}

export interface QueueEntry {
  id: string;
  state: string;
  experiment: string;
  progress: Partial<TaskProgress>;
  worker: string | null;
  attempts: number;
  result: TaskResult | EvalResult | EvalShardResult | null;
  failedReason: string | null;
}

export async function listQueue(url: string): Promise<QueueEntry[]> {
  const connection = await connectQueue(url);
  const queue = new Queue<QueueTask>(QUEUE_NAME, { connection });
  try {
    const jobs = (await queue.getJobs(
      ['active', 'waiting', 'delayed', 'prioritized', 'completed', 'failed'],
      0,
      500,
      true,
    )) as unknown as Array<QueueJob<QueueTask, TaskResult | EvalResult | EvalShardResult>>;
    const out: QueueEntry[] = [];
    for (let job of jobs) {
      const state = await job.getState();
      // The listing was read before the state: a job that finished in between reads as completed with
      // no result yet (seen under load in the two-worker test), so read it again.
      if ((state === 'completed' || state === 'failed') && job.finishedOn === undefined) {
        job = ((await queue.getJob(job.id!)) as typeof job | undefined) ?? job;
      }
      const progress = (typeof job.progress === 'object' ? job.progress : {}) as Partial<TaskProgress>;
      out.push({
        id: job.id!,
        state,
        experiment: describeTask(job.data),
        progress,
        worker: (job.returnvalue as { worker?: string } | null)?.worker ?? progress.worker ?? null,
        attempts: job.attemptsStarted,
        result: job.returnvalue ?? null,
        failedReason: job.failedReason || null,
      });
    }
    return out.sort((a, b) => Number(a.id) - Number(b.id));
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

/**
 * The launch checks of `vla train`, made on the worker's own machine (its dataset paths, its run
 * folders). A later attempt of a task (after a worker died or stopped) always resumes.
 */
async function prepareTask(
  registry: JobRegistry,
  task: TrainTask,
  workspace: string,
): Promise<PreparedLaunch> {
  const config = validate(TrainConfig, task.config, () => 'queued config: ');
  resolveDataset(workspace, config);
  const runDir = runDirFor(workspace, config.name, task.expName);
  // A worker that died leaves its trainer saving a checkpoint: wait for it rather than fail.
  const deadline = Date.now() + 120_000;
  for (;;) {
    reapDeadJobs(registry);
    const existing = registry.findByExperiment(config.name, task.expName);
    if (!existing || isFinal(existing.status)) break;
    if (Date.now() > deadline || !task.started) {
      throw new UserError(
        `experiment ${config.name}/${task.expName} is ${existing.status} as job ${existing.id} on ${existing.host}`,
      );
    }
    await sleep(500);
  }
  const existing = registry.findByExperiment(config.name, task.expName);
  const runDirUsed = existsSync(runDir) && readdirSync(runDir).length > 0;
  const resume = task.resume || task.started === true;
  const overwrite = task.overwrite && !task.started;
  if ((existing || runDirUsed) && !resume && !overwrite) {
    throw new UserError(
      `experiment ${config.name}/${task.expName} exists on ${thisHost()}: submit with --resume to continue it or --overwrite to start over`,
    );
  }
  return { config, expName: task.expName, runDir, existing, runDirUsed, resume, overwrite };
}

/** Roll out one shard: serve the checkpoint on this machine and run its episodes as a robot client. */
async function runEvalShard(t: EvalShardTask, opts: WorkerOptions, worker: string): Promise<EvalShardResult> {
  const checkpoint = path.resolve(opts.workspace, t.checkpoint);
  if (!existsSync(path.join(checkpoint, 'config.yaml'))) {
    throw new UnrecoverableError(
      `checkpoint ${t.checkpoint}: not on ${worker} (no ${checkpoint}/config.yaml)`,
    );
  }
  const { serveCheckpointLocally } = await import('../serving/local.js');
  const { runEval } = await import('../sim/eval.js');
  opts.log(
    `eval shard ${t.shard + 1}/${t.shards}: ${t.task}, episodes ${t.first}..${t.first + t.episodes - 1}`,
  );
  const { server } = await serveCheckpointLocally(checkpoint, { backend: opts.backend });
  try {
    const report = await runEval({
      task: t.task,
      url: server.url,
      episodes: t.episodes,
      workers: 1,
      seed: t.seed0 + t.first,
      videos: 0,
    });
    // Episode numbers of the whole evaluation, not of this shard.
    return { worker, results: report.results.map((r) => ({ ...r, episode: r.episode + t.first })) };
  } finally {
    await server.close();
  }
}

export interface WorkerOptions {
  url: string;
  concurrency: number;
  workspace: string;
  /** Seconds without a lock renewal after which another worker takes a job over. */
  stallSeconds: number;
  backend?: string;
  log: (line: string) => void;
}

export interface RunningWorker {
  name: string;
  /** Stop taking jobs; running trainers save a checkpoint and their jobs go back to the queue. */
  close(): Promise<void>;
}

/**
 * Take training jobs off the queue and run each as a trainer process of this workspace (the same
 * `vla jobs _run` that `--detach` starts, so `vla jobs list` here shows them too), reporting progress
 * and the result back to the queue. A trainer notices when its worker dies (the IPC channel closes),
 * saves a checkpoint and exits; BullMQ's stalled-job check then hands the job to another worker,
 * which resumes it from that checkpoint.
 */
export async function startWorker(opts: WorkerOptions): Promise<RunningWorker> {
  const connection = await connectQueue(opts.url);
  const name = `${thisHost()}:${process.pid}`;
  const children = new Set<ChildProcess>();
  let closing = false;

  const processTask = async (
    job: QueueJob<QueueTask, TaskResult | EvalResult | EvalShardResult>,
  ): Promise<TaskResult | EvalResult | EvalShardResult> => {
    const data = job.data;
    if (data.kind === 'eval-shard') return runEvalShard(data, opts, name);
    if (data.kind === 'eval') {
      const shards = Object.values(await job.getChildrenValues<EvalShardResult>());
      const results = shards.flatMap((s) => s.results).sort((a, b) => a.episode - b.episode);
      opts.log(`queue job ${job.id}: eval of ${data.task} added up over ${shards.length} shards`);
      return { summary: summarize(data.task, results), results, workers: shards.map((s) => s.worker) };
    }
    return processTrain(job as QueueJob<TrainTask, TaskResult>);
  };

  const processTrain = async (job: QueueJob<TrainTask, TaskResult>): Promise<TaskResult> => {
    const registry = JobRegistry.open(opts.workspace);
    try {
      let prepared: PreparedLaunch;
      try {
        prepared = await prepareTask(registry, job.data, opts.workspace);
      } catch (e) {
        // Bad input fails the same way on every attempt: do not retry it.
        if (e instanceof UserError) throw new UnrecoverableError(e.message);
        throw e;
      }
      if (!job.data.started) await job.updateData({ ...job.data, started: true });
      const local = registerLaunch(registry, prepared);
      opts.log(
        `queue job ${job.id}: ${prepared.config.name}/${prepared.expName} as local job ${local.id}${prepared.resume ? ' (resuming)' : ''}`,
      );
      mkdirSync(path.dirname(local.logPath), { recursive: true });
      const out = openSync(local.logPath, 'a');
      const args = [
        VLA_BIN,
        ...(opts.backend ? ['--backend', opts.backend] : []),
        'jobs',
        '_run',
        String(local.id),
      ];
      const child = spawn(process.execPath, args, {
        cwd: opts.workspace,
        stdio: ['ignore', out, out, 'ipc'],
      });
      closeSync(out);
      children.add(child);
      const pid = child.pid!;
      registry.update(
        local.id,
        { pid, pidStart: processStartTime(pid), host: thisHost() },
        { status: ['queued'], pid: null },
      );
      let lastReport = 0;
      child.on('message', (m: { type?: string } & Partial<TaskProgress>) => {
        if (m.type !== 'progress' || Date.now() - lastReport < 1000) return;
        lastReport = Date.now();
        const { type: _type, ...p } = m;
        job.updateProgress({ ...p, worker: name }).catch(() => {});
      });
      await new Promise<void>((resolve) => child.once('exit', () => resolve()));
      children.delete(child);
      const end = registry.require(local.id);
      if (end.status === 'stopped' && !closing) {
        // Stopped by hand (vla jobs stop on this machine): do not hand it to another worker.
        throw new UnrecoverableError(`stopped at step ${end.step} on ${name}`);
      }
      if (end.status !== 'finished') {
        throw new Error(
          `${end.status} at step ${end.step} on ${name}${end.error ? `: ${end.error.split('\n')[0]}` : ''}`,
        );
      }
      opts.log(`queue job ${job.id}: finished at step ${end.step}`);
      return {
        worker: name,
        localJob: end.id,
        step: end.step,
        loss: end.metrics?.loss ?? null,
        checkpoint: end.checkpoint,
      };
    } finally {
      registry.close();
    }
  };

  opts.log(`worker ${name} taking jobs from ${opts.url} (concurrency ${opts.concurrency})`);
  const worker = new Worker<QueueTask, TaskResult | EvalResult | EvalShardResult>(QUEUE_NAME, processTask, {
    connection,
    concurrency: opts.concurrency,
    name,
    lockDuration: opts.stallSeconds * 1000,
    stalledInterval: Math.max(1000, (opts.stallSeconds * 1000) / 2),
    maxStalledCount: 3,
  });
  worker.on('failed', (job, err) => opts.log(`queue job ${job?.id}: failed: ${err.message}`));
  worker.on('error', (err) => opts.log(`worker error: ${err.message}`));
  await worker.waitUntilReady();
  return {
    name,
    close: async () => {
      closing = true;
      for (const child of children) child.kill('SIGTERM');
      await worker.close();
      connection.disconnect();
    },
  };
}

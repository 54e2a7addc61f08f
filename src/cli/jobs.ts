import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { describeValue, UserError } from '../config/errors.js';
import { jobAlive, reapDeadJobs, tailFile } from '../jobs/liveness.js';
import { metricsPath, readMetrics } from '../jobs/metrics.js';
import { formatDuration, formatNumber } from '../jobs/progress.js';
import type { EvalResult, EvalShardResult, TaskResult } from '../jobs/queue.js';
import { isFinal, type Job, JobRegistry, thisHost } from '../jobs/registry.js';
import { collect, intOption, table } from './output.js';

/** The queue client (BullMQ, ioredis): loaded only by the commands that talk to a queue. */
const queueModule = () => import('../jobs/queue.js');

const rel = (p: string) => path.relative(process.cwd(), p) || p;

function parseId(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new UserError(`job id: expected a positive integer, got ${describeValue(text)}`);
  }
  return Number(text);
}

function ago(ms: number): string {
  return `${formatDuration((Date.now() - ms) / 1000)} ago`;
}

function withRegistry<A extends unknown[]>(fn: (registry: JobRegistry, ...args: A) => unknown) {
  return async (...args: A) => {
    const registry = JobRegistry.open();
    try {
      await fn(registry, ...args);
    } finally {
      registry.close();
    }
  };
}

/** A job as `--json` prints it: the registry's fields, the resolved config left out. */
function jobJson(job: Job): Omit<Job, 'config'> & { alive: boolean } {
  const { config: _config, ...rest } = job;
  return { ...rest, alive: jobAlive(job) };
}

function showJob(registry: JobRegistry, job: Job): void {
  const m = job.metrics;
  const rows: Array<[string, string]> = [
    ['job', String(job.id)],
    ['status', job.status],
    ['experiment', `${job.configName}/${job.expName}`],
    ['step', `${job.step}/${job.totalSteps}`],
    [
      'metrics',
      m
        ? Object.entries(m)
            .map(([k, v]) => `${k} ${formatNumber(v)}`)
            .join(', ')
        : '-',
    ],
    ['process', job.pid === null ? '-' : `pid ${job.pid} on ${job.host}${jobAlive(job) ? ' (alive)' : ''}`],
    ['run folder', rel(job.runDir)],
    ['checkpoint', job.checkpoint ? rel(job.checkpoint) : '-'],
    ['log', rel(job.logPath)],
    ['created', new Date(job.createdAt).toISOString()],
    ['updated', `${new Date(job.updatedAt).toISOString()} (${ago(job.updatedAt)})`],
  ];
  if (job.finishedAt !== null) rows.push(['ended', new Date(job.finishedAt).toISOString()]);
  const w = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
  console.log('\nhistory:');
  for (const e of registry.events(job.id)) {
    console.log(`  ${new Date(e.time).toISOString()}  ${e.status.padEnd(8)}  ${e.message}`);
  }
  if (job.error) console.log(`\nerror: ${job.error}`);
}

/** Print a file from `offset` on; returns the new offset. */
function printFrom(file: string, offset: number): number {
  if (!existsSync(file)) return offset;
  const size = statSync(file).size;
  if (size <= offset) return size < offset ? 0 : offset;
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(size - offset);
    readSync(fd, buf, 0, buf.length, offset);
    process.stdout.write(buf);
  } finally {
    closeSync(fd);
  }
  return size;
}

/**
 * How a followed job ended, for `logs -f` to exit with: nothing for a job that finished all its steps,
 * or the registry's account of why it did not. A stopped job is no failure, but it did not finish
 * either: `logs -f && next-step` must not go on to evaluate or serve a half-trained model.
 */
function unfinished(job: Job): string | null {
  const at = `at step ${job.step} of ${job.totalSteps}`;
  if (job.status === 'finished') return null;
  if (job.status === 'stopped') {
    return `job ${job.id} stopped ${at} before finishing: vla jobs resume ${job.id} goes on with it`;
  }
  // The first line says why; a dead process's error goes on with the end of its log, printed above.
  const [first, ...rest] = job.error ? job.error.split('\n') : ['no error recorded'];
  const more = rest.length > 0 ? ` (vla jobs show ${job.id} prints all of it)` : '';
  return `job ${job.id} ${job.status} ${at}: ${first.replace(/:$/, '')}${more}`;
}

/** Wait until a job reaches a final status (or its process is found dead); null on timeout. */
async function waitFinal(registry: JobRegistry, id: number, timeoutMs: number): Promise<Job | null> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    reapDeadJobs(registry);
    const job = registry.require(id);
    if (isFinal(job.status)) return job;
    await sleep(250);
  }
  return null;
}

const listLocal = withRegistry((registry, json: boolean) => {
  reapDeadJobs(registry);
  const all = registry.list();
  if (json) {
    console.log(JSON.stringify(all.map(jobJson), null, 2));
    return;
  }
  if (all.length === 0) {
    console.log('no jobs yet: start one with vla train <config> --exp-name NAME');
    return;
  }
  const rows = all.map((j) => [
    String(j.id),
    j.status,
    `${j.configName}/${j.expName}`,
    `${j.step}/${j.totalSteps}`,
    j.metrics?.loss !== undefined ? formatNumber(j.metrics.loss) : '-',
    j.metrics?.lr !== undefined ? formatNumber(j.metrics.lr) : '-',
    j.metrics?.samples_per_s !== undefined ? j.metrics.samples_per_s.toFixed(1) : '-',
    j.pid !== null && !isFinal(j.status) ? `${j.host}:${j.pid}` : '-',
    ago(j.updatedAt),
  ]);
  console.log(
    table(['id', 'status', 'experiment', 'step', 'loss', 'lr', 'samples/s', 'process', 'updated'], rows),
  );
});

async function printQueue(url: string, json: boolean): Promise<void> {
  const entries = await (await queueModule()).listQueue(url);
  if (json) {
    console.log(JSON.stringify(entries, null, 2));
    return;
  }
  if (entries.length === 0) {
    console.log(`no jobs on ${url}: submit one with vla jobs submit <config> --exp-name NAME --queue ${url}`);
    return;
  }
  const rows = entries.map((e) => {
    const r = e.result as (Partial<TaskResult> & Partial<EvalResult> & Partial<EvalShardResult>) | null;
    const step =
      r?.step !== undefined
        ? String(r.step)
        : e.progress.step !== undefined
          ? `${e.progress.step}/${e.progress.totalSteps}`
          : '-';
    const loss =
      r?.loss != null
        ? formatNumber(r.loss)
        : e.progress.loss !== undefined
          ? formatNumber(e.progress.loss)
          : '-';
    const outcome = r?.summary
      ? `${r.summary.pc_success.toFixed(0)}% success over ${r.summary.episodes} episodes (avg max reward ${r.summary.avg_max_reward.toFixed(2)})`
      : r?.results
        ? `${r.results.filter((x) => x.success).length}/${r.results.length} episodes succeeded`
        : r?.checkpoint
          ? rel(r.checkpoint)
          : '';
    return [
      e.id,
      e.state,
      e.experiment,
      step,
      loss,
      e.worker ?? '-',
      String(e.attempts),
      e.failedReason ?? outcome,
    ];
  });
  console.log(table(['id', 'state', 'experiment', 'step', 'loss', 'worker', 'attempts', 'result'], rows));
}

export function register(program: Command): void {
  const jobs = program.command('jobs').description('list, watch, stop, resume and plot fine-tuning jobs');

  jobs
    .command('list')
    .description('all jobs of this workspace (jobs whose process died are marked failed first)')
    .option('--json', 'print JSON, one object per job')
    .option('--queue <url>', 'list the jobs of a Redis queue instead (redis://HOST:6379)')
    .action((opts: { json?: boolean; queue?: string }) =>
      opts.queue ? printQueue(opts.queue, opts.json === true) : listLocal(opts.json === true),
    );

  jobs
    .command('show')
    .description('one job in full: status, progress, process, files, history, error')
    .argument('<id>', 'job id')
    .option('--json', 'print JSON')
    .action(
      withRegistry((registry, id: string, opts: { json?: boolean }) => {
        reapDeadJobs(registry);
        const job = registry.require(parseId(id));
        if (opts.json)
          console.log(JSON.stringify({ ...jobJson(job), events: registry.events(job.id) }, null, 2));
        else showJob(registry, job);
      }),
    );

  jobs
    .command('logs')
    .description(
      "print a job's log; with -f, keep printing until the job ends, and exit 0 only if it finished (non-zero when it failed or was stopped)",
    )
    .argument('<id>', 'job id')
    .option('-f, --follow', 'follow the log while the job runs')
    .option('-n, --lines <n>', 'print only the last N lines first')
    .action(
      withRegistry(async (registry, id: string, opts: { follow?: boolean; lines?: string }) => {
        const job = registry.require(parseId(id));
        if (!existsSync(job.logPath)) {
          if (!opts.follow) throw new UserError(`job ${job.id} has no log yet (${rel(job.logPath)})`);
        }
        let offset = 0;
        if (opts.lines !== undefined) {
          const n = Number(opts.lines);
          if (!Number.isInteger(n) || n < 0)
            throw new UserError(`--lines: expected a whole number, got ${describeValue(opts.lines)}`);
          const tail = tailFile(job.logPath, n);
          if (tail) process.stdout.write(`${tail}\n`);
          offset = existsSync(job.logPath) ? statSync(job.logPath).size : 0;
        } else offset = printFrom(job.logPath, 0);
        if (!opts.follow) return;
        for (;;) {
          reapDeadJobs(registry);
          const now = registry.require(job.id);
          // The process writes its summary after its final status: read on until it has exited.
          const done = isFinal(now.status) && !jobAlive(now);
          offset = printFrom(job.logPath, offset);
          if (done) break;
          await sleep(200);
        }
        const end = registry.require(job.id);
        const why = unfinished(end);
        if (why !== null) throw new UserError(why);
        console.error(`(job ${end.id} ${end.status} at step ${end.step})`);
      }),
    );

  jobs
    .command('stop')
    .description('ask a running job to save a checkpoint and exit (SIGTERM); waits until it has')
    .argument('<id>', 'job id')
    .option('--no-wait', 'return once the signal is sent')
    .option('--timeout <seconds>', 'how long to wait for the checkpoint', '300')
    .action(
      withRegistry(async (registry, id: string, opts: { wait: boolean; timeout: string }) => {
        const { requestStop } = await import('../jobs/launch.js');
        const job = { id: parseId(id) };
        const pid = requestStop(registry, job.id);
        console.log(`job ${job.id}: asked process ${pid} to save a checkpoint and stop`);
        if (!opts.wait) return;
        const seconds = Number(opts.timeout);
        if (!(seconds > 0))
          throw new UserError(`--timeout: expected seconds > 0, got ${describeValue(opts.timeout)}`);
        const end = await waitFinal(registry, job.id, seconds * 1000);
        if (end === null) {
          throw new UserError(
            `job ${job.id} is still stopping after ${seconds}s: see vla jobs logs ${job.id}`,
          );
        }
        console.log(
          `job ${end.id} ${end.status} at step ${end.step}${end.checkpoint ? `, checkpoint ${rel(end.checkpoint)}` : ''}`,
        );
        if (end.status === 'failed' && end.error) console.log(end.error);
      }),
    );

  jobs
    .command('resume')
    .description('continue a stopped or failed job from its newest checkpoint (in the background)')
    .argument('<id>', 'job id')
    .option('--foreground', 'run it in this shell with a progress bar instead')
    .action(
      withRegistry(async (registry, id: string, opts: { foreground?: boolean }) => {
        const { prepareResume, spawnDetached } = await import('../jobs/launch.js');
        const { trainingRuntime } = await import('./train.js');
        const job = prepareResume(registry, parseId(id));
        if (!opts.foreground) {
          const pid = spawnDetached(registry, job, program.opts<{ backend?: string }>().backend);
          console.log(`job ${job.id} resuming in the background (pid ${pid}) from step ${job.step}`);
          console.log(`  watch:  vla jobs logs ${job.id} -f`);
          return;
        }
        const { runJobProcess, train } = await trainingRuntime(program);
        const config = job.config as { train: { log_interval: number } };
        await runJobProcess(registry, job.id, {
          train,
          output: 'terminal',
          logInterval: config.train.log_interval,
        });
      }),
    );

  jobs
    .command('rm')
    .description('remove a job from the registry (its checkpoints stay unless --purge)')
    .argument('<ids...>', 'job ids')
    .option('--purge', 'also delete its run folder (checkpoints, metrics) and log')
    .action(
      withRegistry((registry, ids: string[], opts: { purge?: boolean }) => {
        reapDeadJobs(registry);
        const todo = ids.map((i) => registry.require(parseId(i)));
        for (const job of todo) {
          if (!isFinal(job.status))
            throw new UserError(`job ${job.id} is ${job.status}: stop it first (vla jobs stop ${job.id})`);
        }
        for (const job of todo) {
          registry.remove(job.id);
          if (opts.purge) {
            rmSync(job.runDir, { recursive: true, force: true });
            rmSync(job.logPath, { force: true });
            console.log(`removed job ${job.id} and deleted ${rel(job.runDir)}`);
          } else {
            console.log(`removed job ${job.id} (its run folder ${rel(job.runDir)} stays)`);
          }
        }
      }),
    );

  jobs
    .command('plot')
    .description('draw loss, learning rate and eval success curves; several ids overlay their runs')
    .argument('<ids...>', 'job ids')
    .option('--out <file>', 'output file, .png or .svg (default job-<ids>.png)')
    .option('--width <px>', 'image width', '800')
    .option('--by-dataset', "each job's loss per dataset of its mixture, a curve each")
    .option('--x <axis>', 'the x axis: step, or minutes of each run since its first logged step', 'step')
    .action(
      withRegistry(
        async (
          registry,
          ids: string[],
          opts: { out?: string; width: string; byDataset?: boolean; x: string },
        ) => {
          const todo = ids.map((i) => registry.require(parseId(i)));
          const out = path.resolve(opts.out ?? `job-${todo.map((j) => j.id).join('-')}.png`);
          const ext = path.extname(out).toLowerCase();
          if (ext !== '.png' && ext !== '.svg')
            throw new UserError(`--out: expected a .png or .svg file, got ${describeValue(opts.out)}`);
          const width = Number(opts.width);
          if (!Number.isInteger(width) || width < 300 || width > 8000) {
            throw new UserError(
              `--width: expected a whole number of pixels 300..8000, got ${describeValue(opts.width)}`,
            );
          }
          if (opts.x !== 'step' && opts.x !== 'minutes')
            throw new UserError(`--x: expected step or minutes, got ${describeValue(opts.x)}`);
          let runs = todo.map((j) => {
            const rows = readMetrics(metricsPath(j.runDir));
            if (rows.length === 0)
              throw new UserError(`job ${j.id} has no metrics yet (${rel(metricsPath(j.runDir))})`);
            if (opts.x === 'minutes' && !rows.some((r) => r.time !== undefined))
              throw new UserError(
                `--x minutes: job ${j.id}'s metrics have no "time" field to place them by (${rel(metricsPath(j.runDir))}); plot it by step`,
              );
            return { label: `job ${j.id}: ${j.configName}/${j.expName}`, rows };
          });
          const { drawFigure, runsByDataset } = await import('../plot/plot.js');
          if (opts.byDataset) {
            // One job's datasets by name; several jobs' prefixed with their id.
            runs = todo.flatMap((j, i) => {
              const own = runsByDataset(runs[i]!.rows, todo.length > 1 ? `job ${j.id} ` : '');
              if (own.length === 0)
                throw new UserError(
                  `--by-dataset: job ${j.id} logged no loss per dataset (loss/<dataset>: a mixture's runs log it)`,
                );
              return own;
            });
          }
          const j0 = todo[0]!;
          const title = !opts.byDataset
            ? undefined
            : todo.length === 1
              ? `job ${j0.id}: ${j0.configName}/${j0.expName}, loss by dataset`
              : `jobs ${todo.map((j) => `${j.id} (${j.expName})`).join(', ')}: loss by dataset`;
          const fig = drawFigure(runs, { width, x: opts.x, ...(title && { title }) });
          const bytes =
            ext === '.png'
              ? (await import('../plot/render-png.js')).renderPng(fig)
              : Buffer.from((await import('../plot/render-svg.js')).renderSvg(fig));
          mkdirSync(path.dirname(out), { recursive: true });
          const tmp = `${out}.${process.pid}.tmp`;
          writeFileSync(tmp, bytes);
          renameSync(tmp, out);
          console.log(`wrote ${rel(out)} (${runs.map((r) => `${r.rows.length} points`).join(', ')})`);
        },
      ),
    );

  jobs
    .command('submit')
    .description('put a training job on a Redis queue for `vla worker` processes to run')
    .argument('<config>', 'config name or path to a YAML file')
    .requiredOption(
      '--exp-name <name>',
      'experiment name: the run writes to checkpoints/<config>/<name>/ on the worker',
    )
    .requiredOption('--queue <url>', 'the queue: redis://HOST:6379')
    .option('--resume', 'continue the experiment from its newest checkpoint')
    .option('--overwrite', 'delete the experiment’s checkpoints and start over')
    .option('--set <key=value>', 'override a config field (repeatable)', collect, [])
    .action(
      async (
        configName: string,
        opts: { expName: string; queue: string; resume?: boolean; overwrite?: boolean; set: string[] },
      ) => {
        const { resolveLaunchConfig } = await import('../jobs/launch.js');
        const { parseQueueUrl, submitTask } = await queueModule();
        parseQueueUrl(opts.queue);
        const req = {
          config: configName,
          overrides: opts.set,
          expName: opts.expName,
          resume: opts.resume === true,
          overwrite: opts.overwrite === true,
        };
        const config = resolveLaunchConfig(req);
        const id = await submitTask(opts.queue, {
          kind: 'train',
          config,
          expName: opts.expName,
          resume: req.resume,
          overwrite: req.overwrite,
          submittedFrom: thisHost(),
        });
        console.log(`queued job ${id}: ${config.name}/${opts.expName} on ${opts.queue}`);
        console.log(`  watch:  vla jobs list --queue ${opts.queue}`);
      },
    );

  jobs
    .command('submit-eval')
    .description(
      'put a simulated evaluation on a Redis queue, split into shards that several workers run at once',
    )
    .requiredOption('--task <name>', 'simulated task (vla sim tasks)')
    .requiredOption(
      '--checkpoint <dir>',
      'checkpoint folder, as the workers see it (relative to their workspace)',
    )
    .requiredOption('--queue <url>', 'the queue: redis://HOST:6379')
    .option('--episodes <n>', 'episodes in all', '50')
    .option('--shards <n>', 'queue jobs the episodes are split into (one per worker, or more)', '2')
    .option('--seed <n>', 'seed of episode 0 (episode i uses seed + i)', '100000')
    .action(
      async (opts: {
        task: string;
        checkpoint: string;
        queue: string;
        episodes: string;
        shards: string;
        seed: string;
      }) => {
        const { parseQueueUrl, submitEval } = await queueModule();
        const { getTask } = await import('../sim/tasks/index.js');
        parseQueueUrl(opts.queue);
        getTask(opts.task);
        const id = await submitEval(opts.queue, {
          task: opts.task,
          checkpoint: opts.checkpoint,
          episodes: intOption('episodes', opts.episodes, 1)!,
          shards: intOption('shards', opts.shards, 1)!,
          seed: intOption('seed', opts.seed, 0)!,
          submittedFrom: thisHost(),
        });
        console.log(
          `queued evaluation ${id} of ${opts.task} on ${opts.queue}: vla jobs list --queue ${opts.queue}`,
        );
      },
    );

  jobs
    .command('_run', { hidden: true })
    .description('run a queued job in this process (what --detach starts)')
    .argument('<id>', 'job id')
    .action(
      withRegistry(async (registry, id: string) => {
        const { trainingRuntime } = await import('./train.js');
        const jobId = parseId(id);
        try {
          const { runJobProcess, train } = await trainingRuntime(program);
          const config = registry.require(jobId).config as { train: { log_interval: number } };
          await runJobProcess(registry, jobId, {
            train,
            output: 'log',
            logInterval: config.train.log_interval,
          });
        } catch (e) {
          // Failures inside the trainer are recorded by runJob; this catches those before it started.
          registry.transition(
            jobId,
            'failed',
            'could not start',
            { error: (e as Error).message },
            { status: ['queued'] },
          );
          throw e;
        }
      }),
    );
}

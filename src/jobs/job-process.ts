import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { ProgressTracker, progressText, summaryText } from './progress.js';
import type { JobRegistry } from './registry.js';
import { type RunJobOutcome, runJob } from './run-job.js';
import type { RunTraining, TrainProgress } from './trainer.js';

export interface JobProcessOptions {
  train: RunTraining;
  /**
   * `terminal`: a person watches (progress bar on stderr, lines copied to the job's log);
   * `log`: stdout is the job's log file (a detached trainer), so progress is written as plain lines.
   */
  output: 'terminal' | 'log';
  /** Where plain progress lines go in `log` mode and in a terminal that is not a TTY. */
  logInterval: number;
}

const stamp = () => new Date().toISOString().replace('T', ' ').slice(0, 19);

/**
 * Run a job as this process's work: SIGTERM or SIGINT (Ctrl-C, `vla jobs stop`) asks the trainer to
 * save a checkpoint and return; a second signal gives up at once (the job is then found dead and
 * marked failed). Prints a progress bar or progress lines and a summary at the end.
 */
export async function runJobProcess(
  registry: JobRegistry,
  id: number,
  opts: JobProcessOptions,
): Promise<RunJobOutcome> {
  const job = registry.require(id);
  const tty = opts.output === 'terminal' && process.stderr.isTTY === true;
  mkdirSync(path.dirname(job.logPath), { recursive: true });
  let barShown = false;
  const clearBar = () => {
    if (barShown) process.stderr.write('\r\x1b[K');
    barShown = false;
  };
  const say = (line: string) => {
    if (opts.output === 'terminal') {
      clearBar();
      process.stderr.write(`${line}\n`);
      appendFileSync(job.logPath, `${stamp()} ${line}\n`);
    } else {
      process.stdout.write(`${stamp()} ${line}\n`);
    }
  };

  const controller = new AbortController();
  let signals = 0;
  const stop = (why: string) => {
    signals++;
    if (signals > 1) {
      say(`${why} again: exiting without a checkpoint`);
      process.exit(130);
    }
    say(`${why}: saving a checkpoint and stopping (send it again to exit at once)`);
    registry.transition(id, 'stopping', `${why} received`, {}, { status: ['running'] });
    controller.abort();
  };
  const onSignal = (sig: NodeJS.Signals) => stop(sig);
  // A queue worker's trainer: when the worker dies its channel closes, and the job moves to another.
  const onDisconnect = () => stop('worker gone');
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  if (process.send) process.on('disconnect', onDisconnect);

  const tracker = new ProgressTracker();
  let lastDraw = 0;
  const onProgress = (p: TrainProgress) => {
    // With a callback, a send racing the worker's death fails quietly instead of as an 'error' event.
    if (process.connected) process.send?.({ type: 'progress', ...p }, undefined, {}, () => {});
    const line = tracker.update(p);
    if (tty) {
      const now = performance.now();
      if (now - lastDraw < 100 && p.step !== p.totalSteps) return;
      lastDraw = now;
      const width = Math.max(0, Math.min(30, (process.stderr.columns ?? 100) - 90));
      process.stderr.write(`\r\x1b[K${progressText(line, width)}`);
      barShown = true;
    } else if (p.step % opts.logInterval === 0 || p.step === p.totalSteps) {
      say(progressText(line, 0));
    }
  };

  const rel = (p: string) => path.relative(process.cwd(), p) || p;
  const verb = job.resume ? 'resuming' : 'starting';
  say(
    `job ${id}: ${verb} ${job.configName}/${job.expName} (pid ${process.pid}), run folder ${rel(job.runDir)}`,
  );
  try {
    const outcome = await runJob(registry, id, {
      train: opts.train,
      signal: controller.signal,
      onProgress,
      log: say,
    });
    clearBar();
    if (outcome.result === null) {
      say(`job ${id} is ${outcome.job.status}: not started`);
      return outcome;
    }
    const { result } = outcome;
    say(`job ${id} ${outcome.job.status} at step ${result.step}`);
    for (const line of summaryText(tracker.summary())) say(line);
    if (result.checkpoint) say(`checkpoint: ${rel(result.checkpoint)}`);
    return outcome;
  } catch (e) {
    clearBar();
    say(`job ${id} failed: ${(e as Error).message}`);
    throw e;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.off('disconnect', onDisconnect);
  }
}

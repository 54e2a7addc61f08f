/**
 * `vla sim sweep`: a checkpoint (or several) on one task under every execution mode at every simulated
 * latency, each cell a `vla sim eval` of its own, into one report (sweep.json, report.md, sweep.svg)
 * that a stopped or extended sweep resumes.
 */
import path from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../config/errors.js';
import { samplerChoiceFromEnv } from './context.js';
import { collect, intOption, NOISE_SCALE_HELP, noiseScaleOption, progressBar, table } from './output.js';

/** A comma-separated list, each entry checked by `parse`. */
function listOption<T>(flag: string, raw: string, parse: (s: string) => T): T[] {
  const items = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new UserError(`--${flag}: expected a comma-separated list, got "${raw}"`);
  // A repeated entry is one cell, not two runs of it.
  return [...new Set(items.map(parse))];
}

export function registerSweep(sim: Command): void {
  sim
    .command('sweep')
    .description(
      'evaluate checkpoints on a task under each execution mode at each simulated latency: success, time to success, chunk-boundary jumps and jerk in one report',
    )
    .requiredOption('--task <name>', 'the task')
    .requiredOption(
      '--checkpoint <dir>',
      'a checkpoint to serve and evaluate (repeat for several: they share the report)',
      collect,
      [] as string[],
    )
    .option('--execution <modes>', 'execution modes, comma-separated', 'sync,async,ensemble,rtc')
    .option('--latency-ms <list>', 'latencies in ms, comma-separated', '0,100,200,300')
    .option('--episodes <n>', 'episodes per cell', '200')
    .option('--seed <n>', 'seed of episode 0 in every cell (episode i uses seed + i)', '300000')
    .option('--workers <n>', 'episodes run in parallel worker threads', '2')
    .option('--noise-scale <s>', NOISE_SCALE_HELP)
    .option('--out <dir>', 'sweep.json, report.md and sweep.svg go here (default outputs/sweep/<task>)')
    .action(
      async (opts: {
        task: string;
        checkpoint: string[];
        execution: string;
        latencyMs: string;
        episodes: string;
        seed: string;
        workers: string;
        noiseScale?: string;
        out?: string;
      }) => {
        const { getTask } = await import('../sim/tasks/index.js');
        const { task } = getTask(opts.task);
        const { EXECUTION_MODES } = await import('@vla-orchestrator/client');
        const executions = listOption('execution', opts.execution, (m) => {
          const mode = m as (typeof EXECUTION_MODES)[number];
          if (!EXECUTION_MODES.includes(mode))
            throw new UserError(`--execution ${m}: expected modes among ${EXECUTION_MODES.join(', ')}`);
          return mode;
        });
        const latencies = listOption('latency-ms', opts.latencyMs, (v) => {
          const ms = Number(v);
          if (!(Number.isFinite(ms) && ms >= 0))
            throw new UserError(`--latency-ms ${v}: expected milliseconds >= 0`);
          return ms;
        });
        const episodes = intOption('episodes', opts.episodes, 1)!;
        const seed = intOption('seed', opts.seed, 0)!;
        const workers = intOption('workers', opts.workers, 1)!;
        const noiseScale = noiseScaleOption(opts.noiseScale);
        const out = opts.out ?? path.join('outputs', 'sweep', task.name);
        const checkpoints = [...new Set(opts.checkpoint)];
        const { readCheckpointConfig } = await import('../serving/local.js');
        const { checkCheckpointRobot, serveCheckpointForSim } = await import('../jobs/evaluation.js');
        // Every checkpoint read and checked against the task's robot before the first is served: a typo
        // costs no hour of evaluation.
        const trainedRtc = new Map(
          checkpoints.map((dir) => {
            const config = readCheckpointConfig(dir);
            checkCheckpointRobot(dir, config, task.robot);
            return [dir, config.train.rtc !== null];
          }),
        );
        const { checkpointLabel, findCell, readSweep, saveCell } = await import('../jobs/latency-sweep.js');
        const sweep = readSweep(out, { task: task.name, episodes, seed, noiseScale });
        const { runEval } = await import('../sim/eval.js');
        const cells = checkpoints.length * executions.length * latencies.length;
        let done = 0;
        for (const dir of checkpoints) {
          const todo = executions.flatMap((execution) =>
            latencies.filter((ms) => !findCell(sweep, dir, execution, ms)).map((ms) => ({ execution, ms })),
          );
          done += executions.length * latencies.length - todo.length;
          if (todo.length === 0) continue;
          const served = await serveCheckpointForSim(dir, task.robot, {
            backend: sim.parent!.opts<{ backend?: string }>().backend,
            noiseScale,
            sampler: samplerChoiceFromEnv(),
          });
          try {
            for (const { execution, ms } of todo) {
              const label = `${checkpointLabel(dir)} · ${execution} · ${ms} ms`;
              const bar = progressBar(`cell ${done + 1}/${cells}: ${label}`, episodes);
              let n = 0;
              const t0 = performance.now();
              const report = await runEval(
                {
                  task: task.name,
                  url: served.url,
                  episodes,
                  workers,
                  seed,
                  execution,
                  latencyMs: [ms, ms],
                  videos: 0,
                },
                (r) => {
                  n++;
                  if (r.error) console.error(`episode ${r.episode} (seed ${r.seed}) failed: ${r.error}`);
                  bar(n);
                },
              );
              saveCell(out, sweep, {
                checkpoint: dir,
                label: checkpointLabel(dir),
                trained_rtc: trainedRtc.get(dir)!,
                execution,
                latency_ms: ms,
                summary: report.summary,
                eval_s: (performance.now() - t0) / 1000,
              });
              done++;
              const s = report.summary;
              console.log(
                `${label}: ${s.pc_success.toFixed(1)}% success, mean jump ${s.boundary_jump_mean.toFixed(4)} ` +
                  `(mean step ${s.step_mean.toFixed(4)}), ` +
                  `largest ${s.boundary_jump_max.toFixed(3)}`,
              );
            }
          } finally {
            await served.close();
          }
        }
        const { modeLabel } = await import('../jobs/latency-sweep.js');
        console.log(
          `\n${table(
            [
              'checkpoint',
              'execution',
              'latency_ms',
              'pc_success',
              'success_s',
              'jump_max',
              'jump_mean',
              'step_mean',
              'sq_jerk',
            ],
            sweep.cells.map((c) => [
              c.label,
              modeLabel(c),
              String(c.latency_ms),
              c.summary.pc_success.toFixed(1),
              c.summary.avg_success_s === null ? '-' : c.summary.avg_success_s.toFixed(2),
              c.summary.boundary_jump_max.toFixed(3),
              c.summary.boundary_jump_mean.toFixed(4),
              c.summary.step_mean.toFixed(4),
              c.summary.mean_squared_jerk.toExponential(2),
            ]),
          )}`,
        );
        console.log(`\nreport: ${path.join(out, 'report.md')}; plot: ${path.join(out, 'sweep.svg')}`);
      },
    );
}

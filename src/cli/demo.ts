import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../config/errors.js';
import { PACKAGE_ROOT } from '../config/package-root.js';
import { computeBackend, samplerChoiceFromEnv } from './context.js';
import { intOption, NOISE_SCALE_HELP, noiseScaleOption, progressBar, table } from './output.js';

/** A checkpoint folder, or a folder of them (the shipped `checkpoints/base/` holds one per task). */
function checkpointsIn(dir: string): string[] {
  if (existsSync(path.join(dir, 'config.yaml'))) return [dir];
  if (!existsSync(dir)) throw new UserError(`--checkpoint ${dir}: no such folder`);
  const found = readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(path.join(dir, e.name, 'config.yaml')))
    .map((e) => path.join(dir, e.name))
    .sort();
  if (found.length === 0)
    throw new UserError(
      `--checkpoint ${dir}: expected a checkpoint folder (with config.yaml) or folders of them`,
    );
  return found;
}

/**
 * The tasks a checkpoint is rolled out on: its config's eval tasks; else its robot's one simulated task;
 * else, for a checkpoint of several robots (a generalist base), each robot's tasks but the held-out ones.
 */
async function tasksFor(dir: string): Promise<string[]> {
  const { readCheckpointConfig } = await import('../serving/local.js');
  const { robotsOf } = await import('../config/mixture.js');
  const { evalTasks } = await import('../config/schema.js');
  const { TASKS } = await import('../sim/tasks/index.js');
  const { HELD_OUT_TASKS } = await import('../sim/tasks/names.js');
  const config = readCheckpointConfig(dir);
  const named = evalTasks(config.train);
  if (named.length > 0) return named;
  const robots = robotsOf(config);
  const tasksOf = (robot: string) => Object.keys(TASKS).filter((t) => TASKS[t]!.task.robot.name === robot);
  if (robots.length > 1)
    return robots.flatMap((r) =>
      tasksOf(r).filter((t) => !(HELD_OUT_TASKS as readonly string[]).includes(t)),
    );
  const tasks = tasksOf(config.robot);
  if (tasks.length !== 1) {
    throw new UserError(
      `${dir}/config.yaml: train.eval_task: expected the task to roll out (robot ${config.robot} has ${tasks.length} tasks), got null`,
    );
  }
  return tasks;
}

export function register(program: Command): void {
  program
    .command('demo')
    .description(
      'serve the shipped base checkpoint, roll it out in simulation as a robot client, print success rates and latency',
    )
    .option(
      '--checkpoint <dir>',
      'a checkpoint, or a folder of them',
      path.join(PACKAGE_ROOT, 'checkpoints', 'base'),
    )
    .option('--episodes <n>', 'episodes per task', '10')
    .option('--workers <n>', 'episodes run in parallel worker threads', '2')
    .option(
      '--seed <n>',
      'seed of episode 0; the shipped checkpoints never trained on seeds from 100000 on',
      '100000',
    )
    .option('--noise-scale <s>', NOISE_SCALE_HELP)
    .option('--out <dir>', 'rollout videos go here', 'outputs/demo')
    .action(
      async (opts: {
        checkpoint: string;
        episodes: string;
        workers: string;
        seed: string;
        noiseScale?: string;
        out: string;
      }) => {
        const { readCheckpointConfig, serveCheckpointLocally } = await import('../serving/local.js');
        const { checkCheckpointRobot } = await import('../jobs/evaluation.js');
        const { runEval } = await import('../sim/eval.js');
        const { checkpointSceneDrift } = await import('../sim/provenance.js');
        const { TASKS } = await import('../sim/tasks/index.js');
        const t0 = performance.now();
        const noiseScaleOpt = noiseScaleOption(opts.noiseScale);
        const backend = program.opts<{ backend?: string }>().backend;
        const sampler = samplerChoiceFromEnv();
        await computeBackend(program);
        const episodes = intOption('episodes', opts.episodes, 1)!;
        const rows: string[][] = [];
        const videos: string[] = [];
        const warnings: string[] = [];
        const runs = [];
        for (const dir of checkpointsIn(opts.checkpoint))
          for (const task of await tasksFor(dir)) runs.push({ dir, task });
        for (const { dir, task } of runs) {
          const drift = checkpointSceneDrift(dir, TASKS[task]!.task);
          if (drift) {
            console.error(`warning: ${drift}`);
            warnings.push(drift);
          }
          // A checkpoint of several robots is served to the one this task runs.
          const { server, config, noiseScale } = await serveCheckpointLocally(dir, {
            robot: checkCheckpointRobot(dir, readCheckpointConfig(dir), TASKS[task]!.task.robot),
            backend,
            noiseScale: noiseScaleOpt,
            sampler,
          });
          try {
            // A language-conditioned task runs twice: as drawn, and asked for another object in the same
            // scenes, which a policy that reads its prompt follows.
            const variants = TASKS[task]!.task.swapPrompt ? [false, true] : [false];
            for (const swapPrompts of variants) {
              const label = swapPrompts ? `${task} (prompts swapped)` : task;
              const bar = progressBar(label, episodes);
              let done = 0;
              let successes = 0;
              const requestsBefore = server.metrics.requests;
              const report = await runEval(
                {
                  task,
                  url: server.url,
                  episodes,
                  workers: intOption('workers', opts.workers, 1)!,
                  seed: intOption('seed', opts.seed, 0)!,
                  videos: 1,
                  // One folder per checkpoint: two checkpoints of one task must not share their videos (a
                  // checkpoint's tasks do not collide: each video is named by its task).
                  videoDir: path.join(opts.out, `${path.basename(dir)}${swapPrompts ? '_swapped' : ''}`),
                  swapPrompts,
                },
                (r) => {
                  done++;
                  if (r.success) successes++;
                  bar(done, `${successes} succeeded`);
                },
              );
              const s = report.summary;
              const m = server.metrics;
              rows.push([
                label,
                config.name,
                String(noiseScale),
                String(s.episodes),
                `${s.pc_success.toFixed(0)}%`,
                s.avg_sum_reward.toFixed(2),
                s.avg_max_reward.toFixed(2),
                `${m.latencyQuantile(0.5).toFixed(1)} ms`,
                `${m.latencyQuantile(0.99).toFixed(1)} ms`,
                String(m.requests - requestsBefore),
              ]);
              videos.push(...report.videos);
              for (const r of report.results) {
                if (r.error) console.error(`episode ${r.episode} (seed ${r.seed}) failed: ${r.error}`);
              }
            }
          } finally {
            await server.close();
          }
        }
        console.log(
          `\n${table(
            [
              'task',
              'checkpoint',
              'noise',
              'episodes',
              'success',
              'avg sum reward',
              'avg max reward',
              'server p50',
              'server p99',
              'requests',
            ],
            rows,
          )}`,
        );
        for (const v of videos) console.log(`video: ${v}`);
        for (const w of warnings) console.log(`warning: ${w}`);
        console.log(`demo finished in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      },
    );
}

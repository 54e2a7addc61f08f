import path from 'node:path';
import type { Command } from 'commander';
import { collect } from './output.js';

/**
 * What running a trainer in this process needs (TensorFlow.js, the model, the trainer): loaded only by
 * the commands that train, so the others start quickly. Prints the backend line.
 */
export async function trainingRuntime(program: Command) {
  const [{ computeBackend, frameCacheFromEnv }, { runJobProcess }, { loadTrainer }] = await Promise.all([
    import('./context.js'),
    import('../jobs/job-process.js'),
    import('../jobs/trainer.js'),
  ]);
  await computeBackend(program);
  const run = await loadTrainer();
  const frameCache = frameCacheFromEnv();
  const train: typeof run = (opts) => run({ frameCache, ...opts });
  return { runJobProcess, train };
}

interface TrainOptions {
  expName: string;
  resume?: boolean;
  overwrite?: boolean;
  detach?: boolean;
  set: string[];
}

const rel = (p: string) => path.relative(process.cwd(), p) || p;

export function register(program: Command): void {
  program
    .command('train')
    .description('launch a fine-tuning job from a named config (in this shell, or detached with --detach)')
    .argument('<config>', 'config name or path to a YAML file')
    .requiredOption('--exp-name <name>', 'experiment name: the run writes to checkpoints/<config>/<name>/')
    .option('--resume', 'continue the experiment from its newest checkpoint')
    .option('--overwrite', 'delete the experiment’s checkpoints and start over')
    .option('--detach', 'run the trainer as a background process that outlives this shell')
    .option('--set <key=value>', 'override a config field, e.g. train.steps=500 (repeatable)', collect, [])
    .action(async (configName: string, opts: TrainOptions) => {
      const { prepareLaunch, registerLaunch, spawnDetached } = await import('../jobs/launch.js');
      const { JobRegistry } = await import('../jobs/registry.js');
      const registry = JobRegistry.open();
      try {
        const prepared = prepareLaunch(registry, {
          config: configName,
          overrides: opts.set,
          expName: opts.expName,
          resume: opts.resume === true,
          overwrite: opts.overwrite === true,
        });
        if (prepared.resume && !prepared.existing && !prepared.runDirUsed) {
          console.error(
            `note: ${prepared.config.name}/${prepared.expName} has no run to resume: starting at step 0`,
          );
        }
        if (opts.detach) {
          const job = registerLaunch(registry, prepared);
          const pid = spawnDetached(registry, job, program.opts<{ backend?: string }>().backend);
          console.log(`job ${job.id} started in the background (pid ${pid})`);
          console.log(`  log:    ${rel(job.logPath)}`);
          console.log(`  watch:  vla jobs logs ${job.id} -f`);
          console.log(`  stop:   vla jobs stop ${job.id}`);
          return;
        }
        const { runJobProcess, train } = await trainingRuntime(program);
        const job = registerLaunch(registry, prepared);
        const outcome = await runJobProcess(registry, job.id, {
          train,
          output: 'terminal',
          logInterval: prepared.config.train.log_interval,
        });
        if (outcome.job.status === 'stopped') {
          console.error(
            `resume with: vla jobs resume ${job.id}  (or vla train ${configName} --exp-name ${opts.expName} --resume)`,
          );
        }
      } finally {
        registry.close();
      }
    });
}

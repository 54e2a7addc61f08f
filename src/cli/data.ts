import path from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../config/errors.js';
import { resolveConfig } from '../config/load.js';
import { computeNormStats, normStatsFile } from '../data/normstats.js';
import { validateDataset } from '../data/validate.js';
import { writeNormStats } from '../transforms/normalize.js';
import { collect } from './output.js';

/** A one-line progress bar on a terminal; silent when stderr is a file or pipe. */
function progressBar(label: string): (done: number, total: number) => void {
  let last = -1;
  return (done, total) => {
    if (!process.stderr.isTTY) return;
    const pct = Math.floor((100 * done) / Math.max(1, total));
    if (pct === last && done !== total) return;
    last = pct;
    const width = 30;
    const filled = Math.round((width * done) / Math.max(1, total));
    process.stderr.write(
      `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}${done === total ? '\n' : ''}`,
    );
  };
}

const positiveInt = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new UserError(`${flag}: expected a positive integer, got ${JSON.stringify(v)}`);
  return n;
};

export function register(program: Command): void {
  const cmd = program
    .command('data')
    .description('LeRobot datasets: info, show, validate, import, convert, norm stats');

  cmd
    .command('validate')
    .description(
      'check a dataset against the invariants LeRobot datasets hold; exits non-zero on any violation',
    )
    .argument('<path>', 'dataset folder')
    .action(async (dir: string) => {
      const report = await validateDataset(dir);
      console.log(
        `${report.dir}: ${report.version}, ${report.episodes} episodes, ${report.frames} frames, ${report.videos} episode videos checked`,
      );
      if (report.problems.length === 0) {
        console.log('ok: every invariant holds');
        return;
      }
      for (const p of report.problems) console.log(`  problem: ${p}`);
      throw new UserError(
        `${dir}: ${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} found`,
      );
    });

  cmd
    .command('stats')
    .description(
      "compute openpi norm stats (mean, std, q01, q99 of state and actions after the config's transforms)",
    )
    .argument('<config>', 'config name or path')
    .option('--set <key=value>', 'override a config field (repeatable)', collect, [])
    .option('--max-frames <n>', 'use at most N frames, evenly spaced', positiveInt('--max-frames'))
    .action(async (name: string, opts: { set: string[]; maxFrames?: number }) => {
      const { config } = resolveConfig(name, opts.set);
      const started = Date.now();
      const result = await computeNormStats(config, {
        maxFrames: opts.maxFrames,
        onProgress: progressBar('stats'),
      });
      const file = normStatsFile(config);
      writeNormStats(file, result.stats);
      console.log(
        `${path.relative(process.cwd(), file)}: ${result.frames} frames, ${result.actionRows} action rows (horizon ${config.model.action_horizon}), ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
    });
}

import type { Command } from 'commander';
import { UserError } from '../config/errors.js';
import { validateDataset } from '../data/validate.js';

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
}

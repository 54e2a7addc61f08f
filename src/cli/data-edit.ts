/**
 * `vla data merge|split|filter`: new datasets made of chosen episodes of others (src/data/edit.ts); the
 * inputs are only read. Registered on the `data` command group by data.ts.
 */
import type { Command } from 'commander';
import { UserError } from '../config/errors.js';
import type { EditOptions, EditReport } from '../data/edit.js';
import type { SplitPart } from '../data/edit-select.js';
import type { WriteFormat } from '../data/writer.js';
import { collect, progressBar } from './output.js';

interface CommonOptions {
  format?: string;
  force?: boolean;
}

function editOptions(opts: CommonOptions, label: string): EditOptions {
  if (opts.format !== undefined && opts.format !== 'v2.1' && opts.format !== 'v3.0') {
    throw new UserError(`--format: expected v2.1 or v3.0, got ${JSON.stringify(opts.format)}`);
  }
  let bar: ((done: number) => void) | null = null;
  return {
    format: opts.format as WriteFormat | undefined,
    force: opts.force ?? false,
    onEpisode: (done, total) => {
      bar ??= progressBar(label, total);
      bar(done);
    },
  };
}

function printReport(r: EditReport): void {
  if (r.dropped.length > 0) {
    console.error(`warning: ${r.dir}: left out features an edit does not carry: ${r.dropped.join(', ')}`);
  }
  console.log(`${r.dir}: ${r.format}, ${r.episodes} episodes, ${r.frames} frames, ${r.tasks} tasks`);
}

/** `OUT=EPISODES`, as --into takes it. */
function splitPart(text: string): SplitPart {
  const at = text.lastIndexOf('=');
  if (at <= 0 || at === text.length - 1) {
    throw new UserError(`--into ${text}: expected OUT=EPISODES, as train=0:40 or val=20%`);
  }
  return { out: text.slice(0, at), spec: text.slice(at + 1) };
}

const FORMAT_HELP = "the output's format: v2.1 or v3.0 (default: the first input's)";

export function registerDataEdit(data: Command): void {
  data
    .command('merge')
    .description('several datasets of one robot into one: episodes renumbered in order, tasks re-indexed')
    .argument('<datasets...>', 'dataset folders, in the order their episodes go')
    .requiredOption('--out <dir>', 'new dataset folder')
    .option('--format <v>', FORMAT_HELP)
    .option('--force', 'replace --out if it exists')
    .action(async (datasets: string[], opts: CommonOptions & { out: string }) => {
      const { mergeDatasets } = await import('../data/edit-select.js');
      printReport(await mergeDatasets(datasets, opts.out, editOptions(opts, 'merge')));
    });

  data
    .command('split')
    .description('one dataset into parts by episode ranges or fractions (held-out evaluation sets)')
    .argument('<dataset>', 'dataset folder')
    .requiredOption(
      '--into <out=episodes>',
      'a part: new folder = episodes (0:40,45) or a fraction of them in order (0.8 or 80%); repeat per part',
      collect,
      [],
    )
    .option('--format <v>', FORMAT_HELP)
    .option('--force', 'replace the parts that exist')
    .action(async (dataset: string, opts: CommonOptions & { into: string[] }) => {
      const { splitDataset } = await import('../data/edit-select.js');
      const reports = await splitDataset(dataset, opts.into.map(splitPart), editOptions(opts, 'split'));
      for (const r of reports) printReport(r);
    });

  data
    .command('filter')
    .description('a copy of a dataset without some episodes: by index, or those whose success flag is false')
    .argument('<dataset>', 'dataset folder')
    .requiredOption('--out <dir>', 'new dataset folder')
    .option('--drop <episodes>', 'episodes to drop: 3,10:12 (ranges are half-open)')
    .option(
      '--drop-failed',
      "drop episodes whose recorded success is false (episodes' success, or next.success)",
    )
    .option('--format <v>', FORMAT_HELP)
    .option('--force', 'replace --out if it exists')
    .action(
      async (dataset: string, opts: CommonOptions & { out: string; drop?: string; dropFailed?: boolean }) => {
        const { filterDataset } = await import('../data/edit-select.js');
        const r = await filterDataset(
          dataset,
          opts.out,
          { drop: opts.drop, dropFailed: opts.dropFailed },
          editOptions(opts, 'filter'),
        );
        console.log(
          `dropped ${r.droppedEpisodes.length} episodes: ${r.droppedEpisodes.join(', ') || 'none'}`,
        );
        printReport(r);
      },
    );
}

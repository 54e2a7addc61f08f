import type { Command } from 'commander';
import { intOption } from './output.js';

const stamp = () => new Date().toISOString().replace('T', ' ').slice(0, 19);

export function register(program: Command): void {
  program
    .command('worker')
    .description('take training jobs from a Redis queue and run them on this machine')
    .requiredOption('--queue <url>', 'the queue: redis://HOST:6379')
    .option('--concurrency <n>', 'jobs run at once', '1')
    .option(
      '--stall-timeout <seconds>',
      'a job whose worker is silent this long goes to another worker',
      '30',
    )
    .action(async (opts: { queue: string; concurrency: string; stallTimeout: string }) => {
      const concurrency = intOption('concurrency', opts.concurrency, 1)!;
      const stallSeconds = intOption('stall-timeout', opts.stallTimeout, 1)!;
      const say = (line: string) => console.log(`${stamp()} ${line}`);
      const { startWorker } = await import('../jobs/queue.js');
      const worker = await startWorker({
        url: opts.queue,
        concurrency,
        workspace: process.cwd(),
        stallSeconds,
        backend: program.opts<{ backend?: string }>().backend,
        log: say,
      });
      await new Promise<void>((resolve) => {
        const shutdown = (sig: NodeJS.Signals) => {
          say(`${sig}: stopping the running trainers (they save a checkpoint) and leaving the queue`);
          worker.close().then(resolve, resolve);
        };
        process.once('SIGTERM', shutdown);
        process.once('SIGINT', shutdown);
      });
      say('worker stopped');
    });
}

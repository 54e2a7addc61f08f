import type { Command } from 'commander';
import { UserError } from '../config/errors.js';
import { intOption, table } from './output.js';

export function register(program: Command): void {
  const cmd = program
    .command('client')
    .description('robot-side tools: connect to a policy server, benchmark it');

  cmd
    .command('bench')
    .description("send random observations of a robot's shapes; print round-trip latency and throughput")
    .requiredOption('--url <url>', 'policy server, e.g. ws://127.0.0.1:8000')
    .option('--robot <name>', 'robot whose observation shapes to send', 'aloha')
    .option('--n <count>', 'requests per client', '500')
    .option('--concurrency <clients>', 'robots connected at once', '1')
    .option('--api-key <key>', 'sent as "Authorization: Api-Key <key>" (env VLA_API_KEY)')
    .action(async (opts: { url: string; robot: string; n: string; concurrency: string; apiKey?: string }) => {
      const { loadTest, percentile } = await import('../client/load-test.js');
      const { loadRobot } = await import('../config/load.js');
      const robot = loadRobot(opts.robot);
      const r = await loadTest({
        url: opts.url,
        robot,
        n: intOption('n', opts.n, 1)!,
        concurrency: intOption('concurrency', opts.concurrency, 1)!,
        apiKey: opts.apiKey ?? process.env.VLA_API_KEY ?? null,
      });
      const ms = (v: number) => v.toFixed(2);
      console.log(
        table(
          ['robot', 'request', 'clients', 'replies', 'p50 ms', 'p90 ms', 'p99 ms', 'replies/s', 'errors'],
          [
            [
              robot.name,
              `${(r.requestBytes / 1024).toFixed(0)} KiB`,
              opts.concurrency,
              String(r.latencies.length),
              ms(percentile(r.latencies, 50)),
              ms(percentile(r.latencies, 90)),
              ms(percentile(r.latencies, 99)),
              r.repliesPerSec.toFixed(0),
              String(r.errors),
            ],
          ],
        ),
      );
      if (r.errors > 0)
        throw new UserError(`${r.errors} client(s) failed: the server closed their connection`);
    });

  cmd
    .command('ping')
    .description(
      "connect, print the server's metadata, send one example observation, print the reply's shape",
    )
    .requiredOption('--url <url>', 'policy server, e.g. ws://127.0.0.1:8000')
    .option('--robot <name>', 'robot whose observation shapes to send', 'aloha')
    .option('--prompt <text>', 'prompt to send')
    .option('--api-key <key>', 'sent as "Authorization: Api-Key <key>" (env VLA_API_KEY)')
    .action(async (opts: { url: string; robot: string; prompt?: string; apiKey?: string }) => {
      const { exampleObservation } = await import('../client/examples.js');
      const { PolicyClient } = await import('@vla-orchestrator/client');
      const { loadRobot } = await import('../config/load.js');
      const client = await PolicyClient.connect(opts.url, {
        apiKey: opts.apiKey ?? process.env.VLA_API_KEY ?? null,
      });
      console.log(`metadata: ${JSON.stringify(client.metadata)}`);
      const reply = await client.infer(exampleObservation(loadRobot(opts.robot), { prompt: opts.prompt }));
      console.log(
        `actions [${reply.horizon}, ${reply.actionDim}], policy ${reply.policyTiming.infer_ms?.toFixed(2)} ms, ` +
          `server ${reply.serverTiming.infer_ms?.toFixed(2)} ms; first action: ` +
          `[${Array.from(reply.actions.slice(0, reply.actionDim), (v) => v.toFixed(3)).join(', ')}]`,
      );
      await client.close();
    });
}

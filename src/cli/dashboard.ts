import path from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../config/errors.js';
import { collect, intOption } from './output.js';

interface DashboardOpts {
  port: string;
  host: string;
  token?: string;
  data: string[];
  evals: string[];
  server: string[];
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

/**
 * The token from --token or VLA_DASHBOARD_TOKEN, else a random one. A short token is one a neighbour
 * can guess, so it is refused rather than trusted.
 */
function tokenOption(opts: DashboardOpts, newToken: () => string): string {
  const [token, source] =
    opts.token !== undefined
      ? [opts.token, '--token']
      : [process.env.VLA_DASHBOARD_TOKEN, 'VLA_DASHBOARD_TOKEN'];
  if (token === undefined || token === '') return newToken();
  if (token.length < 16 || !/^[\w.~-]+$/.test(token)) {
    throw new UserError(
      `${source}: expected at least 16 letters, digits or -._~, got ${token.length} characters${/^[\w.~-]*$/.test(token) ? '' : ' with others among them'}`,
    );
  }
  return token;
}

export function register(program: Command): void {
  program
    .command('dashboard')
    .description('a local web page of jobs, evaluations, datasets and policy servers, live')
    .option('--port <n>', 'port to listen on (0: a free one)', '8100')
    .option(
      '--host <addr>',
      'address to bind (127.0.0.1; another one serves the network: a warning says so)',
      '127.0.0.1',
    )
    .option(
      '--token <token>',
      'the access token (default: a random one, printed in the address; env VLA_DASHBOARD_TOKEN)',
    )
    .option('--data <dir>', 'a dataset folder, or a folder of datasets, to show (repeatable)', collect, [])
    .option(
      '--evals <dir>',
      'a folder searched for evaluations, eval_info.json (repeatable; default outputs)',
      collect,
      [],
    )
    .option(
      '--server <url>',
      'a policy server to watch, ws://HOST:PORT as vla serve prints it (repeatable)',
      collect,
      [],
    )
    .action(async (opts: DashboardOpts) => {
      const port = intOption('port', opts.port, 0)!;
      if (port > 65535)
        throw new UserError(`--port: expected an integer from 0 to 65535, got "${opts.port}"`);
      const [{ DashboardServer }, { newToken }, { metricsUrlOf }, { JobRegistry }] = await Promise.all([
        import('../dashboard/server.js'),
        import('../dashboard/auth.js'),
        import('../dashboard/server-watch.js'),
        import('../jobs/registry.js'),
      ]);
      const token = tokenOption(opts, newToken);
      for (const url of opts.server) {
        try {
          metricsUrlOf(url);
        } catch (e) {
          throw new UserError(`--server ${url}: ${(e as Error).message}`);
        }
      }
      if (!LOOPBACK.has(opts.host)) {
        console.error(
          `warning: the dashboard listens on ${opts.host}: anyone who can reach this port and learns the token can stop and resume jobs and read the datasets, and plain HTTP carries the token unencrypted`,
        );
      }
      const registry = JobRegistry.open();
      const server = await DashboardServer.start({
        host: opts.host,
        port,
        token,
        registry,
        data: opts.data,
        evals: opts.evals.length > 0 ? opts.evals : ['outputs'],
        servers: opts.server,
        backend: program.opts<{ backend?: string }>().backend,
      }).catch((e: NodeJS.ErrnoException) => {
        registry.close();
        if (e.code === 'EADDRINUSE') throw new UserError(`--port ${port}: already in use on ${opts.host}`);
        if (e.code === 'EADDRNOTAVAIL')
          throw new UserError(`--host ${opts.host}: not an address of this machine`);
        throw e;
      });
      const jobs = registry.list().length;
      console.log(
        `vla dashboard: ${jobs} job${jobs === 1 ? '' : 's'} in ${path.relative(process.cwd(), registry.file)}`,
      );
      console.log(`open ${server.url}`);
      await new Promise<void>((resolve) => {
        const stop = async (signal: string) => {
          console.error(`${signal}: closing the dashboard`);
          await server.close();
          registry.close();
          resolve();
        };
        process.once('SIGINT', () => void stop('SIGINT'));
        process.once('SIGTERM', () => void stop('SIGTERM'));
      });
    });
}

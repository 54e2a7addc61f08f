import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { UserError } from '../config/errors.js';
import type { PolicyContext } from '../serving/policy.js';
import { type PolicySpec, parsePolicySpec } from '../serving/policy.js';
import { samplerChoiceFromEnv } from './context.js';
import { collect, NOISE_SCALE_HELP, noiseScaleOption } from './output.js';

interface ServeOpts {
  checkpoint?: string;
  robot?: string;
  policy?: string;
  host?: string;
  port?: string;
  apiKey?: string;
  apiKeyFile?: string;
  maxBatch?: string;
  maxWaitMs?: string;
  maxMessageMb?: string;
  maxReceivingMb?: string;
  maxConnections?: string;
  maxConnectionsPerAddress?: string;
  horizon?: string;
  defaultPrompt?: string;
  seed?: string;
  noiseScale?: string;
  set: string[];
}

function int(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0)
    throw new UserError(`--${name}: expected a non-negative number, got "${value}"`);
  return n;
}

/**
 * The API key from --api-key, --api-key-file or VLA_API_KEY; null for none. A key in a file stays out
 * of `ps`; an empty key would refuse every robot, so it is an error rather than a silent lockout.
 */
function apiKeyOption(opts: ServeOpts): string | null {
  if (opts.apiKey !== undefined && opts.apiKeyFile !== undefined) {
    throw new UserError('vla serve: give --api-key or --api-key-file, not both');
  }
  let key: string | undefined;
  let source: string;
  if (opts.apiKeyFile !== undefined) {
    source = `--api-key-file ${opts.apiKeyFile}`;
    try {
      key = readFileSync(opts.apiKeyFile, 'utf8').trim();
    } catch (e) {
      throw new UserError(
        `${source}: cannot read the key file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      );
    }
  } else if (opts.apiKey !== undefined) {
    source = '--api-key';
    key = opts.apiKey;
  } else {
    source = 'VLA_API_KEY';
    key = process.env.VLA_API_KEY;
  }
  if (key === undefined) return null;
  if (key.length === 0) throw new UserError(`${source}: expected a non-empty key, got an empty one`);
  if (/\s/.test(key)) throw new UserError(`${source}: expected a key without whitespace, got one with`);
  return key;
}

export function register(program: Command): void {
  program
    .command('serve')
    .description('serve a policy to robots over WebSocket (openpi wire protocol)')
    .argument(
      '[config]',
      'named config (robot, serve settings, metadata); optional with --checkpoint or --robot',
    )
    .option('--checkpoint <dir>', 'serve a trained checkpoint (its config.yaml names the robot)')
    .option('--robot <name>', 'robot spec (aloha, droid, libero, ...) when serving without a config')
    .option('--policy <spec>', 'zeros | replay:DATASET[#EPISODE] | sleep:MS (load testing)')
    .option('--host <addr>', 'address to bind (default 127.0.0.1; 0.0.0.0 serves the network)')
    .option('--port <n>', 'port (default 8000, as openpi)')
    .option('--api-key <key>', 'require "Authorization: Api-Key <key>" (env VLA_API_KEY; visible in ps)')
    .option('--api-key-file <path>', 'the same, the key read from a file (kept out of ps)')
    .option('--max-batch <n>', 'most requests per policy call')
    .option('--max-wait-ms <ms>', 'longest a request waits for others to join its batch')
    .option('--max-message-mb <mb>', 'largest request accepted')
    .option('--max-receiving-mb <mb>', 'most bytes of requests being received at once, all robots together')
    .option('--max-connections <n>', 'most robots connected at once')
    .option('--max-connections-per-address <n>', 'most connections from one address')
    .option('--horizon <n>', 'action chunk length for zeros/sleep/replay policies (default 50)')
    .option('--default-prompt <text>', 'prompt for requests that carry none')
    .option('--seed <n>', 'seed the sampling noise, so the same observation gives the same chunk')
    .option('--noise-scale <s>', NOISE_SCALE_HELP)
    .option('--set <key=value>', 'override a config field (repeatable)', collect, [])
    .action(async (configName: string | undefined, opts: ServeOpts) => {
      const { loadRobot, resolveConfig, validate } = await import('../config/load.js');
      const { trainedRobot } = await import('../config/mixture.js');
      const { ServeConfig } = await import('../config/schema.js');
      const { readCheckpointConfig } = await import('../serving/local.js');
      const { inlineRunner, workerRunner } = await import('../serving/runner.js');
      const { PolicyServer } = await import('../serving/server.js');
      if (!opts.checkpoint && !opts.policy) {
        throw new UserError('vla serve: expected --checkpoint DIR or --policy zeros|replay:DATASET|sleep:MS');
      }
      if (opts.checkpoint && opts.policy)
        throw new UserError('vla serve: give --checkpoint or --policy, not both');
      const config = opts.checkpoint
        ? readCheckpointConfig(opts.checkpoint)
        : configName
          ? resolveConfig(configName, opts.set).config
          : null;
      const robotName = opts.robot ?? config?.robot;
      if (!robotName)
        throw new UserError('vla serve: expected --robot NAME (or a config or checkpoint naming one)');
      const robot = loadRobot(robotName);
      // A checkpoint trained on several robots serves any of them, each with its own norm stats.
      if (config)
        trainedRobot(
          config,
          opts.robot,
          opts.checkpoint ? `--robot: checkpoint ${opts.checkpoint}` : `--robot: config ${config.name}`,
        );
      const serve = validate(
        ServeConfig,
        {
          ...(config?.serve ?? {}),
          ...(opts.host !== undefined && { host: opts.host }),
          ...(opts.port !== undefined && { port: int('port', opts.port) }),
          ...(opts.maxBatch !== undefined && { max_batch: int('max-batch', opts.maxBatch) }),
          ...(opts.maxWaitMs !== undefined && { max_wait_ms: int('max-wait-ms', opts.maxWaitMs) }),
          ...(opts.maxMessageMb !== undefined && {
            max_message_mb: int('max-message-mb', opts.maxMessageMb),
          }),
          ...(opts.maxReceivingMb !== undefined && {
            max_receiving_mb: int('max-receiving-mb', opts.maxReceivingMb),
          }),
          ...(opts.maxConnections !== undefined && {
            max_connections: int('max-connections', opts.maxConnections),
          }),
          ...(opts.maxConnectionsPerAddress !== undefined && {
            max_connections_per_address: int('max-connections-per-address', opts.maxConnectionsPerAddress),
          }),
        },
        () => '',
      );
      const spec: PolicySpec = opts.checkpoint
        ? { kind: 'checkpoint', dir: opts.checkpoint }
        : parsePolicySpec(opts.policy!);
      const ctx: PolicyContext = {
        robot: robotName,
        horizon: int('horizon', opts.horizon) ?? config?.model.action_horizon ?? 50,
        metadata: { ...serve.metadata },
        defaultPrompt: opts.defaultPrompt ?? config?.data.default_prompt ?? null,
        backend: program.opts<{ backend?: string }>().backend,
        seed: int('seed', opts.seed) ?? null,
        noiseScale: noiseScaleOption(opts.noiseScale) ?? null,
        sampler: samplerChoiceFromEnv(),
      };
      const apiKey = apiKeyOption(opts);
      if (serve.host !== '127.0.0.1' && serve.host !== 'localhost' && serve.host !== '::1' && !apiKey) {
        console.error(
          `warning: serving on ${serve.host} without --api-key: anyone who can reach this port can drive the robot`,
        );
      }
      const t0 = performance.now();
      const runner =
        spec.kind === 'zeros' || spec.kind === 'replay'
          ? await inlineRunner(spec, ctx)
          : await workerRunner(spec, ctx);
      const server = await PolicyServer.start(runner, robot, {
        host: serve.host,
        port: serve.port,
        apiKey,
        maxMessageBytes: Math.round(serve.max_message_mb * 1024 * 1024),
        maxConnections: serve.max_connections,
        maxConnectionsPerAddress: serve.max_connections_per_address,
        maxReceivingBytes: Math.round(serve.max_receiving_mb * 1024 * 1024),
        idleTimeoutMs: serve.idle_timeout_s * 1000,
        pingIntervalMs: serve.ping_interval_s * 1000,
        maxBatch: serve.max_batch,
        maxWaitMs: serve.max_wait_ms,
        defaultPrompt: ctx.defaultPrompt,
        log: (line) => console.error(line),
      });
      const what = opts.checkpoint ? `checkpoint ${opts.checkpoint}` : `policy ${opts.policy}`;
      console.log(
        `serving ${what} for ${robot.name} on ${server.url} (ready in ${(performance.now() - t0).toFixed(0)} ms; ` +
          `chunks of ${runner.horizon}x${robot.action.names.length}, max batch ${serve.max_batch}, wait ${serve.max_wait_ms} ms)`,
      );
      console.log(
        `health: http://${serve.host}:${server.port}/healthz  metrics: http://${serve.host}:${server.port}/metrics`,
      );
      await new Promise<void>((resolve) => {
        const stop = async (signal: string) => {
          console.error(`${signal}: finishing replies in flight, closing connections`);
          await server.close();
          resolve();
        };
        process.once('SIGINT', () => void stop('SIGINT'));
        process.once('SIGTERM', () => void stop('SIGTERM'));
      });
      const m = server.metrics;
      const errors = [...m.errors.values()].reduce((a, b) => a + b, 0);
      const latency =
        m.requests > 0
          ? `, latency p50 ${m.latencyQuantile(0.5).toFixed(2)} ms, p99 ${m.latencyQuantile(0.99).toFixed(2)} ms`
          : '';
      console.log(
        `served ${m.requests} requests to ${m.connectionsTotal} connections, ${errors} errors${latency}`,
      );
    });
}

/**
 * A checkpoint served on a free loopback port in this process (inference in its worker thread), for
 * tools that evaluate a policy exactly as a robot would reach it: same wire format, same transforms.
 */

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { UserError } from '../config/errors.js';
import { loadRobot, validate } from '../config/load.js';
import { trainedRobot } from '../config/mixture.js';
import { TrainConfig } from '../config/schema.js';
import type { SamplerChoice } from '../model/chunk-sampler.js';
import type { PolicyContext } from './policy.js';
import { workerRunner } from './runner.js';
import { PolicyServer } from './server.js';

/** The resolved config a checkpoint was trained with (DESIGN.md §5: `<step>/config.yaml`). */
export function readCheckpointConfig(dir: string): TrainConfig {
  const file = path.join(dir, 'config.yaml');
  if (!existsSync(file)) {
    throw new UserError(
      `${dir}: not a checkpoint (no config.yaml; expected checkpoints/<config>/<exp>/<step>)`,
    );
  }
  return validate(TrainConfig, YAML.parse(readFileSync(file, 'utf8')), () => `${file}: `);
}

export interface CheckpointOptions {
  /** The robot to serve, of those the checkpoint trained on (a mixture of robots); default: its config's. */
  robot?: string;
  backend?: string;
  seed?: number | null;
  noiseScale?: number | null;
  sampler?: SamplerChoice;
}

/** What a checkpoint's policy is built with: its robot, horizon, metadata and prompt, and the caller's choices. */
export function checkpointContext(config: TrainConfig, opts: CheckpointOptions = {}): PolicyContext {
  return {
    robot: opts.robot ?? config.robot,
    horizon: config.model.action_horizon,
    metadata: { ...config.serve.metadata },
    defaultPrompt: config.data.default_prompt,
    backend: opts.backend,
    seed: opts.seed ?? null,
    noiseScale: opts.noiseScale ?? config.model.noise_scale,
    sampler: opts.sampler,
  };
}

export async function serveCheckpointLocally(
  dir: string,
  opts: CheckpointOptions = {},
): Promise<{ server: PolicyServer; config: TrainConfig; noiseScale: number }> {
  const config = readCheckpointConfig(dir);
  const robot = trainedRobot(config, opts.robot, `checkpoint ${dir}`);
  const ctx = checkpointContext(config, { ...opts, robot });
  const noiseScale = ctx.noiseScale!;
  // The simulation rolling out against this server shares the cores: a two-thread sampler waits on its
  // other half whenever a simulation worker holds the second core (`vla demo` here: server p50 20–34 ms
  // with two threads against 7–16 ms with one; 48 s against 39 s in all).
  const runner = await workerRunner({ kind: 'checkpoint', dir }, { ...ctx, samplerThreads: 1 });
  const server = await PolicyServer.start(runner, loadRobot(robot), {
    host: '127.0.0.1',
    port: 0,
    apiKey: null,
    maxMessageBytes: 64 * 1024 * 1024,
    maxConnections: 64,
    maxBatch: config.serve.max_batch,
    maxWaitMs: config.serve.max_wait_ms,
    defaultPrompt: config.data.default_prompt,
  });
  return { server, config, noiseScale };
}

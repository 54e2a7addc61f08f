/**
 * `vla sim eval --checkpoint DIR`: serve the checkpoint in this process on a free local port and
 * evaluate against it exactly as against a remote server (same wire format, same transforms).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { UserError } from '../config/errors.js';
import { loadRobot, validate } from '../config/load.js';
import { TrainConfig } from '../config/schema.js';
import { workerRunner } from '../serving/runner.js';
import { PolicyServer } from '../serving/server.js';
import type { SimRobot } from './robots.js';

export async function serveCheckpoint(
  dir: string,
  robot: SimRobot,
  backend?: string,
): Promise<{ url: string; close(): Promise<void> }> {
  const file = path.join(dir, 'config.yaml');
  if (!existsSync(file))
    throw new UserError(`--checkpoint ${dir}: expected a checkpoint folder holding config.yaml`);
  const config = validate(TrainConfig, YAML.parse(readFileSync(file, 'utf8')), () => `${file}: `);
  const trained = loadRobot(config.robot);
  const simSpec = loadRobot(robot.name);
  // A checkpoint fits when it speaks the simulated robot's state and action layout, whatever its name.
  const same = (a: string[], b: string[]) => a.length === b.length && a.every((n, i) => n === b[i]);
  if (!same(trained.action.names, simSpec.action.names) || !same(trained.state.names, simSpec.state.names)) {
    throw new UserError(
      `--checkpoint ${dir}: trained for robot ${config.robot} (${trained.action.names.length}-dim actions), ` +
        `but this task runs ${robot.name} (${simSpec.action.names.length}-dim actions: ${simSpec.action.names.join(', ')})`,
    );
  }
  const runner = await workerRunner(
    { kind: 'checkpoint', dir },
    {
      robot: config.robot,
      horizon: config.model.action_horizon,
      metadata: {},
      defaultPrompt: config.data.default_prompt,
      backend,
    },
  );
  const server = await PolicyServer.start(runner, trained, {
    host: '127.0.0.1',
    port: 0,
    apiKey: null,
    maxMessageBytes: 64 * 1024 * 1024,
    maxConnections: 64,
    maxBatch: 8,
    maxWaitMs: 5,
    defaultPrompt: config.data.default_prompt,
  });
  return {
    url: server.url,
    // The server closes its runner.
    close: () => server.close(),
  };
}

/**
 * `vla sim eval --checkpoint DIR`: serve the checkpoint in this process on a free local port and
 * evaluate against it exactly as against a remote server (same wire format, same transforms).
 */
import { UserError } from '../config/errors.js';
import { loadRobot } from '../config/load.js';
import { readCheckpointConfig, serveCheckpointLocally } from '../serving/local.js';
import type { SimRobot } from './robots.js';

export async function serveCheckpoint(
  dir: string,
  robot: SimRobot,
  opts: { backend?: string; noiseScale?: number } = {},
): Promise<{ url: string; noiseScale: number; close(): Promise<void> }> {
  const config = readCheckpointConfig(dir);
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
  const { server, noiseScale } = await serveCheckpointLocally(dir, opts);
  // The server closes its runner.
  return { url: server.url, noiseScale, close: () => server.close() };
}

/**
 * The library: what a TypeScript program uses of vla-orchestrator without the CLI (the package's main
 * entry). Load a checkpoint as a policy, serve a policy to robots, open a LeRobot dataset, roll a policy
 * out in simulation. Anything not exported here is internal and may change. The robot side (client,
 * codec, broker) is the separate package `@vla-orchestrator/client`.
 */
import { loadPolicy } from '../serving/load-policy.js';
import { type CheckpointOptions, checkpointContext, readCheckpointConfig } from '../serving/local.js';
import type { Policy } from '../serving/policy.js';

export { type BackendInfo, setupBackend } from '../backend/index.js';
export { loadRobot, resolveConfig } from '../config/load.js';
export type { RobotSpec } from '../config/robot.js';
export type { TrainConfig } from '../config/schema.js';
export { type LeRobotDataset, openDataset } from '../data/reader.js';
export type { Observation } from '../protocol/observation.js';
export { type CheckpointOptions, readCheckpointConfig, serveCheckpointLocally } from '../serving/local.js';
export {
  type Policy,
  type PolicyContext,
  type PolicyRequest,
  type PolicyResult,
  type PolicySpec,
  parsePolicySpec,
} from '../serving/policy.js';
export { inlineRunner, type PolicyRunner, workerRunner } from '../serving/runner.js';
export { PolicyServer, type ServerOptions } from '../serving/server.js';
export { type EvalOptions, type EvalReport, runEval } from '../sim/eval.js';

/**
 * A checkpoint folder (`checkpoints/<config>/<exp>/<step>/`) as a policy computing on this thread: its
 * input transforms, model and output transforms, as `vla serve --checkpoint` runs them.
 */
export async function loadCheckpointPolicy(dir: string, opts: CheckpointOptions = {}): Promise<Policy> {
  return loadPolicy({ kind: 'checkpoint', dir }, checkpointContext(readCheckpointConfig(dir), opts));
}

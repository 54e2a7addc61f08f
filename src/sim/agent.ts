import type { SimEnv, SimObservation } from './env.js';

/**
 * Whatever drives the robot in a rollout: a scripted expert (reads the simulator's true state) or a
 * policy client (sees only the observation). One action per call; chunking is the agent's business.
 */
export interface Agent {
  /** At the start of each episode, after the env was reset. */
  reset(env: SimEnv): Promise<void> | void;
  act(obs: SimObservation, env: SimEnv): Promise<Float32Array> | Float32Array;
  /** Whether the action `act` last returned began a new action chunk (agents that execute chunks). */
  chunkBoundary?(): boolean;
  close?(): Promise<void> | void;
}

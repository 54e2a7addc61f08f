/**
 * One episode of a task driven by an agent, and the per-task summary LeRobot's eval reports. As in
 * gym-aloha under LeRobot, an episode is a success once it reaches the task's top reward, and rewards
 * after that are not counted; the episode still runs its full length so that agents replaying fixed
 * recordings stay aligned with them.
 */
import { loadRobot } from '../config/load.js';
import type { Agent } from './agent.js';
import type { SimEnv, SimObservation } from './env.js';
import { MotionStats, type MotionSummary } from './motion.js';
import { getTask } from './tasks/index.js';

export interface EpisodeResult {
  episode: number;
  seed: number;
  prompt: string;
  success: boolean;
  sumReward: number;
  maxReward: number;
  steps: number;
  /** The step at which it first succeeded, or null. */
  successStep: number | null;
  /** How smoothly the robot moved over the whole episode (chunk-boundary jumps, jerk). */
  motion?: MotionSummary;
  /** Why the episode could not run to the end (a server error, a malformed action). */
  error?: string;
}

export interface EpisodeHooks {
  /** Each step: the observation the action was chosen from, the action, and the reward after it. */
  onStep?(obs: SimObservation, action: Float32Array, reward: number, env: SimEnv): void | Promise<void>;
  /** Stop right after the first success (eval of a live policy); off by default. */
  stopOnSuccess?: boolean;
  /** Episode length in steps (LeRobot's `env.episode_length`); the task's own when left out. */
  maxSteps?: number;
}

export async function runEpisode(
  env: SimEnv,
  agent: Agent,
  episode: number,
  seed: number,
  hooks: EpisodeHooks = {},
): Promise<EpisodeResult> {
  const task = env.task;
  let obs = env.reset(seed);
  await agent.reset(env);
  const result: EpisodeResult = {
    episode,
    seed,
    prompt: env.prompt,
    success: false,
    sumReward: 0,
    maxReward: 0,
    steps: 0,
    successStep: null,
  };
  const steps = hooks.maxSteps ?? task.episodeSteps;
  const motion = new MotionStats(task.robot.controlHz, jointDims(task.robot.name));
  for (let t = 0; t < steps; t++) {
    const action = await agent.act(obs, env);
    motion.add(action, agent.chunkBoundary?.() ?? false);
    const step = env.step(action);
    result.steps++;
    if (!result.success) {
      result.sumReward += step.reward;
      result.maxReward = Math.max(result.maxReward, step.reward);
      if (step.reward >= task.maxReward) {
        result.success = true;
        result.successStep = t;
      }
    }
    await hooks.onStep?.(obs, action, step.reward, env);
    obs = step.obs;
    // Between server calls an agent answers synchronously; without a turn of the event loop here, a
    // policy server in this same process (eval --checkpoint) could not answer other workers meanwhile.
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (result.success && hooks.stopOnSuccess) break;
  }
  result.motion = motion.summary();
  return result;
}

const jointsByRobot = new Map<string, boolean[]>();

/** Per action dim of a robot, whether it is a joint rather than a gripper (by its spec's action names). */
function jointDims(robot: string): boolean[] {
  let joints = jointsByRobot.get(robot);
  if (!joints) {
    joints = loadRobot(robot).action.names.map((n) => !/gripper/i.test(n));
    jointsByRobot.set(robot, joints);
  }
  return joints;
}

export interface TaskSummary {
  task: string;
  episodes: number;
  failed: number;
  pc_success: number;
  avg_sum_reward: number;
  avg_max_reward: number;
  /** Mean time to success over the successful episodes, seconds of control time (null: none succeeded). */
  avg_success_s: number | null;
  /** Over the episodes that ran: the largest jump at a chunk boundary, and the mean jump over all of them. */
  boundary_jump_max: number;
  boundary_jump_mean: number;
  /** The mean step within chunks, the scale the jumps compare with. */
  step_mean: number;
  /** The mean jump and the mean step over the arm's joints alone (grippers left out). */
  boundary_joint_jump_mean: number;
  joint_step_mean: number;
  /** The episodes' mean squared jerk, averaged ((action units / s³)²). */
  mean_squared_jerk: number;
}

/**
 * LeRobot's aggregate: percent of successful episodes, mean sum and mean max reward (errors count as
 * 0); then time to success and the motion's smoothness, over the episodes that have them.
 */
export function summarize(task: string, results: EpisodeResult[]): TaskSummary {
  const n = results.length;
  const mean = (f: (r: EpisodeResult) => number) => (n === 0 ? 0 : results.reduce((s, r) => s + f(r), 0) / n);
  const hz = getTask(task).task.robot.controlHz;
  const times = results.flatMap((r) => (r.successStep === null ? [] : [(r.successStep + 1) / hz]));
  const motions = results.flatMap((r) => (r.motion ? [r.motion] : []));
  const boundaries = motions.reduce((s, m) => s + m.boundaries, 0);
  return {
    task,
    episodes: n,
    failed: results.filter((r) => r.error !== undefined).length,
    pc_success: 100 * mean((r) => (r.success ? 1 : 0)),
    avg_sum_reward: mean((r) => r.sumReward),
    avg_max_reward: mean((r) => r.maxReward),
    avg_success_s: times.length === 0 ? null : times.reduce((s, t) => s + t, 0) / times.length,
    boundary_jump_max: motions.reduce((s, m) => Math.max(s, m.jumpMax), 0),
    boundary_jump_mean:
      boundaries === 0 ? 0 : motions.reduce((s, m) => s + m.jumpMean * m.boundaries, 0) / boundaries,
    step_mean: motions.length === 0 ? 0 : motions.reduce((s, m) => s + m.stepMean, 0) / motions.length,
    boundary_joint_jump_mean:
      boundaries === 0 ? 0 : motions.reduce((s, m) => s + m.jointJumpMean * m.boundaries, 0) / boundaries,
    joint_step_mean:
      motions.length === 0 ? 0 : motions.reduce((s, m) => s + m.jointStepMean, 0) / motions.length,
    mean_squared_jerk:
      motions.length === 0 ? 0 : motions.reduce((s, m) => s + m.meanSquaredJerk, 0) / motions.length,
  };
}

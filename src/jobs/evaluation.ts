/**
 * Simulation seen from the job layer: the trainer's periodic evaluation and the check of a dataset's
 * recorded scene are built here and handed to the trainer, which knows nothing of simulation; and a
 * checkpoint served locally for `vla sim eval --checkpoint`, checked against the simulated robot.
 */

import path from 'node:path';
import { UserError } from '../config/errors.js';
import { loadRobot } from '../config/load.js';
import { robotsOf } from '../config/mixture.js';
import { evalTasks, type TrainConfig } from '../config/schema.js';
import type { SamplerChoice } from '../model/chunk-sampler.js';
import type { SimRobot } from '../sim/robots.js';
import { TASK_NAMES } from '../sim/tasks/names.js';
import type { Evaluate } from '../train/run.js';

/** Periodic evals use seeds from here on: scenes the recipes never record demonstrations on. */
const EVAL_SEED = 100_000;

/**
 * Serve a checkpoint in this process on a free local port, refusing one whose state and action layout
 * are not the simulated robot's (whatever its name), so a rollout is exactly what a remote server gives.
 * A checkpoint trained on several robots serves the simulated one.
 */
export async function serveCheckpointForSim(
  dir: string,
  robot: SimRobot,
  opts: { backend?: string; noiseScale?: number; seed?: number; sampler?: SamplerChoice } = {},
): Promise<{ url: string; noiseScale: number; close(): Promise<void> }> {
  const { readCheckpointConfig, serveCheckpointLocally } = await import('../serving/local.js');
  const served = checkCheckpointRobot(dir, readCheckpointConfig(dir), robot);
  const { server, noiseScale } = await serveCheckpointLocally(dir, { ...opts, robot: served });
  // The server closes its runner.
  return { url: server.url, noiseScale, close: () => server.close() };
}

/**
 * A checkpoint served once for each simulated robot of `robots` (a generalist base's several), every one
 * checked against the checkpoint before any is served: `urlFor(robot name)`; `close()` closes them all.
 */
export async function serveCheckpointForRobots(
  dir: string,
  robots: SimRobot[],
  opts: { backend?: string; noiseScale?: number; seed?: number; sampler?: SamplerChoice } = {},
): Promise<{ urlFor(robot: string): string; noiseScale: number; close(): Promise<void> }> {
  if (robots.length === 0)
    throw new UserError(
      `--checkpoint ${dir}: expected at least one simulated robot to serve it for, got none`,
    );
  const { readCheckpointConfig } = await import('../serving/local.js');
  const config = readCheckpointConfig(dir);
  const unique = [...new Map(robots.map((r) => [r.name, r])).values()];
  for (const robot of unique) checkCheckpointRobot(dir, config, robot);
  const served = new Map<string, Awaited<ReturnType<typeof serveCheckpointForSim>>>();
  const close = async () => {
    await Promise.allSettled([...served.values()].map((s) => s.close()));
  };
  try {
    for (const robot of unique) served.set(robot.name, await serveCheckpointForSim(dir, robot, opts));
  } catch (e) {
    await close();
    throw e;
  }
  return {
    urlFor: (robot) => {
      const s = served.get(robot);
      if (!s)
        throw new Error(
          `serveCheckpointForRobots: ${robot} was not served (served: ${[...served.keys()].join(', ')})`,
        );
      return s.url;
    },
    noiseScale: served.values().next().value!.noiseScale,
    close,
  };
}

/**
 * The robot of the checkpoint that runs the simulated one: that robot where the checkpoint trained on it
 * (one of a mixture's), else the config's, refused where its actions or state are not the simulated
 * robot's, naming both.
 */
export function checkCheckpointRobot(dir: string, config: TrainConfig, robot: SimRobot): string {
  if (robotsOf(config).includes(robot.name)) return robot.name;
  const trained = loadRobot(config.robot);
  const simSpec = loadRobot(robot.name);
  const same = (a: string[], b: string[]) => a.length === b.length && a.every((n, i) => n === b[i]);
  if (!same(trained.action.names, simSpec.action.names) || !same(trained.state.names, simSpec.state.names)) {
    throw new UserError(
      `--checkpoint ${dir}: trained for robot ${config.robot} (${trained.action.names.length}-dim actions), ` +
        `but this task runs ${robot.name} (${simSpec.action.names.length}-dim actions: ${simSpec.action.names.join(', ')})`,
    );
  }
  return config.robot;
}

/**
 * The evaluation a config asks for (`train.eval_task`), or undefined when it asks for none: each task
 * rolled out on its own robot in turn. One task's figures are `eval_pc_success`, `eval_avg_sum_reward`
 * and `eval_avg_max_reward`; several tasks' are each task's under `<figure>/<task>` and their mean
 * under the plain name, as the loss is logged per dataset beside the whole.
 */
export function simEvaluation(config: TrainConfig): Evaluate | undefined {
  const t = config.train;
  const tasks = evalTasks(t);
  if (tasks.length === 0) return undefined;
  // Before training, not at its first evaluation an hour in.
  for (const task of tasks) {
    if (!(TASK_NAMES as readonly string[]).includes(task)) {
      throw new UserError(
        `config ${config.name}: train.eval_task: expected simulated tasks (${TASK_NAMES.join(', ')}), got "${task}"`,
      );
    }
  }
  return async (checkpoint) => {
    const [{ runEval }, { getTask }] = await Promise.all([
      import('../sim/eval.js'),
      import('../sim/tasks/index.js'),
    ]);
    const metrics: Record<string, number> = {};
    const said: string[] = [];
    const robotOf = (task: string) => getTask(task).task.robot;
    const served = await serveCheckpointForRobots(checkpoint, tasks.map(robotOf), { seed: t.seed });
    try {
      for (const task of tasks) {
        const { summary: s } = await runEval({
          task,
          url: served.urlFor(robotOf(task).name),
          episodes: t.eval_episodes,
          workers: 1,
          seed: EVAL_SEED,
          videos: 0,
        });
        const figures = {
          eval_pc_success: s.pc_success,
          eval_avg_sum_reward: s.avg_sum_reward,
          eval_avg_max_reward: s.avg_max_reward,
        };
        for (const [k, v] of Object.entries(figures)) {
          if (tasks.length === 1) metrics[k] = v;
          else {
            metrics[`${k}/${task}`] = v;
            metrics[k] = (metrics[k] ?? 0) + v / tasks.length;
          }
        }
        said.push(`${s.pc_success.toFixed(0)}% success on ${task}`);
      }
    } finally {
      await served.close();
    }
    const each = tasks.length > 1 ? ' each' : '';
    return { metrics, summary: `${said.join(', ')} over ${t.eval_episodes} episodes${each}` };
  };
}

/**
 * Demonstrations recorded in a scene that has changed since (a moved camera) train a policy for a
 * scene that no longer exists: a warning to give before an hour of training, not after the evaluation.
 * Null when the scene is unchanged, or the dataset is not one `vla sim record` wrote.
 */
export async function recordedSceneWarning(config: TrainConfig): Promise<string | null> {
  const [{ resolveDatasetPath }, { readInfo }, { recordedSceneDrift }, { dataSources }] = await Promise.all([
    import('../data/pipeline.js'),
    import('../data/info.js'),
    import('../sim/provenance.js'),
    import('../config/mixture.js'),
  ]);
  const warnings: string[] = [];
  let sources: ReturnType<typeof dataSources>;
  try {
    sources = dataSources(config);
  } catch {
    return null; // No dataset named: the loader's error to report.
  }
  for (const source of sources) {
    let dir: string;
    let simulation: ReturnType<typeof readInfo>['simulation'];
    try {
      dir = resolveDatasetPath(source.config);
      simulation = readInfo(dir).simulation;
    } catch {
      // A dataset that cannot be read is the loader's error to report, with its own words.
      continue;
    }
    const drift = recordedSceneDrift(simulation, `dataset ${path.relative(process.cwd(), dir)}`);
    if (drift) warnings.push(drift);
  }
  return warnings.length > 0 ? warnings.join('\n') : null;
}

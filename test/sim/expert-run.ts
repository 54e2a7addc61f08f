import type { SimEnv, Task } from '../../src/sim/env.js';
import type { Plan } from '../../src/sim/expert.js';
import { WaypointExpert } from '../../src/sim/expert.js';

/** Runs `plan` on `seed`; true once the task reaches its top reward. */
export async function expertSucceeds(env: SimEnv, task: Task, plan: Plan, seed: number): Promise<boolean> {
  const expert = await WaypointExpert.create(env, plan);
  try {
    env.reset(seed);
    expert.reset(env);
    for (let t = 0; t < task.episodeSteps; t++) {
      if (env.step(expert.act(null, env)).reward === task.maxReward) return true;
    }
    return false;
  } finally {
    expert.close();
  }
}

/** How many of `count` seeds from `from` the expert succeeds on. */
export async function expertSuccesses(env: SimEnv, task: Task, plan: Plan, from: number, count: number) {
  let ok = 0;
  for (let seed = from; seed < from + count; seed++) if (await expertSucceeds(env, task, plan, seed)) ok++;
  return ok;
}

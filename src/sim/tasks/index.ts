import { UserError } from '../../config/errors.js';
import type { Task } from '../env.js';
import type { Plan } from '../expert.js';
import { insertion, insertionPlan } from './insertion.js';
import { lift, liftPlan } from './lift.js';
import type { TaskName } from './names.js';
import { pickPlace, pickPlacePlan } from './pick_place.js';
import { push, pushPlan } from './push.js';
import { stack, stackPlan } from './stack.js';
import { transferCube, transferCubePlan } from './transfer_cube.js';

interface TaskEntry {
  task: Task;
  /** The scripted expert's plan. */
  expert: Plan;
}

/** One entry per name of names.ts: the type refuses a missing or an extra one. */
export const TASKS: Record<string, TaskEntry> = {
  aloha_transfer_cube: { task: transferCube, expert: transferCubePlan },
  aloha_insertion: { task: insertion, expert: insertionPlan },
  pick_place: { task: pickPlace, expert: pickPlacePlan() },
  stack: { task: stack, expert: stackPlan },
  push: { task: push, expert: pushPlan },
  aloha_lift: { task: lift, expert: liftPlan },
} satisfies Record<TaskName, TaskEntry>;

export function getTask(name: string): TaskEntry {
  const entry = TASKS[name];
  if (!entry) {
    throw new UserError(`unknown task "${name}": expected one of ${Object.keys(TASKS).join(', ')}`);
  }
  return entry;
}

import { UserError } from '../../config/errors.js';
import type { Task } from '../env.js';
import type { Plan } from '../expert.js';
import { insertion, insertionPlan } from './insertion.js';
import { pickPlace, pickPlacePlan } from './pick_place.js';
import { transferCube, transferCubePlan } from './transfer_cube.js';

interface TaskEntry {
  task: Task;
  /** The scripted expert's plan. */
  expert: Plan;
}

export const TASKS: Record<string, TaskEntry> = {
  aloha_transfer_cube: { task: transferCube, expert: transferCubePlan },
  aloha_insertion: { task: insertion, expert: insertionPlan },
  pick_place: { task: pickPlace, expert: pickPlacePlan() },
};

export function getTask(name: string): TaskEntry {
  const entry = TASKS[name];
  if (!entry) {
    throw new UserError(`unknown task "${name}": expected one of ${Object.keys(TASKS).join(', ')}`);
  }
  return entry;
}

/** The simulated tasks' names, without their scenes: what the CLI's help lists. index.ts maps each to its task. */
export const TASK_NAMES = [
  'aloha_transfer_cube',
  'aloha_insertion',
  'pick_place',
  'stack',
  'push',
  'aloha_lift',
] as const;

export type TaskName = (typeof TASK_NAMES)[number];

/**
 * Tasks kept out of the generalist base's training data: what its evaluations test it on (a new
 * bimanual skill, a new single-arm composition of known ones).
 */
export const HELD_OUT_TASKS: readonly TaskName[] = ['aloha_insertion', 'stack'];

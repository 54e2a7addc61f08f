/**
 * ALOHA's conventions versus π0's, as openpi's aloha_policy applies them when `adapt_to_pi` is on:
 * two joints per arm have flipped signs, and the gripper travels as a linear position on the robot but
 * as an angle in π0's data. Pure functions over [.., 14] rows, in place.
 */
import type { Floats, Transform } from './frames.js';

/** Per arm: waist, shoulder, elbow, forearm roll, wrist angle, wrist rotate, gripper. */
export const JOINT_FLIP_MASK = [1, -1, -1, 1, 1, 1, 1, 1, -1, -1, 1, 1, 1, 1] as const;
const GRIPPERS = [6, 13] as const;

const normalize = (x: number, lo: number, hi: number) => (x - lo) / (hi - lo);
const unnormalize = (x: number, lo: number, hi: number) => x * (hi - lo) + lo;

/** The robot's normalized linear gripper position → π0's normalized gripper angle. */
export function gripperToAngular(value: number): number {
  // Interbotix's gripper: open/closed linear positions, and its horn-and-arm linkage inverted.
  const linear = unnormalize(value, 0.01844, 0.058);
  const armLength = 0.036;
  const hornRadius = 0.022;
  const cos = (hornRadius ** 2 + linear ** 2 - armLength ** 2) / (2 * hornRadius * linear);
  const angle = Math.asin(Math.min(1, Math.max(-1, cos)));
  // π0's gripper data is normalized between encoder counts 2405 and 3110 (of 4096, zero at 2048).
  return normalize(angle, 0.5476, 1.6296);
}

/** π0's gripper angle → the robot's normalized gripper joint command (PUPPET_GRIPPER_JOINT_OPEN/CLOSE). */
export function gripperFromAngular(value: number): number {
  return normalize(value + 0.5476, -0.6213, 1.491);
}

/** The exact inverse of gripperFromAngular, for converting recorded actions into π0's space. */
export function gripperFromAngularInv(value: number): number {
  return unnormalize(value, -0.6213, 1.491) - 0.5476;
}

function eachRow<T extends Floats>(x: T, dim: number, fn: (row: number) => void): T {
  if (dim < 14 || x.length % dim !== 0) {
    throw new Error(
      `ALOHA adapter: expected rows of at least 14 values, got ${x.length} values in rows of ${dim}`,
    );
  }
  for (let r = 0; r < x.length; r += dim) fn(r);
  return x;
}

/** Robot state → π0 space (openpi `_decode_state`). */
export function alohaStateToPi<T extends Floats>(state: T, dim = 14): T {
  return eachRow(state, dim, (r) => {
    for (let j = 0; j < 14; j++) state[r + j]! *= JOINT_FLIP_MASK[j]!;
    for (const g of GRIPPERS) state[r + g] = gripperToAngular(state[r + g]!);
  });
}

/** π0-space actions → robot commands (openpi `_encode_actions`). */
export function alohaActionsFromPi<T extends Floats>(actions: T, dim = 14): T {
  return eachRow(actions, dim, (r) => {
    for (let j = 0; j < 14; j++) actions[r + j]! *= JOINT_FLIP_MASK[j]!;
    for (const g of GRIPPERS) actions[r + g] = gripperFromAngular(actions[r + g]!);
  });
}

/** Recorded robot actions → π0 space, for training (openpi `_encode_actions_inv`). */
export function alohaActionsToPi<T extends Floats>(actions: T, dim = 14): T {
  return eachRow(actions, dim, (r) => {
    for (let j = 0; j < 14; j++) actions[r + j]! *= JOINT_FLIP_MASK[j]!;
    for (const g of GRIPPERS) actions[r + g] = gripperFromAngularInv(actions[r + g]!);
  });
}

/**
 * The adapter as a transform: state (and recorded actions) into π0's conventions on the way in, the
 * model's actions back into robot commands on the way out. Row by row, so it needs no chunk.
 */
export const alohaAdapter: Transform = {
  name: 'ALOHA adapter',
  input: (f) => {
    alohaStateToPi(f.state, f.stateDim);
    if (f.actions) alohaActionsToPi(f.actions, f.actionDim);
  },
  output: (f) => {
    alohaActionsFromPi(f.actions!, f.actionDim);
  },
};

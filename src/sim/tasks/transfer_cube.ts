/**
 * gym-aloha's TransferCube: the right arm picks the red cube and hands it to the left. Rewards as
 * gym-aloha: 1 right gripper touches the cube, 2 it lifted it (cube off the table), 3 the left gripper
 * touches it, 4 the left alone holds it off the table (success).
 */
import type { SimEnv, Task } from '../env.js';
import type { Plan, Waypoint } from '../expert.js';
import { add, frameFromAxes, normalize, type Vec3 } from '../ik.js';
import { ALOHA_SIM } from '../robots.js';

export const CUBE_X: [number, number] = [0, 0.2];
export const CUBE_Y: [number, number] = [0.4, 0.6];
const CUBE_HALF = 0.02;

export const transferCube: Task = {
  name: 'aloha_transfer_cube',
  description: 'right arm picks the red cube and hands it to the left arm (gym-aloha TransferCube)',
  robot: ALOHA_SIM,
  episodeSteps: 400,
  maxReward: 4,
  reset(env, rng) {
    env.placeFree('red_box_joint', [rng.uniform(...CUBE_X), rng.uniform(...CUBE_Y), CUBE_HALF]);
    return 'transfer the red cube from the right gripper to the left gripper';
  },
  reward(env) {
    const cube = env.geoms('red_box');
    const left = env.geoms('left/pad_left', 'left/pad_right');
    const right = env.geoms('right/pad_left', 'right/pad_right');
    const touchLeft = env.touching(cube, left);
    const touchRight = env.touching(cube, right);
    const onTable = env.touching(cube, env.geoms('table'));
    if (touchLeft && !touchRight && !onTable) return 4;
    if (touchLeft) return 3;
    if (touchRight && !onTable) return 2;
    if (touchRight) return 1;
    return 0;
  },
};

/** The red cube's centre now. */
export function cubePos(env: SimEnv): Vec3 {
  return env.sim.bodyPose(env.sim.id('body', 'box')).pos;
}

const TILT = (45 * Math.PI) / 180;
/** The grippers point down at TILT and towards each other; their fingers close along world y. */
const RIGHT_DIR: Vec3 = normalize([-Math.cos(TILT), 0, -Math.sin(TILT)]);
const LEFT_DIR: Vec3 = normalize([Math.cos(TILT), 0, -Math.sin(TILT)]);
const RIGHT_ROT = frameFromAxes(RIGHT_DIR, [0, -1, 0]);
const LEFT_ROT = frameFromAxes(LEFT_DIR, [0, 1, 0]);
const MEET: Vec3 = [0, 0.5, 0.22];
/** Each gripper holds its own half of the cube, so the fingers of the two never meet. */
const HALF_OFFSET = 0.011;
const GRASP_LIFT = 0.006;

export const transferCubePlan: Plan = (env) => {
  const cube0 = cubePos(env);
  const rightGrasp: Vec3 = [cube0[0] + HALF_OFFSET, cube0[1], cube0[2] + GRASP_LIFT];
  const rightMeet: Vec3 = [MEET[0] + HALF_OFFSET, MEET[1], MEET[2]];
  const leftAt = (env2: SimEnv, back: number): Vec3 => {
    const c = cubePos(env2);
    return add([c[0] - HALF_OFFSET, c[1], c[2]], LEFT_DIR, -back);
  };
  const R = (at: number, pos: Waypoint['pos'], gripper: number): Waypoint => ({
    at,
    pos,
    rot: RIGHT_ROT,
    gripper,
  });
  const L = (at: number, pos: Waypoint['pos'], gripper: number): Waypoint => ({
    at,
    pos,
    rot: LEFT_ROT,
    gripper,
  });
  const leftWait = add([MEET[0] - HALF_OFFSET, MEET[1], MEET[2]], LEFT_DIR, -0.12);
  const right = [
    R(70, add(rightGrasp, RIGHT_DIR, -0.08), 1),
    R(110, rightGrasp, 1),
    R(130, rightGrasp, 0),
    R(190, rightMeet, 0),
    R(295, rightMeet, 0),
    R(315, rightMeet, 1),
    R(360, add(rightMeet, RIGHT_DIR, -0.1), 1),
  ];
  const left = [
    L(150, leftWait, 1),
    L(210, leftWait, 1),
    L(245, (e) => leftAt(e, 0.06), 1),
    L(275, (e) => leftAt(e, 0), 1),
    L(295, (e) => leftAt(e, 0), 0),
    L(400, (e) => add(leftAt(e, 0), [0, 0, 0.02]), 0),
  ];
  return [left, right];
};

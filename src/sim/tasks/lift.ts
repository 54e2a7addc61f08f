/**
 * ALOHA, bimanual: a long bar lies between the arms, turned a little; each arm grips one end and they
 * lift it together, level. The red cube lies elsewhere as a distractor. Rewards: 1 one gripper touches
 * the bar, 2 both do, 3 both hold it off the table, 4 both hold it level at least LIFTED above the
 * table (success).
 */
import type { SimEnv, Task } from '../env.js';
import type { Plan, Waypoint } from '../expert.js';
import { add, frameFromAxes, normalize, type Vec3 } from '../ik.js';
import { ALOHA_SIM, mjcf } from '../robots.js';

export const BAR_X: [number, number] = [-0.05, 0.05];
export const BAR_Y: [number, number] = [0.42, 0.58];
export const BAR_YAW: [number, number] = [-0.25, 0.25];
const BAR_HALF = [0.13, 0.015, 0.015] as const;
const CUBE_HALF = 0.02;
/** Success: the bar's centre this high above the table, its ends within LEVEL of each other in height. */
export const LIFTED = 0.1;
const LEVEL = 0.03;
/** Each gripper holds the bar this far from its centre, clear of the other's fingers. */
const GRIP = 0.09;
const HOLD_Z = 0.18;

export const lift: Task = {
  name: 'aloha_lift',
  description: 'both arms grip the ends of the blue bar and lift it together, level',
  robot: ALOHA_SIM,
  scene: mjcf('aloha_lift'),
  episodeSteps: 300,
  maxReward: 4,
  reset(env, rng) {
    const x = rng.uniform(...BAR_X);
    const y = rng.uniform(...BAR_Y);
    env.placeFree('bar_joint', [x, y, BAR_HALF[2]], rng.uniform(...BAR_YAW));
    // The distractor in front of or behind the bar, away from the arms' way in.
    const side = rng.int(2) === 0 ? -1 : 1;
    env.placeFree(
      'red_box_joint',
      [rng.uniform(-0.2, 0.2), y + side * rng.uniform(0.14, 0.22), CUBE_HALF],
      rng.uniform(-0.7, 0.7),
    );
    return 'lift the blue bar with both arms';
  },
  reward(env) {
    const bar = env.geoms('blue_bar');
    const touchLeft = env.touching(bar, env.geoms('left/pad_left', 'left/pad_right'));
    const touchRight = env.touching(bar, env.geoms('right/pad_left', 'right/pad_right'));
    const onTable = env.touching(bar, env.geoms('table'));
    const [left, right] = barEnds(env, BAR_HALF[0]);
    const level = Math.abs(left[2] - right[2]) < LEVEL;
    const centre = (left[2] + right[2]) / 2;
    if (touchLeft && touchRight && !onTable && level && centre > LIFTED) return 4;
    if (touchLeft && touchRight && !onTable) return 3;
    if (touchLeft && touchRight) return 2;
    if (touchLeft || touchRight) return 1;
    return 0;
  },
};

/** Points `reach` from the bar's centre along its long axis: towards the left arm (-x) first. */
export function barEnds(env: SimEnv, reach: number): [Vec3, Vec3] {
  const p = env.sim.bodyPose(env.sim.id('body', 'bar'));
  const axis: Vec3 = [p.mat[0]!, p.mat[3]!, p.mat[6]!];
  return [add(p.pos, axis, -reach), add(p.pos, axis, reach)];
}

const TILT = (45 * Math.PI) / 180;

export const liftPlan: Plan = (env) => {
  const [leftEnd, rightEnd] = barEnds(env, GRIP);
  const axis = normalize([rightEnd[0] - leftEnd[0], rightEnd[1] - leftEnd[1], 0]);
  // Each gripper points down at TILT along the bar towards its middle; the fingers close across it.
  const leftDir = normalize([Math.cos(TILT) * axis[0], Math.cos(TILT) * axis[1], -Math.sin(TILT)]);
  const rightDir = normalize([-Math.cos(TILT) * axis[0], -Math.cos(TILT) * axis[1], -Math.sin(TILT)]);
  const leftRot = frameFromAxes(leftDir, [-axis[1], axis[0], 0]);
  const rightRot = frameFromAxes(rightDir, [axis[1], -axis[0], 0]);
  const grasp = (end: Vec3): Vec3 => [end[0], end[1], end[2] + 0.004];
  const raised = (end: Vec3): Vec3 => [end[0], end[1], HOLD_Z];
  const arm =
    (rot: number[], dir: Vec3) =>
    (end: Vec3): Waypoint[] => {
      const W = (at: number, pos: Vec3, gripper: number): Waypoint => ({ at, pos, rot, gripper });
      return [
        W(70, add(grasp(end), dir, -0.08), 1),
        W(110, grasp(end), 1),
        W(135, grasp(end), 0),
        W(220, raised(end), 0),
        W(300, raised(end), 0),
      ];
    };
  return [arm(leftRot, leftDir)(leftEnd), arm(rightRot, rightDir)(rightEnd)];
};

/**
 * Single arm, non-prehensile: a white disc marked on the table and the three cubes; the prompt names
 * one cube ("push the red cube onto the target") and the arm pushes it there with its closed gripper,
 * without lifting it. The other cubes and the bowl are placed clear of the way. Rewards: 1 the gripper
 * touches the named cube, 2 the cube's centre is over the disc, 3 the cube rests on the table near the
 * disc's centre, released (success).
 */
import type { SimEnv, Task } from '../env.js';
import type { Plan, Waypoint } from '../expert.js';
import { frameFromAxes, type Vec3 } from '../ik.js';
import { mjcf, SINGLE_ARM_SIM } from '../robots.js';
import {
  bodyPos,
  CUBE_HALF,
  CUBES,
  type CubeColor,
  closingAxisNow,
  REGION,
  targetCube,
} from './pick_place.js';

export const TARGET_RADIUS = 0.05;
/** Success: the cube's centre this near the disc's centre. */
export const ON_TARGET = 0.03;
/** How far the cube travels, and how much room the gripper needs behind it. */
const PUSH = [0.12, 0.22] as const;
const BEHIND = 0.07;
const NEAREST_START = 0.45;
/** Distractors keep this far from the pushed cube's path (its half diagonal, theirs and a margin). */
const CLEAR = 0.08;
/** Height of the grip site while pushing: the closed pads' tips a centimetre above the table. */
const PUSH_Z = 0.022;
/** The closed pads' half thickness along the push, and a little room. */
const PAD_REACH = 0.012;

export const push: Task = {
  name: 'push',
  description: 'single arm: push the cube the prompt names (red, green or blue) onto the marked target',
  robot: SINGLE_ARM_SIM,
  scene: mjcf('single_arm_push'),
  episodeSteps: 100,
  maxReward: 3,
  reset(env, rng) {
    const color = CUBES[rng.int(CUBES.length)]!;
    // The pushed cube and the target first, both inside the region, then the others clear of the path.
    let cube: [number, number];
    let target: [number, number];
    for (;;) {
      cube = [rng.uniform(...REGION.x), rng.uniform(...REGION.y)];
      const angle = rng.uniform(-Math.PI, Math.PI);
      const dist = rng.uniform(...PUSH);
      target = [cube[0] + dist * Math.cos(angle), cube[1] + dist * Math.sin(angle)];
      const d = unit(cube, target);
      // Low down, the arm reaches well only so near its base: the push starts no nearer than that.
      if (inRegion(target) && cube[0] - BEHIND * d[0] >= NEAREST_START) break;
    }
    const d = unit(cube, target);
    const start: [number, number] = [cube[0] - BEHIND * d[0], cube[1] - BEHIND * d[1]];
    const clear = (p: [number, number], r: number) => segmentDistance(p, start, target) > CLEAR + r;
    const others: Array<{ joint: string; r: number; z: number }> = [
      ...CUBES.filter((c) => c !== color).map((c) => ({ joint: `${c}_cube_joint`, r: 0.0, z: CUBE_HALF })),
      { joint: 'bowl_joint', r: 0.06, z: 0 },
    ];
    const placed: Array<[number, number, number]> = [];
    for (const o of others) {
      for (;;) {
        const p: [number, number] = [rng.uniform(...REGION.x), rng.uniform(...REGION.y)];
        if (clear(p, o.r) && placed.every(([x, y, r]) => Math.hypot(x - p[0], y - p[1]) > r + o.r + 0.07)) {
          placed.push([p[0], p[1], o.r]);
          env.placeFree(o.joint, [p[0], p[1], o.z], o.joint === 'bowl_joint' ? 0 : rng.uniform(-0.7, 0.7));
          break;
        }
      }
    }
    env.placeFree(`${color}_cube_joint`, [cube[0], cube[1], CUBE_HALF], rng.uniform(-0.7, 0.7));
    env.sim.setQpos([target[0], target[1]], env.sim.jointQposAdr('target_x'));
    return pushPrompt(color);
  },
  swapPrompt: (prompt) => pushPrompt(CUBES[(CUBES.indexOf(targetCube(prompt)) + 1) % CUBES.length]!),
  reward(env) {
    const color = targetCube(env.prompt);
    const cube = env.geoms(`${color}_cube`);
    const touchGripper = env.touching(cube, env.geoms('pad_left', 'pad_right'));
    const onTable = env.touching(cube, env.geoms('table'));
    const c = bodyPos(env, `${color}_cube`);
    const t = bodyPos(env, 'target');
    const off = Math.hypot(c[0] - t[0], c[1] - t[1]);
    if (off < ON_TARGET && onTable && !touchGripper) return 3;
    if (off < TARGET_RADIUS && onTable) return 2;
    if (touchGripper) return 1;
    return 0;
  },
};

export const pushPrompt = (color: CubeColor): string => `push the ${color} cube onto the target`;

const inRegion = (p: [number, number]) =>
  p[0] >= REGION.x[0] && p[0] <= REGION.x[1] && p[1] >= REGION.y[0] && p[1] <= REGION.y[1];

function unit(from: ArrayLike<number>, to: ArrayLike<number>): [number, number] {
  const dx = to[0]! - from[0]!;
  const dy = to[1]! - from[1]!;
  const n = Math.hypot(dx, dy);
  return [dx / n, dy / n];
}

/** Distance in the plane from p to the segment a–b. */
function segmentDistance(p: [number, number], a: [number, number], b: [number, number]): number {
  const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
  const s = Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / (dx * dx + dy * dy)));
  return Math.hypot(p[0] - a[0] - s * dx, p[1] - a[1] - s * dy);
}

/**
 * The scripted expert: the closed gripper comes down behind the cube, pushes it half way, aims again
 * from where the cube went, pushes it onto the target and rises.
 */
export const pushPlan: Plan = (env: SimEnv) => {
  const cube = bodyPos(env, `${targetCube(env.prompt)}_cube`);
  const target = bodyPos(env, 'target');
  const d = unit(cube, target);
  // The pads side by side across the push: of the two such closing axes, the one nearer the gripper's now.
  const yNow = closingAxisNow(env);
  const side: Vec3 = -d[1] * yNow[0] + d[0] * yNow[1] >= 0 ? [-d[1], d[0], 0] : [d[1], -d[0], 0];
  const rot = frameFromAxes([0, 0, -1], side);
  /** The grip site that puts the cube's centre at `at`, pushing from the cube's position now. */
  const behind = (at: ArrayLike<number>, from: ArrayLike<number>, back: number): Vec3 => {
    const u = unit(from, at);
    const reach = CUBE_HALF + PAD_REACH + back;
    return [at[0]! - reach * u[0], at[1]! - reach * u[1], PUSH_Z];
  };
  const W = (at: number, pos: Waypoint['pos'], gripper = 0): Waypoint => ({ at, pos, rot, gripper });
  const start: Vec3 = [cube[0] - BEHIND * d[0], cube[1] - BEHIND * d[1], PUSH_Z];
  const mid: Vec3 = [(cube[0] + target[0]) / 2, (cube[1] + target[1]) / 2, 0];
  return [
    [
      W(12, [start[0], start[1], 0.12]),
      W(24, start),
      W(30, start),
      W(55, behind(mid, cube, 0)),
      W(80, (e) => behind(target, bodyPos(e, `${targetCube(e.prompt)}_cube`), 0)),
      W(86, behind(target, cube, 0.03)),
      W(96, [...behind(target, cube, 0.03).slice(0, 2), 0.15] as Vec3),
    ],
  ];
};

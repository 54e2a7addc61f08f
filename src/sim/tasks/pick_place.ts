/**
 * Single arm, language-conditioned: three coloured cubes and a bowl on the table; the prompt names one
 * cube ("put the red cube in the bowl") and only that cube in the bowl counts, so a policy that ignores
 * the words succeeds on about a third of the seeds at best. Rewards: 1 the gripper touches the named
 * cube, 2 it holds it off the table, 3 the named cube rests in the bowl, released (success).
 */
import { UserError } from '../../config/errors.js';
import type { SimEnv, Task } from '../env.js';
import type { Plan, Waypoint } from '../expert.js';
import { frameFromAxes, type Vec3 } from '../ik.js';
import type { Rng } from '../rng.js';
import { SINGLE_ARM_SIM } from '../robots.js';

export const CUBES = ['red', 'green', 'blue'] as const;
export type CubeColor = (typeof CUBES)[number];
export const CUBE_HALF = 0.02;
/** Where objects may be placed (the arm's base is at the origin, facing +x). */
export const REGION = { x: [0.38, 0.66], y: [-0.3, 0.3] } as const;
const BOWL_INNER = 0.075;

export const pickPlace: Task = {
  name: 'pick_place',
  description: 'single arm: put the cube the prompt names (red, green or blue) in the bowl',
  robot: SINGLE_ARM_SIM,
  episodeSteps: 100,
  maxReward: 3,
  reset(env, rng) {
    placeBowlAndCubes(env, rng);
    return promptFor(CUBES[rng.int(CUBES.length)]!);
  },
  // The next colour: the same scene, asked for another cube.
  swapPrompt: (prompt) => promptFor(CUBES[(CUBES.indexOf(targetCube(prompt)) + 1) % CUBES.length]!),
  reward(env) {
    const color = targetCube(env.prompt);
    const cube = env.geoms(`${color}_cube`);
    const touchGripper = env.touching(cube, env.geoms('pad_left', 'pad_right'));
    const onTable = env.touching(cube, env.geoms('table'));
    const c = bodyPos(env, `${color}_cube`);
    const b = bodyPos(env, 'bowl');
    const inBowl = Math.hypot(c[0] - b[0], c[1] - b[1]) < BOWL_INNER - CUBE_HALF && c[2] < b[2] + 0.06;
    if (inBowl && !touchGripper && !onTable) return 3;
    if (touchGripper && !onTable) return 2;
    if (touchGripper) return 1;
    return 0;
  },
};

/** The bowl, then each cube turned at random, all apart (what pick_place and stack start from). */
export function placeBowlAndCubes(env: SimEnv, rng: Rng): void {
  const sample = spotSampler(rng);
  const bowl = sample(0.1);
  env.placeFree('bowl_joint', [bowl[0], bowl[1], 0]);
  for (const color of CUBES) {
    const [x, y] = sample(0.045);
    env.placeFree(`${color}_cube_joint`, [x, y, CUBE_HALF], rng.uniform(-0.7, 0.7));
  }
}

/**
 * Draws spots in the region the arm reaches, each at least its radius plus another's from every spot
 * drawn before (rejection sampling: the sequence depends only on the generator's seed).
 */
export function spotSampler(rng: Rng): (radius: number) => [number, number] {
  const placed: Array<{ p: [number, number]; r: number }> = [];
  return (radius) => {
    for (;;) {
      const p: [number, number] = [rng.uniform(...REGION.x), rng.uniform(...REGION.y)];
      if (placed.every((o) => Math.hypot(o.p[0] - p[0], o.p[1] - p[1]) > o.r + radius)) {
        placed.push({ p, r: radius });
        return p;
      }
    }
  };
}

export const promptFor = (color: CubeColor): string => `put the ${color} cube in the bowl`;

/** The cube a prompt names; the reward reads the goal from the words themselves. */
export function targetCube(prompt: string): CubeColor {
  const m = /\b(red|green|blue) cube\b/.exec(prompt);
  if (!m) throw new UserError(`pick_place prompt "${prompt}": expected it to name a red, green or blue cube`);
  return m[1] as CubeColor;
}

export function bodyPos(env: SimEnv, body: string): Vec3 {
  return env.sim.bodyPose(env.sim.id('body', body)).pos;
}

/** The scripted expert for the cube named `color` (by default the prompt's). */
export const pickPlacePlan =
  (color?: CubeColor): Plan =>
  (env) => {
    const bowl = bodyPos(env, 'bowl');
    return [carryWaypoints(env, `${color ?? targetCube(env.prompt)}_cube`, [bowl[0], bowl[1], 0.085])];
  };

/**
 * Top-down grasp of the cube body `cube`, carried at a safe height and released with the grip site at
 * `release`, then a retreat upwards.
 */
export function carryWaypoints(env: SimEnv, cube: string, release: Vec3): Waypoint[] {
  const cubeBody = env.sim.bodyPose(env.sim.id('body', cube));
  const c = cubeBody.pos;
  // Close across two opposite faces: of the cube's four face normals, the one nearest the gripper's
  // current closing axis, so the wrist turns as little as possible.
  const faces: Vec3[] = [0, 1].flatMap((col) => {
    const n: Vec3 = [cubeBody.mat[col]!, cubeBody.mat[3 + col]!, 0];
    return [n, [-n[0], -n[1], 0] as Vec3];
  });
  const yNow = closingAxisNow(env);
  const closing = faces.reduce((best, f) =>
    f[0] * yNow[0] + f[1] * yNow[1] > best[0] * yNow[0] + best[1] * yNow[1] ? f : best,
  );
  const down = frameFromAxes([0, 0, -1], closing);
  const carry = frameFromAxes([0, 0, -1], yNow);
  const W = (at: number, pos: Vec3, gripper: number, rot = down): Waypoint => ({ at, pos, rot, gripper });
  return [
    W(18, [c[0], c[1], c[2] + 0.12], 1),
    W(30, [c[0], c[1], c[2] + 0.002], 1),
    W(36, [c[0], c[1], c[2] + 0.002], 0),
    W(48, [c[0], c[1], 0.16], 0),
    W(64, [release[0], release[1], 0.16], 0, carry),
    W(72, release, 0, carry),
    W(78, release, 1, carry),
    W(90, [release[0], release[1], 0.2], 1, carry),
  ];
}

/** The single arm's gripper closing axis in the table's plane, as it stands at the episode's start. */
export function closingAxisNow(env: SimEnv): Vec3 {
  const home = env.sim.sitePose(env.sim.id('site', env.robot.arms[0]!.site)).mat;
  return [home[1]!, home[4]!, 0];
}

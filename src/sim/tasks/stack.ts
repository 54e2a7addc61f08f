/**
 * Single arm, language-conditioned: the pick_place scene (three coloured cubes and a bowl, all placed
 * apart), and a prompt that names an ordered pair of cubes ("put the red cube on the blue cube"): six
 * instructions per scene, the third cube and the bowl distractors. Rewards: 1 the gripper touches the
 * named top cube, 2 it holds it off the table, 3 the top cube rests on the bottom one, released
 * (success).
 */
import { UserError } from '../../config/errors.js';
import type { SimEnv, Task } from '../env.js';
import type { Plan } from '../expert.js';
import { SINGLE_ARM_SIM } from '../robots.js';
import {
  bodyPos,
  CUBE_HALF,
  CUBES,
  type CubeColor,
  carryWaypoints,
  placeBowlAndCubes,
} from './pick_place.js';

/** How far the released cube's centre may sit off the lower one's axis and still count as stacked. */
const ON_TOP_XY = 0.025;
/** The grip site above the lower cube's centre at release: a cube's height and a few millimetres of drop. */
const RELEASE_ABOVE = 2 * CUBE_HALF + 0.008;

export interface StackPair {
  top: CubeColor;
  bottom: CubeColor;
}

export const stack: Task = {
  name: 'stack',
  description: 'single arm: put the cube the prompt names on another named cube (red, green, blue)',
  robot: SINGLE_ARM_SIM,
  episodeSteps: 100,
  maxReward: 3,
  reset(env, rng) {
    placeBowlAndCubes(env, rng);
    const top = CUBES[rng.int(CUBES.length)]!;
    const others = CUBES.filter((c) => c !== top);
    return stackPrompt({ top, bottom: others[rng.int(others.length)]! });
  },
  // The same pair the other way round: the scene is unchanged, only the words say which cube goes up.
  swapPrompt: (prompt) => {
    const { top, bottom } = stackPair(prompt);
    return stackPrompt({ top: bottom, bottom: top });
  },
  reward(env) {
    const { top, bottom } = stackPair(env.prompt);
    const upper = env.geoms(`${top}_cube`);
    const touchGripper = env.touching(upper, env.geoms('pad_left', 'pad_right'));
    const onTable = env.touching(upper, env.geoms('table'));
    const t = bodyPos(env, `${top}_cube`);
    const b = bodyPos(env, `${bottom}_cube`);
    const stacked =
      env.touching(upper, env.geoms(`${bottom}_cube`)) &&
      Math.hypot(t[0] - b[0], t[1] - b[1]) < ON_TOP_XY &&
      t[2] > b[2] + 1.5 * CUBE_HALF;
    if (stacked && !touchGripper && !onTable) return 3;
    if (touchGripper && !onTable) return 2;
    if (touchGripper) return 1;
    return 0;
  },
};

export const stackPrompt = ({ top, bottom }: StackPair): string =>
  `put the ${top} cube on the ${bottom} cube`;

/** The ordered pair a prompt names; the reward reads the goal from the words themselves. */
export function stackPair(prompt: string): StackPair {
  const m = /\b(red|green|blue) cube on the (red|green|blue) cube\b/.exec(prompt);
  if (!m || m[1] === m[2]) {
    throw new UserError(
      `stack prompt "${prompt}": expected it to name two different cubes, as "put the red cube on the blue cube"`,
    );
  }
  return { top: m[1] as CubeColor, bottom: m[2] as CubeColor };
}

/** The scripted expert: pick the top cube as pick_place does and release it just above the lower one. */
export const stackPlan: Plan = (env: SimEnv) => {
  const { top, bottom } = stackPair(env.prompt);
  const b = bodyPos(env, `${bottom}_cube`);
  return [carryWaypoints(env, `${top}_cube`, [b[0], b[1], b[2] + RELEASE_ABOVE])];
};

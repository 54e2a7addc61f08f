import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimEnv } from '../../src/sim/env.js';
import { bodyPos, CUBES } from '../../src/sim/tasks/pick_place.js';
import { stack, stackPair, stackPlan, stackPrompt } from '../../src/sim/tasks/stack.js';
import { expertSucceeds, expertSuccesses } from './expert-run.js';

describe('stack (single arm)', () => {
  let env: SimEnv;
  beforeAll(async () => {
    env = await SimEnv.create(stack);
  });
  afterAll(() => env.free());

  it('a seed names an ordered pair of different cubes and places the objects apart, the same way every time', () => {
    const pairs = new Set<string>();
    for (let seed = 0; seed < 30; seed++) {
      const obs = env.reset(seed);
      expect(obs.prompt).toMatch(/^put the (red|green|blue) cube on the (red|green|blue) cube$/);
      const { top, bottom } = stackPair(obs.prompt);
      expect(top).not.toBe(bottom);
      pairs.add(`${top}/${bottom}`);
      const pts = [...CUBES.map((c) => bodyPos(env, `${c}_cube`)), bodyPos(env, 'bowl')];
      for (let i = 0; i < pts.length; i++) {
        for (let j = i + 1; j < pts.length; j++) {
          expect(Math.hypot(pts[i]![0] - pts[j]![0], pts[i]![1] - pts[j]![1])).toBeGreaterThan(0.08);
        }
      }
      expect(stack.reward(env)).toBe(0);
    }
    expect(pairs.size).toBe(6);
    const a = env.reset(5);
    const p = bodyPos(env, 'green_cube');
    expect(env.reset(5).prompt).toBe(a.prompt);
    expect(bodyPos(env, 'green_cube')).toEqual(p);
    expect(stack.swapPrompt!('put the red cube on the blue cube')).toBe('put the blue cube on the red cube');
    expect(() => stackPair('put the red cube on the red cube')).toThrow(
      /expected it to name two different cubes/,
    );
  });

  it('rewards only the named cube resting on the named other (hand-placed states)', () => {
    env.reset(0);
    const { top, bottom } = stackPair(env.prompt);
    const third = CUBES.find((c) => c !== top && c !== bottom)!;
    const settle = () => {
      env.sim.setQvelZero();
      for (let i = 0; i < 20; i++) env.step(env.state());
      return stack.reward(env);
    };
    const b = bodyPos(env, `${bottom}_cube`);
    env.placeFree(`${third}_cube_joint`, [b[0], b[1], 0.061]);
    expect(settle()).toBe(0);
    env.reset(0);
    env.placeFree(`${bottom}_cube_joint`, [b[0], b[1], 0.061]);
    env.placeFree(`${top}_cube_joint`, [b[0], b[1], 0.02]);
    // The pair the wrong way round is no success.
    expect(settle()).toBe(0);
    env.reset(0);
    env.placeFree(`${top}_cube_joint`, [b[0], b[1], 0.061]);
    expect(settle()).toBe(3);
    expect(stackPrompt({ top, bottom })).toBe(env.prompt);
  });

  it('the expert stacks on 3 seeds', async () => {
    for (const seed of [0, 1, 2]) expect(await expertSucceeds(env, stack, stackPlan, seed)).toBe(true);
  }, 60_000);
});

describe.runIf(process.env.VLA_SLOW)('stack expert (slow)', () => {
  it('succeeds on at least 90% of 20 seeds', async () => {
    const env = await SimEnv.create(stack);
    const ok = await expertSuccesses(env, stack, stackPlan, 100, 20);
    env.free();
    expect(ok / 20).toBeGreaterThanOrEqual(0.9);
  }, 120_000);
});

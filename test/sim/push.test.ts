import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimEnv } from '../../src/sim/env.js';
import { bodyPos, CUBES, targetCube } from '../../src/sim/tasks/pick_place.js';
import { ON_TARGET, push, pushPlan, TARGET_RADIUS } from '../../src/sim/tasks/push.js';
import { expertSucceeds, expertSuccesses } from './expert-run.js';

describe('push (single arm)', () => {
  let env: SimEnv;
  beforeAll(async () => {
    env = await SimEnv.create(push);
  });
  afterAll(() => env.free());

  it('a seed names one cube and puts the target 12-22 cm from it, the others clear of the way', () => {
    const colors = new Set<string>();
    for (let seed = 0; seed < 20; seed++) {
      const obs = env.reset(seed);
      expect(obs.prompt).toMatch(/^push the (red|green|blue) cube onto the target$/);
      const named = targetCube(obs.prompt);
      colors.add(named);
      const c = bodyPos(env, `${named}_cube`);
      const t = bodyPos(env, 'target');
      const dist = Math.hypot(c[0] - t[0], c[1] - t[1]);
      expect(dist).toBeGreaterThanOrEqual(0.12);
      expect(dist).toBeLessThanOrEqual(0.22 + 1e-9);
      for (const other of CUBES.filter((x) => x !== named)) {
        const o = bodyPos(env, `${other}_cube`);
        expect(Math.hypot(o[0] - t[0], o[1] - t[1])).toBeGreaterThan(0.08);
      }
      expect(push.reward(env)).toBe(0);
    }
    expect(colors.size).toBe(3);
    const a = env.reset(4);
    const t = bodyPos(env, 'target');
    expect(env.reset(4).prompt).toBe(a.prompt);
    expect(bodyPos(env, 'target')).toEqual(t);
  });

  it('rewards the named cube on the target, and no other (hand-placed states)', () => {
    env.reset(0);
    const named = targetCube(env.prompt);
    const other = CUBES.find((c) => c !== named)!;
    const t = bodyPos(env, 'target');
    const settle = () => {
      env.sim.setQvelZero();
      for (let i = 0; i < 10; i++) env.step(env.state());
      return push.reward(env);
    };
    env.placeFree(`${other}_cube_joint`, [t[0], t[1], 0.02]);
    expect(settle()).toBe(0);
    env.reset(0);
    env.placeFree(`${named}_cube_joint`, [t[0] + (ON_TARGET + TARGET_RADIUS) / 2, t[1], 0.02]);
    expect(settle()).toBe(2);
    env.placeFree(`${named}_cube_joint`, [t[0] + ON_TARGET / 2, t[1], 0.02]);
    expect(settle()).toBe(3);
    // Lifted over the target is no push.
    env.placeFree(`${named}_cube_joint`, [t[0], t[1], 0.2]);
    env.sim.forward();
    expect(push.reward(env)).toBe(0);
  });

  it('the expert pushes the cube onto the target on 3 seeds', async () => {
    for (const seed of [0, 2, 3]) expect(await expertSucceeds(env, push, pushPlan, seed)).toBe(true);
  }, 60_000);
});

describe.runIf(process.env.VLA_SLOW)('push expert (slow)', () => {
  it('succeeds on at least 90% of 20 seeds', async () => {
    const env = await SimEnv.create(push);
    const ok = await expertSuccesses(env, push, pushPlan, 100, 20);
    env.free();
    expect(ok / 20).toBeGreaterThanOrEqual(0.9);
  }, 120_000);
});

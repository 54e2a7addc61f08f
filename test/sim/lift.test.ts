import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimEnv } from '../../src/sim/env.js';
import { BAR_X, BAR_Y, barEnds, LIFTED, lift, liftPlan } from '../../src/sim/tasks/lift.js';
import { expertSucceeds, expertSuccesses } from './expert-run.js';

const bodyPos = (env: SimEnv, name: string) => env.sim.bodyPose(env.sim.id('body', name)).pos;

describe('aloha_lift', () => {
  let env: SimEnv;
  beforeAll(async () => {
    env = await SimEnv.create(lift);
  });
  afterAll(() => env.free());

  it('places the bar in range, turned, and the distractor cube away from it', () => {
    const yaws = new Set<string>();
    for (let seed = 0; seed < 10; seed++) {
      expect(env.reset(seed).prompt).toBe('lift the blue bar with both arms');
      const bar = bodyPos(env, 'bar');
      expect(bar[0]).toBeGreaterThanOrEqual(BAR_X[0]);
      expect(bar[0]).toBeLessThanOrEqual(BAR_X[1]);
      expect(bar[1]).toBeGreaterThanOrEqual(BAR_Y[0]);
      expect(bar[1]).toBeLessThanOrEqual(BAR_Y[1]);
      const [l, r] = barEnds(env, 0.13);
      yaws.add(Math.atan2(r[1] - l[1], r[0] - l[0]).toFixed(2));
      expect(Math.abs(bodyPos(env, 'box')[1] - bar[1])).toBeGreaterThan(0.13);
      expect(lift.reward(env)).toBe(0);
    }
    expect(yaws.size).toBeGreaterThan(5);
  });

  it('success needs the bar held level above LIFTED by both grippers: lifted by one is not', async () => {
    expect(await expertSucceeds(env, lift, liftPlan, 0)).toBe(true);
    const [l, r] = barEnds(env, 0.13);
    expect((l[2] + r[2]) / 2).toBeGreaterThan(LIFTED);
    // The same plan with the right gripper never closing: at most one arm touches, never success.
    const oneArm = (e: SimEnv) => {
      const [left, right] = liftPlan(e);
      return [left!, right!.map((w) => ({ ...w, gripper: 1 }))];
    };
    expect(await expertSucceeds(env, lift, oneArm, 0)).toBe(false);
  }, 60_000);

  it('the expert lifts the bar on 2 more seeds', async () => {
    for (const seed of [1, 2]) expect(await expertSucceeds(env, lift, liftPlan, seed)).toBe(true);
  }, 60_000);
});

describe.runIf(process.env.VLA_SLOW)('aloha_lift expert (slow)', () => {
  it('succeeds on at least 90% of 20 seeds', async () => {
    const env = await SimEnv.create(lift);
    const ok = await expertSuccesses(env, lift, liftPlan, 100, 20);
    env.free();
    expect(ok / 20).toBeGreaterThanOrEqual(0.9);
  }, 120_000);
});

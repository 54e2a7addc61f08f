import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRobot } from '../../src/config/load.js';
import { SimEnv } from '../../src/sim/env.js';
import { WaypointExpert } from '../../src/sim/expert.js';
import { SINGLE_ARM_SIM } from '../../src/sim/robots.js';
import {
  bodyPos,
  CUBES,
  type CubeColor,
  pickPlace,
  pickPlacePlan,
  targetCube,
} from '../../src/sim/tasks/pick_place.js';

/** Runs the expert for `color` (the prompt's cube when omitted); true when the task reached success. */
async function runExpert(env: SimEnv, seed: number, color?: CubeColor): Promise<boolean> {
  const expert = await WaypointExpert.create(env, pickPlacePlan(color));
  try {
    env.reset(seed);
    expert.reset(env);
    for (let t = 0; t < pickPlace.episodeSteps; t++) {
      if (env.step(expert.act(null, env)).reward === pickPlace.maxReward) return true;
    }
    return false;
  } finally {
    expert.close();
  }
}

describe('pick_place (single arm)', () => {
  let env: SimEnv;
  beforeAll(async () => {
    env = await SimEnv.create(pickPlace);
  });
  afterAll(() => env.free());

  it('the single_arm_sim spec is DROID-like: 7 joints + gripper, 15 Hz, exterior and wrist cameras', () => {
    const spec = loadRobot('single_arm_sim');
    expect(spec.state.names).toHaveLength(env.dim);
    expect(spec.control_hz).toBe(15);
    expect(spec.state.parts.map((p) => p.key)).toEqual([
      'observation/joint_position',
      'observation/gripper_position',
    ]);
    expect(spec.cameras.map((c) => c.name).sort()).toEqual(Object.keys(SINGLE_ARM_SIM.cameras).sort());
  });

  it('a seed names one cube and places the objects apart, the same way every time', () => {
    const colors = new Set<string>();
    for (let seed = 0; seed < 12; seed++) {
      const obs = env.reset(seed);
      colors.add(targetCube(obs.prompt));
      expect(obs.prompt).toMatch(/^put the (red|green|blue) cube in the bowl$/);
      // DROID's gripper convention: 0 is open.
      expect(obs.state[7]).toBe(0);
      const pts = [...CUBES.map((c) => bodyPos(env, `${c}_cube`)), bodyPos(env, 'bowl')];
      for (let i = 0; i < pts.length; i++) {
        for (let j = i + 1; j < pts.length; j++) {
          expect(Math.hypot(pts[i]![0] - pts[j]![0], pts[i]![1] - pts[j]![1])).toBeGreaterThan(0.08);
        }
      }
    }
    expect(colors.size).toBe(3);
    const a = env.reset(3);
    const pa = bodyPos(env, 'red_cube');
    const b = env.reset(3);
    expect(b.prompt).toBe(a.prompt);
    expect(bodyPos(env, 'red_cube')).toEqual(pa);
  });

  it('rewards only the named cube in the bowl (hand-placed states)', () => {
    env.reset(0);
    const named = targetCube(env.prompt);
    const other = CUBES.find((c) => c !== named)!;
    const bowl = bodyPos(env, 'bowl');
    const settle = () => {
      for (let i = 0; i < 20; i++) env.step(env.state());
      return pickPlace.reward(env);
    };
    expect(pickPlace.reward(env)).toBe(0);
    env.placeFree(`${other}_cube_joint`, [bowl[0] - 0.03, bowl[1], 0.04]);
    expect(settle()).toBe(0);
    env.placeFree(`${named}_cube_joint`, [bowl[0] + 0.03, bowl[1], 0.04]);
    env.sim.setQvelZero();
    expect(settle()).toBe(3);
    expect(() => targetCube('put the purple cube in the bowl')).toThrow(
      /expected it to name a red, green or blue cube/,
    );
  });

  it('the expert succeeds on 3 seeds; fetching a cube the prompt does not name fails', async () => {
    for (const seed of [0, 1, 2]) expect(await runExpert(env, seed)).toBe(true);
    env.reset(0);
    const wrong = CUBES.find((c) => c !== targetCube(env.prompt))!;
    expect(await runExpert(env, 0, wrong)).toBe(false);
  });

  it('joint-velocity actions integrate over one control step', async () => {
    const vel = await SimEnv.create(pickPlace, { actionMode: 'joint_velocity' });
    try {
      const s0 = vel.reset(0).state;
      const action = new Float32Array(8);
      action[0] = 0.3;
      for (let t = 0; t < 15; t++) vel.step(action);
      // One second at 0.3 rad/s on joint 1; the others hold.
      const s1 = vel.state();
      expect(s1[0]! - s0[0]!).toBeCloseTo(0.3, 1);
      expect(Math.abs(s1[3]! - s0[3]!)).toBeLessThan(0.01);
    } finally {
      vel.free();
    }
    await expect(
      SimEnv.create(pickPlace, { actionMode: 'joint_velocity', cameras: ['nope'] }),
    ).rejects.toThrow(/camera nope: robot single_arm_sim has exterior_image_1_left, wrist_image_left/);
  });
});

describe.runIf(process.env.VLA_SLOW)('pick_place expert (slow)', () => {
  it('succeeds on at least 90% of 20 seeds', async () => {
    const env = await SimEnv.create(pickPlace);
    let ok = 0;
    for (let seed = 100; seed < 120; seed++) if (await runExpert(env, seed)) ok++;
    env.free();
    expect(ok / 20).toBeGreaterThanOrEqual(0.9);
  }, 120_000);
});

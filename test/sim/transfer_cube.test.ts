import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRobot } from '../../src/config/load.js';
import { SimEnv } from '../../src/sim/env.js';
import { WaypointExpert } from '../../src/sim/expert.js';
import { ArmIk, frameFromAxes, type Vec3 } from '../../src/sim/ik.js';
import { ALOHA_SIM } from '../../src/sim/robots.js';
import {
  CUBE_X,
  CUBE_Y,
  cubePos,
  transferCube,
  transferCubePlan,
} from '../../src/sim/tasks/transfer_cube.js';

const run = promisify(execFile);

describe('aloha_transfer_cube', () => {
  let env: SimEnv;
  beforeAll(async () => {
    env = await SimEnv.create(transferCube);
  });
  afterAll(() => env.free());

  it('the aloha_sim robot spec matches the simulated robot (14 dims, ALOHA order, its cameras)', () => {
    const spec = loadRobot('aloha_sim');
    expect(spec.state.names).toHaveLength(env.dim);
    expect(spec.action.names).toEqual(spec.state.names);
    expect(spec.state.names[6]).toBe('left_gripper');
    expect(spec.state.names[13]).toBe('right_gripper');
    expect(spec.cameras.map((c) => c.name).sort()).toEqual(Object.keys(ALOHA_SIM.cameras).sort());
    expect(spec.control_hz).toBe(ALOHA_SIM.controlHz);
  });

  it('places the cube uniformly in gym-aloha ranges, resting on the table, the same for a seed', () => {
    const seen: number[][] = [];
    for (let seed = 0; seed < 20; seed++) {
      const obs = env.reset(seed);
      const [x, y, z] = cubePos(env);
      expect(x).toBeGreaterThanOrEqual(CUBE_X[0]);
      expect(x).toBeLessThanOrEqual(CUBE_X[1]);
      expect(y).toBeGreaterThanOrEqual(CUBE_Y[0]);
      expect(y).toBeLessThanOrEqual(CUBE_Y[1]);
      expect(z).toBeCloseTo(0.02, 3);
      expect(obs.state).toHaveLength(14);
      expect(obs.state[6]).toBe(1);
      seen.push([x, y]);
    }
    expect(new Set(seen.map((p) => p.join())).size).toBe(20);
    env.reset(7);
    const again = cubePos(env);
    env.reset(7);
    expect(cubePos(env)).toEqual(again);
  });

  it('rewards hand-placed states as gym-aloha: 0 resting, 1 touched, 2 lifted, 3 both touch, 4 left holds', () => {
    const tilt = Math.SQRT1_2;
    const rot = {
      left: frameFromAxes([tilt, 0, -tilt], [0, 1, 0]),
      right: frameFromAxes([-tilt, 0, -tilt], [0, -1, 0]),
    };
    const side = (s: 'left' | 'right') => ALOHA_SIM.arms[s === 'left' ? 0 : 1]!;
    /** Put a gripper's site at `pos` with its pads squeezing a 4 cm cube centred there (or away, at home). */
    const pose = (s: 'left' | 'right', pos: Vec3 | null) => {
      const arm = side(s);
      const q = pos
        ? new ArmIk(env.sim, arm.joints, arm.site).solve({ pos, rot: rot[s] }, arm.home, []).q
        : arm.home;
      arm.joints.forEach((j, i) => {
        env.sim.setQpos([q[i]!], env.sim.jointQposAdr(j));
      });
      for (const f of arm.fingers) env.sim.setQpos([pos ? 0.0195 : arm.fingerOpen], env.sim.jointQposAdr(f));
    };
    const reward = (cube: Vec3, left: Vec3 | null, right: Vec3 | null) => {
      env.reset(0);
      pose('left', left);
      pose('right', right);
      env.placeFree('red_box_joint', cube);
      env.sim.forward();
      return transferCube.reward(env);
    };
    const off = (p: Vec3, dx: number): Vec3 => [p[0] + dx, p[1], p[2]];
    const low: Vec3 = [0.1, 0.5, 0.0198];
    const high: Vec3 = [0.0, 0.5, 0.2];
    expect(reward(low, null, null)).toBe(0);
    expect(reward(low, null, off(low, 0.011))).toBe(1);
    expect(reward(high, null, off(high, 0.011))).toBe(2);
    expect(reward(high, off(high, -0.011), off(high, 0.011))).toBe(3);
    expect(reward(low, off(low, -0.011), null)).toBe(3);
    expect(reward(high, off(high, -0.011), null)).toBe(4);
  });

  it('the scripted expert succeeds (reward 4) on 3 seeds', async () => {
    const expert = await WaypointExpert.create(env, transferCubePlan);
    try {
      for (const seed of [0, 1, 2]) {
        env.reset(seed);
        expert.reset(env);
        const rewards: number[] = [];
        for (let t = 0; t < transferCube.episodeSteps; t++)
          rewards.push(env.step(expert.act(null, env)).reward);
        expect(rewards.at(-1)).toBe(4);
        // The stages come in gym-aloha's order: lifted (2) before the left touches (3+).
        expect(rewards.indexOf(2)).toBeLessThan(rewards.indexOf(4));
      }
    } finally {
      expert.close();
    }
  });

  it('the same seed and actions give the same state hash in another process', async () => {
    const script = `
      import { SimEnv } from './src/sim/env.js';
      import { WaypointExpert } from './src/sim/expert.js';
      import { transferCube, transferCubePlan } from './src/sim/tasks/transfer_cube.js';
      const env = await SimEnv.create(transferCube);
      const ex = await WaypointExpert.create(env, transferCubePlan);
      env.reset(5); ex.reset(env);
      for (let t = 0; t < 150; t++) env.step(ex.act(null, env));
      console.log(env.sim.stateHash());`;
    const root = path.resolve(import.meta.dirname, '../..');
    const child = run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: root,
    });
    const expert = await WaypointExpert.create(env, transferCubePlan);
    env.reset(5);
    expert.reset(env);
    for (let t = 0; t < 150; t++) env.step(expert.act(null, env));
    expert.close();
    const here = env.sim.stateHash();
    expect(here).toMatch(/^[0-9a-f]{8}$/);
    expect((await child).stdout.trim()).toBe(here);
    // The hash sees the seed's cube placement.
    env.reset(5);
    const five = env.sim.stateHash();
    env.reset(6);
    expect(env.sim.stateHash()).not.toBe(five);
  });

  it('refuses an action of the wrong dimension or a non-finite one, naming it', () => {
    env.reset(0);
    expect(() => env.step(new Float32Array(8))).toThrow(/action has 8 values; aloha_sim expects 14/);
    const bad = new Float32Array(14);
    bad[3] = Number.NaN;
    expect(() => env.step(bad)).toThrow(/action\[3\] is NaN/);
  });
});

describe.runIf(process.env.VLA_SLOW)('aloha_transfer_cube expert (slow)', () => {
  it('succeeds on at least 90% of 20 seeds', async () => {
    const env = await SimEnv.create(transferCube);
    const expert = await WaypointExpert.create(env, transferCubePlan);
    let ok = 0;
    for (let seed = 100; seed < 120; seed++) {
      env.reset(seed);
      expert.reset(env);
      let r = 0;
      for (let t = 0; t < transferCube.episodeSteps; t++) r = env.step(expert.act(null, env)).reward;
      if (r === transferCube.maxReward) ok++;
    }
    expert.close();
    env.free();
    expect(ok / 20).toBeGreaterThanOrEqual(0.9);
  }, 120_000);
});

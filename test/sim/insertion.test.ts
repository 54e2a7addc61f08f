import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimEnv } from '../../src/sim/env.js';
import { WaypointExpert } from '../../src/sim/expert.js';
import { ArmIk, frameFromAxes, type Vec3 } from '../../src/sim/ik.js';
import { ALOHA_SIM } from '../../src/sim/robots.js';
import { insertion, insertionPlan, OBJ_Y, PEG_X, SOCKET_X } from '../../src/sim/tasks/insertion.js';

const bodyPos = (env: SimEnv, name: string) => env.sim.bodyPose(env.sim.id('body', name)).pos;

async function expertSucceeds(env: SimEnv, expert: WaypointExpert, seed: number): Promise<boolean> {
  env.reset(seed);
  expert.reset(env);
  for (let t = 0; t < insertion.episodeSteps; t++) {
    if (env.step(expert.act(null, env)).reward === insertion.maxReward) return true;
  }
  return false;
}

describe('aloha_insertion', () => {
  let env: SimEnv;
  beforeAll(async () => {
    env = await SimEnv.create(insertion);
  });
  afterAll(() => env.free());

  it('places peg and socket in gym-aloha ranges, resting on the table', () => {
    for (let seed = 0; seed < 10; seed++) {
      env.reset(seed);
      const peg = bodyPos(env, 'peg');
      const socket = bodyPos(env, 'socket');
      expect(peg[0]).toBeGreaterThanOrEqual(PEG_X[0]);
      expect(peg[0]).toBeLessThanOrEqual(PEG_X[1]);
      expect(socket[0]).toBeGreaterThanOrEqual(SOCKET_X[0]);
      expect(socket[0]).toBeLessThanOrEqual(SOCKET_X[1]);
      for (const p of [peg, socket]) {
        expect(p[1]).toBeGreaterThanOrEqual(OBJ_Y[0]);
        expect(p[1]).toBeLessThanOrEqual(OBJ_Y[1]);
      }
      expect(insertion.reward(env)).toBe(0);
    }
  });

  it('rewards hand-placed states as gym-aloha: 1 both touch, 2 both lifted, 3 peg meets socket, 4 pin', () => {
    const tilt = Math.SQRT1_2;
    const rot = [frameFromAxes([tilt, 0, -tilt], [0, 1, 0]), frameFromAxes([-tilt, 0, -tilt], [0, -1, 0])];
    /** Arm 0 (left) holds the socket's outer end, arm 1 (right) the peg's; `null` leaves the arm home. */
    const grip = (arm: 0 | 1, pos: Vec3 | null, halfWidth: number) => {
      const def = ALOHA_SIM.arms[arm]!;
      const q = pos
        ? new ArmIk(env.sim, def.joints, def.site).solve({ pos, rot: rot[arm]! }, def.home, []).q
        : def.home;
      def.joints.forEach((j, i) => {
        env.sim.setQpos([q[i]!], env.sim.jointQposAdr(j));
      });
      for (const f of def.fingers)
        env.sim.setQpos([pos ? halfWidth - 0.0005 : def.fingerOpen], env.sim.jointQposAdr(f));
    };
    const state = (socket: Vec3, peg: Vec3, held: boolean) => {
      env.reset(0);
      env.placeFree('socket_joint', socket);
      env.placeFree('peg_joint', peg);
      grip(0, held ? [socket[0] - 0.03, socket[1], socket[2]] : null, 0.0185);
      grip(1, held ? [peg[0] + 0.035, peg[1], peg[2]] : null, 0.01);
      env.sim.forward();
      return insertion.reward(env);
    };
    expect(state([-0.15, 0.5, 0.0185], [0.15, 0.5, 0.01], true)).toBe(1);
    expect(state([-0.15, 0.5, 0.2], [0.15, 0.5, 0.2], true)).toBe(2);
    // The peg halfway in, pressed against a side wall, short of the pin.
    expect(state([-0.15, 0.5, 0.2], [-0.15 + 0.09, 0.5 + 0.0046, 0.2], false)).toBe(3);
    // Its tip on the pin's face.
    expect(state([-0.15, 0.5, 0.2], [-0.15 - 0.0063 + 0.06, 0.5, 0.2], false)).toBe(4);
    // Touching the socket while both lie on the table is not 3.
    expect(state([-0.15, 0.5, 0.0185], [-0.15 + 0.09, 0.5 + 0.0046, 0.0185], false)).toBe(0);
  });

  it('the scripted expert inserts the peg (reward 4) on 3 seeds', async () => {
    const expert = await WaypointExpert.create(env, insertionPlan);
    try {
      for (const seed of [0, 1, 2]) expect(await expertSucceeds(env, expert, seed)).toBe(true);
    } finally {
      expert.close();
    }
  });
});

describe.runIf(process.env.VLA_SLOW)('aloha_insertion expert (slow)', () => {
  it('succeeds on at least 90% of 20 seeds', async () => {
    const env = await SimEnv.create(insertion);
    const expert = await WaypointExpert.create(env, insertionPlan);
    let ok = 0;
    for (let seed = 100; seed < 120; seed++) if (await expertSucceeds(env, expert, seed)) ok++;
    expert.close();
    env.free();
    expect(ok / 20).toBeGreaterThanOrEqual(0.9);
  }, 120_000);
});

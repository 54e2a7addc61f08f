/**
 * gym-aloha's Insertion: the left arm picks the socket, the right arm the peg, and they insert the peg
 * into the socket in mid-air. Rewards as gym-aloha: 1 both grippers touch their object, 2 both objects
 * are off the table, 3 the peg touches the socket in the air, 4 the peg touches the pin inside the
 * socket (success).
 */
import type { SimEnv, Task } from '../env.js';
import type { Plan, Waypoint } from '../expert.js';
import { add, frameFromAxes, normalize, type Vec3 } from '../ik.js';
import { ALOHA_SIM, mjcf } from '../robots.js';

export const PEG_X: [number, number] = [0.1, 0.2];
export const SOCKET_X: [number, number] = [-0.2, -0.1];
export const OBJ_Y: [number, number] = [0.4, 0.6];
const PEG_HALF = [0.06, 0.01, 0.01] as const;
const SOCKET_HALF_LEN = 0.05;
const SOCKET_OUTER = 0.0185;
/** Depth of the pin's near face from the socket's centre, along -x. */
const PIN_FACE = -0.006;
const SOCKET_WALLS = ['socket-1', 'socket-2', 'socket-3', 'socket-4'];

export const insertion: Task = {
  name: 'aloha_insertion',
  description:
    'left arm picks the socket, right arm the peg; insert the peg until it touches the pin (gym-aloha Insertion)',
  robot: ALOHA_SIM,
  scene: mjcf('aloha_insertion'),
  episodeSteps: 400,
  maxReward: 4,
  reset(env, rng) {
    env.placeFree('peg_joint', [rng.uniform(...PEG_X), rng.uniform(...OBJ_Y), PEG_HALF[2]]);
    env.placeFree('socket_joint', [rng.uniform(...SOCKET_X), rng.uniform(...OBJ_Y), SOCKET_OUTER]);
    return 'insert the peg into the socket';
  },
  reward(env) {
    const peg = env.geoms('red_peg');
    const socket = env.geoms(...SOCKET_WALLS);
    const table = env.geoms('table');
    const touchLeft = env.touching(socket, env.geoms('left/pad_left', 'left/pad_right'));
    const touchRight = env.touching(peg, env.geoms('right/pad_left', 'right/pad_right'));
    const pegOnTable = env.touching(peg, table);
    const socketOnTable = env.touching(socket, table);
    const inAir = !pegOnTable && !socketOnTable;
    if (env.touching(peg, env.geoms('pin'))) return 4;
    if (env.touching(peg, socket) && inAir) return 3;
    if (touchLeft && touchRight && inAir) return 2;
    if (touchLeft && touchRight) return 1;
    return 0;
  },
};

const pose = (env: SimEnv, body: string) => env.sim.bodyPose(env.sim.id('body', body));

const TILT = (45 * Math.PI) / 180;
const RIGHT_DIR: Vec3 = normalize([-Math.cos(TILT), 0, -Math.sin(TILT)]);
const LEFT_DIR: Vec3 = normalize([Math.cos(TILT), 0, -Math.sin(TILT)]);
const RIGHT_ROT = frameFromAxes(RIGHT_DIR, [0, -1, 0]);
const LEFT_ROT = frameFromAxes(LEFT_DIR, [0, 1, 0]);
/** Each gripper holds its object's outer end, leaving the peg's tip and the socket's mouth free. */
const PEG_GRIP = 0.035;
const SOCKET_GRIP = -0.03;
const MEET: Vec3 = [0, 0.5, 0.2];

/** Where the peg's tip (its -x end) is now. */
function pegTip(env: SimEnv): Vec3 {
  const p = pose(env, 'peg');
  return [
    p.pos[0] - PEG_HALF[0] * p.mat[0]!,
    p.pos[1] - PEG_HALF[0] * p.mat[3]!,
    p.pos[2] - PEG_HALF[0] * p.mat[6]!,
  ];
}

/** A point on the socket's axis, `dx` along it from its centre (the mouth is at +SOCKET_HALF_LEN). */
function socketAxis(env: SimEnv, dx: number): Vec3 {
  const s = pose(env, 'socket');
  return [s.pos[0] + dx * s.mat[0]!, s.pos[1] + dx * s.mat[3]!, s.pos[2] + dx * s.mat[6]!];
}

/** The right grip site target that moves the peg's tip to `tip`, keeping the grasp as it is now. */
function siteForTip(env: SimEnv, tip: Vec3): Vec3 {
  const site = env.sim.sitePose(env.sim.id('site', 'right/grip')).pos;
  const now = pegTip(env);
  return [site[0] + tip[0] - now[0], site[1] + tip[1] - now[1], site[2] + tip[2] - now[2]];
}

export const insertionPlan: Plan = (env) => {
  const peg0 = pose(env, 'peg').pos;
  const socket0 = pose(env, 'socket').pos;
  const pegGrasp: Vec3 = [peg0[0] + PEG_GRIP, peg0[1], peg0[2] + 0.006];
  const socketGrasp: Vec3 = [socket0[0] + SOCKET_GRIP, socket0[1], socket0[2] + 0.004];
  // Lifted: the socket's mouth a little left of MEET, the peg's tip a little right of it, on one line.
  const socketLift: Vec3 = [MEET[0] - SOCKET_HALF_LEN - 0.02 + SOCKET_GRIP, MEET[1], MEET[2]];
  const pegLift: Vec3 = [MEET[0] + 0.03 + PEG_HALF[0] + PEG_GRIP, MEET[1], MEET[2]];
  const L = (at: number, pos: Waypoint['pos'], gripper: number): Waypoint => ({
    at,
    pos,
    rot: LEFT_ROT,
    gripper,
  });
  const R = (at: number, pos: Waypoint['pos'], gripper: number): Waypoint => ({
    at,
    pos,
    rot: RIGHT_ROT,
    gripper,
  });
  const left = [
    L(70, add(socketGrasp, LEFT_DIR, -0.08), 1),
    L(110, socketGrasp, 1),
    L(130, socketGrasp, 0),
    L(200, socketLift, 0),
    L(400, socketLift, 0),
  ];
  const right = [
    R(70, add(pegGrasp, RIGHT_DIR, -0.08), 1),
    R(110, pegGrasp, 1),
    R(130, pegGrasp, 0),
    R(200, pegLift, 0),
    // Line the tip up with the socket's axis just outside the mouth, then slide in to the pin.
    R(250, (e) => siteForTip(e, socketAxis(e, SOCKET_HALF_LEN + 0.02)), 0),
    R(265, (e) => siteForTip(e, socketAxis(e, SOCKET_HALF_LEN + 0.015)), 0),
    R(330, (e) => siteForTip(e, socketAxis(e, PIN_FACE - 0.004)), 0),
    R(400, (e) => siteForTip(e, socketAxis(e, PIN_FACE - 0.004)), 0),
  ];
  return [left, right];
};

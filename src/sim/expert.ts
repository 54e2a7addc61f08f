/**
 * Scripted demonstrations the way ALOHA's are made: per arm, end-effector waypoints in time (each one
 * computed when its segment starts, so it can aim at where an object is now), interpolated smoothly,
 * turned into joint targets by damped-least-squares IK, with a gripper value per waypoint.
 */
import type { Agent } from './agent.js';
import type { SimEnv } from './env.js';
import { ArmIk, type EeTarget, lerp, type Vec3 } from './ik.js';
import { Sim } from './mujoco.js';
import { gripperValue } from './robots.js';

export interface Waypoint {
  /** The control step at which the arm reaches this waypoint. */
  at: number;
  /** Where the end-effector site goes; a function is evaluated when the segment towards it begins. */
  pos: Vec3 | ((env: SimEnv) => Vec3);
  rot: number[];
  /** Opening fraction: 1 open, 0 closed, whatever the robot's gripper convention. */
  gripper: number;
}

/** Per arm (in the robot's arm order), the episode's waypoints after the start pose. */
export type Plan = (env: SimEnv) => Waypoint[][];

interface ArmRun {
  ik: ArmIk;
  waypoints: Waypoint[];
  /** Where the current segment starts: the last waypoint reached, or the start pose. */
  from: { at: number; target: EeTarget; gripper: number };
  /** Index of the waypoint being approached, and its resolved pose. */
  seg: number;
  segTarget: EeTarget;
  q: Float64Array;
  home: Float64Array;
}

export class WaypointExpert implements Agent {
  private arms: ArmRun[] = [];

  private constructor(
    private readonly scratch: Sim,
    private readonly plan: Plan,
  ) {}

  static async create(env: SimEnv, plan: Plan): Promise<WaypointExpert> {
    return new WaypointExpert(await Sim.fromFile(env.scene), plan);
  }

  reset(env: SimEnv): void {
    const state = env.state();
    const plans = this.plan(env);
    let k = 0;
    this.arms = env.robot.arms.map((arm, a) => {
      const q = Float64Array.from(state.subarray(k, k + arm.joints.length));
      const gripper = gripperValue(arm, state[k + arm.joints.length]!);
      k += arm.joints.length + 1;
      const ik = new ArmIk(this.scratch, arm.joints, arm.site);
      const start = ik.forward(q);
      const run: ArmRun = {
        ik,
        waypoints: plans[a]!,
        from: { at: 0, target: start, gripper },
        seg: -1,
        segTarget: start,
        q,
        home: Float64Array.from(arm.home),
      };
      return run;
    });
  }

  act(_obs: unknown, env: SimEnv): Float32Array {
    const t = env.stepCount + 1;
    const out = new Float32Array(env.dim);
    let k = 0;
    for (const [a, run] of this.arms.entries()) {
      this.advance(run, t, env);
      const wp = run.waypoints[run.seg];
      let target = run.from.target;
      let gripper = run.from.gripper;
      if (wp) {
        const span = Math.max(1, wp.at - run.from.at);
        const s = smoothstep(Math.min(1, (t - run.from.at) / span));
        target = {
          pos: lerp(run.from.target.pos, run.segTarget.pos, s),
          rot: slerpRot(run.from.target.rot, run.segTarget.rot, s),
        };
        gripper = run.from.gripper + (wp.gripper - run.from.gripper) * s;
      }
      const r = run.ik.solve(target, run.q, [run.home]);
      run.q = r.q;
      out.set(r.q, k);
      k += r.q.length;
      out[k++] = gripperValue(env.robot.arms[a]!, gripper);
    }
    return out;
  }

  private advance(run: ArmRun, t: number, env: SimEnv): void {
    while (run.seg < run.waypoints.length && (run.seg < 0 || t > run.waypoints[run.seg]!.at)) {
      if (run.seg >= 0) {
        const done = run.waypoints[run.seg]!;
        run.from = { at: done.at, target: run.segTarget, gripper: done.gripper };
      }
      run.seg++;
      const next = run.waypoints[run.seg];
      if (!next) return;
      run.segTarget = { pos: typeof next.pos === 'function' ? next.pos(env) : next.pos, rot: next.rot };
    }
  }

  close(): void {
    this.scratch.free();
  }
}

const smoothstep = (s: number) => s * s * (3 - 2 * s);

/** Interpolates two rotations by normalised lerp of quaternions (enough for the small turns experts make). */
function slerpRot(a: number[], b: number[], s: number): number[] {
  if (s <= 0) return a;
  if (s >= 1) return b;
  const qa = matToQuat(a);
  let qb = matToQuat(b);
  if (qa[0] * qb[0] + qa[1] * qb[1] + qa[2] * qb[2] + qa[3] * qb[3] < 0) qb = qb.map((v) => -v);
  const q = qa.map((v, i) => v + (qb[i]! - v) * s);
  const n = Math.hypot(...q);
  return quatToMat(q.map((v) => v / n));
}

function matToQuat(m: number[]): number[] {
  const [m00, m01, m02, m10, m11, m12, m20, m21, m22] = m as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const tr = m00 + m11 + m22;
  if (tr > 0) {
    const s = Math.sqrt(tr + 1) * 2;
    return [0.25 * s, (m21 - m12) / s, (m02 - m20) / s, (m10 - m01) / s];
  }
  if (m00 > m11 && m00 > m22) {
    const s = Math.sqrt(1 + m00 - m11 - m22) * 2;
    return [(m21 - m12) / s, 0.25 * s, (m01 + m10) / s, (m02 + m20) / s];
  }
  if (m11 > m22) {
    const s = Math.sqrt(1 + m11 - m00 - m22) * 2;
    return [(m02 - m20) / s, (m01 + m10) / s, 0.25 * s, (m12 + m21) / s];
  }
  const s = Math.sqrt(1 + m22 - m00 - m11) * 2;
  return [(m10 - m01) / s, (m02 + m20) / s, (m12 + m21) / s, 0.25 * s];
}

function quatToMat(q: number[]): number[] {
  const [w, x, y, z] = q as [number, number, number, number];
  return [
    1 - 2 * (y * y + z * z),
    2 * (x * y - w * z),
    2 * (x * z + w * y),
    2 * (x * y + w * z),
    1 - 2 * (x * x + z * z),
    2 * (y * z - w * x),
    2 * (x * z - w * y),
    2 * (y * z + w * x),
    1 - 2 * (x * x + y * y),
  ];
}

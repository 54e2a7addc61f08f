/**
 * Damped-least-squares inverse kinematics for one arm's end-effector site, computed with MuJoCo's own
 * kinematics and Jacobians on a scratch copy of the model (so the simulated world is never disturbed).
 */
import type { Sim } from './mujoco.js';

export type Vec3 = [number, number, number];

export interface EeTarget {
  pos: Vec3;
  /** Row-major 3×3 rotation whose columns are the site's x, y, z axes in world coordinates. */
  rot: number[];
}

export interface IkResult {
  q: Float64Array;
  posErr: number;
  rotErr: number;
  converged: boolean;
}

export class ArmIk {
  private readonly qadr: number[];
  private readonly dadr: number[];
  private readonly ranges: Array<[number, number]>;
  private readonly site: number;

  /** `scratch` must be a Sim of the same model, owned by this solver's user and used for nothing else. */
  constructor(
    private readonly scratch: Sim,
    joints: string[],
    site: string,
    private readonly opts = { damping: 0.03, rotWeight: 0.4, maxIter: 60, posTol: 5e-4, rotTol: 5e-3 },
  ) {
    this.qadr = joints.map((j) => scratch.jointQposAdr(j));
    this.dadr = joints.map((j) => scratch.jointDofAdr(j));
    this.ranges = joints.map((j) => scratch.jointRange(j));
    this.site = scratch.id('site', site);
  }

  /** The site pose for joint values q. */
  forward(q: ArrayLike<number>): EeTarget {
    this.set(q);
    this.scratch.kinematics();
    const p = this.scratch.sitePose(this.site);
    return { pos: p.pos, rot: p.mat };
  }

  /** Solve from a warm start, then from `restarts` if that does not converge; the best answer wins. */
  solve(target: EeTarget, q0: ArrayLike<number>, restarts: ArrayLike<number>[] = []): IkResult {
    let best = this.descend(target, q0);
    for (const start of restarts) {
      if (best.converged) break;
      const r = this.descend(target, start);
      if (r.posErr + 0.1 * r.rotErr < best.posErr + 0.1 * best.rotErr) best = r;
    }
    return best;
  }

  private set(q: ArrayLike<number>): void {
    for (let i = 0; i < this.qadr.length; i++) this.scratch.setQpos([q[i]!], this.qadr[i]);
  }

  private descend(target: EeTarget, q0: ArrayLike<number>): IkResult {
    const n = this.qadr.length;
    const q = Float64Array.from(q0);
    const { damping, rotWeight, maxIter, posTol, rotTol } = this.opts;
    const e = new Float64Array(6);
    const J = new Float64Array(6 * n);
    let posErr = Infinity;
    let rotErr = Infinity;
    for (let it = 0; it < maxIter; it++) {
      this.set(q);
      this.scratch.kinematics();
      const { pos, mat } = this.scratch.sitePose(this.site);
      for (let k = 0; k < 3; k++) e[k] = target.pos[k]! - pos[k]!;
      const er = rotationError(mat, target.rot);
      for (let k = 0; k < 3; k++) e[3 + k] = rotWeight * er[k]!;
      posErr = Math.hypot(e[0]!, e[1]!, e[2]!);
      rotErr = Math.hypot(er[0]!, er[1]!, er[2]!);
      if (posErr < posTol && rotErr < rotTol) break;
      const { jacp, jacr } = this.scratch.siteJacobian(this.site);
      const nv = this.scratch.nv;
      for (let r = 0; r < 3; r++) {
        for (let c = 0; c < n; c++) {
          J[r * n + c] = jacp[r * nv + this.dadr[c]!]!;
          J[(3 + r) * n + c] = rotWeight * jacr[r * nv + this.dadr[c]!]!;
        }
      }
      // dq = Jᵀ (J Jᵀ + λ² I)⁻¹ e
      const A = new Float64Array(36);
      for (let i = 0; i < 6; i++) {
        for (let j = 0; j < 6; j++) {
          let s = 0;
          for (let c = 0; c < n; c++) s += J[i * n + c]! * J[j * n + c]!;
          A[i * 6 + j] = s + (i === j ? damping * damping : 0);
        }
      }
      const y = solve6(A, Float64Array.from(e));
      let norm = 0;
      const dq = new Float64Array(n);
      for (let c = 0; c < n; c++) {
        let s = 0;
        for (let i = 0; i < 6; i++) s += J[i * n + c]! * y[i]!;
        dq[c] = s;
        norm = Math.max(norm, Math.abs(s));
      }
      // Big steps overshoot through the wrist's singular poses; cap them.
      const scale = norm > 0.3 ? 0.3 / norm : 1;
      for (let c = 0; c < n; c++) {
        const [lo, hi] = this.ranges[c]!;
        q[c] = Math.min(hi, Math.max(lo, q[c]! + scale * dq[c]!));
      }
    }
    return { q, posErr, rotErr, converged: posErr < posTol * 4 && rotErr < rotTol * 4 };
  }
}

/** Half the sum of cross products of matching axes: zero when aligned, ≈ the rotation vector when close. */
export function rotationError(cur: ArrayLike<number>, want: ArrayLike<number>): Vec3 {
  const out: Vec3 = [0, 0, 0];
  for (let j = 0; j < 3; j++) {
    const a0 = cur[j]!;
    const a1 = cur[3 + j]!;
    const a2 = cur[6 + j]!;
    const b0 = want[j]!;
    const b1 = want[3 + j]!;
    const b2 = want[6 + j]!;
    out[0] += 0.5 * (a1 * b2 - a2 * b1);
    out[1] += 0.5 * (a2 * b0 - a0 * b2);
    out[2] += 0.5 * (a0 * b1 - a1 * b0);
  }
  return out;
}

/** Gaussian elimination with partial pivoting for the 6×6 damped system (always well conditioned). */
function solve6(A: Float64Array, b: Float64Array): Float64Array {
  const n = 6;
  for (let k = 0; k < n; k++) {
    let p = k;
    for (let i = k + 1; i < n; i++) if (Math.abs(A[i * n + k]!) > Math.abs(A[p * n + k]!)) p = i;
    if (p !== k) {
      for (let j = 0; j < n; j++) {
        const t = A[k * n + j]!;
        A[k * n + j] = A[p * n + j]!;
        A[p * n + j] = t;
      }
      const t = b[k]!;
      b[k] = b[p]!;
      b[p] = t;
    }
    for (let i = k + 1; i < n; i++) {
      const f = A[i * n + k]! / A[k * n + k]!;
      for (let j = k; j < n; j++) A[i * n + j]! -= f * A[k * n + j]!;
      b[i]! -= f * b[k]!;
    }
  }
  for (let i = n - 1; i >= 0; i--) {
    let s = b[i]!;
    for (let j = i + 1; j < n; j++) s -= A[i * n + j]! * b[j]!;
    b[i] = s / A[i * n + i]!;
  }
  return b;
}

/** A rotation (row-major) from its x and y axes; y is made orthogonal to x. */
export function frameFromAxes(x: Vec3, yHint: Vec3): number[] {
  const xn = normalize(x);
  const d = dot(yHint, xn);
  const y = normalize([yHint[0] - d * xn[0], yHint[1] - d * xn[1], yHint[2] - d * xn[2]]);
  const z = cross(xn, y);
  return [xn[0], y[0], z[0], xn[1], y[1], z[1], xn[2], y[2], z[2]];
}

export const dot = (a: Vec3, b: Vec3): number => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
export const cross = (a: Vec3, b: Vec3): Vec3 => [
  a[1] * b[2] - a[2] * b[1],
  a[2] * b[0] - a[0] * b[2],
  a[0] * b[1] - a[1] * b[0],
];
export function normalize(a: Vec3): Vec3 {
  const n = Math.hypot(a[0], a[1], a[2]);
  return [a[0] / n, a[1] / n, a[2] / n];
}
export const add = (a: Vec3, b: Vec3, s = 1): Vec3 => [a[0] + s * b[0], a[1] + s * b[1], a[2] + s * b[2]];
export const lerp = (a: Vec3, b: Vec3, t: number): Vec3 => [
  a[0] + (b[0] - a[0]) * t,
  a[1] + (b[1] - a[1]) * t,
  a[2] + (b[2] - a[2]) * t,
];

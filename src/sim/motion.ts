/**
 * How smoothly a robot moved: the jumps where one action chunk hands over to the next, and the mean
 * squared jerk of the executed actions. Real-time chunking is judged by these beside success: a policy
 * that succeeds by lurching at every chunk boundary wears a real arm and frightens the people near it.
 */

export interface MotionSummary {
  /** Chunk boundaries met (steps whose action came from a new chunk). */
  boundaries: number;
  /** The largest jump at a boundary: max over dims of |a_t − a_{t−1}|, in the action's units. */
  jumpMax: number;
  /** The mean of that jump over the boundaries (0 with none). */
  jumpMean: number;
  /** The same step size within chunks (every other step after the first), the scale a jump compares with. */
  stepMean: number;
  /**
   * jumpMean and stepMean over the arm's joints alone (grippers left out: their commands open and close
   * in one step whatever the execution, and a seam near one counts as ~1 in the all-dims measure).
   */
  jointJumpMean: number;
  jointStepMean: number;
  /**
   * The mean over steps and action dims of the squared third difference of the executed actions,
   * divided by the control period cubed: (action units / s³)².
   */
  meanSquaredJerk: number;
}

/** Accumulates one episode's executed actions, one step at a time. */
export class MotionStats {
  private readonly history: Float32Array[] = [];
  private boundaries = 0;
  private jumpSum = 0;
  private jumpMax = 0;
  private stepSum = 0;
  private steps = 0;
  private jointJumpSum = 0;
  private jointStepSum = 0;
  private jerkSum = 0;
  private jerkTerms = 0;

  /** `joints`: per action dim, whether it is a joint (not a gripper); all dims when left out. */
  constructor(
    private readonly controlHz: number,
    private readonly joints?: ArrayLike<boolean>,
  ) {
    if (!(controlHz > 0)) throw new Error(`control rate: expected > 0 Hz, got ${controlHz}`);
  }

  /** The action executed this step, and whether it was the first from a new chunk. */
  add(action: Float32Array, boundary: boolean): void {
    const h = this.history;
    const prev = h[h.length - 1];
    if (prev && prev.length !== action.length) {
      throw new Error(`action of ${action.length} dims after actions of ${prev.length}`);
    }
    if (prev) {
      let jump = 0;
      let joint = 0;
      for (let i = 0; i < action.length; i++) {
        const d = Math.abs(action[i]! - prev[i]!);
        jump = Math.max(jump, d);
        if (this.joints?.[i] ?? true) joint = Math.max(joint, d);
      }
      if (boundary) {
        this.boundaries++;
        this.jumpSum += jump;
        this.jointJumpSum += joint;
        this.jumpMax = Math.max(this.jumpMax, jump);
      } else {
        this.steps++;
        this.stepSum += jump;
        this.jointStepSum += joint;
      }
    }
    if (h.length >= 3) {
      const [a3, a2, a1] = [h[h.length - 3]!, h[h.length - 2]!, prev!];
      const scale = this.controlHz ** 3;
      for (let i = 0; i < action.length; i++) {
        const jerk = (action[i]! - 3 * a1[i]! + 3 * a2[i]! - a3[i]!) * scale;
        this.jerkSum += jerk * jerk;
      }
      this.jerkTerms += action.length;
    }
    h.push(action.slice());
    if (h.length > 3) h.shift();
  }

  summary(): MotionSummary {
    return {
      boundaries: this.boundaries,
      jumpMax: this.jumpMax,
      jumpMean: this.boundaries === 0 ? 0 : this.jumpSum / this.boundaries,
      stepMean: this.steps === 0 ? 0 : this.stepSum / this.steps,
      jointJumpMean: this.boundaries === 0 ? 0 : this.jointJumpSum / this.boundaries,
      jointStepMean: this.steps === 0 ? 0 : this.jointStepSum / this.steps,
      meanSquaredJerk: this.jerkTerms === 0 ? 0 : this.jerkSum / this.jerkTerms,
    };
  }
}

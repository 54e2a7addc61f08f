import { describe, expect, it } from 'vitest';
import { MotionStats } from '../../src/sim/motion.js';

describe('MotionStats', () => {
  it('measures the jump at each chunk boundary as the largest joint step', () => {
    const m = new MotionStats(10);
    m.add(Float32Array.of(0, 0), false);
    m.add(Float32Array.of(0.1, 0), false);
    m.add(Float32Array.of(0.1, -0.5), true);
    m.add(Float32Array.of(0.1, -0.5), false);
    m.add(Float32Array.of(0.3, -0.5), true);
    const s = m.summary();
    expect(s.boundaries).toBe(2);
    expect(s.jumpMax).toBeCloseTo(0.5, 6);
    expect(s.jumpMean).toBeCloseTo(0.35, 6);
    // The other steps: 0.1, then 0 (the first action has no step before it).
    expect(s.stepMean).toBeCloseTo(0.05, 6);
  });

  it('takes jerk as the third difference over the period cubed: constant for a cubic, zero for a line', () => {
    const hz = 50;
    const cubic = new MotionStats(hz);
    const line = new MotionStats(hz);
    for (let t = 0; t < 20; t++) {
      const s = t / hz;
      cubic.add(Float32Array.of(s ** 3), false);
      line.add(Float32Array.of(2 * s + 1), false);
    }
    // d³(s³)/ds³ = 6 everywhere, so the mean squared jerk is 36 (float32 actions: a loose tolerance).
    expect(cubic.summary().meanSquaredJerk).toBeCloseTo(36, -1);
    expect(line.summary().meanSquaredJerk).toBeLessThan(1e-3);
    expect(line.summary().boundaries).toBe(0);
  });

  it('measures the joints apart from the gripper', () => {
    // Dim 1 is a gripper: it closes (a step of 1) right at a seam.
    const m = new MotionStats(10, [true, false]);
    m.add(Float32Array.of(0, 0), false);
    m.add(Float32Array.of(0.1, 0), false);
    m.add(Float32Array.of(0.15, 1), true);
    const s = m.summary();
    expect(s.jumpMean).toBeCloseTo(1, 6);
    expect(s.jointJumpMean).toBeCloseTo(0.05, 6);
    expect(s.jointStepMean).toBeCloseTo(0.1, 6);
  });

  it('refuses actions that change dimension', () => {
    const m = new MotionStats(15);
    m.add(Float32Array.of(0, 0), false);
    expect(() => m.add(Float32Array.of(0), false)).toThrow('action of 1 dims after actions of 2');
  });
});

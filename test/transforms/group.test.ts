import { describe, expect, it } from 'vitest';
import { TrainConfig } from '../../src/config/schema.js';
import { deltaActions } from '../../src/transforms/delta.js';
import { frames } from '../../src/transforms/frames.js';
import { applyInputs, applyOutputs, inputTransforms, transformGroup } from '../../src/transforms/group.js';
import type { NormStats } from '../../src/transforms/normalize.js';

const MASK = [true, true, true, true, true, true, false, true, true, true, true, true, true, false];
const stats: NormStats = {
  state: { mean: Array.from({ length: 14 }, (_, d) => d / 20), std: Array.from({ length: 14 }, () => 0.7) },
  actions: {
    mean: Array.from({ length: 14 }, (_, d) => -d / 30),
    std: Array.from({ length: 14 }, () => 0.4),
  },
};
const config = (data: Record<string, unknown>) =>
  TrainConfig.parse({ name: 'g', robot: 'aloha', model: { preset: 'tiny' }, data });
const DIMS = { stateDim: 14, actionDim: 14 };
const MODEL = { normStats: stats, cameras: 2, imageSize: 8 };

describe('transform group (openpi transforms.Group)', () => {
  it('composes per config: the adapter with adapt_to_pi, delta actions with a mask, the model side with stats', () => {
    const names = (data: Record<string, unknown>, model?: typeof MODEL) =>
      inputTransforms(transformGroup(config(data), DIMS, model)).map((t) => t.name);
    expect(names({})).toEqual([]);
    expect(names({ adapt_to_pi: true, delta_action_mask: MASK }, MODEL)).toEqual([
      'ALOHA adapter',
      'delta actions',
      'normalize',
      'camera images',
    ]);
    expect(names({ delta_action_mask: [false, false] }, MODEL)).toEqual(['normalize', 'camera images']);
    const g = transformGroup(config({ adapt_to_pi: true, delta_action_mask: MASK }), DIMS, MODEL);
    expect([g.perFrame, g.perChunk, g.model].map((s) => s.map((t) => t.name))).toEqual([
      ['ALOHA adapter'],
      ['delta actions'],
      ['normalize', 'camera images'],
    ]);
  });

  it('refuses delta masks longer than the actions or on dims the state lacks', () => {
    expect(() => transformGroup(config({ delta_action_mask: [...MASK, true] }), DIMS)).toThrow(
      'config g: data.delta_action_mask: expected at most 14 entries (action dims), got 15',
    );
    expect(() =>
      transformGroup(config({ delta_action_mask: MASK }), { stateDim: 12, actionDim: 14 }),
    ).toThrow('config g: data.delta_action_mask: delta dims must exist in the state (12 dims)');
  });

  it("the outputs invert the inputs: a chunk through the inputs and back is the robot's chunk again", () => {
    const g = transformGroup(config({ adapt_to_pi: true, delta_action_mask: MASK }), DIMS, MODEL);
    const B = 2;
    const H = 3;
    const row = (i: number) => (i % 14 === 6 || i % 14 === 13 ? 0.3 + (i % 5) / 10 : Math.sin(i));
    const state = Float32Array.from({ length: B * 14 }, (_, i) => row(i + 3));
    const recorded = Float32Array.from({ length: B * H * 14 }, (_, i) => row(i));
    const f = frames({ size: B, stateDim: 14, actionDim: 14, horizon: H, state: state.slice() });
    f.actions = Float64Array.from(recorded);
    f.cameraSource = (b, c, out, offset) => {
      if (c === 1) return false;
      out.fill(b + 1, offset, offset + 8 * 8 * 3);
      return true;
    };
    applyInputs(inputTransforms(g), f);
    expect(Array.from(f.imageMask!)).toEqual([1, 0, 1, 0]);
    expect(f.images![0]).toBe(1);
    expect(f.images![2 * 8 * 8 * 3]).toBe(2);
    // Serving: the state from the robot, the model's (here: training's) normalized chunk back out.
    const served = frames({ size: B, stateDim: 14, actionDim: 14, horizon: H, state: state.slice() });
    applyInputs(g.perFrame, served);
    served.modelActions = f.modelActions!.slice();
    applyOutputs(g, served);
    for (let i = 0; i < recorded.length; i++) expect(served.actions![i]).toBeCloseTo(recorded[i]!, 5);
  });

  it('delta actions touch only the masked dims, exactly (an unmasked −0 stays −0)', () => {
    const delta = deltaActions([true, false, true])!;
    const state = Float32Array.of(0.5, 7, -0.25);
    const f = frames({ size: 1, stateDim: 3, actionDim: 3, horizon: 2, state });
    f.actions = Float64Array.of(1, -0, 2, 3, 4, -1);
    delta.input(f);
    expect(Array.from(f.actions)).toEqual([0.5, -0, 2.25, 2.5, 4, -0.75]);
    expect(Object.is(f.actions[1], -0)).toBe(true);
    delta.output!(f);
    expect(Array.from(f.actions)).toEqual([1, -0, 2, 3, 4, -1]);
    expect(Object.is(f.actions[1], -0)).toBe(true);
    expect(deltaActions([false, false])).toBeNull();
  });
});

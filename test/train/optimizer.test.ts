import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { installFused, removeFused } from '../../src/backend/native/fused.js';
import { Rng } from '../../src/model/rng.js';
import { adamwUpdate, emaUpdate, globalNorm, initAdam } from '../../src/train/optimizer.js';

/**
 * The optimizer's fused WASM kernels (one pass per weight for AdamW, the EMA and the gradient norm)
 * against its tfjs ops: three steps from the same start, weights of sizes on and off the 4 SIMD lanes.
 */
describe('optimizer on the fused kernels', () => {
  beforeAll(async () => {
    await setupBackend({ backend: 'wasm', native: true });
  });
  afterAll(() => removeFused());

  function run(fused: boolean) {
    const rng = new Rng(9);
    const shapes: Record<string, number[]> = { a: [37, 5], b: [3], c: [256, 128], d: [1] };
    const params = new Map<string, tf.Variable>();
    const ema = new Map<string, tf.Variable>();
    for (const [name, shape] of Object.entries(shapes)) {
      const size = shape.reduce((x, y) => x * y, 1);
      const w = tf.tensor(rng.normals(size), shape);
      const e = tf.tensor(rng.normals(size), shape);
      params.set(name, tf.variable(w, true, `${fused}/${name}`));
      ema.set(name, tf.variable(e, false, `${fused}/ema/${name}`));
      tf.dispose([w, e]);
    }
    const state = initAdam(params, `opt-${fused}`);
    const norms: number[] = [];
    for (let step = 1; step <= 3; step++) {
      const grads: tf.NamedTensorMap = {};
      for (const [name, p] of params) grads[name] = tf.tensor(rng.normals(p.size, step), p.shape);
      norms.push(globalNorm(grads));
      // A fixed scale, so that the two runs' updates see the same one (the norms differ in low bits).
      const clipScale = step === 3 ? 0.5 : 1;
      adamwUpdate(params, grads, state, {
        lr: 1e-3 * step,
        b1: 0.9,
        b2: 0.95,
        eps: 1e-8,
        weightDecay: step === 2 ? 0 : 1e-4,
        step,
        clipScale,
      });
      emaUpdate(ema, params, 0.99);
      tf.dispose(Object.values(grads));
    }
    const read = (m: Map<string, tf.Variable>) => [...m.values()].map((v) => Array.from(v.dataSync()));
    const out = { norms, params: read(params), m: read(state.m), v: read(state.v), ema: read(ema) };
    tf.dispose([...params.values(), ...ema.values(), ...state.m.values(), ...state.v.values()]);
    return out;
  }

  it('takes the same steps as the tfjs ops (same operations, same order)', async () => {
    removeFused();
    const ops = run(false);
    expect(await installFused()).toBeNull();
    const tensors = tf.memory().numTensors;
    const fused = run(true);
    expect(tf.memory().numTensors).toBe(tensors);
    // The norm sums in float64 where tfjs sums in float32: the same to float32 rounding.
    for (const [i, n] of fused.norms.entries())
      expect(Math.abs(n - ops.norms[i]!) / ops.norms[i]!).toBeLessThan(1e-5);
    // The updates: the same float32 operations in the same order, equal to the last bit.
    expect(fused.params).toEqual(ops.params);
    expect(fused.m).toEqual(ops.m);
    expect(fused.v).toEqual(ops.v);
    expect(fused.ema).toEqual(ops.ema);
  });
});

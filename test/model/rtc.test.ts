/**
 * Inference-time real-time chunking: a chunk sampled with guidance towards the committed prefix keeps
 * to it over the delay (and less over the decaying overlap), where an unguided chunk from the same
 * noise does not; with all weights 0 it is the unguided chunk.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { ModelConfig, TrainConfig } from '../../src/config/schema.js';
import { committedTimes } from '../../src/model/committed.js';
import { modelDims } from '../../src/model/config.js';
import { initParams, Pi0, rtcWeights } from '../../src/model/pi0.js';
import { Rng } from '../../src/model/rng.js';
import { expectLossFalls, randomInputs, trainedModulation } from './helpers.js';

beforeAll(async () => {
  await setupBackend({ backend: 'wasm' });
});

/** Mean squared distance of steps [from, to) of two [B, H, A] chunks. */
function stepsMse(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  h: number,
  ad: number,
  from: number,
  to: number,
) {
  const batch = a.length / (h * ad);
  let s = 0;
  for (let i = 0; i < batch; i++)
    for (let t = from; t < to; t++)
      for (let k = 0; k < ad; k++) {
        const j = (i * h + t) * ad + k;
        s += (a[j]! - b[j]!) ** 2;
      }
  return s / (batch * (to - from) * ad);
}

describe('real-time chunking (guided sampling)', () => {
  it('weights: 1 over the delay, decaying over the overlap, 0 after', () => {
    const w = rtcWeights(10, 3, 7);
    expect([...w.subarray(0, 3)]).toEqual([1, 1, 1]);
    for (let i = 3; i < 6; i++) expect(w[i + 1]!).toBeLessThan(w[i]!);
    expect(w[3]!).toBeLessThan(1);
    expect(w[6]!).toBeGreaterThan(0);
    expect([...w.subarray(7)]).toEqual([0, 0, 0]);
  });

  it.each(['pi0', 'pi05'])(
    '%s: the new chunk keeps to the committed prefix over the delay',
    async (variant) => {
      const d = modelDims(ModelConfig.parse({ preset: 'tiny', variant, action_horizon: 10, action_dim: 6 }));
      const model = new Pi0(d);
      const w = initParams(d, 3);
      const rng = new Rng(4);
      const b = 2;
      const inp = randomInputs(d, rng, ['go', 'stop']);
      const per = d.horizon * d.actionDim;
      // The previous chunk, executed 3 steps since: its remaining 7 steps are the committed prefix.
      const prev = await model.sample(w, inp, rng.normals(b * per), { numSteps: 5, cache: false }).data();
      const s = 3;
      const prefix = new Float32Array(b * per);
      for (let i = 0; i < b; i++)
        prefix.set(prev.subarray(i * per + s * d.actionDim, (i + 1) * per), i * per);
      const delay = 2;
      const weights = new Float32Array(b * d.horizon);
      for (let i = 0; i < b; i++) weights.set(rtcWeights(d.horizon, delay, d.horizon - s), i * d.horizon);
      const noise = rng.normals(b * per);
      const plain = await model.sample(w, inp, noise, { numSteps: 5 }).data();
      const guided = await model
        .sample(w, inp, noise, { numSteps: 5, guidance: { prefix, weights, maxGuidance: 5 } })
        .data();
      const [ad, h] = [d.actionDim, d.horizon];
      const plainErr = stepsMse(plain, prefix, h, ad, 0, delay);
      const guidedErr = stepsMse(guided, prefix, h, ad, 0, delay);
      expect(guidedErr).toBeLessThan(plainErr * 0.2);
      // Past the overlap nothing is asked: the chunk is free there.
      expect(stepsMse(guided, plain, h, ad, h - s, h)).toBeGreaterThan(0);
      // Zero weights: exactly the unguided chunk (up to float rounding of the guided path).
      const none = await model
        .sample(w, inp, noise, {
          numSteps: 5,
          guidance: { prefix, weights: new Float32Array(b * h), maxGuidance: 5 },
        })
        .data();
      expect(stepsMse(none, plain, h, ad, 0, h)).toBeLessThan(1e-9);
      console.log(
        `${variant}: delay steps' MSE to the prefix, unguided ${plainErr.toExponential(2)}, guided ${guidedErr.toExponential(2)}`,
      );
      tf.dispose([...w.values()]);
    },
  );
});

describe('training-time real-time chunking (train.rtc)', () => {
  it('committed steps take flow time 0 and no loss; a chunk sampled after them keeps them exactly', async () => {
    expect([...committedTimes(new Float32Array([0.5, 0.25]), Int32Array.from([2, 0]), 3)]).toEqual([
      0, 0, 0.5, 0.25, 0.25, 0.25,
    ]);
    for (const variant of ['pi0', 'pi05']) {
      const d = modelDims(ModelConfig.parse({ preset: 'tiny', variant, action_horizon: 6, action_dim: 4 }));
      const model = new Pi0(d);
      const rng = new Rng(2);
      const w = trainedModulation(initParams(d, 1), rng);
      const b = 2;
      const inp = randomInputs(d, rng, ['a', 'b']);
      const per = d.horizon * d.actionDim;
      const actions = rng.normals(b * per);
      const noise = rng.normals(b * per);
      const t = new Float32Array([0.4, 0.7]);
      const pad = new Uint8Array(b * d.horizon);
      const delays = Int32Array.from([3, 1]);
      // A committed step is its action (flow time 0) and is not scored: its noise cannot matter.
      const loss = (n: Float32Array) =>
        tf.tidy(() => model.flowLoss(w, inp, actions, pad, n, t, { delays }).dataSync()[0]!);
      const other = noise.slice();
      for (let i = 0; i < b; i++) other.set(rng.normals(delays[i]! * d.actionDim), i * per);
      expect(loss(other)).toBe(loss(noise));
      const free = noise.slice();
      free[per - 1]! += 1; // a free step's noise does
      expect(loss(free)).not.toBe(loss(noise));
      const committed = { actions: rng.normals(b * per), delays };
      const x = await model.sample(w, inp, noise, { numSteps: 4, committed }).data();
      for (let i = 0; i < b; i++) {
        const n = delays[i]! * d.actionDim;
        expect([...x.subarray(i * per, i * per + n)]).toEqual([
          ...committed.actions.subarray(i * per, i * per + n),
        ]);
      }
      const unconditioned = await model.sample(w, inp, noise, { numSteps: 4 }).data();
      expect(stepsMse(x, unconditioned, d.horizon, d.actionDim, 3, d.horizon)).toBeGreaterThan(0);
      tf.dispose([...w.values()]);
    }
  });

  it('trains with drawn delays: the loss falls', () => {
    const config = TrainConfig.parse({
      name: 'rtc_test',
      robot: 'aloha',
      model: { preset: 'tiny', variant: 'pi05', action_horizon: 6, action_dim: 8, num_steps: 2 },
      train: {
        batch_size: 4,
        rtc: { max_delay: 3 },
        schedule: { warmup_steps: 1, peak_lr: 3e-3, decay_lr: 1e-4 },
      },
    });
    expectLossFalls(config);
  });
});

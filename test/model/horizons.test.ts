/**
 * A robot whose chunk is shorter than the model's (`data.action_horizon` < `model.action_horizon`, as
 * in a mixture of robots): its action tokens past its chunk are hidden from every token, so its chunk,
 * and its loss, are what a model of its own horizon computes with the same weights; on every sampler.
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activeBackend, setupBackend } from '../../src/backend/index.js';
import { ModelConfig } from '../../src/config/schema.js';
import { modelDims } from '../../src/model/config.js';
import { keyBiasInto, MASKED } from '../../src/model/masks.js';
import { NativeSampler, nativeSamplingWeights } from '../../src/model/native-sampler.js';
import { initParams, Pi0, prepareInputs } from '../../src/model/pi0.js';
import { Rng } from '../../src/model/rng.js';
import { trainedModulation } from './helpers.js';
import { withTrainedFilm } from './trained.js';

const [H, SHORT, A] = [8, 5, 6];

const dims = (variant: 'pi0' | 'pi05', horizon: number) =>
  modelDims(ModelConfig.parse({ preset: 'tiny', variant, action_horizon: horizon, action_dim: A }));

/** The long model's weights, its action positions cut to the short model's chunk. */
function shortWeights(w: Map<string, tf.Tensor>): Map<string, tf.Tensor> {
  return new Map(
    [...w].map(([n, t]) => [
      n,
      n === 'expert/action_pos_embedding' ? tf.slice(t, [0, 0], [SHORT, t.shape[1]!]) : tf.clone(t),
    ]),
  );
}

function observation(d: ReturnType<typeof dims>, b: number, horizons?: Int32Array) {
  const rng = new Rng(3);
  return prepareInputs(d, {
    batchSize: b,
    cameras: 2,
    imageSize: d.imageSize,
    images: new Uint8Array(b * 2 * d.imageSize * d.imageSize * 3).map(() => rng.nextU32() & 255),
    imageMask: Uint8Array.from({ length: b * 2 }, (_, i) => (i === 1 ? 0 : 1)),
    state: rng.normals(b * 4),
    stateDim: 4,
    prompts: Array.from({ length: b }, (_, i) => `task ${'x'.repeat(i)}`),
    ...(horizons && { horizons }),
  });
}

/** Each sample's first SHORT steps of a [B, H, A] chunk. */
function firstSteps(x: ArrayLike<number>, b: number, h: number): Float32Array {
  const out = new Float32Array(b * SHORT * A);
  for (let i = 0; i < b; i++) out.set(Array.from(x).slice(i * h * A, (i * h + SHORT) * A), i * SHORT * A);
  return out;
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

beforeAll(async () => {
  await setupBackend({ backend: 'wasm', native: true });
});
afterAll(async () => {
  await setupBackend({ backend: 'wasm' });
});

describe('a robot chunk shorter than the model’s', () => {
  it('keyBiasInto hides each sample’s suffix tokens past its length', () => {
    const out = new Float32Array(2 * 5);
    expect(keyBiasInto(out, Uint8Array.of(1, 1, 1, 1), 2, 2, 3, Int32Array.of(3, 1))).toBe(true);
    expect(Array.from(out)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, MASKED, MASKED]);
    expect(keyBiasInto(out, Uint8Array.of(1, 1, 1, 1), 2, 2, 3, Int32Array.of(3, 3))).toBe(false);
  });

  for (const variant of ['pi0', 'pi05'] as const) {
    it(`${variant}: its chunk is a ${SHORT}-step model's, on TensorFlow.js's samplers (cached, uncached) and the native one; its loss too`, async () => {
      const long = dims(variant, H);
      const short = dims(variant, SHORT);
      const w = trainedModulation(withTrainedFilm(initParams(long, 1), 2), new Rng(4));
      const ws = shortWeights(w);
      const [mLong, mShort] = [new Pi0(long), new Pi0(short)];
      const b = 3;
      // Sample 1 has the whole chunk; samples 0 and 2 are the short robot's.
      const horizons = Int32Array.of(SHORT, H, SHORT);
      const inp = observation(long, b, horizons);
      const inpShort = observation(short, b);
      const noise = new Rng(5).normals(b * H * A);
      const noiseShort = firstSteps(noise, b, H);
      const want = await mShort.sample(ws, inpShort, noiseShort, { cache: true }).data();
      const cases: Array<[string, Float32Array]> = [
        ['cached', (await mLong.sample(w, inp, noise, { cache: true }).data()) as Float32Array],
        ['uncached', (await mLong.sample(w, inp, noise, { cache: false }).data()) as Float32Array],
      ];
      if (activeBackend()?.native) {
        const sw = nativeSamplingWeights(mLong, w);
        const ns = await NativeSampler.create(long, sw, { threads: 2, cameras: 2, batch: b });
        try {
          cases.push(['native', ns.sample(inp, noise, long.numSteps, (t) => mLong.timeEmbedding(t))]);
        } finally {
          await ns.dispose();
          tf.dispose([...sw.values()]);
        }
      }
      for (const [name, got] of cases) {
        const first = firstSteps(got, b, H);
        // The short robot's samples: the short model's chunk; the whole-chunk sample: not (it sees 8 tokens).
        for (const i of [0, 2]) {
          const at = (x: Float32Array) => x.subarray(i * SHORT * A, (i + 1) * SHORT * A);
          expect(maxAbsDiff(at(first), at(want as Float32Array)), name).toBeLessThan(2e-5);
        }
        expect(
          maxAbsDiff(
            first.subarray(SHORT * A, 2 * SHORT * A),
            (want as Float32Array).subarray(SHORT * A, 2 * SHORT * A),
          ),
          name,
        ).toBeGreaterThan(1e-4);
      }
      // Its flow loss, the steps past its chunk padding, is the short model's on its own chunk.
      const rng = new Rng(6);
      const actions = rng.normals(b * H * A);
      const pad = new Uint8Array(b * H);
      for (const i of [0, 2]) pad.fill(1, i * H + SHORT, (i + 1) * H);
      const t = Float32Array.of(0.3, 0.7, 0.9);
      const inp1 = observation(long, b, Int32Array.of(SHORT, SHORT, SHORT));
      pad.fill(1, H + SHORT, 2 * H);
      const loss = mLong.flowLoss(w, inp1, actions, pad, noise, t);
      const lossShort = mShort.flowLoss(
        ws,
        inpShort,
        firstSteps(actions, b, H),
        new Uint8Array(b * SHORT),
        noiseShort,
        t,
      );
      expect(Math.abs((await loss.data())[0]! - (await lossShort.data())[0]!)).toBeLessThan(1e-5);
      tf.dispose([loss, lossShort, ...w.values(), ...ws.values()]);
    });
  }

  it('refuses horizons of the wrong count or outside 1..H, naming them', () => {
    const d = dims('pi0', H);
    expect(() => observation(d, 2, Int32Array.of(SHORT))).toThrow(
      'horizons: expected 2 values (one per sample), got 1',
    );
    expect(() => observation(d, 2, Int32Array.of(SHORT, 9))).toThrow(
      'horizons[1]: expected 1..8 (model.action_horizon), got 9',
    );
  });
});

import os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activeBackend, setupBackend } from '../../src/backend/index.js';
import { TrainConfig } from '../../src/config/schema.js';
import { modelDims } from '../../src/model/config.js';
import { batchObservation, initParams } from '../../src/model/pi0.js';
import { Rng } from '../../src/model/rng.js';
import { partBounds, Replicas, type StepInputs, sliceInputs } from '../../src/train/data-parallel.js';
import { oneCoreHint, Trainer } from '../../src/train/trainer.js';
import { syntheticSource } from './source.js';

const H = 6;

function config(train: Record<string, unknown> = {}) {
  return TrainConfig.parse({
    name: 'dp_test',
    robot: 'aloha',
    model: { preset: 'tiny', action_horizon: H, action_dim: 8, num_steps: 3 },
    train: {
      batch_size: 5,
      flow_samples: 2,
      state_dropout: 0.5,
      schedule: { warmup_steps: 1, peak_lr: 1e-3, decay_lr: 1e-4 },
      ...train,
    },
  });
}

beforeAll(async () => {
  await setupBackend({ backend: 'wasm' });
});

const trainers: Trainer[] = [];
afterAll(() => {
  for (const t of trainers) t.dispose();
});

describe('data-parallel training', () => {
  it('cuts a batch into contiguous parts, the smallest first', () => {
    expect(partBounds(5, 3)).toEqual([
      [0, 1],
      [1, 3],
      [3, 5],
    ]);
    expect(partBounds(16, 2)).toEqual([
      [0, 8],
      [8, 16],
    ]);
  });

  it('with one replica on a machine of several cores, says how to train on them', () => {
    const one = { wasm: 1, blas: 1 };
    expect(oneCoreHint('wasm', 32, 2, one)).toMatch(
      /^training on 1 of 2 cores: train\.data_parallel: 2 \(or --set train\.data_parallel=2\) trains on 2,/,
    );
    // As many replicas as cores, with at least 8 samples each and at most 16.
    expect(oneCoreHint('cpu', 32, 8, one)).toMatch(/train\.data_parallel: 4 /);
    expect(oneCoreHint('wasm', 512, 64, one)).toMatch(/train\.data_parallel: 16 /);
    // Nothing to say: one core, a batch too small to cut, threads already in use, or tfjs-node.
    expect(oneCoreHint('wasm', 32, 1, one)).toBeNull();
    expect(oneCoreHint('wasm', 15, 2, one)).toBeNull();
    expect(oneCoreHint('wasm', 32, 2, { wasm: 1, blas: 2 })).toBeNull();
    expect(oneCoreHint('wasm', 32, 2, { wasm: 2, blas: 1 })).toBeNull();
    expect(oneCoreHint('tensorflow', 32, 2, one)).toBeNull();
  });

  it('startDataParallel with one replica returns the hint for this machine, or nothing', async () => {
    const t = new Trainer(
      config({ data_parallel: 1, batch_size: 16 }),
      initParams(modelDims(config().model), 0),
    );
    trainers.push(t);
    const info = activeBackend();
    const want = oneCoreHint(tf.getBackend(), 16, os.availableParallelism(), {
      wasm: info?.threads ?? 1,
      blas: info?.native?.threads ?? 1,
    });
    expect(await t.startDataParallel()).toBe(want);
  });

  it('slices every input by sample, noise and flow times draw by draw', () => {
    const data = syntheticSource({ imageSize: 32, horizon: H });
    const batch = data.batchAt(0, 3, 0);
    const k = 2;
    const per = H * 8;
    const x: StepInputs = {
      obs: batchObservation(batch),
      actions: Float32Array.from({ length: 3 * per }, (_, i) => i),
      actionPad: batch.actionPad,
      noise: Float32Array.from({ length: k * 3 * per }, (_, i) => i),
      times: Float32Array.from([0, 1, 2, 3, 4, 5]),
    };
    const part = sliceInputs(x, 1, 3, k);
    expect(part.obs.batchSize).toBe(2);
    expect(part.obs.prompts).toEqual(batch.prompts.slice(1));
    expect(part.obs.images).toEqual(batch.images.slice(batch.images.length / 3));
    expect(part.obs.state).toEqual(batch.state.slice(batch.stateDim));
    expect(Array.from(part.times)).toEqual([1, 2, 4, 5]);
    expect(part.noise[0]).toBe(per);
    expect(part.noise[2 * per]).toBe(4 * per);
    expect(part.actions[0]).toBe(per);
  });

  // With train.rtc each part's committed steps are not scored either: a part's weight is what its own
  // loss divided by, not a count made again beside it.
  it.each([
    ['entries', null],
    ['samples', null],
    ['entries', { max_delay: 3 }],
  ])(
    'takes the same step as one thread, the loss averaged over %s (rtc %o): loss, gradient norm, weights and EMA',
    async (reduction, rtc) => {
      const data = syntheticSource({ imageSize: 32, horizon: H, frames: 8 });
      const r = { loss_reduction: reduction, rtc };
      const one = new Trainer(config(r), initParams(modelDims(config().model), 0));
      const three = new Trainer(config({ ...r, data_parallel: 3 }), initParams(modelDims(config().model), 0));
      trainers.push(one, three);
      for (const t of [one, three]) t.checkSource(data);
      expect(await three.startDataParallel()).toMatch(/3 replicas .* parts of 1, 2, 2/);
      const tensors = tf.memory().numTensors;
      let padded = 0;
      for (let s = 0; s < 3; s++) {
        // From step 1, as a mixture's batch: each sample's source, so each sample's part of the loss too.
        const batch = {
          ...data.batchAt(s, 5, 0),
          ...(s > 0 && { sources: Uint8Array.from([0, 1, 1, 0, 1]) }),
        };
        padded += batch.actionPad.reduce((a, p) => a + p, 0);
        const a = one.trainStep(batch);
        const b = three.trainStep(batch);
        expect(b.loss).toBeCloseTo(a.loss, 5);
        expect(Math.abs(b.gradNorm - a.gradNorm) / a.gradNorm).toBeLessThan(1e-5);
        if (s === 0) {
          expect([a.perSample, b.perSample]).toEqual([undefined, undefined]);
          continue;
        }
        const sum = (x: Float64Array) => x.reduce((p, q) => p + q, 0);
        const meanOf = (p: { err: Float64Array; kept: Float64Array }) =>
          reduction === 'entries'
            ? sum(p.err) / sum(p.kept)
            : sum(p.err.map((e, i) => (p.kept[i]! > 0 ? e / p.kept[i]! : 0))) /
              p.kept.filter((k) => k > 0).length;
        for (const r of [a, b]) expect(meanOf(r.perSample!)).toBeCloseTo(a.loss, 5);
        expect([...b.perSample!.kept]).toEqual([...a.perSample!.kept]);
        for (let i = 0; i < 5; i++) expect(b.perSample!.err[i]).toBeCloseTo(a.perSample!.err[i]!, 3);
      }
      // Chunks running past an episode's end weigh each part by its unpadded steps.
      expect(padded).toBeGreaterThan(0);
      expect(tf.memory().numTensors).toBe(tensors);
      const w1 = one.inferenceParams();
      const w3 = three.inferenceParams();
      let worst = 0;
      for (const [name, v] of w1) {
        const x = v.dataSync();
        const y = w3.get(name)!.dataSync();
        for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
      }
      expect(worst).toBeLessThan(1e-5);
    },
    90_000,
  );

  it('a replica that fails names itself and why', async () => {
    const cfg = config();
    const trainer = new Trainer(cfg, initParams(modelDims(cfg.model), 0));
    trainers.push(trainer);
    const reps = await Replicas.start(1, cfg, trainer.params, trainer.trainable);
    try {
      const data = syntheticSource({ imageSize: 32, horizon: H });
      const batch = data.batchAt(0, 2, 0);
      const rng = new Rng(1);
      const x: StepInputs = {
        obs: { ...batchObservation(batch), images: batch.images.subarray(1) },
        actions: new Float32Array(2 * H * 8),
        actionPad: batch.actionPad,
        noise: rng.normals(2 * H * 8),
        times: Float32Array.from([0.5, 0.5]),
      };
      reps.dispatch(trainer.params, [x], { samples: 1 });
      expect(() => reps.collect()).toThrow(
        /data-parallel replica 1 failed: images: expected 2×2×32×32×3 bytes/,
      );
    } finally {
      await reps.close();
    }
  }, 60_000);

  it("with WASM's own kernels, updated weights reach the next step's products (XNNPACK caches them)", async () => {
    // The pack off: WASM multiplies on XNNPACK, which packs a weight once per tensor. Weights written
    // in place would be multiplied as they were; a restored trainer (new tensors) then drifts away.
    await setupBackend({ backend: 'wasm', native: false });
    try {
      const cfg = config({ flow_samples: 1 });
      const data = syntheticSource({ imageSize: 32, horizon: H, frames: 8 });
      const run = async (restoreAt: number | null, replicas: number) => {
        const c = config({ flow_samples: 1, data_parallel: replicas });
        let t = new Trainer(c, initParams(modelDims(cfg.model), 0));
        t.checkSource(data);
        await t.startDataParallel();
        for (let s = 0; s < 3; s++) {
          if (s === restoreAt) {
            const state = await t.state();
            t.dispose();
            t = new Trainer(c, initParams(modelDims(cfg.model), 0));
            t.checkSource(data);
            t.restore(state);
          }
          t.trainStep(data.batchAt(s, 5, 0));
        }
        const w = t.params.get('vision/patch_embed/kernel')!.dataSync().slice();
        t.dispose();
        return w;
      };
      const straight = await run(null, 1);
      expect(await run(2, 1)).toEqual(straight);
      const replicated = await run(null, 2);
      let worst = 0;
      for (let i = 0; i < straight.length; i++)
        worst = Math.max(worst, Math.abs(replicated[i]! - straight[i]!));
      expect(worst).toBeLessThan(1e-6);
    } finally {
      await setupBackend({ backend: 'wasm' });
    }
  }, 90_000);

  it('asks for no more replicas than samples in a batch', () => {
    expect(() => config({ batch_size: 2, data_parallel: 3 })).toThrow(
      /data_parallel|at most batch_size \(2\)/,
    );
  });
});

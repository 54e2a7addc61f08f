/**
 * The π0.5-style variant (`model.variant: pi05`): the flow time through adaptive RMSNorm in the action
 * expert, the state as 256-bin tokens in the prefix, action tokens alone in the suffix.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { activeBackend, setupBackend } from '../../src/backend/index.js';
import { ModelConfig, TrainConfig } from '../../src/config/schema.js';
import { ChunkSampler } from '../../src/model/chunk-sampler.js';
import { checkRobotFits, modelDims } from '../../src/model/config.js';
import { STATE_BINS, stateBin } from '../../src/model/inputs.js';
import { initParams, Pi0, paramSpecs, prepareInputs } from '../../src/model/pi0.js';
import { Rng } from '../../src/model/rng.js';
import { writeSafetensors } from '../../src/model/safetensors.js';
import { loadWeightsInto } from '../../src/train/init.js';
import { expectFiniteDifferences, expectLossFalls, trainedModulation } from './helpers.js';

const dims = (over: Record<string, unknown> = {}) =>
  modelDims(
    ModelConfig.parse({ preset: 'tiny', variant: 'pi05', action_horizon: 6, action_dim: 6, ...over }),
  );

function inputs(d: ReturnType<typeof dims>, b: number, seed: number) {
  const rng = new Rng(seed);
  const obs = {
    batchSize: b,
    cameras: 2,
    imageSize: d.imageSize,
    images: new Uint8Array(b * 2 * d.imageSize * d.imageSize * 3).map(() => rng.nextU32() & 255),
    imageMask: new Uint8Array(b * 2).fill(1),
    state: rng.normals(b * 4),
    stateDim: 4,
    prompts: Array.from({ length: b }, (_, i) => `task ${'x'.repeat(i)}`),
  };
  obs.imageMask[1] = 0;
  return prepareInputs(d, obs);
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

beforeAll(async () => {
  await setupBackend({ backend: 'wasm' });
});

describe('π0.5 variant', () => {
  it('has state tokens in the prefix, adaptive norms in the expert, no state token in the suffix', () => {
    const specs = paramSpecs(dims());
    expect(specs.get('prefix/state_embedding')!.shape).toEqual([STATE_BINS, 64]);
    expect(specs.get('expert/block_0/ln1/mod/kernel')!.shape[1]).toBe(
      3 * specs.get('expert/final_norm/scale')!.shape[0]!,
    );
    expect(specs.has('expert/state_proj/kernel')).toBe(false);
    expect(paramSpecs(modelDims(ModelConfig.parse({ preset: 'tiny' }))).has('prefix/state_embedding')).toBe(
      false,
    );
    expect(new Pi0(dims()).suffixLen).toBe(6);
    // 256 bins over [-1, 1]; outside goes to the end bins, NaN to the middle.
    expect([stateBin(-1), stateBin(-0.999), stateBin(0), stateBin(0.999), stateBin(5), stateBin(-5)]).toEqual(
      [0, 0, 128, 255, 255, 0],
    );
    expect(stateBin(Number.NaN)).toBe(128);
  });

  it('the KV-cached sampler gives the uncached path’s actions, batched, with a masked camera', async () => {
    const d = dims({ depth: 2 });
    const model = new Pi0(d);
    const w = trainedModulation(initParams(d, 1), new Rng(2));
    const inp = inputs(d, 3, 3);
    const noise = new Rng(4).normals(3 * d.horizon * d.actionDim);
    expect(model.fastSampling()).toBe(false);
    const cached = model.sample(w, inp, noise, { numSteps: 3 });
    const uncached = model.sample(w, inp, noise, { numSteps: 3, cache: false });
    const [a, b] = [await cached.data(), await uncached.data()];
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-4);
    expect(Math.abs(a[0]! - noise[0]!)).toBeGreaterThan(1e-3);
    tf.dispose([cached, uncached, ...w.values()]);
  });

  it('reads the state through its tokens: another state, other actions', async () => {
    const d = dims();
    const model = new Pi0(d);
    const w = trainedModulation(initParams(d, 5), new Rng(6));
    const inp = inputs(d, 1, 7);
    const noise = new Rng(8).normals(d.horizon * d.actionDim);
    const a = model.sample(w, inp, noise, { numSteps: 2 });
    const moved = { ...inp, state: inp.state.map((v) => v + 0.5) };
    const b = model.sample(w, moved, noise, { numSteps: 2 });
    expect(maxAbsDiff(await a.data(), await b.data())).toBeGreaterThan(1e-4);
    tf.dispose([a, b, ...w.values()]);
  });

  it('tokenises only the state dims model.state_tokens names: a shorter prefix, the padding never read', async () => {
    const d = dims({ state_tokens: 4 });
    expect(d.stateTokens).toBe(4);
    expect(dims().stateTokens).toBe(6);
    expect(modelDims(ModelConfig.parse({ preset: 'tiny' })).stateTokens).toBe(0);
    expect(paramSpecs(d).get('prefix/state_pos_embedding')!.shape).toEqual([4, 64]);
    const model = new Pi0(d);
    const w = trainedModulation(initParams(d, 5), new Rng(6));
    const inp = inputs(d, 2, 7);
    const full = new Pi0(dims());
    const wf = trainedModulation(initParams(dims(), 5), new Rng(6));
    const [short, long] = [model.embedPrefix(w, inp), full.embedPrefix(wf, inp)];
    expect(long.length - short.length).toBe(2);
    tf.dispose([short.x, long.x, ...wf.values()]);
    const noise = new Rng(8).normals(2 * d.horizon * d.actionDim);
    const a = model.sample(w, inp, noise, { numSteps: 2 });
    // Values in the padding (which prepareInputs leaves 0) change nothing; the state's own dims do.
    const padded = { ...inp, state: inp.state.map((v, i) => (i % d.actionDim >= 4 ? v + 0.7 : v)) };
    const b = model.sample(w, padded, noise, { numSteps: 2 });
    const moved = { ...inp, state: inp.state.map((v, i) => (i % d.actionDim === 3 ? v + 0.7 : v)) };
    const c = model.sample(w, moved, noise, { numSteps: 2 });
    const [av, bv, cv] = [await a.data(), await b.data(), await c.data()];
    expect(maxAbsDiff(av, bv)).toBe(0);
    expect(maxAbsDiff(av, cv)).toBeGreaterThan(1e-4);
    tf.dispose([a, b, c, ...w.values()]);
  });

  it('refuses a state with more dims than model.state_tokens, state_tokens above action_dim or for π0, naming them', () => {
    expect(() => inputs(dims({ state_tokens: 3 }), 1, 1)).toThrow(
      "state dim 4 is larger than the model's state_tokens 3 (the dims pi05 tokenises)",
    );
    expect(() =>
      checkRobotFits(dims({ state_tokens: 3 }), { stateDim: 4, actionDim: 4, cameras: 2 }),
    ).toThrow(
      "model.state_tokens 3 is smaller than the robot's state dim 4: expected state_tokens >= 4 (each state dim is a prefix token of pi05)",
    );
    expect(() =>
      ModelConfig.parse({ preset: 'tiny', variant: 'pi05', action_dim: 6, state_tokens: 7 }),
    ).toThrow(
      'state_tokens 7 is larger than action_dim 6: expected at most 6 (the state is padded to action_dim)',
    );
    expect(() => ModelConfig.parse({ preset: 'tiny', state_tokens: 4 })).toThrow(
      "state_tokens 4 is for the variants whose state is prefix tokens (pi05, pi0_fast); pi0's state is one suffix token: expected null",
    );
  });

  it('gradients agree with finite differences, the adaptive norms’ modulation included', async () => {
    await setupBackend({ backend: 'cpu', native: true });
    try {
      const d = dims({ depth: 2, action_horizon: 4, action_dim: 4 });
      const model = new Pi0(d);
      const w = trainedModulation(initParams(d, 0), new Rng(9));
      const inp = inputs(d, 2, 10);
      const rng = new Rng(11);
      const actions = rng.normals(2 * d.horizon * d.actionDim);
      const noise = rng.normals(actions.length);
      const t = new Float32Array([0.3, 0.8]);
      const pad = new Uint8Array(2 * d.horizon);
      const names = [
        'prefix/state_embedding',
        'expert/time_mlp_in/kernel',
        'expert/block_0/ln1/mod/kernel',
        'expert/block_1/ln2/mod/bias',
        'expert/final_norm/mod/kernel',
        'expert/block_1/mlp/down/kernel',
      ];
      const vars = new Map(names.map((n) => [n, tf.variable(w.get(n)!)]));
      const weights = new Map([...w, ...vars]);
      const loss = () => model.flowLoss(weights, inp, actions, pad, noise, t);
      expectFiniteDifferences(vars, loss);
    } finally {
      await setupBackend({ backend: 'wasm' });
    }
  });

  it('samples on the native sampler where the kernel pack is on, else on TensorFlow.js, saying why', async () => {
    const d = dims();
    const model = new Pi0(d);
    const w = initParams(d, 12);
    const chunks = new ChunkSampler(model, w);
    const out = await chunks.sample(inputs(d, 1, 13), new Rng(14).normals(d.horizon * d.actionDim));
    expect(out.length).toBe(d.horizon * d.actionDim);
    // Where the kernel pack is off (VLA_NATIVE=0), that is the reason given.
    if (activeBackend()?.native) expect(chunks.describe()).toMatch(/^native sampler \(\d threads?\)$/);
    else expect(chunks.describe()).toBe('tfjs sampler (the native kernel pack is off)');
    await chunks.dispose();
    tf.dispose([...w.values()]);
  });
});

describe('π0.5 training and checkpoints', () => {
  it('trains a few steps (loss falls), and refuses to initialise from a π0 checkpoint, naming both', async () => {
    const config = TrainConfig.parse({
      name: 'pi05_test',
      robot: 'aloha',
      model: { preset: 'tiny', variant: 'pi05', action_horizon: 6, action_dim: 8, num_steps: 2 },
      train: { batch_size: 4, schedule: { warmup_steps: 1, peak_lr: 3e-3, decay_lr: 1e-4 } },
    });
    expectLossFalls(config);
    const d = modelDims(config.model);

    const dir = mkdtempSync(path.join(os.tmpdir(), 'vla-pi0-ckpt-'));
    try {
      const pi0 = modelDims(ModelConfig.parse({ preset: 'tiny', action_horizon: 6, action_dim: 8 }));
      const w = initParams(pi0, 0);
      writeSafetensors(
        path.join(dir, 'params.safetensors'),
        new Map(
          [...w].map(([n, t]) => [
            n,
            { dtype: 'F32' as const, shape: t.shape, data: t.dataSync() as Float32Array },
          ]),
        ),
        {},
      );
      writeFileSync(path.join(dir, 'config.yaml'), 'name: x\nrobot: aloha\nmodel:\n  preset: tiny\n');
      expect(() => loadWeightsInto(initParams(d, 1), dir, { variant: 'pi05' })).toThrow(
        `${dir}: a model.variant pi0 checkpoint; the config's model is pi05: expected a pi05 checkpoint to initialise from`,
      );
      tf.dispose([...w.values()]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

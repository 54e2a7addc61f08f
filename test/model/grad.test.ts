import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { ModelConfig } from '../../src/config/schema.js';
import { modelDims } from '../../src/model/config.js';
import { gelu, rmsNorm } from '../../src/model/layers.js';
import { initParams, Pi0, prepareInputs } from '../../src/model/pi0.js';
import { Rng } from '../../src/model/rng.js';
import { expectFiniteDifferences } from './helpers.js';

describe('gradients', () => {
  // With the BLAS kernel pack the gradients use transposed matmuls; without it, explicit transposes.
  it.each([
    [true, false],
    [false, false],
    [true, true],
    [true, 'attention'],
  ] as const)(
    'agree with finite differences of the flow loss (native kernels: %s, prompt FiLM: %s)',
    async (native, film) => {
      await setupBackend({ backend: 'cpu', native });
      const d = modelDims(
        ModelConfig.parse({
          preset: 'tiny',
          action_horizon: 4,
          action_dim: 4,
          depth: 2,
          prompt_film: film !== false,
          prompt_film_pool: film === 'attention' ? 'attention' : 'mean',
        }),
      );
      const model = new Pi0(d);
      const w = initParams(d, 0);
      const rng = new Rng(1);
      if (film) {
        // As if trained: the FiLM starts as zeros, where the prompt's gradient through it vanishes.
        const k = w.get('vision/film/kernel')!;
        w.set('vision/film/kernel', tf.tensor(rng.normals(k.size, 0.3), k.shape));
        k.dispose();
      }
      if (film === 'attention') {
        // Likewise the pool's query: at zeros every token weighs alike.
        const q = w.get('vision/film/query')!;
        w.set('vision/film/query', tf.tensor(rng.normals(q.size, 0.5), q.shape));
        q.dispose();
      }
      const b = 2;
      const inp = prepareInputs(d, {
        batchSize: b,
        cameras: 1,
        imageSize: d.imageSize,
        images: new Uint8Array(b * d.imageSize * d.imageSize * 3).map(() => rng.nextU32() & 255),
        imageMask: new Uint8Array(b).fill(1),
        state: rng.normals(b * 3),
        stateDim: 3,
        prompts: ['go', 'stop now'],
      });
      const actions = rng.normals(b * d.horizon * d.actionDim);
      const noise = rng.normals(actions.length);
      const t = new Float32Array([0.3, 0.8]);
      const pad = new Uint8Array(b * d.horizon);
      const names = [
        'vision/patch_embed/kernel',
        'prefix/token_embedding',
        'prefix/block_0/attn/q/kernel',
        'prefix/block_1/attn/v/kernel',
        'expert/action_in/kernel',
        'expert/time_mlp_in/kernel',
        'expert/block_1/mlp/down/kernel',
        ...(film ? ['vision/film/kernel', 'vision/film/bias'] : []),
        ...(film === 'attention' ? ['vision/film/query'] : []),
      ];
      const vars = new Map(names.map((n) => [n, tf.variable(w.get(n)!)]));
      const weights = new Map([...w, ...vars]);
      const loss = () => model.flowLoss(weights, inp, actions, pad, noise, t);
      expectFiniteDifferences(vars, loss as () => tf.Scalar);
    },
  );
});

describe('written-out gradients', () => {
  // rmsNorm and gelu carry their own gradients (tfjs's go through Mean's, which fills a tensor of ones in
  // JavaScript per call); they must equal what tfjs derives from the plain formulas.
  const plainRmsNorm = (x: tf.Tensor2D, scale: tf.Tensor) =>
    tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.mul(x, x), -1, true), 1e-6))), tf.add(scale, 1));
  const plainGelu = (x: tf.Tensor) => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)));
  const maxRel = (a: tf.Tensor, b: tf.Tensor) => {
    const x = a.dataSync();
    const y = b.dataSync();
    const scale = Math.max(...Array.from(y, Math.abs));
    let worst = 0;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!) / scale);
    return worst;
  };

  it.each(['cpu', 'wasm'] as const)('rmsNorm and gelu match tfjs autodiff on %s', async (backend) => {
    await setupBackend({ backend, native: false });
    const rng = new Rng(4);
    const x = tf.tensor2d(rng.normals(37 * 24, 2), [37, 24]);
    const scale = tf.tensor1d(rng.normals(24, 0.3));
    const dy = tf.tensor2d(rng.normals(37 * 24), [37, 24]);
    const ours = tf.grads((a: tf.Tensor, s: tf.Tensor) => rmsNorm(a as tf.Tensor2D, s))([x, scale], dy);
    const ref = tf.grads((a: tf.Tensor, s: tf.Tensor) => plainRmsNorm(a as tf.Tensor2D, s))([x, scale], dy);
    expect(maxRel(rmsNorm(x, scale), plainRmsNorm(x, scale))).toBe(0);
    expect(maxRel(ours[0]!, ref[0]!)).toBeLessThan(1e-5);
    expect(maxRel(ours[1]!, ref[1]!)).toBeLessThan(1e-5);
    const g = tf.grad(gelu)(x, dy);
    const gRef = tf.grad(plainGelu)(x, dy);
    expect(maxRel(gelu(x), plainGelu(x))).toBe(0);
    expect(maxRel(g, gRef)).toBeLessThan(1e-5);
  });
});

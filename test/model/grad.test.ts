import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { ModelConfig } from '../../src/config/schema.js';
import { modelDims } from '../../src/model/config.js';
import { initParams, Pi0, prepareInputs } from '../../src/model/pi0.js';
import { Rng } from '../../src/model/rng.js';

describe('gradients', () => {
  // With the BLAS kernel pack the gradients use transposed matmuls; without it, explicit transposes.
  it.each([
    [true, false],
    [false, false],
    [true, true],
  ])(
    'agree with finite differences of the flow loss (native kernels: %s, prompt FiLM: %s)',
    async (native, film) => {
      await setupBackend({ backend: 'cpu', native });
      const d = modelDims(
        ModelConfig.parse({ preset: 'tiny', action_horizon: 4, action_dim: 4, depth: 2, prompt_film: film }),
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
      ];
      const vars = new Map(names.map((n) => [n, tf.variable(w.get(n)!)]));
      const weights = new Map([...w, ...vars]);
      const loss = () => model.flowLoss(weights, inp, actions, pad, noise, t);
      const { grads } = tf.variableGrads(loss as () => tf.Scalar, [...vars.values()]);
      const eps = 1e-2;
      for (const [name, v] of vars) {
        const g = grads[v.name]!.dataSync();
        // the entry with the largest gradient, so the finite difference is well above float32 noise
        let idx = 0;
        for (let i = 0; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[idx]!)) idx = i;
        const base = v.dataSync().slice();
        const at = (delta: number) => {
          const p = base.slice();
          p[idx]! += delta;
          v.assign(tf.tensor(p, v.shape));
          const l = tf.tidy(loss);
          const out = l.dataSync()[0]!;
          l.dispose();
          return out;
        };
        const numeric = (at(eps) - at(-eps)) / (2 * eps);
        v.assign(tf.tensor(base, v.shape));
        expect(Math.abs(numeric - g[idx]!) / Math.abs(g[idx]!), name).toBeLessThan(0.03);
      }
    },
  );
});

/** What the model tests share: random inputs, trained-looking adaptive norms, a gradient check, a short training. */
import * as tf from '@tensorflow/tfjs-core';
import { expect } from 'vitest';
import type { TrainConfig } from '../../src/config/schema.js';
import { type ModelDims, modelDims } from '../../src/model/config.js';
import type { ModelInputs } from '../../src/model/inputs.js';
import { initParams, prepareInputs } from '../../src/model/pi0.js';
import type { Rng } from '../../src/model/rng.js';
import { Trainer } from '../../src/train/trainer.js';
import { syntheticSource } from '../train/source.js';

/** A batch of random images (all cameras present unless masked after), a 4-dim state and the prompts. */
export function randomInputs(d: ModelDims, rng: Rng, prompts: string[], cameras = 1): ModelInputs {
  const b = prompts.length;
  return prepareInputs(d, {
    batchSize: b,
    cameras,
    imageSize: d.imageSize,
    images: new Uint8Array(b * cameras * d.imageSize * d.imageSize * 3).map(() => rng.nextU32() & 255),
    imageMask: new Uint8Array(b * cameras).fill(1),
    state: rng.normals(b * 4),
    stateDim: 4,
    prompts,
  });
}

/**
 * π0.5's adaptive norms as if trained: their modulation is zeros at init (each block the identity, the
 * action tokens unable to see each other), so tests that need the blocks to act make it random.
 */
export function trainedModulation(w: Map<string, tf.Tensor>, rng: Rng): Map<string, tf.Tensor> {
  for (const [name, t] of w) {
    if (!name.includes('/mod/')) continue;
    t.dispose();
    w.set(name, tf.tensor(rng.normals(t.size, 0.3), t.shape));
  }
  return w;
}

/**
 * Each variable's gradient against central finite differences of `loss` at its largest entry (so the
 * difference stands well above float32 noise), within 3%.
 */
export function expectFiniteDifferences(
  vars: Map<string, tf.Variable>,
  loss: () => tf.Scalar,
  eps = 1e-2,
): void {
  const { grads } = tf.variableGrads(loss, [...vars.values()]);
  for (const [name, v] of vars) {
    const g = grads[v.name]!.dataSync();
    let idx = 0;
    for (let i = 0; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[idx]!)) idx = i;
    const base = v.dataSync().slice();
    const at = (delta: number) => {
      const p = base.slice();
      p[idx]! += delta;
      v.assign(tf.tensor(p, v.shape));
      return tf.tidy(() => loss().dataSync()[0]!);
    };
    const numeric = (at(eps) - at(-eps)) / (2 * eps);
    v.assign(tf.tensor(base, v.shape));
    expect(Math.abs(numeric - g[idx]!) / Math.abs(g[idx]!), name).toBeLessThan(0.03);
  }
  tf.dispose(Object.values(grads));
}

/** Sixteen steps on one synthetic batch of 4: the loss falls by at least a fifth. */
export function expectLossFalls(config: TrainConfig): void {
  const trainer = new Trainer(config, initParams(modelDims(config.model), 0));
  const data = syntheticSource({ imageSize: trainer.dims.imageSize, horizon: trainer.dims.horizon });
  trainer.checkSource(data);
  const batch = data.batchAt(0, 4, 0);
  const first = trainer.trainStep(batch).loss;
  let last = first;
  for (let i = 0; i < 15; i++) last = trainer.trainStep(batch).loss;
  expect(last).toBeLessThan(first * 0.8);
  trainer.dispose();
}

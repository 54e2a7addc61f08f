// Test helpers: parameters as if trained, where initialisation leaves a part of the model doing nothing.
import * as tf from '@tensorflow/tfjs-core';
import type { TrainConfig } from '../../src/config/schema.js';
import { modelDims } from '../../src/model/config.js';
import type { FastTokenizer } from '../../src/model/fast-tokenizer.js';
import { initParams } from '../../src/model/pi0.js';
import { Rng } from '../../src/model/rng.js';
import { saveCheckpoint } from '../../src/train/checkpoint.js';
import type { NormStats } from '../../src/transforms/normalize.js';

/** The prompt's FiLM (and its pool's query) as if trained (zeros at init, where it does nothing). */
export function withTrainedFilm(w: Map<string, tf.Tensor>, seed: number): Map<string, tf.Tensor> {
  const rng = new Rng(seed);
  for (const name of ['vision/film/kernel', 'vision/film/bias', 'vision/film/query']) {
    const t = w.get(name);
    if (!t) continue;
    w.set(name, tf.tensor(rng.normals(t.size, 0.3), t.shape));
    t.dispose();
  }
  return w;
}

/**
 * A checkpoint of freshly initialised weights (`initParams(dims, seed)`) saved under `runDir` as a
 * training run would save it: for tests that serve or load a model without training one.
 */
export function untrainedCheckpoint(
  runDir: string,
  config: TrainConfig,
  stats: NormStats,
  seed: number,
  data: { cameras: string[]; stateDim: number; actionDim: number },
  step = 0,
  fast?: { tokenizer: FastTokenizer; edit?: (values: Map<string, Float32Array>) => void },
): string {
  const params = initParams(modelDims(config.model), seed, fast?.tokenizer);
  const values = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  for (const [name, t] of params) {
    values.set(name, t.dataSync() as Float32Array);
    shapes.set(name, t.shape);
    t.dispose();
  }
  fast?.edit?.(values);
  return saveCheckpoint(
    runDir,
    config,
    stats,
    {
      step,
      seed: 0,
      params: values,
      raw: null,
      adamM: new Map(),
      adamV: new Map(),
      shapes,
      data,
    },
    'float32',
    fast?.tokenizer ?? null,
  );
}

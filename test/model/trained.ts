// Test helpers: parameters as if trained, where initialisation leaves a part of the model doing nothing.
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '../../src/model/rng.js';

/** The prompt's FiLM as if trained (zeros at init, where it does nothing). */
export function withTrainedFilm(w: Map<string, tf.Tensor>, seed: number): Map<string, tf.Tensor> {
  const rng = new Rng(seed);
  for (const name of ['vision/film/kernel', 'vision/film/bias']) {
    const t = w.get(name);
    if (!t) continue;
    w.set(name, tf.tensor(rng.normals(t.size, 0.3), t.shape));
    t.dispose();
  }
  return w;
}

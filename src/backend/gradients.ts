import { register } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';

/**
 * tfjs-core's Node build registers no gradients (the `@tensorflow/tfjs` umbrella package does that,
 * and it is not a dependency here): without this, `tf.grads` fails with "gradient function not found
 * for Sum". Loads tfjs-core's own gradient definitions from its ES-module build, whose registrations
 * land in the same global registry the Node build reads. Idempotent; about 1–2 s the first time.
 */
export async function registerGradients(): Promise<void> {
  if (tf.getGradient('BatchMatMul') !== undefined) return;
  register('./tfjs-core-esm-hooks.mjs', import.meta.url);
  await import('@tensorflow/tfjs-core/dist/register_all_gradients.js');
  if (tf.getGradient('BatchMatMul') === undefined) {
    throw new Error('registering tfjs-core gradients failed: BatchMatMul still has none');
  }
}

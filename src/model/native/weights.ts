/**
 * The weights the native sampler reads, by variant: π0's are sampler.ts's `samplingWeights`; π0.5's and
 * π0-FAST's the same images and prefix (sampler.ts's `prefixSamplingWeights`) and blocks, the state's
 * tokens (`prefix/state_embedding`, `prefix/state_pos_embedding`), and what each one's expert adds.
 *
 * π0-FAST: `expert/token_embedding` and `expert/token_pos_embedding` make a token; `expert/token_out`
 * [E, vocab] is the token table read backwards (tied), with the final norm's gain and the 1/√E scale
 * folded in, and `expert/token_out_bias` its bias.
 *
 * π0.5:
 *
 * - `prefix/state_embedding`, `prefix/state_pos_embedding`: the state's tokens.
 * - `expert/action_in`, `expert/action_pos` (the position embedding + action_in's bias): action tokens.
 * - `expert/time_mlp_in|out` (+ `_bias`): the flow time's embedding to the condition.
 * - `expert/modulation` [E, modulationWidth] (+ `_bias`): every adaptive norm's `mod` linear side by
 *   side (variant.ts's order), so one product makes a chunk's modulations. Each norm's own gain is
 *   folded into its scale: rms(x)·(1 + s)·(1 + m) = rms(x)·(1 + m'), m' = (1 + s)·(1 + m) − 1, linear in
 *   the condition (the kernel's scale columns times 1 + s, the bias (1 + s)·(1 + b) − 1), so the
 *   expert's blocks and `expert/action_out` keep their kernels unscaled.
 */
import * as tf from '@tensorflow/tfjs-core';
import { param as get, mergedKernel, type Params } from '../params.js';
import {
  blockSamplingWeights,
  makeSamplingWeights,
  prefixSamplingWeights,
  type SamplerModel,
  type SamplingWeights,
  samplingWeights,
} from '../sampler.js';

/** The native sampler's weights for `model` (the caller owns and disposes them). */
export function nativeSamplingWeights(model: SamplerModel, w: Params): SamplingWeights {
  const d = model.dims;
  if (d.variant === 'pi0') return samplingWeights(model, w);
  const e = d.expertWidth;
  const kernel = (base: string) => mergedKernel(w, base, d.lora);
  return makeSamplingWeights(w, (keep) => {
    prefixSamplingWeights(d, w, keep);
    keep('prefix/state_embedding', get(w, 'prefix/state_embedding'));
    keep('prefix/state_pos_embedding', get(w, 'prefix/state_pos_embedding'));
    if (d.variant === 'pi0_fast') {
      for (let i = 0; i < d.depth; i++) blockSamplingWeights(d, w, keep, `expert/block_${i}`, false);
      const table = get(w, 'expert/token_embedding');
      keep('expert/token_embedding', table);
      keep('expert/token_pos_embedding', get(w, 'expert/token_pos_embedding'));
      const gain = tf.reshape(tf.add(get(w, 'expert/final_norm/scale'), 1), [-1, 1]);
      keep('expert/token_out', tf.mul(tf.transpose(table), tf.mul(gain, 1 / Math.sqrt(e))));
      keep('expert/token_out_bias', get(w, 'expert/token_out/bias'));
      return;
    }
    keep('expert/action_in', kernel('expert/action_in'));
    keep('expert/action_pos', tf.add(get(w, 'expert/action_pos_embedding'), get(w, 'expert/action_in/bias')));
    keep('expert/time_mlp_in', kernel('expert/time_mlp_in'));
    keep('expert/time_mlp_in_bias', get(w, 'expert/time_mlp_in/bias'));
    keep('expert/time_mlp_out', kernel('expert/time_mlp_out'));
    keep('expert/time_mlp_out_bias', get(w, 'expert/time_mlp_out/bias'));
    const kernels: tf.Tensor[] = [];
    const biases: tf.Tensor[] = [];
    const modulation = (norm: string) => {
      const gain = tf.add(get(w, `${norm}/scale`), 1);
      const k = kernel(`${norm}/mod`);
      const bias = get(w, `${norm}/mod/bias`);
      const rest = k.shape[1] - e;
      kernels.push(tf.mul(tf.slice(k, [0, 0], [e, e]), gain), tf.slice(k, [0, e], [e, rest]));
      biases.push(tf.sub(tf.mul(gain, tf.add(tf.slice(bias, [0], [e]), 1)), 1), tf.slice(bias, [e], [rest]));
    };
    for (let i = 0; i < d.depth; i++) {
      const g = `expert/block_${i}`;
      blockSamplingWeights(d, w, keep, g, false, false);
      modulation(`${g}/ln1`);
      modulation(`${g}/ln2`);
    }
    modulation('expert/final_norm');
    keep('expert/modulation', tf.concat(kernels, 1));
    keep('expert/modulation_bias', tf.concat(biases));
    keep('expert/action_out', kernel('expert/action_out'));
    keep('expert/action_out_bias', get(w, 'expert/action_out/bias'));
  });
}

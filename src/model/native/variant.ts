/**
 * What the native engine runs for each variant: the few places π0, π0.5 and π0-FAST part ways, as data
 * the one program (program.ts) reads, its block loop shared. A variant is a description here (plus its
 * sampling weights, weights.ts), not an engine of its own. See pi0.ts (Pi0.embedPrefix, embedSuffix,
 * norm, sampleTokens) for the model these describe.
 */
import type { ModelDims } from '../config.js';

export interface NativeVariant {
  /**
   * Tokens after the prompt in the prefix: π0.5's state, each of its first `stateTokens` dims a token of
   * its own from 256 bins (`prefix/state_embedding` + `prefix/state_pos_embedding`); π0 none.
   */
  prefixStateTokens: number;
  /**
   * Tokens before the actions in the suffix: π0's state token (`expert/state_proj`), which sees only the
   * prefix and itself, so it runs once a chunk and its keys and values join the cache; π0.5 none.
   */
  suffixStateTokens: 0 | 1;
  /**
   * How an action token is made: of x_t, which π0 mixes with the flow time in the time MLP
   * (silu(x·action_in + time)·time_out + pos) and π0.5 projects alone (x·action_in + pos); or π0-FAST's
   * `decoded` tokens, one a step, each the token table's row of the last one chosen + its position, the
   * next chosen from the table read backwards (fast-decode.ts), no flow steps.
   */
  actionTokens: 'time-mlp' | 'projection' | 'decoded';
  /**
   * How the expert's norms are conditioned: plain RMSNorm (π0, the gain folded into the next kernel),
   * or π0.5's adaptive RMSNorm: the flow time through the time MLP is the condition, and each of its
   * blocks' norms takes a scale, a shift and a gate on the residual from it (the final norm a scale
   * and a shift), per sample, or per token where committed steps sit at flow time 0.
   */
  expertNorms: 'plain' | 'adaptive';
}

export function nativeVariant(d: ModelDims): NativeVariant {
  if (d.variant === 'pi05')
    return {
      prefixStateTokens: d.stateTokens,
      suffixStateTokens: 0,
      actionTokens: 'projection',
      expertNorms: 'adaptive',
    };
  if (d.variant === 'pi0_fast')
    return {
      prefixStateTokens: d.stateTokens,
      suffixStateTokens: 0,
      actionTokens: 'decoded',
      expertNorms: 'plain',
    };
  return { prefixStateTokens: 0, suffixStateTokens: 1, actionTokens: 'time-mlp', expertNorms: 'plain' };
}

/** Tokens after the prefix in an observation's cache: π0's state token and the actions, or π0-FAST's decoded tokens. */
export function suffixTokens(d: ModelDims, v: NativeVariant): number {
  return v.actionTokens === 'decoded' ? d.fast.maxTokens + 1 : v.suffixStateTokens + d.horizon;
}

/**
 * Adaptive norms: floats of one condition's modulations (weights.ts's `expert/modulation` columns): per
 * expert block ln1's then ln2's scale | shift | gate, then the final norm's scale | shift, each E wide.
 */
export function modulationWidth(d: ModelDims): number {
  return (6 * d.depth + 2) * d.expertWidth;
}

/** Where block `layer`'s norm (`ln1`, `ln2`) or the final norm (layer = depth) starts in a modulation row. */
export function modulationAt(d: ModelDims, layer: number, norm: 'ln1' | 'ln2' | 'final'): number {
  return (6 * layer + (norm === 'ln2' ? 3 : 0)) * d.expertWidth;
}

/** Why the native sampler cannot run here (a one-line reason), or null when it can. */
export function nativeSamplerUnavailable(dims: ModelDims, parts: number): string | null {
  if (typeof SharedArrayBuffer === 'undefined') return 'no SharedArrayBuffer';
  if (dims.heads % parts !== 0 || dims.mlpDim % parts !== 0 || dims.expertMlpDim % parts !== 0)
    return `${dims.heads} heads or the MLPs do not split over ${parts} threads`;
  return null;
}

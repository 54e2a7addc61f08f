import * as tf from '@tensorflow/tfjs-core';

/** Named weights in a stable order; names are paths such as `prefix/block_3/attn/q/kernel`. */
export type Params = Map<string, tf.Tensor>;

/**
 * A name pattern as configs write them (`prefix/*`, `*\/attn/*\/kernel`): `*` matches any run of
 * characters, `/` included, `?` one character; the whole name must match.
 */
export function globToRegExp(pattern: string): RegExp {
  const body = pattern
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${body}$`);
}

export function matchesAny(name: string, patterns: string[]): boolean {
  return patterns.some((p) => globToRegExp(p).test(name));
}

/** The parameter `name`, or an error naming it. */
export function param(w: Params, name: string): tf.Tensor {
  const t = w.get(name);
  if (!t) throw new Error(`model parameter ${name} is missing`);
  return t;
}

/**
 * The kernel of layer `base` (`prefix/block_0/attn/q`) with its LoRA adapters merged in,
 * W + A·B·alpha/rank; W itself where the layer has none. Allocates where it merges.
 */
export function mergedKernel(
  w: Params,
  base: string,
  lora: { rank: number; alpha: number } | null | undefined,
): tf.Tensor2D {
  const kernel = param(w, `${base}/kernel`) as tf.Tensor2D;
  const a = w.get(`${base}/lora_a`);
  if (!a) return kernel;
  if (!lora) throw new Error(`${base} has LoRA adapters but the model config has no lora section`);
  const b = param(w, `${base}/lora_b`);
  return tf.tidy(() =>
    tf.add(kernel, tf.mul(tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D), lora.alpha / lora.rank)),
  );
}

/** LoRA adapters are trainable even where a freeze pattern covers their layer, as openpi's LoRA configs. */
export function isLoraParam(name: string): boolean {
  return name.endsWith('/lora_a') || name.endsWith('/lora_b');
}

/** The prompt's FiLM of the patches (`model.prompt_film`). */
export function isFilmParam(name: string): boolean {
  return name.startsWith('vision/film/');
}

/**
 * Params added on top of an architecture that start as the identity (LoRA adapters, the prompt FiLM):
 * a checkpoint without them can initialise a model with them, which then behaves as the checkpoint did.
 */
export function startsAsIdentity(name: string): boolean {
  return isLoraParam(name) || isFilmParam(name);
}

export function paramCount(params: Params): number {
  let n = 0;
  for (const t of params.values()) n += t.size;
  return n;
}

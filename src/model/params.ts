import type * as tf from '@tensorflow/tfjs-core';

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

/** LoRA adapters are trainable even where a freeze pattern covers their layer, as openpi's LoRA configs. */
export function isLoraParam(name: string): boolean {
  return name.endsWith('/lora_a') || name.endsWith('/lora_b');
}

export function paramCount(params: Params): number {
  let n = 0;
  for (const t of params.values()) n += t.size;
  return n;
}

/**
 * π0's attention mask (openpi's `make_attn_mask`): token j is visible to token i when both are valid
 * and j's block index is not after i's. Block indices are the cumulative sum of `blockStarts`: tokens
 * with 0 join the block before them. π0 uses prefix = one block (bidirectional), state = a new block,
 * first action token = a new block with all action tokens in it; so the prefix never sees the suffix,
 * the state token sees the prefix and itself, and action tokens see everything.
 */
export function attentionMask(valid: Uint8Array, blockStarts: Uint8Array, batch: number): Uint8Array {
  const t = blockStarts.length;
  if (valid.length !== batch * t) {
    throw new Error(`attentionMask: valid has ${valid.length} entries, expected ${batch}×${t}`);
  }
  const block = new Int32Array(t);
  let acc = 0;
  for (let i = 0; i < t; i++) {
    acc += blockStarts[i]!;
    block[i] = acc;
  }
  const mask = new Uint8Array(batch * t * t);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < t; i++) {
      if (!valid[b * t + i]) continue;
      const row = (b * t + i) * t;
      for (let j = 0; j < t; j++) {
        if (valid[b * t + j] && block[j]! <= block[i]!) mask[row + j] = 1;
      }
    }
  }
  return mask;
}

/** Block starts for a π0 sequence of `prefixLen` prefix tokens, one state token and `horizon` action tokens. */
export function pi0BlockStarts(prefixLen: number, horizon: number): Uint8Array {
  const starts = new Uint8Array(prefixLen + 1 + horizon);
  starts[prefixLen] = 1;
  starts[prefixLen + 1] = 1;
  return starts;
}

export const MASKED = -1e9;

/**
 * The additive attention bias [B, 1, rows, cols] for query rows [r0, r1) and key columns [c0, c1) of a
 * [B, T, T] mask: 0 where visible, a large negative number where not.
 */
export function maskBias(
  mask: Uint8Array,
  batch: number,
  t: number,
  r0: number,
  r1: number,
  c0: number,
  c1: number,
): Float32Array {
  const rows = r1 - r0;
  const cols = c1 - c0;
  const out = new Float32Array(batch * rows * cols);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < rows; i++) {
      const src = (b * t + r0 + i) * t + c0;
      const dst = (b * rows + i) * cols;
      for (let j = 0; j < cols; j++) out[dst + j] = mask[src + j] ? 0 : MASKED;
    }
  }
  return out;
}

/**
 * [B, Tp] validity of a prefix laid out as each camera's `patches` patch tokens, then `promptLen`
 * prompt tokens: a missing camera's patches and the prompt's padding are not real.
 */
export function prefixValidity(
  inp: { batch: number; cameras: number; promptLen: number; imageMask: Uint8Array; promptMask: Uint8Array },
  patches: number,
): Uint8Array {
  const { batch: b, cameras: c, promptLen: l } = inp;
  const length = c * patches + l;
  const valid = new Uint8Array(b * length);
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < c; j++) {
      valid.fill(inp.imageMask[i * c + j] ? 1 : 0, i * length + j * patches, i * length + (j + 1) * patches);
    }
    valid.set(inp.promptMask.subarray(i * l, (i + 1) * l), i * length + c * patches);
  }
  return valid;
}

/**
 * [B, B·L]: row b averages prompt b's real tokens (the pooled prompt that FiLMs the patches). A prompt
 * with no real token (none can be: BOS is always there) would pool to zeros.
 */
export function promptPooling(inp: {
  batch: number;
  promptLen: number;
  promptMask: Uint8Array;
}): Float32Array {
  const { batch: b, promptLen: l, promptMask } = inp;
  const out = new Float32Array(b * b * l);
  for (let i = 0; i < b; i++) {
    let count = 0;
    for (let j = 0; j < l; j++) count += promptMask[i * l + j]!;
    if (count === 0) continue;
    for (let j = 0; j < l; j++) if (promptMask[i * l + j]) out[i * b * l + i * l + j] = 1 / count;
  }
  return out;
}

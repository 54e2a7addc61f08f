/**
 * π0's attention mask (openpi's `make_attn_mask`), [B, T, T] with 1 where visible: the reference that
 * `attentionBiasInto` (what the model uses) is tested against. Token j is visible to token i when both
 * are valid and j's block index is not after i's. Block indices are the cumulative sum of `blockStarts`: tokens
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

/**
 * Block starts for a π0.5 sequence: `prefixLen` prefix tokens (image patches, prompt, state tokens) in
 * one block, then the `horizon` action tokens in a second (they see the prefix and each other).
 */
export function pi05BlockStarts(prefixLen: number, horizon: number): Uint8Array {
  const starts = new Uint8Array(prefixLen + horizon);
  starts[prefixLen] = 1;
  return starts;
}

/**
 * Block starts for a π0-FAST sequence: `prefixLen` prefix tokens in one block, then `tokens` action
 * tokens each starting a block of its own (causal: each sees the prefix, the tokens before it and itself).
 */
export function fastBlockStarts(prefixLen: number, tokens: number): Uint8Array {
  const starts = new Uint8Array(prefixLen + tokens);
  starts.fill(1, prefixLen);
  return starts;
}

export const MASKED = -1e9;

/**
 * Writes the additive attention bias [B, 1, r1 − r0, T] of `attentionMask(valid, blockStarts, batch)`'s
 * query rows [r0, r1) into `out`: 0 where visible, MASKED where not. Built row by row rather than from
 * the [B, T, T] mask: blocks are cumulative, so a valid query i sees exactly the valid keys before the
 * end of its own block, and every query of a block has the same row.
 */
export function attentionBiasInto(
  out: Float32Array,
  valid: Uint8Array,
  blockStarts: Uint8Array,
  batch: number,
  r0: number,
  r1: number,
): void {
  const t = blockStarts.length;
  const rows = r1 - r0;
  if (valid.length !== batch * t)
    throw new Error(`attentionBiasInto: valid has ${valid.length} entries, expected ${batch}×${t}`);
  if (r0 < 0 || r1 > t || rows < 0) throw new Error(`attentionBiasInto: rows [${r0}, ${r1}) outside 0..${t}`);
  if (out.length !== batch * rows * t)
    throw new Error(`attentionBiasInto: out has ${out.length} entries, expected ${batch}×${rows}×${t}`);
  // blockEnd[i]: the first token of the next block (keys j < blockEnd[i] are in i's block or before).
  const blockEnd = new Int32Array(t);
  let e = t;
  for (let i = t - 1; i >= 0; i--) {
    blockEnd[i] = e;
    if (blockStarts[i]) e = i;
  }
  const keys = new Float32Array(t);
  for (let b = 0; b < batch; b++) {
    for (let j = 0; j < t; j++) keys[j] = valid[b * t + j] ? 0 : MASKED;
    for (let i = r0; i < r1; i++) {
      const dst = (b * rows + i - r0) * t;
      const end = valid[b * t + i] ? blockEnd[i]! : 0;
      out.set(keys.subarray(0, end), dst);
      out.fill(MASKED, dst + end, dst + t);
    }
  }
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
 * [B, B·L]: row b pools prompt b's real tokens (the pooled prompt that FiLMs the patches): their mean,
 * or with `scores` ([B·L], a learned query's dot product with each token: `model.prompt_film_pool:
 * attention`) their softmax over the real tokens, which is the mean where every score is equal. A
 * prompt with no real token (none can be: BOS is always there) would pool to zeros.
 */
export function promptPooling(
  inp: {
    batch: number;
    promptLen: number;
    promptMask: Uint8Array;
  },
  scores?: Float32Array,
): Float32Array {
  const { batch: b, promptLen: l, promptMask } = inp;
  const out = new Float32Array(b * b * l);
  for (let i = 0; i < b; i++) {
    const row = i * b * l + i * l;
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < l; j++)
      if (promptMask[i * l + j]) max = Math.max(max, scores ? scores[i * l + j]! : 0);
    if (max === Number.NEGATIVE_INFINITY) continue;
    let sum = 0;
    for (let j = 0; j < l; j++) {
      if (!promptMask[i * l + j]) continue;
      const e = scores ? Math.exp(scores[i * l + j]! - max) : 1;
      out[row + j] = e;
      sum += e;
    }
    for (let j = 0; j < l; j++) out[row + j]! /= sum;
  }
  return out;
}

/**
 * Writes the additive bias [B, Tp + extra] over keys that hides the prefix's padding tokens from a
 * query that sees every key into `out`: the `extra` suffix tokens are all real or, with `extraLengths`,
 * each sample's first extraLengths[i] (a robot's chunk shorter than the model's). Returns false, and
 * writes nothing, when nothing is hidden (the samplers then add no bias at all).
 */
export function keyBiasInto(
  out: Float32Array,
  prefixValid: Uint8Array,
  b: number,
  p: number,
  extra: number,
  extraLengths?: Int32Array,
): boolean {
  const short = extraLengths?.some((n) => n < extra) ?? false;
  if (!short && prefixValid.every((v) => v === 1)) return false;
  const cols = p + extra;
  if (out.length < b * cols) throw new Error(`keyBiasInto: ${out.length} values for [${b}, ${cols}]`);
  out.fill(0, 0, b * cols);
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < p; j++) if (!prefixValid[i * p + j]) out[i * cols + j] = MASKED;
    if (short) out.fill(MASKED, i * cols + p + extraLengths![i]!, (i + 1) * cols);
  }
  return true;
}

/**
 * [B]: each sample's real suffix tokens, `suffixLen` less the action tokens past its chunk's `horizons`
 * (of the model's `horizon`); undefined where every sample has the whole chunk.
 */
export function suffixLengths(
  horizons: Int32Array | undefined,
  suffixLen: number,
  horizon: number,
): Int32Array | undefined {
  if (!horizons?.some((h) => h < horizon)) return undefined;
  return horizons.map((h) => suffixLen - horizon + h);
}

/**
 * [B, Tp + S] validity: the prefix's, then S tokens (the suffix's, or π0.5's state tokens), all real or,
 * with `lengths` (π0-FAST's token sequences in a batch), each sample's first lengths[i].
 */
export function sequenceValid(
  prefixValid: Uint8Array,
  p: number,
  s: number,
  b: number,
  lengths?: Int32Array,
): Uint8Array {
  const out = new Uint8Array(b * (p + s));
  for (let i = 0; i < b; i++) {
    out.set(prefixValid.subarray(i * p, (i + 1) * p), i * (p + s));
    out.fill(1, i * (p + s) + p, i * (p + s) + p + (lengths ? lengths[i]! : s));
  }
  return out;
}

/**
 * Byte-level prompt tokenizer: every UTF-8 byte is a token, so any language and any task string works
 * without a trained vocabulary. The prompt is cleaned as openpi's tokenizer does (trimmed, underscores
 * and newlines to spaces), lower-cased so that "Pick" and "pick" are one instruction, and starts with BOS.
 */
/** Token 0 pads; 1 starts every prompt; bytes follow. */
export const BOS_TOKEN = 1;
const BYTE_OFFSET = 2;
export const VOCAB_SIZE = 256 + BYTE_OFFSET;

const encoder = new TextEncoder();

export function cleanPrompt(prompt: string): string {
  return prompt
    .trim()
    .replace(/[_\n]+/g, ' ')
    .replace(/\s+/g, ' ')
    .toLowerCase();
}

export interface Tokenized {
  /** [B, L] token ids, 0 (padding) after each prompt's end. */
  tokens: Int32Array;
  /** [B, L]: 1 for real tokens. */
  mask: Uint8Array;
  /** L: the longest prompt in the batch (at most maxLen), so padding beyond every prompt is not computed. */
  length: number;
}

export function tokenizePrompts(prompts: string[], maxLen: number): Tokenized {
  const encoded = prompts.map((p) => {
    const bytes = encoder.encode(cleanPrompt(p));
    const ids = new Int32Array(Math.min(bytes.length + 1, maxLen));
    ids[0] = BOS_TOKEN;
    for (let i = 1; i < ids.length; i++) ids[i] = bytes[i - 1]! + BYTE_OFFSET;
    return ids;
  });
  const length = Math.max(1, ...encoded.map((e) => e.length));
  const tokens = new Int32Array(prompts.length * length);
  const mask = new Uint8Array(prompts.length * length);
  for (const [b, ids] of encoded.entries()) {
    tokens.set(ids, b * length);
    mask.fill(1, b * length, b * length + ids.length);
  }
  return { tokens, mask, length };
}

/** The prompt text back from its tokens (for logs and tests). */
export function detokenize(ids: ArrayLike<number>): string {
  const bytes: number[] = [];
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id >= BYTE_OFFSET) bytes.push(id - BYTE_OFFSET);
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

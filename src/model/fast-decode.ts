/**
 * π0-FAST's greedy decoding, one action token per sample per step: which tokens may be chosen, the
 * choice from a step's logits, and each sample's tokens back to a chunk. One definition for
 * TensorFlow.js's sampler (Pi0.sample) and the native engine (native/program.ts), which choose the
 * same tokens from the same logits.
 *
 * Constrained decoding (`model.fast.constrained`): a chunk holds H·D values, so a token that would run
 * past them is never chosen, and once they are all there the end is the only choice; every decode is
 * then a chunk. Never the start token; the end only once a token came; never an id the tokenizer lacks.
 */
import type { ModelDims } from './config.js';
import type { FastTokenizer } from './fast-tokenizer.js';

/** What a decode may choose: plain data (the native engine's threads each hold a copy). */
export interface FastDecodeRules {
  /** Logits per step: FAST's tokens, then the start and the end of a chunk. */
  vocab: number;
  bos: number;
  eos: number;
  /** FAST token ids the model has (model.fast.vocab_size). */
  fastVocab: number;
  /** Values each of the tokenizer's token ids holds; ids past these the tokenizer lacks. */
  values: Float64Array;
  /** Values a chunk holds (H·D of the tokenizer's robot). */
  need: number;
  /** The most values one token holds: until fewer are left, no token is out of reach. */
  longest: number;
  constrained: boolean;
  maxTokens: number;
}

/** π0-FAST's token table: FAST's tokens, then the start and the end of a chunk. */
export function fastTokenCount(d: ModelDims): number {
  return d.fast.vocabSize + 2;
}

export function fastSpecialTokens(d: ModelDims): { bos: number; eos: number } {
  return { bos: d.fast.vocabSize, eos: d.fast.vocabSize + 1 };
}

export function fastDecodeRules(d: ModelDims, tok: FastTokenizer): FastDecodeRules {
  // The tokenizer may have fewer ids than model.fast.vocab_size.
  const used = Math.min(tok.vocabSize, d.fast.vocabSize);
  const values = new Float64Array(used);
  for (let id = 0; id < used; id++) values[id] = tok.valuesOf(id);
  return {
    vocab: fastTokenCount(d),
    ...fastSpecialTokens(d),
    fastVocab: d.fast.vocabSize,
    values,
    need: tok.chunkValues,
    longest: values.reduce((m, v) => Math.max(m, v), 0),
    constrained: d.fast.constrained,
    maxTokens: d.fast.maxTokens,
  };
}

/** A batch's greedy decode: the next input token of each sample, and the tokens each has decoded. */
export class GreedyDecode {
  /** Each sample's token to feed next (the start token first). */
  readonly ids: Int32Array;
  /** Each sample's decoded tokens, the end left out. */
  readonly tokens: number[][];
  private readonly done: Uint8Array;
  private readonly count: Float64Array;
  /** Steps taken: the position of the next token. */
  step = 0;

  constructor(
    readonly rules: FastDecodeRules,
    readonly batch: number,
  ) {
    this.ids = new Int32Array(batch).fill(rules.bos);
    this.tokens = Array.from({ length: batch }, () => []);
    this.done = new Uint8Array(batch);
    this.count = new Float64Array(batch);
  }

  /** Whether every sample has ended its chunk (or the decode ran to `fast.max_tokens`). */
  get finished(): boolean {
    return this.step > this.rules.maxTokens || !this.done.includes(0);
  }

  /** Chooses each sample's next token from this step's logits [B, vocab], and takes the step. */
  choose(logits: Float32Array): void {
    const { vocab, bos, eos, fastVocab, values, need, longest, constrained, maxTokens } = this.rules;
    const j = this.step;
    const used = values.length;
    for (let i = 0; i < this.batch; i++) {
      const row = logits.subarray(i * vocab, (i + 1) * vocab);
      const left = need - this.count[i]!;
      const reach = constrained && left < longest ? left : Number.POSITIVE_INFINITY;
      let best = -1;
      let top = Number.NEGATIVE_INFINITY;
      for (let id = 0; id < vocab; id++) {
        if (id === bos || (id === eos && j === 0)) continue;
        if (id !== eos && (id >= used ? constrained && id < fastVocab : values[id]! > reach)) continue;
        const v = id === eos && constrained && left <= 0 ? Number.POSITIVE_INFINITY : row[id]!;
        if (v > top) [top, best] = [v, id];
      }
      // Nothing left to choose (no token holds so few values): the chunk ends.
      this.ids[i] = best < 0 ? eos : best;
    }
    for (let i = 0; i < this.batch; i++) {
      if (this.done[i]) continue;
      if (this.ids[i] === eos || j === maxTokens) this.done[i] = 1;
      else {
        this.tokens[i]!.push(this.ids[i]!);
        this.count[i]! += values[this.ids[i]!] ?? 0;
      }
    }
    this.step++;
  }
}

/**
 * Each sample's tokens through the tokenizer back to actions [B, H, A] (A the model's action_dim, the
 * tokenizer's dims first); a sample whose tokens make no chunk gets NaN rows and its reason in `failures`.
 */
export function decodedChunks(
  tokens: number[][],
  tok: FastTokenizer,
  horizon: number,
  actionDim: number,
  failures?: Array<string | null>,
): Float32Array {
  const per = horizon * actionDim;
  const out = new Float32Array(tokens.length * per);
  const dims = tok.spec.actionDim;
  for (const [i, own] of tokens.entries()) {
    // A chunk that ends early lacks its highest frequencies: it is decoded as their low-pass version.
    const r = tok.decode(own, { padShort: true });
    if (failures) failures[i] = r.ok ? null : `action tokens: ${r.reason} (${own.length} tokens decoded)`;
    if (!r.ok) {
      out.fill(Number.NaN, i * per, (i + 1) * per);
      continue;
    }
    for (let t = 0; t < horizon; t++)
      out.set(r.actions.subarray(t * dims, (t + 1) * dims), i * per + t * actionDim);
  }
  return out;
}

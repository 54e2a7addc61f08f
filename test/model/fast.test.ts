/**
 * The π0-FAST-style variant (`model.variant: pi0_fast`): the state as prefix tokens, the action chunk as
 * FAST tokens that the action expert predicts one by one under a prefix-LM mask, decoded greedily with
 * the KV cache.
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { ModelConfig, TrainConfig } from '../../src/config/schema.js';
import { modelDims } from '../../src/model/config.js';
import { fastSpecialTokens } from '../../src/model/fast-decode.js';
import { FastTokenizer, trainFastTokenizer } from '../../src/model/fast-tokenizer.js';
import {
  actionTokenSequences,
  batchObservation,
  fastHeadPrior,
  initParams,
  Pi0,
  paramSpecs,
  prepareInputs,
} from '../../src/model/pi0.js';
import { Trainer } from '../../src/train/trainer.js';
import { type SyntheticSource, syntheticSource } from '../train/source.js';

const H = 8;
const AD = 4;
const model = (over: Record<string, unknown> = {}) => ({
  preset: 'tiny',
  variant: 'pi0_fast',
  action_horizon: H,
  action_dim: 6,
  fast: { vocab_size: 96, max_tokens: 40 },
  ...over,
});
const dims = (over: Record<string, unknown> = {}) => modelDims(ModelConfig.parse(model(over)));

/** The source's chunks padded to nothing: the robot's 4 dims, as `vla data tokenizer` would see them. */
function tokenizerFor(source: SyntheticSource, vocabSize = 96): FastTokenizer {
  const chunks: Float32Array[] = [];
  for (let i = 0; i < source.numSamples; i++) chunks.push(source.frame(i).actions.slice());
  return trainFastTokenizer(chunks, { horizon: H, actionDim: AD, scale: 20, vocabSize });
}

beforeAll(async () => {
  await setupBackend({ backend: 'wasm' });
});

describe('π0-FAST variant', () => {
  const source = syntheticSource({ imageSize: 32, horizon: H, actionDim: AD, stateDim: AD, episodes: 2 });
  const tok = tokenizerFor(source);

  it('has state tokens in the prefix and a token table and head in the expert, no flow layers', () => {
    const d = dims();
    const specs = paramSpecs(d);
    expect(specs.get('prefix/state_embedding')).toBeDefined();
    expect(specs.get('expert/token_embedding')!.shape).toEqual([98, 32]);
    // The head is the token table, transposed (tied): a bias of its own only.
    expect(specs.has('expert/token_out/kernel')).toBe(false);
    expect(specs.get('expert/token_out/bias')!.shape).toEqual([98]);
    expect(specs.get('expert/token_pos_embedding')!.shape).toEqual([41, 32]);
    for (const gone of ['expert/action_in/kernel', 'expert/time_mlp_in/kernel', 'expert/action_out/kernel'])
      expect(specs.has(gone), gone).toBe(false);
    expect(fastSpecialTokens(d)).toEqual({ bos: 96, eos: 97 });
  });

  it('turns chunks into start-token inputs and end-token targets, the robot’s dims only', () => {
    const d = dims();
    const batch = source.batchAt(0, 2, 0);
    const padded = new Float32Array(2 * H * d.actionDim);
    for (let r = 0; r < 2 * H; r++) padded.set(batch.actions.subarray(r * AD, (r + 1) * AD), r * d.actionDim);
    // Whatever sits in the padding dims is not the robot's and is not tokenized.
    for (let r = 0; r < 2 * H; r++) padded[r * d.actionDim + 5] = 9;
    const seq = actionTokenSequences(d, tok, padded, 2, AD);
    for (let i = 0; i < 2; i++) {
      const own = tok.encode(batch.actions.slice(i * H * AD, (i + 1) * H * AD));
      expect(seq.lengths[i]).toBe(own.length + 1);
      expect(seq.inputs[i * seq.length]).toBe(96);
      expect([...seq.inputs.subarray(i * seq.length + 1, i * seq.length + 1 + own.length)]).toEqual([...own]);
      expect([...seq.targets.subarray(i * seq.length, i * seq.length + own.length)]).toEqual([...own]);
      expect(seq.targets[i * seq.length + own.length]).toBe(97);
    }
    expect(seq.length).toBe(Math.max(...seq.lengths));
  });

  it('learns a batch’s chunks by next-token training and decodes them back, batched, with the KV cache', () => {
    const config = TrainConfig.parse({
      name: 'fast-test',
      robot: 'aloha',
      model: model(),
      data: { dataset: 'unused', augment: null },
      train: {
        batch_size: 4,
        ema_decay: null,
        schedule: { name: 'cosine', warmup_steps: 5, peak_lr: 3e-3, decay_lr: 3e-3 },
      },
    });
    const d = modelDims(config.model);
    const trainer = new Trainer(config, initParams(d, 0), tok);
    trainer.checkSource(source);
    const batch = source.batchAt(0, 4, 0);
    const first = trainer.trainStep(batch).loss;
    let last = first;
    for (let i = 0; i < 150 && last > 0.02; i++) last = trainer.trainStep(batch).loss;
    expect(last).toBeLessThan(first * 0.05);

    const inp = prepareInputs(d, batchObservation(batch));
    const failures: Array<string | null> = [];
    const out = trainer.model.sample(trainer.params, inp, new Float32Array(4 * H * d.actionDim), {
      failures,
    });
    const got = out.dataSync() as Float32Array;
    out.dispose();
    expect(failures).toEqual([null, null, null, null]);
    for (let i = 0; i < 4; i++) {
      const want = tok.decode(tok.encode(batch.actions.slice(i * H * AD, (i + 1) * H * AD)));
      if (!want.ok) throw new Error(want.reason);
      for (let t = 0; t < H; t++)
        for (let a = 0; a < AD; a++)
          expect(got[(i * H + t) * d.actionDim + a]).toBeCloseTo(want.actions[t * AD + a]!, 5);
      // The padding dims stay 0.
      expect(got[i * H * d.actionDim + 5]).toBe(0);
    }
    // Alone (batch 1 appends to its caches without views), the first observation decodes the same chunk.
    const obs = batchObservation(batch);
    const one = prepareInputs(d, {
      ...obs,
      batchSize: 1,
      images: obs.images.subarray(0, obs.images.length / 4),
      imageMask: obs.imageMask.subarray(0, obs.cameras),
      state: obs.state.subarray(0, obs.stateDim),
      prompts: obs.prompts.slice(0, 1),
    });
    const single = trainer.model.sample(trainer.params, one, new Float32Array(H * d.actionDim));
    const alone = single.dataSync();
    for (let k = 0; k < H * d.actionDim; k++) expect(alone[k]).toBeCloseTo(got[k]!, 5);
    single.dispose();
    trainer.dispose();
  }, 120_000);

  it('starts its head at the log frequency of each token in the tokenizer’s chunks', () => {
    const d = dims();
    const counts = tok.spec.report!.tokenCounts!;
    expect(counts.reduce((a, b) => a + b, 0)).toBe(
      Math.round(tok.spec.report!.tokensPerChunk.mean * tok.spec.report!.chunks),
    );
    const w = initParams(d, 0, tok);
    const bias = w.get('expert/token_out/bias')!.dataSync();
    const { bos, eos } = fastSpecialTokens(d);
    // A distribution over the targets: FAST's tokens and the end (one per chunk), never the start.
    let sum = 0;
    for (let i = 0; i < bias.length; i++) if (i !== bos) sum += Math.exp(bias[i]!);
    expect(sum).toBeCloseTo(1, 5);
    expect(bias[bos]).toBeLessThan(-10);
    const top = counts.indexOf(Math.max(...counts));
    expect(Math.max(...bias.subarray(0, d.fast.vocabSize))).toBe(bias[top]);
    const chunks = tok.spec.report!.chunks;
    const total = counts.reduce((a, b) => a + b, 0) + chunks + (d.fast.vocabSize + 2 - 1);
    expect(bias[eos]).toBeCloseTo(Math.log((chunks + 1) / total), 4);
    expect([...fastHeadPrior(d, tok)!]).toEqual([...bias]);
    // Without counts (a tokenizer file from before), zeros as the other biases.
    const bare = new FastTokenizer({
      ...tok.toJSON(),
      report: { ...tok.spec.report!, tokenCounts: undefined },
    });
    expect(fastHeadPrior(d, bare)).toBeNull();
    tf.dispose([...w.values()]);
  });

  it('free decoding: a sample whose tokens make no chunk gets NaN actions and its reason; constrained decoding ends each chunk when its values are all there', () => {
    const d = dims({ fast: { vocab_size: 96, max_tokens: 40, decoding: 'free' } });
    const m = new Pi0(d, tok);
    const w = initParams(d, 3);
    // The end token never wins: decoding runs to max_tokens (40), more values than a chunk holds (32).
    const bias = w.get('expert/token_out/bias')!;
    const b = new Float32Array(bias.size);
    b[fastSpecialTokens(d).eos] = -100;
    w.set('expert/token_out/bias', tf.tensor(b, bias.shape));
    bias.dispose();
    const inp = prepareInputs(d, batchObservation(source.batchAt(0, 2, 0)));
    const failures: Array<string | null> = [];
    const out = m.sample(w, inp, new Float32Array(2 * H * d.actionDim), { failures });
    const got = out.dataSync();
    expect(failures).toHaveLength(2);
    for (const f of failures)
      expect(f).toMatch(/^action tokens: decoded \d+ values, expected 32 .*\(40 tokens decoded\)$/);
    expect(got.every((v) => Number.isNaN(v))).toBe(true);
    // The same weights, decoded as by default: no token that would overrun the chunk, then the end.
    const constrained = new Pi0(dims(), tok);
    const fine: Array<string | null> = [];
    const chunk = constrained.sample(w, inp, new Float32Array(2 * H * d.actionDim), { failures: fine });
    expect(fine).toEqual([null, null]);
    expect(chunk.dataSync().every((v) => Number.isFinite(v))).toBe(true);
    tf.dispose([out, chunk, ...w.values()]);
  });

  it('refuses a tokenizer made for another chunk, more dims, a larger vocabulary or another variant', () => {
    const other = syntheticSource({ imageSize: 32, horizon: 6, actionDim: AD, stateDim: AD });
    const chunks = [0, 1, 2, 3].map((i) => other.frame(i).actions.slice());
    const six = trainFastTokenizer(chunks, { horizon: 6, actionDim: AD, scale: 20, vocabSize: 96 });
    expect(() => new Pi0(dims(), six)).toThrow(
      /a chunk of 6 steps; the model's model.action_horizon is 8: expected a tokenizer made for this config/,
    );
    expect(() => new Pi0(dims({ action_dim: 3 }), tok)).toThrow(
      /4 action dims; the model's model.action_dim is 3/,
    );
    expect(() => new Pi0(dims({ fast: { vocab_size: 8 } }), tok)).toThrow(
      new RegExp(`${tok.vocabSize} tokens; the model's model.fast.vocab_size is 8`),
    );
    expect(() => new Pi0(dims({ variant: 'pi05' }), tok)).toThrow(
      /an action tokenizer is for model.variant pi0_fast; the model is pi05/,
    );
    const d = dims();
    expect(() =>
      new Pi0(d).flowLoss(
        new Map(),
        prepareInputs(d, batchObservation(source.batchAt(0, 1, 0))),
        new Float32Array(H * 6),
        new Uint8Array(H),
        new Float32Array(),
        new Float32Array(),
      ),
    ).toThrow(/model.variant pi0_fast: no action tokenizer .*vla data tokenizer/);
  });
});

import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { ModelConfig } from '../../src/config/schema.js';
import { modelDims } from '../../src/model/config.js';
import { attentionBiasInto, attentionMask, MASKED, pi0BlockStarts } from '../../src/model/masks.js';
import {
  eulerIntegrate,
  flowTargets,
  initParams,
  maskedMse,
  mergeLora,
  type Observation,
  Pi0,
  prepareInputs,
} from '../../src/model/pi0.js';
import { Rng } from '../../src/model/rng.js';
import { sampleCached, samplingWeights } from '../../src/model/sampler.js';
import { detokenize, tokenizePrompts } from '../../src/model/tokenizer.js';
import { withTrainedFilm } from './trained.js';

beforeAll(async () => {
  await setupBackend({ backend: 'wasm' });
});

/** The largest element-wise difference of two equally long arrays. */
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

/** LoRA params as if trained: `lora_b` (zero at init, so the adapters would do nothing) made random. */
function withTrainedAdapters(w: Map<string, tf.Tensor>, seed: number): Map<string, tf.Tensor> {
  const rng = new Rng(seed);
  for (const [name, t] of w) {
    if (!name.endsWith('/lora_b')) continue;
    t.dispose();
    w.set(name, tf.tensor(rng.normals(t.size, 0.5), t.shape));
  }
  return w;
}

const tiny = (over: Record<string, unknown> = {}) =>
  modelDims(ModelConfig.parse({ preset: 'tiny', action_horizon: 8, ...over }));

function observation(b: number, cams: number, size: number, seed: number, prompts?: string[]): Observation {
  const rng = new Rng(seed);
  const images = new Uint8Array(b * cams * size * size * 3);
  for (let i = 0; i < images.length; i++) images[i] = rng.nextU32() & 255;
  return {
    batchSize: b,
    cameras: cams,
    imageSize: size,
    images,
    imageMask: new Uint8Array(b * cams).fill(1),
    state: rng.normals(b * 7),
    stateDim: 7,
    prompts: prompts ?? Array.from({ length: b }, (_, i) => `pick up the cube ${i}`),
  };
}

describe('attention masks (π0)', () => {
  it('prefix is bidirectional and never sees the suffix; state sees prefix + itself; actions see all', () => {
    const p = 3;
    const h = 2;
    const t = p + 1 + h;
    const valid = new Uint8Array(t).fill(1);
    const m = attentionMask(valid, pi0BlockStarts(p, h), 1);
    const sees = (i: number, j: number) => m[i * t + j] === 1;
    for (let i = 0; i < p; i++) {
      for (let j = 0; j < t; j++) expect(sees(i, j)).toBe(j < p);
    }
    for (let j = 0; j < t; j++) expect(sees(p, j)).toBe(j <= p);
    for (let i = p + 1; i < t; i++) for (let j = 0; j < t; j++) expect(sees(i, j)).toBe(true);
  });

  it('masks padding tokens out of every row', () => {
    const valid = Uint8Array.from([1, 0, 1, 1, 1]);
    const m = attentionMask(valid, pi0BlockStarts(3, 1), 1);
    for (let i = 0; i < 5; i++) expect(m[i * 5 + 1]).toBe(0);
    expect(m[1 * 5 + 0]).toBe(0);
  });
});

describe('attention bias', () => {
  it("is attentionMask's rows as 0 / MASKED, for any padding and rows", () => {
    const rng = new Rng(11);
    for (const [p, h, b] of [
      [7, 4, 3],
      [1, 1, 2],
      [12, 5, 1],
    ] as const) {
      const t = p + 1 + h;
      const starts = pi0BlockStarts(p, h);
      const valid = Uint8Array.from({ length: b * t }, () => (rng.uniform() < 0.7 ? 1 : 0));
      const mask = attentionMask(valid, starts, b);
      for (const [r0, r1] of [
        [0, t],
        [p, t],
        [p + 1, p + 2],
      ]) {
        const rows = r1 - r0;
        const out = new Float32Array(b * rows * t).fill(Number.NaN);
        attentionBiasInto(out, valid, starts, b, r0, r1);
        const want = Float32Array.from({ length: b * rows * t }, (_, k) => {
          const j = k % t;
          const i = r0 + (Math.floor(k / t) % rows);
          const bb = Math.floor(k / (rows * t));
          return mask[(bb * t + i) * t + j] ? 0 : MASKED;
        });
        expect(out).toEqual(want);
      }
    }
    // One block (the prefix alone): every valid query sees every valid key.
    const out = new Float32Array(9);
    attentionBiasInto(out, Uint8Array.from([1, 0, 1]), new Uint8Array(3), 1, 0, 3);
    expect(Array.from(out)).toEqual([0, MASKED, 0, MASKED, MASKED, MASKED, 0, MASKED, 0]);
    expect(() =>
      attentionBiasInto(new Float32Array(8), Uint8Array.from([1, 0, 1]), new Uint8Array(3), 1, 0, 3),
    ).toThrow(/out has 8 entries, expected 1×3×3/);
  });
});

describe('tokenizer', () => {
  it('is byte-level with BOS, cleans the prompt, truncates at max_token_len and pads to the longest', () => {
    const tok = tokenizePrompts(['Pick_up  the cube\n', 'é'], 48);
    expect(tok.length).toBe(17);
    expect(detokenize(tok.tokens.subarray(0, 17))).toBe('pick up the cube');
    expect(detokenize(tok.tokens.subarray(17, 34))).toBe('é');
    expect([...tok.mask.subarray(17, 34)].filter(Boolean).length).toBe(3);
    expect(tokenizePrompts(['x'.repeat(100)], 48).length).toBe(48);
  });
});

describe('π0 model', () => {
  it('samples [B, H, action_dim] chunks for 1 to 4 cameras', () => {
    const d = tiny();
    const model = new Pi0(d);
    const w = initParams(d, 0);
    for (const cams of [1, 2, 3, 4]) {
      const inp = prepareInputs(d, observation(2, cams, d.imageSize, cams));
      const out = model.sample(w, inp, new Rng(1).normals(2 * d.horizon * d.actionDim), { numSteps: 2 });
      expect(out.shape).toEqual([2, d.horizon, d.actionDim]);
      expect(out.dataSync().every(Number.isFinite)).toBe(true);
      out.dispose();
    }
    tf.dispose([...w.values()]);
  });

  it('the KV-cached sampler gives the uncached path’s actions (1e-4), batched, with padding', async () => {
    const d = tiny();
    const model = new Pi0(d);
    const w = initParams(d, 3);
    const obs = observation(3, 2, d.imageSize, 4, ['a', 'open the drawer slowly', 'stack']);
    obs.imageMask[1] = 0;
    const inp = prepareInputs(d, obs);
    const noise = new Rng(5).normals(3 * d.horizon * d.actionDim);
    const cached = model.sample(w, inp, noise, { numSteps: 4 });
    const uncached = model.sample(w, inp, noise, { numSteps: 4, cache: false });
    const a = await cached.data();
    const b = await uncached.data();
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-4);
    // Not a trivial agreement: the chunk moved away from the noise.
    expect(Math.abs(a[0]! - noise[0]!)).toBeGreaterThan(1e-3);
    tf.dispose([cached, uncached, ...w.values()]);
  });

  it('padding is masked: a missing camera’s pixels and other samples do not change a sample’s actions', async () => {
    const d = tiny();
    const model = new Pi0(d);
    const w = initParams(d, 7);
    const obs = observation(2, 2, d.imageSize, 8, ['push the block', 'go']);
    obs.imageMask[1] = 0; // sample 0, camera 1 missing
    const noise = new Rng(9).normals(2 * d.horizon * d.actionDim);
    const before = await model.sample(w, prepareInputs(d, obs), noise, { numSteps: 2, cache: false }).data();
    const n = d.imageSize * d.imageSize * 3;
    obs.images.fill(0, n, 2 * n); // the missing camera's pixels
    obs.prompts[1] = 'a much longer prompt for the other sample';
    const after = await model.sample(w, prepareInputs(d, obs), noise, { numSteps: 2, cache: false }).data();
    const per = d.horizon * d.actionDim;
    for (let i = 0; i < per; i++) expect(after[i]).toBeCloseTo(before[i]!, 5);
    let changed = 0;
    for (let i = per; i < 2 * per; i++) changed = Math.max(changed, Math.abs(after[i]! - before[i]!));
    expect(changed).toBeGreaterThan(1e-4);
    tf.dispose([...w.values()]);
  });

  it('the prefix never attends to the suffix: its keys and values ignore state and actions', async () => {
    const d = tiny();
    const model = new Pi0(d);
    const w = initParams(d, 11);
    const obs = observation(1, 1, d.imageSize, 12);
    const kvA = model.prefixKV(w, prepareInputs(d, obs));
    obs.state.fill(5);
    const kvB = model.prefixKV(w, prepareInputs(d, obs));
    for (let i = 0; i < d.depth; i++) {
      expect(await kvA.keys[i]!.data()).toEqual(await kvB.keys[i]!.data());
    }
    // and in the one-sequence path, the suffix output depends on the state
    const inp = prepareInputs(d, obs);
    const xt = tf.randomNormal([1, d.horizon, d.actionDim]) as tf.Tensor3D;
    const t = new Float32Array([0.5]);
    const v1 = await model.velocityUncached(w, inp, tf.zeros([1, d.actionDim]), xt, t).data();
    const v2 = await model.velocityUncached(w, inp, tf.ones([1, d.actionDim]), xt, t).data();
    expect(v1).not.toEqual(v2);
    tf.dispose([...w.values(), ...kvA.keys, ...kvA.values, ...kvB.keys, ...kvB.values, xt]);
  });

  it('LoRA starts as the identity: outputs equal the model without adapters', async () => {
    const base = tiny();
    const lora = tiny({ lora: { rank: 4, alpha: 8 } });
    const w = initParams(base, 21);
    const wl = initParams(lora, 21);
    expect([...wl.keys()].filter((k) => k.endsWith('/lora_a')).length).toBeGreaterThan(0);
    const inp = prepareInputs(base, observation(1, 2, base.imageSize, 22));
    const noise = new Rng(23).normals(base.horizon * base.actionDim);
    const a = await new Pi0(base).sample(w, inp, noise, { numSteps: 2 }).data();
    const b = await new Pi0(lora).sample(wl, inp, noise, { numSteps: 2 }).data();
    expect(b).toEqual(a);
    tf.dispose([...w.values(), ...wl.values()]);
  });
});

describe('the fast KV-cached sampler', () => {
  // Called directly, whatever path Pi0.sample picks on this backend (it picks this one where transposed
  // matmuls are fast: the kernel pack, native TensorFlow).
  const fast = (
    d: ReturnType<typeof tiny>,
    w: Map<string, tf.Tensor>,
    inp: ReturnType<typeof prepareInputs>,
    noise: Float32Array,
    steps: number,
  ) => {
    const model = new Pi0(d);
    const sw = samplingWeights(model, w);
    const out = tf.tidy(() => sampleCached(model, sw, inp, noise, steps));
    tf.dispose([...sw.values()]);
    return out;
  };

  it('gives the uncached path’s actions with masked cameras and prompt padding, batched, any depth, with the prompt FiLM', async () => {
    for (const over of [
      {},
      { depth: 3, vision_depth: 2 },
      { depth: 1, vision_depth: 0 },
      { prompt_film: true },
      { prompt_film: true, vision_depth: 0 },
      { prompt_film: true, prompt_film_pool: 'attention' as const },
    ]) {
      const d = tiny(over);
      const w = withTrainedFilm(initParams(d, 41), 48);
      const obs = observation(3, 2, d.imageSize, 42, ['a', 'open the drawer slowly', 'stack']);
      obs.imageMask[3] = 0;
      const inp = prepareInputs(d, obs);
      const noise = new Rng(43).normals(3 * d.horizon * d.actionDim);
      const before = tf.memory().numTensors;
      const a = fast(d, w, inp, noise, 5);
      expect(tf.memory().numTensors).toBe(before + 1); // the chunk only: nothing leaked
      const b = new Pi0(d).sample(w, inp, noise, { numSteps: 5, cache: false });
      const [x, y] = [await a.data(), await b.data()];
      expect(maxAbsDiff(x, y)).toBeLessThan(1e-4);
      expect(Math.abs(x[0]! - noise[0]!)).toBeGreaterThan(1e-3);
      tf.dispose([a, b, ...w.values()]);
    }
  });

  it('merges LoRA adapters, leaves the params untouched, and reuses its weights across calls', async () => {
    const d = tiny({ lora: { rank: 2, alpha: 4 } });
    const w = withTrainedAdapters(initParams(d, 44), 45);
    const inp = prepareInputs(d, observation(1, 1, d.imageSize, 46));
    const noise = new Rng(47).normals(d.horizon * d.actionDim);
    const model = new Pi0(d);
    const want = await model.sample(w, inp, noise, { numSteps: 3, cache: false }).data();
    const sw = samplingWeights(model, w);
    for (let rep = 0; rep < 2; rep++) {
      const got = await tf.tidy(() => sampleCached(model, sw, inp, noise, 3)).data();
      expect(maxAbsDiff(got, want)).toBeLessThan(1e-4);
    }
    tf.dispose([...sw.values()]);
    // Disposing the sampling weights leaves every parameter alive.
    expect([...w.values()].every((t) => !t.isDisposed)).toBe(true);
    tf.dispose([...w.values()]);
  });
});

describe('LoRA for inference', () => {
  it('merging trained adapters into the kernels keeps the outputs', async () => {
    const d = tiny({ lora: { rank: 2, alpha: 4 } });
    const w = withTrainedAdapters(initParams(d, 31), 32);
    const inp = prepareInputs(d, observation(2, 2, d.imageSize, 33));
    const noise = new Rng(34).normals(2 * d.horizon * d.actionDim);
    const model = new Pi0(d);
    // The adapters' own path (x·W + x·A·B·alpha/rank) against the kernels with them merged in.
    const a = await model.sample(w, inp, noise, { numSteps: 2, cache: false }).data();
    const merged = mergeLora(new Map(w), d);
    expect([...merged.keys()].some((n) => n.includes('lora'))).toBe(false);
    const b = await model.sample(merged, inp, noise, { numSteps: 2 }).data();
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-4);
    const base = await model.sample(initParams(tiny(), 31), inp, noise, { numSteps: 2 }).data();
    expect(Math.abs(base[0]! - a[0]!)).toBeGreaterThan(1e-4);
  });
});

describe('prompt FiLM (model.prompt_film)', () => {
  it('starts as the identity, then makes the patches, and so the actions, depend on the prompt', async () => {
    const plain = tiny();
    const filmed = tiny({ prompt_film: true });
    const w0 = initParams(plain, 51);
    const w1 = initParams(filmed, 51);
    expect([...w1.keys()].filter((n) => !w0.has(n)).sort()).toEqual([
      'vision/film/bias',
      'vision/film/kernel',
    ]);
    const noise = new Rng(52).normals(2 * plain.horizon * plain.actionDim);
    const obs = observation(2, 1, plain.imageSize, 53, [
      'put the red cube in the bowl',
      'put the red cube in the bowl',
    ]);
    const sample = (d: typeof plain, w: Map<string, tf.Tensor>, o: Observation) =>
      new Pi0(d).sample(w, prepareInputs(d, o), noise, { numSteps: 2 }).dataSync();
    expect(maxAbsDiff(sample(filmed, w1, obs), sample(plain, w0, obs))).toBeLessThan(1e-5);
    withTrainedFilm(w1, 54);
    const blue = { ...obs, prompts: ['put the blue cube in the bowl', 'put the red cube in the bowl'] };
    const a = sample(filmed, w1, obs);
    const b = sample(filmed, w1, blue);
    const n = plain.horizon * plain.actionDim;
    // The first sample's prompt changed; the second's did not (and batching keeps samples apart).
    expect(maxAbsDiff(a.subarray(0, n), b.subarray(0, n))).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(a.subarray(n), b.subarray(n))).toBeLessThan(1e-5);
    tf.dispose([...w0.values(), ...w1.values()]);
  });

  it('pooled by attention (model.prompt_film_pool): starts as the mean, then tells a pair of words apart by their order', async () => {
    const mean = tiny({ prompt_film: true });
    const attention = tiny({ prompt_film: true, prompt_film_pool: 'attention' });
    const wm = withTrainedFilm(initParams(mean, 61), 62);
    const wa = initParams(attention, 61);
    expect([...wa.keys()].filter((n) => !wm.has(n))).toEqual(['vision/film/query']);
    for (const name of ['vision/film/kernel', 'vision/film/bias']) {
      wa.get(name)!.dispose();
      wa.set(name, wm.get(name)!.clone());
    }
    const noise = new Rng(63).normals(2 * mean.horizon * mean.actionDim);
    const obs = observation(2, 1, mean.imageSize, 64, ['put the red cube on the blue cube', 'stack']);
    const sample = (d: typeof mean, w: Map<string, tf.Tensor>) =>
      new Pi0(d).sample(w, prepareInputs(d, obs), noise, { numSteps: 2 }).dataSync();
    // The query at zeros: every real token weighs alike, as the mean (a mean checkpoint starts the same).
    expect(maxAbsDiff(sample(attention, wa), sample(mean, wm))).toBeLessThan(1e-5);
    // What the FiLM is given: the mean of the tokens is the same for a pair named in either order; a
    // trained query's pool is not.
    const { attentionPool } = await import('../../src/model/layers.js');
    const one = (prompt: string) => prepareInputs(attention, observation(1, 1, mean.imageSize, 66, [prompt]));
    const inp = one('put the red cube on the blue cube');
    const swapped = one('put the blue cube on the red cube');
    const tokens = (i: typeof inp) =>
      tf.add(
        tf.gather(wa.get('prefix/token_embedding')!, tf.tensor1d(i.promptTokens, 'int32')),
        tf.slice(wa.get('prefix/prompt_pos_embedding')!, [0, 0], [i.promptLen, attention.width]),
      ) as tf.Tensor2D;
    const pooled = (i: typeof inp) => attentionPool(tokens(i), wa.get('vision/film/query')!, i).dataSync();
    expect(maxAbsDiff(pooled(inp), pooled(swapped))).toBeLessThan(1e-5);
    withTrainedFilm(wa, 65);
    expect(maxAbsDiff(pooled(inp), pooled(swapped))).toBeGreaterThan(1e-3);
    tf.dispose([...wm.values(), ...wa.values()]);
  });

  it('pools each prompt over its real tokens only', async () => {
    const { promptPooling } = await import('../../src/model/masks.js');
    const inp = { batch: 2, promptLen: 3, promptMask: Uint8Array.from([1, 1, 0, 1, 1, 1]) };
    expect([...promptPooling(inp)]).toEqual(
      [0.5, 0.5, 0, 0, 0, 0, 0, 0, 0, 1 / 3, 1 / 3, 1 / 3].map(Math.fround),
    );
    // Scored (a query's dot products): the softmax over the real tokens; a padding token's score counts for nothing.
    const scored = promptPooling(inp, Float32Array.from([0, Math.log(3), 100, 0, 0, 0]));
    const want = [0.25, 0.75, 0, 0, 0, 0, 0, 0, 0, 1 / 3, 1 / 3, 1 / 3];
    expect(maxAbsDiff(scored, Float32Array.from(want))).toBeLessThan(1e-6);
  });
});

describe('flow matching', () => {
  it('the loss of the perfect velocity is 0, and padded chunk steps do not count', async () => {
    const rng = new Rng(1);
    const [b, h, a] = [2, 4, 3];
    const actions = rng.normals(b * h * a);
    const noise = rng.normals(b * h * a);
    const { xt, target } = flowTargets(actions, noise, new Float32Array([0.3, 0.9]));
    expect(xt[0]).toBeCloseTo(0.3 * noise[0]! + 0.7 * actions[0]!, 6);
    const v = tf.tensor3d(target, [b, h, a]);
    expect(await maskedMse(v, tf.tensor3d(target, [b, h, a]), new Uint8Array(b * h)).data()).toEqual(
      new Float32Array([0]),
    );
    const wrong = target.slice();
    for (let i = (h - 1) * a; i < h * a; i++) wrong[i]! += 10; // sample 0, last step
    const pad = new Uint8Array(b * h);
    pad[h - 1] = 1;
    expect((await maskedMse(tf.tensor3d(wrong, [b, h, a]), v, pad).data())[0]).toBe(0);
    expect((await maskedMse(tf.tensor3d(wrong, [b, h, a]), v, new Uint8Array(b * h)).data())[0]).toBeCloseTo(
      (a * 100) / (b * h * a),
      4,
    );
  });

  it("padding dims beyond the robot's action dims are left out of the loss when asked", async () => {
    const [b, h, a] = [2, 3, 5];
    const target = new Rng(3).normals(b * h * a);
    const wrong = target.slice();
    for (let i = 0; i < b * h; i++) wrong[i * a + 4]! += 10; // only dim 4, a padding dim for a 4-dim robot
    const v = tf.tensor3d(target, [b, h, a]);
    const pad = new Uint8Array(b * h);
    expect((await maskedMse(tf.tensor3d(wrong, [b, h, a]), v, pad, { lossDims: 4 }).data())[0]).toBe(0);
    expect((await maskedMse(tf.tensor3d(wrong, [b, h, a]), v, pad).data())[0]).toBeCloseTo(100 / a, 4);
  });

  it("each sample's part of the loss adds up to the loss, per-sample dims and folded draws included", async () => {
    const [b, h, a] = [4, 3, 5];
    const target = new Rng(4).normals(b * h * a);
    const wrong = target.slice();
    for (let i = 0; i < h * a; i++) wrong[i]! += 1; // sample 0 (and its second draw, row 2) only
    for (let i = 2 * h * a; i < 3 * h * a; i++) wrong[i]! += 2;
    const v = tf.tensor3d(target, [b, h, a]);
    const pad = new Uint8Array(b * h);
    pad[h - 1] = 1; // sample 0's last step
    const dims = Int32Array.from([5, 3, 4, 5]);
    for (const lossDims of [undefined, 3, dims]) {
      // Rows 2 and 3 are the second draws of observations 0 and 1.
      const perSample = { err: new Float64Array(2), kept: new Float64Array(2) };
      const loss = (
        await maskedMse(tf.tensor3d(wrong, [b, h, a]), v, pad, { lossDims, perSample }).data()
      )[0]!;
      const d = (i: number) =>
        lossDims === undefined ? a : typeof lossDims === 'number' ? lossDims : dims[i]!;
      expect([...perSample.kept]).toEqual([(h - 1) * d(0) + h * d(2), h * d(1) + h * d(3)]);
      expect(perSample.err[0]).toBeCloseTo((h - 1) * d(0) * 1 + h * d(2) * 4, 4);
      expect(perSample.err[1]).toBe(0);
      expect(loss).toBeCloseTo(perSample.err[0]! / (perSample.kept[0]! + perSample.kept[1]!), 5);
    }
  });

  it("reduction 'samples' averages each sample's own mean, a sample with nothing scored left out", async () => {
    const [b, h, a] = [3, 4, 5];
    const target = new Rng(5).normals(b * h * a);
    const wrong = target.slice();
    for (let i = 0; i < b * h * a; i++) wrong[i]! += 1 + 2 * Math.floor(i / (h * a)); // 1, 3, 5 by sample
    const v = tf.tensor3d(target, [b, h, a]);
    const pad = new Uint8Array(b * h);
    pad.fill(1, 1, h); // sample 0 scores one step
    pad.fill(1, 2 * h, 3 * h); // sample 2 none
    const dims = Int32Array.from([5, 2, 4]);
    for (const lossDims of [undefined, 3, dims]) {
      const perSample = { err: new Float64Array(b), kept: new Float64Array(b) };
      const [denominator, entriesOf] = [{ value: 0 }, { value: 0 }];
      const loss = (
        await maskedMse(tf.tensor3d(wrong, [b, h, a]), v, pad, {
          lossDims,
          perSample,
          reduction: 'samples',
          denominator,
        }).data()
      )[0]!;
      expect(perSample.kept[2]).toBe(0);
      const means = [0, 1].map((i) => perSample.err[i]! / perSample.kept[i]!);
      expect(loss).toBeCloseTo((means[0]! + means[1]!) / 2, 5);
      // Not the entries' mean: sample 0's one step weighs as much as sample 1's four.
      const entries = (
        await maskedMse(tf.tensor3d(wrong, [b, h, a]), v, pad, { lossDims, denominator: entriesOf }).data()
      )[0]!;
      expect(entries).toBeCloseTo(
        (perSample.err[0]! + perSample.err[1]!) / (perSample.kept[0]! + perSample.kept[1]!),
        5,
      );
      expect(Math.abs(loss - entries)).toBeGreaterThan(0.01);
      // What each mean divided by: the samples scored, the entries scored.
      expect(denominator.value).toBe(2);
      expect(entriesOf.value).toBe(perSample.kept[0]! + perSample.kept[1]!);
    }
  });

  it('k flow samples per observation give the mean of k separate losses, the prefix run once', async () => {
    const d = tiny();
    const model = new Pi0(d);
    const w = initParams(d, 5);
    const inp = prepareInputs(d, observation(2, 2, d.imageSize, 6));
    const rng = new Rng(7);
    const n = 2 * d.horizon * d.actionDim;
    const actions = rng.normals(n);
    const noise = rng.normals(3 * n);
    const t = new Float32Array([0.2, 0.5, 0.9, 0.4, 0.7, 0.95]);
    const pad = new Uint8Array(2 * d.horizon);
    pad[d.horizon - 1] = 1;
    const joint = (
      await model.flowLoss(w, inp, actions, pad, noise, t, { samples: 3, lossDims: 7 }).data()
    )[0]!;
    let sum = 0;
    for (let j = 0; j < 3; j++) {
      const one = model.flowLoss(
        w,
        inp,
        actions,
        pad,
        noise.subarray(j * n, (j + 1) * n),
        t.subarray(2 * j, 2 * j + 2),
        {
          lossDims: 7,
        },
      );
      sum += (await one.data())[0]!;
    }
    expect(joint).toBeCloseTo(sum / 3, 4);
  });

  it('the Euler sampler integrates a known velocity field exactly, visiting t = 1, 0.9, …, 0.1', async () => {
    const rng = new Rng(2);
    const noise = rng.normals(2 * 5 * 3);
    const actions = rng.normals(2 * 5 * 3);
    const { target } = flowTargets(actions, noise, new Float32Array([0.5, 0.5]));
    const times: number[] = [];
    const x1 = tf.tensor3d(noise, [2, 5, 3]);
    const x0 = eulerIntegrate(x1, 10, (_x, t) => {
      times.push(t);
      return tf.tensor3d(target, [2, 5, 3]);
    });
    const out = await x0.data();
    for (let i = 0; i < out.length; i++) expect(out[i]).toBeCloseTo(actions[i]!, 5);
    expect(times.map((t) => Math.round(t * 10) / 10)).toEqual([
      1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1,
    ]);
    tf.dispose([x0, x1]);
  });
});

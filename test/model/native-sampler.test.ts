import type { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setProductPrecision, setupBackend } from '../../src/backend/index.js';
import { loadBlas } from '../../src/backend/native/blas.js';
import { loadOneDnn } from '../../src/backend/native/onednn.js';
import { ModelConfig } from '../../src/config/schema.js';
import { ChunkSampler } from '../../src/model/chunk-sampler.js';
import { modelDims } from '../../src/model/config.js';
import { fastSpecialTokens } from '../../src/model/fast-decode.js';
import { trainFastTokenizer } from '../../src/model/fast-tokenizer.js';
import type { ModelInputs } from '../../src/model/inputs.js';
import { NativeSampler, nativeSamplingWeights, samplerThreads } from '../../src/model/native-sampler.js';
import { initParams, Pi0, prepareInputs } from '../../src/model/pi0.js';
import { Rng } from '../../src/model/rng.js';
import { samplingWeights } from '../../src/model/sampler.js';
import { trainedModulation } from './helpers.js';
import { withTrainedFilm } from './trained.js';

const haveBlas = !('error' in loadBlas());
if (!haveBlas) console.warn('native sampler tests skipped: the BLAS binding does not load here');

// On with the pack whatever VLA_NATIVE says (CI runs the model tests once more with it off): the
// native sampler needs it, and one test turns it off itself.
beforeAll(async () => {
  await setupBackend({ backend: 'wasm', native: true });
});
afterAll(async () => {
  await setupBackend({ backend: 'wasm' });
});

/** Params as if trained: LoRA-free, with the prompt's FiLM (zero at init) made random. */
function params(dims: ReturnType<typeof modelDims>, seed: number): Map<string, tf.Tensor> {
  return withTrainedFilm(initParams(dims, seed), seed + 1);
}

function inputs(
  dims: ReturnType<typeof modelDims>,
  b: number,
  cams: number,
  seed: number,
  opts: { dropCamera?: boolean; prompts?: string[] } = {},
): ModelInputs {
  const rng = new Rng(seed);
  const images = new Uint8Array(b * cams * dims.imageSize * dims.imageSize * 3);
  for (let i = 0; i < images.length; i++) images[i] = rng.nextU32() & 255;
  const imageMask = new Uint8Array(b * cams).fill(1);
  if (opts.dropCamera) imageMask[b * cams - 1] = 0;
  return prepareInputs(dims, {
    batchSize: b,
    cameras: cams,
    imageSize: dims.imageSize,
    images,
    imageMask,
    state: rng.normals(b * 7),
    stateDim: 7,
    prompts:
      opts.prompts ?? Array.from({ length: b }, (_, i) => (i % 2 ? 'go' : `pick up the cube ${i} now`)),
  });
}

/** max |a − b| relative to max |b|. */
function relDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}

describe.runIf(haveBlas)('native sampler', () => {
  // Odd sizes on purpose: rows, key counts and hidden units per thread that are not multiples of the SIMD width.
  // `pi05`: what the π0.5 runs of a config add (the odd one tokenises the robot's 7 state dims alone).
  const configs: Array<{ name: string; over: Record<string, unknown>; pi05?: Record<string, unknown> }> = [
    { name: 'tiny, prompt FiLM', over: { preset: 'tiny', action_horizon: 8, prompt_film: true } },
    {
      name: 'tiny, prompt FiLM pooled by attention',
      over: { preset: 'tiny', action_horizon: 8, prompt_film: true, prompt_film_pool: 'attention' },
    },
    {
      name: 'odd widths, 2 vision blocks',
      over: {
        preset: 'tiny',
        width: 52,
        heads: 2,
        mlp_dim: 90,
        expert_width: 30,
        expert_mlp_dim: 42,
        action_horizon: 7,
        action_dim: 9,
        vision_depth: 2,
        depth: 3,
      },
      pi05: { state_tokens: 7 },
    },
  ];
  for (const { name, over } of configs) {
    for (const threads of [1, 2]) {
      it(`matches the TensorFlow.js sampler (${name}; ${threads} thread${threads > 1 ? 's' : ''}): padding, a missing camera, batch 3`, async () => {
        const dims = modelDims(ModelConfig.parse(over));
        const model = new Pi0(dims);
        const w = params(dims, 5);
        const sw = samplingWeights(model, w);
        const inp = inputs(dims, 3, 2, 9, { dropCamera: true });
        const noise = new Rng(4).normals(3 * dims.horizon * dims.actionDim);
        const ref = (await model.sample(w, inp, noise, { cache: true, weights: sw }).data()) as Float32Array;
        const ns = await NativeSampler.create(dims, sw, { threads, cameras: 2, batch: 3 });
        try {
          const out = ns.sample(inp, noise, dims.numSteps, (t) => model.timeEmbedding(t));
          expect(relDiff(out, ref)).toBeLessThan(2e-5);
          // Again on the same arena: nothing of the first chunk leaks into the second.
          const again = ns.sample(inp, noise, dims.numSteps, (t) => model.timeEmbedding(t));
          expect(Array.from(again)).toEqual(Array.from(out));
        } finally {
          await ns.dispose();
        }
        tf.dispose([...w.values(), ...sw.values()]);
      });
    }
  }

  it('keeps a committed prefix (training-time real-time chunking) as TensorFlow.js does, at no extra pass; an uncommitted chunk after it is unchanged', async () => {
    const dims = modelDims(ModelConfig.parse(configs[1]!.over));
    const model = new Pi0(dims);
    const w = params(dims, 6);
    const sw = samplingWeights(model, w);
    const b = 3;
    const per = dims.horizon * dims.actionDim;
    const inp = inputs(dims, b, 2, 10, { dropCamera: true });
    const noise = new Rng(7).normals(b * per);
    // Sample 0 commits 3 steps, sample 1 none, sample 2 the whole chunk.
    const committed = { actions: new Rng(8).normals(b * per), delays: Int32Array.of(3, 0, dims.horizon) };
    const ref = (await model.sample(w, inp, noise, { cache: true, committed }).data()) as Float32Array;
    const plain = (await model.sample(w, inp, noise, { cache: true, weights: sw }).data()) as Float32Array;
    for (const threads of [1, 2]) {
      const ns = await NativeSampler.create(dims, sw, { threads, cameras: 2, batch: b });
      try {
        const out = ns.sample(inp, noise, dims.numSteps, (t) => model.timeEmbedding(t), committed);
        expect(relDiff(out, ref)).toBeLessThan(2e-5);
        // The committed steps come back exactly as given; the rest differ from the free chunk's.
        expect(Array.from(out.subarray(0, 3 * dims.actionDim))).toEqual(
          Array.from(committed.actions.subarray(0, 3 * dims.actionDim)),
        );
        expect(Array.from(out.subarray(2 * per))).toEqual(Array.from(committed.actions.subarray(2 * per)));
        expect(relDiff(out.subarray(0, per), plain.subarray(0, per))).toBeGreaterThan(1e-3);
        const free = ns.sample(inp, noise, dims.numSteps, (t) => model.timeEmbedding(t));
        expect(relDiff(free, plain)).toBeLessThan(2e-5);
        expect(() =>
          ns.sample(inp, noise, dims.numSteps, (t) => model.timeEmbedding(t), {
            ...committed,
            delays: Int32Array.of(1, 2),
          }),
        ).toThrow('committed delays: expected 3 (one per sample), got 2');
      } finally {
        await ns.dispose();
      }
    }
    tf.dispose([...w.values(), ...sw.values()]);
  });

  // π0.5: the state as tokens in the prefix, action tokens alone in the suffix, adaptive norms (scale,
  // shift, gate from the flow time) in the expert; its modulation made random (zeros at init: every
  // expert block the identity).
  const pi05 = (over: Record<string, unknown>) => modelDims(ModelConfig.parse({ ...over, variant: 'pi05' }));
  for (const { name, over, pi05: own } of configs) {
    for (const threads of [1, 2]) {
      it(`π0.5 matches TensorFlow.js's cached sampling (${name}${own ? ', 7 state tokens' : ''}; ${threads} thread${threads > 1 ? 's' : ''}): padding, a missing camera, batch 3`, async () => {
        const dims = pi05({ ...over, ...own });
        const model = new Pi0(dims);
        const w = trainedModulation(params(dims, 5), new Rng(6));
        const sw = nativeSamplingWeights(model, w);
        const inp = inputs(dims, 3, 2, 9, { dropCamera: true });
        const noise = new Rng(4).normals(3 * dims.horizon * dims.actionDim);
        const ref = (await model.sample(w, inp, noise, { cache: true }).data()) as Float32Array;
        const ns = await NativeSampler.create(dims, sw, { threads, cameras: 2, batch: 3 });
        try {
          const out = ns.sample(inp, noise, dims.numSteps, (t) => model.timeEmbedding(t));
          expect(relDiff(out, ref)).toBeLessThan(2e-5);
          // The expert does something: the chunk moved from the noise.
          expect(relDiff(out, noise)).toBeGreaterThan(1e-2);
          const again = ns.sample(inp, noise, dims.numSteps, (t) => model.timeEmbedding(t));
          expect(Array.from(again)).toEqual(Array.from(out));
          // The state reaches the chunk through its tokens.
          const moved = ns.sample(
            { ...inp, state: inp.state.map((v) => v + 0.5) },
            noise,
            dims.numSteps,
            (t) => model.timeEmbedding(t),
          );
          expect(relDiff(moved, out)).toBeGreaterThan(1e-4);
          // Other flow times (fewer steps): their conditions are made again, then the first's again.
          const ref4 = (await model
            .sample(w, inp, noise, { cache: true, numSteps: 4 })
            .data()) as Float32Array;
          expect(
            relDiff(
              ns.sample(inp, noise, 4, (t) => model.timeEmbedding(t)),
              ref4,
            ),
          ).toBeLessThan(2e-5);
          const back = ns.sample(inp, noise, dims.numSteps, (t) => model.timeEmbedding(t));
          expect(Array.from(back)).toEqual(Array.from(out));
        } finally {
          await ns.dispose();
        }
        tf.dispose([...w.values(), ...sw.values()]);
      });
    }
  }

  // π0-FAST: the prefix as π0.5's, then greedy decoding of action tokens through the expert. The same
  // tokens from the same logits on either sampler: the same chunks, and the same failures.
  for (const { name, over, pi05: own } of configs) {
    for (const threads of [1, 2]) {
      it(`π0-FAST decodes the tokens TensorFlow.js decodes (${name}; ${threads} thread${threads > 1 ? 's' : ''}): padding, a missing camera, batch 3`, async () => {
        const dims = modelDims(
          ModelConfig.parse({
            ...over,
            ...own,
            variant: 'pi0_fast',
            fast: { vocab_size: 96, max_tokens: 40 },
          }),
        );
        const ad = Math.min(5, dims.actionDim);
        const rng = new Rng(11);
        const chunks = Array.from({ length: 64 }, () => {
          const [a, p] = [rng.normals(ad), rng.normals(ad)];
          return Float32Array.from({ length: dims.horizon * ad }, (_, i) =>
            Math.sin(0.4 * Math.floor(i / ad) * a[i % ad]! + p[i % ad]!),
          );
        });
        const tok = trainFastTokenizer(chunks, {
          horizon: dims.horizon,
          actionDim: ad,
          scale: 10,
          vocabSize: 96,
        });
        const model = new Pi0(dims, tok);
        const w = withTrainedFilm(initParams(dims, 5), 6);
        const sw = nativeSamplingWeights(model, w);
        const inp = inputs(dims, 3, 2, 9, { dropCamera: true });
        const noise = new Float32Array(3 * dims.horizon * dims.actionDim);
        const refFailures: Array<string | null> = [];
        const ref = (await model
          .sample(w, inp, noise, { cache: true, failures: refFailures })
          .data()) as Float32Array;
        const ns = await NativeSampler.create(dims, sw, { threads, cameras: 2, batch: 3, tokenizer: tok });
        try {
          const failures: Array<string | null> = [];
          const out = ns.decode(inp, failures);
          expect(failures).toEqual(refFailures);
          expect(Array.from(out)).toEqual(Array.from(ref));
          // Decoded chunks, not the start's: each sample's tokens made a chunk of its own.
          expect(refFailures).toEqual([null, null, null]);
          expect(new Set(out).size).toBeGreaterThan(4);
          // Again on the same arena, and with another state: the state reaches the tokens.
          expect(Array.from(ns.decode(inp))).toEqual(Array.from(out));
          const moved = { ...inp, state: inp.state.map((v) => v + 1.5) };
          const want = (await model.sample(w, moved, noise, { cache: true }).data()) as Float32Array;
          expect(Array.from(ns.decode(moved))).toEqual(Array.from(want));
          expect(Array.from(want)).not.toEqual(Array.from(ref));
          expect(() => ns.sample(inp, noise, 10, (t) => model.timeEmbedding(t))).toThrow(
            'native sampler: model.variant pi0_fast decodes tokens (decode, not sample)',
          );
        } finally {
          await ns.dispose();
        }
        await expect(NativeSampler.create(dims, sw, { threads, cameras: 2 })).rejects.toThrow(
          'native sampler: model.variant pi0_fast decodes with its action tokenizer, and none was given',
        );
        tf.dispose([...w.values(), ...sw.values()]);
      });
    }
  }

  it('ChunkSampler decodes π0-FAST natively, failures included, and leaves a committed prefix to Pi0.sample to refuse', async () => {
    const dims = modelDims(
      ModelConfig.parse({
        preset: 'tiny',
        action_horizon: 8,
        variant: 'pi0_fast',
        fast: { vocab_size: 64, max_tokens: 40, decoding: 'free' },
      }),
    );
    const rng = new Rng(12);
    const chunks = Array.from({ length: 32 }, () => rng.normals(8 * 3));
    const tok = trainFastTokenizer(chunks, { horizon: 8, actionDim: 3, scale: 10, vocabSize: 64 });
    const model = new Pi0(dims, tok);
    const w = initParams(dims, 2);
    // The end token never wins: a free decode runs past its chunk's values, and makes no chunk.
    const eos = fastSpecialTokens(dims).eos;
    const bias = w.get('expert/token_out/bias')!;
    w.set(
      'expert/token_out/bias',
      tf.tensor1d(Float32Array.from({ length: bias.size }, (_, i) => (i === eos ? -1e4 : 0))),
    );
    bias.dispose();
    const native = new ChunkSampler(model, w, { threads: 2 });
    const tfjs = new ChunkSampler(model, w, { sampler: 'tfjs' });
    try {
      const inp = inputs(model.dims, 2, 2, 7);
      const noise = new Float32Array(2 * 8 * model.dims.actionDim);
      const [a, b]: Array<Array<string | null>> = [[], []];
      const out = await native.sample(inp, noise, { failures: a });
      expect(native.describe()).toBe('native sampler (2 threads)');
      expect(Array.from(out)).toEqual(Array.from(await tfjs.sample(inp, noise, { failures: b })));
      expect(a).toEqual(b);
      expect(a[0]).toMatch(/^action tokens: decoded \d+ values, expected 24 values .*\(40 tokens decoded\)$/);
      expect(Number.isNaN(out[0])).toBe(true);
      await expect(
        native.sample(inp, noise, { committed: { actions: noise, delays: new Int32Array(2) } }),
      ).rejects.toThrow('π0-FAST decodes tokens: real-time chunking');
    } finally {
      await native.dispose();
      await tfjs.dispose();
      tf.dispose([...w.values()]);
    }
  });

  const onednn = loadOneDnn(1);
  it.skipIf('error' in onednn)(
    "runs its products in bf16 where asked, each weight rounded once: within bf16 rounding of fp32, and as TensorFlow.js's bf16 products give (π0 and π0.5, 1 and 2 threads)",
    async () => {
      try {
        for (const variant of ['pi0', 'pi05'] as const) {
          const dims = modelDims(ModelConfig.parse({ preset: 'tiny', action_horizon: 8, variant }));
          const model = new Pi0(dims);
          const w = trainedModulation(params(dims, 5), new Rng(6));
          const sw = nativeSamplingWeights(model, w);
          const inp = inputs(dims, 2, 2, 9);
          const noise = new Rng(4).normals(2 * dims.horizon * dims.actionDim);
          const time = (t: Float32Array) => model.timeEmbedding(t);
          for (const threads of [1, 2]) {
            setProductPrecision('fp32');
            const fp32 = await NativeSampler.create(dims, sw, { threads, cameras: 2, batch: 2 });
            const want = fp32.sample(inp, noise, dims.numSteps, time);
            await fp32.dispose();
            const bf16 = await NativeSampler.create(dims, sw, {
              threads,
              cameras: 2,
              batch: 2,
              precision: 'bf16',
            });
            try {
              const got = bf16.sample(inp, noise, dims.numSteps, time);
              // bf16 keeps 8 bits of mantissa: off fp32 by its rounding, and not fp32 itself.
              expect(relDiff(got, want)).toBeLessThan(3e-2);
              expect(relDiff(got, want)).toBeGreaterThan(1e-5);
              // The rounded weights are kept: the next chunk is the same, bit for bit.
              expect(Array.from(bf16.sample(inp, noise, dims.numSteps, time))).toEqual(Array.from(got));
              // TensorFlow.js's sampler on the pack's bf16 products (every operand rounded per product).
              const tfjs = (await model.sample(w, inp, noise, { cache: true }).data()) as Float32Array;
              expect(relDiff(got, tfjs)).toBeLessThan(1e-2);
            } finally {
              await bf16.dispose();
            }
          }
          tf.dispose([...w.values(), ...sw.values()]);
        }
      } finally {
        setProductPrecision('fp32');
      }
    },
  );

  it('π0.5 keeps a committed prefix as TensorFlow.js does (per-token conditions: committed steps at flow time 0)', async () => {
    const dims = pi05(configs[1]!.over);
    const model = new Pi0(dims);
    const w = trainedModulation(params(dims, 6), new Rng(7));
    const sw = nativeSamplingWeights(model, w);
    const b = 3;
    const per = dims.horizon * dims.actionDim;
    const inp = inputs(dims, b, 2, 10, { dropCamera: true });
    const noise = new Rng(7).normals(b * per);
    const committed = { actions: new Rng(8).normals(b * per), delays: Int32Array.of(3, 0, dims.horizon) };
    const ref = (await model.sample(w, inp, noise, { cache: true, committed }).data()) as Float32Array;
    const plain = (await model.sample(w, inp, noise, { cache: true }).data()) as Float32Array;
    for (const threads of [1, 2]) {
      const ns = await NativeSampler.create(dims, sw, { threads, cameras: 2, batch: b });
      try {
        const out = ns.sample(inp, noise, dims.numSteps, (t) => model.timeEmbedding(t), committed);
        expect(relDiff(out, ref)).toBeLessThan(2e-5);
        expect(Array.from(out.subarray(0, 3 * dims.actionDim))).toEqual(
          Array.from(committed.actions.subarray(0, 3 * dims.actionDim)),
        );
        expect(relDiff(out.subarray(0, per), plain.subarray(0, per))).toBeGreaterThan(1e-3);
        const free = ns.sample(inp, noise, dims.numSteps, (t) => model.timeEmbedding(t));
        expect(relDiff(free, plain)).toBeLessThan(2e-5);
      } finally {
        await ns.dispose();
      }
    }
    tf.dispose([...w.values(), ...sw.values()]);
  });

  it('ChunkSampler runs π0.5 natively, as TensorFlow.js samples it', async () => {
    const dims = pi05({ preset: 'tiny', action_horizon: 8 });
    const model = new Pi0(dims);
    const w = trainedModulation(params(dims, 2), new Rng(3));
    const chunks = new ChunkSampler(model, w, { threads: 2 });
    const tfjs = new ChunkSampler(model, w, { sampler: 'tfjs' });
    try {
      const inp = inputs(dims, 1, 2, 7);
      const noise = new Rng(1).normals(dims.horizon * dims.actionDim);
      expect(relDiff(await chunks.sample(inp, noise), await tfjs.sample(inp, noise))).toBeLessThan(2e-5);
      expect(chunks.describe()).toBe('native sampler (2 threads)');
    } finally {
      await chunks.dispose();
      await tfjs.dispose();
      tf.dispose([...w.values()]);
    }
  });

  it('refuses inputs that do not fit, naming what was expected', async () => {
    const dims = modelDims(ModelConfig.parse({ preset: 'tiny', action_horizon: 8 }));
    const model = new Pi0(dims);
    const w = params(dims, 1);
    const sw = samplingWeights(model, w);
    const ns = await NativeSampler.create(dims, sw, { threads: 1, cameras: 2, batch: 1 });
    try {
      const inp = inputs(dims, 1, 2, 3);
      const noise = new Float32Array(dims.horizon * dims.actionDim);
      const te = (t: Float32Array) => model.timeEmbedding(t);
      const before = ns.sample(inp, noise, 10, te);
      expect(() => ns.sample({ ...inp, images: inp.images.subarray(1) }, noise, 10, te)).toThrow(
        `native sampler: ${inp.images.length - 1} image bytes for 2 images of 32×32×3 in 8-pixel patches (expected ${inp.images.length}`,
      );
      expect(() => ns.sample({ ...inp, patchSize: 16 }, noise, 10, te)).toThrow(
        'native sampler: images of 32 px in 16-pixel patches, expected 32 px in 8',
      );
      expect(() => ns.sample(inp, noise.subarray(1), 10, te)).toThrow(
        `native sampler: noise has ${noise.length - 1} values, expected ${noise.length}`,
      );
      // A long state would run into the noise in the arena, a short one leave the last chunk's values.
      expect(() => ns.sample({ ...inp, state: new Float32Array(dims.actionDim + 1) }, noise, 10, te)).toThrow(
        `native sampler: state has ${dims.actionDim + 1} values, expected ${dims.actionDim}`,
      );
      expect(() => ns.sample({ ...inp, promptMask: inp.promptMask.subarray(1) }, noise, 10, te)).toThrow(
        `native sampler: promptMask has ${inp.promptLen - 1} values, expected ${inp.promptLen}`,
      );
      const ids = inp.promptTokens.slice();
      ids[1] = 100000;
      expect(() => ns.sample({ ...inp, promptTokens: ids }, noise, 10, te)).toThrow(
        'native sampler: token 1 is 100000, expected 0..',
      );
      expect(() => ns.sample(inp, noise, 10, () => new Float32Array(3))).toThrow(
        `native sampler: timeEmbedding gave 3 values for 1 flow times, expected ${dims.expertWidth}`,
      );
      // Nothing refused reached the arena: the next chunk is the one before the refusals.
      expect(Array.from(ns.sample(inp, noise, 10, te))).toEqual(Array.from(before));
      expect(ns.fits(inputs(dims, 2, 2, 3), 10)).toBe(false);
      expect(() => ns.sample(inputs(dims, 2, 2, 3), new Float32Array(2 * noise.length), 10, te)).toThrow(
        'native sampler: the inputs do not fit its arena: batch 2, planned for at most 1 (call fits first)',
      );
      expect(ns.fits(inp, 11)).toBe(false);
      expect(() => ns.sample(inp, noise, 11, te)).toThrow('11 flow steps, planned for at most 10');
    } finally {
      await ns.dispose();
      tf.dispose([...w.values(), ...sw.values()]);
    }
  });

  it('ChunkSampler: native where the pack is on, grows its arena for a larger batch, takes a preferred thread count, tfjs when asked', async () => {
    const dims = modelDims(ModelConfig.parse({ preset: 'tiny', action_horizon: 8 }));
    const model = new Pi0(dims);
    const w = params(dims, 2);
    const chunks = new ChunkSampler(model, w, { threads: 2 });
    const tfjs = new ChunkSampler(model, w, { sampler: 'tfjs' });
    try {
      for (const b of [1, 2]) {
        const inp = inputs(dims, b, 2, 7 + b);
        const noise = new Rng(b).normals(b * dims.horizon * dims.actionDim);
        const out = await chunks.sample(inp, noise);
        const ref = await tfjs.sample(inp, noise);
        expect(relDiff(out, ref)).toBeLessThan(2e-5);
        expect(chunks.describe()).toBe('native sampler (2 threads)');
      }
      expect(tfjs.describe()).toBe('tfjs sampler (tfjs sampler asked for)');
      // A server sharing the machine with a simulation prefers one thread (an explicit count would win).
      const server = new ChunkSampler(model, w);
      server.preferThreads(1);
      const inp = inputs(dims, 1, 2, 11);
      const noise = new Rng(3).normals(dims.horizon * dims.actionDim);
      expect(relDiff(await server.sample(inp, noise), await tfjs.sample(inp, noise))).toBeLessThan(2e-5);
      expect(server.describe()).toBe('native sampler (1 thread)');
      await server.dispose();
    } finally {
      await chunks.dispose();
      await tfjs.dispose();
      tf.dispose([...w.values()]);
    }
  });

  it('ChunkSampler falls back to TensorFlow.js with one line when the native sampler cannot start', async () => {
    // 3 heads do not split over 2 threads.
    const dims = modelDims(ModelConfig.parse({ preset: 'tiny', width: 48, heads: 3, action_horizon: 8 }));
    const model = new Pi0(dims);
    const w = params(dims, 3);
    const lines: string[] = [];
    const chunks = new ChunkSampler(model, w, { threads: 2, log: (l) => lines.push(l) });
    try {
      const inp = inputs(dims, 1, 2, 1);
      const noise = new Rng(2).normals(dims.horizon * dims.actionDim);
      const out = await chunks.sample(inp, noise);
      const ref = await new ChunkSampler(model, w, { sampler: 'tfjs' }).sample(inp, noise);
      expect(Array.from(out)).toEqual(Array.from(ref));
      await chunks.sample(inp, noise);
      expect(lines).toEqual([
        'native sampler: 3 heads or the MLPs do not split over 2 threads: sampling on TensorFlow.js',
      ]);
      expect(chunks.describe()).toBe(
        'tfjs sampler (native sampler: 3 heads or the MLPs do not split over 2 threads)',
      );
      // Left to choose, it runs such a model natively on one thread.
      const mine = new ChunkSampler(model, w, { log: (l) => lines.push(l) });
      expect(relDiff(await mine.sample(inp, noise), ref)).toBeLessThan(2e-5);
      expect(mine.describe()).toBe('native sampler (1 thread)');
      await mine.dispose();
    } finally {
      await chunks.dispose();
      tf.dispose([...w.values()]);
    }
  });

  it('a worker that dies mid-service fails its chunk, and ChunkSampler carries on with TensorFlow.js', async () => {
    const dims = modelDims(ModelConfig.parse({ preset: 'tiny', action_horizon: 8 }));
    const model = new Pi0(dims);
    const w = params(dims, 4);
    const lines: string[] = [];
    const chunks = new ChunkSampler(model, w, { threads: 2, stallMs: 300, log: (l) => lines.push(l) });
    try {
      const inp = inputs(dims, 1, 2, 5);
      const noise = new Rng(6).normals(dims.horizon * dims.actionDim);
      const first = await chunks.sample(inp, noise);
      expect(chunks.describe()).toBe('native sampler (2 threads)');
      const native = (chunks as unknown as { native: { workers: Worker[] } }).native;
      await native.workers[0]!.terminate();
      const second = await chunks.sample(inp, noise);
      expect(relDiff(second, first)).toBeLessThan(2e-5);
      expect(lines).toEqual([
        'native sampler: the other thread has not answered in 300 ms: sampling on TensorFlow.js from now on',
      ]);
      expect(chunks.describe()).toBe(
        'tfjs sampler (native sampler: the other thread has not answered in 300 ms)',
      );
      expect(Array.from(await chunks.sample(inp, noise))).toEqual(Array.from(second));
    } finally {
      await chunks.dispose();
      tf.dispose([...w.values()]);
    }
  });

  it('ChunkSampler keeps TensorFlow.js sampling while the kernel pack is off', async () => {
    await setupBackend({ backend: 'wasm', native: false });
    const dims = modelDims(ModelConfig.parse({ preset: 'tiny', action_horizon: 8 }));
    const model = new Pi0(dims);
    const w = params(dims, 8);
    const chunks = new ChunkSampler(model, w, { log: () => expect.unreachable('no note: nothing failed') });
    try {
      const inp = inputs(dims, 1, 2, 5);
      const noise = new Rng(6).normals(dims.horizon * dims.actionDim);
      const ref = (await model.sample(w, inp, noise).data()) as Float32Array;
      expect(Array.from(await chunks.sample(inp, noise))).toEqual(Array.from(ref));
      expect(chunks.describe()).toBe('tfjs sampler (the native kernel pack is off)');
    } finally {
      await chunks.dispose();
      tf.dispose([...w.values()]);
      await setupBackend({ backend: 'wasm', native: true });
    }
  });

  it('threads: an explicit count (the user choice, from the command edge), else 1 where two cannot help, else the preference', () => {
    const dims = modelDims(ModelConfig.parse({ preset: 'tiny' }));
    const threeHeads = modelDims(ModelConfig.parse({ preset: 'tiny', width: 48, heads: 3 }));
    expect(samplerThreads(dims, { preferred: 1 })).toBe(1);
    expect(samplerThreads(dims, { blasThreads: 2 })).toBe(1);
    expect(samplerThreads(threeHeads)).toBe(1);
    expect(samplerThreads(dims, { explicit: 2, blasThreads: 2 })).toBe(2);
    expect(samplerThreads(dims, { explicit: 2, preferred: 1 })).toBe(2);
  });
});

/**
 * Inference latency of one action chunk (default `small` model, 2 cameras, a 20-token prompt, H = 50,
 * action_dim 32, 10 flow steps, batch 1), with the prefix KV cache and without it, plus batched
 * sampling as the policy server does it, on TensorFlow.js's sampler and on the native one
 * (native-sampler.ts; ops/call 0: it runs no TensorFlow.js op). For `small` also: the π0.5 variant
 * (on TensorFlow.js's cached velocity, and natively beside π0 run again), and real-time chunking's
 * two ways to continue a committed prefix (guided sampling, its added latency; a committed prefix for
 * a model trained with train.rtc). Medians of several runs; the machine is
 * shared, so compare the rows of one run.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describeBackend, setupBackend } from '../src/backend/index.js';
import { table } from '../src/cli/output.js';
import { ModelConfig } from '../src/config/schema.js';
import { ChunkSampler } from '../src/model/chunk-sampler.js';
import type { Committed } from '../src/model/committed.js';
import { type ModelDims, modelDims } from '../src/model/config.js';
import { fastSpecialTokens } from '../src/model/fast-decode.js';
import { type FastTokenizer, trainFastTokenizer } from '../src/model/fast-tokenizer.js';
import { paramCount } from '../src/model/params.js';
import { initParams, Pi0, prepareInputs, rtcWeights } from '../src/model/pi0.js';
import { Rng } from '../src/model/rng.js';

const PROMPT = 'pick up the red cube'; // 20 bytes + BOS

/** A batch of the bench's observation: two cameras, a 14-dim state, the same prompt for each. */
function observation(d: ModelDims, batch: number, images: Uint8Array, rng: Rng) {
  return prepareInputs(d, {
    batchSize: batch,
    cameras: 2,
    imageSize: d.imageSize,
    images,
    imageMask: new Uint8Array(batch * 2).fill(1),
    state: rng.normals(batch * 14),
    stateDim: 14,
    prompts: new Array(batch).fill(PROMPT),
  });
}

async function timeChunks(
  model: Pi0,
  w: ReturnType<typeof initParams>,
  batch: number,
  cache: boolean,
  reps: number,
  /** Native sampler threads (native-sampler.ts), or 0 for TensorFlow.js's sampler. */
  nativeThreads = 0,
  /** Real-time chunking: guidance, or a committed prefix (model/pi0.ts Guidance, model/committed.ts Committed). */
  rtc: Pick<Parameters<Pi0['sample']>[3] & object, 'guidance' | 'committed'> = {},
) {
  if (nativeThreads > 0) return timeNative(model, w, batch, reps, nativeThreads, rtc.committed);
  const d = model.dims;
  const rng = new Rng(1);
  const images = new Uint8Array(batch * 2 * d.imageSize * d.imageSize * 3).map(() => rng.nextU32() & 255);
  // The rearranged weights a server keeps across chunks (PolicyModel does), for the fast sampler only.
  const weights = model.fastSampling() ? model.samplingWeights(w) : new Map<string, tf.Tensor>();
  const times: number[] = [];
  for (let i = 0; i < reps + 1; i++) {
    const t0 = performance.now();
    const inp = observation(d, batch, images, rng);
    const out = model.sample(w, inp, rng.normals(batch * d.horizon * d.actionDim), {
      cache,
      weights,
      ...rtc,
    });
    await out.data();
    out.dispose();
    if (i > 0) times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  // Ops per chunk: at batch 1 each costs ~10–30 µs of dispatch whatever its size, so this bounds latency.
  const inp = observation(d, batch, images, rng);
  const info = await tf.profile(() => {
    model.sample(w, inp, rng.normals(batch * d.horizon * d.actionDim), { cache, weights, ...rtc }).dispose();
  });
  tf.dispose([...weights.values()]);
  return {
    p50: times[Math.floor(times.length / 2)]!,
    p90: times[Math.floor(times.length * 0.9)]!,
    ops: info.kernels.filter((k) => k.name !== '').length,
  };
}

/** The same chunks on the native sampler (no TensorFlow.js ops at all). */
async function timeNative(
  model: Pi0,
  w: ReturnType<typeof initParams>,
  batch: number,
  reps: number,
  threads: number,
  committed?: Committed,
) {
  const d = model.dims;
  const rng = new Rng(1);
  const images = new Uint8Array(batch * 2 * d.imageSize * d.imageSize * 3).map(() => rng.nextU32() & 255);
  const chunks = new ChunkSampler(model, w, { sampler: 'native', threads });
  const times: number[] = [];
  // Two untimed chunks: the first starts the sampler's worker and arena.
  for (let i = 0; i < reps + 2; i++) {
    const t0 = performance.now();
    const inp = observation(d, batch, images, rng);
    await chunks.sample(inp, rng.normals(batch * d.horizon * d.actionDim), { committed });
    if (i > 1) times.push(performance.now() - t0);
  }
  const line = chunks.describe();
  await chunks.dispose();
  if (!line.startsWith('native')) throw new Error(`native sampler did not run: ${line}`);
  times.sort((a, b) => a - b);
  return { p50: times[Math.floor(times.length / 2)]!, p90: times[Math.floor(times.length * 0.9)]!, ops: 0 };
}

export async function run(): Promise<void> {
  const info = await setupBackend();
  console.log(describeBackend(info));
  const rows: string[][] = [];
  for (const preset of ['tiny', 'small'] as const) {
    const d = modelDims(ModelConfig.parse({ preset }));
    const model = new Pi0(d);
    const w = initParams(d, 0);
    const tensorsBefore = tf.memory().numTensors;
    const label = `${preset} (${(paramCount(w) / 1e6).toFixed(2)}M params, ${d.imageSize}px/${d.patchSize})`;
    const cached = await timeChunks(model, w, 1, true, 15);
    const uncached = await timeChunks(model, w, 1, false, 5);
    const batched = await timeChunks(model, w, 8, true, 5);
    const row = (what: string, r: { p50: number; p90: number; ops: number }, per = 1) =>
      rows.push([label, what, (r.p50 / per).toFixed(1), (r.p90 / per).toFixed(1), String(r.ops)]);
    row('B=1, KV cache, tfjs sampler', cached);
    row('B=1, no KV cache', uncached);
    row('B=8, KV cache, tfjs sampler (per chunk)', batched, 8);
    if (info.native) {
      row('B=1, KV cache, native sampler 1 thread', await timeChunks(model, w, 1, true, 21, 1));
      row('B=1, KV cache, native sampler 2 threads', await timeChunks(model, w, 1, true, 21, 2));
      row(
        'B=8, KV cache, native sampler 2 threads (per chunk)',
        await timeChunks(model, w, 8, true, 5, 2),
        8,
      );
    }
    if (preset === 'small') {
      // Real-time chunking: a 4-step delay, the previous chunk's remaining 40 steps as the prefix.
      const [h, a] = [d.horizon, d.actionDim];
      const prefix = new Rng(9).normals(h * a);
      const guidance = { prefix, weights: rtcWeights(h, 4, h - 10), maxGuidance: 5 };
      row(
        'B=1, KV cache, RTC guided (tfjs gradients)',
        await timeChunks(model, w, 1, true, 5, 0, { guidance }),
      );
      const committed = { actions: prefix, delays: Int32Array.of(4) };
      row(
        'B=1, KV cache, committed prefix (train.rtc)',
        await timeChunks(model, w, 1, true, 9, 0, { committed }),
      );
      if (info.native) {
        // The plain native rows above, again beside these: train.rtc should cost nothing.
        for (const threads of [1, 2]) {
          row(
            `B=1, native sampler ${threads} thread${threads > 1 ? 's' : ''}`,
            await timeChunks(model, w, 1, true, 21, threads),
          );
          row(
            `B=1, native sampler ${threads} thread${threads > 1 ? 's' : ''}, committed prefix (train.rtc)`,
            await timeChunks(model, w, 1, true, 21, threads, { committed }),
          );
        }
      }
      // π0.5 as openpi tokenises the state (every padded dim, 32 prefix tokens), then only the bench
      // robot's 14 dims (model.state_tokens, as the shipped π0.5 configs set it).
      for (const stateTokens of [undefined, 14]) {
        const d05 = modelDims(ModelConfig.parse({ preset, variant: 'pi05', state_tokens: stateTokens }));
        const w05 = initParams(d05, 0);
        const pi05 = new Pi0(d05);
        const label05 = `${preset} π0.5, ${d05.stateTokens} state tokens (${(paramCount(w05) / 1e6).toFixed(2)}M params)`;
        const r = await timeChunks(pi05, w05, 1, true, 15);
        rows.push([
          label05,
          'B=1, KV cache, tfjs sampler',
          r.p50.toFixed(1),
          r.p90.toFixed(1),
          String(r.ops),
        ]);
        if (info.native) {
          // π0.5 on the native sampler, each beside π0's again (the machine is shared: neighbours compare).
          for (const threads of [1, 2]) {
            const what = `B=1, KV cache, native sampler ${threads} thread${threads > 1 ? 's' : ''}`;
            const r0 = await timeChunks(model, w, 1, true, 21, threads);
            const r5 = await timeChunks(pi05, w05, 1, true, 21, threads);
            row(`${what} (π0, again)`, r0);
            rows.push([label05, what, r5.p50.toFixed(1), r5.p90.toFixed(1), String(r5.ops)]);
          }
        }
        tf.dispose([...w05.values()]);
      }
      // π0-FAST decodes one token per step: timed at fixed token counts (the end token never wins), as
      // many as a transfer-cube chunk takes (docs/model-family.md) and twice that; the bench robot's 14
      // state tokens, as pi0_fast_sim_transfer_cube.
      for (const tokens of FAST_TOKENS) {
        const dFast = modelDims(
          ModelConfig.parse({
            preset,
            variant: 'pi0_fast',
            state_tokens: 14,
            fast: { max_tokens: tokens, decoding: 'free' },
          }),
        );
        const wFast = initParams(dFast, 0);
        const bias = wFast.get('expert/token_out/bias')!;
        const never = new Float32Array(bias.size);
        never[fastSpecialTokens(dFast).eos] = -100;
        wFast.set('expert/token_out/bias', tf.tensor(never, bias.shape));
        bias.dispose();
        const fast = new Pi0(dFast, benchTokenizer(dFast));
        // Beside π0 on the same (TensorFlow.js) sampler, timed again just before: the ratio is the figure.
        row('B=1, KV cache, tfjs sampler (π0, again)', await timeChunks(model, w, 1, true, 9));
        const rf = await timeChunks(fast, wFast, 1, true, 5);
        const labelFast = `${preset} π0-FAST (${(paramCount(wFast) / 1e6).toFixed(2)}M params)`;
        rows.push([
          labelFast,
          `B=1, KV cache, greedy, ${tokens} tokens, tfjs sampler`,
          rf.p50.toFixed(1),
          rf.p90.toFixed(1),
          String(rf.ops),
        ]);
        if (info.native) {
          // Decoded natively, beside π0's native chunk timed just before.
          for (const threads of [1, 2]) {
            const what = `native sampler ${threads} thread${threads > 1 ? 's' : ''}`;
            row(`B=1, KV cache, ${what} (π0, again)`, await timeChunks(model, w, 1, true, 21, threads));
            const rn = await timeChunks(fast, wFast, 1, true, 11, threads);
            rows.push([
              labelFast,
              `B=1, KV cache, greedy, ${tokens} tokens, ${what}`,
              rn.p50.toFixed(1),
              rn.p90.toFixed(1),
              '0',
            ]);
          }
        }
        tf.dispose([...wFast.values()]);
      }
    }
    if (tf.memory().numTensors !== tensorsBefore) throw new Error('sampling leaked tensors');
    tf.dispose([...w.values()]);
  }
  console.log(
    table(
      ['model', 'chunk (H=50, 10 flow steps, 2 cams, 20-token prompt)', 'p50 ms', 'p90 ms', 'ops/call'],
      rows,
    ),
  );
}

/** Action tokens per chunk the π0-FAST rows decode: a transfer-cube chunk's p50 and max at scale 100 (docs/model-family.md). */
const FAST_TOKENS = [51, 147];

/** A tokenizer of the model's chunk shape (trained on smooth synthetic chunks; only its shape matters here). */
function benchTokenizer(d: ModelDims): FastTokenizer {
  const rng = new Rng(5);
  const chunks = Array.from({ length: 64 }, () => {
    const c = new Float32Array(d.horizon * d.actionDim);
    const phase = rng.normals(d.actionDim);
    for (let t = 0; t < d.horizon; t++)
      for (let a = 0; a < d.actionDim; a++) c[t * d.actionDim + a] = 0.5 * Math.sin(t / 10 + phase[a]!);
    return c;
  });
  return trainFastTokenizer(chunks, {
    horizon: d.horizon,
    actionDim: d.actionDim,
    scale: 10,
    vocabSize: d.fast.vocabSize,
  });
}

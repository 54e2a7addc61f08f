/**
 * The KV-cached sampler (sampler.ts) run outside TensorFlow.js's op-by-op engine, for one chunk's
 * latency: the same arithmetic on the same rearranged weights (native/weights.ts), every product an
 * OpenBLAS sgemm on memory in place and every element-wise pass a WASM SIMD kernel (fused.wat), with
 * no op dispatch between them, optionally split over two threads. π0, π0.5 and π0-FAST's greedy decoding
 * (native/variant.ts).
 *
 * Why: at batch 1 a chunk is ~800 kernels of 10–300 µs; between them TensorFlow.js's engine bookkeeping
 * and a second core left idle (OpenBLAS's own threads lose more than they gain at these sizes, see
 * blas.ts). Measured numbers: `npm run bench -- native`, `npm run bench -- model`.
 *
 * By idea:
 * - native/layout.ts: the arena, one shared WebAssembly memory (weights, each thread's shard; inputs;
 *   caches; scratch) planned as offsets, and the weights' sharding over the threads;
 * - native/threads.ts: the thread runtime (workers, barriers on shared memory, jobs, failure and stalls);
 * - native/program.ts: the forward pass every thread runs (`Engine`), one block for every pass;
 * - native/variant.ts: what it runs per variant, as data; native/weights.ts: the weights it reads;
 * - here: `NativeSampler`, which writes a chunk's inputs into the arena and runs it.
 */
import os from 'node:os';
import type { Worker } from 'node:worker_threads';
import { loadBlas, type Precision, useProducts } from '../backend/native/blas.js';
import { loadFused } from '../backend/native/fused.js';
import { type Committed, checkCommitted, withCommitted } from './committed.js';
import type { ModelDims } from './config.js';
import { decodedChunks, fastDecodeRules } from './fast-decode.js';
import type { FastTokenizer } from './fast-tokenizer.js';
import { checkModelInputs, type ModelInputs, patchifyInto } from './inputs.js';
import { fillWeights, type Layout, planLayout, type SharedMemory, sharedMemory } from './native/layout.js';
import { CONDITION_STEPS, CONDITION_TIME0, Engine } from './native/program.js';
import { startWorkers } from './native/threads.js';
import { nativeSamplerUnavailable } from './native/variant.js';
import type { SamplingWeights } from './sampler.js';

export { type Layout, planLayout } from './native/layout.js';
export { Engine } from './native/program.js';
export { NativeSamplerFailure, type WorkerSetup } from './native/threads.js';
export { nativeSamplerUnavailable } from './native/variant.js';
export { nativeSamplingWeights } from './native/weights.js';

/**
 * The threads a chunk runs on. `explicit` (the user's, from the command's edge, or an API caller's)
 * wins; then one under OpenBLAS threads of its own (`--blas-threads 2`: they would contend for the
 * same cores) or where the model's heads or MLPs do not split in two; then the caller's preference (a
 * server beside a simulation prefers 1); else one per core, up to two.
 */
export function samplerThreads(
  dims: ModelDims,
  opts: { explicit?: number; preferred?: number; blasThreads?: number } = {},
): number {
  if (opts.explicit !== undefined) return opts.explicit;
  if ((opts.blasThreads ?? 1) > 1 || nativeSamplerUnavailable(dims, 2) !== null) return 1;
  return opts.preferred ?? Math.min(2, os.availableParallelism());
}

/**
 * The native sampler for one model's sampling weights: its arena, its engine on this thread and its
 * worker (with two threads). Sizes grow on demand (a larger batch or prompt re-plans the arena).
 */
export class NativeSampler {
  private readonly f32: Float32Array;
  private readonly i32: Int32Array;
  /** The flow-time embeddings (every step's; t = 0's) whose conditions the threads hold (π0.5). */
  private conditioned: { times: Float32Array | null; time0: Float32Array | null } = {
    times: null,
    time0: null,
  };

  private constructor(
    readonly dims: ModelDims,
    readonly threads: number,
    readonly precision: Precision,
    private readonly layout: Layout,
    private readonly engine: Engine,
    private readonly workers: Worker[],
    memory: SharedMemory,
    private readonly tokenizer: FastTokenizer | null,
  ) {
    this.f32 = new Float32Array(memory.buffer);
    this.i32 = new Int32Array(memory.buffer);
  }

  /**
   * Copies `sw` into a new arena and starts the worker. Throws with a one-line reason where the binding
   * or the fused kernels are missing (the caller then keeps the TensorFlow.js sampler).
   */
  static async create(
    dims: ModelDims,
    sw: SamplingWeights,
    opts: {
      threads?: number;
      batch?: number;
      cameras: number;
      promptLen?: number;
      steps?: number;
      /** How long a thread waits for the other before the chunk fails (default 10 s). */
      stallMs?: number;
      /** The products' precision (default fp32), on every thread. */
      precision?: Precision;
      /** π0-FAST: its action tokenizer (the decode's rules, and its tokens back to chunks). */
      tokenizer?: FastTokenizer | null;
    },
  ): Promise<NativeSampler> {
    const threads = samplerThreads(dims, { explicit: opts.threads });
    const why = nativeSamplerUnavailable(dims, threads);
    if (why) throw new Error(`native sampler: ${why}`);
    const blas = loadBlas();
    if ('error' in blas) throw new Error(`native sampler: ${blas.error}`);
    const precision = opts.precision ?? 'fp32';
    const productsOff = useProducts(blas, precision);
    if (productsOff) throw new Error(`native sampler: ${productsOff}`);
    const tokenizer = dims.variant === 'pi0_fast' ? (opts.tokenizer ?? null) : null;
    if (dims.variant === 'pi0_fast' && !tokenizer)
      throw new Error(
        'native sampler: model.variant pi0_fast decodes with its action tokenizer, and none was given',
      );
    const layout = planLayout(
      dims,
      sw,
      threads,
      opts.batch ?? 1,
      opts.cameras,
      opts.promptLen ?? dims.maxTokenLen,
      opts.steps ?? dims.numSteps,
      tokenizer && fastDecodeRules(dims, tokenizer),
    );
    if (opts.stallMs !== undefined) layout.stallMs = opts.stallMs;
    const memory = sharedMemory(layout.size);
    await fillWeights(new Float32Array(memory.buffer), layout, sw);
    const fused = await loadFused(memory);
    if ('error' in fused) throw new Error(`native sampler: ${fused.error}`);
    const workers = await startWorkers(memory, layout, threads, precision);
    return new NativeSampler(
      dims,
      threads,
      precision,
      layout,
      new Engine(memory, layout, 0, blas, fused),
      workers,
      memory,
      tokenizer,
    );
  }

  /** What the arena was planned for. */
  get capacity(): { batch: number; promptLen: number; steps: number } {
    const L = this.layout;
    return { batch: L.maxBatch, promptLen: L.maxPromptLen, steps: L.input.maxSteps };
  }

  /** Whether `inp` fits the arena as planned (a larger batch or prompt or more steps needs a new one). */
  fits(inp: ModelInputs, steps: number): boolean {
    return this.misfit(inp, steps) === null;
  }

  /** What of `inp` the arena was not planned for, named with both sizes; null where it fits. */
  private misfit(inp: ModelInputs, steps: number): string | null {
    const L = this.layout;
    if (inp.batch > L.maxBatch) return `batch ${inp.batch}, planned for at most ${L.maxBatch}`;
    if (inp.cameras !== L.cameras) return `${inp.cameras} cameras, planned for ${L.cameras}`;
    if (inp.promptLen > L.maxPromptLen)
      return `a prompt of ${inp.promptLen} tokens, planned for at most ${L.maxPromptLen}`;
    if (steps > L.input.maxSteps) return `${steps} flow steps, planned for at most ${L.input.maxSteps}`;
    return null;
  }

  /**
   * Action chunks float32 [B·H·A] from `noise` by `steps` Euler steps; `timeEmbedding` is the model's
   * (Pi0.timeEmbedding). With `committed` (a checkpoint trained with train.rtc), each sample's first
   * steps are those actions, kept. Blocks this thread for the chunk (the worker computes beside it).
   */
  sample(
    inp: ModelInputs,
    noise: Float32Array,
    steps: number,
    timeEmbedding: (t: Float32Array) => Float32Array,
    committed?: Committed,
  ): Float32Array {
    if (this.tokenizer)
      throw new Error('native sampler: model.variant pi0_fast decodes tokens (decode, not sample)');
    const d = this.dims;
    const L = this.layout;
    const b = inp.batch;
    const l = inp.promptLen;
    const { f32, i32 } = this;
    // A wrong-sized embedding would overwrite the arena's next input: refused, not written.
    const embedded = (t: Float32Array, rows: number): Float32Array => {
      const e = timeEmbedding(t);
      if (e.length !== rows * d.expertWidth)
        throw new Error(
          `native sampler: timeEmbedding gave ${e.length} values for ${rows} flow times, expected ${rows * d.expertWidth}`,
        );
      return e;
    };
    if (noise.length !== b * d.horizon * d.actionDim)
      throw new Error(
        `native sampler: noise has ${noise.length} values, expected ${b * d.horizon * d.actionDim}`,
      );
    this.writeInputs(inp, steps);
    if (committed) {
      checkCommitted(committed, b, d.horizon, d.actionDim);
      f32.set(withCommitted(noise, committed, d.horizon, d.actionDim), L.input.noise);
      // checkCommitted keeps each delay within 0..H.
      i32.set(committed.delays, L.input.delays);
      f32.set(embedded(Float32Array.of(0), 1), L.input.time0);
    } else {
      f32.set(noise, L.input.noise);
      i32.fill(0, L.input.delays, L.input.delays + b);
    }
    const dt = -1 / steps;
    for (let k = 0; k < steps; k++)
      f32.set(embedded(new Float32Array(b).fill(1 + k * dt), b), L.input.times + k * b * d.expertWidth);
    // π0.5's conditions depend on the flow times alone: made again where they differ from the last chunk's.
    let conditions = 0;
    if (L.variant.expertNorms === 'adaptive') {
      const E = d.expertWidth;
      const made = this.conditioned;
      const times = f32.subarray(L.input.times, L.input.times + steps * b * E);
      if (!sameValues(made.times, times)) {
        made.times = times.slice();
        conditions |= CONDITION_STEPS;
      }
      const time0 = f32.subarray(L.input.time0, L.input.time0 + E);
      if (committed && !sameValues(made.time0, time0)) {
        made.time0 = time0.slice();
        conditions |= CONDITION_TIME0;
      }
    }
    this.engine.runJob({ batch: b, promptLen: l, steps, conditions });
    return this.engine.result.slice(0, b * d.horizon * d.actionDim);
  }

  /**
   * π0-FAST: action chunks float32 [B·H·A] by greedy decoding (fast-decode.ts), as Pi0.sample decodes
   * them; a sample whose tokens make no chunk gets NaN rows and its reason in `failures`.
   */
  decode(inp: ModelInputs, failures?: Array<string | null>): Float32Array {
    const tok = this.tokenizer;
    if (!tok)
      throw new Error(
        `native sampler: model.variant ${this.dims.variant} samples by flow steps (sample, not decode)`,
      );
    this.writeInputs(inp, 0);
    this.engine.runJob({ batch: inp.batch, promptLen: inp.promptLen, steps: 0, conditions: 0 });
    return decodedChunks(this.engine.tokens, tok, this.dims.horizon, this.dims.actionDim, failures);
  }

  /** Checks `inp` against the model and the arena and writes it there: images, prompt, state, horizons. */
  private writeInputs(inp: ModelInputs, steps: number): void {
    const misfit = this.misfit(inp, steps);
    if (misfit)
      throw new Error(`native sampler: the inputs do not fit its arena: ${misfit} (call fits first)`);
    const d = this.dims;
    const L = this.layout;
    const b = inp.batch;
    const l = inp.promptLen;
    const { f32, i32 } = this;
    checkModelInputs(inp, d, 'native sampler');
    patchifyInto(f32.subarray(L.input.patches), inp.images, b * inp.cameras, inp.imageSize, inp.patchSize);
    i32.set(inp.promptTokens, L.input.ids);
    for (let i = 0; i < b * l; i++) i32[L.input.masks + i] = inp.promptMask[i]!;
    for (let i = 0; i < b * inp.cameras; i++) i32[L.input.masks + b * l + i] = inp.imageMask[i]!;
    f32.set(inp.state, L.input.state);
    if (inp.horizons) i32.set(inp.horizons, L.input.horizons);
    else i32.fill(d.horizon, L.input.horizons, L.input.horizons + b);
  }

  /** Stops the worker; the arena goes with the last reference to it. */
  async dispose(): Promise<void> {
    this.engine.stop();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

function sameValues(a: Float32Array | null, b: Float32Array): boolean {
  if (a === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

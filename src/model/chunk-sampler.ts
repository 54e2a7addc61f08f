/**
 * Where a policy's action chunks are computed: the native sampler (native-sampler.ts: OpenBLAS and
 * WASM SIMD kernels over shared memory, on two threads where there are two cores) when the kernel pack
 * is active, else TensorFlow.js's KV-cached sampler (sampler.ts), else the uncached path. Keeps what
 * each needs across chunks: the rearranged sampling weights, the native sampler's arena and worker.
 */
import * as tf from '@tensorflow/tfjs-core';
import { activeBackend } from '../backend/index.js';
import type { Committed } from './committed.js';
import type { ModelInputs } from './inputs.js';
import {
  NativeSampler,
  NativeSamplerFailure,
  nativeSamplerUnavailable,
  nativeSamplingWeights,
  samplerThreads,
} from './native-sampler.js';
import type { Params } from './params.js';
import type { Guidance, Pi0 } from './pi0.js';
import type { SamplingWeights } from './sampler.js';

/** The user's choice of sampler, made at the command's edge (VLA_SAMPLER, VLA_SAMPLER_THREADS) and passed in. */
export type SamplerChoice = Pick<ChunkSamplerOptions, 'sampler' | 'threads'>;

export interface ChunkSamplerOptions {
  /** 'native' (the default where it can run), or 'tfjs'. */
  sampler?: 'native' | 'tfjs';
  /** Native sampler threads, 1 or 2 (default: see samplerThreads). */
  threads?: number;
  /** Where a one-line note goes when the native sampler cannot start (default: stderr). */
  log?: (line: string) => void;
  /** How long a native sampler thread waits for the other before the chunk fails (default 10 s). */
  stallMs?: number;
}

export class ChunkSampler {
  private weights: SamplingWeights | null = null;
  private native: NativeSampler | null = null;
  private creating: Promise<NativeSampler | null> | null = null;
  /** Why the native sampler is not used, once a chunk has asked for it. */
  private off: string | null = null;

  constructor(
    private readonly model: Pi0,
    private readonly params: Params,
    private readonly opts: ChunkSamplerOptions = {},
  ) {}

  private log(line: string): void {
    (this.opts.log ?? ((l: string) => console.error(l)))(line);
  }

  /** A thread count an explicit one overrides (preferThreads). */
  private preferred: number | undefined;

  /** Why the native sampler cannot be used now, or null. */
  private unwanted(): string | null {
    if (this.opts.sampler === 'tfjs') return 'tfjs sampler asked for';
    const backend = tf.getBackend();
    if (backend !== 'wasm' && backend !== 'cpu') return `the ${backend} backend runs its own kernels`;
    if (!activeBackend()?.native) return 'the native kernel pack is off';
    // What no thread count changes (the model's variant, the platform).
    return nativeSamplerUnavailable(this.model.dims, 1) ?? this.off;
  }

  /** The native sampler for these inputs: made (or made larger) when needed; null where it cannot run. */
  private async nativeFor(inp: ModelInputs, steps: number): Promise<NativeSampler | null> {
    if (this.unwanted() !== null) return null;
    const d = this.model.dims;
    const threads = samplerThreads(d, {
      explicit: this.opts.threads,
      preferred: this.preferred,
      blasThreads: activeBackend()?.native?.threads,
    });
    // The native sampler runs its products as the process's kernel pack does (setProductPrecision).
    const precision = activeBackend()?.native?.products.startsWith('bf16') ? 'bf16' : 'fp32';
    const wanted = (n: NativeSampler | null) =>
      n?.fits(inp, steps) && n.threads === threads && n.precision === precision;
    if (wanted(this.native)) return this.native;
    if (this.creating) await this.creating;
    if (wanted(this.native)) return this.native;
    const old = this.native;
    this.native = null;
    this.creating = (async () => {
      await old?.dispose();
      try {
        this.weights ??= nativeSamplingWeights(this.model, this.params);
        return await NativeSampler.create(d, this.weights, {
          threads,
          batch: Math.max(inp.batch, old?.capacity.batch ?? 1),
          cameras: inp.cameras,
          promptLen: Math.max(inp.promptLen, d.maxTokenLen),
          steps: Math.max(steps, d.numSteps),
          stallMs: this.opts.stallMs,
          precision,
          tokenizer: this.model.actionTokenizer,
        });
      } catch (e) {
        this.off = (e as Error).message.split('\n')[0]!;
        this.log(`${this.off}: sampling on TensorFlow.js`);
        return null;
      }
    })();
    try {
      this.native = await this.creating;
    } finally {
      this.creating = null;
    }
    return this.native;
  }

  /**
   * The native sampler's threads for the chunks to come where the user chose none (a
   * sampler made with another count is replaced on the next chunk).
   */
  preferThreads(threads: number): void {
    this.preferred = threads;
  }

  /** Starts what the first chunk would (the native sampler's worker, the weights) ahead of it. */
  async prepare(inp: ModelInputs): Promise<void> {
    await this.nativeFor(inp, this.model.dims.numSteps);
  }

  /** Action chunks float32 [B·H·A] from `noise` [B·H·A]. */
  async sample(
    inp: ModelInputs,
    noise: Float32Array,
    opts: {
      numSteps?: number;
      cache?: boolean;
      guidance?: Guidance;
      committed?: Committed;
      /** π0-FAST: why each sample gave no chunk, null where it did (see Pi0.sample). */
      failures?: Array<string | null>;
    } = {},
  ): Promise<Float32Array> {
    const steps = opts.numSteps ?? this.model.dims.numSteps;
    const cache = opts.cache !== false;
    if (opts.guidance) {
      // Guidance differentiates through the model: TensorFlow.js's gradients.
      const out = this.model.sample(this.params, inp, noise, {
        numSteps: steps,
        cache,
        guidance: opts.guidance,
      });
      try {
        return (await out.data()) as Float32Array;
      } finally {
        out.dispose();
      }
    }
    const fast = this.model.dims.variant === 'pi0_fast';
    // π0-FAST with a committed prefix: Pi0.sample says why that is not for it.
    if (cache && !(fast && opts.committed)) {
      const native = await this.nativeFor(inp, steps);
      try {
        if (native && fast) return native.decode(inp, opts.failures);
        if (native)
          return native.sample(inp, noise, steps, (t) => this.model.timeEmbedding(t), opts.committed);
      } catch (e) {
        if (!(e instanceof NativeSamplerFailure)) throw e;
        // A failed engine is not trusted again: this chunk and the next go to TensorFlow.js.
        this.native = null;
        this.off = e.message;
        this.log(`${e.message}: sampling on TensorFlow.js from now on`);
        void native!.dispose();
      }
    }
    if (cache && this.model.fastSampling()) this.weights ??= this.model.samplingWeights(this.params);
    const out = this.model.sample(this.params, inp, noise, {
      numSteps: steps,
      cache,
      // π0.5's native weights are not TensorFlow.js's sampler's (it samples through the cached velocity).
      weights: this.model.fastSampling() ? (this.weights ?? undefined) : undefined,
      committed: opts.committed,
      failures: opts.failures,
    });
    try {
      return (await out.data()) as Float32Array;
    } finally {
      out.dispose();
    }
  }

  /** What computes the chunks: `native sampler (2 threads)`, or `tfjs sampler (why not native)`. */
  describe(): string {
    if (this.native)
      return `native sampler (${this.native.threads} thread${this.native.threads > 1 ? 's' : ''})`;
    const why = this.unwanted();
    return `tfjs sampler${why ? ` (${why})` : ''}`;
  }

  /** Frees the weights at once; the worker stops by the time the promise settles. */
  dispose(): Promise<void> {
    if (this.weights) tf.dispose([...this.weights.values()]);
    this.weights = null;
    const native = this.native;
    const creating = this.creating;
    this.native = null;
    this.off = 'disposed';
    return (async () => {
      await native?.dispose();
      await (await creating)?.dispose();
    })();
  }
}

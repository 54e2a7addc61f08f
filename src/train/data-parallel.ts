/**
 * Data-parallel training on the CPU's cores (`train.data_parallel: N`): the batch is cut into N
 * contiguous parts; the main thread computes the gradients of the first while N − 1 worker threads, each
 * with its own TensorFlow.js and a replica of the weights, compute the others'. The main thread then
 * averages the gradients (weighted by each part's unpadded action steps, so the result is the full
 * batch's gradient up to float rounding) and runs the optimizer once; the replicas read the new weights
 * at the start of the next step. Weights and gradients cross through SharedArrayBuffers, read and
 * written in place in each thread's tensor memory, and the main thread blocks on an Atomics word while
 * it waits, so a training step stays one synchronous call.
 *
 * Why not more threads inside each kernel: WASM's element-wise kernels run on one thread, and OpenBLAS's
 * second thread stalls on the mid-sized products of these models (see native/blas.ts), where two
 * independent halves of the batch keep both cores busy.
 */
import { MessageChannel, type MessagePort, receiveMessageOnPort, type Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { activeBackend, filledTensor, tensorMemory } from '../backend/index.js';
import type { TrainConfig } from '../config/schema.js';
import type { ModelDims } from '../model/config.js';
import type { FastTokenizerSpec } from '../model/fast-tokenizer.js';
import {
  type LossReduction,
  type Observation,
  type Pi0,
  prepareInputs,
  type SampleLoss,
} from '../model/pi0.js';
import { startWorker } from '../threads.js';

/** What one replica needs to compute its part's flow-matching gradients. */
export interface StepInputs {
  obs: Observation;
  /** [B, H, action_dim] targets, padded to the model's action_dim. */
  actions: Float32Array;
  /** [B, H]: 1 where the chunk runs past the episode's end. */
  actionPad: Uint8Array;
  /** `samples` draws of [B, H, action_dim] noise, draw after draw. */
  noise: Float32Array;
  /** `samples` draws of [B] flow times, draw after draw. */
  times: Float32Array;
  /** [B]: each sample's robot's action dims, for the loss (a mixture of robots); else LossOptions' count. */
  lossDims?: Int32Array;
  /** [B]: training-time real-time chunking's committed steps per sample (train.rtc). */
  delays?: Int32Array;
}

export interface LossOptions {
  samples: number;
  lossDims?: number;
  /** Also each sample's part of the loss (a mixture's loss per dataset). */
  perSample?: boolean;
  /** How the loss averages the batch (train.loss_reduction). */
  reduction?: LossReduction;
}

/** Rows [from, to) of a step's inputs. */
export function sliceInputs(x: StepInputs, from: number, to: number, samples: number): StepInputs {
  const o = x.obs;
  const b = o.batchSize;
  const rows = <T extends Uint8Array | Float32Array | Int32Array>(a: T, per: number): T =>
    a.slice(from * per, to * per) as T;
  const perDraw = <T extends Float32Array>(a: T, per: number): T => {
    const out = new (a.constructor as new (n: number) => T)((to - from) * per * samples);
    for (let j = 0; j < samples; j++)
      out.set(a.subarray((j * b + from) * per, (j * b + to) * per), j * (to - from) * per);
    return out;
  };
  const h = x.actionPad.length / b;
  return {
    obs: {
      ...o,
      batchSize: to - from,
      images: rows(o.images, o.cameras * o.imageSize * o.imageSize * 3),
      imageMask: rows(o.imageMask, o.cameras),
      state: rows(o.state, o.stateDim),
      prompts: o.prompts.slice(from, to),
      ...(o.horizons && { horizons: rows(o.horizons, 1) }),
    },
    actions: rows(x.actions, x.actions.length / b),
    actionPad: rows(x.actionPad, h),
    noise: perDraw(x.noise, x.noise.length / (samples * b)),
    times: perDraw(x.times, 1),
    ...(x.lossDims && { lossDims: rows(x.lossDims, 1) }),
    ...(x.delays && { delays: rows(x.delays, 1) }),
  };
}

/**
 * The flow-matching loss of `x` and its gradients with respect to `trainable` (by parameter name), and
 * the loss's denominator (`weight`: what its mean divided by), which weighs a part's mean in the batch's.
 */
export function flowGradients(
  model: Pi0,
  dims: ModelDims,
  params: Map<string, tf.Tensor>,
  trainable: Map<string, tf.Variable>,
  x: StepInputs,
  opts: LossOptions,
): { loss: tf.Scalar; grads: Map<string, tf.Tensor>; weight: number; perSample?: SampleLoss } {
  const inp = prepareInputs(dims, x.obs);
  const b = x.obs.batchSize;
  const perSample = opts.perSample ? { err: new Float64Array(b), kept: new Float64Array(b) } : undefined;
  const denominator = { value: 0 };
  const { value, grads } = tf.variableGrads(
    () =>
      model.flowLoss(params, inp, x.actions, x.actionPad, x.noise, x.times, {
        samples: opts.samples,
        lossDims: x.lossDims ?? opts.lossDims,
        delays: x.delays,
        perSample,
        reduction: opts.reduction,
        denominator,
      }),
    [...trainable.values()],
  );
  return {
    loss: value,
    grads: new Map([...trainable].map(([n, v]) => [n, grads[v.name]!])),
    weight: denominator.value,
    ...(perSample && { perSample }),
  };
}

/** Where each parameter sits in the flat shared buffers, in the trainer's parameter order. */
export interface Layout {
  names: string[];
  shapes: number[][];
  offsets: number[];
  trainable: boolean[];
  total: number;
  trainableTotal: number;
}

export function layoutOf(params: Map<string, tf.Variable>, trainable: Map<string, tf.Variable>): Layout {
  const l: Layout = { names: [], shapes: [], offsets: [], trainable: [], total: 0, trainableTotal: 0 };
  // Trainable weights first: the gradient buffers hold that prefix only.
  const order = [...params.keys()].sort((a, b) => Number(trainable.has(b)) - Number(trainable.has(a)));
  for (const n of order) {
    const v = params.get(n)!;
    l.names.push(n);
    l.shapes.push(v.shape);
    l.offsets.push(l.total);
    l.trainable.push(trainable.has(n));
    l.total += v.size;
    if (trainable.has(n)) l.trainableTotal = l.total;
  }
  return l;
}

/** Copies a tensor's values into `dst` at `offset`, straight from its memory where that can be reached. */
export function readInto(t: tf.Tensor, dst: Float32Array, offset: number): void {
  dst.set(tensorMemory(t) ?? (t.dataSync() as Float32Array), offset);
}

/**
 * Gives each variable a new tensor holding a copy of `values`, written straight into WASM's heap (see
 * filledTensor: a JavaScript copy of B's 18 MB of weights faulted in ~4,600 fresh pages a step, 60–90 ms).
 * Never the old tensor's memory rewritten: WASM's own matmul (XNNPACK) packs a weight operand once and
 * caches it per tensor, so a weight changed in place would be multiplied as it was; and a copy, since the
 * cpu backend keeps the array it is given (here a view of the shared buffer the main thread rewrites).
 */
export function loadValues(vars: tf.Variable[], values: Float32Array[]): void {
  for (const [i, v] of vars.entries()) {
    const from = values[i]!;
    if (from.length !== v.size)
      throw new Error(`weight ${v.name}: ${from.length} values for its ${v.size} ([${v.shape}])`);
    tf.tidy(() => v.assign(filledTensor(v.shape, (out) => out.set(from))));
  }
}

/** Control words: the step a replica has finished (negated when it failed), and the loss it reached. */
const DONE = 0;
/** How long a step may take before the main thread gives up on a replica. */
const STEP_TIMEOUT_MS = 10 * 60_000;

export interface WorkerSetup {
  config: TrainConfig;
  /** π0-FAST's action tokenizer (its file's contents), for the replicas' loss. */
  actionTokenizer: FastTokenizerSpec | null;
  layout: Layout;
  backend: { name: string; native: boolean };
  weights: SharedArrayBuffer;
  grads: SharedArrayBuffer;
  control: SharedArrayBuffer;
  /** Float64 per replica: its part's loss, then that loss's denominator. */
  losses: SharedArrayBuffer;
  index: number;
  port: MessagePort;
}

interface Replica {
  worker: Worker;
  port: MessagePort;
  grads: Float32Array;
}

/** The N − 1 worker replicas of a data-parallel trainer. */
export class Replicas {
  private seq = 0;
  private dirtyAll = true;
  private closed = false;
  /** Whether the step in flight asked for each sample's part of the loss. */
  private perSample = false;

  private constructor(
    readonly layout: Layout,
    private readonly replicas: Replica[],
    private readonly weights: Float32Array,
    private readonly control: Int32Array,
    private readonly losses: Float64Array,
  ) {}

  get count(): number {
    return this.replicas.length;
  }

  /** Starts `n` replicas of the trainer's model, on the backend this thread runs. */
  static async start(
    n: number,
    config: TrainConfig,
    params: Map<string, tf.Variable>,
    trainable: Map<string, tf.Variable>,
    actionTokenizer: FastTokenizerSpec | null = null,
  ): Promise<Replicas> {
    const info = activeBackend();
    const layout = layoutOf(params, trainable);
    const weightsBuf = new SharedArrayBuffer(layout.total * 4);
    const controlBuf = new SharedArrayBuffer(4 * Int32Array.BYTES_PER_ELEMENT * n);
    // Per replica: its part's loss and that loss's denominator.
    const lossBuf = new SharedArrayBuffer(16 * n);
    const replicas: Replica[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const gradsBuf = new SharedArrayBuffer(layout.trainableTotal * 4);
        const { port1, port2 } = new MessageChannel();
        const setup: WorkerSetup = {
          config,
          actionTokenizer,
          layout,
          backend: { name: info?.name ?? tf.getBackend(), native: info?.native != null },
          weights: weightsBuf,
          grads: gradsBuf,
          control: controlBuf,
          losses: lossBuf,
          index: i,
          port: port2,
        };
        const worker = startWorker(new URL('./data-parallel-worker.ts', import.meta.url), {
          workerData: setup as unknown as Record<string, unknown>,
          transferList: [port2],
        });
        replicas.push({ worker, port: port1, grads: new Float32Array(gradsBuf) });
        // The replica answers `ready` once its backend and weights are set up, or why it could not.
        await new Promise<void>((resolve, reject) => {
          const fail = (why: string) =>
            reject(new Error(`data-parallel replica ${i + 1} did not start: ${why}`));
          port1.once('message', (m: { type: string; message?: string }) =>
            m.type === 'ready' ? resolve() : fail(m.message ?? m.type),
          );
          worker.once('error', (e) => fail(e.message));
          worker.once('exit', (code) => fail(`exited with code ${code}`));
        });
        worker.removeAllListeners('exit');
        worker.removeAllListeners('error');
        // Between steps nothing waits on a replica: it must not keep the process alive.
        worker.unref();
        port1.unref();
        // A replica that dies between steps is noticed by the next step's wait; keep the error quiet here.
        worker.on('error', () => {});
      }
    } catch (e) {
      for (const r of replicas) void r.worker.terminate();
      throw e;
    }
    return new Replicas(
      layout,
      replicas,
      new Float32Array(weightsBuf),
      new Int32Array(controlBuf),
      new Float64Array(lossBuf),
    );
  }

  /** The replicas' weights no longer match (a restore): the next step sends every one, frozen ones too. */
  invalidate(): void {
    this.dirtyAll = true;
  }

  /** Sends the current weights and one part of the batch to each replica; they start at once. */
  dispatch(params: Map<string, tf.Tensor>, parts: StepInputs[], opts: LossOptions): void {
    if (this.closed) throw new Error('data-parallel replicas are closed');
    if (parts.length !== this.replicas.length)
      throw new Error(`expected ${this.replicas.length} parts for the replicas, got ${parts.length}`);
    const l = this.layout;
    const all = this.dirtyAll;
    for (let i = 0; i < l.names.length; i++) {
      if (!all && !l.trainable[i]) continue;
      readInto(params.get(l.names[i]!)!, this.weights, l.offsets[i]!);
    }
    this.dirtyAll = false;
    this.perSample = opts.perSample === true;
    this.seq++;
    for (const [i, r] of this.replicas.entries()) {
      r.port.postMessage({ type: 'step', seq: this.seq, all, inputs: parts[i], opts });
    }
  }

  /**
   * Waits for every replica's gradients; returns, per replica, its loss and gradients (flat, in layout
   * order), and each sample's part of the loss where the step asked for it.
   */
  collect(): Array<{ loss: number; weight: number; grads: Float32Array; perSample?: SampleLoss }> {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    return this.replicas.map((r, i) => {
      const word = i * 4 + DONE;
      for (;;) {
        const v = Atomics.load(this.control, word);
        if (v === this.seq) break;
        if (v === -this.seq) {
          const msg = receiveMessageOnPort(r.port)?.message as { message?: string } | undefined;
          throw new Error(`data-parallel replica ${i + 1} failed: ${msg?.message ?? 'no message'}`);
        }
        if (Date.now() > deadline)
          throw new Error(`data-parallel replica ${i + 1} gave no gradients in ${STEP_TIMEOUT_MS / 1000} s`);
        Atomics.wait(this.control, word, v, 1000);
      }
      // Posted before the replica marked its step done, so it is waiting on the port now.
      const samples = this.perSample
        ? (receiveMessageOnPort(r.port)?.message as { type: string; perSample?: SampleLoss } | undefined)
        : undefined;
      if (this.perSample && samples?.type !== 'samples')
        throw new Error(`data-parallel replica ${i + 1} sent no per-sample loss`);
      return {
        loss: this.losses[2 * i]!,
        weight: this.losses[2 * i + 1]!,
        grads: r.grads,
        ...(samples?.perSample && { perSample: samples.perSample }),
      };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.replicas.map((r) => r.worker.terminate()));
  }
}

/** Cuts a batch of `b` rows into `n` contiguous parts as even as can be, the smallest first. */
export function partBounds(b: number, n: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let from = 0;
  for (let i = 0; i < n; i++) {
    // The main thread takes part 0 and also runs the optimizer: it gets the smaller share.
    const size = Math.floor((b + i) / n);
    out.push([from, from + size]);
    from += size;
  }
  return out;
}

/**
 * One training step of the π0 policy: augment → flow-matching loss → gradients → global-norm clip →
 * AdamW → EMA. All per-step randomness (augmentation, flow noise, flow times) comes from the seed and
 * the step number, so a resumed run repeats exactly what an uninterrupted one would have done.
 */
import os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { activeBackend, filledTensor, tensorMemory } from '../backend/index.js';
import { UserError } from '../config/errors.js';
import type { TrainConfig } from '../config/schema.js';
import { checkRobotFits, type ModelDims, modelDims } from '../model/config.js';
import type { FastTokenizer } from '../model/fast-tokenizer.js';
import { isLoraParam, matchesAny, type Params } from '../model/params.js';
import { batchObservation, Pi0, type SampleLoss, sampleFlowTimes } from '../model/pi0.js';
import { Rng } from '../model/rng.js';
import type { Batch } from '../transforms/batch.js';
import { augmentImages } from './augment.js';
import type { CheckpointState } from './checkpoint.js';
import {
  flowGradients,
  type LossOptions,
  partBounds,
  Replicas,
  type StepInputs,
  sliceInputs,
} from './data-parallel.js';
import { type AdamState, adamwUpdate, emaUpdate, globalNorm, initAdam, learningRate } from './optimizer.js';

/** Where training batches come from: the dataset loader, or any source with the same shape. */
export interface TrainingDataSource {
  numSamples: number;
  cameras: string[];
  stateDim: number;
  actionDim: number;
  /** The batch for a step; the same (step, batchSize, seed) always gives the same batch. */
  batchAt(step: number, batchSize: number, seed: number): Batch | Promise<Batch>;
  /** A mixture's datasets, which its batches' `sources` index: the loss is logged per dataset. */
  sourceNames?: string[];
}

let nextTrainerId = 0;

export interface StepResult {
  loss: number;
  gradNorm: number;
  lr: number;
  /** Each sample's part of the loss, where the batch came from a mixture (it says each one's source). */
  perSample?: SampleLoss;
}

export class Trainer {
  readonly dims: ModelDims;
  readonly model: Pi0;
  readonly params = new Map<string, tf.Variable>();
  readonly trainable = new Map<string, tf.Variable>();
  readonly ema: Map<string, tf.Variable> | null;
  private adam: AdamState;
  /** Worker replicas computing parts of each batch (`train.data_parallel` > 1), once started. */
  private replicas: Replicas | null = null;
  /** Steps completed. */
  step = 0;

  /** Takes ownership of `init`'s tensors. */
  constructor(
    readonly config: TrainConfig,
    init: Params,
    /** π0-FAST's action tokenizer (findActionTokenizer); null for the flow variants. */
    readonly actionTokenizer: FastTokenizer | null = null,
  ) {
    this.dims = modelDims(config.model);
    this.model = new Pi0(this.dims, actionTokenizer);
    const scope = `trainer_${nextTrainerId++}`;
    const freeze = config.train.freeze;
    for (const [name, t] of init) {
      const trainable = isLoraParam(name) || !matchesAny(name, freeze);
      const v = tf.variable(t, trainable, `${scope}/param/${name}`);
      t.dispose();
      this.params.set(name, v);
      if (trainable) this.trainable.set(name, v);
    }
    this.model.frozen = new Set([...this.params.keys()].filter((n) => !this.trainable.has(n)));
    if (this.trainable.size === 0) {
      throw new UserError(
        `train.freeze ${JSON.stringify(freeze)} freezes every parameter: nothing would train`,
      );
    }
    const decay = config.train.ema_decay;
    this.ema =
      decay === null
        ? null
        : new Map(
            [...this.trainable].map(([n, v]) => [
              n,
              tf.tidy(() => tf.variable(tf.clone(v), false, `${scope}/ema/${n}`)),
            ]),
          );
    this.adam = initAdam(this.trainable, scope);
  }

  /** Camera order and robot dims of the data, saved with checkpoints so inference reads the same layout. */
  data: { cameras: string[]; stateDim: number; actionDim: number } = {
    cameras: [],
    stateDim: 0,
    actionDim: 0,
  };

  checkSource(source: Pick<TrainingDataSource, 'cameras' | 'stateDim' | 'actionDim'>): void {
    this.data = { cameras: source.cameras, stateDim: source.stateDim, actionDim: source.actionDim };
    checkRobotFits(this.dims, {
      stateDim: source.stateDim,
      actionDim: source.actionDim,
      cameras: source.cameras.length,
    });
  }

  /** One optimisation step on `batch`; `this.step` counts it. */
  trainStep(batch: Batch): StepResult {
    const d = this.dims;
    const t = this.config.train;
    if (batch.horizon !== d.horizon)
      throw new Error(`batch horizon ${batch.horizon} differs from the model's action_horizon ${d.horizon}`);
    const rng = new Rng(t.seed, this.step + 2);
    const b = batch.size;
    const obs = batchObservation(batch);
    const aug = this.config.data.augment;
    if (aug) {
      obs.images = batch.images.slice();
      augmentImages(obs.images, batch.imageMask, batch.cameras, batch.imageSize, aug, rng);
    }
    const actions = new Float32Array(b * d.horizon * d.actionDim);
    for (let i = 0; i < b * d.horizon; i++) {
      actions.set(batch.actions.subarray(i * batch.actionDim, (i + 1) * batch.actionDim), i * d.actionDim);
    }
    const k = t.flow_samples;
    const noise = rng.normals(actions.length * k);
    const times = sampleFlowTimes(rng, b * k);
    const dropout = t.state_dropout;
    if (dropout > 0) {
      // The normalized state of a dropped sample becomes 0 (the mean state under z-score): the policy must
      // then read the scene from its cameras instead of extrapolating the arm's own motion.
      obs.state = batch.state.slice();
      for (let i = 0; i < b; i++) {
        if (rng.uniform() < dropout) obs.state.fill(0, i * batch.stateDim, (i + 1) * batch.stateDim);
      }
    }
    const lr = learningRate(t, this.step);
    const robotDims = t.loss_action_dims === 'robot';
    // Drawn last, and only where asked, so runs without it draw exactly what they did before.
    const delays = t.rtc ? committedDelays(rng, b, t.rtc.max_delay) : null;
    const inputs: StepInputs = {
      obs,
      actions,
      actionPad: batch.actionPad,
      noise,
      times,
      ...(robotDims && batch.actionDims && { lossDims: batch.actionDims }),
      ...(delays && { delays }),
    };
    const opts: LossOptions = {
      samples: k,
      lossDims: robotDims ? batch.actionDim : undefined,
      ...(batch.sources && { perSample: true }),
      reduction: t.loss_reduction,
    };
    const { loss: value, grads, sumSquares, perSample } = this.gradients(inputs, opts);
    const named: tf.NamedTensorMap = Object.fromEntries(grads);
    const gradNorm = sumSquares === undefined ? globalNorm(named) : Math.sqrt(sumSquares);
    const clip = t.optimizer.clip_grad_norm;
    const clipScale = clip !== null && gradNorm > clip ? clip / gradNorm : 1;
    adamwUpdate(this.trainable, named, this.adam, {
      lr,
      b1: t.optimizer.b1,
      b2: t.optimizer.b2,
      eps: t.optimizer.eps,
      weightDecay: t.optimizer.weight_decay,
      step: this.step + 1,
      clipScale,
    });
    if (this.ema) emaUpdate(this.ema, this.trainable, t.ema_decay!);
    const loss = value.dataSync()[0]!;
    tf.dispose([value, ...grads.values()]);
    this.step++;
    if (!Number.isFinite(loss))
      throw new Error(`loss became ${loss} at step ${this.step}: lower train.schedule.peak_lr`);
    return { loss, gradNorm, lr, ...(perSample && { perSample }) };
  }

  /**
   * Starts `train.data_parallel` − 1 worker replicas (nothing when it is 1). Only on backends whose
   * tensor memory JavaScript reaches (wasm, cpu): tfjs-node already runs each kernel on every core.
   * Returns a line saying what runs, for the log (with one replica on a machine of several cores, how
   * to use them: oneCoreHint).
   */
  async startDataParallel(): Promise<string | null> {
    const n = this.config.train.data_parallel;
    const backend = tf.getBackend();
    if (this.replicas) return null;
    if (n <= 1) {
      const info = activeBackend();
      return oneCoreHint(backend, this.config.train.batch_size, os.availableParallelism(), {
        wasm: info?.threads ?? 1,
        blas: info?.native?.threads ?? 1,
      });
    }
    if (backend !== 'wasm' && backend !== 'cpu')
      return `data_parallel ${n} ignored: the ${backend} backend runs each kernel on every core already`;
    this.replicas = await Replicas.start(
      n - 1,
      this.config,
      this.params,
      this.trainable,
      this.actionTokenizer?.toJSON() ?? null,
    );
    return `data parallel: ${n} replicas (this thread and ${n - 1} worker${n > 2 ? 's' : ''}), the batch of ${this.config.train.batch_size} cut into parts of ${partBounds(
      this.config.train.batch_size,
      n,
    )
      .map(([a, b]) => b - a)
      .join(', ')}`;
  }

  /**
   * The flow loss of a batch and its gradients by parameter name: here, or cut into parts, one per
   * replica, recombined as the whole batch's mean (each part weighed by its own mean's denominator); then
   * also the gradients' sum of squares, taken in the same pass (a pass of its own cost ~4 ms of B's step).
   */
  private gradients(
    x: StepInputs,
    opts: LossOptions,
  ): { loss: tf.Scalar; grads: Map<string, tf.Tensor>; sumSquares?: number; perSample?: SampleLoss } {
    const w: Params = this.params;
    const b = x.obs.batchSize;
    const reps = this.replicas;
    if (!reps || b < reps.count + 1) return flowGradients(this.model, this.dims, w, this.trainable, x, opts);
    const parts = partBounds(b, reps.count + 1).map(([from, to]) => sliceInputs(x, from, to, opts.samples));
    reps.dispatch(w, parts.slice(1), opts);
    const own = flowGradients(this.model, this.dims, w, this.trainable, parts[0]!, opts);
    let results: ReturnType<Replicas['collect']>;
    try {
      results = reps.collect();
    } catch (e) {
      tf.dispose([own.loss, ...own.grads.values()]);
      throw e;
    }
    // Each part weighs by its own mean's denominator (scored entries, samples or tokens).
    const kept = [own.weight, ...results.map((r) => r.weight)];
    const total = kept.reduce((a, c) => a + c, 0);
    const weight = kept.map((c) => (total === 0 ? 1 / parts.length : c / total));
    const l = reps.layout;
    const grads = new Map<string, tf.Tensor>();
    let sumSquares = 0;
    // Summed in place in this thread's gradient memory (reachable: startDataParallel runs on wasm and
    // cpu only); a gradient sharing its memory with a weight or another gradient is copied first.
    const seen = new Set<object>([...this.params.values()].map((v) => v.dataId));
    for (const [i, name] of l.names.entries()) {
      if (!l.trainable[i]) continue;
      let g = own.grads.get(name)!;
      if (seen.has(g.dataId)) {
        const from = g;
        const copy = filledTensor(g.shape, (out) => out.set(tensorMemory(from)!));
        g.dispose();
        g = copy;
      }
      seen.add(g.dataId);
      grads.set(name, g);
      const mem = tensorMemory(g)!;
      const off = l.offsets[i]!;
      // One pass per replica, the first also weighing this thread's part (a pass of its own cost a
      // third of the recombination: ~10 ms a step for B's 4.6M weights); the last pass's squares are
      // the global norm's.
      let squares = 0;
      for (const [r, res] of results.entries()) {
        const other = res.grads.subarray(off, off + mem.length);
        squares = combine(mem, other, r === 0 ? weight[0]! : 1, weight[r + 1]!);
      }
      sumSquares += squares;
    }
    let loss = weight[0]! * own.loss.dataSync()[0]!;
    for (const [r, res] of results.entries()) loss += weight[r + 1]! * res.loss;
    own.loss.dispose();
    // The parts are consecutive rows: their per-sample parts laid end to end are the batch's.
    let perSample: SampleLoss | undefined;
    if (own.perSample) {
      perSample = { err: new Float64Array(b), kept: new Float64Array(b) };
      let at = 0;
      for (const p of [own.perSample, ...results.map((r) => r.perSample!)]) {
        perSample.err.set(p.err, at);
        perSample.kept.set(p.kept, at);
        at += p.err.length;
      }
    }
    return { loss: tf.scalar(loss), grads, sumSquares, ...(perSample && { perSample }) };
  }

  /** The weights used for inference and saved as params: the EMA where there is one. */
  inferenceParams(): Params {
    if (!this.ema) return this.params;
    return new Map([...this.params].map(([n, v]) => [n, this.ema!.get(n) ?? v]));
  }

  async state(): Promise<CheckpointState> {
    const read = async (m: Map<string, tf.Tensor>) => {
      const out = new Map<string, Float32Array>();
      for (const [n, v] of m) out.set(n, (await v.data()) as Float32Array);
      return out;
    };
    return {
      step: this.step,
      seed: this.config.train.seed,
      params: await read(this.inferenceParams()),
      raw: this.ema ? await read(this.params) : null,
      adamM: await read(this.adam.m),
      adamV: await read(this.adam.v),
      shapes: new Map([...this.params].map(([n, v]) => [n, v.shape])),
      data: this.data,
    };
  }

  /** Continues from a saved state: weights, EMA, Adam moments and the step. */
  restore(s: CheckpointState): void {
    const set = (m: Map<string, tf.Variable>, values: Map<string, Float32Array>, what: string) => {
      for (const [n, v] of m) {
        const data = values.get(n);
        if (!data || data.length !== v.size)
          throw new UserError(`checkpoint ${what} ${n}: missing or of another size`);
        tf.tidy(() => v.assign(tf.tensor(data, v.shape)));
      }
    };
    set(this.params, s.raw ?? s.params, 'weight');
    if (this.ema) set(this.ema, s.params, 'EMA weight');
    set(this.adam.m, s.adamM, 'Adam moment');
    set(this.adam.v, s.adamV, 'Adam moment');
    this.step = s.step;
    this.replicas?.invalidate();
  }

  dispose(): void {
    void this.replicas?.close();
    this.replicas = null;
    tf.dispose([
      ...this.params.values(),
      ...(this.ema?.values() ?? []),
      ...this.adam.m.values(),
      ...this.adam.v.values(),
    ]);
  }
}

/**
 * mem = a·mem + b·other in place; returns Σ mem² (the caller keeps the last pass's). Four partial sums,
 * so the additions do not wait on each other: the pass costs about what a plain one does.
 */
function combine(mem: Float32Array, other: Float32Array, a: number, b: number): number {
  const n = mem.length;
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const v0 = a * mem[j]! + b * other[j]!;
    const v1 = a * mem[j + 1]! + b * other[j + 1]!;
    const v2 = a * mem[j + 2]! + b * other[j + 2]!;
    const v3 = a * mem[j + 3]! + b * other[j + 3]!;
    mem[j] = v0;
    mem[j + 1] = v1;
    mem[j + 2] = v2;
    mem[j + 3] = v3;
    s0 += v0 * v0;
    s1 += v1 * v1;
    s2 += v2 * v2;
    s3 += v3 * v3;
  }
  for (; j < n; j++) {
    const v = a * mem[j]! + b * other[j]!;
    mem[j] = v;
    s0 += v * v;
  }
  return s0 + s1 + s2 + s3;
}

/**
 * Where training would run on one of several cores (the wasm or cpu backend on one WASM and one BLAS
 * thread), the log line that says how to use them; else null. Suggests as many replicas as cores, but
 * no fewer than 8 samples each (smaller parts make narrower products) and at most 16; each replica
 * holds a copy of the model and its activations.
 */
export function oneCoreHint(
  backend: string,
  batch: number,
  cores: number,
  threads: { wasm: number; blas: number },
): string | null {
  if (backend !== 'wasm' && backend !== 'cpu') return null;
  if (threads.wasm > 1 || threads.blas > 1) return null;
  const n = Math.min(cores, Math.floor(batch / 8), 16);
  if (n < 2) return null;
  return `training on 1 of ${cores} cores: train.data_parallel: ${n} (or --set train.data_parallel=${n}) trains on ${n}, each replica with its own copy of the model (on a 2-core VM, 1.8× the samples/s for the reference model B)`;
}

/** Training-time real-time chunking's delay per sample: uniform in 0..max (below the horizon: the config checks it). */
function committedDelays(rng: Rng, b: number, max: number): Int32Array {
  return Int32Array.from({ length: b }, () => Math.min(max, Math.floor(rng.uniform() * (max + 1))));
}

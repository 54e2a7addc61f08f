/**
 * AdamW with warmup + cosine decay, global-norm gradient clipping and an EMA of the weights, as openpi's
 * training defaults (optax's adamw: decoupled weight decay multiplied by the learning rate).
 */
import * as tf from '@tensorflow/tfjs-core';
import { tensorMemory } from '../backend/index.js';
import type { TrainSection } from '../config/schema.js';

/** The learning rate after `step` completed steps: linear warmup, then cosine to decay_lr (or constant). */
export function learningRate(s: TrainSection, step: number): number {
  const sch = s.schedule;
  const warmup = sch.warmup_steps;
  if (warmup > 0 && step < warmup) return (sch.peak_lr * (step + 1)) / (warmup + 1);
  if (sch.name === 'constant') return sch.peak_lr;
  const decaySteps = Math.max(1, (sch.decay_steps ?? s.steps) - warmup);
  const progress = Math.min(1, (step - warmup) / decaySteps);
  return sch.decay_lr + (sch.peak_lr - sch.decay_lr) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

export interface AdamState {
  m: Map<string, tf.Variable>;
  v: Map<string, tf.Variable>;
}

/** Zero moments; `scope` keeps variable names unique (tfjs registers them process-wide). */
export function initAdam(trainable: Map<string, tf.Variable>, scope: string): AdamState {
  const m = new Map<string, tf.Variable>();
  const v = new Map<string, tf.Variable>();
  for (const [name, p] of trainable) {
    m.set(
      name,
      tf.tidy(() => tf.variable(tf.zerosLike(p), false, `${scope}/adam/m/${name}`)),
    );
    v.set(
      name,
      tf.tidy(() => tf.variable(tf.zerosLike(p), false, `${scope}/adam/v/${name}`)),
    );
  }
  return { m, v };
}

/**
 * The float32 memory of every tensor, in order, where all of it can be reached in place and no two
 * share it; else null. The updates below then make one pass per parameter over its memory, where the
 * tfjs ops take about ten kernels (each a pass and an allocation) per parameter: with WASM, AdamW and
 * the EMA cost 15–38 ms per step of pick_place's 1.1M-weight model, 7–12 ms so.
 *
 * Only the Adam moments are written in place. Weights (the params and their EMA) get new tensors:
 * WASM's own matmul (XNNPACK) packs a weight operand once and caches it by tensor, so a weight changed
 * under the same tensor would be multiplied as it was (seen: a resumed run drifting from the
 * uninterrupted one with the native kernels off).
 */
function memories(tensors: tf.Tensor[]): Float32Array[] | null {
  const seen = new Set<object>();
  const out: Float32Array[] = [];
  for (const t of tensors) {
    if (seen.has(t.dataId)) return null;
    seen.add(t.dataId);
    const mem = tensorMemory(t);
    if (!mem) return null;
    out.push(mem);
  }
  return out;
}

/** Gives each variable a new tensor holding `values` (see memories: weights are never written in place). */
export function replaceValues(vars: tf.Variable[], values: Float32Array[]): void {
  for (const [i, v] of vars.entries()) tf.tidy(() => v.assign(tf.tensor(values[i]!, v.shape)));
}

/** √(Σ‖g‖²) over all gradients, read back as a number (one sync per step). */
export function globalNorm(grads: tf.NamedTensorMap): number {
  const list = Object.values(grads);
  const mems = list.every((g) => g.dtype === 'float32') ? list.map((g) => tensorMemory(g)) : [];
  if (mems.length > 0 && mems.every((m) => m !== null)) {
    let sum = 0;
    for (const m of mems as Float32Array[]) for (let j = 0; j < m.length; j++) sum += m[j]! * m[j]!;
    return Math.sqrt(sum);
  }
  const sq = tf.tidy(() => tf.addN(Object.values(grads).map((g) => tf.sum(tf.mul(g, g)))));
  const n = Math.sqrt(sq.dataSync()[0]!);
  sq.dispose();
  return n;
}

/**
 * One AdamW update of the trainable variables in place. `step` counts this update from 1 (bias
 * correction). Gradients are scaled by `clipScale` first (global-norm clipping).
 */
export function adamwUpdate(
  trainable: Map<string, tf.Variable>,
  grads: tf.NamedTensorMap,
  state: AdamState,
  opts: {
    lr: number;
    b1: number;
    b2: number;
    eps: number;
    weightDecay: number;
    step: number;
    clipScale: number;
  },
): void {
  const c1 = 1 - opts.b1 ** opts.step;
  const c2 = 1 - opts.b2 ** opts.step;
  for (const name of trainable.keys()) if (!grads[name]) throw new Error(`no gradient for ${name}`);
  const names = [...trainable.keys()];
  const mems = memories(
    names.flatMap((n) => [trainable.get(n)!, state.m.get(n)!, state.v.get(n)!, grads[n]!]),
  );
  if (mems) {
    const { b1, b2, eps, lr, weightDecay: wd, clipScale } = opts;
    const next = names.map((_, i) => {
      const [p, m, v, g] = [mems[4 * i]!, mems[4 * i + 1]!, mems[4 * i + 2]!, mems[4 * i + 3]!];
      const out = new Float32Array(p.length);
      for (let j = 0; j < p.length; j++) {
        const gj = g[j]! * clipScale;
        const mj = b1 * m[j]! + (1 - b1) * gj;
        const vj = b2 * v[j]! + (1 - b2) * gj * gj;
        m[j] = mj;
        v[j] = vj;
        const update = mj / c1 / (Math.sqrt(vj / c2) + eps);
        out[j] = p[j]! - lr * (wd > 0 ? update + wd * p[j]! : update);
      }
      return out;
    });
    // After the loops: a new tensor may grow the WASM heap, which detaches the views above.
    replaceValues(
      names.map((n) => trainable.get(n)!),
      next,
    );
    return;
  }
  for (const [name, p] of trainable) {
    const g0 = grads[name];
    if (!g0) throw new Error(`no gradient for ${name}`);
    tf.tidy(() => {
      const g = opts.clipScale === 1 ? g0 : tf.mul(g0, opts.clipScale);
      const m = state.m.get(name)!;
      const v = state.v.get(name)!;
      const m1 = tf.add(tf.mul(m, opts.b1), tf.mul(g, 1 - opts.b1));
      const v1 = tf.add(tf.mul(v, opts.b2), tf.mul(tf.mul(g, g), 1 - opts.b2));
      const update = tf.div(tf.div(m1, c1), tf.add(tf.sqrt(tf.div(v1, c2)), opts.eps));
      const decayed = opts.weightDecay > 0 ? tf.add(update, tf.mul(p, opts.weightDecay)) : update;
      m.assign(m1);
      v.assign(v1);
      p.assign(tf.sub(p, tf.mul(decayed, opts.lr)));
    });
  }
}

/** ema ← decay·ema + (1−decay)·param, for each trainable parameter. */
export function emaUpdate(
  ema: Map<string, tf.Variable>,
  params: Map<string, tf.Variable>,
  decay: number,
): void {
  const names = [...ema.keys()];
  const mems = memories(names.flatMap((n) => [ema.get(n)!, params.get(n)!]));
  if (mems) {
    const next = names.map((_, i) => {
      const [e, p] = [mems[2 * i]!, mems[2 * i + 1]!];
      const out = new Float32Array(e.length);
      for (let j = 0; j < e.length; j++) out[j] = decay * e[j]! + (1 - decay) * p[j]!;
      return out;
    });
    replaceValues(
      names.map((n) => ema.get(n)!),
      next,
    );
    return;
  }
  for (const [name, e] of ema) {
    tf.tidy(() => e.assign(tf.add(tf.mul(e, decay), tf.mul(params.get(name)!, 1 - decay))));
  }
}

/**
 * AdamW with warmup + cosine decay, global-norm gradient clipping and an EMA of the weights, as openpi's
 * training defaults (optax's adamw: decoupled weight decay multiplied by the learning rate).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ADAMW, type AdamWAttrs, EMA, fusedActive, sumOfSquares } from '../backend/native/fused.js';
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
 * √(Σ‖g‖²) over all gradients, read back as a number (one sync per step). With the fused kernels, read
 * in place and summed in float64; else two tfjs ops per gradient.
 */
export function globalNorm(grads: tf.NamedTensorMap): number {
  const values = Object.values(grads);
  let fused = 0;
  for (const g of values) {
    const s = sumOfSquares(g);
    if (s === null) {
      fused = Number.NaN;
      break;
    }
    fused += s;
  }
  if (!Number.isNaN(fused)) return Math.sqrt(fused);
  const sq = tf.tidy(() => tf.addN(values.map((g) => tf.sum(tf.mul(g, g)))));
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
  const fused = fusedActive();
  for (const [name, p] of trainable) {
    const g0 = grads[name];
    if (!g0) throw new Error(`no gradient for ${name}`);
    const m = state.m.get(name)!;
    const v = state.v.get(name)!;
    if (fused) {
      // One pass (fused.wat), the same operations in the same order as below; new tensors all three.
      const attrs: AdamWAttrs = {
        clip: opts.clipScale,
        b1: opts.b1,
        b2: opts.b2,
        c1,
        c2,
        eps: opts.eps,
        weightDecay: opts.weightDecay,
        lr: opts.lr,
      };
      const [p1, m1, v1] = tf
        .engine()
        .runKernel(ADAMW, { p, g: g0, m, v }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
      p.assign(p1!);
      m.assign(m1!);
      v.assign(v1!);
      tf.dispose([p1!, m1!, v1!]);
      continue;
    }
    tf.tidy(() => {
      const g = opts.clipScale === 1 ? g0 : tf.mul(g0, opts.clipScale);
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
  const fused = fusedActive();
  for (const [name, e] of ema) {
    if (fused) {
      const next = tf.engine().runKernel(EMA, { ema: e, p: params.get(name)! }, { decay }) as tf.Tensor;
      e.assign(next);
      next.dispose();
      continue;
    }
    tf.tidy(() => e.assign(tf.add(tf.mul(e, decay), tf.mul(params.get(name)!, 1 - decay))));
  }
}

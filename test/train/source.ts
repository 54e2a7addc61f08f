/**
 * A small recorded-like dataset built in the test: a few episodes of smooth joint trajectories whose
 * images show where the arm is (a bright square that moves with the first joint), with the same
 * `batchAt` shape as the real loader.
 */
import type { TrainingDataSource } from '../../src/train/run.js';
import type { Batch } from '../../src/transforms/batch.js';

export interface SyntheticOptions {
  episodes?: number;
  frames?: number;
  imageSize: number;
  horizon: number;
  stateDim?: number;
  actionDim?: number;
  cameras?: string[];
}

export interface SyntheticSource extends TrainingDataSource {
  batchAt(step: number, batchSize: number, seed: number): Batch;
  frame(i: number): Batch;
}

export function syntheticSource(o: SyntheticOptions): SyntheticSource {
  const episodes = o.episodes ?? 2;
  const frames = o.frames ?? 16;
  const sd = o.stateDim ?? 6;
  const ad = o.actionDim ?? 6;
  const cameras = o.cameras ?? ['cam_high', 'cam_left_wrist'];
  const s = o.imageSize;
  const h = o.horizon;
  const joint = (e: number, f: number, d: number) => Math.sin(0.25 * f + 0.9 * d + 1.7 * e) * 0.8;
  const n = episodes * frames;
  const sample = (idx: number, out: Batch, b: number) => {
    const e = Math.floor(idx / frames);
    const f = idx % frames;
    for (let d = 0; d < sd; d++) out.state[b * sd + d] = joint(e, f, d);
    for (let k = 0; k < h; k++) {
      const ff = Math.min(f + k, frames - 1);
      out.actionPad[b * h + k] = f + k >= frames ? 1 : 0;
      for (let d = 0; d < ad; d++) out.actions[(b * h + k) * ad + d] = joint(e, ff + 1, d);
    }
    for (let c = 0; c < cameras.length; c++) {
      const base = (b * cameras.length + c) * s * s * 3;
      const cx = Math.round(((joint(e, f, c) + 1) / 2) * (s - 8));
      for (let y = 0; y < s; y++) {
        for (let x = 0; x < s; x++) {
          const on = x >= cx && x < cx + 8 && y >= s / 2 - 4 && y < s / 2 + 4;
          const p = base + (y * s + x) * 3;
          out.images[p] = on ? 250 : 20 + e * 40;
          out.images[p + 1] = on ? 200 : 30;
          out.images[p + 2] = on ? 50 : 60 + c * 50;
        }
      }
      out.imageMask[b * cameras.length + c] = 1;
    }
    out.prompts[b] = e % 2 === 0 ? 'pick up the cube' : 'push the block left';
  };
  const make = (size: number): Batch => ({
    size,
    imageSize: s,
    cameras,
    images: new Uint8Array(size * cameras.length * s * s * 3),
    imageMask: new Uint8Array(size * cameras.length),
    state: new Float32Array(size * sd),
    stateDim: sd,
    actions: new Float32Array(size * h * ad),
    actionDim: ad,
    horizon: h,
    actionPad: new Uint8Array(size * h),
    prompts: new Array(size).fill(''),
  });
  return {
    numSamples: n,
    cameras,
    stateDim: sd,
    actionDim: ad,
    batchAt(step, batchSize, seed) {
      const out = make(batchSize);
      for (let b = 0; b < batchSize; b++) {
        // A fixed permutation per epoch from the seed, as a shuffling loader does.
        const i = step * batchSize + b;
        const epoch = Math.floor(i / n);
        sample(((((i % n) * 7 + epoch * 3 + seed) % n) + n) % n, out, b);
      }
      return out;
    },
    frame(i) {
      const out = make(1);
      sample(i, out, 0);
      return out;
    },
  };
}

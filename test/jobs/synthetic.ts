import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { TrainingDataSource } from '../../src/train/run.js';
import type { Batch } from '../../src/transforms/batch.js';
import type { NormStats } from '../../src/transforms/normalize.js';

/**
 * A small deterministic data source for trainer processes in tests: the batch depends only on
 * (step, batchSize, seed), as the loader's contract requires, so runs can be compared for exact resume.
 */
export function syntheticSource(imageSize: number, horizon: number): TrainingDataSource {
  const stateDim = 14;
  const actionDim = 14;
  const cameras = ['cam_high'];
  return {
    numSamples: 64,
    cameras,
    stateDim,
    actionDim,
    batchAt(step: number, size: number, seed: number): Batch {
      let x = (seed * 7919 + step * 104729 + 1) >>> 0;
      const next = () => {
        x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
        return x / 2 ** 32;
      };
      const images = new Uint8Array(size * cameras.length * imageSize * imageSize * 3);
      for (let i = 0; i < images.length; i++) images[i] = Math.floor(next() * 256);
      const state = Float32Array.from({ length: size * stateDim }, () => next() * 2 - 1);
      // Actions follow the state, so there is something to learn.
      const actions = new Float32Array(size * horizon * actionDim);
      for (let b = 0; b < size; b++)
        for (let h = 0; h < horizon; h++)
          for (let d = 0; d < actionDim; d++)
            actions[(b * horizon + h) * actionDim + d] = state[b * stateDim + d]! * (1 - h / horizon);
      return {
        size,
        imageSize,
        cameras,
        images,
        imageMask: new Uint8Array(size * cameras.length).fill(1),
        state,
        stateDim,
        actions,
        actionDim,
        horizon,
        actionPad: new Uint8Array(size * horizon),
        prompts: Array.from({ length: size }, () => 'pick up the cube'),
      };
    },
  };
}

export const identityStats = (dim: number): NormStats => ({
  state: { mean: new Array(dim).fill(0), std: new Array(dim).fill(1) },
  actions: { mean: new Array(dim).fill(0), std: new Array(dim).fill(1) },
});

/**
 * A workspace for launching jobs: a tiny config extending pi0_aloha, and a folder that passes the
 * launch check for a dataset (these trainer processes read the synthetic source instead).
 */
export function tinyWorkspace(ws: string, steps: number, saveInterval: number): void {
  mkdirSync(path.join(ws, 'configs'), { recursive: true });
  writeFileSync(
    path.join(ws, 'configs', 'jobs_tiny.yaml'),
    `description: tiny model for job tests
extends: pi0_aloha
model: { preset: tiny, action_horizon: 4, max_token_len: 8, num_steps: 2 }
data: { dataset: ds, augment: null, delta_action_mask: null }
train:
  steps: ${steps}
  batch_size: 2
  log_interval: 1
  save_interval: ${saveInterval}
  keep_period: null
  schedule: { warmup_steps: 2, peak_lr: 1.0e-3 }
`,
  );
  mkdirSync(path.join(ws, 'datasets', 'ds', 'meta'), { recursive: true });
  writeFileSync(path.join(ws, 'datasets', 'ds', 'meta', 'info.json'), '{}');
}

import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { TrainConfig } from '../../src/config/schema.js';
import { modelDims } from '../../src/model/config.js';
import { initParams } from '../../src/model/pi0.js';
import { PolicyModel } from '../../src/model/policy.js';
import { Rng } from '../../src/model/rng.js';
import { Trainer } from '../../src/train/trainer.js';
import { syntheticSource } from './source.js';

const STEPS = Number(process.env.VLA_LEARN_STEPS ?? 600);

beforeAll(async () => {
  await setupBackend({ backend: 'wasm' });
});

describe.runIf(process.env.VLA_SLOW)('learning', () => {
  it('the tiny model overfits a small recorded dataset: sampled chunks match the recorded actions', async () => {
    const H = 10;
    const config = TrainConfig.parse({
      name: 'overfit',
      robot: 'aloha',
      model: { preset: 'tiny', action_horizon: H, action_dim: 8 },
      data: { augment: null },
      train: {
        steps: STEPS,
        batch_size: 16,
        schedule: { warmup_steps: 20, peak_lr: 3e-3, decay_lr: 3e-4 },
        optimizer: { weight_decay: 0 },
        ema_decay: null,
      },
    });
    const data = syntheticSource({ episodes: 2, frames: 12, imageSize: 32, horizon: H });
    const tensorsBefore = tf.memory().numTensors;
    const trainer = new Trainer(config, initParams(modelDims(config.model), 0));
    trainer.checkSource(data);
    const losses: number[] = [];
    for (let s = 0; s < STEPS; s++) losses.push(trainer.trainStep(await data.batchAt(s, 16, 0)).loss);
    const policy = new PolicyModel(
      config,
      null,
      trainer.inferenceParams(),
      data.cameras,
      data.stateDim,
      data.actionDim,
      false, // the trainer's params, borrowed
    );
    const all = data.batchAt(0, data.numSamples, 1);
    const pred = await policy.sampleActions({
      images: all.images,
      imageMask: all.imageMask,
      state: all.state,
      prompts: all.prompts,
      batchSize: all.size,
      noise: new Rng(99).normals(all.size * H * 8),
    });
    let se = 0;
    let n = 0;
    for (let i = 0; i < all.size * H; i++) {
      if (all.actionPad[i]) continue;
      for (let d = 0; d < data.actionDim; d++) {
        se += (pred[i * data.actionDim + d]! - all.actions[i * data.actionDim + d]!) ** 2;
        n++;
      }
    }
    const mse = se / n;
    console.log(
      `overfit: loss ${losses[0]!.toFixed(3)} → ${losses.at(-1)!.toFixed(4)}, sampled-chunk MSE ${mse.toFixed(4)}`,
    );
    expect(mse).toBeLessThan(0.01);
    policy.dispose();
    trainer.dispose();
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  }, 600_000);
});

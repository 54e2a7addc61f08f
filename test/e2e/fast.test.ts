/**
 * π0-FAST through the product, as real processes: record, norm stats, `vla data tokenizer`, train a few
 * steps, serve the checkpoint: constrained decoding makes a chunk even from a barely trained model (the
 * per-request error of a decode without one: test/serving/fast-policy.test.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PolicyClient } from '@vla-orchestrator/client';
import { describe, expect, it } from 'vitest';
import { exampleObservation } from '../../src/client/examples.js';
import { loadRobot } from '../../src/config/load.js';
import { serveCheckpointLocally } from '../../src/serving/local.js';
import { workspace } from './workspace.js';

describe('π0-FAST end to end: record → stats → tokenizer → train → serve', () => {
  it('trains the tokenizer beside the norm stats, saves it in the checkpoint, and serves its chunks', async () => {
    const { ws, vla } = workspace('vla-fast-', {
      name: 'fast',
      lines: [
        'robot: single_arm_sim',
        'model: { preset: tiny, variant: pi0_fast, action_horizon: 8, fast: { max_tokens: 64 } }',
        'data: { dataset: datasets/pp, asset_id: pp, augment: null, norm: quantile }',
        'train: { steps: 2, batch_size: 2, log_interval: 1, save_interval: 2 }',
      ],
    });
    await vla(...'sim record --task pick_place --episodes 2 --out datasets/pp --seed 7'.split(' '));
    await vla('data', 'stats', 'fast');

    // Before the tokenizer exists, training says what to run.
    const early = await vla('train', 'fast', '--exp-name', 'early').catch((e) => e as { stderr: string });
    expect(early.stderr).toMatch(
      /no action tokenizer for fast \(model.variant pi0_fast\): expected assets\/pp\/fast_tokenizer.json; run `vla data tokenizer fast` first/,
    );

    const made = await vla('data', 'tokenizer', 'fast');
    expect(made.stdout).toMatch(
      /^assets\/pp\/fast_tokenizer.json: \d+ tokens \(scale 100\) from \d+ chunks of 8×8; tokens per chunk p50 \d+, mean [\d.]+, max \d+ \(model.fast.max_tokens 64\); round-trip max error [\d.]+% of a dim's range; [\d.]+ s$/m,
    );
    const spec = JSON.parse(readFileSync(path.join(ws, 'assets', 'pp', 'fast_tokenizer.json'), 'utf8'));
    expect(spec).toMatchObject({ format: 'vla-fast-tokenizer/1', horizon: 8, actionDim: 8, scale: 100 });
    expect(spec.report.maxAbsError).toHaveLength(8);

    const trained = await vla('train', 'fast', '--exp-name', 'smoke');
    expect(trained.stdout + trained.stderr).toMatch(/finished at step 2/);
    const ckpt = path.join(ws, 'checkpoints', 'fast', 'smoke', '2');
    expect(existsSync(path.join(ckpt, 'assets', 'pp', 'fast_tokenizer.json'))).toBe(true);

    // Another variant's config cannot start from it.
    const wrong = await vla(
      'train',
      'fast',
      '--exp-name',
      'wrong',
      '--set',
      'model.variant=pi0',
      '--set',
      `train.init_from=${ckpt}`,
    ).catch((e) => e as { stderr: string });
    expect(wrong.stderr).toMatch(/a model.variant pi0_fast checkpoint; the config's model is pi0/);
    // A fine-tune reading its base's assets keeps the base's tokenizer: none is trained there.
    const base = await vla('data', 'tokenizer', 'fast', '--set', `data.assets_dir=${ckpt}/assets`).catch(
      (e) => e as { stderr: string },
    );
    expect(base.stderr).toMatch(
      /reads its norm stats and action tokenizer from data.assets_dir .*nothing to train/,
    );

    const { server } = await serveCheckpointLocally(ckpt);
    try {
      const obs = exampleObservation(loadRobot('single_arm_sim'), { prompt: 'put the red cube in the bowl' });
      for (let i = 0; i < 2; i++) {
        const client = await PolicyClient.connect(server.url);
        try {
          const reply = await client.infer(obs);
          expect([reply.horizon, reply.actionDim]).toEqual([8, 8]);
          expect(reply.actions.every(Number.isFinite)).toBe(true);
        } finally {
          await client.close();
        }
      }
      const metrics = await (await fetch(`${server.url.replace('ws:', 'http:')}/metrics`)).text();
      expect(metrics).not.toMatch(/vla_errors_total\{kind="undecodable_actions"\} [1-9]/);
    } finally {
      await server.close();
    }
  }, 240_000);
});

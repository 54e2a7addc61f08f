/**
 * π0-FAST served: a decode that makes no action chunk is that request's error, named and counted in
 * /metrics, and the server goes on serving; constrained decoding (the default) makes a chunk from the
 * very same weights.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PolicyClient, ServerError } from '@vla-orchestrator/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { exampleObservation } from '../../src/client/examples.js';
import { loadRobot } from '../../src/config/load.js';
import { TrainConfig } from '../../src/config/schema.js';
import { modelDims } from '../../src/model/config.js';
import { fastSpecialTokens } from '../../src/model/fast-decode.js';
import { trainFastTokenizer } from '../../src/model/fast-tokenizer.js';
import { Rng } from '../../src/model/rng.js';
import { serveCheckpointLocally } from '../../src/serving/local.js';
import type { NormStats } from '../../src/transforms/normalize.js';
import { untrainedCheckpoint } from '../model/trained.js';

const H = 4;
const AD = 7;
const stats: NormStats = {
  state: { mean: new Array(8).fill(0), std: new Array(8).fill(1) },
  actions: { mean: new Array(AD).fill(0), std: new Array(AD).fill(1) },
};
const root = mkdtempSync(path.join(os.tmpdir(), 'vla-fast-serve-'));

/** A FAST checkpoint whose end token never wins, decoded `free` or `constrained`. */
function checkpoint(decoding: 'free' | 'constrained'): string {
  const config = TrainConfig.parse({
    name: `fast_${decoding}`,
    robot: 'libero',
    model: {
      preset: 'tiny',
      variant: 'pi0_fast',
      action_horizon: H,
      fast: { vocab_size: 64, max_tokens: 40, decoding },
    },
    data: { norm: 'zscore', asset_id: 'libero' },
  });
  const rng = new Rng(2);
  const chunks = Array.from({ length: 32 }, () => {
    const c = new Float32Array(H * AD);
    const phase = rng.normals(AD);
    for (let t = 0; t < H; t++) for (let a = 0; a < AD; a++) c[t * AD + a] = Math.sin(t / 3 + phase[a]!);
    return c;
  });
  const tokenizer = trainFastTokenizer(chunks, { horizon: H, actionDim: AD, scale: 10, vocabSize: 64 });
  const { eos } = fastSpecialTokens(modelDims(config.model));
  return untrainedCheckpoint(
    path.join(root, decoding),
    config,
    stats,
    4,
    { cameras: ['image', 'wrist_image'], stateDim: 8, actionDim: AD },
    0,
    {
      tokenizer,
      edit: (values) => {
        values.get('expert/token_out/bias')![eos] = -100;
      },
    },
  );
}

beforeAll(async () => {
  await setupBackend({ backend: 'wasm' });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('π0-FAST served', () => {
  const obs = exampleObservation(loadRobot('libero'), { prompt: 'put the bowl on the plate' });

  it('free decoding: no chunk is that request’s named error, counted, and the server keeps serving', async () => {
    const { server } = await serveCheckpointLocally(checkpoint('free'));
    try {
      for (let i = 0; i < 2; i++) {
        const client = await PolicyClient.connect(server.url);
        try {
          const err = await client.infer(obs).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(ServerError);
          expect((err as Error).message).toMatch(
            /action tokens: decoded \d+ values, expected 28 values \(4 steps × 7 dims\) \(40 tokens decoded\).*no action chunk for this observation/,
          );
        } finally {
          await client.close();
        }
      }
      const metrics = await (await fetch(`${server.url.replace('ws:', 'http:')}/metrics`)).text();
      expect(metrics).toContain('vla_errors_total{kind="undecodable_actions"} 2');
    } finally {
      await server.close();
    }
  }, 60_000);

  it('constrained decoding (the default): the same weights make a chunk', async () => {
    const { server } = await serveCheckpointLocally(checkpoint('constrained'));
    const client = await PolicyClient.connect(server.url);
    try {
      const reply = await client.infer(obs);
      expect([reply.horizon, reply.actionDim]).toEqual([H, AD]);
      expect(reply.actions.every(Number.isFinite)).toBe(true);
    } finally {
      await client.close();
      await server.close();
    }
  }, 60_000);
});

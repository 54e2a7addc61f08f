import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NdArray, PolicyClient } from '@vla-orchestrator/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { exampleObservation } from '../../src/client/examples.js';
import { loadRobot } from '../../src/config/load.js';
import { TrainConfig } from '../../src/config/schema.js';
import { loadPolicyModel, type PolicyModel } from '../../src/model/policy.js';
import { Rng } from '../../src/model/rng.js';
import { workerRunner } from '../../src/serving/runner.js';
import { PolicyServer } from '../../src/serving/server.js';
import { resizeWithPad } from '../../src/transforms/image.js';
import type { NormStats } from '../../src/transforms/normalize.js';
import { untrainedCheckpoint } from '../model/trained.js';

const libero = loadRobot('libero');
const stats: NormStats = {
  state: { mean: Array.from({ length: 8 }, (_, i) => i / 10), std: Array.from({ length: 8 }, () => 2) },
  actions: { mean: Array.from({ length: 7 }, (_, i) => -i / 10), std: Array.from({ length: 7 }, () => 0.5) },
};
const DELTA = [true, true, true, false, false, false, false];
const PROMPT = 'put the bowl on the plate';
let ckpt: string;
let server: PolicyServer;

beforeAll(async () => {
  await setupBackend({ backend: 'wasm' });
  const config = TrainConfig.parse({
    name: 'tiny_libero',
    robot: 'libero',
    model: { preset: 'tiny', action_horizon: 4 },
    data: { delta_action_mask: DELTA, norm: 'zscore', asset_id: 'libero' },
  });
  ckpt = untrainedCheckpoint(
    path.join(mkdtempSync(path.join(os.tmpdir(), 'vla-mp-')), 'run'),
    config,
    stats,
    5,
    {
      cameras: ['image', 'wrist_image'],
      stateDim: 8,
      actionDim: 7,
    },
  );
  server = await serveCheckpoint({ seed: 3 });
}, 60_000);

/** The checkpoint behind a policy server on a free port, its inference in a worker thread. */
async function serveCheckpoint(ctx: { seed?: number; noiseScale?: number | null }): Promise<PolicyServer> {
  const runner = await workerRunner(
    { kind: 'checkpoint', dir: ckpt },
    { robot: 'libero', horizon: 50, metadata: {}, defaultPrompt: null, backend: 'wasm', ...ctx },
  );
  return PolicyServer.start(runner, libero, {
    host: '127.0.0.1',
    port: 0,
    apiKey: null,
    maxMessageBytes: 1 << 24,
    maxConnections: 8,
    maxBatch: 4,
    maxWaitMs: 2,
    defaultPrompt: null,
  });
}

/** The model's input for an observation, written out by hand: resize with pad, z-score the state. */
function referenceInput(model: PolicyModel, obs: Record<string, unknown>) {
  const size = model.imageSize;
  const images = new Uint8Array(2 * size * size * 3);
  for (const [c, key] of ['observation/image', 'observation/wrist_image'].entries()) {
    resizeWithPad((obs[key] as NdArray).data as Uint8Array, 224, 224, size, images, c * size * size * 3);
  }
  const raw = (obs['observation/state'] as NdArray).toFloat32();
  const state = Float32Array.from(raw, (v, d) => (v - stats.state.mean[d]!) / (stats.state.std[d]! + 1e-6));
  const input = { images, imageMask: Uint8Array.of(1, 1), state, prompts: [PROMPT], batchSize: 1 };
  return { input, raw };
}

/** The served chunk is the model's, unnormalized and with the delta dims made absolute. */
function expectServed(served: Float32Array, modelOut: Float32Array, raw: Float32Array): void {
  for (let h = 0; h < 4; h++) {
    for (let d = 0; d < 7; d++) {
      let expected = modelOut[h * 7 + d]! * (stats.actions.std[d]! + 1e-6) + stats.actions.mean[d]!;
      if (DELTA[d]) expected += raw[d]!;
      expect(served[h * 7 + d]).toBeCloseTo(expected, 4);
    }
  }
}

afterAll(async () => server?.close());

describe('a checkpoint served as a policy', () => {
  it('applies resize-with-pad, normalization, the model, unnormalization and delta → absolute, as a reference computes', async () => {
    const obs = exampleObservation(libero, { seed: 9, prompt: PROMPT });
    const client = await PolicyClient.connect(server.url);
    const reply = await client.infer(obs);
    await client.close();
    expect([reply.horizon, reply.actionDim]).toEqual([4, 7]);

    // The reference: the same steps written out by hand, on the same model and noise seed.
    const model = await loadPolicyModel(ckpt);
    const { input, raw } = referenceInput(model, obs);
    const out = await model.sampleActions({
      ...input,
      noise: new Rng(3, 11).normals(4 * model.dims.actionDim),
    });
    expectServed(reply.actions, out, raw);
    model.dispose();
  });

  it('samples from the mean of the noise at noise scale 0: one chunk per observation, unseeded', async () => {
    const obs = exampleObservation(libero, { seed: 9, prompt: PROMPT });
    const twice = async (noiseScale: number | null) => {
      const s = await serveCheckpoint({ noiseScale });
      try {
        const client = await PolicyClient.connect(s.url);
        const a = (await client.infer(obs)).actions;
        const b = (await client.infer(obs)).actions;
        await client.close();
        return [a, b] as const;
      } finally {
        await s.close();
      }
    };
    const [a0, b0] = await twice(0);
    expect(Array.from(b0)).toEqual(Array.from(a0));
    // The checkpoint's own model.noise_scale (1): fresh noise, another chunk each time.
    const [a1, b1] = await twice(null);
    expect(Math.max(...Array.from(a1, (v, i) => Math.abs(v - b1[i]!)))).toBeGreaterThan(1e-3);
    // And scale 0 is exactly the chunk integrated from zero noise.
    const model = await loadPolicyModel(ckpt);
    const { input, raw } = referenceInput(model, obs);
    const fromZero = await model.sampleActions({
      ...input,
      noise: new Float32Array(4 * model.dims.actionDim),
    });
    const unseeded = await model.sampleActions(input, { noiseScale: 0 });
    expect(Array.from(unseeded)).toEqual(Array.from(fromZero));
    expectServed(a0, fromZero, raw);
    model.dispose();
  }, 60_000);

  it('continues a robot’s committed actions (real-time chunking keys): the delay’s steps come back near them', async () => {
    const obs = exampleObservation(libero, { seed: 9, prompt: PROMPT });
    const s = await serveCheckpoint({ noiseScale: 0 });
    try {
      const client = await PolicyClient.connect(s.url);
      const free = (await client.infer(obs)).actions;
      // Committed: 3 steps of actions well away from the free chunk's, 2 of them within the delay.
      const prefix = Float32Array.from({ length: 3 * 7 }, (_, i) => free[i]! + (i % 2 ? 0.8 : -0.8));
      const guided = (
        await client.infer({ ...obs, action_prefix: new NdArray(prefix, [3, 7]), inference_delay: 2 })
      ).actions;
      // Another robot's request in the same server without a prefix is still the free chunk.
      const again = (await client.infer(obs)).actions;
      await client.close();
      const dist = (a: Float32Array, rows: number) =>
        Math.sqrt(
          Array.from(a.subarray(0, rows * 7), (v, i) => (v - prefix[i]!) ** 2).reduce((x, y) => x + y) /
            (rows * 7),
        );
      expect(dist(free, 2)).toBeGreaterThan(0.7);
      expect(dist(guided, 2)).toBeLessThan(0.25 * dist(free, 2));
      expect(Array.from(again)).toEqual(Array.from(free));
    } finally {
      await s.close();
    }
  });

  it('refuses a request without a prompt when there is no default prompt', async () => {
    const client = await PolicyClient.connect(server.url);
    await expect(client.infer(exampleObservation(libero, { prompt: null }))).rejects.toThrow(
      'server error: prompt: expected a string (this policy has no default prompt), got nothing (missing)',
    );
  });

  it('refuses to serve a checkpoint for another robot', async () => {
    await expect(
      workerRunner(
        { kind: 'checkpoint', dir: ckpt },
        { robot: 'droid', horizon: 50, metadata: {}, defaultPrompt: null },
      ),
    ).rejects.toThrow(/was trained for robot libero, not droid/);
  });
});

import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PolicyClient } from '@vla-orchestrator/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exampleObservation } from '../../src/client/examples.js';
import { loadRobot } from '../../src/config/load.js';
import { createDataset } from '../../src/data/writer.js';
import { inlineRunner } from '../../src/serving/runner.js';
import { PolicyServer } from '../../src/serving/server.js';

const libero = loadRobot('libero');
/** Episode e, frame f, dim d holds 100e + f + d/10: every replayed value says where it came from. */
const value = (e: number, f: number, d: number) => 100 * e + f + d / 10;
const LENGTHS = [7, 5];
let dir: string;
let server: PolicyServer;

beforeAll(async () => {
  dir = path.join(mkdtempSync(path.join(os.tmpdir(), 'vla-replay-')), 'ds');
  const writer = await createDataset(dir, {
    fps: 20,
    robotType: 'libero',
    format: 'v2.1',
    video: false,
    features: { state: { names: libero.state.names }, action: { names: libero.action.names }, cameras: [] },
  });
  for (const [e, length] of LENGTHS.entries()) {
    for (let f = 0; f < length; f++) {
      writer.addFrame({
        state: new Float32Array(8),
        action: Float32Array.from({ length: 7 }, (_, d) => value(e, f, d)),
        images: {},
        task: 'replay me',
      });
    }
    await writer.saveEpisode();
  }
  await writer.finalize();
  const runner = await inlineRunner(
    { kind: 'replay', dataset: dir, episode: null },
    { robot: 'libero', horizon: 3, metadata: {}, defaultPrompt: null },
  );
  server = await PolicyServer.start(runner, libero, {
    host: '127.0.0.1',
    port: 0,
    apiKey: null,
    maxMessageBytes: 1 << 24,
    maxConnections: 8,
    maxBatch: 8,
    maxWaitMs: 1,
    defaultPrompt: null,
  });
});

afterAll(async () => server?.close());

describe('replay policy', () => {
  it('replays the recorded actions chunk by chunk, holding the last action past the end, then the next episode', async () => {
    const client = await PolicyClient.connect(server.url);
    const firstCol = async () => {
      const r = await client.infer(exampleObservation(libero));
      expect([r.horizon, r.actionDim]).toEqual([3, 7]);
      return Array.from({ length: 3 }, (_, h) => Number(r.actions[h * 7]!.toFixed(3)));
    };
    expect(await firstCol()).toEqual([0, 1, 2]);
    expect(await firstCol()).toEqual([3, 4, 5]);
    expect(await firstCol()).toEqual([6, 6, 6]);
    expect(await firstCol()).toEqual([100, 101, 102]);
    await client.close();
  });

  it('each connection has its own cursor', async () => {
    const a = await PolicyClient.connect(server.url);
    const b = await PolicyClient.connect(server.url);
    await a.infer(exampleObservation(libero));
    const rb = await b.infer(exampleObservation(libero));
    expect(rb.actions[0]).toBeCloseTo(0, 5);
    expect(rb.actions[6]).toBeCloseTo(0.6, 5);
    await Promise.all([a.close(), b.close()]);
  });

  it("refuses a dataset whose action dim is not the robot's, and an episode it does not have", async () => {
    const ctx = { robot: 'aloha', horizon: 3, metadata: {}, defaultPrompt: null };
    await expect(inlineRunner({ kind: 'replay', dataset: dir, episode: null }, ctx)).rejects.toThrow(
      /expected actions of 14 dims for robot aloha, the dataset has 7/,
    );
    await expect(
      inlineRunner({ kind: 'replay', dataset: dir, episode: 9 }, { ...ctx, robot: 'libero' }),
    ).rejects.toThrow(/no episode 9/);
  });
});

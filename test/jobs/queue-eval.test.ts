import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { TrainConfig } from '../../src/config/schema.js';
import {
  type EvalResult,
  listQueue,
  type QueueEntry,
  startWorker,
  submitEval,
} from '../../src/jobs/queue.js';
import { untrainedCheckpoint } from '../model/trained.js';
import { hasRedis, startRedis, waitFor } from './redis.js';

/** A freshly initialised tiny single-arm checkpoint: enough to serve and roll out. */
async function tinyCheckpoint(ws: string): Promise<string> {
  await setupBackend();
  const config = TrainConfig.parse({
    name: 'tiny_pp',
    robot: 'single_arm_sim',
    model: { preset: 'tiny', action_horizon: 8 },
    data: { asset_id: 'pp' },
  });
  const zeros = { mean: new Array(8).fill(0), std: new Array(8).fill(1) };
  untrainedCheckpoint(
    path.join(ws, 'checkpoints', 'tiny_pp', 'x'),
    config,
    { state: zeros, actions: zeros },
    1,
    { cameras: ['exterior_image_1_left', 'wrist_image_left'], stateDim: 8, actionDim: 8 },
    1,
  );
  return 'checkpoints/tiny_pp/x/1';
}

describe.runIf(hasRedis)('evaluation jobs on the queue (real redis-server)', () => {
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let ws: string;
  beforeAll(async () => {
    redis = await startRedis();
    ws = mkdtempSync(path.join(os.tmpdir(), 'vla-qeval-'));
  });
  afterAll(async () => {
    await redis?.stop();
    rmSync(ws, { recursive: true, force: true });
  });

  it('splits the episodes into shards that two workers run at once, and adds them up in the parent', async () => {
    const checkpoint = await tinyCheckpoint(ws);
    const workers = await Promise.all(
      ['a', 'b'].map(() =>
        startWorker({ url: redis.url, concurrency: 1, workspace: ws, stallSeconds: 30, log: () => {} }),
      ),
    );
    try {
      const id = await submitEval(redis.url, {
        task: 'pick_place',
        checkpoint,
        episodes: 4,
        seed: 500,
        shards: 2,
        submittedFrom: 'test',
      });
      const parent = await waitFor('the evaluation to finish', async () =>
        (await listQueue(redis.url)).find((e: QueueEntry) => e.id === id && e.state === 'completed'),
      );
      const result = parent.result as EvalResult;
      expect(parent.experiment).toBe(`eval pick_place ${checkpoint} (4 episodes, 2 shards)`);
      expect(result.summary).toMatchObject({ task: 'pick_place', episodes: 4, failed: 0 });
      expect(result.results.map((r) => [r.episode, r.seed])).toEqual([
        [0, 500],
        [1, 501],
        [2, 502],
        [3, 503],
      ]);
      // One result per shard (which process ran which is covered by the two-process queue test).
      expect(result.workers).toHaveLength(2);
      const shards = (await listQueue(redis.url)).filter((e) =>
        e.experiment.startsWith('eval pick_place shard'),
      );
      expect(shards.map((e) => e.state)).toEqual(['completed', 'completed']);
    } finally {
      await Promise.all(workers.map((w) => w.close()));
    }
  }, 180_000);

  it('a shard whose checkpoint is not on the worker fails once, saying so', async () => {
    const worker = await startWorker({
      url: redis.url,
      concurrency: 1,
      workspace: ws,
      stallSeconds: 30,
      log: () => {},
    });
    try {
      await submitEval(redis.url, {
        task: 'pick_place',
        checkpoint: 'checkpoints/none/here/1',
        episodes: 1,
        seed: 0,
        shards: 1,
        submittedFrom: 'test',
      });
      const failed = await waitFor('the shard to fail', async () =>
        (await listQueue(redis.url)).find((e) => e.experiment.includes('shard') && e.state === 'failed'),
      );
      expect(failed.failedReason).toMatch(
        /^checkpoint checkpoints\/none\/here\/1: not on \S+ \(no .*config\.yaml\)$/,
      );
      expect(failed.attempts).toBe(1);
    } finally {
      await worker.close();
    }
  }, 60_000);
});

import {
  ACTION_PREFIX_KEY,
  ActionChunkBroker,
  type Chunk,
  type Environment,
  executionOptions,
  INFERENCE_DELAY_KEY,
  type NdArray,
  PolicyAgent,
  PolicyClient,
  Runtime,
} from '@vla-orchestrator/client';
import { afterEach, describe, expect, it } from 'vitest';
import { exampleObservation } from '../../src/client/examples.js';
import { loadRobot } from '../../src/config/load.js';
import { inlineRunner } from '../../src/serving/runner.js';
import { PolicyServer } from '../../src/serving/server.js';

/**
 * A policy whose chunk asked at observation step s holds the values s, s+1, ..., s+H-1 (one dim):
 * which row of which chunk the broker served is visible in each action.
 */
function countingPolicy(horizon: number, delays: number[] = []) {
  const asked: number[] = [];
  let call = 0;
  const infer = async (obs: Record<string, unknown>): Promise<Chunk> => {
    const s = obs.step as number;
    asked.push(s);
    const delay = delays[call++] ?? 0;
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    return { actions: Float32Array.from({ length: horizon }, (_, j) => s + j), horizon, actionDim: 1 };
  };
  return { infer, asked };
}

async function run(broker: ActionChunkBroker, steps: number, stepMs = 0): Promise<number[]> {
  const out: number[] = [];
  for (let s = 0; s < steps; s++) {
    out.push((await broker.step({ step: s }))[0]!);
    if (stepMs) await new Promise((r) => setTimeout(r, stepMs));
  }
  return out;
}

describe('ActionChunkBroker', () => {
  describe('temporal ensembling', () => {
    // The chunk asked at step s holds 100·s + j in row j: which chunks were averaged shows in each value.
    const tagged = (horizon: number) => {
      const asked: number[] = [];
      const infer = async (obs: Record<string, unknown>): Promise<Chunk> => {
        const s = obs.step as number;
        asked.push(s);
        return {
          actions: Float32Array.from({ length: horizon }, (_, j) => 100 * s + j),
          horizon,
          actionDim: 1,
        };
      };
      return { infer, asked };
    };

    it('averages every chunk that covers the step, the oldest weighted most', async () => {
      const p = tagged(3);
      const m = 0.5;
      const actions = await run(new ActionChunkBroker(p.infer, { temporalEnsemble: m }), 5);
      expect(p.asked).toEqual([0, 1, 2, 3, 4]);
      // Step t is covered by the chunks asked at t-2, t-1, t (rows 2, 1, 0), weights 1, e^-m, e^-2m.
      const expected = (t: number) => {
        const from = Math.max(0, t - 2);
        let sum = 0;
        let total = 0;
        for (let s = from; s <= t; s++) {
          const w = Math.exp(-m * (s - from));
          sum += w * (100 * s + (t - s));
          total += w;
        }
        return sum / total;
      };
      actions.forEach((a, t) => expect(a).toBeCloseTo(expected(t), 3));
      expect(actions[4]).not.toBeCloseTo(400, 0);
    });

    it('asks every replanEvery steps and starts over on reset', async () => {
      const p = tagged(4);
      const broker = new ActionChunkBroker(p.infer, { temporalEnsemble: 0, replanEvery: 2 });
      const actions = await run(broker, 5);
      expect(p.asked).toEqual([0, 2, 4]);
      // Step 3: rows 3 and 1 of the chunks asked at 0 and 2, equally weighted.
      expect(actions[3]).toBeCloseTo((3 + 201) / 2, 5);
      broker.reset();
      expect((await broker.step({ step: 0 }))[0]).toBe(0);
    });

    it('asks again when no chunk reaches the step, even before replanEvery says so', async () => {
      const p = tagged(2);
      const actions = await run(new ActionChunkBroker(p.infer, { temporalEnsemble: 0, replanEvery: 5 }), 5);
      expect(p.asked).toEqual([0, 2, 4]);
      expect(actions).toEqual([0, 1, 200, 201, 400]);
    });

    it('refuses a negative coefficient and prefetching', () => {
      expect(() => new ActionChunkBroker(tagged(2).infer, { temporalEnsemble: -1 })).toThrow(/>= 0, got -1/);
      expect(
        () => new ActionChunkBroker(tagged(2).infer, { temporalEnsemble: 0.01, prefetch: true }),
      ).toThrow(/cannot prefetch/);
    });
  });

  it('serves a chunk step by step and asks again when it runs out', async () => {
    const p = countingPolicy(4);
    const actions = await run(new ActionChunkBroker(p.infer), 10);
    expect(actions).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(p.asked).toEqual([0, 4, 8]);
  });

  it('replans every K steps', async () => {
    const p = countingPolicy(8);
    await run(new ActionChunkBroker(p.infer, { replanEvery: 3 }), 10);
    expect(p.asked).toEqual([0, 3, 6, 9]);
  });

  it('with prefetch, keeps executing the current chunk while the next one computes, aligned to when it was asked', async () => {
    const p = countingPolicy(6, [0, 40]);
    const actions = await run(new ActionChunkBroker(p.infer, { prefetch: true, replanEvery: 2 }), 8, 10);
    // Each action equals its step: a late chunk is entered at the row for the current step, not at row 0.
    expect(actions).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(p.asked[0]).toBe(0);
    expect(p.asked[1]).toBe(2);
  });

  it('averages overlapping steps of the old and new chunk with merge: average', async () => {
    // Old chunk asked at 0: values 0..5. New chunk asked at 2 holds 100+2.. so overlaps differ visibly.
    let call = 0;
    const infer = async (obs: Record<string, unknown>): Promise<Chunk> => {
      const s = obs.step as number;
      const base = call++ === 0 ? 0 : 100;
      return { actions: Float32Array.from({ length: 6 }, (_, j) => base + s + j), horizon: 6, actionDim: 1 };
    };
    const broker = new ActionChunkBroker(infer, { prefetch: true, replanEvery: 2, merge: 'average' });
    const actions = await run(broker, 5, 5);
    expect(actions.slice(0, 3)).toEqual([0, 1, 2]);
    // Step 3 on: mean of old (3) and new (103) = 53; step 4: mean of 4 and 104.
    expect(actions.slice(3)).toEqual([53, 54]);
  });

  it('reset drops the chunk, and a failed background request surfaces as an error', async () => {
    const p = countingPolicy(4);
    const broker = new ActionChunkBroker(p.infer);
    await run(broker, 2);
    broker.reset();
    expect(await run(broker, 1)).toEqual([0]);
    let n = 0;
    const failing = new ActionChunkBroker(
      async () => {
        if (n++ > 0) throw new Error('server went away');
        return { actions: new Float32Array(4), horizon: 4, actionDim: 1 };
      },
      { prefetch: true, replanEvery: 1 },
    );
    await expect(run(failing, 6, 2)).rejects.toThrow('server went away');
  });
});

describe('Runtime against the real server', () => {
  const servers: PolicyServer[] = [];
  afterEach(async () => Promise.all(servers.splice(0).map((s) => s.close())));

  it('runs episodes through PolicyAgent → broker → PolicyClient → server, applying one action per step', async () => {
    const robot = loadRobot('aloha');
    const runner = await inlineRunner(
      { kind: 'zeros' },
      { robot: 'aloha', horizon: 5, metadata: {}, defaultPrompt: null },
    );
    const server = await PolicyServer.start(runner, robot, {
      host: '127.0.0.1',
      port: 0,
      apiKey: null,
      maxMessageBytes: 1 << 24,
      maxConnections: 4,
      maxBatch: 4,
      maxWaitMs: 1,
      defaultPrompt: null,
    });
    servers.push(server);
    const client = await PolicyClient.connect(server.url);
    let requests = 0;
    const broker = new ActionChunkBroker(async (obs) => {
      requests++;
      return client.infer(obs);
    });
    const applied: Float32Array[] = [];
    let t = 0;
    const env: Environment = {
      reset: () => {
        t = 0;
      },
      isEpisodeComplete: () => t >= 12,
      getObservation: () => exampleObservation(robot, { seed: t }),
      applyAction: (a) => {
        applied.push(a);
        t++;
      },
    };
    const ends: number[] = [];
    const steps = await new Runtime(
      env,
      new PolicyAgent(broker),
      [{ onEpisodeEnd: (_ep, n) => void ends.push(n) }],
      {
        numEpisodes: 2,
      },
    ).run();
    expect(steps).toEqual([12, 12]);
    expect(ends).toEqual([12, 12]);
    expect(applied).toHaveLength(24);
    expect(applied.every((a) => a.length === 14)).toBe(true);
    expect(requests).toBe(6); // ceil(12 / 5) per episode
    await client.close();
  });
});

describe('execution modes under a simulated delay (executionOptions)', () => {
  // countingPolicy: the chunk asked at step s holds s, s+1, …: each action shows which row of which chunk ran.
  it('sync: the robot holds its last action for the delay, then runs the new chunk from its first row', async () => {
    const p = countingPolicy(4);
    const broker = new ActionChunkBroker(p.infer, executionOptions('sync', { delay: 2 }));
    // Chunk 0 at once (episode start); at step 4 the next is asked and takes 2 steps: 3, 3 held; then 4, 5, …
    expect(await run(broker, 10)).toEqual([0, 1, 2, 3, 3, 3, 4, 5, 6, 7]);
    expect(p.asked).toEqual([0, 4]);
  });

  it('async: the robot keeps executing while the chunk computes, then switches to it at the row the time says', async () => {
    const p = countingPolicy(6);
    const broker = new ActionChunkBroker(p.infer, executionOptions('async', { delay: 2, replanEvery: 3 }));
    // Asked at step 3, used from step 5 (its row 2); asked again at 6 (3 steps after the switch's chunk start).
    expect(await run(broker, 9)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(p.asked).toEqual([0, 3, 6]);
  });

  it('rtc: each request carries the committed rest of the current chunk and the delay', async () => {
    const seen: Array<{ prefix: number[]; shape: readonly number[]; delay: unknown }> = [];
    const infer = async (obs: Record<string, unknown>): Promise<Chunk> => {
      const s = obs.step as number;
      const prefix = obs[ACTION_PREFIX_KEY] as NdArray | undefined;
      if (prefix)
        seen.push({
          prefix: [...(prefix.data as Float32Array)],
          shape: prefix.shape,
          delay: obs[INFERENCE_DELAY_KEY],
        });
      return { actions: Float32Array.from({ length: 5 }, (_, j) => 10 * s + j), horizon: 5, actionDim: 1 };
    };
    const broker = new ActionChunkBroker(infer, executionOptions('rtc', { delay: 2, replanEvery: 2 }));
    const out = await run(broker, 6);
    // Chunk 0 (0..4); at step 2 its rows 2..4 are committed; the new chunk (20..24) is used from step 4, row 2.
    expect(seen[0]).toEqual({ prefix: [2, 3, 4], shape: [3, 1], delay: 2 });
    expect(out.slice(0, 5)).toEqual([0, 1, 2, 3, 22]);
  });

  it('chunkBoundary marks the first action of each new chunk, in every mode', async () => {
    const seams = async (broker: ActionChunkBroker, steps: number) => {
      const out: number[] = [];
      for (let s = 0; s < steps; s++) {
        await broker.step({ step: s });
        if (broker.chunkBoundary) out.push(s);
      }
      return out;
    };
    // sync, chunks of 4, delay 2: held at 4 and 5, the new chunk's first row at 6; the next asked at 10.
    expect(
      await seams(new ActionChunkBroker(countingPolicy(4).infer, executionOptions('sync', { delay: 2 })), 14),
    ).toEqual([6, 12]);
    // async, asked at 3 and 6 (every 3 steps of the chunk in use, which starts where it was asked), used 2 steps later.
    expect(
      await seams(
        new ActionChunkBroker(
          countingPolicy(6).infer,
          executionOptions('async', { delay: 2, replanEvery: 3 }),
        ),
        11,
      ),
    ).toEqual([5, 8]);
    // ensemble, a chunk every 2 steps, each joining the average a step after it is asked.
    expect(
      await seams(
        new ActionChunkBroker(
          countingPolicy(4).infer,
          executionOptions('ensemble', { delay: 1, replanEvery: 2, temporalEnsemble: 0 }),
        ),
        7,
      ),
    ).toEqual([3, 5]);
    // A reset starts the next episode without a seam at its first step.
    const broker = new ActionChunkBroker(countingPolicy(2).infer);
    expect(await seams(broker, 3)).toEqual([2]);
    broker.reset();
    await broker.step({ step: 0 });
    expect(broker.chunkBoundary).toBe(false);
  });

  it('an episode that ends while a chunk computes: the next episode’s first request waits for it, never overlapping (a client takes one at a time)', async () => {
    let busy = false;
    const asked: number[] = [];
    const infer = async (obs: Record<string, unknown>): Promise<Chunk> => {
      if (busy) throw new Error('infer: one request at a time (await the previous one)');
      busy = true;
      asked.push(obs.step as number);
      await new Promise((r) => setTimeout(r, 20));
      busy = false;
      const s = obs.step as number;
      return { actions: Float32Array.from({ length: 4 }, (_, j) => 100 * s + j), horizon: 4, actionDim: 1 };
    };
    for (const mode of ['async', 'rtc'] as const) {
      asked.length = 0;
      const broker = new ActionChunkBroker(infer, executionOptions(mode, { delay: 3, replanEvery: 2 }));
      // Steps 0..2: the chunk asked at step 2 is due at step 5, after this short episode has ended.
      expect(await run(broker, 3)).toEqual([0, 1, 2]);
      broker.reset();
      // The new episode's first chunk (asked after the old one settled), the old one's dropped.
      expect((await broker.step({ step: 50 }))[0]).toBe(5000);
      expect(asked).toEqual([0, 2, 50]);
    }
  });

  it('a delay is an integer number of steps; rtc needs prefetch', () => {
    const p = countingPolicy(4);
    expect(() => new ActionChunkBroker(p.infer, { delay: 1.5 })).toThrow(
      'delay: expected an integer number of steps >= 0, got 1.5',
    );
    expect(() => new ActionChunkBroker(p.infer, { rtc: true })).toThrow(/needs prefetch/);
  });
});

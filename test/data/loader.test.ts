import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CacheBuildAborted } from '../../src/data/cache.js';
import { drawOrder, epochPermutation, openTrainingData } from '../../src/data/loader.js';
import { computeNormStats } from '../../src/data/normstats.js';
import { resizeWithPad } from '../../src/transforms/image.js';
import type { NormStats } from '../../src/transforms/normalize.js';
import {
  actionOf,
  CAMERAS,
  LENGTHS,
  picture,
  stateOf,
  taskOf,
  tmpDir,
  workspace,
  writeSynthetic,
} from './helpers.js';

/** Dataset row → (episode, frame), from the synthetic lengths. */
function locate(row: number): [number, number] {
  let e = 0;
  while (row >= LENGTHS[e]!) row -= LENGTHS[e++]!;
  return [e, row];
}

describe('training loader', () => {
  let dataset: string;
  let videoDataset: string;
  beforeAll(async () => {
    dataset = tmpDir('loader');
    await writeSynthetic(dataset, 'v2.1', false);
    videoDataset = tmpDir('loader-mp4');
    await writeSynthetic(videoDataset, 'v3.0', true);
  }, 60_000);

  it('epoch permutations are permutations, differ per epoch and per seed, and repeat exactly', () => {
    const p = epochPermutation(36, 7, 0);
    expect([...p].sort((a, b) => a - b)).toEqual(Array.from({ length: 36 }, (_, i) => i));
    expect([...epochPermutation(36, 7, 0)]).toEqual([...p]);
    expect([...epochPermutation(36, 7, 1)]).not.toEqual([...p]);
    expect([...epochPermutation(36, 8, 0)]).not.toEqual([...p]);
  });

  it('builds samples as (observation at t, normalized delta chunk t..t+H-1 with padding), letterboxed images, masks, prompts', async () => {
    const H = 5;
    const mask = [true, false];
    const { cwd, config } = workspace(
      dataset,
      { delta_action_mask: mask, norm: 'zscore' },
      { action_horizon: H },
    );
    const { stats } = await computeNormStats(config, { cwd });
    const cacheDir = tmpDir('cache');
    const S = 40;
    const data = await openTrainingData(config, {
      imageSize: S,
      horizon: H,
      normStats: stats,
      frameCache: { dir: cacheDir },
      cwd,
    });
    expect(data.numSamples).toBe(36);
    expect(data.cameras).toEqual(['cam_high', 'cam_low', 'cam_left_wrist']);
    expect(data.present).toEqual([true, false, true]);
    expect([data.stateDim, data.actionDim]).toEqual([3, 2]);
    const B = 8;
    const seed = 3;
    const z = (x: number, s: NormStats['state'], d: number) => (x - s.mean[d]!) / (s.std[d]! + 1e-6);
    // Steps 4 and 5 straddle the end of the first epoch (36 samples).
    for (const step of [0, 4]) {
      const batch = data.batchAt(step, B, seed);
      expect([batch.size, batch.imageSize, batch.horizon, batch.stateDim, batch.actionDim]).toEqual([
        B,
        S,
        H,
        3,
        2,
      ]);
      for (let b = 0; b < B; b++) {
        const pos = step * B + b;
        const row = epochPermutation(36, seed, Math.floor(pos / 36))[pos % 36]!;
        const [e, t] = locate(row);
        const len = LENGTHS[e]!;
        const s = stateOf(e, t);
        for (let d = 0; d < 3; d++) expect(batch.state[b * 3 + d]).toBeCloseTo(z(s[d]!, stats.state, d), 4);
        for (let k = 0; k < H; k++) {
          const a = actionOf(e, Math.min(t + k, len - 1));
          expect(batch.actionPad[b * H + k]).toBe(t + k >= len ? 1 : 0);
          for (let d = 0; d < 2; d++) {
            const raw = mask[d] ? Math.fround(a[d]!) - Math.fround(s[d]!) : a[d]!;
            expect(batch.actions[(b * H + k) * 2 + d]).toBeCloseTo(z(raw, stats.actions, d), 4);
          }
        }
        expect(Array.from(batch.imageMask.subarray(b * 3, b * 3 + 3))).toEqual([1, 0, 1]);
        const frame = S * S * 3;
        const high = resizeWithPad(picture(CAMERAS[0]!.height, CAMERAS[0]!.width, e, t, 0), 64, 48, S);
        const wrist = resizeWithPad(picture(32, 32, e, t, 1), 32, 32, S);
        expect(
          Buffer.from(batch.images.subarray(b * 3 * frame, (b * 3 + 1) * frame)).equals(Buffer.from(high)),
        ).toBe(true);
        expect(batch.images.subarray((b * 3 + 1) * frame, (b * 3 + 2) * frame).every((v) => v === 0)).toBe(
          true,
        );
        expect(
          Buffer.from(batch.images.subarray((b * 3 + 2) * frame, (b * 3 + 3) * frame)).equals(
            Buffer.from(wrist),
          ),
        ).toBe(true);
        expect(batch.prompts[b]).toBe(taskOf(e));
      }
    }
    // Deterministic from (seed, step): a fresh loader over the same cache gives identical batches.
    const again = await openTrainingData(config, {
      imageSize: S,
      horizon: H,
      normStats: stats,
      frameCache: { dir: cacheDir },
      cwd,
    });
    const x = data.batchAt(7, B, seed);
    const y = again.batchAt(7, B, seed);
    expect(Buffer.from(y.images).equals(Buffer.from(x.images))).toBe(true);
    expect(Array.from(y.actions)).toEqual(Array.from(x.actions));
    expect(y.prompts).toEqual(x.prompts);
    expect(Array.from(data.batchAt(7, B, seed + 1).state)).not.toEqual(Array.from(x.state));
    data.close();
    again.close();
  });

  it("oversamples each episode's first frames (data.oversample_start); batchOfRows serves rows in order", async () => {
    expect([...drawOrder(Int32Array.from([0, 1, 2, 0, 1]), { frames: 2, factor: 3 })]).toEqual([
      0, 0, 0, 1, 1, 1, 2, 3, 3, 3, 4, 4, 4,
    ]);
    expect([...drawOrder(Int32Array.from([0, 1, 2]), null)]).toEqual([0, 1, 2]);
    const { cwd, config } = workspace(dataset, { oversample_start: { frames: 3, factor: 4 } });
    const { stats } = await computeNormStats(config, { cwd });
    const opts = {
      imageSize: 8,
      horizon: 2,
      normStats: stats,
      frameCache: { dir: tmpDir('cache-over') },
      cwd,
    };
    const data = await openTrainingData(config, opts);
    // 36 frames, 3 episodes × 3 early frames drawn 3 more times each.
    expect([data.numFrames, data.numSamples]).toEqual([36, 36 + 9 * 3]);
    // One epoch in one batch: every early frame 4 times, every other frame once.
    const epoch = data.batchAt(0, data.numSamples, 5);
    const byRow = new Map<string, number>();
    for (let b = 0; b < epoch.size; b++) {
      const key = `${epoch.state.subarray(b * 3, b * 3 + 3).join()} ${epoch.actions.subarray(b * 4, b * 4 + 4).join()}`;
      byRow.set(key, (byRow.get(key) ?? 0) + 1);
    }
    const plain = data.batchOfRows(Array.from({ length: 36 }, (_, i) => i));
    for (let row = 0; row < 36; row++) {
      const key = `${plain.state.subarray(row * 3, row * 3 + 3).join()} ${plain.actions.subarray(row * 4, row * 4 + 4).join()}`;
      expect(byRow.get(key), `row ${row}`).toBe(locate(row)[1] < 3 ? 4 : 1);
    }
    expect(plain.prompts[12]).toBe(taskOf(1));
    expect(() => data.batchOfRows([36])).toThrow(/rows\[0\]: expected an integer in 0\.\.35, got 36/);
    data.close();
    const { TrainConfig } = await import('../../src/config/schema.js');
    const bad = TrainConfig.safeParse({
      ...config,
      data: { ...config.data, oversample_start: { frames: 3, factor: 1 } },
    });
    expect(bad.success).toBe(false);
  });

  it('maps robot cameras to differently named dataset features (data.camera_keys)', async () => {
    const { cwd, config } = workspace(dataset, { camera_keys: { cam_low: 'observation.images.cam_high' } });
    const { stats } = await computeNormStats(config, { cwd });
    const opts = {
      imageSize: 16,
      horizon: 2,
      normStats: stats,
      frameCache: { dir: tmpDir('cache-map') },
      cwd,
    };
    const data = await openTrainingData(config, opts);
    expect(data.present).toEqual([true, true, true]);
    const b = data.batchAt(0, 2, 0);
    const frame = 16 * 16 * 3;
    expect(
      Buffer.from(b.images.subarray(frame, 2 * frame)).equals(Buffer.from(b.images.subarray(0, frame))),
    ).toBe(true);
    data.close();
    const bad = { ...config, data: { ...config.data, camera_keys: { cam_low: 'observation.images.nope' } } };
    await expect(openTrainingData(bad, opts)).rejects.toThrow(
      /data\.camera_keys\.cam_low: the dataset has no feature observation\.images\.nope/,
    );
  });

  it('decodes video once into the cache and reuses it; a missing task falls back to the default prompt', async () => {
    const { cwd, config } = workspace(videoDataset, { prompt_from_task: false, norm: 'quantile' });
    const { stats } = await computeNormStats(config, { cwd });
    const cacheDir = tmpDir('cache-mp4');
    const progress: Array<[number, number]> = [];
    const first = await openTrainingData(config, {
      imageSize: 24,
      horizon: 4,
      normStats: stats,
      frameCache: { dir: cacheDir },
      cwd,
      onProgress: (d, t) => progress.push([d, t]),
    });
    expect(progress.at(-1)).toEqual([72, 72]);
    expect(readdirSync(cacheDir).filter((f) => !f.startsWith('.'))).toHaveLength(2);
    const batch = first.batchAt(0, 6, 1);
    expect(batch.prompts).toEqual(new Array(6).fill('do the thing'));
    // Quantile normalization maps q01..q99 to -1..1.
    expect(Math.max(...batch.state.map(Math.abs))).toBeLessThan(1.2);
    // Cached frames match a fresh decode of the video, letterboxed.
    const { openDataset } = await import('../../src/data/reader.js');
    const ds = await openDataset(videoDataset);
    const pos = 0;
    const [e, t] = locate(epochPermutation(36, 1, 0)[pos]!);
    const fresh = await ds.readFrames(e, 'cam_high', { size: 24, frames: [t] });
    expect(Buffer.from(batch.images.subarray(0, 24 * 24 * 3)).equals(Buffer.from(fresh.data))).toBe(true);
    progress.length = 0;
    // Read again, frame by frame from disk (memoryBytes 0): no rebuild, the same frames.
    const { openFrameCache } = await import('../../src/data/cache.js');
    for (const [memoryBytes, inMemory] of [
      [undefined, true],
      [0, false],
    ] as const) {
      const cache = await openFrameCache(ds, 'observation.images.cam_high', 24, {
        dir: cacheDir,
        memoryBytes,
      });
      expect(cache.inMemory).toBe(inMemory);
      cache.close();
    }
    const second = await openTrainingData(config, {
      imageSize: 24,
      horizon: 4,
      normStats: stats,
      frameCache: { dir: cacheDir, memoryBytes: 0 },
      cwd,
      onProgress: (d, t) => progress.push([d, t]),
    });
    expect(progress).toEqual([]);
    expect(Buffer.from(second.batchAt(0, 6, 1).images).equals(Buffer.from(batch.images))).toBe(true);
    first.close();
    second.close();
  });

  it('a stop request ends a frame cache build between episodes; the next build goes on from the written episodes', async () => {
    const { cwd, config } = workspace(videoDataset, { prompt_from_task: false });
    const { stats } = await computeNormStats(config, { cwd });
    const cacheDir = tmpDir('cache-stop');
    const controller = new AbortController();
    const progress: number[] = [];
    const opts = { imageSize: 16, horizon: 4, normStats: stats, frameCache: { dir: cacheDir }, cwd };
    let stopped: unknown;
    await openTrainingData(config, {
      ...opts,
      signal: controller.signal,
      onProgress: (d) => {
        progress.push(d);
        controller.abort();
      },
    }).catch((e) => {
      stopped = e;
    });
    expect(stopped).toBeInstanceOf(CacheBuildAborted);
    // At most the two episodes already in flight were decoded, of the whole dataset's.
    const kept = (stopped as CacheBuildAborted).keptFrames;
    expect(kept).toBe(progress.at(-1));
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(36);
    // No cache yet: only the partial build, its lock released, its journal naming the written episodes.
    const [partial, ...others] = readdirSync(cacheDir);
    expect(others).toEqual([]);
    expect(partial).toMatch(/^\.partial-/);
    expect(readdirSync(path.join(cacheDir, partial!)).sort()).toEqual(['episodes.done', 'frames.u8']);
    // The next run decodes only the rest, and its cache equals one built in a single go.
    const resumed: number[] = [];
    const data = await openTrainingData(config, { ...opts, onProgress: (d) => resumed.push(d) });
    expect(resumed[0]).toBe(kept);
    expect(resumed.at(-1)).toBe(72); // both cameras' 36 frames
    const keys = readdirSync(cacheDir).sort();
    expect(keys).toHaveLength(2);
    const whole = tmpDir('cache-whole');
    const fresh = await openTrainingData(config, { ...opts, frameCache: { dir: whole } });
    expect(readdirSync(whole).sort()).toEqual(keys);
    for (const key of keys) {
      expect(readdirSync(path.join(cacheDir, key)).sort()).toEqual(['frames.u8', 'manifest.json']);
      const resumedBytes = readFileSync(path.join(cacheDir, key, 'frames.u8'));
      expect(resumedBytes.equals(readFileSync(path.join(whole, key, 'frames.u8')))).toBe(true);
    }
    data.close();
    fresh.close();
  });

  it('a partial build left by a killed process is taken over; one a live process holds is left to it', async () => {
    const { cwd, config } = workspace(videoDataset, { prompt_from_task: false });
    const { stats } = await computeNormStats(config, { cwd });
    const opts = { imageSize: 16, horizon: 4, normStats: stats, cwd };
    // A dead builder's lock (a pid no process has) over an empty journal: built from the start, in place.
    // A build stopped after its first episode leaves its partial folder in `dir`.
    const stopEarly = async (dir: string) => {
      const stop = new AbortController();
      await openTrainingData(config, {
        ...opts,
        frameCache: { dir },
        signal: stop.signal,
        onProgress: () => stop.abort(),
      }).catch(() => {});
    };
    const deadDir = tmpDir('cache-dead');
    await stopEarly(deadDir);
    const [partial] = readdirSync(deadDir);
    writeFileSync(path.join(deadDir, partial!, 'lock'), '2147483646');
    const taken = await openTrainingData(config, { ...opts, frameCache: { dir: deadDir } });
    expect(readdirSync(deadDir).filter((f) => f.startsWith('.'))).toEqual([]);
    taken.close();
    // A live builder (this test's parent process, or another build in this process): its partial
    // folder is left as it is.
    for (const holder of [process.ppid, process.pid]) {
      const liveDir = tmpDir('cache-live');
      await stopEarly(liveDir);
      const [held] = readdirSync(liveDir);
      writeFileSync(path.join(liveDir, held!, 'lock'), String(holder));
      const journal = readFileSync(path.join(liveDir, held!, 'episodes.done'), 'utf8');
      const own = await openTrainingData(config, { ...opts, frameCache: { dir: liveDir } });
      // Its own copy was built beside it and removed once in place.
      expect(readdirSync(liveDir).filter((f) => f.startsWith('.'))).toEqual([held]);
      expect(readdirSync(liveDir)).toContain(held!.replace('.partial-', ''));
      expect(readFileSync(path.join(liveDir, held!, 'episodes.done'), 'utf8')).toBe(journal);
      own.close();
    }
  });
});

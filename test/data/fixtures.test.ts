import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/config/load.js';
import { openDataset } from '../../src/data/reader.js';
import { aggregateStats, vectorStats } from '../../src/data/stats.js';

const FIXTURES = path.resolve(PACKAGE_ROOT, '../shared/fixtures/lerobot');
const V30 = path.join(FIXTURES, 'v30_so101_record_test');
const V21 = path.join(FIXTURES, 'v21_reachy2_apple_storage_meta_only');
const present = existsSync(V30) && existsSync(V21);
if (!present) console.warn(`skipping LeRobot fixture tests: ${FIXTURES} is absent`);

// LeRobot accumulates its stats in float32: agreement is to about 1e-4 relative, checked at 1e-3.
const close = (a: number[], b: number[], tol: number) =>
  a.every((x, i) => Math.abs(x - b[i]!) <= tol * Math.max(1, Math.abs(b[i]!)));

describe.runIf(present)('real LeRobot datasets', () => {
  it('reads the v3.0 sample: episodes, ranges, tasks, rows', async () => {
    const ds = await openDataset(V30);
    expect(ds.info.version).toBe('v3.0');
    expect(ds.info.fps).toBe(30);
    expect(ds.info.robotType).toBe('so101_follower');
    expect(ds.warnings).toEqual([]);
    expect(ds.episodes.map((e) => e.length)).toEqual([373, 374, 372, 373]);
    expect(ds.episodes.map((e) => [e.from, e.to])).toEqual([
      [0, 373],
      [373, 747],
      [747, 1119],
      [1119, 1492],
    ]);
    expect(ds.numFrames).toBe(1492);
    expect([...ds.tasks.entries()]).toEqual([[0, 'Pick the orange cube and place it in the box']]);
    expect(ds.cameras.map((c) => [c.key, c.height, c.width, c.video, c.channelFirst])).toEqual([
      ['observation.images.front', 480, 640, true, false],
      ['observation.images.top', 480, 640, true, false],
    ]);
    expect(ds.info.features.action!.names).toEqual([
      'shoulder_pan.pos',
      'shoulder_lift.pos',
      'elbow_flex.pos',
      'wrist_flex.pos',
      'wrist_roll.pos',
      'gripper.pos',
    ]);
    for (const ep of ds.episodes) {
      const d = await ds.readEpisode(ep.index);
      expect(d.length).toBe(ep.length);
      expect(d.state!.length).toBe(ep.length * 6);
      expect(Array.from(d.episodeIndex).every((e) => e === ep.index)).toBe(true);
      expect(Array.from(d.frameIndex)).toEqual(Array.from({ length: ep.length }, (_, i) => i));
      expect(d.index[0]).toBe(ep.from);
      expect(d.index[ep.length - 1]).toBe(ep.to - 1);
      expect(Array.from(d.taskIndex).every((t) => ds.tasks.has(t))).toBe(true);
    }
  });

  it('v3.0 stats computed from the rows match the per-episode and global metadata', async () => {
    const ds = await openDataset(V30);
    const perEpisode = [];
    for (const ep of ds.episodes) {
      const d = await ds.readEpisode(ep.index);
      for (const [key, rows] of [
        ['action', d.action!],
        ['observation.state', d.state!],
      ] as const) {
        const ours = vectorStats(rows, 6);
        const theirs = ep.stats![key]!;
        for (const k of ['min', 'max', 'mean', 'std']) {
          expect(
            close(ours[k] as number[], theirs[k] as number[], 1e-3),
            `${key} ${k} episode ${ep.index}`,
          ).toBe(true);
        }
        // LeRobot's quantiles come from a histogram: agree within a small share of the range.
        const range = (theirs.max as number[]).map((m, i) => m - (theirs.min as number[])[i]!);
        for (const k of ['q01', 'q10', 'q50', 'q90', 'q99']) {
          const diff = (ours[k] as number[]).map(
            (x, i) => Math.abs(x - (theirs[k] as number[])[i]!) / (range[i]! || 1),
          );
          expect(Math.max(...diff), `${key} ${k} episode ${ep.index}`).toBeLessThan(0.025);
        }
        expect(ours.count).toEqual([ep.length]);
      }
      perEpisode.push({ action: vectorStats(d.action!, 6), 'observation.state': vectorStats(d.state!, 6) });
    }
    const all = await Promise.all(ds.episodes.map((e) => ds.readEpisode(e.index)));
    const actions = new Float32Array(all.flatMap((d) => Array.from(d.action!)));
    const global = vectorStats(actions, 6);
    const meta = ds.stats!.action!;
    for (const k of ['min', 'max', 'mean', 'std']) {
      expect(close(global[k] as number[], meta[k] as number[], 1e-3), `global action ${k}`).toBe(true);
    }
    expect(meta.count).toEqual([1492]);
    const pooled = aggregateStats(perEpisode);
    expect(close(pooled.action!.std as number[], meta.std as number[], 1e-3)).toBe(true);
  });

  it('reads the v2.1 metadata: episodes, tasks, per-episode stats; reports the inconsistent total', async () => {
    const ds = await openDataset(V21);
    expect(ds.info.version).toBe('v2.1');
    expect(ds.episodes.map((e) => [e.index, e.length, e.from, e.to])).toEqual([
      [0, 299, 0, 299],
      [1, 300, 299, 599],
      [2, 300, 599, 899],
    ]);
    expect(ds.episodes[2]!.dataFile).toBe(path.join(V21, 'data/chunk-000/episode_000002.parquet'));
    expect(ds.episodes[1]!.videos['observation.image']!.file).toBe(
      path.join(V21, 'videos/chunk-000/observation.image/episode_000001.mp4'),
    );
    expect([...ds.tasks.values()]).toEqual(['place the apple in the plate']);
    expect(ds.cameras[0]).toMatchObject({
      key: 'observation.image',
      height: 720,
      width: 960,
      channelFirst: true,
    });
    // info.json claims 14,983 frames; the three episodes hold 899: reported, and the episodes win.
    expect(ds.numFrames).toBe(899);
    expect(ds.warnings.join('\n')).toMatch(/total_frames is 14983 but the episodes' lengths sum to 899/);
    // No stats.json in v2.1: global stats are aggregated from episodes_stats.jsonl.
    const epStats = ds.episodes.map((e) => e.stats!['observation.state']!);
    const n = epStats.map((s) => (s.count as number[])[0]!);
    const mean0 =
      epStats.reduce((a, s, i) => a + (s.mean as number[])[0]! * n[i]!, 0) / n.reduce((a, b) => a + b);
    expect((ds.stats!['observation.state']!.mean as number[])[0]).toBeCloseTo(mean0, 10);
    expect(ds.stats!['observation.state']!.count).toEqual([899]);
    const mins = epStats.map((s) => (s.min as number[])[3]!);
    expect((ds.stats!['observation.state']!.min as number[])[3]).toBe(Math.min(...mins));
  });

  it('names the missing parquet file when v2.1 data is absent', async () => {
    const ds = await openDataset(V21);
    await expect(ds.readEpisode(0)).rejects.toThrow(/episode_000000\.parquet: parquet file is missing/);
  });

  it('names the missing video file when a v3.0 video is absent', async () => {
    const ds = await openDataset(V30);
    await expect(ds.readFrames(0, 'front', { frames: [0] })).rejects.toThrow(
      /videos\/observation\.images\.front\/chunk-000\/file-000\.mp4: video file is missing \(episode 0, camera observation\.images\.front\)/,
    );
  });
});

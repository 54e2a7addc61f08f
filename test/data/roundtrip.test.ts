import { describe, expect, it } from 'vitest';
import { openParquet } from '../../src/data/parquet.js';
import { openDataset } from '../../src/data/reader.js';
import { validateDataset } from '../../src/data/validate.js';
import type { WriteFormat } from '../../src/data/writer.js';
import { actionOf, CAMERAS, LENGTHS, picture, stateOf, taskOf, tmpDir, writeSynthetic } from './helpers.js';

async function checkRoundTrip(format: WriteFormat, video: boolean) {
  const dir = tmpDir(`${format}-${video ? 'mp4' : 'png'}`);
  await writeSynthetic(dir, format, video);
  const ds = await openDataset(dir);
  expect(ds.info.version).toBe(format);
  expect(ds.warnings).toEqual([]);
  expect(ds.episodes.map((e) => e.length)).toEqual(LENGTHS);
  expect([...ds.tasks.values()]).toEqual(['pick up the cube', 'stack the blocks']);
  expect(ds.episodes.map((e) => e.tasks)).toEqual([
    ['pick up the cube'],
    ['stack the blocks'],
    ['pick up the cube'],
  ]);
  let worst = 0;
  for (const [e, len] of LENGTHS.entries()) {
    const d = await ds.readEpisode(e);
    expect(Array.from(d.state!)).toEqual(
      Array.from({ length: len }, (_, f) => Array.from(stateOf(e, f))).flat(),
    );
    expect(Array.from(d.action!)).toEqual(
      Array.from({ length: len }, (_, f) => Array.from(actionOf(e, f))).flat(),
    );
    expect(Array.from(d.timestamp)).toEqual(Array.from({ length: len }, (_, f) => Math.fround(f / 10)));
    expect(Array.from(d.taskIndex).map((t) => ds.tasks.get(t))).toEqual(new Array(len).fill(taskOf(e)));
    for (const [ci, cam] of CAMERAS.entries()) {
      const frames = await ds.readFrames(e, cam.name);
      expect([frames.count, frames.height, frames.width]).toEqual([len, cam.height, cam.width]);
      for (let f = 0; f < len; f++) {
        const want = picture(cam.height, cam.width, e, f, ci);
        const got = frames.data.subarray(f * want.length, (f + 1) * want.length);
        if (!video) {
          expect(Buffer.from(got).equals(Buffer.from(want)), `episode ${e} frame ${f} ${cam.name}`).toBe(
            true,
          );
          continue;
        }
        const err = (a: Uint8Array) => {
          let d = 0;
          for (let i = 0; i < a.length; i++) d += Math.abs(got[i]! - a[i]!);
          return d / a.length;
        };
        const own = err(want);
        worst = Math.max(worst, own);
        // Lossy, yet closer to its own source than to its neighbours': an off-by-one frame fails.
        for (const g of [f - 1, f + 1].filter((g) => g >= 0 && g < len)) {
          expect(own, `episode ${e} frame ${f} vs ${g}`).toBeLessThan(
            err(picture(cam.height, cam.width, e, g, ci)),
          );
        }
      }
    }
  }
  if (video) expect(worst).toBeLessThan(4);
  // One row group per episode, and the column types `datasets` reads back.
  for (const file of new Set(ds.episodes.map((e) => e.dataFile))) {
    const pq = await openParquet(file);
    const eps = ds.episodes.filter((e) => e.dataFile === file);
    expect(pq.metadata.row_groups.map((g) => Number(g.num_rows))).toEqual(eps.map((e) => e.length));
    const hf = JSON.parse(pq.metadata.key_value_metadata!.find((k) => k.key === 'huggingface')!.value!);
    expect(hf.info.features.action).toEqual({
      feature: { dtype: 'float32', _type: 'Value' },
      length: 2,
      _type: format === 'v2.1' ? 'Sequence' : 'List',
    });
    expect(hf.info.features['observation.images.cam_high']).toEqual(video ? undefined : { _type: 'Image' });
  }
  const report = await validateDataset(dir);
  expect(report.problems).toEqual([]);
  return dir;
}

describe('writer → reader round trip', () => {
  it('v2.1 with PNG images in parquet: exact, frame for frame', async () => {
    await checkRoundTrip('v2.1', false);
  });
  it('v3.0 with PNG images in parquet: exact, frame for frame', async () => {
    await checkRoundTrip('v3.0', false);
  });
  it('v2.1 with h264 videos: frame for frame within tolerance', async () => {
    await checkRoundTrip('v2.1', true);
  });
  it('v3.0 with h264 videos packed in one file per camera', async () => {
    const dir = await checkRoundTrip('v3.0', true);
    const ds = await openDataset(dir);
    const files = new Set(ds.episodes.map((e) => e.videos['observation.images.cam_high']!.file));
    expect(files.size).toBe(1);
    expect(ds.episodes.map((e) => e.videos['observation.images.cam_high']!.fromTimestamp)).toEqual([
      0, 1.2, 2.1,
    ]);
    expect(ds.stats!.action!.q99).toBeDefined();
    expect(ds.episodes[0]!.stats!['observation.images.cam_high']!.mean).toHaveLength(3);
  });
});

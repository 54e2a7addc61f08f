import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { filterDataset, mergeDatasets, splitDataset } from '../../src/data/edit-select.js';
import { openDataset } from '../../src/data/reader.js';
import type { WriteFormat } from '../../src/data/writer.js';
import { valid } from './expect-valid.js';
import { LENGTHS, tmpDir, writeSynthetic } from './helpers.js';

describe.each(['v2.1', 'v3.0'] as WriteFormat[])('data edits refuse, %s', (format) => {
  let root: string;
  let src: string;
  beforeAll(async () => {
    root = tmpDir(`edit-refuse-${format}`);
    src = path.join(root, 'src');
    await writeSynthetic(src, format, false);
  });

  it('refuses what would overwrite, overlap or mix, naming the field, expected and actual', async () => {
    const out = path.join(root, 'exists');
    mkdirSync(out);
    await expect(filterDataset(src, out, { drop: '1' })).rejects.toThrow(
      `${out}: already exists: choose a new folder, or pass --force to replace it`,
    );
    await filterDataset(src, out, { drop: '1' }, { force: true });
    expect((await openDataset(out)).episodes.length).toBe(2);
    await expect(filterDataset(src, path.join(src, 'inside'), { drop: '1' })).rejects.toThrow(
      /output folder: expected a folder apart from the inputs .*, got one that holds or lies in the input/,
    );
    await expect(
      splitDataset(src, [
        { out: path.join(root, 'p'), spec: '0:2' },
        { out: path.join(root, 'q'), spec: '1' },
      ]),
    ).rejects.toThrow(/split: episode 1: expected in one part only, got it in .*p and .*q/);
    await expect(filterDataset(src, path.join(root, 'x'), { drop: '7' })).rejects.toThrow(
      /--drop 7: episode 7: expected one of .*'s episodes \(0\.\.2\), got none with that index/,
    );
    await expect(filterDataset(src, path.join(root, 'x'), { dropFailed: true })).rejects.toThrow(
      /success: expected a success key in the episodes metadata or a next\.success feature, got neither/,
    );
    // Another fps: one error naming the dataset and the field.
    const fast = path.join(root, 'fast');
    await writeSynthetic(fast, format, true, 20);
    await expect(mergeDatasets([src, fast], path.join(root, 'x'))).rejects.toThrow(
      `${fast}: fps: expected 10 (as in ${src}), got 20`,
    );
    expect(existsSync(path.join(root, 'x'))).toBe(false);
  }, 60_000);
});

describe('data filter --drop-failed', () => {
  it("drops the episodes whose recorded success is false (v2.1's episodes.jsonl)", async () => {
    const root = tmpDir('edit-success');
    const src = path.join(root, 'src');
    await writeSynthetic(src, 'v2.1', false);
    const file = path.join(src, 'meta/episodes.jsonl');
    const rows = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    writeFileSync(file, rows.map((r, i) => `${JSON.stringify({ ...r, success: i !== 1 })}\n`).join(''));
    const out = path.join(root, 'ok');
    const r = await filterDataset(src, out, { dropFailed: true });
    expect(r.droppedEpisodes).toEqual([1]);
    await valid(out);
    const ds = await openDataset(out);
    expect(ds.episodes.map((e) => e.length)).toEqual([LENGTHS[0], LENGTHS[2]]);
    expect(ds.cameras.map((c) => c.dtype)).toEqual(['image', 'image']);
  }, 60_000);
});

const FIXTURE = path.resolve(import.meta.dirname, '../../../shared/fixtures/lerobot/v30_so101_record_test');

describe('data edits on a dataset LeRobot recorded', () => {
  it.runIf(existsSync(FIXTURE))(
    'splits and merges back its rows (its videos left out of the fixture)',
    async () => {
      const root = tmpDir('edit-fixture');
      // The fixture declares two cameras whose videos it does not ship: a copy without them.
      const src = path.join(root, 'so101');
      cpSync(FIXTURE, src, { recursive: true });
      const info = JSON.parse(readFileSync(path.join(src, 'meta/info.json'), 'utf8'));
      for (const key of Object.keys(info.features))
        if (key.startsWith('observation.images.')) delete info.features[key];
      writeFileSync(path.join(src, 'meta/info.json'), JSON.stringify(info));
      const parts = await splitDataset(src, [
        { out: path.join(root, 'a'), spec: '0:3' },
        { out: path.join(root, 'b'), spec: '3' },
      ]);
      expect(parts.map((p) => p.episodes)).toEqual([3, 1]);
      const merged = path.join(root, 'm');
      await mergeDatasets([path.join(root, 'a'), path.join(root, 'b')], merged);
      await valid(merged);
      const [before, after] = [await openDataset(src), await openDataset(merged)];
      expect(after.numFrames).toBe(1492);
      for (const e of before.episodes) {
        expect(Array.from((await after.readEpisode(e.index)).action!)).toEqual(
          Array.from((await before.readEpisode(e.index)).action!),
        );
      }
      // The fixture as it is: its declared videos are missing, and the error names the file.
      await expect(filterDataset(FIXTURE, path.join(root, 'f'), { drop: '0' })).rejects.toThrow(
        /videos\/observation\.images\.\w+\/chunk-000\/file-000\.mp4: video file is missing/,
      );
    },
    60_000,
  );
  it.skipIf(existsSync(FIXTURE))(`skipped: ${FIXTURE} is absent`, () => {});
});

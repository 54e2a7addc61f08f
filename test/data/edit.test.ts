import { cpSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { filterDataset, mergeDatasets, splitDataset } from '../../src/data/edit-select.js';
import { openDataset } from '../../src/data/reader.js';
import type { WriteFormat } from '../../src/data/writer.js';
import { valid } from './expect-valid.js';
import { CAMERAS, differingFiles, LENGTHS, stateOf, taskOf, tmpDir, writeSynthetic } from './helpers.js';

/** Every episode's state rows, tasks and camera frames, to compare datasets by content. */
async function content(dir: string) {
  const ds = await openDataset(dir);
  return Promise.all(
    ds.episodes.map(async (e) => {
      const rows = await ds.readEpisode(e.index);
      const frames = await Promise.all(CAMERAS.map((c) => ds.readFrames(e.index, c.name)));
      return {
        length: e.length,
        tasks: e.tasks,
        frameTasks: Array.from(rows.taskIndex, (t) => ds.tasks.get(t)),
        state: Array.from(rows.state!),
        frames: frames.map((f) => Buffer.from(f.data).toString('base64')),
      };
    }),
  );
}

/** Runs `edit` and checks that it left the inputs byte for byte as they were. */
async function untouched<T>(inputs: string[], edit: () => Promise<T>): Promise<T> {
  const copies = inputs.map((dir) => {
    const copy = `${dir}-before`;
    cpSync(dir, copy, { recursive: true });
    return copy;
  });
  try {
    return await edit();
  } finally {
    for (const [i, dir] of inputs.entries()) expect(differingFiles(dir, copies[i]!)).toEqual([]);
  }
}

describe.each(['v2.1', 'v3.0'] as WriteFormat[])('data edits, %s', (format) => {
  let root: string;
  let src: string;
  beforeAll(async () => {
    root = tmpDir(`edit-${format}`);
    src = path.join(root, 'src');
    await writeSynthetic(src, format, true);
  });

  it('split by ranges, merged back, gives the same episodes (frames carried, not re-encoded)', async () => {
    const [a, b] = [path.join(root, 'a'), path.join(root, 'b')];
    const parts = await untouched([src], () =>
      splitDataset(src, [
        { out: a, spec: '0,2' },
        { out: b, spec: '1' },
      ]),
    );
    expect(parts.map((p) => [p.episodes, p.frames, p.tasks, p.format])).toEqual([
      [2, LENGTHS[0]! + LENGTHS[2]!, 1, format],
      [1, LENGTHS[1]!, 1, format],
    ]);
    await valid(a);
    await valid(b);
    const original = await content(src);
    expect(await content(b)).toEqual([original[1]]);

    const merged = path.join(root, 'merged');
    const r = await untouched([b, a], () => mergeDatasets([b, a], merged));
    expect([r.episodes, r.frames, r.tasks]).toEqual([3, LENGTHS.reduce((x, y) => x + y), 2]);
    await valid(merged);
    expect(await content(merged)).toEqual([original[1], original[0], original[2]]);
    // Renumbered: episodes 0..2, a global index 0..n-1, tasks by first use.
    const ds = await openDataset(merged);
    expect(ds.episodes.map((e) => [e.index, e.from])).toEqual([
      [0, 0],
      [1, LENGTHS[1]],
      [2, LENGTHS[1]! + LENGTHS[0]!],
    ]);
    expect([...ds.tasks.values()]).toEqual([taskOf(1), taskOf(0)]);
    expect(ds.episodes[2]!.stats!.episode_index!.mean).toEqual([2]);
    const rows = await ds.readEpisode(1);
    expect(Array.from(rows.index.slice(0, 2))).toEqual([LENGTHS[1], LENGTHS[1]! + 1]);
    expect(Array.from(rows.state!.slice(0, 3))).toEqual(Array.from(stateOf(0, 0)));
  }, 60_000);

  it('splits by fractions and filters by index, into the other format too', async () => {
    const other: WriteFormat = format === 'v2.1' ? 'v3.0' : 'v2.1';
    const [train, val] = [path.join(root, 'train'), path.join(root, 'val')];
    await untouched([src], () =>
      splitDataset(
        src,
        [
          { out: train, spec: '67%' },
          { out: val, spec: '0.33' },
        ],
        { format: other },
      ),
    );
    expect((await valid(train)).version).toBe(other);
    expect([(await openDataset(train)).episodes.length, (await openDataset(val)).episodes.length]).toEqual([
      2, 1,
    ]);

    const kept = path.join(root, 'kept');
    const r = await untouched([src], () => filterDataset(src, kept, { drop: '0' }));
    expect(r.droppedEpisodes).toEqual([0]);
    await valid(kept);
    expect(await content(kept)).toEqual((await content(src)).slice(1));
  }, 60_000);
});

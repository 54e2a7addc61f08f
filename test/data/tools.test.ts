import { readFileSync } from 'node:fs';
import path from 'node:path';
import { decode as decodePng } from 'fast-png';
import h5wasm from 'h5wasm/node';
import { beforeAll, describe, expect, it } from 'vitest';
import { convertDataset } from '../../src/data/convert.js';
import { importAloha } from '../../src/data/hdf5.js';
import { openDataset } from '../../src/data/reader.js';
import { validateDataset } from '../../src/data/validate.js';
import { CAMERAS, picture, runData, tmpDir, writeAlohaEpisode, writeSynthetic } from './helpers.js';

async function expectSameContent(a: string, b: string) {
  const x = await openDataset(a);
  const y = await openDataset(b);
  expect(y.episodes.map((e) => [e.length, e.tasks])).toEqual(x.episodes.map((e) => [e.length, e.tasks]));
  expect(y.info.fps).toBe(x.info.fps);
  for (const ep of x.episodes) {
    const dx = await x.readEpisode(ep.index);
    const dy = await y.readEpisode(ep.index);
    expect(Array.from(dy.state!)).toEqual(Array.from(dx.state!));
    expect(Array.from(dy.action!)).toEqual(Array.from(dx.action!));
    expect(Array.from(dy.taskIndex).map((t) => y.tasks.get(t))).toEqual(
      Array.from(dx.taskIndex).map((t) => x.tasks.get(t)),
    );
    for (const cam of CAMERAS) {
      const fx = await x.readFrames(ep.index, cam.name);
      const fy = await y.readFrames(ep.index, cam.name);
      expect(Buffer.from(fy.data).equals(Buffer.from(fx.data))).toBe(true);
    }
  }
}

describe('dataset tools', () => {
  let v21: string;
  beforeAll(async () => {
    v21 = tmpDir('tools');
    await writeSynthetic(v21, 'v2.1', false);
    await h5wasm.ready;
  }, 30_000);

  it('converts v2.1 → v3.0 → v2.1 without changing a value', async () => {
    const v30 = path.join(tmpDir('conv'), 'v30');
    await convertDataset(v21, v30, 'v3.0');
    expect((await openDataset(v30)).info.version).toBe('v3.0');
    expect((await validateDataset(v30)).problems).toEqual([]);
    await expectSameContent(v21, v30);
    const back = path.join(tmpDir('conv'), 'v21');
    await convertDataset(v30, back, 'v2.1');
    await expectSameContent(v21, back);
  });

  it('imports ALOHA HDF5 episodes, raw and JPEG-compressed', async () => {
    const src = tmpDir('h5');
    const raw = [
      writeAlohaEpisode(path.join(src, 'episode_0.hdf5'), 7, 0),
      writeAlohaEpisode(path.join(src, 'episode_1.hdf5'), 5, 1),
    ];
    const out = path.join(tmpDir('imp'), 'aloha');
    const r = await importAloha([src], out, { format: 'v2.1', task: 'transfer the cube', video: false });
    expect(r).toEqual({ episodes: 2, frames: 12 });
    const ds = await openDataset(out);
    expect(ds.info.robotType).toBe('aloha');
    expect(ds.info.fps).toBe(50);
    expect(ds.info.features['observation.state']!.names![6]).toBe('left_gripper');
    expect([...ds.tasks.values()]).toEqual(['transfer the cube']);
    for (const [e, want] of raw.entries()) {
      const d = await ds.readEpisode(e);
      expect(Array.from(d.state!)).toEqual(Array.from(Float32Array.from(want.qpos)));
      expect(Array.from(d.action!)).toEqual(Array.from(Float32Array.from(want.action)));
      const frames = await ds.readFrames(e, 'cam_high');
      want.frames.forEach((f, t) => {
        expect(
          Buffer.from(frames.data.subarray(t * f.length, (t + 1) * f.length)).equals(Buffer.from(f)),
        ).toBe(true);
      });
    }
    expect((await validateDataset(out)).problems).toEqual([]);

    const jsrc = tmpDir('h5j');
    const j = writeAlohaEpisode(path.join(jsrc, 'episode_0.hdf5'), 4, 2, true);
    const jout = path.join(tmpDir('impj'), 'aloha');
    await importAloha([path.join(jsrc, 'episode_0.hdf5')], jout, { format: 'v3.0', task: 't', video: false });
    const jf = await (await openDataset(jout)).readFrames(0, 'cam_high');
    expect([jf.count, jf.height, jf.width]).toEqual([4, 24, 32]);
    let err = 0;
    j.frames.forEach((f, t) => {
      for (let i = 0; i < f.length; i++) err += Math.abs(jf.data[t * f.length + i]! - f[i]!);
    });
    expect(err / (4 * 24 * 32 * 3)).toBeLessThan(6);

    const bad = path.join(tmpDir('h5bad'), 'episode_0.hdf5');
    const f = new h5wasm.File(bad, 'w');
    f.create_dataset({ name: 'action', data: new Float64Array(14), shape: [1, 14] });
    f.close();
    await expect(
      importAloha([bad], path.join(tmpDir('impbad'), 'x'), { format: 'v2.1', task: 't' }),
    ).rejects.toThrow(
      /episode_0\.hdf5: \/observations\/qpos is missing \(found: action\); expected ALOHA's episode layout/,
    );
  });

  it('vla data info and vla data show', async () => {
    const info = await runData(['info', v21]);
    expect(info).toMatch(/version\s+v2\.1/);
    expect(info).toMatch(/episodes\s+3/);
    expect(info).toMatch(/frames\s+36/);
    expect(info).toMatch(/observation\.images\.cam_high\s+image\s+\[48, 64, 3\]/);
    expect(info).toMatch(/observation\.state\s+float32\s+\[3\]\s+a, b, c/);
    expect(info).toMatch(/1\s+stack the blocks/);
    const out = tmpDir('show');
    const shown = await runData(['show', v21, '--episode', '2', '--frames', '4', '--out', out]);
    expect(shown).toMatch(
      /episode_000002_frames\.png: observation\.images\.cam_high, observation\.images\.cam_left_wrist \(rows\) at frames 0, 5, 9, 14/,
    );
    const sheet = decodePng(readFileSync(path.join(out, 'episode_000002_frames.png')));
    // 4 thumbnails 160 px wide (120 tall at 4:3) per row, 2 rows, 4 px gaps.
    expect([sheet.width, sheet.height]).toEqual([4 + 4 * 164, 4 + 2 * 124]);
    // The first thumbnail is frame 0 of episode 2, scaled: its top-left pixel matches the source's.
    const src = picture(48, 64, 2, 0, 0);
    expect(Math.abs((sheet.data[(4 * sheet.width + 4) * 3] as number) - src[0]!)).toBeLessThan(8);
    const curves = decodePng(readFileSync(path.join(out, 'episode_000002_curves.png')));
    // Both curves are drawn: pixels in the state colour (#1f77b4) and the action colour (#ff7f0e).
    const count = (r: number, g: number, b: number) => {
      let n = 0;
      for (let i = 0; i < curves.data.length; i += 3)
        if (curves.data[i] === r && curves.data[i + 1] === g && curves.data[i + 2] === b) n++;
      return n;
    };
    expect(count(0x1f, 0x77, 0xb4)).toBeGreaterThan(100);
    expect(count(0xff, 0x7f, 0x0e)).toBeGreaterThan(100);
  });
});

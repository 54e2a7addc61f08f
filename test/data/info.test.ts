import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fillTemplate, flattenNames, parseInfo } from '../../src/data/info.js';
import { openDataset } from '../../src/data/reader.js';
import { validateDataset } from '../../src/data/validate.js';
import { createDataset } from '../../src/data/writer.js';
import { actionOf, CAMERAS, LENGTHS, picture, runData, stateOf, tmpDir, writeSynthetic } from './helpers.js';

const baseInfo = (features: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  codebase_version: 'v2.1',
  fps: 29.97,
  total_episodes: 0,
  total_frames: 0,
  data_path: 'data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet',
  video_path: 'videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4',
  features,
  ...extra,
});

describe('meta/info.json as real datasets write it', () => {
  it('flattens names given as a list, {"motors": [...]}, nested lists, or null', () => {
    expect(flattenNames(['a', 'b'])).toEqual(['a', 'b']);
    expect(flattenNames({ motors: ['x', 'y', 'z'] })).toEqual(['x', 'y', 'z']);
    expect(flattenNames([['l1', 'l2'], ['r1']])).toEqual(['l1', 'l2', 'r1']);
    expect(flattenNames(null)).toBeNull();
  });

  it('reads camera shapes channel-first or channel-last, and a float fps', () => {
    const info = parseInfo(
      baseInfo({
        'observation.state': { dtype: 'float32', shape: [2], names: { motors: ['a', 'b'] } },
        'observation.images.top': {
          dtype: 'video',
          shape: [3, 480, 640],
          names: ['channel', 'height', 'width'],
        },
        'observation.images.wrist': { dtype: 'image', shape: [96, 128, 3], names: null },
        'observation.images.side': { dtype: 'video', shape: [3, 120, 160], names: null },
      }),
      'info.json',
    );
    expect(info.fps).toBe(29.97);
    expect(info.features['observation.state']!.names).toEqual(['a', 'b']);
    expect(info.cameras.map((c) => [c.key, c.height, c.width, c.channelFirst, c.video])).toEqual([
      ['observation.images.top', 480, 640, true, true],
      ['observation.images.wrist', 96, 128, false, false],
      ['observation.images.side', 120, 160, true, true],
    ]);
  });

  it('refuses what it cannot read, naming the file and the field', () => {
    expect(() => parseInfo(baseInfo({}, { codebase_version: 'v1.6' }), 'x/meta/info.json')).toThrow(
      /x\/meta\/info\.json: codebase_version: expected v2\.0, v2\.1 or v3\.0, got "v1\.6"/,
    );
    expect(() => parseInfo(baseInfo({}, { total_frames: -3 }), 'info.json')).toThrow(
      /info\.json: total_frames: expected a value >= 0, got -3/,
    );
    expect(() =>
      parseInfo(
        baseInfo({ 'observation.images.a': { dtype: 'video', shape: [3, 4, 5] } }, { video_path: null }),
        'info.json',
      ),
    ).toThrow(/info\.json: video_path: expected a path template because video features exist/);
    expect(() =>
      parseInfo(baseInfo({ 'observation.images.a': { dtype: 'image', shape: [4, 5] } }), 'info.json'),
    ).toThrow(/features\.observation\.images\.a\.shape: expected 3 dims/);
  });

  it('fills LeRobot path templates', () => {
    expect(
      fillTemplate('videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4', {
        video_key: 'k',
        chunk_index: 1,
        file_index: 12,
      }),
    ).toBe('videos/k/chunk-001/file-012.mp4');
    expect(() => fillTemplate('data/{nope}.parquet', {})).toThrow(/no value for \{nope\}/);
  });
});

describe('dataset versions and interrupted recordings', () => {
  it('reads v2.0 (global stats.json, no episodes_stats.jsonl)', async () => {
    const dir = tmpDir('v20');
    await writeSynthetic(dir, 'v2.1', false);
    const infoFile = path.join(dir, 'meta/info.json');
    const info = JSON.parse(readFileSync(infoFile, 'utf8'));
    info.codebase_version = 'v2.0';
    writeFileSync(infoFile, JSON.stringify(info));
    const stats = { action: { mean: [1, 2], std: [3, 4], min: [0, 0], max: [5, 5] } };
    writeFileSync(path.join(dir, 'meta/stats.json'), JSON.stringify(stats));
    rmSync(path.join(dir, 'meta/episodes_stats.jsonl'));
    const ds = await openDataset(dir);
    expect(ds.info.version).toBe('v2.0');
    expect(ds.stats).toEqual(stats);
    expect(ds.episodes.map((e) => e.length)).toEqual(LENGTHS);
    expect((await validateDataset(dir)).problems).toEqual([]);
  });

  for (const format of ['v2.1', 'v3.0'] as const) {
    it(`${format}: a recording interrupted mid-episode reads up to the last saved episode`, async () => {
      const dir = tmpDir(`crash-${format}`);
      const w = await createDataset(dir, {
        fps: 10,
        robotType: 'test_bot',
        format,
        video: false,
        features: { state: { names: ['a', 'b', 'c'] }, action: { names: ['u', 'v'] }, cameras: CAMERAS },
      });
      const frame = (e: number, f: number) => ({
        state: stateOf(e, f),
        action: actionOf(e, f),
        images: Object.fromEntries(CAMERAS.map((c, ci) => [c.name, picture(c.height, c.width, e, f, ci)])),
        task: `task ${e}`,
      });
      for (let e = 0; e < 2; e++) {
        for (let f = 0; f < 6; f++) w.addFrame(frame(e, f));
        await w.saveEpisode();
      }
      for (let f = 0; f < 3; f++) w.addFrame(frame(2, f));
      // No saveEpisode, no finalize: the process "dies" here.
      const ds = await openDataset(dir);
      expect(ds.episodes.map((e) => e.length)).toEqual([6, 6]);
      expect([...ds.tasks.values()]).toEqual(['task 0', 'task 1']);
      expect(ds.warnings).toEqual([]);
      expect((await validateDataset(dir)).problems).toEqual([]);
      await expect(w.finalize()).rejects.toThrow(/an episode of 3 frames is still open/);
    });
  }

  it('vla data validate warns of the temporary files a killed recording left, and still exits 0', async () => {
    const dir = tmpDir('leftovers');
    const w = await createDataset(dir, {
      fps: 10,
      robotType: 'test_bot',
      format: 'v2.1',
      features: { state: { names: ['a', 'b', 'c'] }, action: { names: ['u', 'v'] }, cameras: CAMERAS },
      extraInfo: { simulation: { task: 't', scene: 's.xml', scene_sha256: 'ab' } },
    });
    const frame = (e: number, f: number) => ({
      state: stateOf(e, f),
      action: actionOf(e, f),
      images: Object.fromEntries(CAMERAS.map((c, ci) => [c.name, picture(c.height, c.width, e, f, ci)])),
      task: 'pick up the cube',
    });
    for (let f = 0; f < 4; f++) w.addFrame(frame(0, f));
    await w.saveEpisode();
    // Killed while recording episode 1: its video segments are in .tmp/; and while renaming a file into place.
    for (let f = 0; f < 3; f++) w.addFrame(frame(1, f));
    await w.drain();
    writeFileSync(path.join(dir, 'meta/episodes.jsonl.tmp-4242'), '{"episode_index"');
    const out = await runData(['validate', dir]);
    expect(out).toMatch(
      /^ {2}warning: temporary files a dataset writer left \(killed mid-way, or still writing\): \.tmp\/ \(\d+ files?, [\d.]+ (B|KiB)\), meta\/episodes\.jsonl\.tmp-4242 \(16 B\); vla sim record --resume \(with the arguments it was started with\) goes on with the recording and removes them, or delete them\nok: every invariant holds$/m,
    );
    w.discardEpisode();
  });

  it('v3.0: starts new data files past the size limit and reads episodes across them', async () => {
    const dir = tmpDir('roll');
    const w = await createDataset(dir, {
      fps: 10,
      robotType: 'test_bot',
      format: 'v3.0',
      video: false,
      dataFileMb: 1e-6,
      features: { state: { names: ['a', 'b', 'c'] }, action: { names: ['u', 'v'] }, cameras: [] },
    });
    for (const [e, len] of LENGTHS.entries()) {
      for (let f = 0; f < len; f++)
        w.addFrame({ state: stateOf(e, f), action: actionOf(e, f), images: {}, task: 't' });
      await w.saveEpisode();
    }
    await w.finalize();
    const ds = await openDataset(dir);
    expect(ds.episodes.map((e) => path.relative(dir, e.dataFile))).toEqual([
      'data/chunk-000/file-000.parquet',
      'data/chunk-000/file-001.parquet',
      'data/chunk-000/file-002.parquet',
    ]);
    for (const [e, len] of LENGTHS.entries()) {
      const d = await ds.readEpisode(e);
      expect(d.index[0]).toBe(ds.episodes[e]!.from);
      expect(Array.from(d.state!)).toEqual(
        Array.from({ length: len }, (_, f) => Array.from(stateOf(e, f))).flat(),
      );
    }
    expect((await validateDataset(dir)).problems).toEqual([]);
  });

  it("extraInfo adds keys of its own to info.json and may not replace LeRobot's", async () => {
    const opts = {
      fps: 10,
      robotType: 'r',
      format: 'v2.1' as const,
      video: false,
      features: { state: { names: ['a'] }, action: { names: ['b'] }, cameras: [] },
    };
    await expect(
      createDataset(tmpDir('extra-bad'), { ...opts, extraInfo: { fps: 30, features: {}, mine: 1 } }),
    ).rejects.toThrow(/extraInfo: fps, features are keys LeRobot's info.json defines/);
    const dir = tmpDir('extra');
    const w = await createDataset(dir, {
      ...opts,
      extraInfo: { simulation: { task: 't', scene: 's', scene_sha256: 'h' } },
    });
    w.addFrame({ state: new Float32Array([1]), action: new Float32Array([2]), images: {}, task: 'x' });
    await w.saveEpisode();
    await w.finalize();
    const ds = await openDataset(dir);
    expect(ds.info.simulation).toEqual({ task: 't', scene: 's', scene_sha256: 'h' });
    expect(ds.info.fps).toBe(10);
  });

  it('refuses a folder that already holds something, and frames of the wrong shape', async () => {
    const dir = tmpDir('exists');
    writeFileSync(path.join(dir, 'x'), '');
    await expect(
      createDataset(dir, {
        fps: 10,
        robotType: 'r',
        format: 'v2.1',
        features: { state: { names: ['a'] }, action: { names: ['b'] }, cameras: [] },
      }),
    ).rejects.toThrow(/already exists and is not empty/);
    await expect(
      createDataset(path.join(dir, 'av1'), {
        fps: 10,
        robotType: 'r',
        format: 'v3.0',
        codec: 'av1',
        features: {
          state: { names: ['a'] },
          action: { names: ['b'] },
          cameras: [{ name: 'wrist', height: 48, width: 64 }],
        },
      }),
    ).rejects.toThrow(/camera wrist: SVT-AV1 needs frames of at least 64x64, got 48x64/);
    renameSync(path.join(dir, 'x'), path.join(tmpDir('moved'), 'x'));
    const w = await createDataset(dir, {
      fps: 10,
      robotType: 'r',
      format: 'v2.1',
      features: {
        state: { names: ['a'] },
        action: { names: ['b'] },
        cameras: [{ name: 'cam', height: 4, width: 6 }],
      },
    });
    expect(() =>
      w.addFrame({ state: new Float32Array(2), action: new Float32Array(1), images: {}, task: 't' }),
    ).toThrow(/frame 0: state: expected Float32Array of 1, got Float32Array of 2/);
    expect(() =>
      w.addFrame({
        state: new Float32Array(1),
        action: new Float32Array(1),
        images: { cam: new Uint8Array(10) },
        task: 't',
      }),
    ).toThrow(/frame 0: images\.cam: expected 4x6x3 uint8 \(72 bytes\), got 10 bytes/);
  });
});

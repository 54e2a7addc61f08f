import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/config/load.js';
import { openDataset } from '../../src/data/reader.js';
import { validateDataset } from '../../src/data/validate.js';
import { runData, tmpDir, writeSynthetic } from './helpers.js';

const VLA = path.join(PACKAGE_ROOT, 'bin/vla.js');

describe('corrupt inputs give clear errors naming the file and the problem', () => {
  let good: string;
  const copy = (tag: string) => {
    const dir = tmpDir(tag);
    cpSync(good, dir, { recursive: true });
    return dir;
  };
  beforeAll(async () => {
    good = tmpDir('good');
    await writeSynthetic(good, 'v2.1', true);
  }, 60_000);

  it('a truncated parquet file', async () => {
    const dir = copy('trunc');
    const file = path.join(dir, 'data/chunk-000/episode_000001.parquet');
    truncateSync(file, Math.floor(statSync(file).size / 2));
    const ds = await openDataset(dir);
    await expect(ds.readEpisode(1)).rejects.toThrow(
      /data\/chunk-000\/episode_000001\.parquet: not a parquet file or truncated \(footer ends in .*, expected "PAR1"\)/,
    );
    const report = await validateDataset(dir);
    expect(report.problems.join('\n')).toMatch(
      /episode 1: .*episode_000001\.parquet: not a parquet file or truncated/,
    );
  });

  it('a parquet file cut inside its data pages', async () => {
    const dir = copy('pages');
    const file = path.join(dir, 'data/chunk-000/episode_000000.parquet');
    const bytes = readFileSync(file);
    // Keep the footer, zero the pages: the footer reads, the rows do not.
    bytes.fill(0, 4, Math.floor(bytes.length / 3));
    writeFileSync(file, bytes);
    const ds = await openDataset(dir);
    await expect(ds.readEpisode(0)).rejects.toThrow(
      /episode_000000\.parquet: cannot read rows 0\.\.12 \(.*truncated or corrupt\?\)/,
    );
  });

  it('a missing video file', async () => {
    const dir = copy('novideo');
    rmSync(path.join(dir, 'videos/chunk-000/observation.images.cam_high/episode_000002.mp4'));
    const ds = await openDataset(dir);
    await expect(ds.readFrames(2, 'cam_high')).rejects.toThrow(
      /videos\/chunk-000\/observation\.images\.cam_high\/episode_000002\.mp4: video file is missing \(episode 2, camera observation\.images\.cam_high\)/,
    );
    const report = await validateDataset(dir);
    expect(report.problems).toEqual([
      expect.stringMatching(
        /episode 2, camera observation\.images\.cam_high: .*episode_000002\.mp4: video file is missing/,
      ),
    ]);
  });

  it('info.json with a field of the wrong type', async () => {
    const dir = copy('badinfo');
    const file = path.join(dir, 'meta/info.json');
    const info = JSON.parse(readFileSync(file, 'utf8'));
    info.fps = 'ten';
    writeFileSync(file, JSON.stringify(info));
    await expect(openDataset(dir)).rejects.toThrow(
      /meta\/info\.json: fps: expected number, got "ten" \(string\)/,
    );
    info.fps = 10;
    info.features.action.shape = 'two';
    writeFileSync(file, JSON.stringify(info));
    await expect(openDataset(dir)).rejects.toThrow(
      /meta\/info\.json: features\.action\.shape: expected array, got "two" \(string\)/,
    );
  });

  it('a frame beyond the video’s end', async () => {
    const dir = copy('short');
    const videos = path.join(dir, 'videos/chunk-000/observation.images.cam_high');
    // Episode 1's video holds 9 frames; episode 0 has 12.
    copyFileSync(path.join(videos, 'episode_000001.mp4'), path.join(videos, 'episode_000000.mp4'));
    const ds = await openDataset(dir);
    await expect(ds.readFrames(0, 'cam_high', { frames: [11] })).rejects.toThrow(
      /episode_000000\.mp4: episode 0, camera observation\.images\.cam_high: frame 11 at timestamp 1\.1000 s is beyond the video's end \(last frame at 0\.8000 s, 9 frames\)/,
    );
    const report = await validateDataset(dir);
    expect(report.problems).toEqual([
      expect.stringMatching(
        /episode_000000\.mp4: episode 0, camera observation\.images\.cam_high: 9 video frames, the episode has 12/,
      ),
    ]);
  });

  it('vla data validate exits 0 on a good dataset and 1 with the problems listed on a bad one', async () => {
    const out = await runData(['validate', good]);
    expect(out).toMatch(/v2\.1, 3 episodes, 36 frames, 6 episode videos checked\nok: every invariant holds/);
    const dir = copy('cli');
    const file = path.join(dir, 'meta/episodes.jsonl');
    writeFileSync(file, readFileSync(file, 'utf8').replace('"length":9', '"length":8'));
    const r = spawnSync(VLA, ['data', 'validate', dir], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(
      /problem: meta\/info\.json: total_frames is 36 but the episodes' lengths sum to 35/,
    );
    expect(r.stdout).toMatch(/problem: .*episode 2, row 0: index is 21, expected 20/);
    expect(r.stderr).toMatch(/vla: error: .*problems found/);
  });
});

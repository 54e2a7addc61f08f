import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/reader.js';
import { resumeDataset } from '../../src/data/resume.js';
import { validateDataset } from '../../src/data/validate.js';
import {
  type CreateOptions,
  createDataset,
  type DatasetWriter,
  type WriteFormat,
} from '../../src/data/writer.js';
import { actionOf, CAMERAS, differingFiles, LENGTHS, picture, stateOf, taskOf, tmpDir } from './helpers.js';

const SEEDS = [10, 12, 13];

const options = (format: WriteFormat): CreateOptions => ({
  fps: 10,
  robotType: 'test_bot',
  format,
  features: { state: { names: ['a', 'b', 'c'] }, action: { names: ['u', 'v'] }, cameras: CAMERAS },
  extraInfo: { recording: { seed: 10 } },
});

async function saveEpisode(w: DatasetWriter, e: number): Promise<void> {
  for (let f = 0; f < LENGTHS[e]!; f++) {
    w.addFrame({
      state: stateOf(e, f),
      action: actionOf(e, f),
      images: Object.fromEntries(CAMERAS.map((c, ci) => [c.name, picture(c.height, c.width, e, f, ci)])),
      task: taskOf(e),
    });
  }
  await w.saveEpisode({ seed: SEEDS[e]! });
}

describe('resuming a dataset whose writer was killed', () => {
  for (const format of ['v2.1', 'v3.0'] as const) {
    it(`${format}: killed while saving an episode, it keeps the complete ones and goes on to the same files as an uninterrupted writer`, async () => {
      const full = tmpDir(`full-${format}`);
      const whole = await createDataset(full, options(format));
      for (let e = 0; e < 3; e++) await saveEpisode(whole, e);
      await whole.finalize();

      // The writer saves an episode's data, videos and other metadata before meta/info.json: a kill just
      // before that last write leaves episode 2 on disk (v3.0: appended to the shared files) while
      // info.json still counts 2 episodes, and a temporary file or two.
      const torn = tmpDir(`torn-${format}`);
      const w = await createDataset(torn, options(format));
      for (let e = 0; e < 2; e++) await saveEpisode(w, e);
      const info = readFileSync(path.join(torn, 'meta/info.json'));
      await saveEpisode(w, 2);
      writeFileSync(path.join(torn, 'meta/info.json'), info);
      writeFileSync(path.join(torn, 'meta/info.json.tmp-4242'), '{"codebase');
      mkdirSync(path.join(torn, '.tmp'), { recursive: true });
      writeFileSync(path.join(torn, '.tmp/episode-3-cam_high.mp4.tmp-4242.mp4'), 'half a video');

      const before = await validateDataset(torn);
      expect(before.warnings).toEqual([
        'temporary files a dataset writer left (killed mid-way, or still writing): .tmp/ (1 file, 12 B), meta/info.json.tmp-4242 (10 B); delete them once no writer runs',
      ]);

      const resumed = await resumeDataset(torn, options(format));
      expect(resumed.kept).toEqual([
        { length: LENGTHS[0], seed: 10 },
        { length: LENGTHS[1], seed: 12 },
      ]);
      const cut = '(rows or frames past the last complete episode)';
      expect(resumed.removed).toEqual(
        format === 'v2.1'
          ? [
              '.tmp/',
              'meta/info.json.tmp-4242',
              'data/chunk-000/episode_000002.parquet',
              'videos/chunk-000/observation.images.cam_high/episode_000002.mp4',
              'videos/chunk-000/observation.images.cam_left_wrist/episode_000002.mp4',
            ]
          : [
              '.tmp/',
              'meta/info.json.tmp-4242',
              `videos/observation.images.cam_high/chunk-000/file-000.mp4 ${cut}`,
              `videos/observation.images.cam_left_wrist/chunk-000/file-000.mp4 ${cut}`,
              `data/chunk-000/file-000.parquet ${cut}`,
            ],
      );
      expect(resumed.writer.episodes).toBe(2);
      await saveEpisode(resumed.writer, 2);
      await resumed.writer.finalize();

      // Byte for byte, v3.0's videos too: cut back by stream copy, then appended to as before.
      expect(differingFiles(full, torn)).toEqual([]);
      const after = await validateDataset(torn);
      expect([after.problems, after.warnings]).toEqual([[], []]);
    }, 60_000);
  }

  it('refuses other settings than the dataset was started with, naming the field and both values', async () => {
    const dir = tmpDir('settings');
    const w = await createDataset(dir, options('v2.1'));
    await saveEpisode(w, 0);
    const other = (patch: Partial<CreateOptions>) => resumeDataset(dir, { ...options('v2.1'), ...patch });
    const tail = 'go on with the settings it was started with, or write a new folder';
    const info = path.join(dir, 'meta/info.json');
    await expect(other({ fps: 20 })).rejects.toThrow(
      `${info}: fps: expected 10, as the dataset was started, got 20: ${tail}`,
    );
    await expect(other({ format: 'v3.0' })).rejects.toThrow(
      `${info}: codebase_version: expected "v2.1", as the dataset was started, got "v3.0"`,
    );
    await expect(other({ extraInfo: { recording: { seed: 11 } } })).rejects.toThrow(
      `${info}: recording.seed: expected 10, as the dataset was started, got 11`,
    );
    await expect(
      other({
        features: { ...options('v2.1').features, cameras: [CAMERAS[0]!, { ...CAMERAS[1]!, width: 64 }] },
      }),
    ).rejects.toThrow(
      `${info}: features.observation.images.cam_left_wrist.shape: expected [32,32,3], as the dataset was started, got [32,64,3]`,
    );
    await expect(other({ extraInfo: {} })).rejects.toThrow(
      `${info}: recording: expected {"seed":10}, as the dataset was started, got nothing (missing)`,
    );
    // Nothing was touched by the refusals: the same settings still go on.
    const resumed = await resumeDataset(dir, options('v2.1'));
    expect(resumed.kept).toEqual([{ length: LENGTHS[0], seed: 10 }]);
  });

  it('starts over in a folder killed before its first episode, and refuses a folder it did not write', async () => {
    const early = tmpDir('early');
    mkdirSync(path.join(early, '.tmp'));
    writeFileSync(path.join(early, '.tmp/episode-0-cam_high.mp4.tmp-4242.mp4'), 'x');
    const fresh = await resumeDataset(early, options('v2.1'));
    expect([fresh.kept, fresh.removed]).toEqual([[], ['.tmp/']]);
    await saveEpisode(fresh.writer, 0);
    await fresh.writer.finalize();
    expect((await openDataset(early)).episodes.map((e) => [e.length, e.seed])).toEqual([[LENGTHS[0], 10]]);

    const foreign = tmpDir('foreign');
    cpSync(early, foreign, { recursive: true });
    writeFileSync(path.join(foreign, 'notes.txt'), 'mine');
    await expect(resumeDataset(foreign, options('v2.1'))).rejects.toThrow(
      `${foreign}: holds notes.txt, which a dataset writer does not write: expected a dataset folder a writer left unfinished`,
    );
    expect(existsSync(path.join(foreign, 'notes.txt'))).toBe(true);
  });
});

import { execFile } from 'node:child_process';
import { symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import h5wasm from 'h5wasm/node';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { runTool } from '../../src/data/ffmpeg.js';
import { type LeRobotDataset, openDataset } from '../../src/data/reader.js';
import { validateDataset } from '../../src/data/validate.js';
import { probeVideo } from '../../src/data/video.js';
import { tmpDir, writeAlohaEpisode } from './helpers.js';

const run = promisify(execFile);
const VLA = path.resolve(import.meta.dirname, '../../bin/vla.js');
const shipped = (() => {
  try {
    createRequire(import.meta.url).resolve('@ffmpeg-installer/ffmpeg');
    return true;
  } catch {
    return false;
  }
})();

/** The mp4 files that hold an episode's videos: v3.0 appends the next episode into the same ones. */
const videoFiles = (ds: LeRobotDataset, episode: number) =>
  Object.values(ds.episodes[episode]!.videos).map((v) => v.file);

/**
 * Every ffmpeg/ffprobe run goes through one lookup (data/video.ts): these runs of the CLI see a PATH
 * holding node alone, so a call that ran a bare `ffmpeg` fails with ENOENT instead of quietly using
 * the system's. The two tests run side by side: most of their time is the CLI starting.
 */
describe.runIf(shipped).concurrent('ffmpeg from npm when the system has none', () => {
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    const bin = tmpDir('nopath');
    symlinkSync(process.execPath, path.join(bin, 'node'));
    // Without the variables that override the lookup, as a user who never heard of them.
    env = { ...process.env, PATH: bin };
    delete env.VLA_FFMPEG;
    delete env.VLA_FFPROBE;
    await h5wasm.ready;
  });

  it('records a v3.0 dataset (the second episode appended into the shared mp4s) and reads every frame back', async () => {
    const out = path.join(tmpDir('fb'), 'ds');
    const record = ['sim', 'record', '--task', 'pick_place', '--episodes', '2', '--format', 'v3.0'];
    // Small frames: the ffmpeg runs are what is tested, not the renderer.
    await run(process.execPath, [VLA, ...record, '--size', '64x48', '--out', out], { env });
    const ds = await openDataset(out);
    expect(videoFiles(ds, 1)).toEqual(videoFiles(ds, 0));
    const { stdout } = await run(process.execPath, [VLA, 'data', 'validate', out], { env });
    expect(stdout).toMatch(/2 episodes, 200 frames, 4 episode videos checked/);
    expect(stdout).toMatch(/ok: every invariant holds/);
  }, 60_000);

  it('imports JPEG-compressed ALOHA HDF5 episodes into one v3.0 video', async () => {
    const src = tmpDir('fbh5');
    const episodes = [
      writeAlohaEpisode(path.join(src, 'episode_0.hdf5'), 4, 0, true),
      writeAlohaEpisode(path.join(src, 'episode_1.hdf5'), 3, 1, true),
    ];
    const out = path.join(tmpDir('fbimp'), 'aloha');
    const args = ['data', 'import', src, '--out', out, '--task', 't', '--format', 'v3.0'];
    await run(process.execPath, [VLA, ...args], { env });
    expect((await validateDataset(out)).problems).toEqual([]);
    const ds = await openDataset(out);
    expect(videoFiles(ds, 1)).toEqual(videoFiles(ds, 0));
    for (const [e, want] of episodes.entries()) {
      const got = await ds.readFrames(e, 'cam_high');
      expect([got.count, got.height, got.width]).toEqual([want.frames.length, 24, 32]);
      // JPEG then h264: close to the original, not equal.
      let err = 0;
      want.frames.forEach((f, t) => {
        for (let i = 0; i < f.length; i++) err += Math.abs(got.data[t * f.length + i]! - f[i]!);
      });
      expect(err / (want.frames.length * 24 * 32 * 3)).toBeLessThan(8);
    }
  }, 60_000);
});

describe('a failed ffmpeg/ffprobe run says what was run and why it failed', () => {
  it('names the command, its exit code and the tail of its stderr', async () => {
    const file = path.join(tmpDir('badmp4'), 'bad.mp4');
    writeFileSync(file, 'not a video');
    await expect(probeVideo(file)).rejects.toThrow(
      /bad\.mp4: unreadable video: \S*ffprobe -v error .*bad\.mp4 exited with code 1: .*Invalid data found/,
    );
    const missing = path.join(path.dirname(file), 'missing.mp4');
    await expect(
      runTool('ffmpeg', ['-v', 'error', '-i', missing, '-f', 'null', '-'], 'the test'),
    ).rejects.toThrow(
      /the test: \S*ffmpeg -v error -i \S*missing\.mp4 -f null - exited with code 1: .*No such file/,
    );
  });

  it('names a binary that cannot start and the ways to install one', async () => {
    const before = process.env.VLA_FFPROBE;
    process.env.VLA_FFPROBE = '/nonexistent/ffprobe';
    // A fresh copy of the module: the lookup is made once per process.
    vi.resetModules();
    try {
      const fresh = await import('../../src/data/ffmpeg.js');
      await expect(fresh.runTool('ffprobe', ['-version'], 'the test')).rejects.toThrow(
        /the test: cannot run \/nonexistent\/ffprobe -version \(spawn \/nonexistent\/ffprobe ENOENT\): install ffmpeg .* or set VLA_FFPROBE/,
      );
    } finally {
      if (before === undefined) delete process.env.VLA_FFPROBE;
      else process.env.VLA_FFPROBE = before;
    }
  });
});

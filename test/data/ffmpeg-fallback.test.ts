import { execFile } from 'node:child_process';
import { mkdtempSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

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

describe.runIf(shipped)('ffmpeg from npm when the system has none', () => {
  it('records a dataset with videos and reads every frame back with the shipped ffmpeg/ffprobe', async () => {
    // A PATH holding node alone: no system ffmpeg or ffprobe to find.
    const bin = mkdtempSync(path.join(os.tmpdir(), 'vla-nopath-'));
    symlinkSync(process.execPath, path.join(bin, 'node'));
    const out = path.join(mkdtempSync(path.join(os.tmpdir(), 'vla-fb-')), 'ds');
    const env = { ...process.env, PATH: bin, VLA_FFMPEG: '', VLA_FFPROBE: '' };
    await run(
      process.execPath,
      [VLA, 'sim', 'record', '--task', 'pick_place', '--episodes', '1', '--out', out],
      {
        env,
      },
    );
    const { stdout } = await run(process.execPath, [VLA, 'data', 'validate', out], { env });
    expect(stdout).toMatch(/2 episode videos checked/);
    expect(stdout).toMatch(/ok: every invariant holds/);
  }, 90_000);
});

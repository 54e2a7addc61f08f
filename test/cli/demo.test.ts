import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loadBlas } from '../../src/backend/native/blas.js';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const VLA = path.join(ROOT, 'bin/vla.js');
const out = mkdtempSync(path.join(os.tmpdir(), 'vla-demo-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe.runIf(process.env.VLA_SLOW)('vla demo (slow)', () => {
  it('serves every shipped checkpoint, rolls it out and prints a success table, a video per checkpoint', async () => {
    const { stdout, stderr } = await run(process.execPath, [VLA, 'demo', '--episodes', '1', '--out', out], {
      cwd: ROOT,
      encoding: 'utf8',
      maxBuffer: 64 * 2 ** 20,
    });
    const shipped = readdirSync(path.join(ROOT, 'checkpoints/base'), { withFileTypes: true })
      .filter(
        (e) => e.isDirectory() && existsSync(path.join(ROOT, 'checkpoints/base', e.name, 'config.yaml')),
      )
      .map((e) => e.name);
    expect(shipped.length).toBeGreaterThan(0);
    expect(stdout).toMatch(/task\s+checkpoint\s+noise\s+episodes\s+success/);
    for (const name of shipped) {
      // Each checkpoint's videos in a folder of its own (two checkpoints of one task must not collide),
      // one per task it rolls out (a generalist base several), each named by its task.
      const videos = readdirSync(path.join(out, name)).filter((f) => f.endsWith('.mp4'));
      expect(videos.length, name).toBeGreaterThan(0);
      expect(new Set(videos.map((v) => v.replace(/_episode_\d+\.mp4$/, ''))).size, name).toBe(videos.length);
    }
    expect(stdout).toMatch(/demo finished in \d+ s/);
    // The shipped checkpoints were trained on demonstrations of the scenes as they are now.
    expect(`${stdout}${stderr}`).not.toMatch(/warning: checkpoint/);
    // The policy server's workers run the kernel pack wherever this machine has it.
    if (!('error' in loadBlas())) expect(`${stdout}${stderr}`).not.toContain('blas off');
  }, 300_000);
});

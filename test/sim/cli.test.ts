import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { type ServeProcess, startServe, stopServe } from '../serving/serve-process.js';

const run = promisify(execFile);
const VLA = path.resolve(import.meta.dirname, '../../bin/vla.js');
const vla = (...args: string[]) => run(process.execPath, [VLA, ...args], { encoding: 'utf8' });

describe.runIf(process.env.VLA_SLOW)('vla sim end to end (slow, real processes)', () => {
  it('record -> data validate -> serve the replay -> eval reports 100% success with videos', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vla-sim-cli-'));
    const ds = path.join(dir, 'ds');
    const out = path.join(dir, 'eval');
    let server: ServeProcess | null = null;
    try {
      const rec = await vla(
        'sim',
        'record',
        '--task',
        'pick_place',
        '--episodes',
        '2',
        '--out',
        ds,
        '--seed',
        '7',
      );
      expect(rec.stdout).toMatch(/recorded 2 episodes \(200 frames\) of pick_place/);
      const valid = await vla('data', 'validate', ds);
      expect(valid.stdout).toMatch(/2 episodes, 200 frames/);

      server = await startServe(['--robot', 'single_arm_sim', '--policy', `replay:${ds}`]);
      const ev = await vla(
        'sim',
        'eval',
        '--task',
        'pick_place',
        '--url',
        server.url,
        '--episodes',
        '2',
        '--seed',
        '7',
        '--videos',
        '1',
        '--out',
        out,
        '--json',
      );
      const info = JSON.parse(ev.stdout);
      expect(info.per_task[0].aggregated.pc_success).toBe(100);
      expect(info.per_task[0].per_episode.map((e: { seed: number }) => e.seed)).toEqual([7, 8]);
      expect(JSON.parse(readFileSync(path.join(out, 'eval_info.json'), 'utf8'))).toEqual(info);
      expect(existsSync(path.join(out, 'videos', 'pick_place_episode_000.mp4'))).toBe(true);

      const png = path.join(dir, 'f.png');
      await vla('sim', 'frame', '--task', 'aloha_insertion', '--out', png, '--size', '64x48');
      expect(readFileSync(png).subarray(1, 4).toString()).toBe('PNG');
    } finally {
      if (server) await stopServe(server);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});

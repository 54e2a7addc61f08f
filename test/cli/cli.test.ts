import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const VLA = path.resolve(import.meta.dirname, '../../bin/vla.js');

async function vla(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [VLA, ...args], { encoding: 'utf8' });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('vla CLI (a real process)', () => {
  it('--help lists every command group', async () => {
    const { code, stdout } = await vla('--help');
    expect(code).toBe(0);
    for (const group of ['config', 'data', 'train', 'jobs', 'serve', 'client', 'sim']) {
      expect(stdout).toMatch(new RegExp(`^  ${group}\\b.*\\S`, 'm'));
    }
  });

  it('config show prints the resolved YAML with overrides', async () => {
    const { code, stdout } = await vla('config', 'show', 'pi0_aloha', '--set', 'train.batch_size=8');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^ {2}batch_size: 8$/m);
    expect(stdout).toMatch(/^name: pi0_aloha$/m);
  });

  it('an error is one clear line, no stack trace, non-zero exit; --verbose adds the stack', async () => {
    const bad = await vla('config', 'show', 'pi0_aloha', '--set', 'train.steps=-3');
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe('vla: error: --set train.steps: expected a value > 0, got -3 (number)');
    const verbose = await vla('--verbose', 'config', 'show', 'pi0_aloha', '--set', 'train.steps=-3');
    expect(verbose.stderr).toMatch(/\n\s+at /);
  });

  it('--noise-scale is checked before anything starts, and only a served checkpoint takes it', async () => {
    const neg = await vla('serve', '--robot', 'droid', '--policy', 'zeros', '--noise-scale', '-1');
    expect(neg.code).not.toBe(0);
    expect(neg.stderr.trim()).toBe('vla: error: --noise-scale: expected a number >= 0, got "-1"');
    const big = await vla('demo', '--noise-scale', '9');
    expect(big.stderr.trim()).toBe('vla: error: --noise-scale: expected a number from 0 to 4, got "9"');
    const remote = await vla(
      'sim',
      'eval',
      '--task',
      'pick_place',
      '--url',
      'ws://127.0.0.1:9',
      '--noise-scale',
      '0',
    );
    expect(remote.stderr.trim()).toBe(
      'vla: error: --noise-scale: only with --checkpoint (a running server was started with its own)',
    );
  });

  it('sim eval checks its numbers before it serves a checkpoint', async () => {
    const r = await vla(
      'sim',
      'eval',
      '--task',
      'pick_place',
      '--checkpoint',
      'no/such/checkpoint',
      '--max-steps',
      '0',
    );
    expect(r.stderr.trim()).toBe('vla: error: --max-steps: expected an integer >= 1, got "0"');
  });

  it("data stats leaves a config alone that normalizes with its base's norm stats", async () => {
    const r = await vla(
      'data',
      'stats',
      'pi0_sim_pick_place',
      '--set',
      'data.assets_dir=checkpoints/base/pick_place/assets',
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      'vla: error: pi0_sim_pick_place normalizes with the norm stats in data.assets_dir checkpoints/base/pick_place/assets',
    );
  });

  it('doctor prints the backend line and what it fell back from', async () => {
    const { code, stderr, stdout } = await vla('doctor', '--size', '64');
    expect(code).toBe(0);
    expect(stderr).toMatch(/^backend: \S+ \(.*threads?\)( · kernels .*)? · tfjs 4\.22\.0/m);
    expect(stdout).toMatch(/matmul 64x64 float32 on \S+: [\d.]+ GFLOP\/s/);
    expect(stdout).toMatch(
      /native kernel pack: (BLAS \S+( \(\w+ kernels\))? on \d+ thread\(s\); fused element-wise kernels (on|off \(.+\))|off \(.+\))/,
    );
  });

  it('an unavailable --backend is a clear error', async () => {
    const { code, stderr } = await vla('--backend', 'node', 'doctor');
    if (code === 0) return; // a machine where tfjs-node installed
    expect(stderr).toMatch(/vla: error: backend node is not available .*installed: .*wasm/);
  });
});

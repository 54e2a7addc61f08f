/**
 * `vla dashboard` as a real process: the address it prints carries the token, a request without it is
 * refused, a non-loopback address is warned about, a bad flag is a clear error, and SIGTERM closes it.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const VLA = path.resolve(import.meta.dirname, '../../bin/vla.js');
const run = promisify(execFile);
const dir = mkdtempSync(path.join(os.tmpdir(), 'vla-dashboard-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Starts `vla dashboard ARGS` in the empty workspace; resolves with the address it prints. */
async function start(args: string[]): Promise<{ child: ChildProcess; url: string; out: () => string }> {
  const child = spawn(process.execPath, [VLA, 'dashboard', '--port', '0', ...args], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /^open (http:\/\/\S+)$/m.exec(out);
      if (m) resolve(m[1]!);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`vla dashboard exited with ${code}: ${out}`)));
  });
  return { child, url, out: () => out };
}

async function stop(child: ChildProcess): Promise<number | null> {
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  child.kill('SIGTERM');
  return exited;
}

describe('vla dashboard (a real process)', () => {
  it('prints its address with a random token, refuses requests without it, and closes on SIGTERM', async () => {
    const { child, url, out } = await start([]);
    try {
      expect(out()).toMatch(/^vla dashboard: 0 jobs in \.vla\/jobs\.db$/m);
      const u = new URL(url);
      expect(u.hostname).toBe('127.0.0.1');
      expect(u.searchParams.get('token')).toMatch(/^[\w-]{32}$/);
      expect(out()).not.toMatch(/warning/);
      const refused = await fetch(`${u.origin}/api/jobs`);
      expect(refused.status).toBe(401);
      expect(((await refused.json()) as { error: string }).error).toMatch(/^missing token/);
      const ok = await fetch(`${u.origin}/api/jobs`, {
        headers: { 'x-vla-token': u.searchParams.get('token')! },
      });
      expect(ok.status).toBe(200);
      expect(await ok.json()).toEqual([]);
    } finally {
      expect(await stop(child)).toBe(0);
    }
  });

  it('warns when it listens beyond this machine, and takes a token given to it', async () => {
    const token = 'a-token-of-my-own-choosing';
    const { child, url, out } = await start(['--host', '0.0.0.0', '--token', token]);
    try {
      expect(out()).toMatch(
        /^warning: the dashboard listens on 0\.0\.0\.0: anyone who can reach this port and learns the token can stop and resume jobs/m,
      );
      expect(new URL(url).searchParams.get('token')).toBe(token);
    } finally {
      await stop(child);
    }
  });

  it('refuses a short token and a bad server URL, naming the flag', async () => {
    const short = await run(process.execPath, [VLA, 'dashboard', '--token', 'abc'], { cwd: dir }).catch(
      (e) => e,
    );
    expect(short.stderr.trim()).toBe(
      'vla: error: --token: expected at least 16 letters, digits or -._~, got 3 characters',
    );
    const bad = await run(process.execPath, [VLA, 'dashboard', '--server', 'ftp://x'], { cwd: dir }).catch(
      (e) => e,
    );
    expect(bad.stderr.trim()).toBe(
      'vla: error: --server ftp://x: server URL: expected ws:// or http:// (what vla serve prints), got "ftp:" in "ftp://x"',
    );
  });
});

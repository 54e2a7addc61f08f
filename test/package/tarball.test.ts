/**
 * Both packages as a user gets them: `npm pack`, installed from the tarballs into an empty folder (the
 * registry or npm's cache for the dependencies), then `vla --help`, `vla demo` on the shipped checkpoints
 * and the client README's robot program against a `vla serve` of that install. Slow (a full build and an
 * install): VLA_SLOW=1.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const npm = (args: string[], cwd: string) =>
  execFileSync('npm', [...args, '--no-audit', '--no-fund'], { cwd, encoding: 'utf8', stdio: 'pipe' });

/** Folder size in bytes, as du counts it. */
const duBytes = (dir: string) =>
  Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0]);

/** The README's example, its URL pointed at the server under test. */
function readmeExample(url: string): string {
  const readme = readFileSync(path.join(ROOT, 'packages/client/README.md'), 'utf8');
  const code = /```ts\n([\s\S]*?)```/.exec(readme)![1]!;
  return code.replace("'ws://127.0.0.1:8000'", `'${url}'`);
}

describe.runIf(process.env.VLA_SLOW)('the packages installed from their tarballs', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vla-tarball-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let clientTgz = '';
  let mainTgz = '';

  it('packs both, without tests or datasets, the checkpoints inside', () => {
    clientTgz = path.join(
      dir,
      npm(['pack', '--pack-destination', dir], path.join(ROOT, 'packages/client')).trim().split('\n').pop()!,
    );
    mainTgz = path.join(dir, npm(['pack', '--pack-destination', dir], ROOT).trim().split('\n').pop()!);
    const files = execFileSync('tar', ['tzf', mainTgz], { encoding: 'utf8' }).split('\n');
    expect(files.some((f) => f.startsWith('package/test/') || f.startsWith('package/datasets/'))).toBe(false);
    expect(files).toContain('package/dist/api/index.d.ts');
    expect(files).toContain('package/checkpoints/base/pick_place/config.yaml');
  }, 300_000);

  it('the client with its dependencies installs in at most 3 MB', () => {
    const app = path.join(dir, 'client-only');
    mkdirSync(app);
    writeFileSync(path.join(app, 'package.json'), '{"name":"robot","private":true,"type":"module"}');
    npm(['install', clientTgz], app);
    expect(duBytes(path.join(app, 'node_modules'))).toBeLessThanOrEqual(3 * 1024 * 1024);
  }, 300_000);

  it('vla --help, vla demo and the README robot program against vla serve, from the install', async () => {
    const app = path.join(dir, 'app');
    mkdirSync(app);
    writeFileSync(path.join(app, 'package.json'), '{"name":"app","private":true,"type":"module"}');
    npm(['install', clientTgz, mainTgz], app);
    const vla = (args: string[]) => execFileSync('npx', ['vla', ...args], { cwd: app, encoding: 'utf8' });
    expect(vla(['--help'])).toContain('Usage: vla');
    expect(vla(['demo', '--episodes', '2'])).toMatch(/success/i);

    const server: ChildProcess = spawn(
      'npx',
      ['vla', 'serve', '--robot', 'droid', '--policy', 'zeros', '--port', '0'],
      {
        cwd: app,
        stdio: ['ignore', 'pipe', 'inherit'],
        detached: true,
      },
    );
    try {
      const url = await new Promise<string>((resolve, reject) => {
        server.stdout!.on('data', (d: Buffer) => {
          const m = /serving .* on (ws:\/\/\S+)/.exec(d.toString());
          if (m) resolve(m[1]!);
        });
        server.once('exit', (code) => reject(new Error(`vla serve exited with ${code}`)));
      });
      writeFileSync(path.join(app, 'robot.mjs'), readmeExample(url));
      const out = execFileSync(process.execPath, ['robot.mjs'], { cwd: app, encoding: 'utf8' });
      expect(
        out
          .trim()
          .split('\n')
          .filter((l) => /^\d+ /.test(l)),
      ).toHaveLength(30);
    } finally {
      process.kill(-server.pid!, 'SIGINT');
    }
  }, 600_000);
});

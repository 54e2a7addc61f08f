// A workspace for end-to-end tests: a temporary folder with one config, and `vla` run there as a real process.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const VLA = path.resolve(import.meta.dirname, '../../bin/vla.js');

export function workspace(
  prefix: string,
  config: { name: string; lines: string[] },
): { ws: string; vla: (...args: string[]) => Promise<{ stdout: string; stderr: string }> } {
  const ws = mkdtempSync(path.join(os.tmpdir(), prefix));
  mkdirSync(path.join(ws, 'configs'));
  writeFileSync(path.join(ws, 'configs', `${config.name}.yaml`), config.lines.join('\n'));
  const vla = (...args: string[]) => run(process.execPath, [VLA, ...args], { cwd: ws, encoding: 'utf8' });
  return { ws, vla };
}

/**
 * `npm run bench -- cli-start`: how long a `vla` command takes from the shell's point of view, the
 * compiled CLI (bin/vla.js: dist/, each command loading only what it runs) beside the TypeScript
 * same sources run through tsx, as bin/vla.js ran them before (issue 30). Medians of 5 wall times per command,
 * in a scratch folder (an empty job registry) and on a two-episode dataset recorded here first.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { table } from '../src/cli/output.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const COMPILED = [path.join(ROOT, 'bin', 'vla.js')];
const SOURCE = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src', 'cli', 'main.ts')];
const RUNS = 5;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function seconds(args: string[], cwd: string): number {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    execFileSync(process.execPath, args, { cwd, stdio: 'ignore' });
    times.push((performance.now() - t0) / 1000);
  }
  return median(times);
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vla-cli-start-'));
  try {
    const dataset = path.join(dir, 'two_episodes');
    execFileSync(
      process.execPath,
      [...COMPILED, 'sim', 'record', '--task', 'pick_place', '--episodes', '2', '--out', dataset],
      { cwd: dir, stdio: 'ignore' },
    );
    const node = seconds(['-e', ''], dir);
    const commands: Array<[string, string[], string]> = [
      ['vla --help', ['--help'], '≤ 0.2 s'],
      ['vla config list', ['config', 'list'], ''],
      ['vla jobs list', ['jobs', 'list'], '≤ 0.3 s'],
      ['vla data info (2 episodes)', ['data', 'info', dataset], '≤ 0.5 s'],
      ['vla sim tasks', ['sim', 'tasks'], ''],
    ];
    const rows = commands.map(([name, args, target]) => [
      name,
      `${seconds([...SOURCE, ...args], dir).toFixed(3)} s`,
      `${seconds([...COMPILED, ...args], dir).toFixed(3)} s`,
      target,
    ]);
    console.log(`node -e '' starts in ${node.toFixed(3)} s; medians of ${RUNS}\n`);
    console.log(table(['command', 'same source through tsx', 'compiled (bin/vla.js)', 'target'], rows));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

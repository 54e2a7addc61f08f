/**
 * Soak (issue 28): 16 robots for 10 minutes (`npm run bench -- soak --minutes=N` for another length)
 * against `vla serve --checkpoint checkpoints/base/transfer_cube`, with the hostile catalogue running
 * in a loop beside them. Prints each minute's replies/s, round trip p50/p99, the robots' errors and
 * the server's resident memory, then the memory at start, minute 1 and the end.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { table } from '../src/cli/output.js';
import { percentile } from '../src/client/load-test.js';
import { loadRobot } from '../src/config/load.js';
import { catalogue, type Target } from '../test/serving/hostile-catalogue.js';
import { startServe, stopServe } from '../test/serving/serve-process.js';
import { memoryMb, Robots } from './robots.js';

const KEY = 'soak-key';
const ROBOTS = 16;
const CHECKPOINT = 'checkpoints/base/transfer_cube';

function minutesOption(): number {
  const arg = process.argv.find((a) => a.startsWith('--minutes='));
  const minutes = arg ? Number(arg.slice('--minutes='.length)) : 10;
  if (!(minutes > 0)) throw new Error(`--minutes: expected a positive number, got "${arg}"`);
  return minutes;
}

export async function run(): Promise<void> {
  const minutes = minutesOption();
  const dir = mkdtempSync(path.join(tmpdir(), 'vla-bench-soak-'));
  writeFileSync(path.join(dir, 'key'), KEY);
  const server = await startServe(['--checkpoint', CHECKPOINT, '--api-key-file', path.join(dir, 'key')]);
  const pid = server.child.pid!;
  const start = memoryMb(pid);
  const target: Target = { port: server.port, apiKey: KEY, robot: loadRobot('aloha_sim') };
  const robots = new Robots({ url: server.url, robot: 'aloha_sim', n: ROBOTS, pauseMs: 20, apiKey: KEY });

  let abusing = true;
  let abuses = 0;
  const mismatches = new Map<string, string>();
  const abuse = (async () => {
    const cases = catalogue();
    for (let i = 0; abusing && server.child.exitCode === null; i++) {
      const c = cases[i % cases.length]!;
      const outcome = await c.run(target);
      abuses++;
      if (!c.expect.test(outcome)) mismatches.set(c.name, outcome);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();

  const rows: string[][] = [];
  const memory: number[] = [];
  let totalReplies = 0;
  let totalErrors = 0;
  let nonFinite = 0;
  const t0 = performance.now();
  for (let m = 1; m <= Math.ceil(minutes); m++) {
    const until = t0 + Math.min(m, minutes) * 60_000;
    await new Promise((r) => setTimeout(r, Math.max(0, until - performance.now())));
    const s = m === Math.ceil(minutes) ? await robots.stop() : await robots.collect();
    const mem = server.child.exitCode === null ? memoryMb(pid) : { rss: Number.NaN, peak: Number.NaN };
    memory.push(mem.rss);
    const sorted = [...s.latencies].sort((a, b) => a - b);
    const seconds = (Math.min(m, minutes) - (m - 1)) * 60;
    totalReplies += sorted.length;
    totalErrors += s.errors.length;
    nonFinite += s.nonFinite;
    rows.push([
      String(m),
      (sorted.length / seconds).toFixed(1),
      percentile(sorted, 50).toFixed(1),
      percentile(sorted, 99).toFixed(1),
      String(s.errors.length),
      String(abuses),
      `${mem.rss.toFixed(0)} MB`,
    ]);
    console.log(rows.at(-1)!.join('  '));
    for (const e of s.errors.slice(0, 3)) console.log(`  robot error: ${e}`);
  }
  abusing = false;
  await abuse;
  const crashed = server.child.exitCode !== null;
  const end = memoryMb(pid);
  await stopServe(server);
  console.log(
    table(
      ['minute', 'replies/s', 'p50 ms', 'p99 ms', 'robot errors', 'hostile cases so far', 'server RSS'],
      rows,
    ),
  );
  const m1 = memory[0]!;
  const last = memory.at(-1)!;
  console.log(
    table(
      ['figure', 'value', 'target'],
      [
        ['robots', `${ROBOTS} (aloha_sim, 20 ms between requests), ${CHECKPOINT}`, ''],
        ['replies', `${totalReplies} in ${minutes} min`, ''],
        ['errors for well-behaved robots', String(totalErrors), '0'],
        ['non-finite actions', String(nonFinite), '0'],
        ['hostile cases run', `${abuses}; outcomes unlike the catalogue's: ${mismatches.size}`, ''],
        ['server', crashed ? 'CRASHED' : 'alive throughout', 'alive'],
        ['RSS at start', `${start.rss.toFixed(0)} MB`, ''],
        ['RSS at minute 1', `${m1.toFixed(0)} MB`, ''],
        [
          'RSS at the end',
          `${last.toFixed(0)} MB (${(((last - m1) / m1) * 100).toFixed(1)}% of minute 1)`,
          'within 10%',
        ],
        ['peak RSS', `${end.peak.toFixed(0)} MB`, ''],
      ],
    ),
  );
  for (const [name, outcome] of mismatches) console.log(`unlike the catalogue: ${name}: ${outcome}`);
}

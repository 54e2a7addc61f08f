/**
 * The policy server under abuse (issue 28), against a `vla serve --policy zeros` process:
 * - peak memory while 63 connections each send a 63 MB message (refused from the frame header), and
 *   while 63 send 15 MB messages under the 16 MB limit, and what stays resident after;
 * - a steady robot's round trips (its own thread) while the hostile catalogue runs twice, with the
 *   outcomes that differed from the catalogue's expectations, crashes and non-finite actions.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { table } from '../src/cli/output.js';
import { percentile } from '../src/client/load-test.js';
import { loadRobot } from '../src/config/load.js';
import { catalogue, type Target } from '../test/serving/hostile-catalogue.js';
import { startServe, stopServe } from '../test/serving/serve-process.js';
import { memoryMb, Robots } from './robots.js';

const KEY = 'bench-key';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Upgrade, then stream one binary frame of `bytes` (announced in its header) until done or cut off. */
async function sendLarge(port: number, bytes: number): Promise<void> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await new Promise<void>((r) => socket.once('connect', () => r()));
  socket.write(
    `GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${Buffer.alloc(16, 7).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Api-Key ${KEY}\r\n\r\n`,
  );
  await new Promise<void>((r) => socket.once('data', () => r()));
  const header = Buffer.alloc(14);
  header[0] = 0x82;
  header[1] = 0x80 | 127;
  header.writeBigUInt64BE(BigInt(bytes), 2);
  let closed = false;
  socket.once('close', () => {
    closed = true;
  });
  await new Promise<void>((r) => socket.write(header, () => r()));
  const chunk = Buffer.alloc(1 << 20, 0x90);
  for (let sent = 0; sent < bytes && !closed; sent += chunk.length) {
    const part = chunk.subarray(0, Math.min(chunk.length, bytes - sent));
    await new Promise<void>((r) => socket.write(part, () => r()));
  }
  // Wait for the server's answer (a reply, an error and a close) or give up.
  await Promise.race([new Promise((r) => socket.once('close', r)), sleep(5000)]);
  socket.destroy();
}

async function floodPeak(sizeMb: number, maxMessageMb: number, keyFile: string): Promise<string[]> {
  const server = await startServe([
    '--robot',
    'aloha',
    '--policy',
    'zeros',
    '--api-key-file',
    keyFile,
    '--max-message-mb',
    String(maxMessageMb),
    '--max-connections-per-address',
    '64',
  ]);
  await sleep(1000);
  const idle = memoryMb(server.child.pid!);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 63 }, () => sendLarge(server.port, sizeMb << 20)));
  const wall = performance.now() - t0;
  const during = memoryMb(server.child.pid!);
  await sleep(5000);
  const after = memoryMb(server.child.pid!);
  await stopServe(server);
  return [
    `63 × ${sizeMb} MB messages (limit ${maxMessageMb} MB)`,
    `${idle.rss.toFixed(0)} MB`,
    `+${(during.peak - idle.rss).toFixed(0)} MB`,
    `+${(after.rss - idle.rss).toFixed(0)} MB`,
    `${(wall / 1000).toFixed(1)} s`,
    sizeMb > maxMessageMb ? '≤ +500 MB' : '',
  ];
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vla-bench-hostile-'));
  const keyFile = path.join(dir, 'key');
  writeFileSync(keyFile, KEY);

  const memRows = [await floodPeak(63, 16, keyFile), await floodPeak(15, 16, keyFile)];
  console.log(
    table(['attempt', 'idle RSS', 'peak above idle', 'RSS above idle 5 s after', 'wall', 'target'], memRows),
  );

  const server = await startServe(['--robot', 'aloha', '--policy', 'zeros', '--api-key-file', keyFile]);
  const target: Target = { port: server.port, apiKey: KEY, robot: loadRobot('aloha') };
  const robots = new Robots({ url: server.url, robot: 'aloha', n: 1, pauseMs: 5, apiKey: KEY });
  await sleep(1000);
  await robots.collect();
  const quiet = await robots.collect().then(async () => {
    await sleep(3000);
    return robots.collect();
  });
  const mismatches: string[] = [];
  const t0 = performance.now();
  let cases = 0;
  for (let round = 0; round < 2; round++) {
    for (const c of catalogue()) {
      const outcome = await c.run(target);
      cases++;
      if (!c.expect.test(outcome)) mismatches.push(`${c.name}: ${outcome}`);
      if (server.child.exitCode !== null) break;
    }
  }
  const abuseS = (performance.now() - t0) / 1000;
  const abused = await robots.stop();
  const crashed = server.child.exitCode !== null;
  await stopServe(server);
  const row = (label: string, s: typeof quiet) => {
    const sorted = [...s.latencies].sort((a, b) => a - b);
    return [
      label,
      String(sorted.length),
      percentile(sorted, 50).toFixed(2),
      percentile(sorted, 99).toFixed(2),
      (sorted.at(-1) ?? Number.NaN).toFixed(1),
      String(s.errors.length),
      String(s.nonFinite),
    ];
  };
  console.log(
    table(
      [
        'steady robot (zeros, ALOHA, 5 ms between requests)',
        'replies',
        'p50 ms',
        'p99 ms',
        'max ms',
        'errors',
        'non-finite',
      ],
      [row('quiet, 3 s', quiet), row(`during ${cases} hostile cases, ${abuseS.toFixed(0)} s`, abused)],
    ),
  );
  console.log(
    `server ${crashed ? 'CRASHED' : 'alive throughout'}; outcomes unlike the catalogue's: ${mismatches.length ? mismatches.join(' | ') : 'none'}; p99 target ≤ 100 ms`,
  );
  for (const e of abused.errors) console.log(`robot error: ${e}`);
}

/**
 * Policy server figures (issue 4): round trips as a robot sees them, with the server in its own process
 * on this machine; server-side decode + encode per request; throughput with many robots; batching.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { NdArray, pack, unpack } from '@vla-orchestrator/client';
import { table } from '../src/cli/output.js';
import { exampleObservation } from '../src/client/examples.js';
import { loadTest, percentile } from '../src/client/load-test.js';
import { loadRobot } from '../src/config/load.js';
import { parseObservation } from '../src/protocol/observation.js';

const VLA = path.resolve(import.meta.dirname, '../bin/vla.js');

async function startServer(args: string[], port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [VLA, 'serve', ...args, '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('serving ')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGINT');
  await exited;
}

/** A process answering every `request` bytes it receives with `reply` bytes: plain TCP, nothing parsed. */
const ECHO = `
const [request, reply] = process.argv.slice(1).map(Number);
const out = Buffer.alloc(reply);
require('node:net').createServer((s) => {
  s.setNoDelay(true);
  let got = 0;
  s.on('data', (c) => { got += c.length; while (got >= request) { got -= request; s.write(out); } });
}).listen(0, '127.0.0.1', function () { console.log(this.address().port); });`;

/**
 * The floor under a round trip on this machine: a request's bytes over plain TCP to another process
 * and a reply's bytes back, no WebSocket, no msgpack, no allocation per message. The server's and
 * client's own cost is the round trip less this; the machine's load moves both, so they are measured
 * in the same run.
 */
async function loopbackFloor(requestBytes: number, replyBytes: number, n: number): Promise<number[]> {
  const child = spawn(process.execPath, ['-e', ECHO, String(requestBytes), String(replyBytes)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const port = await new Promise<number>((resolve) =>
      child.stdout!.once('data', (d) => resolve(Number(d))),
    );
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const request = Buffer.alloc(requestBytes, 1);
    let got = 0;
    let answered = () => {};
    socket.on('data', (c: Buffer) => {
      got += c.length;
      if (got >= replyBytes) {
        got -= replyBytes;
        answered();
      }
    });
    const times: number[] = [];
    for (let i = 0; i < n + 200; i++) {
      const t0 = performance.now();
      await new Promise<void>((resolve) => {
        answered = resolve;
        socket.write(request);
      });
      if (i >= 200) times.push(performance.now() - t0);
    }
    socket.destroy();
    return times.sort((a, b) => a - b);
  } finally {
    child.kill();
  }
}

/** Bytes of the reply `--policy zeros` sends (a 50-step chunk and its timings), WebSocket header aside. */
function replyBytes(robotName: string): number {
  const dim = loadRobot(robotName).action.names.length;
  return pack({
    actions: new NdArray(new Float32Array(50 * dim), [50, dim]),
    policy_timing: { infer_ms: 0.001 },
    server_timing: { infer_ms: 0.1, prev_total_ms: 0.6 },
  }).byteLength;
}

/** Median time of decode + validate + encode the reply, on this thread, per request. */
function codecMs(robotName: string): number {
  const robot = loadRobot(robotName);
  const msg = pack(exampleObservation(robot));
  const reply = { actions: new NdArray(new Float32Array(50 * 14), [50, 14]), server_timing: { infer_ms: 1 } };
  const times: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const t0 = performance.now();
    parseObservation(robot, unpack(msg));
    pack(reply);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return percentile(times, 50);
}

export async function run(): Promise<void> {
  const rows: string[][] = [];
  const ms = (v: number) => v.toFixed(3);
  const port = 18_000 + Math.floor(Math.random() * 1000);

  for (const [robotName, target] of [
    ['aloha', '≤ 1 ms'],
    ['droid', '≤ 0.6 ms'],
  ] as const) {
    const server = await startServer(['--robot', robotName, '--policy', 'zeros'], port);
    try {
      const r = await loadTest({
        url: `ws://127.0.0.1:${port}`,
        robot: loadRobot(robotName),
        n: 2000,
        warmup: 200,
      });
      rows.push([
        `round trip, ${robotName} (${(r.requestBytes / 1024).toFixed(0)} KiB), 1 client`,
        `p50 ${ms(percentile(r.latencies, 50))} ms (p90 ${ms(percentile(r.latencies, 90))}, p99 ${ms(percentile(r.latencies, 99))})`,
        target,
      ]);
      const floor = await loopbackFloor(r.requestBytes, replyBytes(robotName), 2000);
      rows.push([
        `  floor: the same bytes over plain TCP`,
        `p50 ${ms(percentile(floor, 50))} ms (p90 ${ms(percentile(floor, 90))}, p99 ${ms(percentile(floor, 99))})`,
        'reference',
      ]);
    } finally {
      await stop(server);
    }
    rows.push([
      `server decode+validate+encode, ${robotName}`,
      `p50 ${ms(codecMs(robotName))} ms`,
      '≤ 0.2 ms',
    ]);
  }

  {
    const server = await startServer(['--robot', 'droid', '--policy', 'zeros', '--max-batch', '16'], port);
    try {
      const r = await loadTest({
        url: `ws://127.0.0.1:${port}`,
        robot: loadRobot('droid'),
        n: 400,
        concurrency: 16,
      });
      rows.push([
        '16 concurrent DROID clients',
        `${r.repliesPerSec.toFixed(0)} replies/s, p50 ${ms(percentile(r.latencies, 50))} ms, ${r.errors} errors`,
        '≥ 3000 replies/s, 0 errors',
      ]);
    } finally {
      await stop(server);
    }
  }

  {
    const server = await startServer(
      ['--robot', 'droid', '--policy', 'sleep:50', '--max-batch', '8', '--max-wait-ms', '20'],
      port,
    );
    try {
      const r = await loadTest({
        url: `ws://127.0.0.1:${port}`,
        robot: loadRobot('droid'),
        n: 30,
        concurrency: 8,
        warmup: 3,
      });
      rows.push([
        '8 clients, policy costing 50 ms per call',
        `p50 ${ms(percentile(r.latencies, 50))} ms, ${r.repliesPerSec.toFixed(0)} replies/s`,
        '≤ 70 ms p50 (unbatched: 8 × 50 = 400 ms)',
      ]);
    } finally {
      await stop(server);
    }
  }
  console.log(table(['measure', 'result', 'target'], rows));
}

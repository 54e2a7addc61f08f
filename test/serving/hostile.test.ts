import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NdArray, PolicyClient, pack } from '@vla-orchestrator/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { exampleObservation } from '../../src/client/examples.js';
import { loadRobot } from '../../src/config/load.js';
import { catalogue, exchange, smallObservation, type Target } from './hostile-catalogue.js';
import { type ServeProcess, startServe, stopServe } from './serve-process.js';

const aloha = loadRobot('aloha');
const KEY = 'k3y-for-hostile-tests';

function get(port: number, route: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(`http://127.0.0.1:${port}${route}`, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

const metric = (body: string, name: string) =>
  Number(new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(body)?.[1] ?? 0);

/** A robot asking for actions in a loop, one request at a time, until stopped. */
function steadyRobot(url: string, apiKey: string | null) {
  const latencies: number[] = [];
  const errors: string[] = [];
  let running = true;
  const done = (async () => {
    const client = await PolicyClient.connect(url, { apiKey });
    let seed = 0;
    while (running) {
      const t0 = performance.now();
      try {
        await client.infer(exampleObservation(aloha, { seed: seed++ }));
        latencies.push(performance.now() - t0);
      } catch (e) {
        errors.push((e as Error).message);
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await client.close();
  })();
  return {
    latencies,
    errors,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

describe('the hostile catalogue against vla serve --policy zeros --api-key-file', () => {
  let served: ServeProcess;
  let robot: ReturnType<typeof steadyRobot>;
  let target: Target;

  beforeAll(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vla-hostile-'));
    writeFileSync(path.join(dir, 'key'), `${KEY}\n`);
    served = await startServe([
      '--robot',
      'aloha',
      '--policy',
      'zeros',
      '--api-key-file',
      path.join(dir, 'key'),
    ]);
    target = { port: served.port, apiKey: KEY, robot: aloha };
    robot = steadyRobot(`ws://127.0.0.1:${served.port}`, KEY);
  }, 30_000);

  afterAll(async () => {
    await robot?.stop();
    if (served) await stopServe(served);
  });

  for (const c of catalogue()) {
    it(c.name, async () => {
      const outcome = await c.run(target);
      expect(outcome).toMatch(c.expect);
      expect(served.child.exitCode, served.out()).toBeNull();
      expect((await get(served.port, '/healthz')).status).toBe(200);
    }, 60_000);
  }

  it('counts one error per misbehaving connection, and the steady robot got every reply', async () => {
    const before = (await get(served.port, '/metrics')).body;
    const pipelined = pack(smallObservation(aloha));
    await exchange(target, new Array(50).fill(pipelined));
    const after = (await get(served.port, '/metrics')).body;
    expect(
      metric(after, 'vla_errors_total{kind="protocol"}') -
        metric(before, 'vla_errors_total{kind="protocol"}'),
    ).toBe(1);
    await robot.stop();
    expect(robot.errors).toEqual([]);
    expect(robot.latencies.length).toBeGreaterThan(50);
    const sorted = [...robot.latencies].sort((a, b) => a - b);
    console.log(
      `steady robot through the catalogue: ${sorted.length} replies, p50 ${sorted[Math.floor(sorted.length / 2)]!.toFixed(1)} ms, p99 ${sorted[Math.floor(sorted.length * 0.99)]!.toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms`,
    );
    expect(await stopServe(served)).toBe(0);
    expect(served.out()).toMatch(/served \d+ requests to \d+ connections, \d+ errors/);
  });
});

describe('connection limits, idle connections and dead peers', () => {
  let served: ServeProcess;
  beforeAll(async () => {
    served = await startServe([
      'pi0_aloha',
      '--policy',
      'zeros',
      '--max-connections',
      '6',
      '--max-connections-per-address',
      '4',
      '--set',
      'serve.idle_timeout_s=1',
      '--set',
      'serve.ping_interval_s=0.5',
    ]);
  }, 30_000);
  afterAll(async () => {
    if (served) await stopServe(served);
  });

  it('a flood from one address gets a clear 503; once the held connections idle, a newcomer takes a slot', async () => {
    const url = `ws://127.0.0.1:${served.port}`;
    const robot = steadyRobot(url, null);
    await new Promise((r) => setTimeout(r, 100));
    const held: WebSocket[] = [];
    const texts: string[] = [];
    const attempts = await Promise.all(
      Array.from(
        { length: 20 },
        () =>
          new Promise<string>((resolve) => {
            const ws = new WebSocket(url);
            ws.on('error', () => {});
            ws.on('unexpected-response', (_req, res) => {
              let body = '';
              res.on('data', (c: Buffer) => {
                body += c;
              });
              res.on('end', () => resolve(`${res.statusCode}: ${body.trim()}`));
            });
            ws.once('message', () => {
              held.push(ws);
              ws.on('message', (d: Buffer, binary: boolean) => {
                if (!binary) texts.push(d.toString());
              });
              resolve('open');
            });
          }),
      ),
    );
    // The steady robot holds one of the address's four slots.
    expect(attempts.filter((a) => a === 'open')).toHaveLength(3);
    expect(attempts.filter((a) => a !== 'open')).toHaveLength(17);
    expect(attempts.find((a) => a !== 'open')).toMatch(
      /^503: server full for 127\.0\.0\.1: 4 connections from this address \(serve\.max_connections_per_address\), none idle for 1 s \(serve\.idle_timeout_s\); retry later$/,
    );
    // A client refused because the server is full that resets before reading its 503.
    const reset = net.connect(served.port, '127.0.0.1');
    reset.on('error', () => {});
    await new Promise<void>((r) => reset.once('connect', () => r()));
    reset.write(
      `GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${Buffer.alloc(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    reset.resetAndDestroy();
    await new Promise((r) => setTimeout(r, 100));
    expect(served.child.exitCode, served.out()).toBeNull();
    await new Promise((r) => setTimeout(r, 1200));
    const newcomer = await PolicyClient.connect(url);
    expect((await newcomer.infer(exampleObservation(aloha))).actionDim).toBe(14);
    await new Promise((r) => setTimeout(r, 100));
    expect(texts).toEqual([
      expect.stringMatching(
        /^connection closed to make room for another robot: no request for \d+ s while the server was full$/,
      ),
    ]);
    await newcomer.close();
    for (const ws of held) ws.terminate();
    await robot.stop();
    // The robot asking for actions throughout was never the one closed.
    expect(robot.errors).toEqual([]);
  }, 30_000);

  it('closes a connection that does not answer pings', async () => {
    const before = (await get(served.port, '/metrics')).body;
    // ws answers pings on its own; a paused socket reads nothing, so it never sees them.
    const ws = new WebSocket(`ws://127.0.0.1:${served.port}`);
    ws.on('error', () => {});
    await new Promise<void>((r) => ws.once('message', () => r()));
    ws.pause();
    await new Promise((r) => setTimeout(r, 1600));
    const after = (await get(served.port, '/metrics')).body;
    expect(
      metric(after, 'vla_closed_connections_total{reason="ping_timeout"}') -
        metric(before, 'vla_closed_connections_total{reason="ping_timeout"}'),
    ).toBe(1);
    expect(metric(after, 'vla_connected_clients')).toBe(0);
    ws.terminate();
  });
});

describe('a checkpoint server never sends non-finite actions', () => {
  it('a state finite in float32 but far outside the data (3.4e38) is answered with a named error, counted', async () => {
    const served = await startServe(['--checkpoint', 'checkpoints/base/transfer_cube']);
    try {
      const target: Target = { port: served.port, apiKey: '', robot: loadRobot('aloha_sim') };
      const obs = exampleObservation(target.robot);
      obs.state = new NdArray(new Float64Array(14).fill(3.4e38), [14]);
      const outcome = await exchange(target, [pack(obs)], { headers: {}, timeoutMs: 30_000 });
      expect(outcome).toMatch(
        /^close 1011: actions: expected finite numbers, got \d+ NaN or infinite of 700 from the policy for this observation/,
      );
      const metrics = (await get(served.port, '/metrics')).body;
      expect(metric(metrics, 'vla_errors_total{kind="non_finite_actions"}')).toBe(1);
      const good = await PolicyClient.connect(`ws://127.0.0.1:${served.port}`);
      const reply = await good.infer(exampleObservation(target.robot));
      expect(reply.actions.every(Number.isFinite)).toBe(true);
      await good.close();
    } finally {
      await stopServe(served);
    }
  }, 60_000);
});

describe('API keys at the command line', () => {
  it('refuses an empty key, an empty key file and both flags at once, each with one clear line', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vla-key-'));
    writeFileSync(path.join(dir, 'empty'), '\n');
    for (const [args, message] of [
      [['--api-key', ''], /--api-key: expected a non-empty key, got an empty one/],
      [
        ['--api-key-file', path.join(dir, 'empty')],
        /--api-key-file .*empty: expected a non-empty key, got an empty one/,
      ],
      [
        ['--api-key-file', path.join(dir, 'missing')],
        /--api-key-file .*missing: cannot read the key file \(ENOENT\)/,
      ],
      [
        ['--api-key', 'a', '--api-key-file', path.join(dir, 'empty')],
        /give --api-key or --api-key-file, not both/,
      ],
    ] as const) {
      await expect(startServe(['--robot', 'aloha', '--policy', 'zeros', ...args])).rejects.toThrow(message);
    }
  }, 60_000);
});

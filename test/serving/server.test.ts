import http from 'node:http';
import { NdArray, PolicyClient, pack, unpack } from '@vla-orchestrator/client';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { exampleObservation } from '../../src/client/examples.js';
import { loadRobot } from '../../src/config/load.js';
import type { PolicySpec } from '../../src/serving/policy.js';
import { inlineRunner, workerRunner } from '../../src/serving/runner.js';
import { PolicyServer, type ServerOptions } from '../../src/serving/server.js';
import { exchange, maskedFrame, upgraded } from './hostile-catalogue.js';

const aloha = loadRobot('aloha');
const droid = loadRobot('droid');
const servers: PolicyServer[] = [];

async function serve(
  spec: PolicySpec = { kind: 'zeros' },
  opts: Partial<ServerOptions> & {
    robot?: string;
    worker?: boolean;
    metadata?: Record<string, unknown>;
  } = {},
): Promise<PolicyServer> {
  const ctx = {
    robot: opts.robot ?? 'aloha',
    horizon: 10,
    metadata: opts.metadata ?? {},
    defaultPrompt: null,
  };
  const runner = opts.worker ? await workerRunner(spec, ctx) : await inlineRunner(spec, ctx);
  const server = await PolicyServer.start(runner, loadRobot(ctx.robot), {
    host: '127.0.0.1',
    port: 0,
    apiKey: null,
    maxMessageBytes: 16 * 1024 * 1024,
    maxConnections: 64,
    maxBatch: 8,
    maxWaitMs: 20,
    defaultPrompt: null,
    ...opts,
  });
  servers.push(server);
  return server;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close().catch(() => {})));
});

/** A raw WebSocket that records every frame and the close code, as a robot's socket sees them. */
function rawSocket(url: string, headers?: Record<string, string>) {
  const ws = new WebSocket(url, { headers });
  const frames: Array<{ binary: boolean; data: Buffer }> = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (data: Buffer, binary: boolean) => {
    frames.push({ binary, data });
    waiters.splice(0).forEach((w) => w());
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  const frame = async (i: number) => {
    while (frames.length <= i) await new Promise<void>((r) => waiters.push(r));
    return frames[i]!;
  };
  return { ws, frames, frame, closed };
}

function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

describe('policy server over real sockets', () => {
  it('sends the metadata frame first, then answers each request with actions and timings', async () => {
    const server = await serve({ kind: 'zeros' }, { metadata: { reset_pose: [0, -1.5, 1.5, 0, 0, 0] } });
    const client = await PolicyClient.connect(server.url);
    expect(client.metadata).toEqual({ reset_pose: [0, -1.5, 1.5, 0, 0, 0] });
    const first = await client.infer(exampleObservation(aloha));
    expect([first.horizon, first.actionDim]).toEqual([10, 14]);
    expect(first.actions).toHaveLength(140);
    expect(first.policyTiming.infer_ms).toBeGreaterThanOrEqual(0);
    expect(first.serverTiming.infer_ms).toBeGreaterThanOrEqual(0);
    expect(first.serverTiming.prev_total_ms).toBeUndefined();
    const second = await client.infer(exampleObservation(aloha, { seed: 2 }));
    expect(second.serverTiming.prev_total_ms).toBeGreaterThan(0);
    await client.close();
  });

  it("accepts openpi's ALOHA sim client: state and cam_high only, no prompt", async () => {
    const server = await serve();
    const client = await PolicyClient.connect(server.url);
    const reply = await client.infer(exampleObservation(aloha, { requiredCamerasOnly: true, prompt: null }));
    expect(reply.actionDim).toBe(14);
    await client.close();
  });

  it('accepts DROID with the gripper as a numpy scalar and HWC or CHW images', async () => {
    const server = await serve({ kind: 'zeros' }, { robot: 'droid' });
    const client = await PolicyClient.connect(server.url);
    const obs = exampleObservation(droid);
    obs['observation/gripper_position'] = new NdArray(new Float64Array([0.3]), []);
    obs['observation/wrist_image_left'] = new NdArray(new Uint8Array(3 * 180 * 320), [3, 180, 320]);
    const reply = await client.infer(obs);
    expect([reply.horizon, reply.actionDim]).toEqual([10, 8]);
    await client.close();
  });

  it('a bad observation gets a text frame naming field, expected and actual, then 1011; others keep going', async () => {
    const server = await serve();
    const good = await PolicyClient.connect(server.url);
    const bad = rawSocket(server.url);
    await bad.frame(0);
    const obs = exampleObservation(aloha);
    obs.state = new NdArray(new Float64Array(7), [7]);
    bad.ws.send(pack(obs));
    const err = await bad.frame(1);
    expect(err.binary).toBe(false);
    expect(err.data.toString()).toBe('state: expected a float array of shape [14], got <f8[7]');
    expect((await bad.closed).code).toBe(1011);
    expect((await good.infer(exampleObservation(aloha))).actionDim).toBe(14);

    const wrongImage = rawSocket(server.url);
    await wrongImage.frame(0);
    const obs2 = exampleObservation(aloha);
    (obs2.images as Record<string, unknown>).cam_high = new NdArray(new Float32Array(3 * 8 * 8), [3, 8, 8]);
    wrongImage.ws.send(pack(obs2));
    expect((await wrongImage.frame(1)).data.toString()).toBe(
      'images/cam_high: expected a uint8 image [H, W, 3] or [3, H, W], got <f4[3, 8, 8]',
    );
    const notMsgpack = rawSocket(server.url);
    await notMsgpack.frame(0);
    notMsgpack.ws.send('hello');
    expect((await notMsgpack.frame(1)).data.toString()).toMatch(
      /expected a binary msgpack frame, got a text frame/,
    );
    expect((await notMsgpack.closed).code).toBe(1011);
    expect((await good.infer(exampleObservation(aloha))).actionDim).toBe(14);
    await good.close();
  });

  it('refuses an oversize message with a clear text frame and 1009', async () => {
    const server = await serve({ kind: 'zeros' }, { maxMessageBytes: 300_000 });
    const sock = rawSocket(server.url);
    await sock.frame(0);
    sock.ws.send(pack(exampleObservation(aloha)));
    expect((await sock.frame(1)).data.toString()).toMatch(
      'request: expected at most 300000 bytes (serve.max_message_mb), got a larger message',
    );
    expect((await sock.closed).code).toBe(1009);
  });

  it('past the receive budget, the connection whose bytes pass it gets 1013; the one half-way keeps its message', async () => {
    const server = await serve({ kind: 'zeros' }, { maxReceivingBytes: 1 << 20, apiKey: 'k' });
    const target = { port: server.port, apiKey: 'k', robot: aloha };
    const frame = maskedFrame(pack(exampleObservation(aloha)));
    expect(frame.length).toBeGreaterThan(600_000);
    const first = await upgraded(target);
    let reply = Buffer.alloc(0);
    first.on('data', (d: Buffer) => {
      reply = Buffer.concat([reply, d]);
    });
    await new Promise<void>((r) => first.write(frame.subarray(0, 500_000), () => r()));
    await new Promise((r) => setTimeout(r, 50));
    expect(await exchange(target, [pack(exampleObservation(aloha))])).toMatch(
      /^close 1013: request: refused, the server is receiving 1 MB of messages at once \(serve\.max_receiving_mb: 1\); send it again$/,
    );
    first.write(frame.subarray(500_000));
    // The reply: a binary frame (0x82) holding the actions.
    while (!reply.includes(Buffer.from('actions'))) await new Promise((r) => setTimeout(r, 10));
    expect(reply[0]).toBe(0x82);
    first.destroy();
    expect(server.metrics.render()).toMatch(/^vla_closed_connections_total\{reason="receive_budget"\} 1$/m);
    // With the first message done, the budget is free again.
    expect(await exchange(target, [pack(exampleObservation(aloha))], { timeoutMs: 1000 })).toBe(
      'reply; timeout',
    );
  });

  it('with an API key, refuses upgrades without the right Authorization header (401)', async () => {
    const server = await serve({ kind: 'zeros' }, { apiKey: 's3cret' });
    await expect(PolicyClient.connect(server.url)).rejects.toThrow(/401.*missing API key/);
    await expect(PolicyClient.connect(server.url, { apiKey: 'nope' })).rejects.toThrow(/401.*wrong API key/);
    const client = await PolicyClient.connect(server.url, { apiKey: 's3cret' });
    expect((await client.infer(exampleObservation(aloha))).horizon).toBe(10);
    await client.close();
  });

  it('limits connections with a clear refusal', async () => {
    const server = await serve({ kind: 'zeros' }, { maxConnections: 1 });
    const first = await PolicyClient.connect(server.url);
    await expect(PolicyClient.connect(server.url)).rejects.toThrow(
      /503.*server full: 1 of 1 connections in use \(serve.max_connections\), none idle for 30 s/,
    );
    await first.close();
  });

  it('answers GET /healthz and GET /metrics in Prometheus format', async () => {
    const server = await serve();
    const base = `http://127.0.0.1:${server.port}`;
    expect(await httpGet(`${base}/healthz`)).toEqual({ status: 200, body: 'OK\n' });
    const client = await PolicyClient.connect(server.url);
    await client.infer(exampleObservation(aloha));
    const metrics = await httpGet(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/^vla_requests_total 1$/m);
    expect(metrics.body).toMatch(/^vla_connected_clients 1$/m);
    expect(metrics.body).toMatch(/^vla_request_latency_ms_count 1$/m);
    expect(metrics.body).toMatch(/^vla_batch_size_bucket\{le="1"\} 1$/m);
    await client.close();
  });

  it('batches requests from several robots into one policy call, computed off the event loop', async () => {
    const server = await serve({ kind: 'sleep', ms: 150 }, { worker: true, maxWaitMs: 50 });
    const clients = await Promise.all([0, 1, 2, 3].map(() => PolicyClient.connect(server.url)));
    const replies = clients.map((c, i) => c.infer(exampleObservation(aloha, { seed: i })));
    // While the batch computes in the worker, the event loop still answers health checks.
    const order: string[] = [];
    const health = httpGet(`http://127.0.0.1:${server.port}/healthz`).then(() => order.push('healthz'));
    const all = Promise.all(replies).then(() => order.push('replies'));
    await Promise.all([health, all]);
    expect(order).toEqual(['healthz', 'replies']);
    const metrics = (await httpGet(`http://127.0.0.1:${server.port}/metrics`)).body;
    expect(metrics).toMatch(/^vla_batch_size_count 1$/m);
    expect(metrics).toMatch(/^vla_batch_size_bucket\{le="2"\} 0$/m);
    expect(metrics).toMatch(/^vla_batch_size_bucket\{le="4"\} 1$/m);
    await Promise.all(clients.map((c) => c.close()));
  });

  it('shuts down gracefully: the reply in flight is delivered, then the connection closes with 1001', async () => {
    const server = await serve({ kind: 'sleep', ms: 200 }, { worker: true });
    const sock = rawSocket(server.url);
    await sock.frame(0);
    sock.ws.send(pack(exampleObservation(aloha)));
    await new Promise((r) => setTimeout(r, 50));
    await server.close();
    const reply = await sock.frame(1);
    expect(reply.binary).toBe(true);
    expect((unpack(reply.data) as { actions: NdArray }).actions.shape).toEqual([10, 14]);
    expect((await sock.closed).code).toBe(1001);
  });
});

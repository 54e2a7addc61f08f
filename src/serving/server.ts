/**
 * The policy server: openpi's wire protocol (DESIGN.md §4) over `ws`. On connect it sends the policy
 * metadata; then each binary request gets one binary reply. A bad request gets a text frame naming
 * the problem and that connection is closed with 1011; other robots keep being served.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';
import type { RobotSpec } from '../config/robot.js';
import { Batcher } from './batcher.js';
import { CodecError, pack, unpack } from './codec.js';
import { ServerMetrics } from './metrics.js';
import { NdArray } from './ndarray.js';
import { ObservationError, parseObservation } from './observation.js';
import type { PolicyRunner } from './runner.js';

export interface ServerOptions {
  host: string;
  port: number;
  apiKey: string | null;
  maxMessageBytes: number;
  maxConnections: number;
  maxBatch: number;
  maxWaitMs: number;
  defaultPrompt: string | null;
  log?: (line: string) => void;
}

/** Close codes: RFC 6455's "going away" for shutdown, "message too big", and openpi's 1011 for errors. */
const GOING_AWAY = 1001;
const TOO_BIG = 1009;
const INTERNAL_ERROR = 1011;

function refuseUpgrade(socket: Duplex, status: string, message: string): void {
  socket.end(
    `HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`,
  );
}

export class PolicyServer {
  readonly metrics = new ServerMetrics();
  private readonly http: http.Server;
  private readonly wss: WebSocketServer;
  private readonly batcher: Batcher;
  private readonly idle = new Set<WebSocket>();
  private readonly sockets = new Set<WebSocket>();
  private inFlight = 0;
  private closing = false;
  private nextSession = 0;

  private constructor(
    private readonly runner: PolicyRunner,
    private readonly robot: RobotSpec,
    private readonly opts: ServerOptions,
  ) {
    this.batcher = new Batcher((requests) => runner.inferBatch(requests), {
      maxBatch: opts.maxBatch,
      // A policy on this thread costs next to nothing per call: waiting for company would only add latency.
      maxWaitMs: runner.transfers ? opts.maxWaitMs : 0,
      idleSessions: () => this.idle.size,
      onBatch: (n) => this.metrics.batchSize.observe(n),
    });
    // ws's own limit is a memory guard set above ours, so that an oversize message still gets our clear
    // text frame; only messages past 4x the limit are cut off by ws itself (close 1009).
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: opts.maxMessageBytes * 4,
    });
    this.http = http.createServer((req, res) => this.onHttp(req, res));
    this.http.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    this.wss.on('connection', (ws) => this.onConnection(ws));
  }

  static async start(runner: PolicyRunner, robot: RobotSpec, opts: ServerOptions): Promise<PolicyServer> {
    const server = new PolicyServer(runner, robot, opts);
    await new Promise<void>((resolve, reject) => {
      server.http.once('error', reject);
      server.http.listen(opts.port, opts.host, () => {
        server.http.off('error', reject);
        resolve();
      });
    });
    return server;
  }

  get port(): number {
    return (this.http.address() as AddressInfo).port;
  }

  get url(): string {
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return `ws://${host}:${this.port}`;
  }

  private onHttp(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('OK\n');
    } else if (req.method === 'GET' && path === '/metrics') {
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' }).end(this.metrics.render());
    } else {
      res
        .writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket' })
        .end(
          'this is a WebSocket policy server (openpi protocol); plain HTTP serves GET /healthz and GET /metrics\n',
        );
    }
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.closing) {
      refuseUpgrade(socket, '503 Service Unavailable', 'server is shutting down\n');
      return;
    }
    if (this.opts.apiKey !== null && req.headers.authorization !== `Api-Key ${this.opts.apiKey}`) {
      this.metrics.error('unauthorized');
      refuseUpgrade(
        socket,
        '401 Unauthorized',
        `${req.headers.authorization ? 'wrong API key' : 'missing API key'}: expected header "Authorization: Api-Key <key>"\n`,
      );
      return;
    }
    if (this.sockets.size >= this.opts.maxConnections) {
      this.metrics.error('too_many_connections');
      refuseUpgrade(
        socket,
        '503 Service Unavailable',
        `too many connections: the server accepts ${this.opts.maxConnections} (--max-connections)\n`,
      );
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.wss.emit('connection', ws, req));
  }

  private onConnection(ws: WebSocket): void {
    const session = this.nextSession++;
    this.sockets.add(ws);
    this.idle.add(ws);
    this.metrics.connected++;
    this.metrics.connectionsTotal++;
    let busy = false;
    let cycleStart = performance.now();
    let prevTotalMs: number | null = null;

    const fail = (message: string, kind: string, code = INTERNAL_ERROR) => {
      this.metrics.error(kind);
      this.idle.delete(ws);
      if (ws.readyState !== ws.OPEN) return;
      ws.send(message);
      ws.close(code, kind.slice(0, 100));
    };

    ws.on('message', async (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return fail('request: expected a binary msgpack frame, got a text frame', 'protocol');
      if (busy)
        return fail('request: expected one request at a time (wait for the reply), got a second', 'protocol');
      if (data.byteLength > this.opts.maxMessageBytes) {
        return fail(
          `request: expected at most ${this.opts.maxMessageBytes} bytes (--max-message-mb), got ${data.byteLength}`,
          'too_big',
          TOO_BIG,
        );
      }
      busy = true;
      this.idle.delete(ws);
      this.inFlight++;
      const t0 = performance.now();
      try {
        // A worker takes the request's buffers instead of copying them: they must belong to this message alone.
        const owned =
          this.runner.transfers && (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength)
            ? Buffer.from(data)
            : data;
        const obs = parseObservation(this.robot, unpack(owned));
        obs.prompt ??= this.opts.defaultPrompt;
        if (obs.prompt === null && this.runner.requiresPrompt) {
          throw new ObservationError(
            'prompt: expected a string (this policy has no default prompt), got nothing (missing)',
          );
        }
        const result = await this.batcher.submit({ obs, session });
        if (ws.readyState !== ws.OPEN) return;
        const serverTiming: Record<string, number> = { infer_ms: performance.now() - t0 };
        if (prevTotalMs !== null) serverTiming.prev_total_ms = prevTotalMs;
        ws.send(
          pack({
            actions: new NdArray(result.actions, [result.horizon, result.actionDim]),
            policy_timing: { infer_ms: result.inferMs },
            server_timing: serverTiming,
          }),
        );
        this.metrics.requests++;
        const now = performance.now();
        this.metrics.observeLatency(now - t0);
        prevTotalMs = now - cycleStart;
        cycleStart = now;
        busy = false;
        if (!this.closing) this.idle.add(ws);
      } catch (e) {
        const err = e as Error;
        if (err instanceof ObservationError || err instanceof CodecError) fail(err.message, 'bad_request');
        else {
          this.opts.log?.(`inference failed: ${err.message}`);
          fail(`inference failed: ${err.message}`, 'inference');
        }
      } finally {
        this.inFlight--;
      }
    });
    ws.on('close', () => {
      this.sockets.delete(ws);
      this.idle.delete(ws);
      this.metrics.connected--;
      this.runner.endSession(session);
    });
    ws.on('error', (e) => this.opts.log?.(`connection ${session}: ${e.message}`));
    ws.send(pack(this.runner.metadata));
  }

  /** Graceful shutdown: refuse new connections, finish replies in flight, close the rest with 1001. */
  async close(): Promise<void> {
    this.closing = true;
    this.idle.clear();
    this.http.close();
    while (this.inFlight > 0 || this.batcher.busy) await new Promise((r) => setTimeout(r, 5));
    const closed = [...this.sockets].map(
      (ws) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            ws.terminate();
            resolve();
          }, 2000);
          ws.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
          ws.close(GOING_AWAY, 'server shutting down');
        }),
    );
    await Promise.all(closed);
    this.http.closeAllConnections();
    await this.runner.close();
  }
}

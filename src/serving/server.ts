/**
 * The policy server: openpi's wire protocol (DESIGN.md §4) over `ws`. On connect it sends the policy
 * metadata; then each binary request gets one binary reply. A bad request gets a text frame naming
 * the problem and that connection is closed with 1011; other robots keep being served.
 *
 * It is a network service beside a machine that moves, so nothing a client sends may stop it or starve
 * other robots: sockets reset at any stage are ignored, messages over the limit are refused from their
 * frame header before they are buffered, a message's structure is bounded before it is decoded,
 * non-finite actions never leave, connections are limited per address, dead peers are found by ping,
 * and with the server full an idle connection gives its slot to a newcomer.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { CodecError, NdArray, pack, unpack } from '@vla-orchestrator/client';
import { type WebSocket, WebSocketServer } from 'ws';
import type { RobotSpec } from '../config/robot.js';
import { type Observation, ObservationError, parseObservation } from '../protocol/observation.js';
import { Batcher } from './batcher.js';
import { ServerMetrics } from './metrics.js';
import type { PolicyResult } from './policy.js';
import { ReceiveBudget } from './receive-budget.js';
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
  /** Defaults: serve config's (32 per address, 30 s idle before giving up a slot, pings every 20 s). */
  maxConnectionsPerAddress?: number;
  /** Most bytes of incoming messages held at once, all connections together (default 256 MB). */
  maxReceivingBytes?: number;
  idleTimeoutMs?: number;
  pingIntervalMs?: number;
  log?: (line: string) => void;
}

/** Close codes: RFC 6455's "going away", "message too big", "try again later", and openpi's 1011 for errors. */
const GOING_AWAY = 1001;
const TOO_BIG = 1009;
const INTERNAL_ERROR = 1011;
const TRY_AGAIN_LATER = 1013;

/** A client that stops reading its replies is cut off once this much waits in its send buffer. */
const MAX_UNREAD_BYTES = 1 << 20;
/** How long a refused connection may take to answer our close frame before its socket is destroyed. */
const CLOSE_GRACE_MS = 1000;

function refuseUpgrade(socket: Duplex, status: string, message: string): void {
  socket.end(
    `HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`,
  );
}

const sha256 = (text: string) => createHash('sha256').update(text).digest();

/** Non-finite values in a chunk: a model fed an extreme state can produce them, a robot must never get them. */
function countNonFinite(actions: Float32Array): number {
  let n = 0;
  for (let i = 0; i < actions.length; i++) if (!Number.isFinite(actions[i]!)) n++;
  return n;
}

interface Connection {
  readonly ws: WebSocket;
  readonly session: number;
  readonly address: string;
  /** A request is being answered. */
  busy: boolean;
  /** An error was sent: the connection is closing and holds no slot; later frames are ignored. */
  done: boolean;
  /** When it last finished a reply (or connected): the longest idle gives way to a newcomer. */
  idleSince: number;
  /** It answered the last ping. */
  alive: boolean;
  cycleStart: number;
  prevTotalMs: number | null;
  /** Its share of the receive budget. */
  receiving: { messageDone(): void; release(): void };
}

export class PolicyServer {
  readonly metrics = new ServerMetrics();
  private readonly http: http.Server;
  private readonly wss: WebSocketServer;
  private readonly batcher: Batcher;
  /** Connections that hold a slot: open and not failed. */
  private readonly connections = new Map<WebSocket, Connection>();
  /** Connections that could send a request now (not waiting on one): the batcher's "nobody else can join". */
  private readonly ready = new Set<WebSocket>();
  private readonly receiving: ReceiveBudget;
  private readonly keyDigest: Buffer | null;
  private readonly perAddress: number;
  private readonly idleTimeoutMs: number;
  private readonly pinger: NodeJS.Timeout;
  private inFlight = 0;
  private closing = false;
  private nextSession = 0;

  private constructor(
    private readonly runner: PolicyRunner,
    private readonly robot: RobotSpec,
    private readonly opts: ServerOptions,
  ) {
    if (opts.apiKey === '') throw new Error('PolicyServer: apiKey must be null or a non-empty string');
    this.keyDigest = opts.apiKey === null ? null : sha256(`Api-Key ${opts.apiKey}`);
    this.perAddress = opts.maxConnectionsPerAddress ?? 32;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 30_000;
    this.receiving = new ReceiveBudget(opts.maxReceivingBytes ?? 256 * 1024 * 1024);
    this.batcher = new Batcher((requests) => runner.inferBatch(requests), {
      maxBatch: opts.maxBatch,
      // A policy on this thread costs next to nothing per call: waiting for company would only add latency.
      maxWaitMs: runner.transfers ? opts.maxWaitMs : 0,
      idleSessions: () => this.ready.size,
      onBatch: (n) => this.metrics.batchSize.observe(n),
    });
    // ws refuses a message from its frame header once the message would pass the limit: nothing of an
    // oversize message is buffered.
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: opts.maxMessageBytes,
    });
    // A connection that never finishes its upgrade request holds a socket, not a slot; still, not for long.
    this.http = http.createServer(
      { headersTimeout: 10_000, requestTimeout: 10_000, connectionsCheckingInterval: 2_000 },
      (req, res) => this.onHttp(req, res),
    );
    this.http.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
    this.pinger = setInterval(() => this.ping(), opts.pingIntervalMs ?? 20_000);
    this.pinger.unref();
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

  /** Constant-time: how long the comparison takes says nothing about how much of the key was right. */
  private keyMatches(header: string | undefined): boolean {
    return this.keyDigest === null || timingSafeEqual(sha256(header ?? ''), this.keyDigest);
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    // A peer may reset the connection at any moment, before or after our answer: that ends its socket,
    // never the server.
    socket.on('error', () => socket.destroy());
    if (this.closing) {
      refuseUpgrade(socket, '503 Service Unavailable', 'server is shutting down\n');
      return;
    }
    if (!this.keyMatches(req.headers.authorization)) {
      this.metrics.error('unauthorized');
      refuseUpgrade(
        socket,
        '401 Unauthorized',
        `${req.headers.authorization ? 'wrong API key' : 'missing API key'}: expected header "Authorization: Api-Key <key>"\n`,
      );
      return;
    }
    const address = req.socket.remoteAddress ?? 'unknown';
    const refusal = this.makeRoom(address);
    if (refusal !== null) {
      this.metrics.error('too_many_connections');
      refuseUpgrade(socket, '503 Service Unavailable', `${refusal}\n`);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, address, socket));
  }

  /**
   * Whether a newcomer from `address` gets a slot: null when it does (closing the longest-idle
   * connection if that is what frees one), else the text of the refusal.
   */
  private makeRoom(address: string): string | null {
    const fromAddress = [...this.connections.values()].filter((c) => c.address === address);
    const idleFor = `none idle for ${(this.idleTimeoutMs / 1000).toFixed(0)} s (serve.idle_timeout_s)`;
    if (fromAddress.length >= this.perAddress && !this.evictIdlest(fromAddress)) {
      return `server full for ${address}: ${fromAddress.length} connections from this address (serve.max_connections_per_address), ${idleFor}; retry later`;
    }
    if (
      this.connections.size >= this.opts.maxConnections &&
      !this.evictIdlest([...this.connections.values()])
    ) {
      return `server full: ${this.connections.size} of ${this.opts.maxConnections} connections in use (serve.max_connections), ${idleFor}; retry later`;
    }
    return null;
  }

  private evictIdlest(candidates: Connection[]): boolean {
    const now = performance.now();
    let idlest: Connection | null = null;
    for (const c of candidates) {
      if (!c.busy && now - c.idleSince >= this.idleTimeoutMs && (!idlest || c.idleSince < idlest.idleSince)) {
        idlest = c;
      }
    }
    if (!idlest) return false;
    this.metrics.closed('idle_evicted');
    const seconds = ((now - idlest.idleSince) / 1000).toFixed(0);
    this.end(
      idlest,
      `connection closed to make room for another robot: no request for ${seconds} s while the server was full`,
      TRY_AGAIN_LATER,
      'idle, server full',
    );
    return true;
  }

  /** Releases a connection's slot (once) and closes it, with a text frame first when there is one. */
  private end(c: Connection, text: string | null, code: number, reason: string): void {
    this.release(c);
    c.done = true;
    if (c.ws.readyState !== c.ws.OPEN) return;
    if (text !== null) c.ws.send(text);
    c.ws.close(code, reason);
    setTimeout(() => c.ws.terminate(), CLOSE_GRACE_MS).unref();
  }

  private release(c: Connection): void {
    if (!this.connections.delete(c.ws)) return;
    this.ready.delete(c.ws);
    c.receiving.release();
    this.metrics.connected--;
    this.runner.endSession(c.session);
  }

  private ping(): void {
    for (const c of this.connections.values()) {
      if (!c.alive) {
        this.metrics.closed('ping_timeout');
        this.release(c);
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      c.ws.ping();
    }
  }

  private onConnection(ws: WebSocket, address: string, socket: Duplex): void {
    const now = performance.now();
    const receiving = this.receiving.track(socket, () => {
      this.metrics.closed('receive_budget');
      const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(0);
      this.end(
        c,
        `request: refused, the server is receiving ${mb(this.receiving.heldBytes)} MB of messages at once (serve.max_receiving_mb: ${mb(this.receiving.limitBytes)}); send it again`,
        TRY_AGAIN_LATER,
        'server busy receiving',
      );
      // Nothing more of this message is read: its bytes would only be thrown away.
      socket.pause();
    });
    const c: Connection = {
      ws,
      session: this.nextSession++,
      address,
      busy: false,
      done: false,
      idleSince: now,
      alive: true,
      cycleStart: now,
      prevTotalMs: null,
      receiving,
    };
    this.connections.set(ws, c);
    this.ready.add(ws);
    this.metrics.connected++;
    this.metrics.connectionsTotal++;
    // ws closes an oversize message with a bare 1009 before telling us; the robot gets our words first.
    const close = ws.close.bind(ws);
    ws.close = (code?: number, reason?: string | Buffer) => {
      if (code === TOO_BIG && reason === undefined && ws.readyState === ws.OPEN) {
        // fail() closes again, with a reason: that call goes straight through.
        return this.fail(
          c,
          `request: expected at most ${this.opts.maxMessageBytes} bytes (serve.max_message_mb), got a larger message`,
          'too_big',
          TOO_BIG,
        );
      }
      return close(code, reason);
    };
    ws.on('message', (data: Buffer, isBinary: boolean) => void this.onMessage(c, data, isBinary));
    ws.on('pong', () => {
      c.alive = true;
    });
    ws.on('close', () => this.release(c));
    ws.on('error', () => {
      // Frames that break RFC 6455 (bad opcode, unmasked, invalid UTF-8 in a text frame): ws has
      // already closed with the code that says which. Oversize messages were counted above.
      if (c.done) return;
      this.metrics.error('protocol');
      this.release(c);
      c.done = true;
    });
    ws.send(pack(this.runner.metadata));
  }

  private fail(c: Connection, message: string, kind: string, code = INTERNAL_ERROR): void {
    if (c.done) return;
    this.metrics.error(kind);
    this.end(c, message, code, kind);
  }

  /** The request's observation, or null after telling the robot what was wrong with it. */
  private decode(c: Connection, data: Buffer): Observation | null {
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
      return obs;
    } catch (e) {
      const err = e as Error;
      if (err instanceof ObservationError || err instanceof CodecError) {
        this.fail(c, err.message, 'bad_request');
      } else {
        // Our bug, not the robot's: logged, and the robot told its request could not be read.
        this.opts.log?.(`decoding a request failed: ${err.stack ?? err.message}`);
        this.fail(c, `request: could not be decoded (${err.name})`, 'bad_request');
      }
      return null;
    }
  }

  private async onMessage(c: Connection, data: Buffer, isBinary: boolean): Promise<void> {
    c.receiving.messageDone();
    if (c.done) return;
    if (!isBinary)
      return this.fail(c, 'request: expected a binary msgpack frame, got a text frame', 'protocol');
    if (c.busy) {
      return this.fail(
        c,
        'request: expected one request at a time (wait for the reply), got a second',
        'protocol',
      );
    }
    const t0 = performance.now();
    const obs = this.decode(c, data);
    if (obs === null) return;
    c.busy = true;
    this.ready.delete(c.ws);
    this.inFlight++;
    let result: PolicyResult;
    try {
      result = await this.batcher.submit({ obs, session: c.session });
    } catch (e) {
      const err = e as Error;
      this.opts.log?.(`inference failed: ${err.message}`);
      return this.fail(c, `inference failed: ${err.message}`, 'inference');
    } finally {
      this.inFlight--;
    }
    if (c.done || c.ws.readyState !== c.ws.OPEN) return;
    if (result.error) return this.fail(c, result.error.message, result.error.kind);
    const nonFinite = countNonFinite(result.actions);
    if (nonFinite > 0) {
      return this.fail(
        c,
        `actions: expected finite numbers, got ${nonFinite} NaN or infinite of ${result.actions.length} from the policy for this observation (nothing was sent to the robot; is the state within its usual range?)`,
        'non_finite_actions',
      );
    }
    if (c.ws.bufferedAmount > MAX_UNREAD_BYTES) {
      // Replies pile up unread: no text frame would reach it either.
      this.metrics.error('unread_replies');
      this.release(c);
      c.done = true;
      c.ws.terminate();
      return;
    }
    const serverTiming: Record<string, number> = { infer_ms: performance.now() - t0 };
    if (c.prevTotalMs !== null) serverTiming.prev_total_ms = c.prevTotalMs;
    c.ws.send(
      pack({
        actions: new NdArray(result.actions, [result.horizon, result.actionDim]),
        policy_timing: { infer_ms: result.inferMs },
        server_timing: serverTiming,
      }),
    );
    this.metrics.requests++;
    const now = performance.now();
    this.metrics.observeLatency(now - t0);
    c.prevTotalMs = now - c.cycleStart;
    c.cycleStart = now;
    c.idleSince = now;
    c.busy = false;
    if (!this.closing) this.ready.add(c.ws);
  }

  /** Graceful shutdown: refuse new connections, finish replies in flight, close the rest with 1001. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.pinger);
    this.ready.clear();
    this.http.close();
    while (this.inFlight > 0 || this.batcher.busy) await new Promise((r) => setTimeout(r, 5));
    const closed = [...this.wss.clients].map(
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

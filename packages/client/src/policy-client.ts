/**
 * A robot's connection to a policy server (ours or openpi's): connect with retry until the server is
 * up, read the metadata frame, then `infer(obs)` one request at a time, as openpi_client's
 * WebsocketClientPolicy does.
 */
import WebSocket from 'ws';
import { pack, ReusingPacker, unpack } from './codec.js';
import { ServerError } from './errors.js';
import { NdArray } from './ndarray.js';
import type { ObservationMap } from './observation.js';

export interface InferResult {
  /** float32 [horizon, actionDim], C order. */
  actions: Float32Array;
  horizon: number;
  actionDim: number;
  policyTiming: Record<string, number>;
  serverTiming: Record<string, number>;
  /** Everything else the server put in the reply, decoded. */
  raw: Record<string, unknown>;
}

/**
 * RFC 6455 has clients mask every frame with a fresh random key so that script in a browser cannot
 * put chosen bytes on the wire to a proxy's cache; a robot program sends its own observations. With a
 * key of zeros, ws neither copies nor XORs the message (0.3–0.6 MB per observation) before it sends it,
 * and the frame is still a masked frame as every server expects.
 */
const zeroMask = (mask: Buffer): void => {
  mask.fill(0);
};

export interface ConnectOptions {
  apiKey?: string | null;
  /** Keep retrying this long while the server is not up yet. */
  timeoutMs?: number;
  retryMs?: number;
}

export class PolicyClient {
  private pending: { resolve: (d: Buffer | string) => void; reject: (e: Error) => void } | null = null;
  private closedWith: Error | null = null;
  /** Observations are encoded into one buffer, reused while no earlier one is still being written. */
  private readonly packer = new ReusingPacker();
  private writing = false;

  private constructor(
    private readonly ws: WebSocket,
    readonly metadata: Record<string, unknown>,
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const p = this.pending;
      this.pending = null;
      p?.resolve(isBinary ? data : data.toString('utf8'));
    });
    ws.on('close', (code, reason) => {
      this.closedWith = new Error(
        `connection closed by the server (${code}${reason.length ? ` ${reason}` : ''})`,
      );
      this.pending?.reject(this.closedWith);
      this.pending = null;
    });
    ws.on('error', () => {});
  }

  static async connect(url: string, opts: ConnectOptions = {}): Promise<PolicyClient> {
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    const headers = opts.apiKey ? { Authorization: `Api-Key ${opts.apiKey}` } : undefined;
    for (;;) {
      try {
        return await PolicyClient.tryConnect(url, headers);
      } catch (e) {
        const err = e as Error & { retry?: boolean };
        if (!err.retry || Date.now() >= deadline) throw err;
        await new Promise((r) => setTimeout(r, opts.retryMs ?? 250));
      }
    }
  }

  private static tryConnect(url: string, headers?: Record<string, string>): Promise<PolicyClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, {
        headers,
        perMessageDeflate: false,
        maxPayload: 0,
        generateMask: zeroMask,
      });
      ws.binaryType = 'nodebuffer';
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => {
          body += c.toString();
        });
        res.on('end', () => {
          ws.terminate();
          reject(new ServerError(`server refused the connection (${res.statusCode}): ${body.trim()}`));
        });
      });
      ws.once('error', (e: Error & { code?: string }) => {
        // Not up yet: keep trying, as a robot started before its server should.
        reject(
          Object.assign(new Error(`cannot reach ${url}: ${e.message}`), { retry: e.code === 'ECONNREFUSED' }),
        );
      });
      ws.once('message', (data: Buffer, isBinary: boolean) => {
        ws.removeAllListeners('error');
        if (!isBinary) {
          ws.close();
          reject(new ServerError(`server error: ${data.toString('utf8')}`));
          return;
        }
        resolve(new PolicyClient(ws, (unpack(data) ?? {}) as Record<string, unknown>));
      });
    });
  }

  /** Send one observation (NdArrays for arrays) and wait for its action chunk. */
  async infer(obs: ObservationMap): Promise<InferResult> {
    if (this.closedWith) throw this.closedWith;
    if (this.pending) throw new Error('infer: one request at a time (await the previous one)');
    const reply = await new Promise<Buffer | string>((resolve, reject) => {
      this.pending = { resolve, reject };
      // A reply normally means the request was written long ago; an error reply may come sooner.
      const message = this.writing ? pack(obs) : this.packer.pack(obs);
      this.writing = true;
      this.ws.send(message, (err) => {
        this.writing = false;
        if (err && this.pending) {
          this.pending = null;
          reject(err);
        }
      });
    });
    if (typeof reply === 'string') throw new ServerError(`server error: ${reply}`);
    const raw = unpack(reply) as Record<string, unknown>;
    const actions = raw.actions;
    if (!(actions instanceof NdArray) || actions.shape.length !== 2) {
      throw new Error('server reply: expected "actions" as a 2-D array');
    }
    return {
      actions: actions.toFloat32(),
      horizon: actions.shape[0]!,
      actionDim: actions.shape[1]!,
      policyTiming: (raw.policy_timing ?? {}) as Record<string, number>,
      serverTiming: (raw.server_timing ?? {}) as Record<string, number>,
      raw,
    };
  }

  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }
}

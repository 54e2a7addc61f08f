/**
 * Policy servers watched from the dashboard's process: each one's /metrics read every few seconds, kept
 * as a history of rates and latency quantiles between readings (so the page draws them over time), and
 * what went wrong when a reading fails, named with the server's URL and when it last answered.
 */
import http from 'node:http';
import { describeValue } from '../config/errors.js';
import { HttpError } from './http.js';
import {
  byLabel,
  type Histogram,
  histogram,
  histogramDelta,
  histogramQuantile,
  parsePrometheus,
  type Sample,
  sampleValue,
} from './prometheus.js';

/** One reading, against the one before it. */
export interface ServerPoint {
  /** ms since the epoch. */
  t: number;
  requestsPerSec: number | null;
  errorsPerSec: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  connected: number;
  /** Mean requests per policy call since the last reading. */
  batchMean: number | null;
}

export interface ServerNow {
  connected: number;
  requests: number;
  connectionsTotal: number;
  errors: Record<string, number>;
  closes: Record<string, number>;
  /** Over the server's whole life, from its histogram. */
  p50Ms: number | null;
  p99Ms: number | null;
  batchMean: number | null;
  /** Policy calls by batch size bucket (`le` → calls in that bucket alone). */
  batchSizes: Array<{ le: number; calls: number }>;
}

export interface ServerState {
  /** As the user gave it. */
  url: string;
  metricsUrl: string;
  ok: boolean;
  error: string | null;
  /** ms since the epoch of the last reading that worked. */
  lastSeen: number | null;
  now: ServerNow | null;
  history: ServerPoint[];
  /** Polls finished, answered or not: a page holding a later state ignores an earlier one that arrives late. */
  polls: number;
}

interface Reading {
  t: number;
  samples: Sample[];
  latency: Histogram | null;
  batch: Histogram | null;
}

export interface ServerWatchOptions {
  intervalMs: number;
  /** Readings kept per server (at 2 s each, 1,800 is an hour). */
  maxHistory?: number;
  onUpdate?: () => void;
}

const TIMEOUT_MS = 3000;
const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** `ws://host:8000` (what `vla serve` prints), `http://host:8000` or a full /metrics URL → the /metrics URL. */
export function metricsUrlOf(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new HttpError(
      400,
      `server URL: expected ws://HOST:PORT or http://HOST:PORT, got ${describeValue(url)}`,
    );
  }
  const scheme = { 'ws:': 'http:', 'http:': 'http:' }[parsed.protocol];
  if (!scheme) {
    throw new HttpError(
      400,
      `server URL: expected ws:// or http:// (what vla serve prints), got ${JSON.stringify(parsed.protocol)} in ${JSON.stringify(url)}`,
    );
  }
  parsed.protocol = scheme;
  if (parsed.pathname === '' || parsed.pathname === '/') parsed.pathname = '/metrics';
  parsed.search = '';
  parsed.hash = '';
  return parsed.toString();
}

function fetchText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: TIMEOUT_MS }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`answered HTTP ${res.statusCode}, expected 200 with Prometheus text`));
        return;
      }
      let size = 0;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY_BYTES) req.destroy(new Error(`answered more than ${MAX_BODY_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
  });
}

function bucketCalls(h: Histogram | null): Array<{ le: number; calls: number }> {
  if (!h) return [];
  return h.buckets.map((b, i) => ({ le: b.le, calls: b.count - (i > 0 ? h.buckets[i - 1]!.count : 0) }));
}

const mean = (h: Histogram | null) => (h && h.count > 0 ? h.sum / h.count : null);

function summarize(r: Reading): ServerNow {
  return {
    connected: sampleValue(r.samples, 'vla_connected_clients') ?? 0,
    requests: sampleValue(r.samples, 'vla_requests_total') ?? 0,
    connectionsTotal: sampleValue(r.samples, 'vla_connections_total') ?? 0,
    errors: byLabel(r.samples, 'vla_errors_total', 'kind'),
    closes: byLabel(r.samples, 'vla_closed_connections_total', 'reason'),
    p50Ms: r.latency ? histogramQuantile(r.latency, 0.5) : null,
    p99Ms: r.latency ? histogramQuantile(r.latency, 0.99) : null,
    batchMean: mean(r.batch),
    batchSizes: bucketCalls(r.batch),
  };
}

const errorsTotal = (samples: Sample[]) =>
  Object.values(byLabel(samples, 'vla_errors_total', 'kind')).reduce((a, b) => a + b, 0);

/** The rates and quantiles between two readings of one server. */
function pointBetween(before: Reading | null, after: Reading): ServerPoint {
  const connected = sampleValue(after.samples, 'vla_connected_clients') ?? 0;
  const seconds = before ? (after.t - before.t) / 1000 : 0;
  if (!before || seconds <= 0) {
    return {
      t: after.t,
      requestsPerSec: null,
      errorsPerSec: null,
      p50Ms: null,
      p99Ms: null,
      connected,
      batchMean: null,
    };
  }
  const requests =
    (sampleValue(after.samples, 'vla_requests_total') ?? 0) -
    (sampleValue(before.samples, 'vla_requests_total') ?? 0);
  const errors = errorsTotal(after.samples) - errorsTotal(before.samples);
  const latency = after.latency ? histogramDelta(before.latency, after.latency) : null;
  const batch = after.batch ? histogramDelta(before.batch, after.batch) : null;
  return {
    t: after.t,
    // A restarted server's counters start again from 0: its first interval has no rate.
    requestsPerSec: requests >= 0 ? requests / seconds : null,
    errorsPerSec: errors >= 0 ? errors / seconds : null,
    p50Ms: latency ? histogramQuantile(latency, 0.5) : null,
    p99Ms: latency ? histogramQuantile(latency, 0.99) : null,
    connected,
    batchMean: mean(batch),
  };
}

interface Watched {
  state: ServerState;
  last: Reading | null;
}

export class ServerWatch {
  private readonly watched = new Map<string, Watched>();
  private timer: NodeJS.Timeout | null = null;
  private polling: Promise<void> | null = null;

  constructor(private readonly opts: ServerWatchOptions) {}

  /** Starts watching a server (once per /metrics URL); returns its state. */
  add(url: string): ServerState {
    const metricsUrl = metricsUrlOf(url);
    const known = this.watched.get(metricsUrl);
    if (known) return known.state;
    const state: ServerState = {
      url,
      metricsUrl,
      ok: false,
      error: null,
      lastSeen: null,
      now: null,
      history: [],
      polls: 0,
    };
    this.watched.set(metricsUrl, { state, last: null });
    void this.pollOne(this.watched.get(metricsUrl)!).then(() => this.opts.onUpdate?.());
    return state;
  }

  remove(url: string): boolean {
    return this.watched.delete(metricsUrlOf(url));
  }

  states(): ServerState[] {
    return [...this.watched.values()].map((w) => w.state);
  }

  start(): void {
    const tick = () => {
      this.polling = this.pollAll().finally(() => {
        this.polling = null;
        if (this.timer) this.timer = setTimeout(tick, this.opts.intervalMs).unref();
      });
    };
    this.timer = setTimeout(tick, this.opts.intervalMs).unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.polling;
  }

  private async pollAll(): Promise<void> {
    if (this.watched.size === 0) return;
    await Promise.all([...this.watched.values()].map((w) => this.pollOne(w)));
    this.opts.onUpdate?.();
  }

  private async pollOne(w: Watched): Promise<void> {
    const s = w.state;
    let samples: Sample[];
    try {
      samples = parsePrometheus(await fetchText(s.metricsUrl));
      if (sampleValue(samples, 'vla_requests_total') === null) {
        throw new Error('answered, but not with vla serve metrics (no vla_requests_total)');
      }
    } catch (e) {
      const since =
        s.lastSeen === null ? 'never answered' : `last answered ${new Date(s.lastSeen).toISOString()}`;
      s.ok = false;
      s.error = `${s.metricsUrl}: ${(e as Error).message} (${since})`;
      s.polls++;
      return;
    }
    const reading: Reading = {
      t: Date.now(),
      samples,
      latency: histogram(samples, 'vla_request_latency_ms'),
      batch: histogram(samples, 'vla_batch_size'),
    };
    s.history.push(pointBetween(w.last, reading));
    const max = this.opts.maxHistory ?? 1800;
    if (s.history.length > max) s.history.splice(0, s.history.length - max);
    w.last = reading;
    s.ok = true;
    s.error = null;
    s.lastSeen = reading.t;
    s.now = summarize(reading);
    s.polls++;
  }
}

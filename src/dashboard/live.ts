/**
 * Server push for open pages (Server-Sent Events): one stream per page, saying what it watches in its
 * query (`list=1`, `metrics=ID:STEP,…`, `log=ID`, `servers=1`). A timer reads the registry, the watched
 * runs' metrics.jsonl and logs, and sends each page what changed since it last heard: the jobs table,
 * the points logged after the step it has, the log's new lines. Servers are pushed when polled.
 */
import { existsSync, statSync } from 'node:fs';
import type http from 'node:http';
import { readBytes } from './file-bytes.js';
import { HttpError } from './http.js';
import type { JobsView } from './jobs-view.js';
import { pointsAfter } from './run-metrics.js';
import type { ServerState } from './server-watch.js';

/** More new points than this and the page is told to fetch the curves again (downsampled). */
const MAX_PUSHED_POINTS = 2000;
/** A log grown by more than this between ticks is sent from its last bytes. */
const MAX_LOG_BYTES = 64 * 1024;
/** The jobs table is sent when it changes, and this often anyway (its ETAs count down). */
const LIST_REFRESH_MS = 5000;
const KEEPALIVE_MS = 15_000;

interface Client {
  res: http.ServerResponse;
  list: boolean;
  listSignature: string;
  listSentAt: number;
  /** Job id → the last step the page has (null: it has none yet). */
  metrics: Map<number, number | null>;
  problems: Set<number>;
  log: { id: number; offset: number } | null;
  servers: boolean;
}

function parseMetricsParam(text: string | null): Map<number, number | null> {
  const out = new Map<number, number | null>();
  if (!text) return out;
  for (const part of text.split(',')) {
    const [id, step] = part.split(':');
    const n = Number(id);
    const s = step === undefined || step === '' ? null : Number(step);
    if (!Number.isInteger(n) || n < 1 || (s !== null && !Number.isFinite(s))) {
      throw new HttpError(
        400,
        `query parameter metrics: expected JOB_ID:STEP,…, got ${JSON.stringify(text)}`,
      );
    }
    out.set(n, s);
  }
  return out;
}

/** A file's text from `offset` on (at most its last `max` bytes), and its size; null when it is missing. */
function readFrom(file: string, offset: number, max: number): { text: string; size: number } | null {
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return null;
  }
  if (size <= offset) return { text: '', size };
  return { text: readBytes(file, Math.max(offset, size - max), size).toString('utf8'), size };
}

export class LiveFeed {
  private readonly clients = new Set<Client>();
  private timer: NodeJS.Timeout | null = null;
  private keepalive: NodeJS.Timeout | null = null;

  constructor(
    private readonly jobs: JobsView,
    private readonly intervalMs: number,
  ) {}

  open(req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
    const logId = url.searchParams.get('log');
    const client: Client = {
      res,
      list: url.searchParams.get('list') === '1',
      listSignature: '',
      listSentAt: 0,
      metrics: parseMetricsParam(url.searchParams.get('metrics')),
      problems: new Set(),
      log: null,
      servers: url.searchParams.get('servers') === '1',
    };
    if (logId !== null) {
      const id = Number(logId);
      if (!Number.isInteger(id) || id < 1) {
        throw new HttpError(400, `query parameter log: expected a job id, got ${JSON.stringify(logId)}`);
      }
      // From the end as it is now: the page fetched the tail before opening the stream.
      const file = this.jobs.job(id).logPath;
      client.log = { id, offset: existsSync(file) ? statSync(file).size : 0 };
    }
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
    });
    res.write('retry: 2000\n\n');
    this.clients.add(client);
    req.on('close', () => this.clients.delete(client));
    this.tick();
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
    this.keepalive = setInterval(() => {
      for (const c of this.clients) c.res.write(': keepalive\n\n');
    }, KEEPALIVE_MS);
    this.keepalive.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.keepalive) clearInterval(this.keepalive);
    for (const c of this.clients) c.res.end();
    this.clients.clear();
  }

  /** Each polled server's state with only its newest point (pages fetch the history once). */
  pushServers(states: ServerState[]): void {
    const latest = states.map((s) => ({ ...s, history: s.history.slice(-1) }));
    for (const c of this.clients) if (c.servers) send(c, 'servers', latest);
  }

  private tick(): void {
    if (this.clients.size === 0) return;
    this.pushList();
    this.pushMetrics();
    this.pushLogs();
  }

  private pushList(): void {
    const listeners = [...this.clients].filter((c) => c.list);
    if (listeners.length === 0) return;
    const jobs = this.jobs.list();
    const signature = jobs
      .map((j) => `${j.id}:${j.status}:${j.step}:${j.updatedAt}:${j.runDirExists}`)
      .join(',');
    const now = Date.now();
    for (const c of listeners) {
      if (c.listSignature === signature && now - c.listSentAt < LIST_REFRESH_MS) continue;
      c.listSignature = signature;
      c.listSentAt = now;
      send(c, 'jobs', jobs);
    }
  }

  private pushMetrics(): void {
    const ids = new Set<number>();
    for (const c of this.clients) for (const id of c.metrics.keys()) ids.add(id);
    for (const id of ids) {
      let run: ReturnType<JobsView['runMetrics']>;
      try {
        run = this.jobs.runMetrics(id);
      } catch (e) {
        for (const c of this.clients) {
          if (!c.metrics.has(id) || c.problems.has(id)) continue;
          c.problems.add(id);
          send(c, 'problem', { id, message: (e as Error).message });
        }
        continue;
      }
      for (const c of this.clients) {
        if (!c.metrics.has(id) || run.lastStep === null) continue;
        c.problems.delete(id);
        const mark = c.metrics.get(id)!;
        if (mark !== null && run.lastStep === mark) continue;
        if (mark !== null && run.lastStep < mark) {
          // A resumed run logs again from its checkpoint: the page's later points are gone.
          c.metrics.set(id, run.lastStep);
          send(c, 'reset', { id });
          continue;
        }
        const curves = pointsAfter(run, mark ?? Number.NEGATIVE_INFINITY);
        const count = Object.values(curves).reduce((n, cv) => n + cv.x.length, 0);
        c.metrics.set(id, run.lastStep);
        if (count > MAX_PUSHED_POINTS) send(c, 'reset', { id });
        else send(c, 'metrics', { id, lastStep: run.lastStep, curves });
      }
    }
  }

  private pushLogs(): void {
    for (const c of this.clients) {
      if (!c.log) continue;
      let file: string;
      try {
        file = this.jobs.job(c.log.id).logPath;
      } catch {
        continue;
      }
      const read = readFrom(file, c.log.offset, MAX_LOG_BYTES);
      if (!read) continue;
      // A log shorter than what was sent was started again: send it from its beginning.
      if (read.size < c.log.offset) c.log.offset = 0;
      else if (read.text !== '') {
        c.log.offset = read.size;
        send(c, 'log', { id: c.log.id, text: read.text });
      }
    }
  }
}

function send(c: Client, event: string, data: unknown): void {
  c.res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

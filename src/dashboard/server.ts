/**
 * The dashboard: one Node HTTP server that serves the page (plain ES modules, HTML and CSS from
 * ./public, uPlot from node_modules: no build step), its JSON API and its event stream, in the process
 * `vla dashboard` starts. Every request carries the token (see auth.ts); actions are POSTs that carry it
 * in a header and come from the page's own origin. Files are named by their place inside the folders
 * it was given (see folders.ts).
 */
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JobRegistry } from '../jobs/registry.js';
import { TOKEN_HEADER, TokenCheck } from './auth.js';
import { DatasetsView } from './datasets-view.js';
import { EvalsView } from './evals-view.js';
import { Folders } from './folders.js';
import { HttpError, sendJson, sendText } from './http.js';
import { JobsView } from './jobs-view.js';
import { LiveFeed } from './live.js';
import { apiRoutes, dispatch, type Route } from './routes.js';
import { CONTENT_TYPES, sendFile } from './send-file.js';
import { ServerWatch } from './server-watch.js';

export interface DashboardOptions {
  host: string;
  port: number;
  token: string;
  registry: JobRegistry;
  /** Dataset folders (a dataset, or a folder of them). */
  data: string[];
  /** Folders searched for evaluations (eval_info.json). */
  evals: string[];
  /** Policy servers to watch (ws:// or http:// URLs). */
  servers: string[];
  /** The TensorFlow.js backend a resumed job is started with (the global --backend). */
  backend?: string;
  /** How often open pages hear of changes (default 1 s) and servers are polled (default 2 s). */
  liveIntervalMs?: number;
  serverIntervalMs?: number;
}

const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url));
const UPLOT_DIR = path.dirname(createRequire(import.meta.url).resolve('uplot'));
const VENDOR: Record<string, string> = {
  'uPlot.esm.js': path.join(UPLOT_DIR, 'uPlot.esm.js'),
  'uPlot.min.css': path.join(UPLOT_DIR, 'uPlot.min.css'),
};

/** Sent with every answer: no framing, no sniffing, no referrer (page URLs may hold the token). */
const SECURITY_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Content-Security-Policy':
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
};

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export class DashboardServer {
  private readonly http: http.Server;
  private readonly tokens: TokenCheck;
  private readonly routes: Route[];
  private readonly page: string;
  private readonly publicFiles: Set<string>;
  private readonly jobs: JobsView;
  private readonly servers: ServerWatch;
  private readonly live: LiveFeed;

  private constructor(private readonly opts: DashboardOptions) {
    this.tokens = new TokenCheck(opts.token);
    this.jobs = new JobsView(opts.registry, { backend: opts.backend });
    const workspace = this.jobs.workspace;
    const evals = new EvalsView(new Folders(opts.evals), workspace);
    const datasets = new DatasetsView(new Folders(opts.data), opts.data, workspace, () =>
      this.jobs.datasets(),
    );
    this.live = new LiveFeed(this.jobs, opts.liveIntervalMs ?? 1000);
    this.servers = new ServerWatch({
      intervalMs: opts.serverIntervalMs ?? 2000,
      onUpdate: () => this.live.pushServers(this.servers.states()),
    });
    for (const url of opts.servers) this.servers.add(url);
    this.routes = apiRoutes({ jobs: this.jobs, evals, datasets, servers: this.servers, live: this.live });
    this.publicFiles = new Set(readdirSync(PUBLIC_DIR).filter((f) => path.extname(f) in CONTENT_TYPES));
    this.page = readFileSync(path.join(PUBLIC_DIR, 'index.html'), 'utf8').replace(
      '__VLA_TOKEN__',
      escapeHtml(opts.token),
    );
    this.http = http.createServer({ headersTimeout: 10_000, requestTimeout: 60_000 }, (req, res) => {
      void this.onRequest(req, res);
    });
  }

  static async start(opts: DashboardOptions): Promise<DashboardServer> {
    const server = new DashboardServer(opts);
    await new Promise<void>((resolve, reject) => {
      server.http.once('error', reject);
      server.http.listen(opts.port, opts.host, () => {
        server.http.off('error', reject);
        resolve();
      });
    });
    server.live.start();
    server.servers.start();
    return server;
  }

  get port(): number {
    return (this.http.address() as AddressInfo).port;
  }

  /** The address without the token. */
  get origin(): string {
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return `http://${host}:${this.port}`;
  }

  /** The address to open: the token in it, which the first load turns into a cookie. */
  get url(): string {
    return `${this.origin}/?token=${encodeURIComponent(this.opts.token)}`;
  }

  async close(): Promise<void> {
    this.live.stop();
    await this.servers.stop();
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  private async onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    try {
      const url = new URL(req.url ?? '/', 'http://dashboard');
      this.authorize(req, url, res);
      if (res.headersSent) return;
      if (await dispatch(this.routes, { req, res, url })) return;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        throw new HttpError(405, `${req.method} ${url.pathname}: expected GET`);
      }
      this.serveStatic(req, res, url.pathname);
    } catch (e) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const status = e instanceof HttpError ? e.status : 500;
      const message = e instanceof HttpError ? e.message : `${(e as Error).name}: ${(e as Error).message}`;
      // The page's scripts read JSON; a person who typed an address reads a sentence.
      if ((req.url ?? '').startsWith('/api/')) sendJson(res, status, { error: message });
      else sendText(res, status, `${message}\n`);
    }
  }

  /**
   * Refuses a request without the token (401), and an action without it in the header or from another
   * origin (403). The first page load, with the token in its URL, gets the cookie and is sent on to
   * the same page without it, so the token does not stay in the address bar or the history.
   */
  private authorize(req: http.IncomingMessage, url: URL, res: http.ServerResponse): void {
    const source = this.tokens.source(req, url);
    if (source === null) {
      const given = url.searchParams.has('token') || req.headers[TOKEN_HEADER] !== undefined;
      throw new HttpError(
        401,
        `${given ? 'wrong' : 'missing'} token: open the address vla dashboard printed (${this.origin}/?token=…), or send the token as ?token= or the ${TOKEN_HEADER} header`,
      );
    }
    if (req.method === 'POST') {
      if (source !== 'header') {
        throw new HttpError(
          403,
          `${url.pathname}: actions need the token in the ${TOKEN_HEADER} header (the page sends it)`,
        );
      }
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== `http://${req.headers.host}`) {
        throw new HttpError(
          403,
          `${url.pathname}: expected a request from this dashboard (http://${req.headers.host}), got one from ${origin}`,
        );
      }
    }
    if (source === 'query' && req.method === 'GET' && url.pathname === '/') {
      url.searchParams.delete('token');
      res
        .writeHead(303, {
          'Set-Cookie': this.tokens.cookie(),
          Location: `/${url.search}`,
          'Cache-Control': 'no-store',
        })
        .end();
    }
  }

  private serveStatic(req: http.IncomingMessage, res: http.ServerResponse, pathname: string): void {
    if (pathname === '/' || pathname === '/index.html') {
      res
        .writeHead(200, {
          'Content-Type': CONTENT_TYPES['.html']!,
          'Content-Length': Buffer.byteLength(this.page),
          'Cache-Control': 'no-store',
          // Refreshes the cookie for a page opened with the header alone.
          'Set-Cookie': this.tokens.cookie(),
        })
        .end(req.method === 'HEAD' ? undefined : this.page);
      return;
    }
    const staticName = /^\/static\/([\w.-]+)$/.exec(pathname)?.[1];
    if (staticName && this.publicFiles.has(staticName) && staticName !== 'index.html') {
      const type = CONTENT_TYPES[path.extname(staticName)]!;
      sendFile(req, res, path.join(PUBLIC_DIR, staticName), type, staticName);
      return;
    }
    const vendorName = /^\/vendor\/([\w.-]+)$/.exec(pathname)?.[1];
    if (vendorName && VENDOR[vendorName]) {
      sendFile(req, res, VENDOR[vendorName], CONTENT_TYPES[path.extname(vendorName)]!, vendorName);
      return;
    }
    sendText(res, 404, `${pathname}: no such page (the dashboard is at /)\n`);
  }
}

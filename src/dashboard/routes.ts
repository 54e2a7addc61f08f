/**
 * The dashboard's API: each route a method, a path and what it answers. Reads are GETs that answer
 * JSON (or a file, a PNG, an event stream); actions are POSTs. Paths name jobs by id and files by
 * their place inside the folders the dashboard was given, never by a path of the machine.
 */
import type http from 'node:http';
import type { DatasetsView } from './datasets-view.js';
import type { EvalsView } from './evals-view.js';
import { HttpError, intParam, numberParam, param, readJsonBody, sendJson } from './http.js';
import type { JobsView } from './jobs-view.js';
import type { LiveFeed } from './live.js';
import { runCurves } from './run-metrics.js';
import { CONTENT_TYPES, sendFile } from './send-file.js';
import type { ServerWatch } from './server-watch.js';

export interface Views {
  jobs: JobsView;
  evals: EvalsView;
  datasets: DatasetsView;
  servers: ServerWatch;
  live: LiveFeed;
}

export interface Request {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  url: URL;
  /** The pattern's groups. */
  params: string[];
}

export interface Route {
  method: 'GET' | 'POST';
  pattern: RegExp;
  /** A value is sent as JSON; `undefined` means the handler answered itself. */
  handle(r: Request): unknown | Promise<unknown>;
}

/** Points per curve a chart gets unless it asks for fewer: about one per pixel of a wide chart. */
const CURVE_POINTS = 2000;

const jobId = (r: Request) => Number(r.params[0]);

export function apiRoutes(v: Views): Route[] {
  return [
    { method: 'GET', pattern: /^\/api\/jobs$/, handle: () => v.jobs.list() },
    { method: 'GET', pattern: /^\/api\/jobs\/(\d+)$/, handle: (r) => v.jobs.detail(jobId(r)) },
    {
      method: 'GET',
      pattern: /^\/api\/jobs\/(\d+)\/curves$/,
      handle: (r) => {
        const run = v.jobs.runMetrics(jobId(r));
        const keys = r.url.searchParams.get('keys');
        const points = Math.min(intParam(r.url, 'points', 4, CURVE_POINTS), 20_000);
        const from = numberParam(r.url, 'from') ?? undefined;
        const to = numberParam(r.url, 'to') ?? undefined;
        return {
          id: jobId(r),
          rows: run.rows,
          firstStep: run.firstStep,
          lastStep: run.lastStep,
          curves: runCurves(run, keys ? keys.split(',') : null, points, from, to),
        };
      },
    },
    {
      method: 'GET',
      pattern: /^\/api\/jobs\/(\d+)\/log$/,
      handle: (r) => ({ text: v.jobs.log(jobId(r), Math.min(intParam(r.url, 'lines', 1, 200), 5000)) }),
    },
    { method: 'POST', pattern: /^\/api\/jobs\/(\d+)\/stop$/, handle: (r) => v.jobs.stop(jobId(r)) },
    { method: 'POST', pattern: /^\/api\/jobs\/(\d+)\/resume$/, handle: (r) => v.jobs.resume(jobId(r)) },

    { method: 'GET', pattern: /^\/api\/evals$/, handle: () => v.evals.list() },
    { method: 'GET', pattern: /^\/api\/evals\/training$/, handle: () => v.jobs.trainingEvals(CURVE_POINTS) },
    { method: 'GET', pattern: /^\/api\/evals\/detail$/, handle: (r) => v.evals.detail(param(r.url, 'eval')) },
    {
      method: 'GET',
      pattern: /^\/api\/evals\/video$/,
      handle: (r) => {
        const name = param(r.url, 'file');
        sendFile(r.req, r.res, v.evals.video(name), CONTENT_TYPES['.mp4']!, `video ${name}`);
      },
    },

    { method: 'GET', pattern: /^\/api\/datasets$/, handle: () => v.datasets.list() },
    {
      method: 'GET',
      pattern: /^\/api\/datasets\/detail$/,
      handle: (r) => v.datasets.detail(param(r.url, 'dataset')),
    },
    {
      method: 'GET',
      pattern: /^\/api\/datasets\/episode$/,
      handle: (r) => v.datasets.episode(param(r.url, 'dataset'), intParam(r.url, 'episode', 0)),
    },
    {
      method: 'GET',
      pattern: /^\/api\/datasets\/frame$/,
      handle: async (r) => {
        const png = await v.datasets.framePng(
          param(r.url, 'dataset'),
          intParam(r.url, 'episode', 0),
          param(r.url, 'camera'),
          intParam(r.url, 'frame', 0),
        );
        r.res
          .writeHead(200, {
            'Content-Type': CONTENT_TYPES['.png']!,
            'Content-Length': png.length,
            // A recorded frame never changes while its dataset is not rewritten.
            'Cache-Control': 'private, max-age=300',
          })
          .end(png);
      },
    },
    {
      method: 'GET',
      pattern: /^\/api\/datasets\/validate$/,
      handle: (r) => v.datasets.validate(param(r.url, 'dataset')),
    },

    { method: 'GET', pattern: /^\/api\/servers$/, handle: () => v.servers.states() },
    {
      method: 'POST',
      pattern: /^\/api\/servers$/,
      handle: async (r) => {
        const body = await readJsonBody(r.req);
        if (typeof body.url !== 'string' || body.url.trim() === '') {
          throw new HttpError(
            400,
            `url: expected a server URL such as ws://127.0.0.1:8000, got ${JSON.stringify(body.url ?? null)}`,
          );
        }
        return v.servers.add(body.url.trim());
      },
    },
    {
      method: 'POST',
      pattern: /^\/api\/servers\/remove$/,
      handle: async (r) => {
        const body = await readJsonBody(r.req);
        if (typeof body.url !== 'string') {
          throw new HttpError(
            400,
            `url: expected the server URL to stop watching, got ${JSON.stringify(body.url ?? null)}`,
          );
        }
        return { removed: v.servers.remove(body.url) };
      },
    },

    {
      method: 'GET',
      pattern: /^\/api\/events$/,
      handle: (r) => {
        v.live.open(r.req, r.res, r.url);
      },
    },
  ];
}

/** Answers a request from the table: false when no route matches its path. */
export async function dispatch(routes: Route[], r: Omit<Request, 'params'>): Promise<boolean> {
  const path = r.url.pathname;
  const matching = routes.filter((route) => route.pattern.test(path));
  if (matching.length === 0) return false;
  const route = matching.find(
    (m) => m.method === r.req.method || (m.method === 'GET' && r.req.method === 'HEAD'),
  );
  if (!route) {
    r.res.setHeader('Allow', [...new Set(matching.map((m) => m.method))].join(', '));
    throw new HttpError(
      405,
      `${r.req.method} ${path}: expected ${matching.map((m) => m.method).join(' or ')}`,
    );
  }
  const params = route.pattern.exec(path)!.slice(1);
  const value = await route.handle({ ...r, params });
  if (value !== undefined) sendJson(r.res, 200, value);
  return true;
}

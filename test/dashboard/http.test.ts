/**
 * The dashboard's server over real HTTP, without a browser: the token on every request and in the
 * header for actions, paths refused outside its folders, byte ranges for video, clear errors naming
 * what is wrong, the event stream, and the stop and resume actions against real job processes.
 */
import { appendFileSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DashboardServer } from '../../src/dashboard/server.js';
import { metricsPath } from '../../src/jobs/metrics.js';
import type { Job } from '../../src/jobs/registry.js';
import {
  brokenDataset,
  newWorkspace,
  recordDataset,
  runFinishedJob,
  startDashboard,
  startLiveJob,
  TOKEN,
  type Workspace,
  writeEval,
} from './workspace.js';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  json: () => { error?: string } & Record<string, unknown>;
}

/** A raw request: the path goes out byte for byte (fetch would resolve `..` in it). */
function request(
  server: DashboardServer,
  pathAndQuery: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: server.port,
        path: pathAndQuery,
        method: opts.method ?? 'GET',
        headers: opts.headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          const text = body.toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            text,
            json: () => JSON.parse(text),
          });
        });
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

const auth = { 'x-vla-token': TOKEN };

let ws: Workspace;
let server: DashboardServer;
let finished: Job;
let gone: Job;

beforeAll(async () => {
  ws = newWorkspace('http');
  await recordDataset(path.join(ws.dir, 'datasets', 'demo'), 1, 12);
  brokenDataset(path.join(ws.dir, 'datasets', 'broken'));
  await writeEval(path.join(ws.dir, 'outputs', 'sim_eval'), 20);
  finished = await runFinishedJob(ws, 'base', { steps: 5000, dataset: 'datasets/demo' });
  gone = await runFinishedJob(ws, 'gone', { steps: 10, dataset: 'datasets/demo' });
  rmSync(gone.runDir, { recursive: true });
  server = await startDashboard(ws, { data: [path.join(ws.dir, 'datasets')] });
}, 60_000);

afterAll(async () => {
  await server?.close();
  await ws?.cleanup();
});

describe('the token', () => {
  it('is required on every request: pages, files and API alike', async () => {
    for (const p of ['/', '/static/app.js', '/vendor/uPlot.esm.js', '/api/jobs', '/api/events?list=1']) {
      const r = await request(server, p);
      expect(r.status, p).toBe(401);
      expect(r.text).toMatch(
        /missing token: open the address vla dashboard printed \(http:\/\/127\.0\.0\.1:\d+\/\?token=…\)/,
      );
    }
    const wrong = await request(server, '/api/jobs', {
      headers: { 'x-vla-token': 'guess-guess-guess-guess' },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.json().error).toMatch(/^wrong token/);
  });

  it('in the URL of the first load becomes a cookie, and the address loses it', async () => {
    const first = await request(server, `/?token=${TOKEN}`);
    expect(first.status).toBe(303);
    expect(first.headers.location).toBe('/');
    const cookie = first.headers['set-cookie']![0]!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    const page = await request(server, '/', { headers: { cookie: cookie.split(';')[0]! } });
    expect(page.status).toBe(200);
    expect(page.text).toContain(`<meta name="vla-token" content="${TOKEN}" />`);
    expect(page.headers['content-security-policy']).toMatch(/default-src 'self'/);
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    const css = await request(server, '/vendor/uPlot.min.css', {
      headers: { cookie: cookie.split(';')[0]! },
    });
    expect(css.status).toBe(200);
    expect(css.headers['content-type']).toMatch(/text\/css/);
  });

  it('must be in the header for an action, and the action must come from the page’s origin', async () => {
    const cookieOnly = await request(server, `/api/jobs/${finished.id}/stop`, {
      method: 'POST',
      headers: { cookie: `vla_dashboard_token=${TOKEN}` },
    });
    expect(cookieOnly.status).toBe(403);
    expect(cookieOnly.json().error).toBe(
      `/api/jobs/${finished.id}/stop: actions need the token in the x-vla-token header (the page sends it)`,
    );
    const query = await request(server, `/api/jobs/${finished.id}/stop?token=${TOKEN}`, { method: 'POST' });
    expect(query.status).toBe(403);
    const foreign = await request(server, `/api/jobs/${finished.id}/stop`, {
      method: 'POST',
      headers: { ...auth, origin: 'http://evil.example' },
    });
    expect(foreign.status).toBe(403);
    expect(foreign.json().error).toMatch(
      /expected a request from this dashboard \(http:\/\/127\.0\.0\.1:\d+\), got one from http:\/\/evil\.example/,
    );
    const get = await request(server, `/api/jobs/${finished.id}/stop`, { headers: auth });
    expect(get.status).toBe(405);
    expect(get.json().error).toBe(`GET /api/jobs/${finished.id}/stop: expected POST`);
  });
});

describe('paths', () => {
  it('with ".." or absolute are refused before anything is read, saying why', async () => {
    const cases: Array<[string, number, RegExp]> = [
      [
        '/api/datasets/detail?dataset=../../etc',
        403,
        /^dataset: expected a path inside the dashboard's folders \(datasets\), got "\.\.\/\.\.\/etc", which leads out of them with "\.\."$/,
      ],
      ['/api/datasets/detail?dataset=datasets/../../x', 403, /leads out of them with "\.\."/],
      [
        '/api/datasets/detail?dataset=/etc',
        400,
        /^dataset: expected a path relative to the dashboard's folders \(datasets\), got the absolute path "\/etc"$/,
      ],
      [
        '/api/evals/video?file=outputs/sim_eval/videos/../../../../etc/passwd',
        403,
        /^video: .*leads out of them with "\.\."$/,
      ],
      ['/api/evals/video?file=%2Fetc%2Fpasswd', 400, /absolute path "\/etc\/passwd"/],
      [
        '/api/evals/video?file=outputs/sim_eval/eval_info.json',
        400,
        /^video: expected an \.mp4 file, got "outputs\/sim_eval\/eval_info\.json"$/,
      ],
      [
        '/api/evals/detail?eval=datasets/demo',
        404,
        /^eval: no folder named "datasets" \(the dashboard's folders: outputs\)$/,
      ],
      ['/static/../server.ts', 404, /no such page/],
    ];
    for (const [p, status, message] of cases) {
      const r = await request(server, p, { headers: auth });
      expect(r.status, p).toBe(status);
      expect(p.startsWith('/api/') ? r.json().error : r.text.trim(), p).toMatch(message);
    }
  });

  it('through a link out of a folder are refused', async () => {
    const videos = path.join(ws.dir, 'outputs', 'sim_eval', 'videos');
    writeFileSync(path.join(ws.dir, 'secret.mp4'), 'not for you');
    symlinkSync(path.join(ws.dir, 'secret.mp4'), path.join(videos, 'escape.mp4'));
    const r = await request(server, '/api/evals/video?file=outputs/sim_eval/videos/escape.mp4', {
      headers: auth,
    });
    expect(r.status).toBe(403);
    expect(r.json().error).toMatch(/is a link that leads out of the folder outputs/);
    rmSync(path.join(videos, 'escape.mp4'));
  });
});

describe('videos', () => {
  const file = '/api/evals/video?file=outputs/sim_eval/videos/pick_place_episode_000.mp4';

  it('are served whole or by byte range, so a <video> can seek', async () => {
    const whole = await request(server, file, { headers: auth });
    expect(whole.status).toBe(200);
    expect(whole.headers['content-type']).toBe('video/mp4');
    expect(whole.headers['accept-ranges']).toBe('bytes');
    const size = whole.body.length;
    const part = await request(server, file, { headers: { ...auth, range: 'bytes=10-29' } });
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 10-29/${size}`);
    expect(part.body).toEqual(whole.body.subarray(10, 30));
    const tail = await request(server, file, { headers: { ...auth, range: 'bytes=-16' } });
    expect(tail.body).toEqual(whole.body.subarray(size - 16));
    const beyond = await request(server, file, { headers: { ...auth, range: `bytes=${size}-` } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers['content-range']).toBe(`bytes */${size}`);
  });
});

describe('what is wrong is said, naming the thing', () => {
  it('a job that is not there, a removed run folder, a corrupt metrics file', async () => {
    const missing = await request(server, '/api/jobs/99', { headers: auth });
    expect(missing.status).toBe(404);
    expect(missing.json().error).toMatch(
      /^no job 99 in .*jobs\.db: known ids are 1, 2 \(see vla jobs list\)$/,
    );
    const removed = await request(server, `/api/jobs/${gone.id}/curves`, { headers: auth });
    expect(removed.status).toBe(410);
    expect(removed.json().error).toBe(
      `job ${gone.id}: run folder checkpoints/pi0_aloha/gone was removed, and its metrics.jsonl with it (the registry still lists the job)`,
    );
    const detail = (await request(server, `/api/jobs/${gone.id}`, { headers: auth })).json();
    expect(detail.problems).toEqual([
      `run folder checkpoints/pi0_aloha/gone was removed: job ${gone.id}'s metrics and checkpoints are gone (the registry still lists it; vla jobs rm ${gone.id} forgets it)`,
    ]);
    const corrupt = await runFinishedJob(ws, 'corrupt', { steps: 10, dataset: 'datasets/demo' });
    const lines = `${'{"step": 11, "loss": 1}\n'}not json at all\n{"step": 12, "loss": 1}\n`;
    appendFileSync(metricsPath(corrupt.runDir), lines);
    const bad = await request(server, `/api/jobs/${corrupt.id}/curves`, { headers: auth });
    expect(bad.status).toBe(422);
    expect(bad.json().error).toMatch(
      /^job 3: .*metrics\.jsonl:12: expected a JSON object, got "not json at all"$/,
    );
  });

  it('a corrupt dataset: listed with its problem, its page a 422 naming it', async () => {
    const list = (await request(server, '/api/datasets', { headers: auth })).json() as unknown as Array<
      Record<string, unknown>
    >;
    const broken = list.find((d) => d.id === 'datasets/broken')!;
    expect(broken.error).toMatch(
      /datasets\/broken\/meta\/info\.json: codebase_version: expected string, got nothing \(missing\)/,
    );
    const page = await request(server, '/api/datasets/detail?dataset=datasets/broken', { headers: auth });
    expect(page.status).toBe(422);
    expect(page.json().error).toMatch(
      /^dataset datasets\/broken cannot be read: .*codebase_version: expected string/,
    );
    const frame = await request(
      server,
      '/api/datasets/frame?dataset=datasets/demo&episode=0&camera=cam_side&frame=0',
      { headers: auth },
    );
    expect(frame.status).toBe(404);
    expect(frame.json().error).toMatch(/no camera "cam_side" \(cameras: observation\.images\.cam_high\)/);
    const past = await request(
      server,
      '/api/datasets/frame?dataset=datasets/demo&episode=0&camera=cam_high&frame=12',
      { headers: auth },
    );
    expect(past.json().error).toBe('dataset datasets/demo, episode 0: frame 12 is outside 0..11');
    const param = await request(server, '/api/datasets/episode?dataset=datasets/demo&episode=-1', {
      headers: auth,
    });
    expect(param.status).toBe(400);
    expect(param.json().error).toBe('query parameter episode: expected an integer >= 0, got "-1" (string)');
  });

  it('a server that cannot be watched, and a body that is not JSON', async () => {
    const bad = await request(server, '/api/servers', {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ url: 'gopher://x' }),
    });
    expect(bad.status).toBe(400);
    expect(bad.json().error).toBe(
      'server URL: expected ws:// or http:// (what vla serve prints), got "gopher:" in "gopher://x"',
    );
    const notJson = await request(server, '/api/servers', { method: 'POST', headers: auth, body: '{url:' });
    expect(notJson.status).toBe(400);
    expect(notJson.json().error).toMatch(/^request body: expected JSON, got "\{url:"/);
  });
});

describe('curves', () => {
  it('of a 5,000-step run come cut to the points asked for, over the whole run or a window of it', async () => {
    const r = (
      await request(server, `/api/jobs/${finished.id}/curves?keys=loss,lr&points=200`, { headers: auth })
    ).json();
    const curves = r.curves as Record<string, { x: number[]; y: number[] }>;
    expect(Object.keys(curves)).toEqual(['loss', 'lr']);
    expect(r.rows).toBe(5000);
    expect(curves.loss!.x.length).toBeLessThanOrEqual(200);
    expect(curves.loss!.x[0]).toBe(1);
    expect(curves.loss!.x.at(-1)).toBe(5000);
    const w = (
      await request(server, `/api/jobs/${finished.id}/curves?keys=loss&from=100&to=149`, { headers: auth })
    ).json();
    expect((w.curves as Record<string, { x: number[] }>).loss!.x).toEqual(
      Array.from({ length: 50 }, (_, i) => 100 + i),
    );
  });
});

/** Reads an event stream until `until` says it has what it waits for. */
async function readEvents(
  server: DashboardServer,
  query: string,
  until: (events: Array<{ event: string; data: unknown }>) => boolean,
  timeoutMs = 15_000,
): Promise<Array<{ event: string; data: unknown }>> {
  return new Promise((resolve, reject) => {
    const events: Array<{ event: string; data: unknown }> = [];
    const req = http.get(
      { host: '127.0.0.1', port: server.port, path: `/api/events?${query}`, headers: auth },
      (res) => {
        let buffer = '';
        res.on('data', (c: Buffer) => {
          buffer += c.toString();
          let end = buffer.indexOf('\n\n');
          while (end >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const event = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (event && data) events.push({ event, data: JSON.parse(data) });
            end = buffer.indexOf('\n\n');
          }
          if (until(events)) {
            req.destroy();
            resolve(events);
          }
        });
      },
    );
    req.on('error', () => {});
    setTimeout(() => {
      req.destroy();
      reject(new Error(`events so far: ${JSON.stringify(events).slice(0, 500)}`));
    }, timeoutMs);
  });
}

describe('a running job, through the API', () => {
  let live: Job;

  beforeAll(async () => {
    live = await startLiveJob(ws, 'live', { steps: 10_000, dataset: 'datasets/demo', intervalMs: 50 });
  }, 40_000);

  it('streams its new points, its log and the jobs table as they come', async () => {
    const events = await readEvents(server, `list=1&metrics=${live.id}:0&log=${live.id}`, (es) => {
      const steps = es
        .filter((e) => e.event === 'metrics')
        .flatMap((e) => (e.data as { curves: { loss?: { x: number[] } } }).curves.loss?.x ?? []);
      return steps.length >= 10 && es.some((e) => e.event === 'jobs') && es.some((e) => e.event === 'log');
    });
    const steps = events
      .filter((e) => e.event === 'metrics')
      .flatMap((e) => (e.data as { curves: { loss: { x: number[] } } }).curves.loss.x);
    expect(steps.slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
    // Each point once, in order, however the ticks cut them.
    expect(steps).toEqual([...new Set(steps)].sort((a, b) => a - b));
    const table = events.find((e) => e.event === 'jobs')!.data as Array<{ id: number; status: string }>;
    expect(table.find((j) => j.id === live.id)!.status).toBe('running');
  });

  it('stops as vla jobs stop stops it, and resumes as vla jobs resume does', async () => {
    const stop = await request(server, `/api/jobs/${live.id}/stop`, { method: 'POST', headers: auth });
    expect(stop.status).toBe(200);
    expect(stop.json().pid).toBe(live.pid);
    expect((stop.json().job as { status: string }).status).toBe('stopping');
    const deadline = Date.now() + 20_000;
    while (ws.registry.require(live.id).status !== 'stopped' && Date.now() < deadline) await sleep(100);
    const stopped = ws.registry.require(live.id);
    expect(stopped.status).toBe('stopped');
    expect(ws.registry.events(live.id).map((e) => e.message)).toContain('stop requested');
    const again = await request(server, `/api/jobs/${live.id}/stop`, { method: 'POST', headers: auth });
    expect(again.status).toBe(409);
    expect(again.json().error).toBe(`job ${live.id} is already stopped (at step ${stopped.step})`);

    const resume = await request(server, `/api/jobs/${live.id}/resume`, { method: 'POST', headers: auth });
    expect(resume.status).toBe(200);
    const pid = resume.json().pid as number;
    // The trainer `vla jobs _run` started: this test only needs it to have been started.
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
    const resumed = ws.registry.require(live.id);
    expect(resumed.pid).toBe(pid);
    expect(ws.registry.events(live.id).at(-1)!.message).toBe(`resume requested from step ${stopped.step}`);
    const done = await request(server, `/api/jobs/${finished.id}/resume`, { method: 'POST', headers: auth });
    expect(done.status).toBe(409);
    expect(done.json().error).toMatch(/^job 1 finished all 5000 steps: nothing to resume/);
  });
});

describe('a folder of evaluations', () => {
  it('lists each evaluation once, a broken eval_info.json with its problem', async () => {
    mkdirSync(path.join(ws.dir, 'outputs', 'bad_eval'), { recursive: true });
    writeFileSync(
      path.join(ws.dir, 'outputs', 'bad_eval', 'eval_info.json'),
      '{"per_task": [], "overall": {"episodes": "two"}}',
    );
    const list = (await request(server, '/api/evals', { headers: auth })).json() as unknown as Array<
      Record<string, unknown>
    >;
    expect(list.map((e) => e.id).sort()).toEqual(['outputs/bad_eval', 'outputs/sim_eval']);
    const bad = list.find((e) => e.id === 'outputs/bad_eval')!;
    expect(bad.error).toMatch(
      /^outputs\/bad_eval\/eval_info\.json: overall\.episodes: expected number, got "two" \(string\)/,
    );
    const good = (await request(server, '/api/evals/detail?eval=outputs/sim_eval', { headers: auth })).json();
    expect(good.overall).toEqual({
      episodes: 2,
      pc_success: 50,
      avg_sum_reward: 26.875,
      avg_max_reward: 0.75,
    });
    expect(good.videoFiles).toEqual([
      {
        task: 'pick_place',
        file: 'pick_place_episode_000.mp4',
        id: 'outputs/sim_eval/videos/pick_place_episode_000.mp4',
      },
    ]);
  });
});

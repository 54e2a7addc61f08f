/**
 * The Servers page in headless chromium, watching a real `vla serve` process that robots talk to: its
 * robots, requests, latency and batch sizes over time from its /metrics; a server added from the page;
 * and what the page says once the server has gone away.
 */
import { PolicyClient } from '@vla-orchestrator/client';
import type { Browser, Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exampleObservation } from '../../src/client/examples.js';
import { loadRobot } from '../../src/config/load.js';
import type { DashboardServer } from '../../src/dashboard/server.js';
import { type ServeProcess, startServe, stopServe } from '../serving/serve-process.js';
import { HAS_CHROMIUM, launchBrowser, NO_CHROMIUM, newPage, screenshot } from './browser.js';
import { newWorkspace, startDashboard, type Workspace } from './workspace.js';

describe.skipIf(!HAS_CHROMIUM)('the Servers page in chromium', () => {
  let ws: Workspace;
  let serve: ServeProcess;
  let server: DashboardServer;
  let browser: Browser;
  let page: Page;
  let errors: string[];
  const robots: PolicyClient[] = [];

  beforeAll(async () => {
    ws = newWorkspace('servers-page');
    [serve, browser] = await Promise.all([
      startServe(['--robot', 'aloha', '--policy', 'zeros']),
      launchBrowser(),
    ]);
    server = await startDashboard(ws, { servers: [serve.url] });
    ({ page, errors } = await newPage(browser));
    await page.goto(server.url);
  }, 60_000);

  afterAll(async () => {
    for (const r of robots) await r.close().catch(() => {});
    await browser?.close();
    await server?.close();
    if (serve) await stopServe(serve);
    await ws?.cleanup();
  });

  const fact = (name: string) => page.evaluate(`vla.text('[data-fact="${name}"]')`) as Promise<string | null>;

  it('shows a running server’s robots, requests, latency and batch sizes, over time', async () => {
    const aloha = loadRobot('aloha');
    for (let i = 0; i < 2; i++) robots.push(await PolicyClient.connect(serve.url));
    const busy = (async () => {
      for (let k = 0; k < 40; k++)
        await Promise.all(robots.map((r, i) => r.infer(exampleObservation(aloha, { seed: k * 2 + i }))));
    })();
    await page.goto(`${server.origin}/#/servers`);
    await page.waitForSelector('article.server');
    await busy;
    await page.waitForFunction(`vla.text('[data-fact="requests"]') === '80'`, { timeout: 15_000 });
    expect(await fact('connected robots')).toBe('2');
    expect(await fact('latency p50 / p99')).toMatch(/^[\d.]+ \/ [\d.]+ ms$/);
    expect(await fact('policy calls by batch size')).toMatch(/≤1: \d+/);
    expect(await fact('errors')).toBe('none');
    // Readings every 0.5 s: the charts fill in as the test watches.
    await page.waitForFunction('vla.points("latency (ms)") >= 6', { timeout: 15_000 });
    await screenshot(page, 'servers');
  });

  it('adds a server typed into the page, and says it does not answer', async () => {
    await page.type('#server-url', 'ws://127.0.0.1:9');
    await page.click('form.toolbar button[type=submit]');
    // The card re-renders on every reading: wait for its text, not for one node that may be replaced.
    const problem = `vla.text('article.server[data-url="http://127.0.0.1:9/metrics"] .problem')`;
    const shown = await page.waitForFunction(problem, { timeout: 10_000 });
    expect(await shown.jsonValue()).toBe(
      'http://127.0.0.1:9/metrics: connect ECONNREFUSED 127.0.0.1:9 (never answered)',
    );
    await page.type('#server-url', 'gopher://nowhere');
    await page.click('form.toolbar button[type=submit]');
    await page.waitForFunction(`(vla.text('.problem') ?? '').includes('expected ws:// or http://')`);
  });

  it('says so when the server goes away, naming it and when it last answered', async () => {
    for (const r of robots.splice(0)) await r.close();
    await stopServe(serve);
    const card = `article.server[data-url="${serve.url.replace('ws:', 'http:')}/metrics"]`;
    await page.waitForSelector(`${card}.down .problem`, { timeout: 15_000 });
    const text = (await page.evaluate(`vla.text('${card} .problem')`)) as string;
    expect(text).toMatch(
      new RegExp(
        `^http://127\\.0\\.0\\.1:${serve.port}/metrics: connect ECONNREFUSED 127\\.0\\.0\\.1:${serve.port} \\(last answered \\d{4}-\\d\\d-\\d\\dT`,
      ),
    );
    expect(await page.evaluate(`vla.text('${card} .badge')`)).toBe('not answering');
  });

  it('threw no script error', () => {
    expect(errors).toEqual([]);
  });
});

// Where there is no browser, the one line the run shows says why.
if (!HAS_CHROMIUM) it.skip(NO_CHROMIUM, () => {});

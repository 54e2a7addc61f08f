/**
 * The Evaluations pages in headless chromium: an evaluation folder as `vla sim eval` leaves it, its
 * per-episode table and its rollout video, which must play (and seek: the server answers byte ranges),
 * and the success of a run's periodic evaluations over its training steps.
 */
import path from 'node:path';
import type { Browser, Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DashboardServer } from '../../src/dashboard/server.js';
import { HAS_CHROMIUM, launchBrowser, NO_CHROMIUM, newPage, screenshot } from './browser.js';
import {
  brokenDataset,
  newWorkspace,
  runFinishedJob,
  startDashboard,
  type Workspace,
  writeEval,
} from './workspace.js';

describe.skipIf(!HAS_CHROMIUM)('the Evaluations pages in chromium', () => {
  let ws: Workspace;
  let server: DashboardServer;
  let browser: Browser;
  let page: Page;
  let errors: string[];

  beforeAll(async () => {
    ws = newWorkspace('evals-page');
    brokenDataset(path.join(ws.dir, 'datasets', 'ds'));
    const made = writeEval(path.join(ws.dir, 'outputs', 'sim_eval'), 60);
    [browser] = await Promise.all([launchBrowser(), made]);
    await runFinishedJob(ws, 'base', { steps: 2000, dataset: 'datasets/ds', evalEvery: 250 });
    await runFinishedJob(ws, 'ft50', { steps: 1000, dataset: 'datasets/ds', evalEvery: 200 });
    server = await startDashboard(ws);
    ({ page, errors } = await newPage(browser));
    await page.goto(server.url);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await ws?.cleanup();
  });

  it('lists the evaluations and the success of runs’ periodic evaluations over their steps', async () => {
    await page.goto(`${server.origin}/#/evals`);
    await page.waitForSelector('#evals-table');
    const row = await page.$eval('#evals-table tbody tr', (tr) =>
      [...tr.querySelectorAll('td')].map((td) => td.textContent),
    );
    expect(row.slice(0, 6)).toEqual(['outputs/sim_eval', 'pick_place', '2', '50.0%', '26.88', '0.75']);
    await page.waitForSelector('figure.chart[data-title="eval success (%)"][data-points]');
    // Every eval point of both runs: 8 of the 2,000-step run, 5 of the 1,000-step one.
    expect(await page.evaluate('vla.points("eval success (%)")')).toBe(13);
    await screenshot(page, 'evals');
  });

  it('shows one evaluation: success, rewards, episodes, and a rollout video that plays', async () => {
    await page.goto(`${server.origin}/#/evals/view?eval=outputs/sim_eval`);
    await page.waitForSelector('video');
    expect(await page.evaluate('vla.text(".card .big")')).toBe('50.0%');
    const episodes = await page.$$eval('table.episodes tbody tr', (trs) => trs.map((tr) => tr.textContent));
    expect(episodes).toHaveLength(2);
    expect(episodes[0]).toContain('pick up the red cube');
    const played = await page.$eval('video', async (v) => {
      const video = v as unknown as {
        play(): Promise<void>;
        pause(): void;
        currentTime: number;
        duration: number;
        readyState: number;
      };
      await video.play();
      const t0 = video.currentTime;
      await new Promise((r) => setTimeout(r, 1200));
      const t1 = video.currentTime;
      video.pause();
      // Seeking needs byte ranges: jump near the end and read the time back.
      video.currentTime = video.duration - 0.5;
      await new Promise((r) => setTimeout(r, 500));
      return { t0, t1, duration: video.duration, seeked: video.currentTime };
    });
    expect(played.duration).toBeCloseTo(6, 1);
    expect(played.t1).toBeGreaterThan(played.t0 + 0.3);
    expect(played.seeked).toBeGreaterThan(5);
    await screenshot(page, 'eval');
  });

  it('says what is wrong with an evaluation that is not there', async () => {
    await page.goto(`${server.origin}/#/evals/view?eval=outputs/nothing_here`);
    await page.waitForSelector('.problem');
    expect(await page.evaluate('vla.text(".problem")')).toBe(
      'eval outputs/nothing_here: no eval_info.json in outputs/nothing_here',
    );
  });

  it('threw no script error on any page', () => {
    expect(errors).toEqual([]);
  });
});

// Where there is no browser, the one line the run shows says why.
if (!HAS_CHROMIUM) it.skip(NO_CHROMIUM, () => {});

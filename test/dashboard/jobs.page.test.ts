/**
 * The Jobs pages in headless chromium, against a real registry: finished, failed and removed jobs
 * made through the job layer, and one running in its own process whose curve grows while the test
 * watches, until the page's Stop button stops it as `vla jobs stop` would.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Browser, Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DashboardServer } from '../../src/dashboard/server.js';
import type { Job } from '../../src/jobs/registry.js';
import { HAS_CHROMIUM, launchBrowser, NO_CHROMIUM, newPage, screenshot } from './browser.js';
import {
  newWorkspace,
  recordDataset,
  runFinishedJob,
  startDashboard,
  startLiveJob,
  type Workspace,
} from './workspace.js';

/**
 * Clicks as a user does (puppeteer's `page.click`: scroll, move, press), again if the element was
 * replaced in between: the live page re-renders its tables each second, which can detach the element
 * found a moment before.
 */
async function clickNow(page: Page, selector: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await page.click(selector);
      return;
    } catch (e) {
      if (attempt >= 4 || !/detached|not clickable|Node is either not visible/i.test((e as Error).message))
        throw e;
    }
  }
}

describe.skipIf(!HAS_CHROMIUM)('the Jobs pages in chromium', () => {
  let ws: Workspace;
  let server: DashboardServer;
  let browser: Browser;
  let page: Page;
  let errors: string[];
  let live: Job;
  let gone: Job;

  beforeAll(async () => {
    ws = newWorkspace('jobs-page');
    await recordDataset(path.join(ws.dir, 'datasets', 'demo'), 1, 5);
    await runFinishedJob(ws, 'base', { steps: 3000, dataset: 'datasets/demo', evalEvery: 500 });
    await runFinishedJob(ws, 'ft50', { steps: 1200, dataset: 'datasets/demo' });
    await runFinishedJob(ws, 'lr_high', {
      steps: 400,
      dataset: 'datasets/demo',
      fail: 'the loss is NaN at step 200',
    });
    gone = await runFinishedJob(ws, 'removed', { steps: 100, dataset: 'datasets/demo' });
    rmSync(gone.runDir, { recursive: true });
    const started = startLiveJob(ws, 'live', { steps: 100_000, dataset: 'datasets/demo', intervalMs: 100 });
    [browser, live] = await Promise.all([launchBrowser(), started]);
    server = await startDashboard(ws);
    ({ page, errors } = await newPage(browser));
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await ws?.cleanup();
  });

  const lossPoints = () => page.evaluate('vla.points("loss")') as Promise<number>;

  it('lists the registry’s jobs with status, progress and the running one’s ETA', async () => {
    await page.goto(server.url);
    await page.waitForSelector('#jobs-table[data-ready]');
    const rows = await page.$$eval('#jobs-table tbody tr', (trs) =>
      trs.map((tr) => ({
        id: Number(tr.getAttribute('data-job')),
        status: tr.getAttribute('data-status'),
        text: tr.textContent,
      })),
    );
    expect(rows.map((r) => r.id)).toEqual([5, 4, 3, 2, 1]);
    expect(rows.map((r) => r.status)).toEqual(['running', 'finished', 'failed', 'finished', 'finished']);
    expect(rows.find((r) => r.id === gone.id)!.text).toContain('run folder removed');
    expect(rows[0]!.text).toMatch(/\d+\/100000/);
    // The page loaded with the token in its address and was sent on without it.
    expect(page.url()).not.toContain('token');
    // The running job's curves are drawn at first, and grow.
    await page.waitForSelector('figure.chart[data-title="loss"][data-points]');
    const before = await lossPoints();
    await page.waitForFunction(`vla.points("loss") > ${before + 5}`, { timeout: 15_000 });
    const eta = await page.$eval(
      `#jobs-table tr[data-job="${live.id}"] td:nth-child(9)`,
      (td) => td.textContent,
    );
    expect(eta).toMatch(/^\d+(h\d\dm|m\d\ds|s)$/);
    await screenshot(page, 'jobs-list');
  });

  it('overlays the curves of the runs ticked in the table', async () => {
    await clickNow(page, '#jobs-table tr[data-job="1"] input[type=checkbox]');
    await clickNow(page, '#jobs-table tr[data-job="2"] input[type=checkbox]');
    const legend = 'figure.chart[data-title="loss"] .u-legend .u-series';
    await page.waitForFunction(`document.querySelectorAll(${JSON.stringify(legend)}).length === 4`, {
      timeout: 15_000,
    });
    const labels = await page.$$eval(`${legend} .u-label`, (els) => els.map((e) => e.textContent));
    expect(labels).toEqual([
      'step',
      'job 1: pi0_aloha/base',
      'job 2: pi0_aloha/ft50',
      'job 5: pi0_aloha/live',
    ]);
    // Each finished run cut to 1,000 points of its whole length, the live one as it grows.
    await page.waitForFunction('vla.points("loss") > 1990', { timeout: 15_000 });
    await sleep(300);
    await screenshot(page, 'jobs');
  });

  it('shows a running job live: its curve grows while the test watches, its log follows', async () => {
    await page.goto(`${server.origin}/#/jobs/${live.id}`);
    await page.waitForSelector('figure.chart[data-title="loss"][data-points]');
    const first = await lossPoints();
    await page.waitForFunction(`vla.points("loss") >= ${first + 10}`, { timeout: 15_000 });
    expect(await lossPoints()).toBeGreaterThanOrEqual(first + 10);
    expect(await page.evaluate('vla.points("gradient norm")')).toBeGreaterThan(0);
    await page.waitForFunction('vla.text("#log").includes("starting pi0_aloha/live")', { timeout: 10_000 });
    await screenshot(page, 'job-running');
  });

  it('zooms into a long run: the steps in view come at full detail, and the whole run again on asking', async () => {
    await page.goto(`${server.origin}/#/jobs/1`);
    await page.waitForSelector('.page.job figure.chart[data-title="loss"][data-points]');
    // 3,000 steps cut to at most 2,000 points.
    expect(await lossPoints()).toBeLessThanOrEqual(2000);
    const over = (await (await page.$('.page.job figure.chart[data-title="loss"] .u-over'))!.boundingBox())!;
    await page.mouse.move(over.x + over.width * 0.4, over.y + over.height / 2);
    await page.mouse.down();
    await page.mouse.move(over.x + over.width * 0.45, over.y + over.height / 2, { steps: 5 });
    await page.mouse.up();
    // About 5% of 3,000 steps, every one of them.
    await page.waitForFunction('vla.points("loss") > 100 && vla.points("loss") < 200', { timeout: 10_000 });
    await clickNow(page, '.page.job button.small');
    await page.waitForFunction('vla.points("loss") > 1900', { timeout: 10_000 });
  });

  it('stops the job with the Stop button, as vla jobs stop does: the registry says stopped', async () => {
    await page.goto(`${server.origin}/#/jobs/${live.id}`);
    await page.waitForSelector('.page.job figure.chart[data-title="loss"][data-points]');
    expect(await page.evaluate('vla.disabled("#stop")')).toBe(false);
    await clickNow(page, '#stop');
    await page.waitForFunction('vla.text(".message").includes("asked process")', { timeout: 10_000 });
    const deadline = Date.now() + 20_000;
    while (ws.registry.require(live.id).status !== 'stopped' && Date.now() < deadline) await sleep(100);
    const job = ws.registry.require(live.id);
    expect(job.status).toBe('stopped');
    expect(ws.registry.events(live.id).map((e) => e.message)).toEqual(
      expect.arrayContaining(['stop requested', `stopped at step ${job.step}`]),
    );
    // The page hears of it too: the badge, and the buttons (Resume now, Stop no more).
    await page.waitForFunction('vla.text("h2 .badge") === "stopped"', { timeout: 10_000 });
    expect(await page.evaluate('vla.disabled("#stop")')).toBe(true);
    expect(await page.evaluate('vla.disabled("#resume")')).toBe(false);
  });

  it('says what is wrong with a job whose run folder was removed, instead of a blank page', async () => {
    await page.goto(`${server.origin}/#/jobs/${gone.id}`);
    await page.waitForSelector('.problems .problem');
    expect(await page.evaluate('vla.text(".problems")')).toBe(
      `run folder checkpoints/pi0_aloha/removed was removed: job ${gone.id}'s metrics and checkpoints are gone (the registry still lists it; vla jobs rm ${gone.id} forgets it)`,
    );
    await screenshot(page, 'job-removed');
    await page.goto(`${server.origin}/#/jobs/77`);
    await page.waitForSelector('.problem');
    expect(await page.evaluate('vla.text(".problem")')).toMatch(
      /^no job 77 in .*: known ids are 1, 2, 3, 4, 5/,
    );
  });

  it('threw no script error on any page', () => {
    expect(errors).toEqual([]);
  });
});

// Where there is no browser, the one line the run shows says why.
if (!HAS_CHROMIUM) it.skip(NO_CHROMIUM, () => {});

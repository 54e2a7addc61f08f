/**
 * The Datasets pages in headless chromium: a dataset recorded with the project's writer (h264 video),
 * its validation, an episode's frames scrubbed beside its curves, and a corrupt dataset whose page says
 * what is wrong with it.
 */
import path from 'node:path';
import type { Browser, Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DashboardServer } from '../../src/dashboard/server.js';
import { HAS_CHROMIUM, launchBrowser, NO_CHROMIUM, newPage, screenshot } from './browser.js';
import {
  brokenDataset,
  DATASET_CAMERA,
  newWorkspace,
  recordDataset,
  runFinishedJob,
  startDashboard,
  type Workspace,
} from './workspace.js';

const LENGTH = 30;

describe.skipIf(!HAS_CHROMIUM)('the Datasets pages in chromium', () => {
  let ws: Workspace;
  let server: DashboardServer;
  let browser: Browser;
  let page: Page;
  let errors: string[];

  beforeAll(async () => {
    ws = newWorkspace('datasets-page');
    const record = recordDataset(path.join(ws.dir, 'data', 'sim_demo'), 2, LENGTH);
    brokenDataset(path.join(ws.dir, 'datasets', 'half_written'));
    [browser] = await Promise.all([launchBrowser(), record]);
    // A job trains on the broken one: the datasets its jobs use are listed beside those given.
    await runFinishedJob(ws, 'on_broken', { steps: 10, dataset: 'datasets/half_written', fail: 'no frames' });
    server = await startDashboard(ws, { data: [path.join(ws.dir, 'data')] });
    ({ page, errors } = await newPage(browser));
    await page.goto(server.url);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await ws?.cleanup();
  });

  it('lists the datasets given and those its jobs train on, a corrupt one with its problem', async () => {
    await page.goto(`${server.origin}/#/datasets`);
    await page.waitForSelector('#datasets-table');
    const rows = await page.$$eval('#datasets-table tbody tr', (trs) =>
      trs.map((tr) => ({ id: tr.getAttribute('data-dataset'), text: tr.textContent })),
    );
    expect(rows.map((r) => r.id)).toEqual(['data/sim_demo', 'half_written']);
    expect(rows[0]!.text).toContain('v2.1');
    expect(rows[1]!.text).toMatch(
      /job 1.*half_written\/meta\/info\.json: codebase_version: expected string, got nothing \(missing\)/s,
    );
  });

  it('scrubs an episode’s camera frames beside its state and action curves', async () => {
    await page.goto(`${server.origin}/#/datasets/view?dataset=data/sim_demo&episode=1`);
    await page.waitForSelector('#frame[data-frame="0"]', { timeout: 20_000 });
    const size = await page.$eval('#frame', (img) => [
      img.getAttribute('src'),
      (img as unknown as { naturalWidth: number }).naturalWidth,
    ]);
    expect(size[1]).toBe(DATASET_CAMERA.width);
    const dark = (await page.evaluate('vla.brightness("#frame")')) as number;
    // The slider as a script moves it: frame 15 is shown, and it is the recorded frame 15 (brighter).
    await page.$eval('#scrub', (el) => {
      (el as unknown as { value: string }).value = '15';
      el.dispatchEvent(new Event('input'));
    });
    await page.waitForSelector('#frame[data-frame="15"]', { timeout: 20_000 });
    const bright = (await page.evaluate('vla.brightness("#frame")')) as number;
    expect(bright - dark).toBeGreaterThan(60);
    expect(await page.evaluate('vla.text(".frame-label")')).toBe(`frame 15 / ${LENGTH - 1} · 1.50 s`);
    // And as a hand drags it, to the end.
    const box = (await (await page.$('#scrub'))!.boundingBox())!;
    await page.mouse.move(box.x + 4, box.y + box.height / 2);
    await page.mouse.down();
    for (let i = 1; i <= 10; i++)
      await page.mouse.move(box.x + 4 + ((box.width + 20) * i) / 10, box.y + box.height / 2);
    await page.mouse.up();
    await page.waitForSelector(`#frame[data-frame="${LENGTH - 1}"]`, { timeout: 20_000 });
    // The curves carry a marker at the frame shown.
    expect(await page.evaluate('vla.points("state")')).toBe(3 * LENGTH);
    expect(await page.evaluate('vla.points("action")')).toBe(2 * LENGTH);
    await page.$eval('#scrub', (el) => {
      (el as unknown as { value: string }).value = '12';
      el.dispatchEvent(new Event('input'));
    });
    await page.waitForSelector('#frame[data-frame="12"]', { timeout: 20_000 });
    await page.waitForSelector('#validation.ok', { timeout: 20_000 });
    expect(await page.evaluate('vla.text("#validation")')).toBe(
      'valid · 2 episodes, 60 frames, 2 videos checked (LeRobot v2.1)',
    );
    await screenshot(page, 'dataset');
  });

  it('plays the episode', async () => {
    await page.$eval('#scrub', (el) => {
      (el as unknown as { value: string }).value = '0';
      el.dispatchEvent(new Event('input'));
    });
    await page.waitForSelector('#frame[data-frame="0"]', { timeout: 20_000 });
    await page.click('#play');
    await page.waitForSelector('#frame[data-frame="5"]', { timeout: 20_000 });
    await page.click('#play');
  });

  it('says what is wrong with a corrupt dataset instead of a blank page', async () => {
    await page.goto(`${server.origin}/#/datasets/view?dataset=half_written`);
    await page.waitForSelector('.problem');
    expect(await page.evaluate('vla.text(".problem")')).toMatch(
      /^dataset half_written cannot be read: .*half_written\/meta\/info\.json: codebase_version: expected string, got nothing \(missing\)/,
    );
    await page.goto(`${server.origin}/#/datasets/view?dataset=../../etc`);
    await page.waitForSelector('.problem');
    expect(await page.evaluate('vla.text(".problem")')).toMatch(
      /^dataset: expected a path inside the dashboard's folders .*leads out of them with "\.\."$/,
    );
  });

  it('threw no script error on any page', () => {
    expect(errors).toEqual([]);
  });
});

// Where there is no browser, the one line the run shows says why.
if (!HAS_CHROMIUM) it.skip(NO_CHROMIUM, () => {});

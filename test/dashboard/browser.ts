/**
 * Headless Debian chromium through puppeteer-core, for the dashboard's page tests; the screenshots each
 * test takes go to one folder (printed), from which docs/figures/dashboard-*.png were copied.
 */
import { existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

export const CHROMIUM = '/usr/bin/chromium';
export const HAS_CHROMIUM = existsSync(CHROMIUM);
export const NO_CHROMIUM = `skipped: ${CHROMIUM} is absent (apt-get install chromium): the dashboard's page tests need a real browser`;
export const SCREENSHOTS = path.join(os.tmpdir(), 'vla-dashboard-screenshots');

if (!HAS_CHROMIUM) console.warn(NO_CHROMIUM);

export function launchBrowser(): Promise<Browser> {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--headless=new', '--autoplay-policy=no-user-gesture-required'],
    defaultViewport: { width: 1280, height: 860 },
  });
}

/**
 * What the tests ask the page, installed in it as `vla.*` (this project's TypeScript has no DOM types,
 * so page-side code is written here once, as the page runs it).
 */
const PAGE_HELPERS = `window.vla = {
  points: (title) => Number(document.querySelector('figure.chart[data-title="' + title + '"]')?.dataset.points ?? 0),
  text: (selector) => document.querySelector(selector)?.textContent ?? null,
  disabled: (selector) => document.querySelector(selector)?.disabled === true,
  /** Mean of an <img>'s red channel as drawn, 0..255. */
  brightness: (selector) => {
    const img = document.querySelector(selector);
    const c = document.createElement('canvas');
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += d[i];
    return sum / (d.length / 4);
  },
};`;

/** A page with the helpers, recording every uncaught script error (a test expects none). */
export async function newPage(browser: Browser): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.evaluateOnNewDocument(PAGE_HELPERS);
  return { page, errors };
}

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `dashboard-${name}.png`);
  await page.screenshot({ path: file as `${string}.png`, fullPage: false });
  return file;
}

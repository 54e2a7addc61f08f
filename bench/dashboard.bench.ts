/**
 * Dashboard figures (issue 26), in headless chromium against a real `vla dashboard` process: first
 * paint of the jobs page with 200 jobs in the registry, a 100,000-point curve from request to drawn,
 * uPlot drawing 100,000 points itself, and the process's resident memory once pages have loaded.
 * The workspace is made in a temporary folder with the registry's own code.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Page } from 'puppeteer-core';
import { table } from '../src/cli/output.js';
import { resolveConfig } from '../src/config/load.js';
import { runDirFor } from '../src/jobs/launch.js';
import { processStartTime } from '../src/jobs/liveness.js';
import { metricsPath } from '../src/jobs/metrics.js';
import { type JobRegistry, thisHost } from '../src/jobs/registry.js';
import { HAS_CHROMIUM, launchBrowser, NO_CHROMIUM, newPage } from '../test/dashboard/browser.js';
import { newWorkspace, recordDataset, TOKEN, writeEval } from '../test/dashboard/workspace.js';

const VLA = path.resolve(import.meta.dirname, '../bin/vla.js');
const JOBS = 200;
const LONG_RUN = 100_000;
const REPEATS = 7;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (v: number) => `${v.toFixed(0)} ms`;

function metricsLines(steps: number, seed: number): string {
  const lines: string[] = [];
  for (let step = 1; step <= steps; step++) {
    const loss = 1.5 * Math.exp((-3 * step) / steps) + 0.05 + 0.03 * Math.sin(step * 0.7 + seed);
    lines.push(
      JSON.stringify({
        step,
        loss,
        grad_norm: 1 + 0.2 * Math.cos(step),
        lr: 1e-4,
        samples_per_s: 30,
        time: '2026-12-07T00:00:00.000Z',
      }),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** 200 jobs through the registry: finished ones of 1,000 steps, one of 100,000, one running (this process). */
function fillRegistry(registry: JobRegistry, ws: string): { longId: number } {
  const { config } = resolveConfig('pi0_aloha', ['data.dataset=datasets/demo', 'train.steps=1000'], ws);
  let longId = 0;
  for (let i = 1; i <= JOBS; i++) {
    const steps = i === 1 ? LONG_RUN : 1000;
    const runDir = runDirFor(ws, config.name, `run${i}`);
    const job = registry.create({
      configName: config.name,
      config,
      expName: `run${i}`,
      runDir,
      totalSteps: steps,
      resume: false,
    });
    mkdirSync(runDir, { recursive: true });
    const running = i === JOBS;
    const done = running ? 400 : steps;
    appendFileSync(metricsPath(runDir), metricsLines(done, i));
    registry.transition(job.id, 'running', `started as pid ${process.pid}`, {
      pid: process.pid,
      pidStart: processStartTime(process.pid),
      host: thisHost(),
      startedAt: Date.now(),
    });
    const metrics = { loss: 0.1, grad_norm: 1, lr: 1e-4, samples_per_s: 30 };
    if (running) registry.update(job.id, { step: done, metrics });
    else registry.transition(job.id, 'finished', `finished at step ${done}`, { step: done, metrics });
    if (i === 1) longId = job.id;
  }
  return { longId };
}

async function startDashboard(ws: string): Promise<{ child: ChildProcess; origin: string }> {
  // In a checkout bin/vla.js first compiles what changed (esbuild, in that process): done here
  // beforehand, so the memory measured is the dashboard's, as an installed package runs it.
  execFileSync(process.execPath, [VLA, '--version']);
  const child = spawn(
    process.execPath,
    [VLA, 'dashboard', '--port', '0', '--token', TOKEN, '--data', 'datasets', '--evals', 'outputs'],
    { cwd: ws, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const origin = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^open (http:\/\/[^/]+)\//m.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`vla dashboard exited with ${code}: ${out}`)));
  });
  return { child, origin };
}

const rssMb = (pid: number) => {
  const kb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  return kb / 1024;
};

/** From setting the address to the jobs table drawn, the token turned into a cookie on the way. */
async function firstPaint(page: Page, origin: string): Promise<{ total: number; fcp: number }> {
  await page.goto('about:blank');
  const t0 = performance.now();
  await page.goto(`${origin}/?token=${TOKEN}`);
  await page.waitForSelector('#jobs-table[data-ready]');
  const total = performance.now() - t0;
  const fcp = (await page.evaluate(
    "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN",
  )) as number;
  return { total, fcp };
}

/** In the page: from opening a job's page to its loss chart drawn with the curve. */
async function curveRender(page: Page, origin: string, id: number): Promise<number> {
  await page.goto(`${origin}/#/jobs`);
  await page.waitForSelector('#jobs-table[data-ready]');
  return (await page.evaluate(`new Promise((resolve) => {
    const t0 = performance.now();
    location.hash = '#/jobs/${id}';
    const drawn = () => Number(document.querySelector('.page.job figure.chart[data-title="loss"]')?.dataset.points ?? 0);
    const poll = () => (drawn() > 0 ? resolve(performance.now() - t0) : requestAnimationFrame(poll));
    poll();
  })`)) as number;
}

/** In the page: uPlot (through the page's chart module) drawing 100,000 points, no downsampling. */
async function uplotAlone(page: Page): Promise<number> {
  return (await page.evaluate(`(async () => {
    const { Chart } = await import('/static/chart.js');
    const x = Array.from({ length: ${LONG_RUN} }, (_, i) => i + 1);
    const y = x.map((s) => 1 / Math.sqrt(s) + 0.05 * Math.sin(s));
    const box = document.createElement('div');
    box.style.width = '900px';
    document.body.append(box);
    const t0 = performance.now();
    const chart = new Chart(box, { title: 'raw', labels: ['raw'] });
    chart.setCurves([{ x, y }]);
    await new Promise((r) => requestAnimationFrame(r));
    const t = performance.now() - t0;
    chart.destroy();
    box.remove();
    return t;
  })()`)) as number;
}

export async function run(): Promise<void> {
  if (!HAS_CHROMIUM) {
    console.log(NO_CHROMIUM);
    return;
  }
  const ws = newWorkspace('bench');
  const browser = await launchBrowser();
  let child: ChildProcess | null = null;
  try {
    await recordDataset(path.join(ws.dir, 'datasets', 'demo'), 2, 60);
    await writeEval(path.join(ws.dir, 'outputs', 'sim_eval'), 60);
    const { longId } = fillRegistry(ws.registry, ws.dir);
    const dash = await startDashboard(ws.dir);
    child = dash.child;
    await sleep(1000);
    const rssStarted = rssMb(child.pid!);
    const { page } = await newPage(browser);

    const paints: Array<{ total: number; fcp: number }> = [];
    for (let i = 0; i < REPEATS; i++) paints.push(await firstPaint(page, dash.origin));
    await sleep(2000);
    const rssJobs = rssMb(child.pid!);

    // The first opening parses the 100,000-line metrics.jsonl; later ones find it parsed.
    const cold = await curveRender(page, dash.origin, longId);
    const warm: number[] = [];
    for (let i = 0; i < REPEATS; i++) warm.push(await curveRender(page, dash.origin, longId));
    const api: number[] = [];
    for (let i = 0; i < REPEATS; i++) {
      const t0 = performance.now();
      await (
        await fetch(`${dash.origin}/api/jobs/${longId}/curves`, { headers: { 'x-vla-token': TOKEN } })
      ).json();
      api.push(performance.now() - t0);
    }
    const raw: number[] = [];
    for (let i = 0; i < REPEATS; i++) raw.push(await uplotAlone(page));

    // Every page once, then idle: what the process holds while someone has it open.
    for (const hash of [
      '#/evals',
      '#/datasets/view?dataset=datasets/demo&episode=0',
      '#/servers',
      '#/jobs',
    ]) {
      await page.goto(`${dash.origin}/${hash}`);
      await sleep(1500);
    }
    await page.goto('about:blank');
    await sleep(3000);
    const rssIdle = rssMb(child.pid!);

    console.log(
      table(
        ['measure', 'result', 'target'],
        [
          [
            `first paint of the jobs page, ${JOBS} jobs (address to table drawn; median of ${REPEATS})`,
            `${ms(median(paints.map((p) => p.total)))} (first contentful paint ${ms(median(paints.map((p) => p.fcp)))})`,
            '≤ 1 s',
          ],
          [
            `a ${LONG_RUN.toLocaleString('en-US')}-point loss curve, job page opened to chart drawn (median of ${REPEATS})`,
            `${ms(median(warm))} (first opening, parsing metrics.jsonl: ${ms(cold)})`,
            '≤ 200 ms',
          ],
          [`  of which GET /api/jobs/ID/curves (3 curves cut to ≤ 2,000 points each)`, ms(median(api)), ''],
          [
            `uPlot drawing ${LONG_RUN.toLocaleString('en-US')} points itself, no downsampling`,
            ms(median(raw)),
            '',
          ],
          ['vla dashboard resident memory: started, idle', `${rssStarted.toFixed(0)} MB`, ''],
          [
            `  the jobs page of ${JOBS} jobs loaded ${REPEATS} times, idle`,
            `${rssJobs.toFixed(0)} MB`,
            '< 100 MB',
          ],
          [
            `  every page seen, the ${LONG_RUN.toLocaleString('en-US')}-step run's curves among them, 3 s idle`,
            `${rssIdle.toFixed(0)} MB`,
            '',
          ],
        ],
      ),
    );
  } finally {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    await browser.close();
    await ws.cleanup();
  }
}

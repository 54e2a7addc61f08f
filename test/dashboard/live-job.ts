// A job process for the dashboard's tests, as `vla jobs _run ID` is, whose trainer logs a metrics line
// (the trainer's own fields) every INTERVAL_MS until its steps are done or it is told to stop:
//   node --import tsx live-job.ts WORKSPACE JOB_ID INTERVAL_MS
import { appendFileSync, mkdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { runJobProcess } from '../../src/jobs/job-process.js';
import { metricsPath } from '../../src/jobs/metrics.js';
import { JobRegistry } from '../../src/jobs/registry.js';

const [ws, id, interval] = process.argv.slice(2);
process.chdir(ws!);
const registry = JobRegistry.open(ws);
await runJobProcess(registry, Number(id), {
  output: 'log',
  logInterval: 5,
  train: async ({ config, runDir, onProgress, signal }) => {
    mkdirSync(runDir, { recursive: true });
    const total = config.train.steps;
    let step = 0;
    let loss = 2;
    while (!signal?.aborted && step < total) {
      step++;
      loss = 2 / Math.sqrt(step) + 0.05 * Math.sin(step);
      const row = { step, loss, grad_norm: 1 + 0.5 * Math.cos(step / 3), lr: 1e-4, samples_per_s: 32 };
      appendFileSync(metricsPath(runDir), `${JSON.stringify({ ...row, time: new Date().toISOString() })}\n`);
      onProgress?.({ step, totalSteps: total, loss, gradNorm: row.grad_norm, lr: row.lr, samplesPerSec: 32 });
      await sleep(Number(interval));
    }
    return { step, stopped: signal?.aborted === true, checkpoint: null, loss };
  },
});
registry.close();

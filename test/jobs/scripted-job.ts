// A job process for tests, as `vla jobs _run ID` is, whose trainer takes two steps of four and then ends
// as told instead of training a model: node --import tsx scripted-job.ts WORKSPACE JOB_ID ENDING
//   finish: reports the last step and returns; fail: throws; stop: signals itself as `vla jobs stop`
//   does and returns stopped; hang: waits, for the test to kill it.
import { setTimeout as sleep } from 'node:timers/promises';
import { runJobProcess } from '../../src/jobs/job-process.js';
import { JobRegistry } from '../../src/jobs/registry.js';

const [ws, id, ending] = process.argv.slice(2);
process.chdir(ws!);
const registry = JobRegistry.open(ws);
const progress = (step: number) => ({
  step,
  totalSteps: 4,
  loss: 1 / step,
  gradNorm: 1,
  lr: 1e-4,
  samplesPerSec: 10,
});
await runJobProcess(registry, Number(id), {
  output: 'log',
  logInterval: 1,
  train: async ({ onProgress, signal }) => {
    for (const step of [1, 2]) onProgress?.(progress(step));
    if (ending === 'fail') throw new Error('the loss is NaN at step 2');
    if (ending === 'finish') {
      for (const step of [3, 4]) onProgress?.(progress(step));
      return { step: 4, stopped: false, checkpoint: null, loss: 0.25 };
    }
    if (ending === 'stop') process.kill(process.pid, 'SIGTERM');
    while (!signal?.aborted) await sleep(20);
    return { step: 2, stopped: true, checkpoint: null, loss: 0.5 };
  },
});
registry.close();

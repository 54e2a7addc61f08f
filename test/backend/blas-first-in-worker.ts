// Run as its own process with no OpenBLAS thread variables: a worker is the first to load OpenBLAS.
import { once } from 'node:events';
import { startWorker } from '../../src/threads.js';

const worker = startWorker(new URL('./blas-worker.ts', import.meta.url), { workerData: {} });
const [msg] = await once(worker, 'message');
await worker.terminate();
console.log(
  JSON.stringify({
    ...msg,
    env: process.env.OPENBLAS_NUM_THREADS ?? null,
    coreEnv: process.env.OPENBLAS_CORETYPE ?? null,
  }),
);

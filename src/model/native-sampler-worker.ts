// A native sampler's second thread (rank 1): the same program over the same shared arena (native/program.ts, native/threads.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { loadBlas, useProducts } from '../backend/native/blas.js';
import { loadFused } from '../backend/native/fused.js';
import { Engine } from './native/program.js';
import type { WorkerSetup } from './native/threads.js';

const setup = workerData as WorkerSetup;
const blas = loadBlas();
const fused = await loadFused(setup.memory);
const productsOff = 'error' in blas ? null : useProducts(blas, setup.precision);
if ('error' in blas || 'error' in fused || productsOff) {
  parentPort!.postMessage({
    error: 'error' in blas ? blas.error : (productsOff ?? (fused as { error: string }).error),
  });
} else {
  const engine = new Engine(setup.memory, setup.layout, setup.rank, blas, fused);
  parentPort!.postMessage({ ready: true });
  engine.serve();
}

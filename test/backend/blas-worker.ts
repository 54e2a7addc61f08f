// Loads the BLAS binding in a worker thread and reports what it got (see native.test.ts).
import { parentPort } from 'node:worker_threads';
import { loadBlas } from '../../src/backend/native/blas.js';

const r = loadBlas();
const a = new Float32Array([1, 2, 3, 4]);
const c = new Float32Array(4);
if (!('error' in r)) r.sgemm(111, 112, 2, 2, 2, 1, a, 2, a, 2, 0, c, 2);
parentPort!.postMessage(
  'error' in r
    ? { error: r.error }
    : { library: r.library, product: [...c], threads: r.threads, core: r.core },
);

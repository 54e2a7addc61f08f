// Sets up the compute backend in a worker thread and reports its backend line (see native.test.ts).
import { parentPort } from 'node:worker_threads';
import { describeBackend, setupBackend } from '../../src/backend/index.js';

parentPort!.postMessage(describeBackend(await setupBackend({ backend: 'wasm' })));

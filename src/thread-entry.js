// A worker thread started from the TypeScript sources (a checkout run through tsx, or vitest) does not
// inherit the main thread's TypeScript loader, and Node 20 ignores `--import` in a worker's execArgv:
// this plain-JavaScript entry registers tsx, then runs the real module. Compiled, threads.ts starts the
// compiled module directly and this file is not used.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.__entry);

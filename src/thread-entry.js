// Worker threads do not inherit the main thread's TypeScript loader (tsx), and Node 20 ignores
// `--import` in a worker's execArgv: this plain-JavaScript entry registers tsx, then runs the real module.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.__entry);

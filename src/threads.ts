import { Worker, type WorkerOptions } from 'node:worker_threads';
import { pinBlasEnv } from './backend/native/blas.js';

/** Compiled (dist/), this module is JavaScript and so is every module beside it; from source it is TypeScript. */
const COMPILED = import.meta.url.endsWith('.js');

/**
 * Start a worker thread running a TypeScript module (`new URL('./x.ts', import.meta.url)`): the source
 * through tsx, or once compiled the `.js` built from it; its `workerData` carries `__entry` besides what
 * the caller passes.
 */
export function startWorker(
  entry: URL,
  options: WorkerOptions & { workerData?: Record<string, unknown> } = {},
): Worker {
  pinBlasEnv();
  const workerData = { ...(options.workerData ?? {}), __entry: entry.href };
  if (COMPILED) return new Worker(new URL(entry.href.replace(/\.ts$/, '.js')), { ...options, workerData });
  return new Worker(new URL('./thread-entry.js', import.meta.url), { ...options, workerData });
}

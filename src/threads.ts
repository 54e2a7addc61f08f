import { Worker, type WorkerOptions } from 'node:worker_threads';
import { pinBlasEnv } from './backend/native/blas.js';

/**
 * Start a worker thread running a TypeScript module (`new URL('./x.ts', import.meta.url)`); its
 * `workerData` carries `__entry` besides what the caller passes.
 */
export function startWorker(
  entry: URL,
  options: WorkerOptions & { workerData?: Record<string, unknown> } = {},
): Worker {
  pinBlasEnv();
  return new Worker(new URL('./thread-entry.js', import.meta.url), {
    ...options,
    workerData: { ...(options.workerData ?? {}), __entry: entry.href },
  });
}

/**
 * Where the policy runs. Cheap policies (zeros, replay) run on the server's own thread; anything that
 * computes runs in a worker thread, so pings, /healthz and other clients are answered while a batch
 * computes (openpi's server blocks its event loop during inference).
 */
import { startWorker } from '../threads.js';
import { loadPolicy } from './load-policy.js';
import type { PolicyContext, PolicyRequest, PolicyResult, PolicySpec } from './policy.js';

export interface PolicyRunner {
  readonly metadata: Record<string, unknown>;
  readonly horizon: number;
  readonly requiresPrompt: boolean;
  /** Whether requests must own their buffers (they are moved to another thread, not copied). */
  readonly transfers: boolean;
  inferBatch(requests: PolicyRequest[]): Promise<PolicyResult[]>;
  endSession(session: number): void;
  close(): Promise<void>;
}

export async function inlineRunner(spec: PolicySpec, ctx: PolicyContext): Promise<PolicyRunner> {
  const policy = await loadPolicy(spec, ctx);
  return {
    metadata: policy.metadata,
    horizon: policy.horizon,
    requiresPrompt: policy.requiresPrompt,
    transfers: false,
    inferBatch: (requests) => policy.inferBatch(requests),
    endSession: (session) => policy.endSession?.(session),
    close: async () => policy.close?.(),
  };
}

type FromWorker =
  | { type: 'ready'; metadata: Record<string, unknown>; horizon: number; requiresPrompt: boolean }
  | { type: 'result'; id: number; results: PolicyResult[] }
  | { type: 'error'; id: number; message: string }
  | { type: 'fatal'; message: string };

/** The ArrayBuffers behind a batch's arrays, to move them to the worker instead of copying. */
function buffersOf(requests: PolicyRequest[]): ArrayBuffer[] {
  const seen = new Set<ArrayBuffer>();
  for (const r of requests) {
    seen.add(r.obs.state.buffer as ArrayBuffer);
    for (const img of Object.values(r.obs.images)) if (img) seen.add(img.data.buffer as ArrayBuffer);
  }
  return [...seen];
}

export async function workerRunner(spec: PolicySpec, ctx: PolicyContext): Promise<PolicyRunner> {
  const worker = startWorker(new URL('./worker.ts', import.meta.url), { workerData: { spec, ctx } });
  const waiting = new Map<number, { resolve: (r: PolicyResult[]) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  let failure: Error | null = null;
  const failAll = (err: Error) => {
    failure = err;
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
  };
  const ready = new Promise<{ metadata: Record<string, unknown>; horizon: number; requiresPrompt: boolean }>(
    (resolve, reject) => {
      worker.on('message', (msg: FromWorker) => {
        if (msg.type === 'ready') resolve(msg);
        else if (msg.type === 'fatal') {
          const err = new Error(msg.message);
          reject(err);
          failAll(err);
        } else {
          const w = waiting.get(msg.id);
          waiting.delete(msg.id);
          if (msg.type === 'result') w?.resolve(msg.results);
          else w?.reject(new Error(msg.message));
        }
      });
      worker.on('error', (e) => {
        reject(e);
        failAll(e);
      });
      worker.on('exit', (code) => {
        const err = new Error(`inference worker exited with code ${code}`);
        reject(err);
        failAll(err);
      });
    },
  );
  const { metadata, horizon, requiresPrompt } = await ready;
  return {
    metadata,
    horizon,
    requiresPrompt,
    transfers: true,
    inferBatch(requests) {
      if (failure) return Promise.reject(failure);
      const id = nextId++;
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        worker.postMessage({ type: 'infer', id, requests }, buffersOf(requests));
      });
    },
    endSession(session) {
      if (!failure) worker.postMessage({ type: 'end', session });
    },
    async close() {
      worker.removeAllListeners('exit');
      await worker.terminate();
    },
  };
}

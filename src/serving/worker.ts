/** The inference worker thread: builds the policy from its spec and answers batches. */
import { parentPort, workerData } from 'node:worker_threads';
import { loadPolicy } from './load-policy.js';
import type { PolicyContext, PolicyRequest, PolicySpec } from './policy.js';

const { spec, ctx } = workerData as { spec: PolicySpec; ctx: PolicyContext };
const port = parentPort!;

try {
  const policy = await loadPolicy(spec, ctx);
  port.on(
    'message',
    async (
      msg: { type: 'infer'; id: number; requests: PolicyRequest[] } | { type: 'end'; session: number },
    ) => {
      if (msg.type === 'end') {
        policy.endSession?.(msg.session);
        return;
      }
      try {
        const results = await policy.inferBatch(msg.requests);
        port.postMessage({ type: 'result', id: msg.id, results }, [
          ...new Set(results.map((r) => r.actions.buffer as ArrayBuffer)),
        ]);
      } catch (e) {
        port.postMessage({ type: 'error', id: msg.id, message: (e as Error).message });
      }
    },
  );
  port.postMessage({
    type: 'ready',
    metadata: policy.metadata,
    horizon: policy.horizon,
    requiresPrompt: policy.requiresPrompt,
  });
} catch (e) {
  port.postMessage({ type: 'fatal', message: (e as Error).message });
}

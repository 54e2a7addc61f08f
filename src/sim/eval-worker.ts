/** The body of one `vla sim eval` worker thread: its share of the episodes, results posted as they finish. */
import { parentPort, workerData } from 'node:worker_threads';
import { type EvalOptions, evalEpisodes } from './eval.js';

const { opts, episodes } = workerData as { opts: EvalOptions; episodes: number[] };
try {
  await evalEpisodes(opts, episodes, (result, video) =>
    parentPort!.postMessage({ type: 'result', result, video }),
  );
  parentPort!.postMessage({ type: 'done' });
} catch (e) {
  parentPort!.postMessage({ type: 'fatal', message: (e as Error).message });
}

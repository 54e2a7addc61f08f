/**
 * Well-behaved robots for the hostile and soak benchmarks, on a thread of their own so that the
 * abusive clients' work in the main thread does not count in their latencies: each asks for a chunk,
 * waits `pauseMs`, and asks again; the main thread collects their round trips on request.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { PolicyClient } from '@vla-orchestrator/client';
import { exampleObservation } from '../src/client/examples.js';
import { loadRobot } from '../src/config/load.js';

const {
  url,
  robot: robotName,
  n,
  pauseMs,
  apiKey,
} = workerData as {
  url: string;
  robot: string;
  n: number;
  pauseMs: number;
  apiKey: string | null;
};
const port = parentPort!;
const robot = loadRobot(robotName);
let latencies: number[] = [];
let errors: string[] = [];
let nonFinite = 0;
let running = true;

port.on('message', (msg: 'collect' | 'stop') => {
  if (msg === 'stop') running = false;
  port.postMessage({ type: 'sample', latencies, errors, nonFinite });
  latencies = [];
  errors = [];
  nonFinite = 0;
});

async function robotLoop(i: number): Promise<void> {
  const client = await PolicyClient.connect(url, { apiKey, timeoutMs: 30_000 });
  const observations = [0, 1, 2, 3].map((k) => exampleObservation(robot, { seed: i * 4 + k + 1 }));
  let k = 0;
  while (running) {
    const t0 = performance.now();
    try {
      const reply = await client.infer(observations[k++ % observations.length]!);
      latencies.push(performance.now() - t0);
      if (!reply.actions.every(Number.isFinite)) nonFinite++;
    } catch (e) {
      errors.push(`robot ${i}: ${(e as Error).message}`);
      return;
    }
    if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
  }
  await client.close();
}

await Promise.all(Array.from({ length: n }, (_, i) => robotLoop(i)));
port.postMessage({ type: 'done' });

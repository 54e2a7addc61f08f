/** Round-trip latency and throughput of a policy server, as robots see them. */

import { PolicyClient, pack } from '@vla-orchestrator/client';
import type { RobotSpec } from '../config/robot.js';
import { exampleObservation } from './examples.js';

export interface LoadTestOptions {
  url: string;
  robot: RobotSpec;
  /** Requests per client after warm-up. */
  n: number;
  concurrency?: number;
  warmup?: number;
  apiKey?: string | null;
}

export interface LoadTestResult {
  requestBytes: number;
  /** Round trips in ms, all clients together, sorted. */
  latencies: number[];
  wallMs: number;
  repliesPerSec: number;
  errors: number;
}

export const percentile = (sorted: number[], p: number): number =>
  sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

export async function loadTest(opts: LoadTestOptions): Promise<LoadTestResult> {
  const concurrency = opts.concurrency ?? 1;
  const clients = await Promise.all(
    Array.from({ length: concurrency }, () =>
      PolicyClient.connect(opts.url, { apiKey: opts.apiKey, timeoutMs: 10_000 }),
    ),
  );
  const observations = clients.map((_, i) => exampleObservation(opts.robot, { seed: i + 1 }));
  for (let i = 0; i < (opts.warmup ?? 20); i++)
    await Promise.all(clients.map((c, j) => c.infer(observations[j]!)));
  const latencies: number[] = [];
  let errors = 0;
  const t0 = performance.now();
  await Promise.all(
    clients.map(async (client, j) => {
      for (let i = 0; i < opts.n; i++) {
        const s = performance.now();
        try {
          await client.infer(observations[j]!);
          latencies.push(performance.now() - s);
        } catch {
          errors++;
          return;
        }
      }
    }),
  );
  const wallMs = performance.now() - t0;
  await Promise.all(clients.map((c) => c.close()));
  latencies.sort((a, b) => a - b);
  return {
    requestBytes: pack(observations[0]).byteLength,
    latencies,
    wallMs,
    repliesPerSec: (latencies.length / wallMs) * 1000,
    errors,
  };
}

import { readFileSync } from 'node:fs';
import type { Worker } from 'node:worker_threads';
import { startWorker } from '../src/threads.js';

export interface RobotSample {
  latencies: number[];
  errors: string[];
  nonFinite: number;
}

export class Robots {
  private readonly worker: Worker;
  private readonly done: Promise<void>;

  constructor(opts: { url: string; robot: string; n: number; pauseMs: number; apiKey: string | null }) {
    this.worker = startWorker(new URL('./robots-worker.ts', import.meta.url), { workerData: { ...opts } });
    this.done = new Promise((resolve) =>
      this.worker.on('message', (m: { type: string }) => {
        if (m.type === 'done') resolve();
      }),
    );
  }

  /** Round trips and errors since the last call. */
  collect(stop = false): Promise<RobotSample> {
    return new Promise((resolve) => {
      const onMessage = (m: RobotSample & { type: string }) => {
        if (m.type !== 'sample') return;
        this.worker.off('message', onMessage);
        resolve(m);
      };
      this.worker.on('message', onMessage);
      this.worker.postMessage(stop ? 'stop' : 'collect');
    });
  }

  async stop(): Promise<RobotSample> {
    const last = await this.collect(true);
    await this.done;
    await this.worker.terminate();
    return last;
  }
}

/** Resident and peak resident memory of a process, in MB, from /proc. */
export function memoryMb(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

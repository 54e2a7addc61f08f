/** The main thread's handle on bench/robots-worker.ts, and the server-process helpers both benches use. */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
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

const VLA = path.resolve(import.meta.dirname, '../bin/vla.js');

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  url: string;
}

export async function startServer(args: string[]): Promise<ServerProcess> {
  const child = spawn(process.execPath, [VLA, 'serve', ...args, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /on ws:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`vla serve exited with ${code}: ${out}`)));
  });
  return { child, port, url: `ws://127.0.0.1:${port}` };
}

export async function stopServer(s: ServerProcess): Promise<number | null> {
  if (s.child.exitCode !== null) return s.child.exitCode;
  const exited = new Promise<number | null>((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  return exited;
}

/** Resident and peak resident memory of a process, in MB, from /proc. */
export function memoryMb(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/**
 * The native sampler's thread runtime: P ranks over one shared arena, rank 0 on the caller's thread and
 * the others in worker threads (native-sampler-worker.ts), meeting at barriers on Int32 control words
 * in the arena. Rank 0 posts a job (a few Int32 header words) and runs its own share; the workers wait
 * for jobs, run theirs, and meet rank 0 at the end. A rank that fails raises the error flag, and the
 * others stop at their next barrier; a barrier that waits longer than the stall limit means the other
 * thread is gone. What a job computes is the program's (program.ts), not this file's.
 */
import type { Worker } from 'node:worker_threads';
import type { Precision } from '../../backend/native/blas.js';
import { startWorker } from '../../threads.js';
import type { Layout, SharedMemory } from './layout.js';

/** Control words (Int32, from layout.control): each rank's barrier count, the job count, an error flag and the job header. */
const BARRIER = 0;
const JOB = 2;
const FAILED = 3;
const HEADER = 4;
/** Spins before a barrier sleeps in Atomics.wait: a block's other half usually arrives within microseconds. */
const SPINS = 20000;

/** The engine failed mid-chunk (a thread died or stalled): the sampler cannot be used again. */
export class NativeSamplerFailure extends Error {
  override name = 'NativeSamplerFailure';
}

/** What the sampler's worker thread gets. */
export interface WorkerSetup {
  memory: SharedMemory;
  layout: Layout;
  rank: number;
  precision: Precision;
}

/** One rank's view of the control words: barriers, jobs, failure. */
export class Team {
  private readonly i32: Int32Array;
  private readonly c: number;
  private barriers = 0;

  constructor(
    memory: SharedMemory,
    private readonly layout: Layout,
    readonly rank: number,
  ) {
    this.i32 = new Int32Array(memory.buffer);
    this.c = layout.control;
  }

  get parts(): number {
    return this.layout.parts;
  }

  /** Barriers this rank has passed (its parity picks the exchange buffer a partial sum goes to). */
  get passed(): number {
    return this.barriers;
  }

  /** Waits until every rank has arrived here as often as this one. */
  barrier(): void {
    const P = this.layout.parts;
    if (P === 1) return;
    const { i32, c } = this;
    const n = ++this.barriers;
    Atomics.store(i32, c + BARRIER + this.rank, n);
    Atomics.notify(i32, c + BARRIER + this.rank);
    for (let r = 0; r < P; r++) {
      if (r === this.rank) continue;
      let spins = 0;
      let waited = 0;
      for (;;) {
        const seen = Atomics.load(i32, c + BARRIER + r);
        if (seen >= n) break;
        if (Atomics.load(i32, c + FAILED) !== 0) throw new Error('native sampler: the other thread failed');
        if (++spins < SPINS) continue;
        const t = Date.now();
        Atomics.wait(i32, c + BARRIER + r, seen, 50);
        waited += Date.now() - t;
        if (waited > this.layout.stallMs)
          throw new Error(`native sampler: the other thread has not answered in ${this.layout.stallMs} ms`);
      }
    }
  }

  /** The header words of the job posted last. */
  header(words: number): Int32Array {
    const h = this.c + HEADER;
    return this.i32.subarray(h, h + words);
  }

  /** A worker's loop: waits for a job, runs it, meets rank 0 at the end; until told to stop. */
  serve(run: () => void): void {
    const { i32, c } = this;
    let done = 0;
    for (;;) {
      Atomics.wait(i32, c + JOB, done);
      const n = Atomics.load(i32, c + JOB);
      if (n < 0) return;
      if (n === done) continue;
      done = n;
      try {
        run();
        this.barrier();
      } catch (e) {
        Atomics.store(i32, c + FAILED, 1);
        throw e;
      }
    }
  }

  /** Rank 0: posts a job of these header words to the workers, runs its own share, and waits for them. */
  post(header: number[], run: () => void): void {
    const { i32, c } = this;
    i32.set(header, c + HEADER);
    if (this.layout.parts > 1) {
      Atomics.add(i32, c + JOB, 1);
      Atomics.notify(i32, c + JOB);
    }
    try {
      run();
      this.barrier();
    } catch (e) {
      // The workers stop waiting for this thread at their next barrier.
      Atomics.store(i32, c + FAILED, 1);
      throw new NativeSamplerFailure((e as Error).message);
    }
  }

  /** Tells the workers to leave their loops. */
  stop(): void {
    Atomics.store(this.i32, this.c + JOB, -1);
    Atomics.notify(this.i32, this.c + JOB);
  }
}

/** Starts ranks 1..threads−1 on worker threads and waits until each is ready; none left running on failure. */
export async function startWorkers(
  memory: SharedMemory,
  layout: Layout,
  threads: number,
  precision: Precision,
): Promise<Worker[]> {
  const workers: Worker[] = [];
  try {
    for (let rank = 1; rank < threads; rank++) {
      const setup: WorkerSetup = { memory, layout, rank, precision };
      const worker = startWorker(new URL('../native-sampler-worker.ts', import.meta.url), {
        workerData: setup as unknown as Record<string, unknown>,
      });
      workers.push(worker);
      await new Promise<void>((resolve, reject) => {
        worker.once('message', (m: { ready?: boolean; error?: string }) =>
          m.ready ? resolve() : reject(new Error(`native sampler worker: ${m.error}`)),
        );
        worker.once('error', reject);
        worker.once('exit', (code) =>
          reject(new Error(`native sampler worker exited (${code}) before it was ready`)),
        );
      });
      worker.unref();
    }
  } catch (e) {
    for (const w of workers) void w.terminate();
    throw e;
  }
  return workers;
}

/**
 * Gathers requests from several connections into one policy call. A batch goes out as soon as it is
 * full, or as soon as every connected robot is waiting (nobody else could join it, so waiting would
 * only add latency), or when the oldest request has waited `maxWaitMs`. One batch runs at a time;
 * requests that arrive meanwhile form the next one.
 */
import type { PolicyRequest, PolicyResult } from './policy.js';

interface Pending {
  request: PolicyRequest;
  enqueuedAt: number;
  resolve: (r: PolicyResult) => void;
  reject: (e: Error) => void;
}

export interface BatcherOptions {
  maxBatch: number;
  maxWaitMs: number;
  /** How many connections could still send a request (connected and not already waiting). */
  idleSessions: () => number;
  onBatch?: (size: number) => void;
}

export class Batcher {
  private queue: Pending[] = [];
  private running = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly run: (requests: PolicyRequest[]) => Promise<PolicyResult[]>,
    private readonly opts: BatcherOptions,
  ) {}

  submit(request: PolicyRequest): Promise<PolicyResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ request, enqueuedAt: performance.now(), resolve, reject });
      this.schedule();
    });
  }

  /** Requests queued or running: graceful shutdown waits for these. */
  get busy(): boolean {
    return this.running || this.queue.length > 0;
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    const waited = performance.now() - this.queue[0]!.enqueuedAt;
    if (
      this.queue.length >= this.opts.maxBatch ||
      this.opts.idleSessions() === 0 ||
      waited >= this.opts.maxWaitMs
    ) {
      this.flush();
      return;
    }
    if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.flush();
      }, this.opts.maxWaitMs - waited);
    }
  }

  private flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.running || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.opts.maxBatch);
    this.running = true;
    this.opts.onBatch?.(batch.length);
    this.run(batch.map((p) => p.request))
      .then(
        (results) => {
          if (results.length !== batch.length) {
            throw new Error(`policy returned ${results.length} results for a batch of ${batch.length}`);
          }
          batch.forEach((p, i) => p.resolve(results[i]!));
        },
        (e: unknown) => {
          const err = e instanceof Error ? e : new Error(String(e));
          for (const p of batch) p.reject(err);
        },
      )
      .catch((e: Error) => {
        for (const p of batch) p.reject(e);
      })
      .finally(() => {
        this.running = false;
        this.schedule();
      });
  }
}

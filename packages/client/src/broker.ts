/**
 * Serves an action chunk one step at a time, as openpi_client's ActionChunkBroker does, and goes
 * further: replan every K steps instead of at the chunk's end, and optionally ask for the next chunk in
 * the background while the robot keeps executing the current one, so it never waits on the network.
 * A chunk that arrives late is aligned to the step it was asked at, and merged with what is left of the
 * current chunk by the chosen rule.
 */
import { ClientError } from './errors.js';
import type { ObservationMap } from './observation.js';

export interface Chunk {
  actions: Float32Array;
  horizon: number;
  actionDim: number;
}

export type MergeRule = 'latest' | 'average';

export interface BrokerOptions {
  /** Ask for a new chunk after this many steps (default: the whole chunk, or half of it with prefetch). */
  replanEvery?: number;
  /** Ask in the background and keep executing the current chunk meanwhile. */
  prefetch?: boolean;
  /** How overlapping steps of the old and new chunk combine: take the new one, or average both. */
  merge?: MergeRule;
  /**
   * ACT's temporal ensembling: ask for a chunk every `replanEvery` steps (default every step) and execute,
   * at each step, the average of every chunk's prediction for that step, the one asked at the i-th
   * oldest weighted exp(-coefficient·i) (ACT and LeRobot use 0.01). Not with `prefetch`.
   */
  temporalEnsemble?: number;
}

export class ActionChunkBroker {
  private chunk: Chunk | null = null;
  /** The step at which chunk row 0 applies. */
  private chunkStart = 0;
  private t = 0;
  private pending: Promise<void> | null = null;
  private arrived: { chunk: Chunk; askedAt: number } | null = null;
  private failure: Error | null = null;
  /** Incremented on reset, so a chunk asked for in a previous episode is dropped. */
  private episode = 0;

  /** Temporal ensembling: the chunks still covering a step ahead, oldest first, with the step they start at. */
  private ensemble: Array<{ chunk: Chunk; start: number }> = [];
  private lastAsked = 0;

  constructor(
    private readonly infer: (obs: ObservationMap) => Promise<Chunk>,
    private readonly opts: BrokerOptions = {},
  ) {
    const m = opts.temporalEnsemble;
    if (m !== undefined && !(m >= 0 && Number.isFinite(m))) {
      throw new ClientError(`temporal ensemble coefficient: expected a number >= 0, got ${m}`);
    }
    if (m !== undefined && opts.prefetch) {
      throw new ClientError('temporal ensembling asks on the steps it executes: it cannot prefetch as well');
    }
  }

  reset(): void {
    this.chunk = null;
    this.t = 0;
    this.chunkStart = 0;
    this.pending = null;
    this.arrived = null;
    this.failure = null;
    this.ensemble = [];
    this.episode++;
  }

  /** The action for the current step, given the current observation. */
  async step(obs: ObservationMap): Promise<Float32Array> {
    if (this.opts.temporalEnsemble !== undefined) return this.ensembleStep(obs, this.opts.temporalEnsemble);
    if (this.chunk === null) {
      this.adopt(await this.infer(obs), this.t, 'latest');
    }
    const chunk = this.chunk!;
    const replanEvery = Math.max(
      1,
      Math.min(
        this.opts.replanEvery ?? (this.opts.prefetch ? Math.ceil(chunk.horizon / 2) : chunk.horizon),
        chunk.horizon,
      ),
    );
    if (this.opts.prefetch) {
      this.takeArrived();
      if (this.pending === null && this.t - this.chunkStart >= replanEvery) this.ask(obs);
      if (this.t - this.chunkStart >= this.chunk!.horizon) {
        await this.pending;
        this.takeArrived();
      }
    } else if (this.t - this.chunkStart >= replanEvery) {
      this.adopt(await this.infer(obs), this.t, 'latest');
    }
    const current = this.chunk!;
    const row = this.t - this.chunkStart;
    this.t++;
    return current.actions.slice(row * current.actionDim, (row + 1) * current.actionDim);
  }

  private async ensembleStep(obs: ObservationMap, m: number): Promise<Float32Array> {
    const every = Math.max(1, this.opts.replanEvery ?? 1);
    this.ensemble = this.ensemble.filter((e) => this.t - e.start < e.chunk.horizon);
    // Due, or no chunk reaches this step (chunks shorter than replanEvery).
    if (this.ensemble.length === 0 || this.t - this.lastAsked >= every) {
      const chunk = await this.infer(obs);
      if (!(chunk.horizon >= 1))
        throw new ClientError(`chunk of horizon ${chunk.horizon}: expected at least 1 step`);
      const dim = this.ensemble[0]?.chunk.actionDim;
      if (dim !== undefined && chunk.actionDim !== dim) {
        throw new ClientError(`chunk of action dimension ${chunk.actionDim} after chunks of ${dim}`);
      }
      this.ensemble.push({ chunk, start: this.t });
      this.lastAsked = this.t;
    }
    const dim = this.ensemble[0]!.chunk.actionDim;
    const out = new Float64Array(dim);
    let total = 0;
    this.ensemble.forEach((e, i) => {
      const w = Math.exp(-m * i);
      const row = (this.t - e.start) * dim;
      for (let d = 0; d < dim; d++) out[d]! += w * e.chunk.actions[row + d]!;
      total += w;
    });
    this.t++;
    return Float32Array.from(out, (v) => v / total);
  }

  private ask(obs: ObservationMap): void {
    const askedAt = this.t;
    const episode = this.episode;
    this.pending = this.infer(obs).then(
      (chunk) => {
        if (episode === this.episode) this.arrived = { chunk, askedAt };
      },
      (e: Error) => {
        if (episode === this.episode) this.failure = e;
      },
    );
  }

  private takeArrived(): void {
    if (this.failure) {
      const err = this.failure;
      this.failure = null;
      this.pending = null;
      throw err;
    }
    if (this.arrived === null) return;
    this.adopt(this.arrived.chunk, this.arrived.askedAt, this.opts.merge ?? 'latest');
    this.arrived = null;
    this.pending = null;
  }

  private adopt(next: Chunk, askedAt: number, rule: MergeRule): void {
    const old = this.chunk;
    if (rule === 'average' && old !== null && old.actionDim === next.actionDim) {
      const merged = next.actions.slice();
      for (let j = 0; j < next.horizon; j++) {
        const oldRow = askedAt + j - this.chunkStart;
        if (oldRow < 0 || oldRow >= old.horizon) continue;
        for (let d = 0; d < next.actionDim; d++) {
          const i = j * next.actionDim + d;
          merged[i] = (old.actions[oldRow * old.actionDim + d]! + next.actions[i]!) / 2;
        }
      }
      next = { ...next, actions: merged };
    }
    this.chunk = next;
    this.chunkStart = askedAt;
  }
}

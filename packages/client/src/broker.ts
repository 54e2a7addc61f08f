/**
 * Serves an action chunk one step at a time, as openpi_client's ActionChunkBroker does, and goes
 * further: replan every K steps instead of at the chunk's end, and optionally ask for the next chunk in
 * the background while the robot keeps executing the current one, so it never waits on the network.
 * A chunk that arrives late is aligned to the step it was asked at, and merged with what is left of the
 * current chunk by the chosen rule.
 *
 * The execution modes a robot meets latency with (`executionMode`): synchronous (wait for each chunk,
 * holding the last action), naive asynchronous (switch to the new chunk on arrival), ACT's temporal
 * ensembling, and real-time chunking (asynchronous, each request carrying the actions the robot has
 * committed to and the delay, which the server's chunk continues). `delay` makes the latency a number of
 * control steps, as a simulation needs it: a chunk asked at step t is used from step t + d on.
 */

import { ClientError } from './errors.js';
import { NdArray } from './ndarray.js';
import { ACTION_PREFIX_KEY, INFERENCE_DELAY_KEY, type ObservationMap } from './observation.js';

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
  /**
   * The steps the robot executes while a chunk computes, per request (a number, or a function drawing
   * one): a chunk asked at step t is used from step t + d on, never before, and waited for then. For a
   * simulated robot, whose steps do not wait for the network; left out, chunks are used when they arrive.
   */
  delay?: number | (() => number);
  /**
   * Real-time chunking (with `prefetch`): each request carries the rest of the current chunk (the
   * actions the robot has committed to) as `action_prefix` and the delay as `inference_delay`, so the
   * server's chunk continues them instead of jumping.
   */
  rtc?: boolean;
}

export type ExecutionMode = 'sync' | 'async' | 'ensemble' | 'rtc';
export const EXECUTION_MODES: readonly ExecutionMode[] = ['sync', 'async', 'ensemble', 'rtc'];

/**
 * The broker options of an execution mode: `sync` waits for each chunk, `async` switches to the next on
 * arrival, `ensemble` averages overlapping chunks (ACT, coefficient 0.01 unless given), `rtc` sends the
 * committed prefix with each request. `base` adds replanning, a delay, a coefficient.
 */
export function executionOptions(mode: ExecutionMode, base: BrokerOptions = {}): BrokerOptions {
  switch (mode) {
    case 'sync':
      return { ...base, prefetch: false, rtc: false, temporalEnsemble: undefined };
    case 'async':
      return { ...base, prefetch: true, rtc: false, temporalEnsemble: undefined };
    case 'ensemble':
      return { ...base, prefetch: false, rtc: false, temporalEnsemble: base.temporalEnsemble ?? 0.01 };
    case 'rtc':
      return { ...base, prefetch: true, rtc: true, temporalEnsemble: undefined };
  }
}

export class ActionChunkBroker {
  private chunk: Chunk | null = null;
  /** The step at which chunk row 0 applies. */
  private chunkStart = 0;
  private t = 0;
  private pending: Promise<void> | null = null;
  private arrived: { chunk: Chunk; askedAt: number } | null = null;
  /** The step the pending chunk may be used from (asked at + delay), with a delay set. */
  private usableAt = 0;
  /** Synchronous with a delay: steps left holding the last action while the chunk "computes". */
  private holding = 0;
  /** The last action returned: what the robot holds while it waits. */
  private last: Float32Array | null = null;
  private failure: Error | null = null;
  /** Incremented on reset, so a chunk asked for in a previous episode is dropped. */
  private episode = 0;

  /** Temporal ensembling: the chunks still covering a step ahead, oldest first, with the step they start at and may be used from. */
  private ensemble: Array<{ chunk: Chunk; start: number; usableAt: number }> = [];
  private lastAsked = 0;
  /** The last request sent, settled or not: the next waits for it (a server answers one at a time). */
  private inFlight: Promise<unknown> = Promise.resolve();
  /** The chunk the last action came from (null: none yet, or the robot held still). */
  private source: Chunk | null = null;
  private boundary = false;

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
    if (opts.rtc && !opts.prefetch) {
      throw new ClientError('real-time chunking asks while the robot executes: it needs prefetch');
    }
    if (typeof opts.delay === 'number' && !(Number.isInteger(opts.delay) && opts.delay >= 0)) {
      throw new ClientError(`delay: expected an integer number of steps >= 0, got ${opts.delay}`);
    }
  }

  /** This request's delay in steps (0 without one). */
  private drawDelay(): number {
    const d = typeof this.opts.delay === 'function' ? this.opts.delay() : (this.opts.delay ?? 0);
    if (!(Number.isInteger(d) && d >= 0))
      throw new ClientError(`delay: expected an integer number of steps >= 0, got ${d}`);
    return d;
  }

  reset(): void {
    this.chunk = null;
    this.t = 0;
    this.chunkStart = 0;
    this.pending = null;
    this.arrived = null;
    this.failure = null;
    this.ensemble = [];
    this.holding = 0;
    this.last = null;
    this.usableAt = 0;
    this.source = null;
    this.boundary = false;
    this.episode++;
  }

  /**
   * Whether the action the last `step` returned is the first from a new chunk after an action from
   * another one (the seam where a robot jumps, if it does), or, under temporal ensembling, the first
   * with a new chunk in its average. False on an episode's first step and while the robot holds still.
   */
  get chunkBoundary(): boolean {
    return this.boundary;
  }

  /** The action for the current step, given the current observation. */
  async step(obs: ObservationMap): Promise<Float32Array> {
    const action = await this.next(obs);
    this.last = action;
    return action;
  }

  private async next(obs: ObservationMap): Promise<Float32Array> {
    this.boundary = false;
    if (this.opts.temporalEnsemble !== undefined) return this.ensembleStep(obs, this.opts.temporalEnsemble);
    if (this.holding > 0) {
      // Synchronous, waiting out the delay: the robot holds where it is.
      this.holding--;
      this.t++;
      return this.last!;
    }
    if (this.chunk === null) {
      this.adopt(await this.request(obs), this.t, 'latest');
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
      const delayed = this.opts.delay !== undefined;
      if (delayed && this.pending !== null && this.t >= this.usableAt) await this.pending;
      if (!delayed || this.t >= this.usableAt) this.takeArrived();
      if (this.pending === null && this.t - this.chunkStart >= replanEvery) this.ask(obs);
      if (!delayed && this.t - this.chunkStart >= this.chunk!.horizon) {
        await this.pending;
        this.takeArrived();
      }
    } else if (this.t - this.chunkStart >= replanEvery) {
      const d = this.last === null ? 0 : this.drawDelay();
      const next = await this.request(obs);
      // The observation was taken now; the chunk is ready d steps later, the robot held still meanwhile.
      this.adopt(next, this.t + d, 'latest');
      if (d > 0) {
        this.holding = d - 1;
        this.t++;
        return this.last!;
      }
    }
    const current = this.chunk!;
    const row = this.t - this.chunkStart;
    this.t++;
    // Past the chunk's end while the next one is still on its way: hold the last action.
    if (row >= current.horizon) return this.last ?? current.actions.slice(-current.actionDim);
    this.boundary = this.source !== null && this.source !== current;
    this.source = current;
    return current.actions.slice(row * current.actionDim, (row + 1) * current.actionDim);
  }

  private async ensembleStep(obs: ObservationMap, m: number): Promise<Float32Array> {
    const every = Math.max(1, this.opts.replanEvery ?? 1);
    this.ensemble = this.ensemble.filter((e) => this.t - e.start < e.chunk.horizon);
    // Due, or no chunk reaches this step (chunks shorter than replanEvery).
    if (this.ensemble.length === 0 || this.t - this.lastAsked >= every) {
      // A chunk asked now counts from d steps on (the episode's first at once: nothing else covers it).
      const d = this.ensemble.length === 0 ? 0 : this.drawDelay();
      const chunk = await this.request(obs);
      if (!(chunk.horizon >= 1))
        throw new ClientError(`chunk of horizon ${chunk.horizon}: expected at least 1 step`);
      const dim = this.ensemble[0]?.chunk.actionDim;
      if (dim !== undefined && chunk.actionDim !== dim) {
        throw new ClientError(`chunk of action dimension ${chunk.actionDim} after chunks of ${dim}`);
      }
      this.ensemble.push({ chunk, start: this.t, usableAt: this.t + d });
      this.lastAsked = this.t;
    }
    const usable = this.ensemble.filter((e) => e.usableAt <= this.t);
    this.boundary = this.t > 0 && usable.some((e) => e.usableAt === this.t);
    const dim = this.ensemble[0]!.chunk.actionDim;
    const out = new Float64Array(dim);
    let total = 0;
    (usable.length > 0 ? usable : this.ensemble.slice(-1)).forEach((e, i) => {
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
    const d = this.drawDelay();
    this.usableAt = askedAt + d;
    if (this.opts.rtc && this.chunk) {
      // The rest of the current chunk from this step: what the robot executes while the next computes.
      const c = this.chunk;
      const from = Math.min(c.horizon, askedAt - this.chunkStart);
      const rows = c.horizon - from;
      if (rows > 0) {
        obs = {
          ...obs,
          [ACTION_PREFIX_KEY]: new NdArray(c.actions.slice(from * c.actionDim), [rows, c.actionDim]),
          [INFERENCE_DELAY_KEY]: Math.min(d, rows),
        };
      }
    }
    this.pending = this.request(obs).then(
      (chunk) => {
        if (episode === this.episode) this.arrived = { chunk, askedAt };
      },
      (e: Error) => {
        if (episode === this.episode) this.failure = e;
      },
    );
  }

  /**
   * Sends a request once the one before it has settled. An episode can end while a chunk is still
   * computing (a delay longer than the steps left); the next episode's first request waits for that one
   * instead of overlapping it, and its chunk is dropped (see `episode`).
   */
  private request(obs: ObservationMap): Promise<Chunk> {
    const sent = this.inFlight.then(() => this.infer(obs));
    this.inFlight = sent.catch(() => {});
    return sent;
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

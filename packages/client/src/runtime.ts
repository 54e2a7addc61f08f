/**
 * The robot-side loop of openpi_client's runtime: an environment, an agent that maps observations to
 * actions, subscribers that watch (recorders, video writers), run at most `maxHz`.
 */
import type { ActionChunkBroker } from './broker.js';
import type { ObservationMap } from './observation.js';

export interface Environment {
  reset(): void | Promise<void>;
  isEpisodeComplete(): boolean;
  getObservation(): ObservationMap | Promise<ObservationMap>;
  applyAction(action: Float32Array): void | Promise<void>;
}

export interface Agent {
  getAction(obs: ObservationMap): Promise<Float32Array>;
  reset(): void;
}

export interface Subscriber {
  onEpisodeStart?(episode: number): void | Promise<void>;
  onStep?(obs: ObservationMap, action: Float32Array): void | Promise<void>;
  onEpisodeEnd?(episode: number, steps: number): void | Promise<void>;
}

export interface RuntimeOptions {
  /** 0 runs as fast as the agent answers. */
  maxHz?: number;
  numEpisodes?: number;
  maxEpisodeSteps?: number;
}

/** The agent that asks a policy server through a chunk broker. */
export class PolicyAgent implements Agent {
  constructor(private readonly broker: ActionChunkBroker) {}
  getAction(obs: ObservationMap): Promise<Float32Array> {
    return this.broker.step(obs);
  }
  reset(): void {
    this.broker.reset();
  }
}

export class Runtime {
  private stopped = false;

  constructor(
    private readonly env: Environment,
    private readonly agent: Agent,
    private readonly subscribers: Subscriber[] = [],
    private readonly opts: RuntimeOptions = {},
  ) {}

  stop(): void {
    this.stopped = true;
  }

  /** Runs the episodes; returns the number of steps each took. */
  async run(): Promise<number[]> {
    const steps: number[] = [];
    for (let ep = 0; ep < (this.opts.numEpisodes ?? 1) && !this.stopped; ep++) {
      steps.push(await this.runEpisode(ep));
    }
    return steps;
  }

  private async runEpisode(episode: number): Promise<number> {
    await this.env.reset();
    this.agent.reset();
    for (const s of this.subscribers) await s.onEpisodeStart?.(episode);
    const period = this.opts.maxHz ? 1000 / this.opts.maxHz : 0;
    const maxSteps = this.opts.maxEpisodeSteps ?? Number.POSITIVE_INFINITY;
    let step = 0;
    while (!this.stopped && step < maxSteps && !this.env.isEpisodeComplete()) {
      const t0 = performance.now();
      const obs = await this.env.getObservation();
      const action = await this.agent.getAction(obs);
      await this.env.applyAction(action);
      for (const s of this.subscribers) await s.onStep?.(obs, action);
      step++;
      const rest = period - (performance.now() - t0);
      if (rest > 0) await new Promise((r) => setTimeout(r, rest));
    }
    for (const s of this.subscribers) await s.onEpisodeEnd?.(episode, step);
    return step;
  }
}

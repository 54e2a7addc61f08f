import { loadRobot } from '../config/load.js';
import { ConstantPolicy, type Policy, type PolicySpec } from './policy.js';

/** What a policy needs besides its spec; plain data, so it can be sent to a worker thread. */
export interface PolicyContext {
  robot: string;
  horizon: number;
  metadata: Record<string, unknown>;
  defaultPrompt: string | null;
  backend?: string;
  /** Seeds the flow-matching noise, for reproducible chunks; fresh noise every call when left out. */
  seed?: number | null;
  /** The initial noise's standard deviation (a checkpoint's `model.noise_scale` when left out). */
  noiseScale?: number | null;
  /**
   * Native sampler threads where the caller knows better than the default (one per core, up to two):
   * a server that shares the machine with the simulation rolling out against it takes 1.
   * VLA_SAMPLER_THREADS still wins.
   */
  samplerThreads?: number;
}

/** Build a policy from its spec; also called inside the inference worker. */
export async function loadPolicy(spec: PolicySpec, ctx: PolicyContext): Promise<Policy> {
  const robot = loadRobot(ctx.robot);
  switch (spec.kind) {
    case 'zeros':
      return new ConstantPolicy(robot, ctx.horizon, ctx.metadata);
    case 'sleep':
      return new ConstantPolicy(robot, ctx.horizon, ctx.metadata, spec.ms);
    case 'replay': {
      const { ReplayPolicy } = await import('./replay-policy.js');
      return ReplayPolicy.open(robot, spec.dataset, spec.episode, ctx);
    }
    case 'checkpoint': {
      const { ModelPolicy } = await import('./model-policy.js');
      return ModelPolicy.open(spec.dir, ctx);
    }
  }
}

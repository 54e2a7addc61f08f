import { loadRobot } from '../config/load.js';
import { ConstantPolicy, type Policy, type PolicyContext, type PolicySpec } from './policy.js';

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

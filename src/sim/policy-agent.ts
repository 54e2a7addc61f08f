/**
 * A policy server as an agent: observations go out in openpi's format for the task's robot spec (ALOHA:
 * `state` + CHW `images`; the single arm: DROID's flat keys with HWC images), action chunks come back
 * through the chunk broker, one action per step.
 */
import {
  ActionChunkBroker,
  type BrokerOptions,
  NdArray,
  PolicyClient,
  setObsValue,
} from '@vla-orchestrator/client';
import { UserError } from '../config/errors.js';
import { loadRobot } from '../config/load.js';
import type { RobotSpec } from '../config/robot.js';
import type { Agent } from './agent.js';
import type { SimEnv, SimObservation } from './env.js';

/** The spec cameras the env must render for this robot's observations. */
export const specCameraNames = (spec: RobotSpec): string[] => spec.cameras.map((c) => c.name);

/** openpi's observation map for one simulated observation, laid out as the robot spec documents it. */
export function toOpenpiObservation(
  spec: RobotSpec,
  obs: SimObservation,
  width: number,
  height: number,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let offset = 0;
  for (const part of spec.state.parts) {
    setObsValue(
      out,
      part.key,
      new NdArray(Float64Array.from(obs.state.subarray(offset, offset + part.dim)), [part.dim]),
    );
    offset += part.dim;
  }
  for (const cam of spec.cameras) {
    const hwc = obs.images[cam.name];
    if (!hwc) continue;
    if (cam.layout === 'hwc') {
      setObsValue(out, cam.key, new NdArray(hwc, [height, width, 3]));
    } else {
      const chw = new Uint8Array(hwc.length);
      const plane = width * height;
      for (let i = 0; i < plane; i++) {
        chw[i] = hwc[3 * i]!;
        chw[plane + i] = hwc[3 * i + 1]!;
        chw[2 * plane + i] = hwc[3 * i + 2]!;
      }
      setObsValue(out, cam.key, new NdArray(chw, [3, height, width]));
    }
  }
  setObsValue(out, spec.prompt_key, obs.prompt);
  return out;
}

export class PolicyClientAgent implements Agent {
  private readonly broker: ActionChunkBroker;
  /** Builds the observation of the current step; called only when the broker asks the server. */
  private current: (() => Record<string, unknown>) | null = null;

  private constructor(
    private readonly client: PolicyClient,
    private readonly spec: RobotSpec,
    brokerOpts: BrokerOptions,
    inferTimeoutMs: number,
  ) {
    const dim = spec.action.names.length;
    this.broker = new ActionChunkBroker(async (obs) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new UserError(`no reply from the server within ${inferTimeoutMs / 1000} s`)),
          inferTimeoutMs,
        );
      });
      // The broker's own keys (real-time chunking's committed prefix) join the step's observation.
      const r = await Promise.race([
        client.infer(this.current ? { ...this.current(), ...obs } : obs),
        late,
      ]).finally(() => clearTimeout(timer));
      if (r.actionDim !== dim) {
        throw new UserError(
          `the server sent actions of dimension ${r.actionDim} (chunk ${r.horizon}x${r.actionDim}); robot ${spec.name} expects ${dim}`,
        );
      }
      return r;
    }, brokerOpts);
  }

  static async connect(
    url: string,
    robot: string,
    opts: {
      apiKey?: string | null;
      timeoutMs?: number;
      broker?: BrokerOptions;
      /** A hung server fails the episode after this long instead of stalling the eval (default 120 s). */
      inferTimeoutMs?: number;
    } = {},
  ): Promise<PolicyClientAgent> {
    const client = await PolicyClient.connect(url, {
      apiKey: opts.apiKey,
      timeoutMs: opts.timeoutMs ?? 10_000,
    });
    return new PolicyClientAgent(client, loadRobot(robot), opts.broker ?? {}, opts.inferTimeoutMs ?? 120_000);
  }

  reset(): void {
    this.broker.reset();
  }

  /**
   * Between chunks the broker needs no observation, so cameras are drawn (and images converted) only on
   * the steps that ask the server: with 50-step chunks, one step in fifty.
   */
  act(obs: SimObservation, env: SimEnv): Promise<Float32Array> {
    this.current = () => {
      const images: Record<string, Uint8Array> = {};
      for (const cam of this.spec.cameras) {
        if (cam.name in env.robot.cameras) images[cam.name] = obs.images[cam.name] ?? env.render(cam.name);
      }
      return toOpenpiObservation(this.spec, { ...obs, images }, env.width, env.height);
    };
    return this.broker.step({});
  }

  chunkBoundary(): boolean {
    return this.broker.chunkBoundary;
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

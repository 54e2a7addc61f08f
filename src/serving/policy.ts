/**
 * The policy interface the server knows, and the policies that need no model: `zeros` (chunks of zeros
 * of the robot's shape, for wiring up a robot) and `sleep:MS` (zeros after MS of blocking work, for load
 * tests of batching). Model and replay policies live beside this file.
 */

import { UserError } from '../config/errors.js';
import type { RobotSpec } from '../config/robot.js';
import type { SamplerChoice } from '../model/chunk-sampler.js';
import type { Observation } from '../protocol/observation.js';

export interface PolicyRequest {
  obs: Observation;
  /** The connection it came from: policies with per-robot state (replay) keep it per session. */
  session: number;
}

export interface PolicyResult {
  /** float32 [horizon, actionDim] in the robot's action space. */
  actions: Float32Array;
  horizon: number;
  actionDim: number;
  /** This request's share of the policy's own compute time. */
  inferMs: number;
  /**
   * Why this request got no chunk while the rest of its batch did (π0-FAST's tokens that decode to no
   * chunk): the server sends the message to that robot alone and counts `kind` in /metrics.
   */
  error?: { message: string; kind: string };
}

export interface Policy {
  readonly robot: RobotSpec;
  readonly horizon: number;
  /** Sent to each client as the first frame (openpi's ALOHA runtime reads `reset_pose`). */
  readonly metadata: Record<string, unknown>;
  /** A request without a prompt (and no default prompt configured) is refused before batching. */
  readonly requiresPrompt: boolean;
  /** One call per batch: the server gathers requests from several robots into one forward pass. */
  inferBatch(requests: PolicyRequest[]): Promise<PolicyResult[]>;
  /** A connection closed: forget its state. */
  endSession?(session: number): void;
  close?(): Promise<void>;
}

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
   * a server that shares the machine with the simulation rolling out against it takes 1. The user's
   * choice (`sampler.threads`) wins.
   */
  samplerThreads?: number;
  /** The user's choice of sampler and its threads, read at the command's edge (samplerChoiceFromEnv). */
  sampler?: SamplerChoice;
}

/** How a policy is named on the command line (`--policy zeros`, `sleep:50`, `replay:DIR`, a checkpoint). */
export type PolicySpec =
  | { kind: 'zeros' }
  | { kind: 'sleep'; ms: number }
  | { kind: 'replay'; dataset: string; episode: number | null }
  | { kind: 'checkpoint'; dir: string };

export function parsePolicySpec(text: string): PolicySpec {
  if (text === 'zeros') return { kind: 'zeros' };
  const sleep = /^sleep:(\d+(?:\.\d+)?)$/.exec(text);
  if (sleep) return { kind: 'sleep', ms: Number(sleep[1]) };
  const replay = /^replay:(.+?)(?:#(\d+))?$/.exec(text);
  if (replay) return { kind: 'replay', dataset: replay[1]!, episode: replay[2] ? Number(replay[2]) : null };
  throw new UserError(`--policy ${text}: expected zeros, sleep:MS, or replay:DATASET[#EPISODE]`);
}

/** Answers every request with zeros of the robot's action shape, after `costMs` of blocking work. */
export class ConstantPolicy implements Policy {
  readonly requiresPrompt = false;
  constructor(
    readonly robot: RobotSpec,
    readonly horizon: number,
    readonly metadata: Record<string, unknown>,
    private readonly costMs = 0,
  ) {}

  async inferBatch(requests: PolicyRequest[]): Promise<PolicyResult[]> {
    const t0 = performance.now();
    // Blocking on purpose: it stands for a forward pass that holds its thread, batched or not.
    if (this.costMs > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, this.costMs);
    const actionDim = this.robot.action.names.length;
    const inferMs = (performance.now() - t0) / requests.length;
    return requests.map(() => ({
      actions: new Float32Array(this.horizon * actionDim),
      horizon: this.horizon,
      actionDim,
      inferMs,
    }));
  }
}

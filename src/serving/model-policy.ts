/**
 * A trained checkpoint as a served policy: the config's input transforms (robot adapter → normalize →
 * camera images, letterboxed), the model's batched `sampleActions`, then the output transforms
 * (unnormalize → absolute actions from deltas → robot adapter back), composed by transforms/group.ts as
 * for the training loader, so the model sees the numbers it was trained on.
 */
import { describeBackend, setProductPrecision, setupBackend } from '../backend/index.js';
import { UserError } from '../config/errors.js';
import { loadRobot } from '../config/load.js';
import type { RobotSpec } from '../config/robot.js';
import type { Committed } from '../model/committed.js';
import { type Guidance, rtcWeights } from '../model/pi0.js';
import { loadPolicyModel, type PolicyModel } from '../model/policy.js';
import { Rng } from '../model/rng.js';
import { frames, type Transform } from '../transforms/frames.js';
import {
  applyInputs,
  applyOutputs,
  inputTransforms,
  type TransformGroup,
  transformGroup,
} from '../transforms/group.js';
import { squareImage } from '../transforms/image.js';
import type { Policy, PolicyContext, PolicyRequest, PolicyResult } from './policy.js';

export class ModelPolicy implements Policy {
  readonly requiresPrompt = true;
  private readonly inputs: Transform[];
  private readonly noise: Rng | null;
  /** The flow's initial noise scale: the serve option, else the checkpoint's `model.noise_scale`. */
  private readonly noiseScale: number;

  private constructor(
    private readonly model: PolicyModel,
    private readonly transforms: TransformGroup,
    readonly robot: RobotSpec,
    readonly metadata: Record<string, unknown>,
    seed: number | null,
    noiseScale: number,
  ) {
    this.noiseScale = noiseScale;
    this.inputs = inputTransforms(transforms);
    this.noise = seed === null ? null : new Rng(seed, 11);
  }

  static async open(dir: string, ctx: PolicyContext): Promise<ModelPolicy> {
    const backend = await setupBackend({ backend: ctx.backend as never });
    // A checkpoint trained on several robots runs for the one served, with that robot's norm stats.
    const model = await loadPolicyModel(dir, undefined, ctx.sampler, ctx.robot);
    if (!model.normStats) {
      throw new UserError(
        `checkpoint ${dir}: no assets/<asset_id>/norm_stats.json: cannot normalize observations`,
      );
    }
    const productsOff = setProductPrecision(model.config.serve.precision);
    if (productsOff)
      console.error(`${model.config.serve.precision} products asked (serve.precision); ${productsOff}`);
    const robot = loadRobot(model.config.robot);
    const transforms = transformGroup(model.config, model, {
      normStats: model.normStats,
      cameras: model.cameras.length,
      imageSize: model.imageSize,
    });
    const noiseScale = ctx.noiseScale ?? model.dims.noiseScale;
    if (ctx.samplerThreads !== undefined) model.chunks.preferThreads(ctx.samplerThreads);
    // The sampler's worker and its arena, sized for the server's largest batch, start now rather
    // than on the first client's chunk (and again on the first batch of two).
    const b = Math.min(model.config.serve.max_batch, 16);
    await model.chunks.prepare(
      model.prepare({
        images: new Uint8Array(b * model.cameras.length * model.imageSize * model.imageSize * 3),
        imageMask: new Uint8Array(b * model.cameras.length).fill(1),
        state: new Float32Array(b * model.stateDim),
        prompts: new Array(b).fill(''),
        batchSize: b,
      }),
    );
    console.error(
      `${describeBackend(backend)}; model ${model.paramCount.toLocaleString('en')} params from ${dir}, noise scale ${noiseScale}; ${model.chunks.describe()}`,
    );
    return new ModelPolicy(model, transforms, robot, ctx.metadata, ctx.seed ?? null, noiseScale);
  }

  /** The steps of each chunk served: the robot's own (`data.action_horizon`) where fewer than the model's. */
  get horizon(): number {
    return this.model.chunkSteps;
  }

  async inferBatch(requests: PolicyRequest[]): Promise<PolicyResult[]> {
    const t0 = performance.now();
    const m = this.model;
    const b = requests.length;
    const state = new Float32Array(b * m.stateDim);
    requests.forEach(({ obs }, i) => state.set(obs.state, i * m.stateDim));
    // π0-FAST decodes tokens, which nothing guides: it serves a committed prefix as a server without
    // real-time chunking does, by ignoring it.
    const prefixed = m.dims.variant !== 'pi0_fast' && requests.some((r) => r.obs.actionPrefix);
    const f = frames({
      size: b,
      stateDim: m.stateDim,
      actionDim: m.actionDim,
      horizon: m.horizon,
      state,
      // Real-time chunking: the committed actions go in as recorded chunks do, into the model's numbers.
      actions: prefixed ? committedChunks(requests, m.horizon, m.actionDim) : null,
      prompts: requests.map((r) => r.obs.prompt ?? ''),
      cameraSource: (i, c, out, offset) => {
        const img = requests[i]!.obs.images[m.cameras[c]!];
        if (!img) return false;
        squareImage(img.data, img.width, img.height, img.layout, m.imageSize, out, offset);
        return true;
      },
    });
    applyInputs(this.inputs, f);
    const noise = this.noise?.normals(b * m.horizon * m.dims.actionDim, this.noiseScale);
    const failures: Array<string | null> = [];
    f.modelActions = await m.sampleActions(
      {
        images: f.images!,
        imageMask: f.imageMask!,
        state: f.modelState!,
        prompts: f.prompts,
        batchSize: b,
        noise,
      },
      {
        noiseScale: this.noiseScale,
        failures,
        ...(prefixed && this.continuing(requests, f.modelActions!)),
      },
    );
    // The model's float32 chunks, turned into the robot's in place.
    const actions = applyOutputs(this.transforms, f).actions as Float32Array;
    const per = m.horizon * m.actionDim;
    const served = this.horizon;
    const inferMs = (performance.now() - t0) / b;
    return requests.map(
      (_, i): PolicyResult => ({
        actions: actions.subarray(i * per, i * per + served * m.actionDim),
        horizon: served,
        actionDim: m.actionDim,
        inferMs,
        ...(failures[i] && {
          error: {
            message: `${failures[i]}: no action chunk for this observation`,
            kind: 'undecodable_actions',
          },
        }),
      }),
    );
  }

  /**
   * How this batch's chunks continue their robots' committed actions (real-time chunking): a checkpoint
   * trained with `train.rtc` takes the delay's steps as given; any other is guided towards the delay's
   * steps only (weight 1 there, 0 after; the paper's decaying tail over the rest of the prefix measured
   * far worse on the shipped base: docs/model-family.md). Requests without a prefix get weight 0.
   */
  private continuing(
    requests: PolicyRequest[],
    prefix: Float32Array,
  ): { guidance: Guidance } | { committed: Committed } {
    const h = this.model.horizon;
    if (this.model.config.train.rtc) {
      const delays = Int32Array.from(requests, (r) => Math.min(h, r.obs.actionPrefix?.delay ?? 0));
      return { committed: { actions: prefix, delays } };
    }
    const weights = new Float32Array(requests.length * h);
    requests.forEach(({ obs }, i) => {
      const p = obs.actionPrefix;
      if (p) weights.set(rtcWeights(h, p.delay, p.delay), i * h);
    });
    return { guidance: { prefix, weights, maxGuidance: RTC_MAX_GUIDANCE } };
  }

  async close(): Promise<void> {
    this.model.dispose();
  }
}

/** β, the largest guidance weight of real-time chunking's guided sampling (the paper's 5). */
const RTC_MAX_GUIDANCE = 5;

/**
 * [B, H, action dims]: each request's committed actions in its first rows, its last committed action
 * repeated after them (rows the guidance weighs 0); zeros for a request without a prefix.
 */
function committedChunks(requests: PolicyRequest[], horizon: number, dim: number): Float32Array {
  const out = new Float32Array(requests.length * horizon * dim);
  requests.forEach(({ obs }, i) => {
    const p = obs.actionPrefix;
    if (!p) return;
    const n = Math.min(horizon, p.steps);
    out.set(p.actions.subarray(0, n * dim), i * horizon * dim);
    const last = p.actions.subarray((n - 1) * dim, n * dim);
    for (let k = n; k < horizon; k++) out.set(last, (i * horizon + k) * dim);
  });
  return out;
}

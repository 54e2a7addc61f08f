/**
 * A trained checkpoint as a served policy: openpi's input transforms (robot adapter → resize with pad →
 * normalize), the model's batched `sampleActions`, then the output transforms (unnormalize → absolute
 * actions from deltas → robot adapter), exactly the numbers the training loader produced.
 */
import { describeBackend, setupBackend } from '../backend/index.js';
import { UserError } from '../config/errors.js';
import { loadRobot } from '../config/load.js';
import type { RobotSpec } from '../config/robot.js';
import { chwToHwc, resizeWithPad } from '../data/image.js';
import { loadPolicyModel, type PolicyModel } from '../model/policy.js';
import { Rng } from '../model/rng.js';
import type { CameraImage } from '../protocol/observation.js';
import { alohaActionsFromPi, alohaStateToPi } from '../transforms/aloha.js';
import { type NormStats, normalize, unnormalize } from '../transforms/normalize.js';
import type { Policy, PolicyContext, PolicyRequest, PolicyResult } from './policy.js';

function toSquare(img: CameraImage, size: number, out: Uint8Array, offset: number): void {
  const hwc = img.layout === 'chw' ? chwToHwc(img.data, 3, img.height, img.width) : img.data;
  resizeWithPad(hwc, img.width, img.height, size, out, offset);
}

export class ModelPolicy implements Policy {
  readonly requiresPrompt = true;
  private readonly deltaMask: boolean[];
  private readonly noise: Rng | null;
  /** The flow's initial noise scale: the serve option, else the checkpoint's `model.noise_scale`. */
  private readonly noiseScale: number;

  private constructor(
    private readonly model: PolicyModel,
    private readonly stats: NormStats,
    readonly robot: RobotSpec,
    readonly metadata: Record<string, unknown>,
    seed: number | null,
    noiseScale: number,
  ) {
    this.noiseScale = noiseScale;
    const mask = model.config.data.delta_action_mask ?? [];
    this.deltaMask = Array.from({ length: model.actionDim }, (_, d) => mask[d] ?? false);
    this.noise = seed === null ? null : new Rng(seed, 11);
  }

  static async open(dir: string, ctx: PolicyContext): Promise<ModelPolicy> {
    const backend = await setupBackend({ backend: ctx.backend as never });
    const model = await loadPolicyModel(dir);
    if (model.config.robot !== ctx.robot) {
      throw new UserError(`checkpoint ${dir} was trained for robot ${model.config.robot}, not ${ctx.robot}`);
    }
    if (!model.normStats) {
      throw new UserError(
        `checkpoint ${dir}: no assets/<asset_id>/norm_stats.json: cannot normalize observations`,
      );
    }
    const robot = loadRobot(model.config.robot);
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
    return new ModelPolicy(model, model.normStats, robot, ctx.metadata, ctx.seed ?? null, noiseScale);
  }

  get horizon(): number {
    return this.model.horizon;
  }

  async inferBatch(requests: PolicyRequest[]): Promise<PolicyResult[]> {
    const t0 = performance.now();
    const m = this.model;
    const b = requests.length;
    const size = m.imageSize;
    const cams = m.cameras;
    const mode = m.config.data.norm;
    const adapt = m.config.data.adapt_to_pi;
    const images = new Uint8Array(b * cams.length * size * size * 3);
    const imageMask = new Uint8Array(b * cams.length);
    const modelState = new Float32Array(b * m.stateDim);
    requests.forEach(({ obs }, i) => {
      modelState.set(obs.state, i * m.stateDim);
      cams.forEach((cam, c) => {
        const img = obs.images[cam];
        if (!img) return;
        imageMask[i * cams.length + c] = 1;
        toSquare(img, size, images, (i * cams.length + c) * size * size * 3);
      });
    });
    if (adapt) alohaStateToPi(modelState, m.stateDim);
    const state = normalize(modelState.slice(), this.stats, 'state', mode, m.stateDim);
    const noise = this.noise?.normals(b * m.horizon * m.dims.actionDim, this.noiseScale);
    const actions = await m.sampleActions(
      {
        images,
        imageMask,
        state,
        prompts: requests.map((r) => r.obs.prompt ?? ''),
        batchSize: b,
        noise,
      },
      { noiseScale: this.noiseScale },
    );
    unnormalize(actions, this.stats, 'actions', mode, m.actionDim);
    const per = m.horizon * m.actionDim;
    for (let i = 0; i < b; i++) {
      for (let h = 0; h < m.horizon; h++) {
        for (let d = 0; d < m.actionDim; d++) {
          if (this.deltaMask[d]) actions[i * per + h * m.actionDim + d]! += modelState[i * m.stateDim + d]!;
        }
      }
    }
    if (adapt) alohaActionsFromPi(actions, m.actionDim);
    const inferMs = (performance.now() - t0) / b;
    return requests.map((_, i) => ({
      actions: actions.subarray(i * per, (i + 1) * per),
      horizon: m.horizon,
      actionDim: m.actionDim,
      inferMs,
    }));
  }

  async close(): Promise<void> {
    this.model.dispose();
  }
}

/**
 * A trained policy loaded from a checkpoint folder, as the policy server and `vla infer` use it:
 * normalized robot observations in, normalized robot actions out, any batch size.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import YAML from 'yaml';
import { UserError } from '../config/errors.js';
import { loadRobot, validate } from '../config/load.js';
import {
  assetIdFor,
  chunkSteps,
  promptsNameRobot,
  robotConfig,
  robotPrompt,
  robotsOf,
  trainedRobot,
} from '../config/mixture.js';
import { actionDim, stateDim } from '../config/robot.js';
import { TrainConfig } from '../config/schema.js';
import {
  checkNormStatsProvenance,
  checkpointNormStatsFile,
  type NormStats,
  readNormStats,
} from '../transforms/normalize.js';
import { ChunkSampler, type SamplerChoice } from './chunk-sampler.js';
import type { Committed } from './committed.js';
import { type ModelDims, modelDims } from './config.js';
import { FAST_TOKENIZER_FILE, type FastTokenizer, readFastTokenizer } from './fast-tokenizer.js';
import type { ModelInputs } from './inputs.js';
import { type Params, paramCount } from './params.js';
import { checkTokenizerFits, type Guidance, mergeLora, Pi0, paramSpecs, prepareInputs } from './pi0.js';
import { Rng } from './rng.js';
import { readSafetensors } from './safetensors.js';

export interface SampleInput {
  /** uint8 [B, cams, S, S, 3], already resized with padding to the model's S. */
  images: Uint8Array;
  /** [B, cams] */
  imageMask: Uint8Array;
  /** float32 [B, stateDim], normalized. */
  state: Float32Array;
  prompts: string[];
  batchSize: number;
  /**
   * float32 [B, H, action_dim] initial noise, used as given; drawn from a fresh seed when left out, with
   * the standard deviation `noiseScale` (default: the config's `model.noise_scale`).
   */
  noise?: Float32Array;
}

export class PolicyModel {
  readonly model: Pi0;
  readonly dims: ModelDims;
  private noiseRng = new Rng(Date.now() >>> 0, 7);
  /** Computes the chunks and keeps what that needs across them (chunk-sampler.ts). */
  readonly chunks: ChunkSampler;

  constructor(
    readonly config: TrainConfig,
    readonly normStats: NormStats | null,
    readonly params: Params,
    /** Camera names in the order of the images' second axis. */
    readonly cameras: string[],
    readonly stateDim: number,
    /** The robot's action dims (the model's are padded to action_dim). */
    readonly actionDim: number,
    /** Whether `dispose` frees `params` too (false where they are borrowed, e.g. a trainer's). */
    private readonly ownsParams = true,
    /** Which sampler and how many of its threads, as the command's edge decided (default: see ChunkSampler). */
    sampler: SamplerChoice = {},
    /** The robot every prompt names, for a checkpoint whose prompts name it (config/mixture.ts promptsNameRobot). */
    readonly promptRobot: string | null = null,
    /** π0-FAST's action tokenizer (the checkpoint's assets). */
    actionTokenizer: FastTokenizer | null = null,
  ) {
    this.dims = modelDims(config.model);
    this.model = new Pi0(this.dims, actionTokenizer);
    this.chunks = new ChunkSampler(this.model, params, sampler);
  }

  get imageSize(): number {
    return this.dims.imageSize;
  }

  get horizon(): number {
    return this.dims.horizon;
  }

  /** The steps of the robot's chunk: its own (`data.action_horizon`) where fewer than the model's. */
  get chunkSteps(): number {
    return chunkSteps(this.config);
  }

  get paramCount(): number {
    return paramCount(this.params);
  }

  prepare(input: SampleInput): ModelInputs {
    // The robot's own chunk steps, where fewer than the model's: the tokens past them are hidden, as in training.
    const steps = this.chunkSteps;
    const short = steps < this.dims.horizon;
    return prepareInputs(this.dims, {
      batchSize: input.batchSize,
      cameras: this.cameras.length,
      imageSize: this.imageSize,
      images: input.images,
      imageMask: input.imageMask,
      state: input.state,
      stateDim: this.stateDim,
      prompts: this.promptRobot ? input.prompts.map((p) => robotPrompt(this.promptRobot!, p)) : input.prompts,
      ...(short && { horizons: new Int32Array(input.batchSize).fill(steps) }),
    });
  }

  /** Action chunks float32 [B, H, actionDim] (normalized, the robot's dims only). */
  async sampleActions(
    input: SampleInput,
    opts: {
      numSteps?: number;
      cache?: boolean;
      noiseScale?: number;
      guidance?: Guidance;
      committed?: Committed;
      /** π0-FAST: filled with why each sample's tokens made no chunk (null where they did); its rows are NaN. */
      failures?: Array<string | null>;
    } = {},
  ): Promise<Float32Array> {
    const d = this.dims;
    const b = input.batchSize;
    const full = b * d.horizon * d.actionDim;
    const noise = input.noise ?? this.noiseRng.normals(full, opts.noiseScale ?? d.noiseScale);
    if (noise.length !== full)
      throw new Error(`noise: expected ${b}×${d.horizon}×${d.actionDim} values, got ${noise.length}`);
    // Guidance comes in the robot's (normalised) action dims, as the chunks go out.
    const guidance = opts.guidance && { ...opts.guidance, prefix: this.padActions(opts.guidance.prefix, b) };
    const committed = opts.committed && {
      ...opts.committed,
      actions: this.padActions(opts.committed.actions, b),
    };
    const all = await this.chunks.sample(this.prepare(input), noise, { ...opts, guidance, committed });
    if (this.actionDim === d.actionDim) return all;
    const actions = new Float32Array(b * d.horizon * this.actionDim);
    for (let i = 0; i < b * d.horizon; i++) {
      actions.set(all.subarray(i * d.actionDim, i * d.actionDim + this.actionDim), i * this.actionDim);
    }
    return actions;
  }

  /** [B, H, robot action dims] → [B, H, the model's action_dim], zero-padded. */
  private padActions(actions: Float32Array, b: number): Float32Array {
    const d = this.dims;
    if (actions.length !== b * d.horizon * this.actionDim)
      throw new Error(
        `committed actions: expected ${b}×${d.horizon}×${this.actionDim} values, got ${actions.length}`,
      );
    if (this.actionDim === d.actionDim) return actions;
    const out = new Float32Array(b * d.horizon * d.actionDim);
    for (let i = 0; i < b * d.horizon; i++)
      out.set(actions.subarray(i * this.actionDim, (i + 1) * this.actionDim), i * d.actionDim);
    return out;
  }

  /** Frees what the policy holds: its sampling weights, and its params if it owns them. */
  dispose(): void {
    if (this.ownsParams) tf.dispose([...this.params.values()]);
    void this.chunks.dispose();
  }
}

/** The robot's cameras and dims as the checkpoint's config names them (robots/<name>.yaml). */
export interface RobotShape {
  cameras: string[];
  stateDim: number;
  actionDim: number;
}

/**
 * Loads `<dir>/config.yaml`, `<dir>/params.safetensors` and `<dir>/assets/<asset_id>/norm_stats.json`.
 * `robot` gives the camera order and dims; by default it is read from the robot spec the config names.
 * `forRobot` picks the robot a checkpoint trained on several robots runs for: the config narrowed to
 * it (its transforms), its norm stats, its cameras and dims, its name in each prompt.
 */
export async function loadPolicyModel(
  checkpointDir: string,
  robot?: RobotShape,
  sampler: SamplerChoice = {},
  forRobot?: string,
): Promise<PolicyModel> {
  const configFile = path.join(checkpointDir, 'config.yaml');
  if (!existsSync(configFile)) {
    throw new UserError(
      `${checkpointDir}: not a checkpoint (no config.yaml; expected checkpoints/<config>/<exp>/<step>)`,
    );
  }
  const trained = validate(
    TrainConfig,
    YAML.parse(readFileSync(configFile, 'utf8')),
    () => `${configFile}: `,
  );
  const runFor = trainedRobot(trained, forRobot, `checkpoint ${checkpointDir}`);
  const robots = robotsOf(trained);
  const mixed = robots.length > 1;
  const config = mixed ? robotConfig(trained, runFor) : trained;
  const dims = modelDims(config.model);
  const { tensors, metadata } = readSafetensors(path.join(checkpointDir, 'params.safetensors'));
  // A mixture of robots was trained on padded slots and dims: each robot runs on its own.
  const shape = robot ?? (mixed ? null : trainedShape(metadata)) ?? robotShape(runFor);
  const params: Params = new Map();
  for (const [name, spec] of paramSpecs(dims)) {
    const t = tensors.get(name);
    if (!t || t.shape.join(',') !== spec.shape.join(',')) {
      tf.dispose([...params.values()]);
      throw new UserError(
        `${checkpointDir}/params.safetensors: ${name} ${t ? `has shape [${t.shape}], expected [${spec.shape}]` : 'is missing'} for the config's model`,
      );
    }
    params.set(name, tf.tensor(t.data as Float32Array, t.shape, 'float32'));
  }
  return new PolicyModel(
    config,
    findCheckpointNormStats(checkpointDir, config),
    mergeLora(params, dims),
    shape.cameras,
    shape.stateDim,
    shape.actionDim,
    true,
    sampler,
    promptsNameRobot(trained) ? runFor : null,
    checkpointActionTokenizer(checkpointDir, trained, dims),
  );
}

/** π0-FAST's tokenizer from the checkpoint's assets (beside the config robot's norm stats); null for other variants. */
function checkpointActionTokenizer(dir: string, config: TrainConfig, dims: ModelDims): FastTokenizer | null {
  if (dims.variant !== 'pi0_fast') return null;
  const file = path.join(dir, 'assets', assetIdFor(config, config.robot), FAST_TOKENIZER_FILE);
  if (!existsSync(file))
    throw new UserError(
      `checkpoint ${dir}: model.variant pi0_fast, but no ${path.relative(dir, file)}: cannot decode action tokens`,
    );
  const tok = readFastTokenizer(file);
  checkTokenizerFits(dims, tok, file);
  return tok;
}

/** The checkpoint's norm stats for the config's robot: `assets/<its asset_id>/`, else the only ones there. */
function findCheckpointNormStats(dir: string, config: TrainConfig): NormStats | null {
  const own = path.join(dir, 'assets', assetIdFor(config, config.robot), 'norm_stats.json');
  const file = existsSync(own) ? own : checkpointNormStatsFile(dir);
  if (!file) return null;
  const stats = readNormStats(file);
  checkNormStatsProvenance(config, stats, file);
  return stats;
}

/** The layout training saw, as the trainer records it in the params' metadata. */
function trainedShape(meta: Record<string, string>): RobotShape | null {
  const cameras = (meta.cameras ?? '').split(',').filter(Boolean);
  const stateDim = Number(meta.state_dim);
  const actionDim = Number(meta.action_dim);
  if (cameras.length === 0 || !(stateDim > 0) || !(actionDim > 0)) return null;
  return { cameras, stateDim, actionDim };
}

function robotShape(name: string): RobotShape {
  const spec = loadRobot(name);
  return { cameras: spec.cameras.map((c) => c.name), stateDim: stateDim(spec), actionDim: actionDim(spec) };
}

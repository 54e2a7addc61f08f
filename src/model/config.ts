import { UserError } from '../config/errors.js';
import { MODEL_PRESETS, type ModelConfig } from '../config/schema.js';

/** Cameras the model has slots (camera embeddings) for; π0 takes up to three, ALOHA sends four. */
export const MAX_CAMERAS = 4;

/** Every size the model needs, the preset merged with the config's own fields. */
export interface ModelDims {
  /**
   * `model.variant`: π0, π0.5 (adaptive RMSNorm time conditioning, state tokens in the prefix) or π0-FAST
   * (state tokens in the prefix, the chunk as FAST tokens decoded one by one).
   */
  variant: 'pi0' | 'pi05' | 'pi0_fast';
  width: number;
  depth: number;
  heads: number;
  headDim: number;
  mlpDim: number;
  expertWidth: number;
  expertMlpDim: number;
  patchSize: number;
  imageSize: number;
  visionDepth: number;
  /** Whether the prompt FiLMs the patch embeddings (`model.prompt_film`). */
  promptFilm: boolean;
  /** How the FiLM pools the prompt's tokens (`model.prompt_film_pool`): their mean, or a learned query's softmax. */
  promptFilmPool: 'mean' | 'attention';
  actionDim: number;
  /**
   * π0.5 and π0-FAST: the prefix's state tokens, one for each of the state's first dims (`model.state_tokens`,
   * the robot's state dims; the padding beyond them is not tokenised); π0: 0 (its state is a suffix token).
   */
  stateTokens: number;
  horizon: number;
  maxTokenLen: number;
  numSteps: number;
  /** `model.noise_scale`: the initial noise's standard deviation at inference. */
  noiseScale: number;
  lora: { rank: number; alpha: number; targets: string[] } | null;
  /** π0-FAST: FAST tokens in the vocabulary, and the most a chunk may take. */
  fast: { vocabSize: number; maxTokens: number; constrained: boolean };
}

export function modelDims(m: ModelConfig): ModelDims {
  const p = MODEL_PRESETS[m.preset];
  const width = m.width ?? p.width;
  const heads = m.heads ?? p.heads;
  const imageSize = m.image_size ?? p.image_size;
  const patchSize = m.patch_size ?? p.patch_size;
  if (imageSize % patchSize !== 0) {
    throw new UserError(
      `model.image_size ${imageSize} is not divisible by model.patch_size ${patchSize}: expected a multiple of ${patchSize}`,
    );
  }
  if (width % heads !== 0) {
    throw new UserError(`model.width ${width} is not divisible by model.heads ${heads}`);
  }
  const expertWidth = m.expert_width ?? p.expert_width;
  if (expertWidth % 2 !== 0) {
    throw new UserError(
      `model.expert_width ${expertWidth} is odd: the flow-time embedding needs an even width (sine and cosine halves)`,
    );
  }
  if (m.prompt_film_pool === 'attention' && !m.prompt_film) {
    throw new UserError(
      'model.prompt_film_pool is attention while model.prompt_film is false: expected prompt_film: true (the pool feeds the FiLM) or prompt_film_pool: mean',
    );
  }
  return {
    variant: m.variant,
    width,
    depth: m.depth ?? p.depth,
    heads,
    headDim: width / heads,
    mlpDim: m.mlp_dim ?? p.mlp_dim,
    expertWidth,
    expertMlpDim: m.expert_mlp_dim ?? p.expert_mlp_dim,
    patchSize,
    imageSize,
    visionDepth: m.vision_depth ?? p.vision_depth,
    promptFilm: m.prompt_film,
    promptFilmPool: m.prompt_film_pool,
    actionDim: m.action_dim,
    stateTokens: m.variant === 'pi0' ? 0 : (m.state_tokens ?? m.action_dim),
    horizon: m.action_horizon,
    maxTokenLen: m.max_token_len,
    numSteps: m.num_steps,
    noiseScale: m.noise_scale,
    lora: m.lora,
    fast: {
      vocabSize: m.fast.vocab_size,
      maxTokens: m.fast.max_tokens,
      constrained: m.fast.decoding === 'constrained',
    },
  };
}

/** A robot (or dataset) this model cannot take: more state or action dims than `action_dim`, too many cameras. */
export function checkRobotFits(
  dims: ModelDims,
  robot: { stateDim: number; actionDim: number; cameras: number },
  where = 'model',
): void {
  if (robot.stateDim > dims.actionDim) {
    throw new UserError(
      `${where}.action_dim ${dims.actionDim} is smaller than the robot's state dim ${robot.stateDim}: expected action_dim >= ${robot.stateDim} (state is padded to action_dim)`,
    );
  }
  if (dims.stateTokens > 0 && robot.stateDim > dims.stateTokens) {
    throw new UserError(
      `${where}.state_tokens ${dims.stateTokens} is smaller than the robot's state dim ${robot.stateDim}: expected state_tokens >= ${robot.stateDim} (each state dim is a prefix token of ${dims.variant})`,
    );
  }
  if (robot.actionDim > dims.actionDim) {
    throw new UserError(
      `${where}.action_dim ${dims.actionDim} is smaller than the robot's action dim ${robot.actionDim}: expected action_dim >= ${robot.actionDim}`,
    );
  }
  if (robot.cameras < 1 || robot.cameras > MAX_CAMERAS) {
    throw new UserError(`${where}: expected 1 to ${MAX_CAMERAS} cameras, got ${robot.cameras}`);
  }
}

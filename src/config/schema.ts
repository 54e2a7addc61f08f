import { z } from 'zod';
import { MAX_NOISE_SCALE } from './noise-scale.js';

const posInt = z.int().positive();
const nonNegInt = z.int().nonnegative();
const unit = z.number().min(0).max(1);

export const LoraConfig = z.strictObject({
  rank: posInt.default(16),
  alpha: z.number().positive().default(16),
  /** Parameter-name patterns (globs over paths like `prefix/block_3/attn/q/kernel`) that get adapters. */
  targets: z.array(z.string().min(1)).min(1).default(['*/attn/*/kernel', '*/mlp/*/kernel']),
});

/** The sizes each model preset stands for; a config's own fields override them one by one. */
export const MODEL_PRESETS = {
  tiny: {
    width: 64,
    depth: 2,
    heads: 2,
    mlp_dim: 128,
    expert_width: 32,
    expert_mlp_dim: 64,
    patch_size: 8,
    image_size: 32,
    vision_depth: 1,
  },
  small: {
    width: 256,
    depth: 4,
    heads: 4,
    mlp_dim: 768,
    expert_width: 128,
    expert_mlp_dim: 256,
    patch_size: 16,
    image_size: 96,
    vision_depth: 1,
  },
  base: {
    width: 512,
    depth: 8,
    heads: 8,
    mlp_dim: 2048,
    expert_width: 256,
    expert_mlp_dim: 1024,
    patch_size: 16,
    image_size: 224,
    vision_depth: 4,
  },
} as const;
export type ModelPreset = keyof typeof MODEL_PRESETS;

/**
 * π0-FAST's action tokens (`vla data tokenizer` trains the tokenizer into the assets, beside the norm
 * stats): each action dim's DCT along the chunk, times `scale`, rounded, low frequencies first, then
 * byte-pair encoded up to `vocab_size` tokens.
 */
export const FastConfig = z.strictObject({
  /**
   * DCT coefficients are multiplied by it before rounding: larger keeps more detail and makes more tokens.
   * FAST's paper uses 10; on quantile-normalised transfer-cube chunks that loses up to 7.2% of a dim's range
   * (27 tokens a chunk), 100 loses 0.71% (51 tokens) (docs/model-family.md).
   */
  scale: z.number().positive().finite().default(100),
  /**
   * FAST tokens (the BPE vocabulary: every quantised value the data holds, then merges); the model's token
   * table adds two (start and end of the chunk). At scale 100 the values alone take ~2,500 of them.
   */
  vocab_size: z.int().min(2).max(65536).default(8192),
  /** The most action tokens one chunk may take (decoding stops there; longer training chunks are cut). */
  max_tokens: posInt.default(256),
  /**
   * `constrained` (default): greedy over the tokens that still fit the chunk's H·D values, and the end
   * once they are all there, so every decode makes a chunk. `free`: greedy over every token, as openpi
   * decodes; a decode that makes no chunk is an error for that request.
   */
  decoding: z.enum(['constrained', 'free']).default('constrained'),
  /** Chunks the tokenizer is trained on, spread evenly over the dataset. */
  train_chunks: posInt.default(4000),
});
export type FastConfig = z.infer<typeof FastConfig>;

/** π0-style policy sizes. Fields left out take the preset's value (MODEL_PRESETS). */
export const ModelConfig = z
  .strictObject({
    preset: z.enum(['tiny', 'small', 'base']).default('small'),
    /**
     * The model family member (docs/model-family.md): `pi0` (the flow time mixed into each action token
     * by an MLP, the state as one suffix token), or `pi05` (π0.5: the flow time enters the action expert
     * through adaptive RMSNorm, the state enters the prefix as 256-bin tokens, the suffix holds action
     * tokens only), or `pi0_fast` (π0-FAST: the action chunk as FAST tokens, DCT then BPE, predicted one
     * by one under a prefix-LM mask by the action expert and decoded greedily). A checkpoint records it;
     * loading it as another variant is an error naming both.
     */
    variant: z.enum(['pi0', 'pi05', 'pi0_fast']).default('pi0'),
    width: posInt.optional(),
    depth: posInt.optional(),
    heads: posInt.optional(),
    mlp_dim: posInt.optional(),
    expert_width: posInt.optional(),
    expert_mlp_dim: posInt.optional(),
    patch_size: posInt.optional(),
    image_size: posInt.optional(),
    /** Transformer blocks that run over each camera's patches alone before the shared prefix blocks. */
    vision_depth: nonNegInt.optional(),
    /**
     * FiLM the image patches by the prompt (RT-1's language-conditioned image encoder): the mean of the
     * prompt's token embeddings scales and shifts every patch embedding before the vision blocks, so a
     * patch can say "the object the prompt names is here" before any attention. Without it, naming one of
     * several objects must be bound to the patches through the prefix's attention alone, which a small
     * model trained on a few thousand demonstrations did not learn. Starts as the identity.
     */
    prompt_film: z.boolean().default(false),
    /**
     * How the FiLM sums up the prompt: `mean` of its token embeddings (with their positions), which is
     * the same for "put the red cube on the blue cube" and "put the blue cube on the red cube"; or
     * `attention`, a learned query's softmax over the tokens, which can weigh a word by where it stands.
     * The query starts at zeros, where `attention` pools exactly as `mean`, so a `mean` checkpoint
     * initialises an `attention` model that behaves as it did.
     */
    prompt_film_pool: z.enum(['mean', 'attention']).default('mean'),
    action_dim: posInt.default(32),
    /**
     * π0.5 and π0-FAST: how many of the (padded) state's dims enter the prefix as tokens, one each, from the
     * first: the robot's state dims (14 for ALOHA, 8 for the simulated arm). The padding beyond carries
     * nothing, and every token lengthens the prefix each action token attends to. Left out (or null):
     * action_dim (openpi tokenises the whole padded state). Refused for π0 (its state is one suffix token).
     */
    state_tokens: posInt.nullable().optional(),
    action_horizon: posInt.default(50),
    max_token_len: posInt.default(48),
    num_steps: posInt.default(10),
    /**
     * Inference only: the flow starts from N(0, noise_scale²·I) instead of N(0, I) (training always draws
     * N(0, I)). 1 samples the learned action distribution, as π0 does; 0 integrates the flow from the
     * noise's mean, one deterministic chunk per observation. A small policy's samples scatter around its
     * mode, and on a contact-rich task each stray chunk can cost the episode: the shipped transfer-cube
     * fine-tune succeeds in 69% of 200 unseen episodes at 1 and 85.5% at 0. Overridden per run by
     * `--noise-scale` (vla serve, vla sim eval, vla infer, vla demo).
     */
    noise_scale: z.number().finite().min(0).max(MAX_NOISE_SCALE).default(1),
    lora: LoraConfig.nullable().default(null),
    /** π0-FAST's action tokenizer and decoding (read where `variant` is `pi0_fast`). */
    fast: FastConfig.prefault({}),
  })
  .superRefine((m, ctx) => {
    const p = MODEL_PRESETS[m.preset];
    const image = m.image_size ?? p.image_size;
    const patch = m.patch_size ?? p.patch_size;
    if (image % patch !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: [m.image_size !== undefined ? 'image_size' : 'patch_size'],
        message: `image_size ${image} is not divisible by patch_size ${patch} (preset ${m.preset}): expected a multiple of ${patch}`,
      });
    }
    if (m.state_tokens != null && m.variant === 'pi0') {
      ctx.addIssue({
        code: 'custom',
        path: ['state_tokens'],
        message: `state_tokens ${m.state_tokens} is for the variants whose state is prefix tokens (pi05, pi0_fast); pi0's state is one suffix token: expected null`,
      });
    }
    if (m.state_tokens != null && m.state_tokens > m.action_dim) {
      ctx.addIssue({
        code: 'custom',
        path: ['state_tokens'],
        message: `state_tokens ${m.state_tokens} is larger than action_dim ${m.action_dim}: expected at most ${m.action_dim} (the state is padded to action_dim)`,
      });
    }
    const width = m.width ?? p.width;
    const heads = m.heads ?? p.heads;
    if (width % heads !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: [m.width !== undefined ? 'width' : 'heads'],
        message: `width ${width} is not divisible by heads ${heads} (preset ${m.preset}): each head needs width/heads dims`,
      });
    }
  });
export type ModelConfig = z.infer<typeof ModelConfig>;

/** One dataset of a training mixture (`data.mixture`). */
export const MixtureEntry = z.strictObject({
  /** A LeRobot dataset folder (relative to the workspace) or a name under `datasets/`. */
  dataset: z.string().min(1),
  /** Its share of each batch, relative to the other entries' (drawn with replacement, per sample). */
  weight: z.number().positive().finite().default(1),
  /** The prompt of every frame of this dataset, instead of its episodes' tasks. */
  prompt: z.string().min(1).nullable().default(null),
  /** The robot that recorded it, where not the config's `robot`: its norm stats are kept apart (asset = robot name). */
  robot: z.string().min(1).nullable().default(null),
  /**
   * Its delta-action dims, where they differ from `data.delta_action_mask` (which another robot's
   * dims may not fit): left out, an entry of the config's robot takes the config's, another robot none.
   */
  delta_action_mask: z.array(z.boolean()).nullable().optional(),
  /** Its robot's chunk steps, where they differ from `data.action_horizon` (see there). */
  action_horizon: posInt.nullable().optional(),
  /**
   * Where its robot's norm stats are read from, as `data.assets_dir` (see there) for the config's robot:
   * left out, an entry of the config's robot takes the config's, another robot none (its stats are
   * computed by `vla data stats`). A base continued on more robots keeps the stats it learned with.
   */
  assets_dir: z.string().min(1).nullable().optional(),
});
export type MixtureEntry = z.infer<typeof MixtureEntry>;

export const DataConfig = z
  .strictObject({
    /** A LeRobot dataset folder (relative to the workspace) or a name under `datasets/`. */
    dataset: z.string().min(1).nullable().default(null),
    /**
     * Several datasets of the config's robot in one run, each with a weight and an optional prompt (in
     * place of `dataset`): every batch draws its samples from them by weight. Norm stats cover them all.
     */
    mixture: z.array(MixtureEntry).min(1).nullable().default(null),
    /** Norm stats live at `assets/<asset_id>/norm_stats.json`, beside the checkpoint as in openpi. */
    asset_id: z.string().min(1).nullable().default(null),
    /**
     * Read the norm stats from `<assets_dir>/<asset_id>/norm_stats.json` instead (openpi's
     * `AssetsConfig.assets_dir`): a fine-tune that points it at its base checkpoint's `assets` normalizes
     * exactly as the base learned to, where stats of a few dozen new demonstrations would shift every input
     * and target the base knows. `vla data stats` leaves such a config alone.
     */
    assets_dir: z.string().min(1).nullable().default(null),
    default_prompt: z.string().nullable().default(null),
    /**
     * Whether each prompt names its robot ("aloha_sim: transfer the cube …"), as a model trained on
     * several robots reads them; null: where the data spans robots. A fine-tune of such a base on one
     * robot sets `true`, so it reads its prompts as its base learned to; a mixture continued from a
     * one-robot base sets `false`, for the same reason (a new leading word moves the prompt FiLM: the
     * pick_place base served with its robot named fell from 94% to 34%).
     */
    robot_in_prompt: z.boolean().nullable().default(null),
    /**
     * The steps of each chunk this robot trains on and is served, where fewer than `model.action_horizon`
     * (null: all of them): the steps after it are padding in the loss, hidden from the robot's other
     * tokens (its chunk is what a model of its own horizon computes), and a server returns this many.
     * In a mixture of robots each robot keeps its own reach in time: 50 steps are 1 s of ALOHA at 50 Hz
     * but 3.3 s of a 15 Hz arm.
     */
    action_horizon: posInt.nullable().default(null),
    /** Whether the prompt comes from the dataset's task (`true`, as openpi's `prompt_from_task`). */
    prompt_from_task: z.boolean().default(true),
    norm: z.enum(['zscore', 'quantile']).default('zscore'),
    /** Dims turned into deltas from the current state (openpi's `make_bool_mask(6, -1, 6, -1)` for ALOHA). */
    delta_action_mask: z.array(z.boolean()).nullable().default(null),
    /**
     * ALOHA only: convert between ALOHA's joint signs and linear gripper and π0's conventions, as openpi's
     * `adapt_to_pi` (for data recorded on real ALOHA robots; our simulated ALOHA already uses one space).
     */
    adapt_to_pi: z.boolean().default(false),
    /**
     * The dataset's feature key for a robot camera where it is not `observation.images.<camera>`
     * (openpi's repack transform), e.g. `{cam_high: observation.images.top}` for LeRobot's ALOHA sims.
     */
    camera_keys: z.record(z.string().min(1), z.string().min(1)).default({}),
    /**
     * Draw each episode's first `frames` frames `factor` times as often as the rest. The chunks there start
     * from the robot's rest pose, where only the cameras and the prompt say where to go (the state says
     * nothing): a few percent of the samples, and the ones a language-conditioned task fails on.
     */
    oversample_start: z
      .strictObject({ frames: posInt, factor: z.int().min(2).max(100) })
      .nullable()
      .default(null),
    augment: z
      .strictObject({
        crop_scale: z.number().gt(0).max(1).default(0.95),
        rotate_deg: z.number().min(0).max(45).default(5),
        color_jitter: unit.default(0.1),
      })
      .nullable()
      .default({ crop_scale: 0.95, rotate_deg: 5, color_jitter: 0.1 }),
  })
  .superRefine((d, ctx) => {
    if (d.mixture !== null && d.dataset !== null) {
      ctx.addIssue({
        code: 'custom',
        path: ['mixture'],
        message: `expected data.dataset or data.mixture, got both (dataset ${d.dataset}); set data.dataset=null to train on the mixture`,
      });
    }
  });
export type DataConfig = z.infer<typeof DataConfig>;

export const OptimizerConfig = z.strictObject({
  name: z.literal('adamw').default('adamw'),
  b1: unit.default(0.9),
  b2: unit.default(0.95),
  eps: z.number().positive().default(1e-8),
  weight_decay: z.number().min(0).default(1e-10),
  clip_grad_norm: z.number().positive().nullable().default(1.0),
});

export const ScheduleConfig = z.strictObject({
  name: z.enum(['cosine', 'constant']).default('cosine'),
  warmup_steps: nonNegInt.default(100),
  peak_lr: z.number().positive().default(2.5e-5),
  decay_steps: posInt.nullable().default(null),
  decay_lr: z.number().min(0).default(2.5e-6),
});

export const TrainSection = z
  .strictObject({
    steps: posInt.default(30_000),
    batch_size: posInt.default(32),
    seed: nonNegInt.default(42),
    optimizer: OptimizerConfig.prefault({}),
    schedule: ScheduleConfig.prefault({}),
    log_interval: posInt.default(100),
    save_interval: posInt.default(1000),
    /** Checkpoints at multiples of this survive; others are pruned once a newer one exists. */
    keep_period: posInt.nullable().default(5000),
    /** EMA of the weights, saved as the inference params (openpi's default 0.99; null turns it off, as for LoRA). */
    ema_decay: z.number().gt(0).lt(1).nullable().default(0.99),
    /**
     * Draws of (noise, flow time) per observation each step: the prefix (images, prompt) runs once and
     * the action expert k times, so the flow loss of a batch costs little more and its gradient is less noisy.
     */
    flow_samples: posInt.max(16).default(1),
    /**
     * Which action dims the flow loss averages over: the robot's own (`robot`), or every one of
     * `model.action_dim` including the zero padding (`all`, as openpi).
     */
    loss_action_dims: z.enum(['robot', 'all']).default('robot'),
    /**
     * How the flow loss averages a batch: over every scored (step, dim) entry (`entries`, as openpi), or
     * each sample's mean first, then over samples (`samples`). In a mixture of robots, `entries` weighs a
     * 50-step 14-dim ALOHA chunk over five times a 16-step 8-dim arm chunk; `samples` weighs them alike.
     */
    loss_reduction: z.enum(['entries', 'samples']).default('entries'),
    /**
     * Probability that a training sample's normalized state is replaced by zeros: the dataset's mean state
     * under `zscore` norm, the middle of its q01–q99 range under `quantile`. Against
     * the "copycat" shortcut of behaviour cloning: with the state, a policy can extrapolate the arm's
     * own motion and ignore its cameras and prompt, which then fails where the motion must be chosen.
     */
    state_dropout: unit.default(0),
    /**
     * Training-time real-time chunking (Black et al., December 2025): each sample draws a delay d in
     * 0..max_delay and is given its first d ground-truth actions as clean tokens (flow time 0, no loss
     * on them), so the model learns to continue a committed prefix; at inference the robot's committed
     * actions enter the same way, with no guidance cost. Null: off.
     */
    rtc: z.strictObject({ max_delay: posInt }).nullable().default(null),
    /**
     * Replicas that share each batch, one per core (the main thread and N − 1 worker threads, each
     * with its own copy of the weights): the gradients are averaged and one optimizer step is taken,
     * so the result is the whole batch's step. For the wasm and cpu backends; see train/data-parallel.ts.
     */
    data_parallel: posInt.max(16).default(1),
    /**
     * The products' precision: `bf16` runs every matmul on bfloat16 operands with float32 accumulation
     * (oneDNN, on CPUs with AVX512-BF16 or AMX), the master weights, optimizer state, norms, softmax and
     * loss staying float32, as openpi trains π0; `fp32` throughout otherwise. Where bf16 cannot run, the
     * training log says why and the products stay float32.
     */
    precision: z.enum(['fp32', 'bf16']).default('fp32'),
    /** Parameter-name patterns whose weights are not trained (openpi's `freeze_filter`). */
    freeze: z.array(z.string().min(1)).default([]),
    /** A checkpoint folder whose params initialise the model (the base, for fine-tuning). */
    init_from: z.string().min(1).nullable().default(null),
    /** How params.safetensors stores the weights; float16 halves it (training state stays float32). */
    params_dtype: z.enum(['float32', 'float16']).default('float32'),
    eval_interval: posInt.nullable().default(null),
    /**
     * The simulated task(s) a periodic evaluation rolls out (each on its own robot: a mixture's base can
     * be measured on every robot's task). With several, the metrics hold each task's figures
     * (`eval_pc_success/<task>`, …) and their mean (`eval_pc_success`, …).
     */
    eval_task: z
      .preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(z.string().min(1)).min(1).nullable())
      .default(null),
    eval_episodes: posInt.default(10),
  })
  .superRefine((t, ctx) => {
    if (t.data_parallel > t.batch_size) {
      ctx.addIssue({
        code: 'custom',
        path: ['data_parallel'],
        message: `expected at most batch_size (${t.batch_size}) replicas, got ${t.data_parallel}: each needs a sample`,
      });
    }
    if (t.eval_interval !== null && t.eval_task === null) {
      ctx.addIssue({
        code: 'custom',
        path: ['eval_task'],
        message: 'expected a task name because eval_interval is set, got null',
      });
    }
    const tasks = t.eval_task ?? [];
    const twice = tasks.find((task, i) => tasks.indexOf(task) !== i);
    if (twice !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['eval_task'],
        message: `expected each task once, got ${twice} twice in ${JSON.stringify(tasks)}`,
      });
    }
  });
export type TrainSection = z.infer<typeof TrainSection>;

/**
 * The tasks `train.eval_task` names (none where it names none), also from a config as stored before it
 * was parsed (a job's, a checkpoint's written when one task was a string).
 */
export function evalTasks(train: { eval_task?: unknown } | null | undefined): string[] {
  const t = train?.eval_task;
  if (typeof t === 'string') return [t];
  return Array.isArray(t) ? t.filter((x): x is string => typeof x === 'string') : [];
}

export const ServeConfig = z
  .strictObject({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.int().min(0).max(65535).default(8000),
    max_batch: posInt.default(8),
    max_wait_ms: z.number().min(0).default(2),
    /** 4 cameras at 480×640×3 are 3.7 MB; the default leaves room for that and more. */
    max_message_mb: z.number().positive().default(16),
    max_connections: posInt.default(64),
    /** The chunk sampler's products: `bf16` as train.precision describes, or `fp32`. */
    precision: z.enum(['fp32', 'bf16']).default('fp32'),
    /**
     * Most bytes of incoming messages held at once across all connections; a message that would pass it
     * is refused (1013, try again later). 256 MB holds 64 robots' 4-camera 640×480 observations.
     */
    max_receiving_mb: z.number().positive().default(256),
    /** One address cannot hold every slot: loopback's robots (sim eval workers) stay well below it. */
    max_connections_per_address: posInt.default(32),
    /**
     * With the server full, a newcomer takes the slot of the connection idle longest, once that one has
     * sent nothing for this long; a robot that is asking for actions is never closed for a newcomer.
     */
    idle_timeout_s: z.number().positive().default(30),
    /** Pings every so often; a connection that has not answered the last ping is closed. */
    ping_interval_s: z.number().positive().default(20),
    /** Extra entries for the metadata frame sent on connect (the robot's `reset_pose` is added). */
    metadata: z.record(z.string(), z.unknown()).default({}),
  })
  .superRefine((s, ctx) => {
    // Below the message limit, one robot's largest observation would always be refused.
    if (s.max_receiving_mb < s.max_message_mb) {
      ctx.addIssue({
        code: 'custom',
        path: ['max_receiving_mb'],
        message: `expected at least max_message_mb (${s.max_message_mb}), got ${s.max_receiving_mb}`,
      });
    }
  });
export type ServeConfig = z.infer<typeof ServeConfig>;

export const TrainConfig = z
  .strictObject({
    name: z.string().min(1),
    description: z.string().default(''),
    robot: z.string().min(1),
    model: ModelConfig.prefault({}),
    data: DataConfig.prefault({}),
    train: TrainSection.prefault({}),
    serve: ServeConfig.prefault({}),
  })
  .superRefine((c, ctx) => {
    // A chunk with every step committed leaves nothing to learn or to sample.
    const h = c.model.action_horizon;
    if (c.train.rtc && c.train.rtc.max_delay >= h) {
      ctx.addIssue({
        code: 'custom',
        path: ['train', 'rtc', 'max_delay'],
        message: `expected fewer steps than model.action_horizon (${h}), got ${c.train.rtc.max_delay}`,
      });
    }
    // A robot's chunk steps fit in the model's (that one robot's datasets agree is openPipelines' check).
    const steps: Array<[number | null | undefined, PropertyKey[]]> = [
      [c.data.action_horizon, ['data', 'action_horizon']],
      ...(c.data.mixture ?? []).map((e, i): [number | null | undefined, PropertyKey[]] => [
        e.action_horizon,
        ['data', 'mixture', i, 'action_horizon'],
      ]),
    ];
    for (const [got, path] of steps) {
      if (typeof got === 'number' && got > h)
        ctx.addIssue({
          code: 'custom',
          path,
          message: `expected at most model.action_horizon (${h}) steps, got ${got}`,
        });
    }
  });
export type TrainConfig = z.infer<typeof TrainConfig>;

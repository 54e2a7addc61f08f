/**
 * The native sampler's memory: one shared WebAssembly memory (the arena) holding the weights (each
 * thread's shard of every block), the inputs, the caches and each thread's scratch, planned once as
 * float offsets (`Layout`, plain data: posted to the worker thread with the memory).
 *
 * Sharding (tensor parallelism over P threads): each block's q | k | v and output projection by heads
 * (rank r holds heads [r·h/P, (r+1)·h/P)), its MLP by hidden units; weights outside the blocks whole.
 */
import type { ModelDims } from '../config.js';
import type { FastDecodeRules } from '../fast-decode.js';
import type { SamplingWeights } from '../sampler.js';
import {
  modulationWidth,
  type NativeVariant,
  nativeSamplerUnavailable,
  nativeVariant,
  suffixTokens,
} from './variant.js';

/** The parts of the WebAssembly API used here (this project's TypeScript lib has no DOM types). */
export interface SharedMemory {
  buffer: SharedArrayBuffer;
}
const WA = (
  globalThis as unknown as {
    WebAssembly: { Memory: new (d: { initial: number; maximum: number; shared: boolean }) => SharedMemory };
  }
).WebAssembly;

/** A shared memory of at least `floats` floats. */
export function sharedMemory(floats: number): SharedMemory {
  const pages = Math.ceil((floats * 4) / 65536);
  return new WA.Memory({ initial: pages, maximum: pages, shared: true });
}

/** One transformer block's shard for one rank: float offsets into the arena. */
export interface BlockShard {
  /** [in, 3·W/P] (q | k | v of this rank's heads), or [in, 2·W/P] for a keys-and-values-only block. */
  qkv: number;
  kvOnly: boolean;
  /** [W/P, out] rows of the output projection for this rank's heads. */
  o: number;
  /** [in, M/P] and [M/P, out]: this rank's hidden units of the MLP. */
  up: number;
  down: number;
  /** Input (= output) width and this rank's hidden units. */
  width: number;
  mlp: number;
}

/** Offsets (floats) of everything in the arena, and the sizes they were made for. Plain data: posted to the worker. */
export interface Layout {
  dims: ModelDims;
  /** What the program runs for this model's variant. */
  variant: NativeVariant;
  /** π0-FAST: what its decode may choose (each thread decodes alike from the same logits); else null. */
  decode: FastDecodeRules | null;
  parts: number;
  /** Largest batch the scratch buffers hold. */
  maxBatch: number;
  cameras: number;
  maxPromptLen: number;
  /** Weights every rank reads whole, by sampling-weight name. */
  shared: Record<string, number>;
  /** Per rank, per block name: its shard. */
  blocks: Array<Record<string, BlockShard>>;
  /** Floats [0, weights) hold the weights (`shared` and `blocks`), written once before the first job. */
  weights: number;
  /** Inputs rank 0 writes before a job. */
  input: {
    patches: number;
    /** Int32 view: prompt ids [B·L]. */
    ids: number;
    /** Int32 view: prompt mask [B·L], image mask [B·cams]. */
    masks: number;
    state: number;
    noise: number;
    /** Flow-time embeddings [steps, B, E] of every step. */
    times: number;
    /** The flow-time embedding of t = 0 [E], which committed steps keep (training-time real-time chunking). */
    time0: number;
    /** Int32 view: each sample's committed steps [B] (0: none). */
    delays: number;
    /** Int32 view: each sample's chunk steps [B] (ModelInputs.horizons; H where the whole chunk). */
    horizons: number;
    maxSteps: number;
  };
  /** Per rank: scratch buffers and caches. */
  scratch: Array<{
    x: number;
    /** The noisy chunk x_t [B·H, A], and each step's velocity·dt before it is added. */
    y: number;
    out: number;
    norm: number;
    rinv: number;
    qkv: number;
    att: number;
    hidden: number;
    scores: number;
    /** The key bias hiding the prefix's padding [B, keys], for the phase running (prefix, state, actions). */
    bias: number;
    tokens: number;
    film: number;
    /** time0 through the expert's time projection [E] (π0). */
    time0: number;
    /** π0-FAST: a decode step's logits [B, vocab] (rank 0's: every rank writes its columns there); else empty. */
    logits: number;
    /**
     * Adaptive norms (π0.5): the time MLP's hidden units and the condition [steps·B + 1, E] of every
     * step's times (and t = 0 last), and their modulations [steps·B + 1, modulationWidth]; else empty.
     */
    condHidden: number;
    cond: number;
    mods: number;
    /** Per layer: keys | values [B·(Tp + S), 2·W/P] of the prefix and suffix tokens (this rank's heads). */
    cache: number[];
    /** Two exchange buffers [rows, width] (alternating), read by the other rank. */
    exchange: [number, number];
  }>;
  /** Int32 index of the control words (threads.ts: barrier counters, job counter, error flag, job header). */
  control: number;
  /** Floats in the arena. */
  size: number;
  /** A barrier that waits this long (ms) means the other thread is gone. */
  stallMs: number;
}

/** A barrier that waits this long (ms) means the other thread is gone (a chunk takes ~25 ms). */
const STALL_MS = 10_000;
/** Int32 control words (see threads.ts). */
const CONTROL_WORDS = 16;

const align = (n: number) => Math.ceil(n / 16) * 16;

/** Prefix tokens of an observation: its cameras' patches, the prompt, and the variant's state tokens. */
export function prefixLength(d: ModelDims, v: NativeVariant, cameras: number, promptLen: number): number {
  return cameras * (d.imageSize / d.patchSize) ** 2 + promptLen + v.prefixStateTokens;
}

/**
 * Plans the arena for `dims` split over `parts` threads, `maxBatch` observations of `cameras` images and
 * prompts of up to `maxPromptLen` tokens, and up to `maxSteps` flow steps (π0-FAST: its decode's rules).
 */
export function planLayout(
  dims: ModelDims,
  sw: SamplingWeights,
  parts: number,
  maxBatch: number,
  cameras: number,
  maxPromptLen: number,
  maxSteps: number,
  decode: FastDecodeRules | null = null,
): Layout {
  const d = dims;
  const why = nativeSamplerUnavailable(d, parts);
  if (why) throw new Error(`native sampler: ${why}`);
  const variant = nativeVariant(d);
  if ((variant.actionTokens === 'decoded') !== (decode !== null))
    throw new Error(
      `native sampler: decode rules are for model.variant pi0_fast (model.variant ${d.variant}, rules ${decode ? 'given' : 'missing'})`,
    );
  let top = 0;
  const alloc = (n: number) => {
    const at = top;
    top += align(n);
    return at;
  };
  const size = (name: string) => {
    const t = sw.get(name);
    if (!t) throw new Error(`native sampler: sampling weight ${name} is missing`);
    return t.size;
  };
  const shared: Record<string, number> = {};
  for (const [name, t] of sw) if (!/block_\d+\//.test(name)) shared[name] = alloc(t.size);
  const blockNames = [
    ...new Set([...sw.keys()].filter((n) => /block_\d+\//.test(n)).map((n) => n.replace(/\/[^/]+$/, ''))),
  ];
  const W = d.heads * d.headDim;
  const blocks: Array<Record<string, BlockShard>> = [];
  for (let r = 0; r < parts; r++) {
    const mine: Record<string, BlockShard> = {};
    for (const g of blockNames) {
      const kvOnly = sw.has(`${g}/kv`);
      const width = sw.get(kvOnly ? `${g}/kv` : `${g}/qkv`)!.shape[0]!;
      const mlpAll = kvOnly ? 0 : sw.get(`${g}/up`)!.shape[1]!;
      const mlp = mlpAll / parts;
      mine[g] = {
        qkv: alloc((width * (kvOnly ? 2 : 3) * W) / parts),
        kvOnly,
        o: kvOnly ? -1 : alloc(((W / parts) * size(`${g}/o`)) / W),
        up: kvOnly ? -1 : alloc(width * mlp),
        down: kvOnly ? -1 : alloc(mlp * width),
        width,
        mlp,
      };
    }
    blocks.push(mine);
  }
  const weights = top;
  const n = (d.imageSize / d.patchSize) ** 2;
  const length = prefixLength(d, variant, cameras, maxPromptLen);
  const suffix = suffixTokens(d, variant);
  const maxRows = maxBatch * Math.max(cameras * n, length, d.horizon);
  const maxWidth = Math.max(d.width, d.expertWidth);
  const maxMlp = Math.max(d.mlpDim, d.expertMlpDim) / parts;
  const maxT = Math.max(n, length, d.horizon);
  const maxKeys = Math.max(n, length, length + suffix);
  const patchDim = d.patchSize * d.patchSize * 3;
  const input = {
    patches: alloc(maxBatch * cameras * n * patchDim),
    ids: alloc(maxBatch * maxPromptLen),
    masks: alloc(maxBatch * maxPromptLen + maxBatch * cameras),
    state: alloc(maxBatch * d.actionDim),
    noise: alloc(maxBatch * d.horizon * d.actionDim),
    times: alloc(maxSteps * maxBatch * d.expertWidth),
    time0: alloc(d.expertWidth),
    delays: alloc(maxBatch),
    horizons: alloc(maxBatch),
    maxSteps,
  };
  const conditions = variant.expertNorms === 'adaptive' ? maxSteps * maxBatch + 1 : 0;
  const scratch: Layout['scratch'] = [];
  for (let r = 0; r < parts; r++) {
    scratch.push({
      x: alloc(maxRows * maxWidth),
      y: alloc(maxBatch * d.horizon * d.actionDim),
      out: alloc(maxBatch * d.horizon * d.actionDim),
      norm: alloc(maxRows * maxWidth),
      rinv: alloc(maxRows),
      qkv: alloc((maxRows * 3 * W) / parts),
      att: alloc((maxRows * W) / parts),
      hidden: alloc(maxRows * maxMlp),
      scores: alloc(maxT * maxKeys),
      bias: alloc(maxBatch * maxKeys),
      tokens: alloc(maxBatch * maxPromptLen * d.width),
      film: alloc(maxBatch * 3 * d.width),
      time0: alloc(d.expertWidth),
      logits: alloc(decode && r === 0 ? maxBatch * decode.vocab : 0),
      condHidden: alloc(conditions * d.expertWidth),
      cond: alloc(conditions * d.expertWidth),
      mods: alloc(conditions * modulationWidth(d)),
      cache: Array.from({ length: d.depth }, () => alloc((maxBatch * (length + suffix) * 2 * W) / parts)),
      exchange: [alloc(maxRows * maxWidth), alloc(maxRows * maxWidth)],
    });
  }
  const control = alloc(CONTROL_WORDS);
  return {
    dims: d,
    variant,
    decode,
    parts,
    maxBatch,
    cameras,
    maxPromptLen,
    shared,
    blocks,
    weights,
    input,
    scratch,
    control,
    size: top,
    stallMs: STALL_MS,
  };
}

/** Copies the sampling weights into the arena: whole, or each rank's shard of each block. */
export async function fillWeights(f32: Float32Array, layout: Layout, sw: SamplingWeights): Promise<void> {
  const W = layout.dims.heads * layout.dims.headDim;
  const P = layout.parts;
  for (const [name, at] of Object.entries(layout.shared))
    f32.set((await sw.get(name)!.data()) as Float32Array, at);
  for (let r = 0; r < P; r++) {
    for (const [g, s] of Object.entries(layout.blocks[r]!)) {
      // Columns [groups of W] → this rank's W/P of each group.
      const kernel = sw.get(`${g}/${s.kvOnly ? 'kv' : 'qkv'}`)!;
      const src = (await kernel.data()) as Float32Array;
      const cols = kernel.shape[1]!;
      const groups = cols / W;
      const wp = W / P;
      for (let i = 0; i < s.width; i++)
        for (let gi = 0; gi < groups; gi++)
          f32.set(
            src.subarray(i * cols + gi * W + r * wp, i * cols + gi * W + (r + 1) * wp),
            s.qkv + i * groups * wp + gi * wp,
          );
      if (s.kvOnly) continue;
      const o = (await sw.get(`${g}/o`)!.data()) as Float32Array;
      f32.set(o.subarray(r * wp * s.width, (r + 1) * wp * s.width), s.o);
      const up = sw.get(`${g}/up`)!;
      const upv = (await up.data()) as Float32Array;
      const mAll = up.shape[1]!;
      for (let i = 0; i < s.width; i++)
        f32.set(upv.subarray(i * mAll + r * s.mlp, i * mAll + (r + 1) * s.mlp), s.up + i * s.mlp);
      const down = (await sw.get(`${g}/down`)!.data()) as Float32Array;
      f32.set(down.subarray(r * s.mlp * s.width, (r + 1) * s.mlp * s.width), s.down);
    }
  }
}

/**
 * The model's per-step input tensors built from a batch's `ModelInputs`, written straight into the
 * backend's memory (filledTensor): image patches and one-hot prompts. Apart from pi0.ts so that the
 * sampler can use them without importing the model module that imports it.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { filledTensor } from '../backend/index.js';
import type { ModelDims } from './config.js';
import { VOCAB_SIZE } from './tokenizer.js';

/** A batch as the model reads it, built by prepareInputs from an Observation. */
export interface ModelInputs {
  batch: number;
  cameras: number;
  /**
   * [B, cams, S, S, 3] camera bytes (patchTensor makes the model's patches of them): the observation's
   * own, not a copy, so they must not change until the model call that reads them returns.
   */
  images: Uint8Array;
  imageSize: number;
  patchSize: number;
  /** [B, cams] */
  imageMask: Uint8Array;
  /** L: prompt tokens kept (the longest prompt of the batch). */
  promptLen: number;
  /** [B·L] prompt token ids; promptOneHot makes them one-hot (their embedding is then a plain matmul: gather's gradient needs a kernel WASM lacks). */
  promptTokens: Int32Array;
  /** [B, L] */
  promptMask: Uint8Array;
  /** [B, actionDim] state padded with zeros. */
  state: Float32Array;
  /**
   * [B]: each sample's chunk steps where its robot's chunk is shorter than the model's action_horizon
   * (a mixture of robots; `data.action_horizon`). The action tokens past them are hidden from every
   * token, as they are not part of its chunk (the flow loss leaves them out too), so a robot's chunk is
   * computed as a model of its own horizon would. Absent: every sample's chunk is the model's.
   */
  horizons?: Int32Array;
}

/** A pixel byte as the model reads it, v / 127.5 − 1, looked up (a division per byte cost ~1% of a step). */
const PIXEL = Float32Array.from({ length: 256 }, (_, v) => v / 127.5 - 1);

export function patchifyInto(
  out: Float32Array,
  images: Uint8Array,
  n: number,
  size: number,
  patch: number,
): void {
  const g = size / patch;
  let o = 0;
  for (let img = 0; img < n; img++) {
    const base = img * size * size * 3;
    for (let py = 0; py < g; py++) {
      for (let px = 0; px < g; px++) {
        for (let y = 0; y < patch; y++) {
          let src = base + ((py * patch + y) * size + px * patch) * 3;
          for (let k = 0; k < patch * 3; k++) out[o++] = PIXEL[images[src++]!]!;
        }
      }
    }
  }
}

/** [n, S, S, 3] uint8 images → [n·N, p·p·3] float patches in [-1, 1], row-major patch order. */
export function patchify(images: Uint8Array, n: number, size: number, patch: number): Float32Array {
  const out = new Float32Array(n * size * size * 3);
  patchifyInto(out, images, n, size, patch);
  return out;
}

/** The inputs' image patches as a tensor [B·cams·N, p·p·3], scaled to [-1, 1], row-major patch order. */
export function patchTensor(inp: ModelInputs): tf.Tensor2D {
  const images = inp.batch * inp.cameras;
  const per = inp.patchSize * inp.patchSize * 3;
  const n = images * (inp.imageSize / inp.patchSize) ** 2;
  // The patches are written into uninitialised memory: a short buffer would leave NaNs, not an error.
  checkImages(inp, 'patchTensor');
  return filledTensor([n, per], (out) =>
    patchifyInto(out, inp.images, images, inp.imageSize, inp.patchSize),
  ) as tf.Tensor2D;
}

/** The prompts' tokens one-hot [B·L, VOCAB] (their embedding is then a plain matmul); padding rows are 0. */
export function promptOneHot(inp: ModelInputs): tf.Tensor2D {
  const { promptTokens: ids, promptMask: mask } = inp;
  return filledTensor([ids.length, VOCAB_SIZE], (out) => {
    out.fill(0);
    for (let i = 0; i < ids.length; i++) {
      if (!mask[i]) continue;
      // Out of range, a 1 would land in the next token's row.
      const id = checkToken(ids[i]!, i, 'promptOneHot');
      out[i * VOCAB_SIZE + id] = 1;
    }
  }) as tf.Tensor2D;
}

/** Bins of π0.5's discretised state: the normalised state's [-1, 1] cut into 256 (openpi's pi05 state tokens). */
export const STATE_BINS = 256;

/** Each state value's bin in [0, STATE_BINS): values outside [-1, 1] go to the end bins. */
export function stateBin(v: number): number {
  const bin = Math.floor(((v + 1) / 2) * STATE_BINS);
  return Number.isNaN(bin) ? STATE_BINS >> 1 : Math.min(STATE_BINS - 1, Math.max(0, bin));
}

/**
 * π0.5's state tokens one-hot [B·tokens, STATE_BINS]: the first `tokens` dims of each sample's state
 * (padded to `dims`), binned.
 */
export function stateOneHot(inp: ModelInputs, dims: number, tokens: number): tf.Tensor2D {
  const { state } = inp;
  const b = state.length / dims;
  return filledTensor([b * tokens, STATE_BINS], (out) => {
    out.fill(0);
    for (let i = 0; i < b; i++)
      for (let a = 0; a < tokens; a++)
        out[(i * tokens + a) * STATE_BINS + stateBin(state[i * dims + a]!)] = 1;
  }) as tf.Tensor2D;
}

/** Each sample's chunk steps (ModelInputs.horizons): one per sample, each within 1..H; else an error naming them. */
export function checkHorizons(horizons: Int32Array, b: number, h: number, where = ''): void {
  if (horizons.length !== b)
    throw new Error(`${where}horizons: expected ${b} values (one per sample), got ${horizons.length}`);
  horizons.forEach((v, i) => {
    if (!(v >= 1 && v <= h))
      throw new Error(`${where}horizons[${i}]: expected 1..${h} (model.action_horizon), got ${v}`);
  });
}

/** Throws, naming `where`, when the camera bytes do not fill the inputs' images, or the patches do not tile them. */
export function checkImages(inp: ModelInputs, where: string): void {
  const images = inp.batch * inp.cameras;
  const bytes = images * inp.imageSize * inp.imageSize * 3;
  if (inp.images.length !== bytes || inp.imageSize % inp.patchSize !== 0)
    throw new Error(
      `${where}: ${inp.images.length} image bytes for ${images} images of ${inp.imageSize}×${inp.imageSize}×3 in ${inp.patchSize}-pixel patches (expected ${bytes}, the size a multiple of the patch)`,
    );
}

/** A prompt token id, or an error naming `where` and the token's index when it is outside the vocabulary. */
export function checkToken(id: number, i: number, where: string): number {
  if (!(Number.isInteger(id) && id >= 0 && id < VOCAB_SIZE))
    throw new Error(`${where}: token ${i} is ${id}, expected 0..${VOCAB_SIZE - 1}`);
  return id;
}

/**
 * Every array of `inp` against the shapes the model `d` reads (what the native sampler copies into its
 * arena, where a short or long array would read stale values or overwrite the next input): images,
 * masks, prompt tokens and state; the first mismatch is an error naming the field.
 */
export function checkModelInputs(inp: ModelInputs, d: ModelDims, where: string): void {
  if (inp.imageSize !== d.imageSize || inp.patchSize !== d.patchSize)
    throw new Error(
      `${where}: images of ${inp.imageSize} px in ${inp.patchSize}-pixel patches, expected ${d.imageSize} px in ${d.patchSize}`,
    );
  checkImages(inp, where);
  const b = inp.batch;
  const sizes: Array<[string, number, number]> = [
    ['imageMask', inp.imageMask.length, b * inp.cameras],
    ['promptTokens', inp.promptTokens.length, b * inp.promptLen],
    ['promptMask', inp.promptMask.length, b * inp.promptLen],
    ['state', inp.state.length, b * d.actionDim],
  ];
  for (const [name, got, want] of sizes)
    if (got !== want) throw new Error(`${where}: ${name} has ${got} values, expected ${want}`);
  if (inp.horizons) checkHorizons(inp.horizons, b, d.horizon, `${where}: `);
  for (let i = 0; i < inp.promptTokens.length; i++)
    if (inp.promptMask[i]) checkToken(inp.promptTokens[i]!, i, where);
}

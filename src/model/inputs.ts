/**
 * The model's per-step input tensors built from a batch's `ModelInputs`, written straight into the
 * backend's memory (filledTensor): image patches and one-hot prompts. Apart from pi0.ts so that the
 * sampler can use them without importing the model module that imports it.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { filledTensor } from '../backend/index.js';
import type { ModelInputs } from './pi0.js';
import { VOCAB_SIZE } from './tokenizer.js';

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
  const bytes = images * inp.imageSize * inp.imageSize * 3;
  // The patches are written into uninitialised memory: a short buffer would leave NaNs, not an error.
  if (inp.images.length !== bytes || !Number.isInteger(n))
    throw new Error(
      `patchTensor: ${inp.images.length} image bytes for ${images} images of ${inp.imageSize}×${inp.imageSize}×3 in ${inp.patchSize}-pixel patches (expected ${bytes}, the size a multiple of the patch)`,
    );
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
      const id = ids[i]!;
      // Out of range, a 1 would land in the next token's row.
      if (!(id >= 0 && id < VOCAB_SIZE))
        throw new Error(`promptOneHot: token ${i} is ${id}, expected 0..${VOCAB_SIZE - 1}`);
      out[i * VOCAB_SIZE + id] = 1;
    }
  }) as tf.Tensor2D;
}

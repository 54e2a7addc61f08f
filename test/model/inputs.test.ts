import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { filledTensor, setupBackend } from '../../src/backend/index.js';
import { TrainConfig } from '../../src/config/schema.js';
import { modelDims } from '../../src/model/config.js';
import { patchify, patchTensor, promptOneHot } from '../../src/model/inputs.js';
import { prepareInputs } from '../../src/model/pi0.js';
import { VOCAB_SIZE } from '../../src/model/tokenizer.js';

interface Internals {
  numDataIds(): number;
}

describe.each(['wasm', 'cpu'] as const)('model input tensors on %s', (backend) => {
  it('filledTensor writes every value in place, survives tidy, and frees its memory when fill throws', async () => {
    await setupBackend({ backend });
    const be = tf.backend() as unknown as Internals;
    const tensors = tf.memory().numTensors;
    const ids = be.numDataIds();
    expect(() =>
      filledTensor([1000], () => {
        throw new Error('bad fill');
      }),
    ).toThrow('bad fill');
    expect(tf.memory().numTensors).toBe(tensors);
    expect(be.numDataIds()).toBe(ids);
    const kept = tf.tidy(() => filledTensor([2, 3], (out) => out.set([1, 2, 3, 4, 5, 6])));
    expect(kept.shape).toEqual([2, 3]);
    expect(Array.from(kept.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
    kept.dispose();
    expect(be.numDataIds()).toBe(ids);
  });

  it('patches and one-hot prompts equal the plain-array forms', async () => {
    await setupBackend({ backend });
    const d = modelDims(TrainConfig.parse({ name: 'x', robot: 'aloha', model: { preset: 'tiny' } }).model);
    const s = d.imageSize;
    const images = Uint8Array.from({ length: 2 * 2 * s * s * 3 }, (_, i) => (i * 37) & 255);
    const inp = prepareInputs(d, {
      batchSize: 2,
      cameras: 2,
      imageSize: s,
      images,
      imageMask: new Uint8Array(4).fill(1),
      state: new Float32Array(2 * 3),
      stateDim: 3,
      prompts: ['pick up the cube', 'a'],
    });
    const patches = patchTensor(inp);
    const per = d.patchSize * d.patchSize * 3;
    expect(patches.shape).toEqual([4 * (s / d.patchSize) ** 2, per]);
    expect(patches.dataSync()).toEqual(patchify(images, 4, s, d.patchSize));
    // The first pixel of the second patch row: image 0, row patchSize, column 0 → (v / 127.5 − 1).
    const rowStart = (s / d.patchSize) * per;
    expect(patches.dataSync()[rowStart]).toBeCloseTo(images[d.patchSize * s * 3]! / 127.5 - 1, 6);
    // Bytes that do not fit the images are refused, not read past.
    expect(() => patchTensor({ ...inp, images: images.subarray(1) })).toThrow(
      /patchTensor: \d+ image bytes for 4 images .* \(expected \d+/,
    );
    expect(() => patchTensor({ ...inp, patchSize: d.patchSize + 1 })).toThrow(/a multiple of the patch/);
    const oneHot = promptOneHot(inp);
    const l = inp.promptLen;
    expect(oneHot.shape).toEqual([2 * l, VOCAB_SIZE]);
    const v = oneHot.dataSync();
    for (let i = 0; i < 2 * l; i++) {
      const row = v.subarray(i * VOCAB_SIZE, (i + 1) * VOCAB_SIZE);
      let ones = 0;
      for (const x of row) ones += x;
      // A real token is one 1 at its id; a padding row (the short prompt's tail) is all zeros.
      expect(ones).toBe(inp.promptMask[i]);
      if (inp.promptMask[i]) expect(row[inp.promptTokens[i]!]).toBe(1);
    }
    expect(Array.from(inp.promptMask.subarray(l, 2 * l)).includes(0)).toBe(true);
    const bad = Int32Array.from(inp.promptTokens);
    bad[1] = VOCAB_SIZE;
    expect(() => promptOneHot({ ...inp, promptTokens: bad })).toThrow(
      `promptOneHot: token 1 is ${VOCAB_SIZE}, expected 0..${VOCAB_SIZE - 1}`,
    );
    tf.dispose([patches, oneHot]);
  });
});

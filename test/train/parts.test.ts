import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TrainSection } from '../../src/config/schema.js';
import { globToRegExp, matchesAny } from '../../src/model/params.js';
import { Rng } from '../../src/model/rng.js';
import { fromHalf, readSafetensors, toHalf, writeSafetensors } from '../../src/model/safetensors.js';
import { augmentImages } from '../../src/train/augment.js';
import { learningRate } from '../../src/train/optimizer.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-parts-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('safetensors', () => {
  it('writes the reference layout (8-byte LE length, JSON header, aligned raw bytes) and reads it back', () => {
    const file = path.join(tmp, 'a.safetensors');
    const f32 = Float32Array.from([1.5, -2, 3.25, 0]);
    writeSafetensors(
      file,
      new Map([
        ['w/kernel', { dtype: 'F32' as const, shape: [2, 2], data: f32 }],
        ['h', { dtype: 'F16' as const, shape: [3], data: Float32Array.from([0.1, 65504, -1e-5]) }],
        ['step', { dtype: 'I64' as const, shape: [], data: BigInt64Array.of(12345678901n) }],
      ]),
      { format: 'test' },
    );
    const buf = readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(buf.subarray(8, 8 + n).toString());
    expect(header['w/kernel']).toEqual({ dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] });
    expect(header.h.data_offsets).toEqual([16, 22]);
    expect(header.__metadata__).toEqual({ format: 'test' });
    expect(new Float32Array(buf.buffer.slice(buf.byteOffset + 8 + n, buf.byteOffset + 8 + n + 16))).toEqual(
      f32,
    );
    const back = readSafetensors(file);
    expect(back.tensors.get('w/kernel')!.data).toEqual(f32);
    const h = back.tensors.get('h')!.data as Float32Array;
    expect(h[0]).toBeCloseTo(0.1, 3);
    expect(h[1]).toBe(65504);
    expect(h[2]).toBeCloseTo(-1e-5, 6);
    expect((back.tensors.get('step')!.data as BigInt64Array)[0]).toBe(12345678901n);
  });

  it('converts float16 exactly where the value is representable, rounding to nearest otherwise', () => {
    for (const v of [0, 1, -2, 0.5, 1024, 2 ** -14, 2 ** -24]) expect(fromHalf(toHalf(v))).toBe(v);
    expect(fromHalf(toHalf(1 + 2 ** -11))).toBe(1);
    expect(fromHalf(toHalf(1e6))).toBe(Number.POSITIVE_INFINITY);
  });

  it('refuses a file whose header does not fit, naming the file', () => {
    const file = path.join(tmp, 'bad.safetensors');
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(1000n);
    writeFileSync(file, b);
    expect(() => readSafetensors(file)).toThrow(
      /bad\.safetensors: header length 1000 runs past the file's 16 bytes/,
    );
  });
});

describe('parameter patterns', () => {
  it('globs match whole names, * across slashes', () => {
    expect(matchesAny('prefix/block_3/attn/q/kernel', ['*/attn/*/kernel'])).toBe(true);
    expect(matchesAny('prefix/block_3/attn/q/kernel', ['prefix/*'])).toBe(true);
    expect(matchesAny('expert/block_0/mlp/up/kernel', ['prefix/*'])).toBe(false);
    expect(globToRegExp('a.b?').test('a.bc')).toBe(true);
    expect(globToRegExp('a.b?').test('axbc')).toBe(false);
  });
});

describe('learning-rate schedule', () => {
  it('warms up linearly, then decays by cosine to decay_lr', () => {
    const s = TrainSection.parse({
      steps: 100,
      schedule: { warmup_steps: 10, peak_lr: 1e-3, decay_lr: 1e-4 },
    });
    expect(learningRate(s, 0)).toBeCloseTo(1e-3 / 11, 9);
    expect(learningRate(s, 10)).toBeCloseTo(1e-3, 9);
    expect(learningRate(s, 55)).toBeCloseTo(5.5e-4, 9);
    expect(learningRate(s, 100)).toBeCloseTo(1e-4, 9);
    expect(learningRate(s, 500)).toBeCloseTo(1e-4, 9);
  });
});

describe('augmentation', () => {
  it('changes scene cameras geometrically and wrist cameras by colour only, leaving missing cameras alone', () => {
    const s = 16;
    const per = s * s * 3;
    const images = new Uint8Array(3 * per);
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < s; y++)
        for (let x = 0; x < s; x++)
          images.fill(x < 8 ? 200 : 30, c * per + (y * s + x) * 3, c * per + (y * s + x + 1) * 3);
    }
    const original = images.slice();
    const aug = { crop_scale: 0.8, rotate_deg: 10, color_jitter: 0 };
    augmentImages(
      images,
      Uint8Array.from([1, 1, 0]),
      ['cam_high', 'cam_left_wrist', 'cam_low'],
      s,
      aug,
      new Rng(3),
    );
    expect(images.subarray(0, per)).not.toEqual(original.subarray(0, per));
    expect(images.subarray(per)).toEqual(original.subarray(per));
    augmentImages(
      images,
      Uint8Array.from([1, 1, 0]),
      ['cam_high', 'cam_left_wrist', 'cam_low'],
      s,
      { ...aug, color_jitter: 0.3 },
      new Rng(4),
    );
    // colour jitter keeps the wrist image's edge where it was
    const wrist = images.subarray(per, 2 * per);
    const left = wrist[(8 * s + 2) * 3]!;
    const right = wrist[(8 * s + 13) * 3]!;
    expect(left).toBeGreaterThan(right);
    expect(wrist).not.toEqual(original.subarray(per, 2 * per));
    expect(images.subarray(2 * per)).toEqual(original.subarray(2 * per));
  });
});

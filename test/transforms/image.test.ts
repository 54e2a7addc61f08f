import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { padGeometry, resizeInto, resizeWithPad } from '../../src/transforms/image.js';

const solid = (w: number, h: number, rgb: [number, number, number]) => {
  const img = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) img.set(rgb, i * 3);
  return img;
};

describe('resize with pad (openpi resize_with_pad, PIL bilinear)', () => {
  it('letterboxes as openpi rounds: 640x480 into 224 leaves 28-row bars', () => {
    expect(padGeometry(640, 480, 224)).toEqual({ rw: 224, rh: 168, padX: 0, padY: 28 });
    expect(padGeometry(480, 640, 224)).toEqual({ rw: 168, rh: 224, padX: 28, padY: 0 });
    const out = resizeWithPad(solid(640, 480, [200, 100, 50]), 640, 480, 224);
    const px = (x: number, y: number) => Array.from(out.subarray((y * 224 + x) * 3, (y * 224 + x) * 3 + 3));
    expect(px(10, 27)).toEqual([0, 0, 0]);
    expect(px(10, 28)).toEqual([200, 100, 50]);
    expect(px(223, 195)).toEqual([200, 100, 50]);
    expect(px(0, 196)).toEqual([0, 0, 0]);
  });

  it('keeps a same-size image exactly', () => {
    const img = Uint8Array.from({ length: 8 * 8 * 3 }, (_, i) => (i * 37) & 255);
    expect(Array.from(resizeWithPad(img, 8, 8, 8))).toEqual(Array.from(img));
  });

  it('antialiases when shrinking: a 1-px checkerboard becomes mid grey, a gradient stays monotonic', () => {
    const w = 64;
    const checker = new Uint8Array(w * w * 3);
    for (let y = 0; y < w; y++)
      for (let x = 0; x < w; x++) checker.fill((x + y) % 2 ? 255 : 0, (y * w + x) * 3, (y * w + x) * 3 + 3);
    const small = new Uint8Array(16 * 16 * 3);
    resizeInto(checker, w, w, 16, 16, small);
    for (const v of small.subarray(3 * 16 * 3, 13 * 16 * 3)) expect(Math.abs(v - 127.5)).toBeLessThan(12);
    const grad = new Uint8Array(200 * 10 * 3);
    for (let y = 0; y < 10; y++)
      for (let x = 0; x < 200; x++) grad.fill(x, (y * 200 + x) * 3, (y * 200 + x) * 3 + 3);
    const g = new Uint8Array(50 * 5 * 3);
    resizeInto(grad, 200, 10, 50, 5, g);
    const row = Array.from({ length: 50 }, (_, x) => g[(2 * 50 + x) * 3]!);
    for (let x = 1; x < 50; x++) expect(row[x]!).toBeGreaterThan(row[x - 1]!);
    // Output pixel x averages source pixels around 4x + 1.5.
    expect(row[10]).toBeGreaterThanOrEqual(41);
    expect(row[10]).toBeLessThanOrEqual(42);
  });

  it("matches openpi's resize_with_pad (PIL 12 bilinear) byte for byte", () => {
    // SHA-256 of openpi's `resize_with_pad(Image.fromarray(img), s, s)` for this pattern, computed
    // with Pillow 12.3: shrinking, enlarging, and a letterboxed 4:3 camera.
    const reference: Array<[number, number, number, string]> = [
      [100, 37, 50, 'c107d1ec3dfaa7ca5ae5aaf1d32b3eea309b40905a6842163c5e5f89ad1530ed'],
      [30, 50, 64, '7b239933f99fb6defe33f12f2b4736d7651b80b8ac378e9f0892dd39d3e4636d'],
      [320, 240, 96, '14da005fa8346a5e735dc2662009459b6431882194224849da4efda6267d29cc'],
    ];
    for (const [w, h, size, sha] of reference) {
      const img = new Uint8Array(w * h * 3);
      for (let i = 0; i < img.length; i++)
        img[i] = (Math.imul(i, 2654435761) >>> 24) ^ (Math.floor(i / 3) % w);
      const out = resizeWithPad(img, w, h, size);
      expect(createHash('sha256').update(out).digest('hex'), `${w}x${h} -> ${size}`).toBe(sha);
    }
  });
});

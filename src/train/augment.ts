/**
 * Train-time image augmentation as openpi's: a random crop (resized back), a small rotation and colour
 * jitter (brightness, contrast, saturation); wrist cameras get colour jitter only, since their view of
 * the gripper is what the policy must read exactly. Works on the batch's uint8 HWC images in place.
 */
import type { DataConfig } from '../config/schema.js';
import type { Rng } from '../model/rng.js';

type Augment = NonNullable<DataConfig['augment']>;

export function isWristCamera(name: string): boolean {
  return /wrist/i.test(name);
}

export function augmentImages(
  images: Uint8Array,
  imageMask: Uint8Array,
  cameras: string[],
  size: number,
  aug: Augment,
  rng: Rng,
): void {
  const per = size * size * 3;
  const scratch = new Uint8Array(per);
  const count = images.length / per;
  for (let i = 0; i < count; i++) {
    if (!imageMask[i]) continue;
    const img = images.subarray(i * per, (i + 1) * per);
    if (!isWristCamera(cameras[i % cameras.length]!)) {
      const scale = aug.crop_scale + (1 - aug.crop_scale) * rng.uniform();
      const angle = ((rng.uniform() * 2 - 1) * aug.rotate_deg * Math.PI) / 180;
      const slack = 1 - scale;
      const cx = (rng.uniform() - 0.5) * slack;
      const cy = (rng.uniform() - 0.5) * slack;
      scratch.set(img);
      warp(scratch, img, size, scale, angle, cx, cy);
    }
    const j = aug.color_jitter;
    if (j > 0) {
      colorJitter(
        img,
        1 + (rng.uniform() * 2 - 1) * j,
        1 + (rng.uniform() * 2 - 1) * j,
        1 + (rng.uniform() * 2 - 1) * j,
      );
    }
  }
}

/** out(p) = src(scale·R(angle)·p + c), p in image-centred unit coordinates, bilinear, clamped at the edges. */
function warp(
  src: Uint8Array,
  out: Uint8Array,
  size: number,
  scale: number,
  angle: number,
  cx: number,
  cy: number,
): void {
  const cos = Math.cos(angle) * scale;
  const sin = Math.sin(angle) * scale;
  const max = size - 1;
  for (let y = 0; y < size; y++) {
    const v = (y + 0.5) / size - 0.5;
    for (let x = 0; x < size; x++) {
      const u = (x + 0.5) / size - 0.5;
      const sx = Math.min(max, Math.max(0, (cos * u - sin * v + cx + 0.5) * size - 0.5));
      const sy = Math.min(max, Math.max(0, (sin * u + cos * v + cy + 0.5) * size - 0.5));
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const x1 = Math.min(max, x0 + 1);
      const y1 = Math.min(max, y0 + 1);
      const fx = sx - x0;
      const fy = sy - y0;
      const o = (y * size + x) * 3;
      const a = (y0 * size + x0) * 3;
      const b = (y0 * size + x1) * 3;
      const c = (y1 * size + x0) * 3;
      const d = (y1 * size + x1) * 3;
      for (let k = 0; k < 3; k++) {
        const top = src[a + k]! + (src[b + k]! - src[a + k]!) * fx;
        const bottom = src[c + k]! + (src[d + k]! - src[c + k]!) * fx;
        out[o + k] = Math.round(top + (bottom - top) * fy);
      }
    }
  }
}

/** Brightness scales, contrast pulls toward the image's mean grey, saturation toward each pixel's grey. */
function colorJitter(img: Uint8Array, brightness: number, contrast: number, saturation: number): void {
  let sum = 0;
  for (let i = 0; i < img.length; i += 3) sum += 0.299 * img[i]! + 0.587 * img[i + 1]! + 0.114 * img[i + 2]!;
  const mean = (sum / (img.length / 3)) * brightness;
  for (let i = 0; i < img.length; i += 3) {
    const r = img[i]! * brightness;
    const g = img[i + 1]! * brightness;
    const b = img[i + 2]! * brightness;
    const grey = 0.299 * r + 0.587 * g + 0.114 * b;
    for (let k = 0; k < 3; k++) {
      const c = k === 0 ? r : k === 1 ? g : b;
      const saturated = grey + (c - grey) * saturation;
      img[i + k] = Math.min(255, Math.max(0, Math.round(mean + (saturated - mean) * contrast)));
    }
  }
}

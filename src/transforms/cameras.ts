/**
 * Camera images into the model's layout: [B, cameras, S, S, 3] in the model's camera order, a missing
 * camera as a black image with mask 0. The frames' camera source letterboxes each image (resize with
 * pad, transforms/image.ts): per request when serving, once per frame when training builds its cache.
 */
import type { Transform } from './frames.js';

export function cameraImages(cameras: number, size: number): Transform {
  const bytes = size * size * 3;
  return {
    name: 'camera images',
    input: (f) => {
      const source = f.cameraSource;
      if (!source) throw new Error('camera images: the frames have no camera source');
      const images = new Uint8Array(f.size * cameras * bytes);
      const mask = new Uint8Array(f.size * cameras);
      for (let i = 0; i < f.size * cameras; i++) {
        if (source(Math.floor(i / cameras), i % cameras, images, i * bytes)) mask[i] = 1;
      }
      f.images = images;
      f.imageMask = mask;
    },
  };
}

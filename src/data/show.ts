import { encode as encodePng } from 'fast-png';
import { UserError } from '../config/errors.js';
import { resizeInto } from '../transforms/image.js';
import type { LeRobotDataset } from './reader.js';

const GAP = 4;

/** `count` frame indices spread evenly from the first frame to the last. */
export function spreadFrames(length: number, count: number): number[] {
  if (length <= count) return Array.from({ length }, (_, i) => i);
  return Array.from({ length: count }, (_, i) => Math.round((i * (length - 1)) / (count - 1)));
}

/**
 * A contact sheet of one episode: a row per camera, `count` frames spread over the episode, each
 * scaled to `thumbHeight` pixels tall. Returns the PNG and the frame indices shown.
 */
export async function contactSheet(
  ds: LeRobotDataset,
  episode: number,
  opts: { count?: number; thumbHeight?: number } = {},
): Promise<{ png: Uint8Array; frames: number[]; cameras: string[] }> {
  const ep = ds.episode(episode);
  const cams = ds.cameras;
  if (cams.length === 0) throw new UserError(`${ds.dir}: the dataset has no cameras to show`);
  const frames = spreadFrames(ep.length, opts.count ?? 8);
  const th = opts.thumbHeight ?? 120;
  const widths = cams.map((c) => Math.max(1, Math.round((th * c.width) / c.height)));
  const tw = Math.max(...widths);
  const W = GAP + frames.length * (tw + GAP);
  const H = GAP + cams.length * (th + GAP);
  const sheet = new Uint8Array(W * H * 3).fill(255);
  for (const [ci, cam] of cams.entries()) {
    const w = widths[ci]!;
    const thumb = new Uint8Array(w * th * 3);
    await ds.streamFrames(
      episode,
      cam.key,
      (i, rgb, fw, fh) => {
        resizeInto(rgb, fw, fh, w, th, thumb);
        const col = frames.indexOf(i);
        const x0 = GAP + col * (tw + GAP) + Math.floor((tw - w) / 2);
        const y0 = GAP + ci * (th + GAP);
        for (let y = 0; y < th; y++)
          sheet.set(thumb.subarray(y * w * 3, (y + 1) * w * 3), ((y0 + y) * W + x0) * 3);
      },
      frames,
    );
  }
  return {
    png: encodePng({ width: W, height: H, data: sheet, channels: 3 }),
    frames,
    cameras: cams.map((c) => c.key),
  };
}

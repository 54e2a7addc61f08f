import { UserError } from '../config/errors.js';
import { cameraName } from './info.js';
import { openDataset } from './reader.js';
import type { VideoCodec } from './video.js';
import { createDataset, type WriteFormat } from './writer.js';

/** Frames decoded per camera at a time, so a long episode never sits whole in memory. */
const BATCH = 64;

/** A feature's names, or generated ones (`prefix_i`) where the dataset gives none or not one per value. */
export const namesOr = (names: string[] | null, dim: number, prefix: string) =>
  names && names.length === dim ? names : Array.from({ length: dim }, (_, i) => `${prefix}_${i}`);

/**
 * Copies a dataset into another LeRobot version (v2.x ↔ v3.0): rows, tasks and camera frames, frame
 * by frame. Videos are decoded and encoded again (h264), so they pass through one more lossy step.
 */
export async function convertDataset(
  src: string,
  dst: string,
  format: WriteFormat,
  onProgress?: (done: number, total: number) => void,
  codec?: VideoCodec,
): Promise<void> {
  const ds = await openDataset(src);
  const feats = ds.info.features;
  const stateDim = feats['observation.state']?.shape.reduce((a, b) => a * b, 1);
  const actionDim = feats.action?.shape.reduce((a, b) => a * b, 1);
  if (!stateDim || !actionDim) {
    throw new UserError(
      `${src}: convert needs observation.state and action features, got ${Object.keys(feats).join(', ')}`,
    );
  }
  const cams = ds.cameras;
  const videos = cams.filter((c) => c.video).length;
  if (videos > 0 && videos < cams.length) {
    throw new UserError(`${src}: cameras mix video and image features; convert writes one kind`);
  }
  const writer = await createDataset(dst, {
    fps: ds.info.fps,
    robotType: ds.info.robotType ?? 'unknown',
    format,
    video: videos > 0,
    codec,
    features: {
      state: { names: namesOr(feats['observation.state']!.names, stateDim, 'state') },
      action: { names: namesOr(feats.action!.names, actionDim, 'action') },
      cameras: cams.map((c) => ({ name: cameraName(c.key), height: c.height, width: c.width })),
    },
  });
  let done = 0;
  for (const ep of ds.episodes) {
    const rows = await ds.readEpisode(ep.index);
    for (let start = 0; start < ep.length; start += BATCH) {
      const frames = Array.from({ length: Math.min(BATCH, ep.length - start) }, (_, i) => start + i);
      const images = await Promise.all(cams.map((c) => ds.readFrames(ep.index, c.key, { frames })));
      for (const [j, f] of frames.entries()) {
        const task = ds.tasks.get(rows.taskIndex[f]!) ?? ep.tasks[0];
        if (task === undefined)
          throw new UserError(
            `${src}: episode ${ep.index} frame ${f}: task_index ${rows.taskIndex[f]} resolves to no task`,
          );
        const imgs: Record<string, Uint8Array> = {};
        for (const [k, c] of cams.entries()) {
          const size = c.height * c.width * 3;
          imgs[cameraName(c.key)] = images[k]!.data.subarray(j * size, (j + 1) * size);
        }
        writer.addFrame({
          state: rows.state!.subarray(f * stateDim, (f + 1) * stateDim),
          action: rows.action!.subarray(f * actionDim, (f + 1) * actionDim),
          images: imgs,
          task,
        });
      }
      await writer.drain();
    }
    await writer.saveEpisode();
    done += ep.length;
    onProgress?.(done, ds.numFrames);
  }
  await writer.finalize();
}

/**
 * Initialising a model from another checkpoint's params (fine-tuning from a base): every parameter the
 * model has must be there with its shape, except those allowed to be new (LoRA adapters); what the
 * checkpoint has beyond the model is reported. Anything else is an error naming the parameters.
 * Two shapes may differ, and are resized rather than refused (see `RESIZERS`):
 * - the action expert's per-step position embedding, when the config asks for another action horizon
 *   than the base was trained with (openpi fine-tunes its 50-step base to 10-step chunks for DROID):
 *   the shared steps are copied, steps beyond the base's keep their fresh init;
 * - the patch embedding, when the config sees its images at another resolution with as many patches
 *   (64 px in 8 px patches → 96 px in 12 px patches): each filter is resampled bilinearly to the new
 *   patch size and scaled by the ratio of patch areas, so a patch shows the model what the base's patch
 *   of the same region showed it (FlexiViT's patch-size resizing, in its simplest form).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import YAML from 'yaml';
import { UserError } from '../config/errors.js';
import { isFilmParam, type Params, startsAsIdentity } from '../model/params.js';
import { readSafetensors } from '../model/safetensors.js';

export interface LoadReport {
  loaded: string[];
  /** In the model, not in the checkpoint: kept at their fresh initialisation. */
  missing: string[];
  /** In the checkpoint, not in the model: ignored. */
  unexpected: string[];
  /** In both with different shapes. */
  mismatched: Array<{ name: string; model: number[]; checkpoint: number[] }>;
  /** Loaded at another action horizon or patch size (see `RESIZERS`). */
  resized: Array<{ name: string; model: number[]; checkpoint: number[] }>;
}

type Resizer = (
  from: Float32Array,
  fromShape: number[],
  fresh: Float32Array,
  toShape: number[],
) => Float32Array;

/** Same shape but for the leading axis. */
const rowsDiffer = (a: number[], b: number[]): boolean =>
  a.length === b.length && a.length >= 2 && a.slice(1).join(',') === b.slice(1).join(',') && a[0] !== b[0];

/** [H, E] → [H', E]: the base's rows for the shared steps, the fresh init's for the rest. */
const copyRows: Resizer = (from, _fromShape, fresh) => {
  const out = Float32Array.from(fresh);
  out.set(from.subarray(0, Math.min(from.length, fresh.length)));
  return out;
};

/** The side of a square RGB patch whose flattened (y, x, channel) length is `n`, or 0. */
const patchSide = (n: number): number => {
  const p = Math.round(Math.sqrt(n / 3));
  return p * p * 3 === n ? p : 0;
};

/** [p·p·3, W] → [q·q·3, W]: every filter resampled bilinearly (pixel centres aligned), times (p/q)². */
const resamplePatches: Resizer = (from, fromShape, _fresh, toShape) => {
  const p = patchSide(fromShape[0]!);
  const q = patchSide(toShape[0]!);
  const w = toShape[1]!;
  const out = new Float32Array(q * q * 3 * w);
  const scale = (p * p) / (q * q);
  const taps = (i: number): [number, number, number] => {
    const s = Math.min(Math.max(((i + 0.5) * p) / q - 0.5, 0), p - 1);
    const lo = Math.floor(s);
    return [lo, Math.min(lo + 1, p - 1), s - lo];
  };
  for (let y = 0; y < q; y++) {
    const [y0, y1, fy] = taps(y);
    for (let x = 0; x < q; x++) {
      const [x0, x1, fx] = taps(x);
      const corners: Array<[number, number, number]> = [
        [y0, x0, (1 - fy) * (1 - fx)],
        [y0, x1, (1 - fy) * fx],
        [y1, x0, fy * (1 - fx)],
        [y1, x1, fy * fx],
      ];
      for (let c = 0; c < 3; c++) {
        const o = ((y * q + x) * 3 + c) * w;
        for (const [sy, sx, wt] of corners) {
          if (wt === 0) continue;
          const i = ((sy * p + sx) * 3 + c) * w;
          for (let k = 0; k < w; k++) out[o + k]! += wt * scale * from[i + k]!;
        }
      }
    }
  }
  return out;
};

/** Params another shape of which is resized on load, with the test that the two shapes allow it. */
const RESIZERS = new Map<string, { fits: (model: number[], ckpt: number[]) => boolean; resize: Resizer }>([
  ['expert/action_pos_embedding', { fits: rowsDiffer, resize: copyRows }],
  [
    'vision/patch_embed/kernel',
    {
      fits: (m, c) => rowsDiffer(m, c) && patchSide(m[0]!) > 0 && patchSide(c[0]!) > 0,
      resize: resamplePatches,
    },
  ],
]);

/** Another patch grid cannot be resized (the position embedding is per patch): say what may change. */
function gridHint(mismatched: LoadReport['mismatched']): string {
  const pos = mismatched.find((m) => m.name === 'vision/pos_embedding');
  if (!pos) return '';
  const side = Math.round(Math.sqrt(pos.checkpoint[0]!));
  return ` (the base sees ${side}×${side} patches per image: another model.image_size fine-tunes from it when model.patch_size keeps image_size / patch_size = ${side})`;
}

export interface LoadOptions {
  /** Parameters that may be missing from the checkpoint (default: those that start as the identity, `startsAsIdentity`). */
  allowMissing?: (name: string) => boolean;
  allowUnexpected?: boolean;
  /** The model's `model.variant`: a checkpoint of another variant (its config.yaml says) is refused. */
  variant?: string;
}

/** The variant a checkpoint's config.yaml names (`pi0` where it names none), or null without a config. */
function checkpointVariant(params: string): string | null {
  const file = path.join(path.dirname(params), 'config.yaml');
  if (!existsSync(file)) return null;
  const doc = YAML.parse(readFileSync(file, 'utf8')) as { model?: { variant?: unknown } } | null;
  return String(doc?.model?.variant ?? 'pi0');
}

export function paramsFile(checkpoint: string): string {
  const file =
    existsSync(checkpoint) && statSync(checkpoint).isDirectory()
      ? path.join(checkpoint, 'params.safetensors')
      : checkpoint;
  if (!existsSync(file))
    throw new UserError(
      `${checkpoint}: no params.safetensors (expected a checkpoint folder such as checkpoints/<config>/<exp>/<step>)`,
    );
  return file;
}

/** Replaces `params`' values with the checkpoint's where names and shapes agree (disposing the old tensors). */
export function loadWeightsInto(params: Params, checkpoint: string, opts: LoadOptions = {}): LoadReport {
  const file = paramsFile(checkpoint);
  const variant = opts.variant && checkpointVariant(file);
  if (variant && variant !== opts.variant)
    throw new UserError(
      `${checkpoint}: a model.variant ${variant} checkpoint; the config's model is ${opts.variant}: expected a ${opts.variant} checkpoint to initialise from`,
    );
  const { tensors } = readSafetensors(file);
  const allowMissing = opts.allowMissing ?? startsAsIdentity;
  const report: LoadReport = { loaded: [], missing: [], unexpected: [], mismatched: [], resized: [] };
  for (const [name, cur] of params) {
    const t = tensors.get(name);
    if (!t) report.missing.push(name);
    else if (t.shape.join(',') === cur.shape.join(',')) continue;
    else if (RESIZERS.get(name)?.fits(cur.shape, t.shape))
      report.resized.push({ name, model: cur.shape, checkpoint: t.shape });
    else report.mismatched.push({ name, model: cur.shape, checkpoint: t.shape });
  }
  for (const name of tensors.keys()) if (!params.has(name)) report.unexpected.push(name);
  const problems: string[] = [];
  const notAllowed = report.missing.filter((n) => !allowMissing(n));
  const list = (names: string[]) =>
    `${names.slice(0, 5).join(', ')}${names.length > 5 ? ` and ${names.length - 5} more` : ''}`;
  if (notAllowed.length > 0)
    problems.push(`missing ${notAllowed.length} params the model needs: ${list(notAllowed)}`);
  if (report.mismatched.length > 0) {
    problems.push(
      `${report.mismatched.length} params of another shape: ${report.mismatched
        .slice(0, 5)
        .map((m) => `${m.name} (model [${m.model}], checkpoint [${m.checkpoint}])`)
        .join(', ')}${gridHint(report.mismatched)}`,
    );
  }
  if (report.unexpected.length > 0 && !opts.allowUnexpected) {
    // Dropping a trained FiLM would silently take the prompt away from the patches.
    const film = report.unexpected.includes('vision/film/query')
      ? report.unexpected.includes('vision/film/kernel')
        ? ' (the checkpoint was trained with model.prompt_film: true and model.prompt_film_pool: attention; set them in the config)'
        : ' (the checkpoint was trained with model.prompt_film_pool: attention; set it in the config)'
      : report.unexpected.some(isFilmParam)
        ? ' (the checkpoint was trained with model.prompt_film: true; set it in the config)'
        : '';
    problems.push(
      `${report.unexpected.length} params the model does not have: ${list(report.unexpected)}${film}`,
    );
  }
  if (problems.length > 0)
    throw new UserError(`${file}: cannot initialise the model from it: ${problems.join('; ')}`);
  const resized = new Set(report.resized.map((r) => r.name));
  for (const [name, cur] of params) {
    const t = tensors.get(name);
    if (!t) continue;
    const resizer = resized.has(name) ? RESIZERS.get(name) : undefined;
    const data = resizer
      ? resizer.resize(t.data as Float32Array, t.shape, cur.dataSync() as Float32Array, cur.shape)
      : (t.data as Float32Array);
    params.set(name, tf.tensor(data, cur.shape, 'float32'));
    cur.dispose();
    report.loaded.push(name);
  }
  return report;
}

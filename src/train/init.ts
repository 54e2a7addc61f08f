/**
 * Initialising a model from another checkpoint's params (fine-tuning from a base): every parameter the
 * model has must be there with its shape, except those allowed to be new (LoRA adapters); what the
 * checkpoint has beyond the model is reported. Anything else is an error naming the parameters.
 * One shape may differ: the action expert's per-step position embedding, when the config asks for
 * another action horizon than the base was trained with (openpi fine-tunes its 50-step base to 10-step
 * chunks for DROID). Its shared steps are copied, and steps beyond the base's keep their fresh init.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
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
  /** Loaded for another action horizon: the shared leading rows copied (see `resizableRows`). */
  resized: Array<{ name: string; model: number[]; checkpoint: number[] }>;
}

/** Params whose leading axis is the action horizon: another length is resized, not refused. */
const resizableRows = (name: string): boolean => name === 'expert/action_pos_embedding';

/** Same shape but for the leading axis. */
const rowsDiffer = (a: number[], b: number[]): boolean =>
  a.length === b.length && a.length >= 2 && a.slice(1).join(',') === b.slice(1).join(',') && a[0] !== b[0];

export interface LoadOptions {
  /** Parameters that may be missing from the checkpoint (default: those that start as the identity, `startsAsIdentity`). */
  allowMissing?: (name: string) => boolean;
  allowUnexpected?: boolean;
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
  const { tensors } = readSafetensors(file);
  const allowMissing = opts.allowMissing ?? startsAsIdentity;
  const report: LoadReport = { loaded: [], missing: [], unexpected: [], mismatched: [], resized: [] };
  for (const [name, cur] of params) {
    const t = tensors.get(name);
    if (!t) report.missing.push(name);
    else if (t.shape.join(',') === cur.shape.join(',')) continue;
    else if (resizableRows(name) && rowsDiffer(cur.shape, t.shape))
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
        .join(', ')}`,
    );
  }
  if (report.unexpected.length > 0 && !opts.allowUnexpected) {
    // Dropping a trained FiLM would silently take the prompt away from the patches.
    const film = report.unexpected.some(isFilmParam)
      ? ' (the checkpoint was trained with model.prompt_film: true; set it in the config)'
      : '';
    problems.push(
      `${report.unexpected.length} params the model does not have: ${list(report.unexpected)}${film}`,
    );
  }
  if (problems.length > 0)
    throw new UserError(`${file}: cannot initialise the model from it: ${problems.join('; ')}`);
  for (const [name, cur] of params) {
    const t = tensors.get(name);
    if (!t) continue;
    let data = t.data as Float32Array;
    if (report.resized.some((r) => r.name === name)) {
      // Rows of the base's steps, then the fresh init's rows for steps the base never had.
      const fresh = cur.dataSync() as Float32Array;
      const keep = Math.min(data.length, fresh.length);
      data = Float32Array.from(fresh);
      data.set((t.data as Float32Array).subarray(0, keep));
    }
    params.set(name, tf.tensor(data, cur.shape, 'float32'));
    cur.dispose();
    report.loaded.push(name);
  }
  return report;
}

/**
 * Initialising a model from another checkpoint's params (fine-tuning from a base): every parameter the
 * model has must be there with its shape, except those allowed to be new (LoRA adapters); what the
 * checkpoint has beyond the model is reported. Anything else is an error naming the parameters.
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
}

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
  const report: LoadReport = { loaded: [], missing: [], unexpected: [], mismatched: [] };
  for (const [name, cur] of params) {
    const t = tensors.get(name);
    if (!t) report.missing.push(name);
    else if (t.shape.join(',') !== cur.shape.join(','))
      report.mismatched.push({ name, model: cur.shape, checkpoint: t.shape });
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
    params.set(name, tf.tensor(t.data as Float32Array, cur.shape, 'float32'));
    cur.dispose();
    report.loaded.push(name);
  }
  return report;
}

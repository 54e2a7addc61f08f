/**
 * π0-FAST's action tokenizer for a config (`vla data tokenizer`): trained on its dataset's action chunks
 * in the model's numbers (after the config's transforms and its norm stats), saved beside the norm stats
 * as `assets/<asset_id>/fast_tokenizer.json` with its round-trip error on those chunks.
 */
import path from 'node:path';
import { UserError } from '../config/errors.js';
import { mixesRobots, robotsOf } from '../config/mixture.js';
import type { TrainConfig } from '../config/schema.js';
import { FAST_TOKENIZER_FILE, type FastTokenizer, trainFastTokenizer } from '../model/fast-tokenizer.js';
import { type NormStats, normalize } from '../transforms/normalize.js';
import { gatherChunks } from './normstats.js';

/** The tokenizer file beside a norm stats file. */
export function actionTokenizerFile(normStatsFile: string): string {
  return path.join(path.dirname(normStatsFile), FAST_TOKENIZER_FILE);
}

export async function trainActionTokenizer(
  config: TrainConfig,
  stats: NormStats,
  opts: { cwd?: string; onProgress?: (stage: 'chunks' | 'bpe', done: number, total: number) => void } = {},
): Promise<FastTokenizer> {
  if (config.model.variant !== 'pi0_fast')
    throw new UserError(
      `config ${config.name}: model.variant is ${config.model.variant}; an action tokenizer is for model.variant pi0_fast`,
    );
  if (config.data.assets_dir)
    throw new UserError(
      `${config.name} reads its norm stats and action tokenizer from data.assets_dir ${config.data.assets_dir} (its base's): a new tokenizer there would change what the base's tokens mean; nothing to train (set data.assets_dir=null to train this dataset's own)`,
    );
  if (mixesRobots(config))
    throw new UserError(
      `config ${config.name}: its mixture holds robots ${robotsOf(config).join(', ')}: π0-FAST's action tokenizer is trained on one robot's chunks`,
    );
  const fast = config.model.fast;
  const horizon = config.model.action_horizon;
  const g = await gatherChunks(config, {
    maxFrames: fast.train_chunks,
    cwd: opts.cwd,
    onProgress: (done, total) => opts.onProgress?.('chunks', done, total),
  });
  normalize(g.actions, stats, 'actions', config.data.norm, g.actionDim);
  const per = horizon * g.actionDim;
  const chunks = Array.from({ length: g.n }, (_, i) => g.actions.subarray(i * per, (i + 1) * per));
  // The trainer reports the round trip on these chunks (spec.report).
  return trainFastTokenizer(chunks, {
    horizon,
    actionDim: g.actionDim,
    scale: fast.scale,
    vocabSize: fast.vocab_size,
    onProgress: (done, total) => opts.onProgress?.('bpe', done, total),
  });
}

/**
 * A config's training data as a list of sources: its one `data.dataset`, or each entry of
 * `data.mixture` with its weight. Each source is seen through a config of its own (the entry's dataset,
 * and its prompt in place of the episodes' tasks), so everything that reads one dataset (the pipeline,
 * the loader, the norm stats) reads a mixture source unchanged.
 */
import { UserError } from './errors.js';
import type { TrainConfig } from './schema.js';

export interface DataSource {
  /** The config field that names it, for errors: `data.dataset` or `data.mixture[2].dataset`. */
  field: string;
  /** The dataset as the config names it (a folder, or a name under `datasets/`). */
  dataset: string;
  /** Its share of each batch, relative to the other sources' (1 for a lone dataset). */
  weight: number;
  /** The config this source is read through: `data.dataset` is this source's, `data.mixture` null. */
  config: TrainConfig;
}

/** The config's data sources, in order; an error naming the field when it has none. */
export function dataSources(config: TrainConfig): DataSource[] {
  const { dataset, mixture } = config.data;
  if (mixture === null) {
    if (dataset === null) {
      throw new UserError(
        `config ${config.name}: data.dataset: expected a dataset folder (or a data.mixture), got null (set it with --set data.dataset=PATH)`,
      );
    }
    return [{ field: 'data.dataset', dataset, weight: 1, config }];
  }
  return mixture.map((entry, i) => ({
    field: `data.mixture[${i}].dataset`,
    dataset: entry.dataset,
    weight: entry.weight,
    config: {
      ...config,
      data: {
        ...config.data,
        dataset: entry.dataset,
        mixture: null,
        ...(entry.prompt !== null && { default_prompt: entry.prompt, prompt_from_task: false }),
      },
    },
  }));
}

/** The datasets a config trains on, as named in it (one, or a mixture's, joined by ` + `). */
export function datasetLabel(config: TrainConfig): string | null {
  const { dataset, mixture } = config.data;
  return mixture ? mixture.map((m) => m.dataset).join(' + ') : dataset;
}

/**
 * A config's training data as a list of sources: its one `data.dataset`, or each entry of
 * `data.mixture` with its weight. Each source is seen through a config of its own (the entry's dataset,
 * robot, transforms and norm-stats asset, and its prompt in place of the episodes' tasks), so everything
 * that reads one dataset (the pipeline, the loader, the norm stats) reads a mixture source unchanged.
 *
 * Norm stats are kept per robot, as openpi keeps them per asset: the config's own robot under
 * `data.asset_id` (else its name), every other robot under its name.
 */
import { UserError } from './errors.js';
import type { MixtureEntry, TrainConfig } from './schema.js';

export interface DataSource {
  /** The config field that names it, for errors: `data.dataset` or `data.mixture[2].dataset`. */
  field: string;
  /** The dataset as the config names it (a folder, or a name under `datasets/`). */
  dataset: string;
  /** Its share of each batch, relative to the other sources' (1 for a lone dataset). */
  weight: number;
  /** The robot that recorded it. */
  robot: string;
  /** The asset its norm stats are kept under (its robot's). */
  assetId: string;
  /** The config this source is read through: `data.dataset` is this source's, `data.mixture` null. */
  config: TrainConfig;
}

/** The norm-stats asset of `robot` in `config`: `data.asset_id` for the config's robot, else the robot's name. */
export function assetIdFor(config: TrainConfig, robot: string): string {
  return robot === config.robot ? (config.data.asset_id ?? robot) : robot;
}

/**
 * The steps of a chunk the config's robot trains on and is served: its own (`data.action_horizon`) where
 * fewer than the model's. For another robot of a mixture, ask its `robotConfig`.
 */
export function chunkSteps(config: TrainConfig): number {
  return config.data.action_horizon ?? config.model.action_horizon;
}

/** The robots a config trains on: its own, then each other robot of its mixture, in order. */
export function robotsOf(config: TrainConfig): string[] {
  const robots = [config.robot];
  for (const e of config.data.mixture ?? []) if (e.robot && !robots.includes(e.robot)) robots.push(e.robot);
  return robots;
}

/**
 * The robot a config's policy runs for: `robot` where the config trains it (any of a mixture's robots),
 * its own robot where none is asked; an error naming `what` and the robots it knows otherwise.
 */
export function trainedRobot(config: TrainConfig, robot: string | undefined, what: string): string {
  const robots = robotsOf(config);
  if (robot !== undefined && !robots.includes(robot)) {
    throw new UserError(
      `${what} was trained for robot${robots.length > 1 ? 's' : ''} ${robots.join(', ')}, not ${robot}`,
    );
  }
  return robot ?? config.robot;
}

/** Whether the config mixes robots (its prompts then name each sample's robot). */
export function mixesRobots(config: TrainConfig): boolean {
  return robotsOf(config).length > 1;
}

/** Whether the config's prompts name their robot: `data.robot_in_prompt`, else where it mixes robots. */
export function promptsNameRobot(config: TrainConfig): boolean {
  return config.data.robot_in_prompt ?? mixesRobots(config);
}

/**
 * The prompt a model trained on several robots reads: the robot named before the task, so one set of
 * weights knows whose cameras and joints it is looking at. Training and serving both call this.
 */
export function robotPrompt(robot: string, prompt: string): string {
  return `${robot}: ${prompt}`;
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
    return [
      {
        field: 'data.dataset',
        dataset,
        weight: 1,
        robot: config.robot,
        assetId: assetIdFor(config, config.robot),
        config,
      },
    ];
  }
  return mixture.map((entry, i) => {
    const robot = entry.robot ?? config.robot;
    const own = robot === config.robot;
    const assetId = assetIdFor(config, robot);
    return {
      field: `data.mixture[${i}].dataset`,
      dataset: entry.dataset,
      weight: entry.weight,
      robot,
      assetId,
      config: {
        ...config,
        robot,
        data: {
          ...config.data,
          dataset: entry.dataset,
          mixture: null,
          asset_id: assetId,
          // The config's robot-specific settings reach only its own robot's datasets.
          delta_action_mask:
            entry.delta_action_mask !== undefined
              ? entry.delta_action_mask
              : own
                ? config.data.delta_action_mask
                : null,
          adapt_to_pi: own && config.data.adapt_to_pi,
          action_horizon:
            entry.action_horizon !== undefined
              ? entry.action_horizon
              : own
                ? config.data.action_horizon
                : null,
          assets_dir: entry.assets_dir !== undefined ? entry.assets_dir : own ? config.data.assets_dir : null,
          camera_keys: own ? config.data.camera_keys : {},
          ...(entry.prompt !== null && { default_prompt: entry.prompt, prompt_from_task: false }),
        },
      },
    };
  });
}

/**
 * The config narrowed to one robot's datasets (what its norm stats are computed over): that robot as
 * the config's, its entries only, each entry's settings resolved as `dataSources` resolves them.
 */
export function robotConfig(config: TrainConfig, robot: string): TrainConfig {
  // One robot's config is its own (whether or not it names a dataset: data may be passed in).
  if (config.data.mixture === null && robot === config.robot) return config;
  const all = dataSources(config);
  const mixture = config.data.mixture ?? [];
  const first = all.find((s) => s.robot === robot);
  if (!first) {
    throw new UserError(
      `config ${config.name}: no dataset of robot ${robot} (it trains on ${robotsOf(config).join(', ')})`,
    );
  }
  const entries: MixtureEntry[] = mixture.flatMap((e, i) =>
    all[i]!.robot === robot
      ? [
          {
            ...e,
            robot,
            delta_action_mask: all[i]!.config.data.delta_action_mask,
            action_horizon: all[i]!.config.data.action_horizon,
            assets_dir: all[i]!.config.data.assets_dir,
          },
        ]
      : [],
  );
  // The robot's own settings (as its sources see them), not the first entry's prompt.
  const { asset_id, adapt_to_pi, camera_keys, delta_action_mask, action_horizon, assets_dir } =
    first.config.data;
  return {
    ...config,
    robot,
    data: {
      ...config.data,
      dataset: null,
      mixture: entries,
      asset_id,
      adapt_to_pi,
      camera_keys,
      delta_action_mask,
      action_horizon,
      assets_dir,
    },
  };
}

/** The datasets a config trains on, as named in it (one, or a mixture's, joined by ` + `). */
export function datasetLabel(config: TrainConfig): string | null {
  const { dataset, mixture } = config.data;
  return mixture ? mixture.map((m) => m.dataset).join(' + ') : dataset;
}

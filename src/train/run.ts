/**
 * The training entry point the CLI and the job manager call: builds the model (fresh, from `init_from`,
 * or resumed from the run's newest checkpoint), runs steps to `train.steps`, appends metrics.jsonl
 * every `log_interval`, saves every `save_interval` (pruned by `keep_period`), and on abort saves the
 * current step and returns.
 */
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { activeBackend, setProductPrecision } from '../backend/index.js';
import { UserError } from '../config/errors.js';
import { loadRobot } from '../config/load.js';
import { assetIdFor, datasetLabel, mixesRobots, robotConfig, robotsOf } from '../config/mixture.js';
import { actionDim, stateDim } from '../config/robot.js';
import type { TrainConfig } from '../config/schema.js';
import type { FrameCacheOptions } from '../data/cache.js';
import { checkRobotFits, modelDims } from '../model/config.js';
import { FAST_TOKENIZER_FILE, type FastTokenizer, readFastTokenizer } from '../model/fast-tokenizer.js';
import { paramCount } from '../model/params.js';
import { initParams } from '../model/pi0.js';
import {
  type AssetNormStats,
  checkNormStatsProvenance,
  type NormStats,
  normStatsHorizonNote,
  readNormStats,
  statsMisfit,
} from '../transforms/normalize.js';
import {
  listCheckpoints,
  loadCheckpointState,
  pruneCheckpoints,
  removeStaleTemps,
  saveCheckpoint,
} from './checkpoint.js';
import { loadWeightsInto } from './init.js';
import { Trainer, type TrainingDataSource } from './trainer.js';

export type { TrainingDataSource } from './trainer.js';

export interface TrainProgress {
  step: number;
  totalSteps: number;
  loss: number;
  gradNorm: number;
  lr: number;
  samplesPerSec: number;
}

/**
 * Evaluates a saved checkpoint (the job layer builds it, from simulation or anything else): the
 * metrics go into metrics.jsonl beside the loss, the summary into the log.
 */
export type Evaluate = (
  checkpoint: string,
  step: number,
) => Promise<{ metrics: Record<string, number>; summary: string }>;

export interface RunTrainingOptions {
  /** The resolved config. */
  config: TrainConfig;
  /** checkpoints/<config>/<exp>: step folders <step>/ and metrics.jsonl. */
  runDir: string;
  /** Continue from the newest complete checkpoint in runDir. */
  resume: boolean;
  /** Defaults to openTrainingData(config, …) from src/data/loader.ts. */
  data?: TrainingDataSource;
  /** Where that data's frame caches live and how large a one is read into memory (the loader's defaults). */
  frameCache?: FrameCacheOptions;
  /** The norm stats saved with checkpoints; defaults to the config's assets (see findNormStats). */
  normStats?: NormStats | AssetNormStats;
  /** π0-FAST's action tokenizer; defaults to the one beside the config's norm stats (findActionTokenizer). */
  actionTokenizer?: FastTokenizer | null;
  /** On abort: save a checkpoint at the current step and return stopped: true. */
  signal?: AbortSignal;
  /** Called every step. */
  onProgress?: (p: TrainProgress) => void;
  /** Run every `train.eval_interval` steps and at the end, on the checkpoint saved there. */
  evaluate?: Evaluate;
  log?: (line: string) => void;
}

export interface RunTrainingResult {
  step: number;
  stopped: boolean;
  checkpoint: string | null;
  loss: number;
}

/** `loss/<dataset>`: each dataset's mean loss over what it scored since the last line (none: left out). */
function sourceLosses(
  names: string[],
  sums: { err: Float64Array; kept: Float64Array },
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [i, name] of names.entries())
    if (sums.kept[i]! > 0) out[`loss/${name}`] = sums.err[i]! / sums.kept[i]!;
  return out;
}

/**
 * openpi keeps norm stats under assets/<config>/<asset_id>/; a plain assets/<asset_id>/ is accepted too.
 * With `data.assets_dir` (say a base checkpoint's assets), only `<assets_dir>/<asset_id>/`.
 */
export function normStatsCandidates(config: TrainConfig, cwd = process.cwd()): string[] {
  const id = assetIdFor(config, config.robot);
  if (config.data.assets_dir) return [path.resolve(cwd, config.data.assets_dir, id, 'norm_stats.json')];
  return [
    path.join(cwd, 'assets', config.name, id, 'norm_stats.json'),
    path.join(cwd, 'assets', id, 'norm_stats.json'),
  ];
}

/** The config's norm stats: one set, or for a mixture of robots one per robot's asset. */
export function findNormStats(config: TrainConfig, cwd = process.cwd()): NormStats | AssetNormStats {
  if (!mixesRobots(config)) return findAssetNormStats(config, cwd);
  return new Map(
    robotsOf(config).map((robot) => {
      const rc = robotConfig(config, robot);
      return [assetIdFor(rc, robot), findAssetNormStats(rc, cwd)];
    }),
  );
}

function findAssetNormStats(config: TrainConfig, cwd: string): NormStats {
  const file = findNormStatsFile(config, cwd);
  const stats = readNormStats(file);
  checkNormStatsProvenance(config, stats, path.relative(cwd, file));
  return stats;
}

/** π0-FAST's action tokenizer, beside the config's norm stats (`vla data tokenizer`); null for other variants. */
export function findActionTokenizer(config: TrainConfig, cwd = process.cwd()): FastTokenizer | null {
  if (config.model.variant !== 'pi0_fast') return null;
  const file = path.join(path.dirname(findNormStatsFile(config, cwd)), FAST_TOKENIZER_FILE);
  if (!existsSync(file))
    throw new UserError(
      `no action tokenizer for ${config.name} (model.variant pi0_fast): expected ${path.relative(cwd, file)}; run \`vla data tokenizer ${config.name}\` first`,
    );
  return readFastTokenizer(file);
}

/**
 * The field a config's norm-stats folder is set by, for errors: `data.assets_dir`, or for one robot of a
 * mixture (robotConfig) its datasets' entries, which may set their own.
 */
function assetsDirField(config: TrainConfig): string {
  return config.data.mixture ? `the assets_dir of robot ${config.robot}'s datasets` : 'data.assets_dir';
}

/** The norm stats file the config reads (the first candidate that exists), or an error saying how to make one. */
export function findNormStatsFile(config: TrainConfig, cwd = process.cwd()): string {
  const candidates = normStatsCandidates(config, cwd);
  const file = candidates.find((f) => existsSync(f));
  if (!file) {
    throw new UserError(
      config.data.assets_dir
        ? `no norm stats for ${config.name}: ${assetsDirField(config)} ${config.data.assets_dir} has no ${path.relative(cwd, candidates[0]!)}; expected the base checkpoint's assets folder, holding <asset_id>/norm_stats.json`
        : `no norm stats for ${config.name}: looked for ${candidates.map((f) => path.relative(cwd, f)).join(' and ')}; run \`vla data stats ${config.name}\` first`,
    );
  }
  return file;
}

interface OpenedData extends TrainingDataSource {
  close?: () => void;
}

async function openDefaultData(
  config: TrainConfig,
  normStats: NormStats | AssetNormStats,
  log: (l: string) => void,
  signal?: AbortSignal,
  frameCache: FrameCacheOptions = {},
): Promise<OpenedData> {
  const d = modelDims(config.model);
  // Loaded when training runs, not when this module is imported (listing jobs should not pay for it).
  const { openTrainingData } = await import('../data/loader.js');
  let lastLogged = 0;
  return await openTrainingData(config, {
    imageSize: d.imageSize,
    horizon: d.horizon,
    normStats,
    signal,
    frameCache,
    onProgress: (done, total) => {
      const now = Date.now();
      if (done < total && now - lastLogged < 2000) return;
      lastLogged = now;
      log(`frame cache: ${done}/${total} frames`);
    },
  });
}

/**
 * Stats read from an `assets_dir` (a base's) must describe the data they will normalize: each such
 * robot's data is summarized (at most 20,000 frames) and compared before any frame cache is built.
 */
async function checkBorrowedStats(config: TrainConfig, normStats: NormStats | AssetNormStats): Promise<void> {
  const { computeNormStats } = await import('../data/normstats.js');
  for (const robot of robotsOf(config)) {
    const rc = robotConfig(config, robot);
    if (!rc.data.assets_dir) continue;
    const asset = assetIdFor(rc, robot);
    const used = normStats instanceof Map ? normStats.get(asset) : normStats;
    if (!used) continue;
    const own = await computeNormStats(rc, { maxFrames: 20_000 });
    const misfit = statsMisfit(used, own.stats, rc.data.norm);
    if (misfit) {
      throw new UserError(
        `config ${config.name}: the norm stats in ${rc.data.assets_dir}/${asset} do not fit ${datasetLabel(rc)}: ${misfit}. Normalized with them, its values would lie far outside what the model was trained on: set ${assetsDirField(rc)} to null and run \`vla data stats ${config.name}\` to normalize with the data's own`,
      );
    }
  }
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function runTraining(opts: RunTrainingOptions): Promise<RunTrainingResult> {
  const { config, runDir } = opts;
  const log = opts.log ?? (() => {});
  const existing = listCheckpoints(runDir);
  if (!opts.resume && existing.length > 0) {
    throw new UserError(
      `${runDir} already holds checkpoints (newest: step ${existing.at(-1)!.step}): resume it, or start over with --overwrite`,
    );
  }
  if (!opts.data) {
    // Before the dataset is opened (a frame cache can take minutes): a robot the model cannot take fails now.
    for (const name of robotsOf(config)) {
      const robot = loadRobot(name);
      checkRobotFits(modelDims(config.model), {
        stateDim: stateDim(robot),
        actionDim: actionDim(robot),
        cameras: robot.cameras.length,
      });
    }
  }
  const normStats = opts.normStats ?? findNormStats(config);
  const tokenizer = opts.actionTokenizer !== undefined ? opts.actionTokenizer : findActionTokenizer(config);
  // Each robot's stats against its own chunk and action transforms.
  for (const robot of robotsOf(config)) {
    const rc = robotConfig(config, robot);
    const asset = assetIdFor(rc, robot);
    const stats = normStats instanceof Map ? normStats.get(asset) : normStats;
    const horizonNote = stats && normStatsHorizonNote(rc, stats, `asset ${asset}`);
    if (horizonNote) log(`warning: ${horizonNote}`);
  }
  let opened: OpenedData | null = null;
  if (!opts.data) {
    await checkBorrowedStats(config, normStats);
    const { CacheBuildAborted } = await import('../data/cache.js');
    try {
      opened = await openDefaultData(config, normStats, log, opts.signal, opts.frameCache);
    } catch (e) {
      if (!(e instanceof CacheBuildAborted)) throw e;
      // Stopped before the first step: nothing trained, so no checkpoint to write; a resumed run keeps its own.
      log(
        e.keptFrames > 0
          ? `${e.message}; its ${e.keptFrames} decoded frames are kept, and the next run goes on from them`
          : e.message,
      );
      const last = existing.at(-1);
      return { step: opts.resume && last ? last.step : 0, stopped: true, checkpoint: null, loss: Number.NaN };
    }
  }
  try {
    return await train(opts, opts.data ?? opened!, normStats, tokenizer, existing, log);
  } finally {
    opened?.close?.();
  }
}

async function train(
  opts: RunTrainingOptions,
  data: TrainingDataSource,
  normStats: NormStats | AssetNormStats,
  tokenizer: FastTokenizer | null,
  existing: Array<{ step: number; dir: string }>,
  log: (line: string) => void,
): Promise<RunTrainingResult> {
  const { config, runDir } = opts;
  const t = config.train;
  const init = initParams(modelDims(config.model), t.seed, tokenizer);
  const latest = opts.resume ? existing.at(-1) : undefined;
  if (!latest && t.init_from) {
    try {
      const r = loadWeightsInto(init, t.init_from, { variant: config.model.variant });
      log(
        `init from ${t.init_from}: ${r.loaded.length} params loaded, ${r.missing.length} new${r.missing.length > 0 ? ` (${r.missing.slice(0, 4).join(', ')}${r.missing.length > 4 ? ', …' : ''})` : ''}, ${r.unexpected.length} unused${r.resized.map((x) => `; ${x.name} resized from [${x.checkpoint}] to [${x.model}]`).join('')}`,
      );
    } catch (e) {
      tf.dispose([...init.values()]);
      throw e;
    }
  }
  const trainer = new Trainer(config, init, tokenizer);
  try {
    trainer.checkSource(data);
    if (latest) {
      trainer.restore(loadCheckpointState(latest.dir));
      log(`resumed from ${latest.dir} (step ${trainer.step})`);
    }
    const dp = await trainer.startDataParallel();
    if (dp) log(dp);
    const trainableCount = [...trainer.trainable.values()].reduce((n, v) => n + v.size, 0);
    log(
      `model ${config.model.preset}: ${paramCount(trainer.params).toLocaleString('en-US')} params, ${trainableCount.toLocaleString('en-US')} trained; data: ${data.numSamples} samples, cameras ${data.cameras.join(', ')}`,
    );
    const productsOff = setProductPrecision(t.precision);
    // What runs them, and where bf16 measured slower than fp32 on this CPU, that too (native/onednn.ts).
    const products = activeBackend()?.native?.products ?? t.precision;
    log(`products: ${productsOff ? `fp32 (${t.precision} asked; ${productsOff})` : products}`);
    mkdirSync(runDir, { recursive: true });
    removeStaleTemps(runDir);
    const metrics = path.join(runDir, 'metrics.jsonl');
    let checkpoint: string | null = latest?.dir ?? null;
    let lastSaved = latest?.step ?? -1;
    let loss = Number.NaN;
    const save = async () => {
      checkpoint = saveCheckpoint(
        runDir,
        config,
        normStats,
        await trainer.state(),
        t.params_dtype,
        tokenizer,
      );
      lastSaved = trainer.step;
      pruneCheckpoints(runDir, t.keep_period);
      log(`saved ${checkpoint}`);
    };
    const evaluate = async (run: Evaluate) => {
      if (lastSaved !== trainer.step) await save();
      const { metrics: m, summary } = await run(checkpoint!, trainer.step);
      appendFileSync(
        metrics,
        `${JSON.stringify({ step: trainer.step, ...m, time: new Date().toISOString() })}\n`,
      );
      log(`eval at step ${trainer.step}: ${summary}`);
    };
    // A mixture's loss per dataset, summed over each log interval (one step's few samples are noise).
    // The same since the last checkpoint, for the log.
    const names = data.sourceNames ?? [];
    const sums = () => ({ err: new Float64Array(names.length), kept: new Float64Array(names.length) });
    const [bySource, sinceSave] = [sums(), sums()];
    while (trainer.step < t.steps) {
      if (opts.signal?.aborted) break;
      const t0 = performance.now();
      const batch = await data.batchAt(trainer.step, t.batch_size, t.seed);
      const r = trainer.trainStep(batch);
      const samplesPerSec = (batch.size * 1000) / (performance.now() - t0);
      loss = r.loss;
      if (r.perSample && batch.sources) {
        for (const [i, s] of batch.sources.entries()) {
          for (const acc of [bySource, sinceSave]) {
            acc.err[s]! += r.perSample.err[i]!;
            acc.kept[s]! += r.perSample.kept[i]!;
          }
        }
      }
      opts.onProgress?.({ step: trainer.step, totalSteps: t.steps, ...r, samplesPerSec });
      if (trainer.step % t.log_interval === 0 || trainer.step === t.steps) {
        const line = {
          step: trainer.step,
          loss: r.loss,
          ...sourceLosses(names, bySource),
          grad_norm: r.gradNorm,
          lr: r.lr,
          samples_per_s: samplesPerSec,
          time: new Date().toISOString(),
        };
        bySource.err.fill(0);
        bySource.kept.fill(0);
        appendFileSync(metrics, `${JSON.stringify(line)}\n`);
      }
      if (trainer.step % t.save_interval === 0 || trainer.step === t.steps) {
        await save();
        const per = Object.entries(sourceLosses(names, sinceSave));
        if (per.length > 0)
          log(
            `loss by dataset since the last checkpoint: ${per.map(([k, v]) => `${k.slice(5)} ${Number(v.toPrecision(4))}`).join(', ')}`,
          );
        sinceSave.err.fill(0);
        sinceSave.kept.fill(0);
      }
      if (
        opts.evaluate &&
        t.eval_interval !== null &&
        (trainer.step % t.eval_interval === 0 || trainer.step === t.steps)
      ) {
        await evaluate(opts.evaluate);
      }
      await tick();
    }
    const stopped = trainer.step < t.steps;
    if (stopped && lastSaved !== trainer.step) await save();
    return { step: trainer.step, stopped, checkpoint, loss };
  } finally {
    trainer.dispose();
  }
}

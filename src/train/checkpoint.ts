/**
 * Checkpoints as DESIGN.md §5: `<runDir>/<step>/` holding params.safetensors (the inference weights:
 * the EMA when training keeps one), train_state.safetensors (Adam moments, the raw weights when they
 * differ from params, exact float32 copies when params are float16, the step and the RNG seed),
 * config.yaml and assets/<asset_id>/norm_stats.json.
 * A checkpoint is written into a hidden temporary folder and renamed, so a crash never leaves half of one.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { configToYaml } from '../config/load.js';
import { assetIdFor } from '../config/mixture.js';
import type { TrainConfig } from '../config/schema.js';
import { FAST_TOKENIZER_FILE, type FastTokenizer, writeFastTokenizer } from '../model/fast-tokenizer.js';
import { readSafetensors, type SafeTensor, writeSafetensors } from '../model/safetensors.js';
import { type AssetNormStats, type NormStats, writeNormStats } from '../transforms/normalize.js';

export interface CheckpointState {
  step: number;
  seed: number;
  /** Inference weights (EMA or raw). */
  params: Map<string, Float32Array>;
  /** Raw training weights when they differ from `params` (EMA on). */
  raw: Map<string, Float32Array> | null;
  adamM: Map<string, Float32Array>;
  adamV: Map<string, Float32Array>;
  shapes: Map<string, number[]>;
  /** What the model was trained on: camera order and the robot's dims (stored in params' metadata). */
  data: { cameras: string[]; stateDim: number; actionDim: number };
}

export function saveCheckpoint(
  runDir: string,
  config: TrainConfig,
  normStats: NormStats | AssetNormStats | null,
  state: CheckpointState,
  dtype: 'float32' | 'float16' = 'float32',
  /** π0-FAST's action tokenizer, saved beside the config robot's norm stats. */
  actionTokenizer: FastTokenizer | null = null,
): string {
  mkdirSync(runDir, { recursive: true });
  const final = path.join(runDir, String(state.step));
  const tmp = path.join(runDir, `.tmp-${state.step}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const pack = (
    m: Map<string, Float32Array>,
    prefix: string,
    dt: 'F32' | 'F16',
    into: Map<string, SafeTensor>,
  ) => {
    for (const [name, data] of m)
      into.set(`${prefix}${name}`, { dtype: dt, shape: state.shapes.get(name)!, data });
  };
  const params = new Map<string, SafeTensor>();
  pack(state.params, '', dtype === 'float16' ? 'F16' : 'F32', params);
  writeSafetensors(path.join(tmp, 'params.safetensors'), params, {
    format: 'vla-params/1',
    step: String(state.step),
    cameras: state.data.cameras.join(','),
    state_dim: String(state.data.stateDim),
    action_dim: String(state.data.actionDim),
  });
  const train = new Map<string, SafeTensor>();
  train.set('step', { dtype: 'I64', shape: [], data: BigInt64Array.of(BigInt(state.step)) });
  train.set('rng_seed', { dtype: 'U32', shape: [1], data: Uint32Array.of(state.seed) });
  pack(state.adamM, 'adam/m/', 'F32', train);
  pack(state.adamV, 'adam/v/', 'F32', train);
  if (state.raw) pack(state.raw, 'raw/', 'F32', train);
  // float16 params lose precision: keep exact float32 copies so that resuming stays exact.
  if (dtype === 'float16') pack(state.params, state.raw ? 'ema/' : 'raw/', 'F32', train);
  writeSafetensors(path.join(tmp, 'train_state.safetensors'), train, { format: 'vla-train-state/1' });
  writeFileSync(path.join(tmp, 'config.yaml'), configToYaml(config));
  // assets/<asset_id>/norm_stats.json: one per robot for a mixture of robots.
  const assets =
    normStats instanceof Map
      ? normStats
      : normStats && new Map([[assetIdFor(config, config.robot), normStats]]);
  for (const [id, stats] of assets ?? [])
    writeNormStats(path.join(tmp, 'assets', id, 'norm_stats.json'), stats);
  if (actionTokenizer)
    writeFastTokenizer(
      path.join(tmp, 'assets', assetIdFor(config, config.robot), FAST_TOKENIZER_FILE),
      actionTokenizer,
    );
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  return final;
}

/** Half-written checkpoints a crash left behind (never renamed into place). */
export function removeStaleTemps(runDir: string): void {
  if (!existsSync(runDir)) return;
  for (const n of readdirSync(runDir))
    if (n.startsWith('.tmp-')) rmSync(path.join(runDir, n), { recursive: true, force: true });
}

/** Complete checkpoints in a run folder, oldest first. */
export function listCheckpoints(runDir: string): Array<{ step: number; dir: string }> {
  if (!existsSync(runDir)) return [];
  return readdirSync(runDir)
    .filter((n) => /^\d+$/.test(n))
    .map((n) => ({ step: Number(n), dir: path.join(runDir, n) }))
    .filter(
      (c) =>
        existsSync(path.join(c.dir, 'params.safetensors')) &&
        existsSync(path.join(c.dir, 'train_state.safetensors')),
    )
    .sort((a, b) => a.step - b.step);
}

/** Keeps the newest checkpoint and those at multiples of keep_period (openpi's keep_period); removes the rest. */
export function pruneCheckpoints(runDir: string, keepPeriod: number | null): void {
  const all = listCheckpoints(runDir);
  const newest = all.at(-1)?.step;
  for (const c of all) {
    if (c.step === newest) continue;
    if (keepPeriod !== null && c.step % keepPeriod === 0) continue;
    rmSync(c.dir, { recursive: true, force: true });
  }
}

export function loadCheckpointState(dir: string): CheckpointState {
  const params = readSafetensors(path.join(dir, 'params.safetensors'));
  const train = readSafetensors(path.join(dir, 'train_state.safetensors'));
  const shapes = new Map<string, number[]>();
  const values = new Map<string, Float32Array>();
  for (const [name, t] of params.tensors) {
    shapes.set(name, t.shape);
    values.set(name, t.data as Float32Array);
  }
  const under = (prefix: string) => {
    const m = new Map<string, Float32Array>();
    for (const [name, t] of train.tensors)
      if (name.startsWith(prefix)) m.set(name.slice(prefix.length), t.data as Float32Array);
    return m;
  };
  const raw = under('raw/');
  const ema = under('ema/');
  const step = train.tensors.get('step');
  const seed = train.tensors.get('rng_seed');
  if (!step || !seed) throw new Error(`${dir}/train_state.safetensors: expected step and rng_seed tensors`);
  return {
    step: Number((step.data as BigInt64Array)[0]),
    seed: (seed.data as Uint32Array)[0]!,
    params: ema.size > 0 ? ema : values,
    raw: raw.size > 0 ? raw : null,
    adamM: under('adam/m/'),
    adamV: under('adam/v/'),
    shapes,
    data: {
      cameras: (params.metadata.cameras ?? '').split(',').filter(Boolean),
      stateDim: Number(params.metadata.state_dim ?? 0),
      actionDim: Number(params.metadata.action_dim ?? 0),
    },
  };
}

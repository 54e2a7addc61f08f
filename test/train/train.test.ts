import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { TrainConfig } from '../../src/config/schema.js';
import { modelDims } from '../../src/model/config.js';
import { patchify } from '../../src/model/inputs.js';
import { initParams } from '../../src/model/pi0.js';
import { loadPolicyModel } from '../../src/model/policy.js';
import { readSafetensors, writeSafetensors } from '../../src/model/safetensors.js';
import { loadWeightsInto } from '../../src/train/init.js';
import { runTraining } from '../../src/train/run.js';
import { Trainer } from '../../src/train/trainer.js';
import type { NormStats } from '../../src/transforms/normalize.js';
import { syntheticSource } from './source.js';

const H = 6;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'vla-train-'));
const stats: NormStats = {
  state: { mean: new Array(6).fill(0), std: new Array(6).fill(1) },
  actions: { mean: new Array(6).fill(0), std: new Array(6).fill(1) },
};

/** Params as a bare safetensors file (what a checkpoint's params.safetensors holds). */
function saveParams(file: string, params: Map<string, tf.Tensor>): void {
  writeSafetensors(
    file,
    new Map(
      [...params].map(([n, t]) => [
        n,
        { dtype: 'F32' as const, shape: t.shape, data: t.dataSync() as Float32Array },
      ]),
    ),
  );
}

function config(over: { model?: Record<string, unknown>; train?: Record<string, unknown> } = {}) {
  return TrainConfig.parse({
    name: 'test_cfg',
    robot: 'aloha',
    model: { preset: 'tiny', action_horizon: H, action_dim: 8, num_steps: 3, ...over.model },
    train: {
      steps: 4,
      batch_size: 4,
      log_interval: 1,
      save_interval: 2,
      keep_period: null,
      schedule: { warmup_steps: 1, peak_lr: 1e-3, decay_lr: 1e-4 },
      ...over.train,
    },
  });
}

const source = () => syntheticSource({ imageSize: 32, horizon: H });

beforeAll(async () => {
  await setupBackend({ backend: 'wasm' });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('trainer', () => {
  it('keeps the tensor count flat across steps and frees everything on dispose; trainers can coexist', () => {
    const cfg = config({ train: { ema_decay: 0.99 } });
    const before = tf.memory().numTensors;
    const trainer = new Trainer(cfg, initParams(modelDims(cfg.model), 0));
    const other = new Trainer(cfg, initParams(modelDims(cfg.model), 1));
    const data = source();
    trainer.checkSource(data);
    trainer.trainStep(data.batchAt(0, 4, 0));
    const after1 = tf.memory().numTensors;
    for (let s = 1; s < 4; s++) trainer.trainStep(data.batchAt(s, 4, 0));
    expect(tf.memory().numTensors).toBe(after1);
    other.dispose();
    trainer.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('state_dropout 1 hides the state from the model; 0 leaves it in', () => {
    const losses = (dropout: number) => {
      const cfg = config({ train: { state_dropout: dropout } });
      const data = source();
      const batch = data.batchAt(0, 4, 0);
      const shifted = { ...batch, state: batch.state.map((v) => v + 3) };
      return [batch, shifted].map((b) => {
        const trainer = new Trainer(cfg, initParams(modelDims(cfg.model), 0));
        trainer.checkSource(data);
        const loss = trainer.trainStep(b).loss;
        trainer.dispose();
        return loss;
      });
    };
    const [hidden, hiddenShifted] = losses(1);
    expect(hiddenShifted).toBe(hidden);
    const [seen, seenShifted] = losses(0);
    expect(seenShifted).not.toBe(seen);
  });

  it('with everything but LoRA frozen, only LoRA params change', async () => {
    const cfg = config({
      model: { lora: { rank: 2, alpha: 2 } },
      train: { freeze: ['prefix/*', 'expert/*', 'vision/*'] },
    });
    const trainer = new Trainer(cfg, initParams(modelDims(cfg.model), 1));
    const before = new Map([...trainer.params].map(([n, v]) => [n, v.dataSync().slice()]));
    const data = source();
    for (let s = 0; s < 2; s++) trainer.trainStep(data.batchAt(s, 4, 0));
    let loraChanged = 0;
    for (const [n, v] of trainer.params) {
      const same = v.dataSync().every((x, i) => x === before.get(n)![i]);
      if (n.endsWith('/lora_a') || n.endsWith('/lora_b')) loraChanged += same ? 0 : 1;
      else expect(same, n).toBe(true);
    }
    expect(loraChanged).toBeGreaterThan(0);
    expect([...trainer.trainable.keys()].every((n) => /lora_[ab]$/.test(n))).toBe(true);
    trainer.dispose();
  });
});

describe('runTraining and checkpoints', () => {
  it('writes checkpoints per DESIGN §5 and metrics.jsonl; a loaded checkpoint gives identical actions', async () => {
    const runDir = path.join(tmp, 'plain');
    const cfg = config({ train: { ema_decay: 0.9 } });
    const data = source();
    const progress: number[] = [];
    const r = await runTraining({
      config: cfg,
      runDir,
      resume: false,
      data,
      normStats: stats,
      onProgress: (p) => progress.push(p.step),
    });
    expect(r).toMatchObject({ step: 4, stopped: false });
    expect(progress).toEqual([1, 2, 3, 4]);
    expect(readdirSync(runDir).sort()).toEqual(['4', 'metrics.jsonl']);
    const ckpt = path.join(runDir, '4');
    expect(readdirSync(ckpt).sort()).toEqual([
      'assets',
      'config.yaml',
      'params.safetensors',
      'train_state.safetensors',
    ]);
    expect(existsSync(path.join(ckpt, 'assets', 'aloha', 'norm_stats.json'))).toBe(true);
    const lines = readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.step)).toEqual([1, 2, 3, 4]);
    expect(Object.keys(lines[0])).toEqual(['step', 'loss', 'grad_norm', 'lr', 'samples_per_s', 'time']);
    const ts = readSafetensors(path.join(ckpt, 'train_state.safetensors'));
    expect(Number((ts.tensors.get('step')!.data as BigInt64Array)[0])).toBe(4);
    expect(ts.tensors.has('raw/expert/action_out/kernel')).toBe(true);

    const policy = await loadPolicyModel(ckpt);
    expect(policy.cameras).toEqual(data.cameras);
    expect(policy.actionDim).toBe(6);
    expect(policy.normStats).toEqual(stats);
    const b = data.batchAt(0, 2, 0);
    const noise = new Float32Array(2 * H * 8).map((_, i) => Math.sin(i));
    const input = {
      images: b.images,
      imageMask: b.imageMask,
      state: b.state,
      prompts: b.prompts,
      batchSize: 2,
      noise,
    };
    const a1 = await policy.sampleActions(input);
    const again = await loadPolicyModel(ckpt);
    expect(await again.sampleActions(input)).toEqual(a1);
    expect(a1.length).toBe(2 * H * 6);
    // batch of 2 = two batches of 1
    const one = await policy.sampleActions({
      images: b.images.subarray(0, b.images.length / 2),
      imageMask: b.imageMask.subarray(0, 2),
      state: b.state.subarray(0, 6),
      prompts: [b.prompts[0]!],
      batchSize: 1,
      noise: noise.subarray(0, H * 8),
    });
    for (let i = 0; i < one.length; i++) expect(one[i]).toBeCloseTo(a1[i]!, 4);
    policy.dispose();
    again.dispose();
  });

  it.each([
    ['float32', 0.9],
    ['float16', null],
  ] as const)(
    'resumes exactly (params %s, EMA %s): stopped at step 3 and resumed gives the uninterrupted run’s weights',
    async (dtype, ema) => {
      const cfg = config({ train: { ema_decay: ema, params_dtype: dtype } });
      const straight = path.join(tmp, `straight-${dtype}`);
      await runTraining({ config: cfg, runDir: straight, resume: false, data: source(), normStats: stats });
      const broken = path.join(tmp, `broken-${dtype}`);
      const ctl = new AbortController();
      const first = await runTraining({
        config: cfg,
        runDir: broken,
        resume: false,
        data: source(),
        normStats: stats,
        signal: ctl.signal,
        onProgress: (p) => p.step === 3 && ctl.abort(),
      });
      expect(first).toMatchObject({ step: 3, stopped: true });
      expect(existsSync(path.join(broken, '3'))).toBe(true);
      await expect(
        runTraining({ config: cfg, runDir: broken, resume: false, data: source(), normStats: stats }),
      ).rejects.toThrow(/already holds checkpoints/);
      mkdirSync(path.join(broken, '.tmp-4-12345'), { recursive: true }); // what a crash mid-save leaves
      const second = await runTraining({
        config: cfg,
        runDir: broken,
        resume: true,
        data: source(),
        normStats: stats,
      });
      expect(second).toMatchObject({ step: 4, stopped: false });
      expect(existsSync(path.join(broken, '.tmp-4-12345'))).toBe(false);
      for (const file of ['params.safetensors', 'train_state.safetensors']) {
        const a = readSafetensors(path.join(straight, '4', file)).tensors;
        const b = readSafetensors(path.join(broken, '4', file)).tensors;
        expect([...b.keys()]).toEqual([...a.keys()]);
        for (const [n, t] of a) expect(b.get(n)!.data, n).toEqual(t.data);
      }
    },
  );

  it('prunes checkpoints by keep_period, keeping the newest', async () => {
    const runDir = path.join(tmp, 'prune');
    await runTraining({
      config: config({ train: { steps: 5, save_interval: 1, keep_period: 2 } }),
      runDir,
      resume: false,
      data: source(),
      normStats: stats,
    });
    expect(
      readdirSync(runDir)
        .filter((n) => /^\d+$/.test(n))
        .sort(),
    ).toEqual(['2', '4', '5']);
  });

  it('loads weights for fine-tuning, reporting missing, unexpected and mismatched params', async () => {
    const ckpt = path.join(tmp, 'plain', '4');
    const lora = modelDims(config({ model: { lora: { rank: 2, alpha: 2 } } }).model);
    const p = initParams(lora, 5);
    const report = loadWeightsInto(p, ckpt);
    expect(report.missing.length).toBeGreaterThan(0);
    expect(report.missing.every((n) => /lora_[ab]$/.test(n))).toBe(true);
    expect(report.unexpected).toEqual([]);
    tf.dispose([...p.values()]);
    // The prompt's FiLM is new too, and keeps its identity initialisation.
    const filmed = initParams(modelDims(config({ model: { prompt_film: true } }).model), 5);
    const filmReport = loadWeightsInto(filmed, ckpt);
    expect(filmReport.missing.sort()).toEqual(['vision/film/bias', 'vision/film/kernel']);
    expect(
      filmed
        .get('vision/film/kernel')!
        .dataSync()
        .every((v) => v === 0),
    ).toBe(true);
    // The other way round the FiLM would be dropped: refused, with the config field to set.
    const filmCkpt = path.join(tmp, 'filmed.safetensors');
    saveParams(filmCkpt, filmed);
    const plainParams = initParams(modelDims(config({}).model), 5);
    expect(() => loadWeightsInto(plainParams, filmCkpt)).toThrow(
      /2 params the model does not have: vision\/film\/kernel, vision\/film\/bias \(the checkpoint was trained with model\.prompt_film: true; set it in the config\)/,
    );
    // A mean-pooled FiLM's checkpoint starts an attention-pooled model (its query new, at zeros); the
    // other way round the query would be dropped: refused, naming the field.
    const pooledDims = modelDims(
      config({ model: { prompt_film: true, prompt_film_pool: 'attention' } }).model,
    );
    const pooled = initParams(pooledDims, 5);
    expect(loadWeightsInto(pooled, filmCkpt).missing).toEqual(['vision/film/query']);
    const pooledCkpt = path.join(tmp, 'pooled.safetensors');
    saveParams(pooledCkpt, pooled);
    const meanPooled = initParams(modelDims(config({ model: { prompt_film: true } }).model), 5);
    expect(() => loadWeightsInto(meanPooled, pooledCkpt)).toThrow(
      /1 params the model does not have: vision\/film\/query \(the checkpoint was trained with model\.prompt_film_pool: attention; set it in the config\)/,
    );
    expect(() => modelDims(config({ model: { prompt_film_pool: 'attention' } }).model)).toThrow(
      /model\.prompt_film_pool is attention while model\.prompt_film is false: expected prompt_film: true/,
    );
    expect(() => loadWeightsInto(plainParams, pooledCkpt)).toThrow(
      /\(the checkpoint was trained with model\.prompt_film: true and model\.prompt_film_pool: attention; set them in the config\)/,
    );
    tf.dispose([...filmed.values(), ...plainParams.values(), ...pooled.values(), ...meanPooled.values()]);
    const deeper = initParams(modelDims(config({ model: { depth: 3 } }).model), 5);
    expect(() => loadWeightsInto(deeper, ckpt)).toThrow(
      /missing \d+ params the model needs: prefix\/block_1\/attn\/q\/kernel/,
    );
    tf.dispose([...deeper.values()]);
    const wider = initParams(modelDims(config({ model: { expert_width: 16 } }).model), 5);
    expect(() => loadWeightsInto(wider, ckpt)).toThrow(
      /of another shape: expert\/state_proj\/kernel \(model \[8,16\], checkpoint \[8,32\]\)/,
    );
    tf.dispose([...wider.values()]);
  });

  /** A parameter of the plain checkpoint written above, and the checkpoint's folder. */
  const baseParam = (name: string) => {
    const ckpt = path.join(tmp, 'plain', '4');
    return { ckpt, base: readSafetensors(path.join(ckpt, 'params.safetensors')).tensors.get(name)! };
  };

  it('fine-tunes to another action horizon: the base steps copied, the new ones freshly initialised', async () => {
    const { ckpt, base } = baseParam('expert/action_pos_embedding');
    const [h, e] = base.shape as [number, number];
    for (const horizon of [h + 3, h - 1]) {
      const dims = modelDims(config({ model: { action_horizon: horizon } }).model);
      const p = initParams(dims, 5);
      const fresh = p.get('expert/action_pos_embedding')!.dataSync().slice();
      const report = loadWeightsInto(p, ckpt);
      expect(report.resized).toEqual([
        { name: 'expert/action_pos_embedding', model: [horizon, e], checkpoint: [h, e] },
      ]);
      expect(report.mismatched).toEqual([]);
      const got = p.get('expert/action_pos_embedding')!.dataSync();
      const shared = Math.min(h, horizon) * e;
      expect(Array.from(got.subarray(0, shared))).toEqual(
        Array.from((base.data as Float32Array).subarray(0, shared)),
      );
      expect(Array.from(got.subarray(shared))).toEqual(Array.from(fresh.subarray(shared)));
      // Everything else loads as it would at the base's horizon.
      expect(report.loaded.length).toBe(p.size);
      tf.dispose([...p.values()]);
    }
  });

  it('fine-tunes at another image resolution with as many patches: the patch filters resampled', async () => {
    const { ckpt, base } = baseParam('vision/patch_embed/kernel');
    const [rows, w] = base.shape as [number, number];
    expect(rows).toBe(8 * 8 * 3); // the tiny preset: 32 px images in 8 px patches
    const dims = modelDims(config({ model: { image_size: 48, patch_size: 12 } }).model);
    const p = initParams(dims, 5);
    const report = loadWeightsInto(p, ckpt);
    expect(report.resized).toEqual([
      { name: 'vision/patch_embed/kernel', model: [12 * 12 * 3, w], checkpoint: [rows, w] },
    ]);
    expect(report.mismatched).toEqual([]);
    // One smooth scene drawn at both resolutions: each 12 px patch should embed as the 8 px patch of the
    // same region did. A scene varying along x only catches a transposed or channel-shuffled filter.
    const draw = (size: number) => {
      const img = new Uint8Array(size * size * 3);
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++)
          for (let c = 0; c < 3; c++) {
            const u = (x + 0.5) / size;
            const v = (y + 0.5) / size;
            img[(y * size + x) * 3 + c] = Math.round(
              127.5 + 100 * Math.sin(3 * u + c) * (c === 1 ? 1 : Math.cos(2 * v)),
            );
          }
      return img;
    };
    const embed = (kernel: Float32Array, size: number, patch: number) =>
      tf.tidy(() =>
        tf
          .matMul(
            tf.tensor2d(patchify(draw(size), 1, size, patch), [(size / patch) ** 2, patch * patch * 3]),
            tf.tensor2d(kernel, [patch * patch * 3, w]),
          )
          .dataSync(),
      );
    const want = embed(base.data as Float32Array, 32, 8);
    const got = embed(p.get('vision/patch_embed/kernel')!.dataSync() as Float32Array, 48, 12);
    const fresh = embed(
      initParams(dims, 5).get('vision/patch_embed/kernel')!.dataSync() as Float32Array,
      48,
      12,
    );
    const relErr = (a: ArrayLike<number>) =>
      Math.hypot(...Array.from(a, (v, i) => v - want[i]!)) / Math.hypot(...want);
    expect(relErr(got)).toBeLessThan(0.05);
    expect(relErr(fresh)).toBeGreaterThan(0.5);
    tf.dispose([...p.values()]);
    // Another patch grid has another position embedding: refused, saying which ratio to keep.
    const grid = initParams(modelDims(config({ model: { image_size: 48, patch_size: 8 } }).model), 5);
    expect(() => loadWeightsInto(grid, ckpt)).toThrow(
      /vision\/pos_embedding \(model \[36,\d+\], checkpoint \[16,\d+\]\) \(the base sees 4×4 patches per image: another model\.image_size fine-tunes from it when model\.patch_size keeps image_size \/ patch_size = 4\)/,
    );
    tf.dispose([...grid.values()]);
  });
});

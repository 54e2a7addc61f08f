import type { Command } from 'commander';
import { UserError } from '../config/errors.js';
import type { PolicyModel } from '../model/policy.js';
import type { Batch } from '../transforms/batch.js';
import { computeBackend, frameCacheFromEnv, samplerChoiceFromEnv } from './context.js';
import { NOISE_SCALE_HELP, noiseScaleOption, table } from './output.js';

interface InferOptions {
  checkpoint: string;
  episode: string;
  frame: string;
  dataset?: string;
  seed: string;
  numSteps?: string;
  noiseScale?: string;
  cache: boolean;
  show: string;
  ablate?: string;
}

function intOption(value: string, flag: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new UserError(`${flag}: expected an integer >= ${min}, got ${JSON.stringify(value)}`);
  return n;
}

export function register(program: Command): void {
  program
    .command('infer')
    .description(
      'sample an action chunk from a checkpoint for a dataset frame and compare it with the recording',
    )
    .requiredOption('--checkpoint <dir>', 'checkpoint folder (checkpoints/<config>/<exp>/<step>)')
    .requiredOption('--episode <n>', 'episode index in the dataset')
    .option('--frame <n>', 'frame within the episode', '0')
    .option('--dataset <path>', "dataset folder (default: the checkpoint config's data.dataset)")
    .option('--seed <n>', 'seed of the flow noise', '0')
    .option('--num-steps <n>', "flow steps (default: the config's model.num_steps)")
    .option('--noise-scale <s>', NOISE_SCALE_HELP)
    .option('--no-cache', 'recompute the prefix at every flow step (slower; for comparison)')
    .option(
      '--ablate <n>',
      "over N episodes from --episode on, at --frame: the chunk error with the frame's own cameras and prompt, with another episode's cameras, and with another prompt (does the policy read them?)",
    )
    .option('--show <n>', 'chunk steps to print', '5')
    .action(async (opts: InferOptions) => {
      const { loadPolicyModel } = await import('../model/policy.js');
      const { Rng } = await import('../model/rng.js');
      const { unnormalize } = await import('../transforms/normalize.js');
      await computeBackend(program);
      const episode = intOption(opts.episode, '--episode', 0);
      const frame = intOption(opts.frame, '--frame', 0);
      const ablate = opts.ablate === undefined ? null : intOption(opts.ablate, '--ablate', 1);
      const seed = intOption(opts.seed, '--seed', 0);
      const showSteps = intOption(opts.show, '--show', 0);
      const noiseScaleOpt = noiseScaleOption(opts.noiseScale);
      const policy = await loadPolicyModel(opts.checkpoint, undefined, samplerChoiceFromEnv());
      const sampling = {
        numSteps: opts.numSteps ? intOption(opts.numSteps, '--num-steps', 1) : undefined,
        cache: opts.cache,
        noiseScale: noiseScaleOpt ?? policy.dims.noiseScale,
      };
      if (!policy.normStats)
        throw new UserError(`${opts.checkpoint}: no assets/<asset_id>/norm_stats.json in the checkpoint`);
      // A mixture's checkpoint reads its first dataset unless --dataset names one.
      const { dataSources } = await import('../config/mixture.js');
      const config = opts.dataset
        ? { ...policy.config, data: { ...policy.config.data, dataset: opts.dataset, mixture: null } }
        : dataSources(policy.config)[0]!.config;
      const { openTrainingData } = await import('../data/loader.js');
      const { openPipeline } = await import('../data/pipeline.js');
      const pipeline = await openPipeline(config);
      const eps = pipeline.dataset.episodes;
      const epIndex = eps.findIndex((e) => e.index === episode);
      if (epIndex < 0) {
        throw new UserError(
          `--episode ${episode}: the dataset has episodes ${eps.map((e) => e.index).join(', ')}`,
        );
      }
      const ep = eps[epIndex]!;
      if (frame >= ep.length)
        throw new UserError(
          `--frame ${frame}: episode ${episode} has ${ep.length} frames (0..${ep.length - 1})`,
        );
      const data = await openTrainingData(config, {
        imageSize: policy.imageSize,
        horizon: policy.horizon,
        normStats: policy.normStats,
        frameCache: frameCacheFromEnv(),
      });
      // The loader numbers its rows episode after episode, frame by frame.
      const firstSample: number[] = [];
      let at = 0;
      for (const e of eps) {
        firstSample.push(at);
        at += e.length;
      }
      const frameBatch = (i: number, f: number) =>
        data.batchOfRows([firstSample[i]! + Math.min(f, eps[i]!.length - 1)]);
      try {
        if (ablate !== null) {
          const n = Math.min(ablate, eps.length);
          console.log(
            `${n} episodes from ${episode}, frame ${frame}, ${seedsText(ablationSeeds(sampling.noiseScale))} each at noise scale ${sampling.noiseScale}: normalized MSE of the sampled chunk vs the recording`,
          );
          await ablation(
            policy,
            (i) => frameBatch((epIndex + i) % eps.length, frame),
            eps.length,
            n,
            sampling,
          );
          return;
        }
        const batch = frameBatch(epIndex, frame);
        const noise = new Rng(seed, 3).normals(policy.horizon * policy.dims.actionDim, sampling.noiseScale);
        const t0 = performance.now();
        const failures: Array<string | null> = [];
        const pred = await policy.sampleActions(
          {
            images: batch.images,
            imageMask: batch.imageMask,
            state: batch.state,
            prompts: batch.prompts,
            batchSize: 1,
            noise,
          },
          { ...sampling, failures },
        );
        const ms = performance.now() - t0;
        if (failures[0])
          throw new UserError(`episode ${episode} frame ${frame}: ${failures[0]}: no action chunk`);
        const ad = policy.actionDim;
        const mse = chunkError(pred, batch.actions, batch.actionPad, policy.horizon, ad);
        const n = (policy.horizon - batch.actionPad.reduce((a, v) => a + v, 0)) * ad;
        const mode = config.data.norm;
        const predRaw = unnormalize(pred.slice(), policy.normStats, 'actions', mode, ad);
        const recRaw = unnormalize(batch.actions.slice(), policy.normStats, 'actions', mode, ad);
        const rows: string[][] = [];
        const show = Math.min(policy.horizon, showSteps);
        for (let i = 0; i < show; i++) {
          const fmt = (a: Float32Array) =>
            Array.from(a.subarray(i * ad, (i + 1) * ad), (v) => v.toFixed(3)).join(' ');
          rows.push([String(i), fmt(predRaw), batch.actionPad[i] ? '(past the episode end)' : fmt(recRaw)]);
        }
        console.log(
          `episode ${episode} frame ${frame} · prompt ${JSON.stringify(batch.prompts[0])} · ${policy.horizon}-step chunk in ${ms.toFixed(1)} ms`,
        );
        if (rows.length > 0) console.log(table(['step', 'sampled', 'recorded'], rows));
        console.log(`normalized MSE vs the recording: ${mse.toFixed(4)} over ${n / ad} steps × ${ad} dims`);
      } finally {
        data.close();
        policy.dispose();
      }
    });
}

/** Two noise seeds average out the sampling; at noise scale 0 every seed gives the same chunk. */
const ablationSeeds = (noiseScale: number) => (noiseScale === 0 ? 1 : 2);
const seedsText = (n: number) => `${n} noise seed${n === 1 ? '' : 's'}`;

/**
 * Does the policy read its cameras and prompt? Over `n` episodes (`batchOf(i)`, one frame each, two
 * noise seeds, one at noise scale 0), the chunk error with the frame's own inputs, with the cameras of
 * the episode half the dataset away, and with another prompt of the dataset. Equal errors mean the
 * input is ignored.
 */
async function ablation(
  policy: PolicyModel,
  batchOf: (i: number) => Batch,
  episodes: number,
  n: number,
  sampling: { numSteps?: number; cache: boolean; noiseScale: number },
): Promise<void> {
  const { Rng } = await import('../model/rng.js');
  const prompts = [...new Set(Array.from({ length: episodes }, (_, i) => batchOf(i).prompts[0]!))];
  const sums = { own: 0, images: 0, prompt: 0 };
  let count = 0;
  for (let i = 0; i < n; i++) {
    const b = batchOf(i);
    const other = batchOf(i + Math.max(1, Math.floor(episodes / 2)));
    const otherPrompt = prompts.find((p) => p !== b.prompts[0]);
    for (let s = 0; s < ablationSeeds(sampling.noiseScale); s++) {
      const noise = new Rng(s, 3).normals(policy.horizon * policy.dims.actionDim, sampling.noiseScale);
      const err = async (images: Uint8Array, prompt: string) => {
        const pred = await policy.sampleActions(
          { images, imageMask: b.imageMask, state: b.state, prompts: [prompt], batchSize: 1, noise },
          sampling,
        );
        return chunkError(pred, b.actions, b.actionPad, policy.horizon, policy.actionDim);
      };
      sums.own += await err(b.images, b.prompts[0]!);
      sums.images += await err(other.images, b.prompts[0]!);
      sums.prompt += otherPrompt === undefined ? Number.NaN : await err(b.images, otherPrompt);
      count++;
    }
  }
  const f = (v: number) => (Number.isNaN(v) ? 'n/a (one prompt in the dataset)' : (v / count).toFixed(4));
  console.log(
    table(
      ['inputs', 'normalized MSE'],
      [
        ["the frame's own cameras and prompt", f(sums.own)],
        ["another episode's cameras", f(sums.images)],
        ['another prompt', f(sums.prompt)],
      ],
    ),
  );
  console.log(
    "equal errors mean the policy ignores that input (with the state, it may extrapolate the arm's own motion)",
  );
}

/** Mean squared error over the chunk steps inside the episode, in normalized units. */
function chunkError(
  pred: Float32Array,
  actions: Float32Array,
  pad: Uint8Array,
  horizon: number,
  dim: number,
): number {
  let se = 0;
  let n = 0;
  for (let i = 0; i < horizon; i++) {
    if (pad[i]) continue;
    for (let d = 0; d < dim; d++) se += (pred[i * dim + d]! - actions[i * dim + d]!) ** 2;
    n += dim;
  }
  return se / Math.max(1, n);
}

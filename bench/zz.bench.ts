import { describeBackend, setProductPrecision, setupBackend } from '../src/backend/index.js';
import { ModelConfig } from '../src/config/schema.js';
import { modelDims } from '../src/model/config.js';
import { NativeSampler, nativeSamplingWeights } from '../src/model/native-sampler.js';
import { initParams, Pi0, prepareInputs } from '../src/model/pi0.js';
import { Rng } from '../src/model/rng.js';

export async function run(): Promise<void> {
  const info = await setupBackend({ backend: 'wasm', native: true });
  console.log(describeBackend(info));
  const dims = modelDims(
    ModelConfig.parse({
      preset: 'small',
      width: 256,
      depth: 4,
      heads: 4,
      mlp_dim: 1024,
      expert_width: 128,
      expert_mlp_dim: 512,
      image_size: 96,
      patch_size: 12,
      vision_depth: 1,
      max_token_len: 20,
      action_horizon: 50,
      action_dim: 32,
    }),
  );
  const model = new Pi0(dims);
  const w = initParams(dims, 0);
  const sw = nativeSamplingWeights(model, w);
  const rng = new Rng(1);
  const inp = prepareInputs(dims, {
    batchSize: 1,
    cameras: 2,
    imageSize: 96,
    images: new Uint8Array(2 * 96 * 96 * 3).map(() => rng.nextU32() & 255),
    imageMask: Uint8Array.of(1, 1),
    state: rng.normals(14),
    stateDim: 14,
    prompts: ['pick up the red cub'],
  });
  const noise = rng.normals(dims.horizon * dims.actionDim);
  const res: Record<string, number[]> = {};
  for (let rep = 0; rep < Number(process.env.REPS ?? 3); rep++)
    for (const threads of [2, 1])
      for (const precision of ['fp32', 'bf16'] as const) {
        const name = `${precision} ${threads}t`;
        setProductPrecision(precision);
        const ns = await NativeSampler.create(dims, sw, { threads, cameras: 2, batch: 1, precision });
        const ts: number[] = [];
        for (let i = 0; i < 23; i++) {
          const t0 = performance.now();
          ns.sample(inp, noise, dims.numSteps, (t) => model.timeEmbedding(t));
          if (i > 1) ts.push(performance.now() - t0);
        }
        await ns.dispose();
        ts.sort((a, b) => a - b);
        (res[name] ??= []).push(ts[10]!);
      }
  setProductPrecision('fp32');
  for (const [k, v] of Object.entries(res)) console.log(k, v.map((x) => x.toFixed(2)).join(' '));
}

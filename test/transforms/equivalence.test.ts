/**
 * One transform pipeline: recorded frames sent to the served policy as a robot sends them give the model
 * exactly the inputs the training loader gives it for the same frames, and the served policy turns
 * training's normalized targets back into the recorded robot actions.
 */
import path from 'node:path';
import { pack, unpack } from '@vla-orchestrator/client';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { setupBackend } from '../../src/backend/index.js';
import { loadRobot } from '../../src/config/load.js';
import { TrainConfig } from '../../src/config/schema.js';
import { openTrainingData } from '../../src/data/loader.js';
import { computeNormStats } from '../../src/data/normstats.js';
import { createDataset } from '../../src/data/writer.js';
import { modelDims } from '../../src/model/config.js';
import { batchObservation, prepareInputs } from '../../src/model/pi0.js';
import { PolicyModel } from '../../src/model/policy.js';
import { parseObservation } from '../../src/protocol/observation.js';
import { ModelPolicy } from '../../src/serving/model-policy.js';
import { toOpenpiObservation } from '../../src/sim/policy-agent.js';
import { picture, tmpDir } from '../data/helpers.js';
import { untrainedCheckpoint } from '../model/trained.js';

/** ALOHA's openpi delta mask: the six joints of each arm as deltas, the grippers absolute. */
const ALOHA_JOINTS_DELTA = [...Array(6).fill(true), false, ...Array(6).fill(true), false];

const H = 6;
const LENGTHS = [7, 5];
const TASKS = ['pick up the cube', 'hand the cube over'];
const HEIGHT = 40;
const WIDTH = 56;

interface Case {
  robot: string;
  /** Cameras the recording has (the others are masked on both paths). */
  cameras: string[];
  data: Record<string, unknown>;
  state: (episode: number, frame: number) => Float32Array;
  action: (episode: number, frame: number) => Float32Array;
}

/** ALOHA-style rows: joints around zero, grippers (6, 13) within 0..1 as the robot reports them. */
const aloha = (shift: number) => (e: number, t: number) =>
  Float32Array.from({ length: 14 }, (_, d) =>
    d === 6 || d === 13
      ? 0.5 + 0.4 * Math.sin(e + t * 0.3 + d + shift)
      : Math.sin(e * 2 + t * 0.2 + d + shift),
  );
const droid = (shift: number) => (e: number, t: number) =>
  Float32Array.from({ length: 8 }, (_, d) => (d === 7 ? 0.5 : 0) + Math.cos(e + t * 0.25 + d * 0.7 + shift));

const CASES: Record<string, Case> = {
  'ALOHA, adapt_to_pi, delta actions, z-score': {
    robot: 'aloha',
    cameras: ['cam_high', 'cam_left_wrist'],
    data: {
      adapt_to_pi: true,
      delta_action_mask: ALOHA_JOINTS_DELTA,
      norm: 'zscore',
    },
    state: aloha(0),
    action: aloha(0.15),
  },
  'DROID, delta joints, quantile': {
    robot: 'droid',
    cameras: ['exterior_image_1_left', 'wrist_image_left'],
    data: { delta_action_mask: [true, true, true, true, true, true, true, false], norm: 'quantile' },
    state: droid(0),
    action: droid(0.2),
  },
};

type ModelInputs = ReturnType<typeof prepareInputs>;

const frameImage = (e: number, t: number, c: number) => picture(HEIGHT, WIDTH, e, t, c);

async function record(dir: string, c: Case): Promise<void> {
  const spec = loadRobot(c.robot);
  const w = await createDataset(dir, {
    fps: 10,
    robotType: c.robot,
    format: 'v2.1',
    // PNG frames: what the robot sent is what the loader decodes.
    video: false,
    features: {
      state: { names: spec.state.names },
      action: { names: spec.action.names },
      cameras: c.cameras.map((name) => ({ name, height: HEIGHT, width: WIDTH })),
    },
  });
  for (const [e, len] of LENGTHS.entries()) {
    for (let t = 0; t < len; t++) {
      w.addFrame({
        state: c.state(e, t),
        action: c.action(e, t),
        images: Object.fromEntries(c.cameras.map((name, ci) => [name, frameImage(e, t, ci)])),
        task: TASKS[e]!,
      });
    }
    await w.saveEpisode();
  }
  await w.finalize();
}

/** Dataset row → (episode, frame). */
function locate(row: number): [number, number] {
  let e = 0;
  while (row >= LENGTHS[e]!) row -= LENGTHS[e++]!;
  return [e, row];
}

/** Every episode's first and last frame and one between (the last ones' chunks run past the end). */
const ROWS = [0, 3, 6, 7, 9, 11];

beforeAll(async () => {
  await setupBackend({ backend: 'wasm' });
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('one transform pipeline for training and serving', () => {
  for (const [title, c] of Object.entries(CASES)) {
    it(`${title}: the served policy's model inputs are the loader's, and its actions invert the loader's targets`, async () => {
      const root = tmpDir('equiv');
      const dataset = path.join(root, 'ds');
      await record(dataset, c);
      const config = TrainConfig.parse({
        name: `equiv_${c.robot}`,
        robot: c.robot,
        model: { preset: 'tiny', action_horizon: H },
        data: { dataset, augment: null, ...c.data },
      });
      const dims = modelDims(config.model);
      const { stats } = await computeNormStats(config, { cwd: root });

      // Training: the loader's batch of these rows, as the trainer hands it to the model.
      const data = await openTrainingData(config, {
        imageSize: dims.imageSize,
        horizon: H,
        normStats: stats,
        frameCache: { dir: path.join(root, 'cache') },
        cwd: root,
      });
      const batch = data.batchOfRows(ROWS);
      data.close();
      const trained = prepareInputs(dims, batchObservation(batch));

      // Serving: the same frames as a robot sends them (openpi's observation map over msgpack),
      // through a checkpoint of this config served by ModelPolicy.
      const spec = loadRobot(c.robot);
      const ckpt = untrainedCheckpoint(path.join(root, 'run'), config, stats, 1, {
        cameras: batch.cameras,
        stateDim: batch.stateDim,
        actionDim: batch.actionDim,
      });
      const policy = await ModelPolicy.open(ckpt, {
        robot: c.robot,
        horizon: H,
        metadata: {},
        defaultPrompt: null,
        backend: 'wasm',
        seed: 0,
      });
      const requests = ROWS.map((row, session) => {
        const [e, t] = locate(row);
        const images = Object.fromEntries(c.cameras.map((name, ci) => [name, frameImage(e, t, ci)]));
        const sent = toOpenpiObservation(
          spec,
          { state: c.state(e, t), images, prompt: TASKS[e]! },
          WIDTH,
          HEIGHT,
        );
        return { obs: parseObservation(spec, unpack(pack(sent))), session };
      });
      // The model's part is left out: it records what it was given and answers with training's targets.
      let served: ModelInputs | null = null;
      vi.spyOn(PolicyModel.prototype, 'sampleActions').mockImplementation(async function (
        this: PolicyModel,
        input,
      ) {
        served = this.prepare(input);
        return batch.actions.slice();
      });
      const replies = await policy.inferBatch(requests);
      await policy.close();

      const s = served as ModelInputs | null;
      expect(s).not.toBeNull();
      if (!s) return;
      expect(Array.from(trained.imageMask)).toEqual(
        Array.from(ROWS, () => spec.cameras.map((cam) => (c.cameras.includes(cam.name) ? 1 : 0))).flat(),
      );
      expect([s.batch, s.cameras, s.imageSize, s.patchSize, s.promptLen]).toEqual([
        trained.batch,
        trained.cameras,
        trained.imageSize,
        trained.patchSize,
        trained.promptLen,
      ]);
      expect(Buffer.from(s.images).equals(Buffer.from(trained.images))).toBe(true);
      expect(Array.from(s.imageMask)).toEqual(Array.from(trained.imageMask));
      expect(Array.from(s.state)).toEqual(Array.from(trained.state));
      expect(Array.from(s.promptTokens)).toEqual(Array.from(trained.promptTokens));
      expect(Array.from(s.promptMask)).toEqual(Array.from(trained.promptMask));

      // The output side: training's targets, served back out, are the recorded actions (the last one
      // repeated past the episode's end, as the loader pads).
      const ad = batch.actionDim;
      for (const [i, row] of ROWS.entries()) {
        const [e, t] = locate(row);
        expect([replies[i]!.horizon, replies[i]!.actionDim]).toEqual([H, ad]);
        for (let k = 0; k < H; k++) {
          const recorded = c.action(e, Math.min(t + k, LENGTHS[e]! - 1));
          for (let d = 0; d < ad; d++) expect(replies[i]!.actions[k * ad + d]).toBeCloseTo(recorded[d]!, 4);
        }
      }
    }, 120_000);
  }
});

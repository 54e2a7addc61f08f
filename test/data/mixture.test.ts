import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dataSources } from '../../src/config/mixture.js';
import { TrainConfig } from '../../src/config/schema.js';
import { openTrainingData } from '../../src/data/loader.js';
import { computeNormStats } from '../../src/data/normstats.js';
import { LENGTHS, stateOf, tmpDir, workspace, writeSynthetic } from './helpers.js';

const FRAMES = LENGTHS.reduce((a, b) => a + b, 0);

describe('training on a mixture of datasets (data.mixture)', () => {
  let a: string;
  let b: string;
  let slow: string;
  beforeAll(async () => {
    a = tmpDir('mix-a');
    await writeSynthetic(a, 'v2.1', false);
    b = tmpDir('mix-b');
    await writeSynthetic(b, 'v3.0', false);
    slow = tmpDir('mix-fps');
    await writeSynthetic(slow, 'v2.1', false, 5);
  }, 60_000);

  const mixture = (entries: Array<Record<string, unknown>>) =>
    workspace(a, { dataset: null, mixture: entries });

  it('is a config error beside data.dataset; each entry is a source read through a config of its own', () => {
    const both = () => workspace(a, { mixture: [{ dataset: b }] });
    expect(both).toThrow(/expected data\.dataset or data\.mixture, got both/);
    expect(() => mixture([])).toThrow(/"mixture"[\s\S]*expected array to have >=1 items/);
    expect(() => mixture([{ dataset: a, weight: 0 }])).toThrow(/"weight"/);
    const { config } = mixture([{ dataset: a }, { dataset: b, weight: 3, prompt: 'stack the blocks' }]);
    const sources = dataSources(config);
    expect(sources.map((s) => [s.field, s.dataset, s.weight])).toEqual([
      ['data.mixture[0].dataset', a, 1],
      ['data.mixture[1].dataset', b, 3],
    ]);
    expect(sources[1]!.config.data).toMatchObject({
      dataset: b,
      mixture: null,
      default_prompt: 'stack the blocks',
      prompt_from_task: false,
    });
    expect(sources[0]!.config.data.prompt_from_task).toBe(true);
    expect(() => dataSources(TrainConfig.parse({ name: 'n', robot: 'aloha' }))).toThrow(
      'config n: data.dataset: expected a dataset folder (or a data.mixture), got null',
    );
  });

  it('draws batches by weight, deterministically per (seed, step); prompts per entry; norm stats over all', async () => {
    const { cwd, config } = mixture([
      { dataset: a, weight: 1 },
      { dataset: b, weight: 3, prompt: 'from b' },
    ]);
    const { stats, frames } = await computeNormStats(config, { cwd });
    expect(frames).toBe(2 * FRAMES);
    // Both datasets hold the same episodes: the mixture's state mean is each one's.
    const single = workspace(a);
    const one = await computeNormStats(single.config, { cwd: single.cwd });
    stats.state.mean.forEach((m, i) => expect(m).toBeCloseTo(one.stats.state.mean[i]!, 5));
    expect(stats.computedWith?.dataset).toBe(`${a} + ${b}`);

    const opts = {
      imageSize: 32,
      horizon: 5,
      normStats: stats,
      frameCache: { dir: tmpDir('mix-cache') },
      cwd,
    };
    const data = await openTrainingData(config, opts);
    expect([data.numFrames, data.numSamples]).toEqual([2 * FRAMES, 2 * FRAMES]);
    const batch = data.batchAt(3, 400, 11);
    const fromB = batch.prompts.filter((p) => p === 'from b').length;
    // Weight 3 of 4: ~300 of 400 (binomial sd ~8.7).
    expect(fromB).toBeGreaterThan(260);
    expect(fromB).toBeLessThan(340);
    expect(new Set(batch.prompts.filter((p) => p !== 'from b'))).toEqual(
      new Set(['pick up the cube', 'stack the blocks']),
    );
    // The same (seed, step) draws the same batch; another step another.
    const again = data.batchAt(3, 400, 11);
    expect(again.prompts).toEqual(batch.prompts);
    expect([...again.state]).toEqual([...batch.state]);
    expect([...data.batchAt(4, 400, 11).state]).not.toEqual([...batch.state]);
    // batchOfRows numbers rows source after source: row FRAMES is b's first frame, episode 0 frame 0.
    const first = data.batchOfRows([0, FRAMES]);
    expect(first.prompts).toEqual(['pick up the cube', 'from b']);
    // Each sample's dataset, for the loss per dataset (as the names number them).
    expect([...first.sources!]).toEqual([0, 1]);
    expect((data as { sourceNames?: string[] }).sourceNames).toEqual([a, b].map((d) => path.basename(d)));
    expect([...first.state.subarray(0, 3)]).toEqual([...first.state.subarray(3, 6)]);
    const raw = stateOf(0, 0);
    const z = (raw[0]! - stats.state.mean[0]!) / (stats.state.std[0]! + 1e-6);
    expect(first.state[0]).toBeCloseTo(z, 4);
    expect(() => data.batchOfRows([2 * FRAMES])).toThrow(
      `batchOfRows: rows[0]: expected an integer in 0..${2 * FRAMES - 1}, got ${2 * FRAMES}`,
    );
    data.close();
  });

  it("names the robot in one dataset's prompts where data.robot_in_prompt says so (a fine-tune of a multi-robot base)", async () => {
    const { cwd, config } = workspace(a, { robot_in_prompt: true });
    const { stats } = await computeNormStats(config, { cwd });
    const opts = {
      imageSize: 32,
      horizon: 5,
      normStats: stats,
      frameCache: { dir: tmpDir('mix-named') },
      cwd,
    };
    const data = await openTrainingData(config, opts);
    const batch = data.batchAt(0, 64, 1);
    expect(new Set(batch.prompts)).toEqual(
      new Set(['pick up the cube', 'stack the blocks'].map((p) => `${config.robot}: ${p}`)),
    );
    // One dataset: no loss per dataset to log, so no sources.
    expect(batch.sources).toBeUndefined();
    data.close();
    // Left out, one robot's prompts stay as recorded.
    const plain = workspace(a);
    const same = await openTrainingData(plain.config, { ...opts, cwd: plain.cwd });
    expect(new Set(same.batchAt(0, 64, 1).prompts)).toEqual(
      new Set(['pick up the cube', 'stack the blocks']),
    );
    same.close();
  });

  it('refuses datasets that disagree on fps, naming the entry, the dataset and the field', async () => {
    const { cwd, config } = mixture([{ dataset: a }, { dataset: slow }]);
    await expect(computeNormStats(config, { cwd })).rejects.toThrow(
      `config test_cfg: data.mixture[1].dataset (${slow}): fps 5, expected 10 as data.mixture[0].dataset (${a})`,
    );
  });
});

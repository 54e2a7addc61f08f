import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { computeNormStats, normStatsFile } from '../../src/data/normstats.js';
import { readNormStats } from '../../src/transforms/normalize.js';
import { actionOf, LENGTHS, runData, stateOf, tmpDir, workspace, writeSynthetic } from './helpers.js';

/** The textbook definitions, written independently of the code under test. */
function reference(rows: number[][]) {
  const dim = rows[0]!.length;
  const out = { mean: [] as number[], std: [] as number[], q01: [] as number[], q99: [] as number[] };
  for (let d = 0; d < dim; d++) {
    const col = rows.map((r) => Math.fround(r[d]!)).sort((a, b) => a - b);
    const mean = col.reduce((a, b) => a + b, 0) / col.length;
    out.mean.push(mean);
    out.std.push(Math.sqrt(col.reduce((a, b) => a + (b - mean) ** 2, 0) / col.length));
    for (const [q, key] of [
      [0.01, 'q01'],
      [0.99, 'q99'],
    ] as const) {
      const pos = (col.length - 1) * q;
      const lo = Math.floor(pos);
      out[key].push(col[lo]! + (col[Math.min(lo + 1, col.length - 1)]! - col[lo]!) * (pos - lo));
    }
  }
  return out;
}

function expectClose(actual: number[] | undefined, expected: number[]) {
  expect(actual).toHaveLength(expected.length);
  for (const [i, e] of expected.entries())
    expect(Math.abs(actual![i]! - e)).toBeLessThan(1e-5 * Math.max(1, Math.abs(e)));
}

describe('norm stats', () => {
  let dataset: string;
  beforeAll(async () => {
    dataset = tmpDir('stats');
    await writeSynthetic(dataset, 'v2.1', false);
  }, 30_000);

  it('match an independent reference, with delta actions over padded chunks', async () => {
    const H = 5;
    const mask = [true, false];
    const { cwd, config } = workspace(dataset, { delta_action_mask: mask }, { action_horizon: H });
    const states: number[][] = [];
    const chunks: number[][] = [];
    const rawChunks: number[][] = [];
    for (const [e, len] of LENGTHS.entries()) {
      for (let t = 0; t < len; t++) {
        const s = Array.from(stateOf(e, t));
        states.push(s);
        for (let k = 0; k < H; k++) {
          const a = Array.from(actionOf(e, Math.min(t + k, len - 1)));
          chunks.push(a.map((v, d) => (mask[d] ? Math.fround(v) - Math.fround(s[d]!) : v)));
          rawChunks.push(a);
        }
      }
    }
    const progress: number[] = [];
    const { stats, frames, actionRows } = await computeNormStats(config, {
      cwd,
      onProgress: (d) => progress.push(d),
    });
    expect(frames).toBe(36);
    expect(actionRows).toBe(36 * H);
    expect(progress).toEqual([12, 21, 36]);
    const refState = reference(states);
    const refActions = reference(chunks);
    for (const k of ['mean', 'std', 'q01', 'q99'] as const) {
      expectClose(stats.state[k], refState[k]);
      expectClose(stats.actions[k], refActions[k]);
    }
    // The mask took effect: the delta dim's stats differ from the raw action's, the other dim's do not.
    const raw = reference(rawChunks);
    expect(Math.abs(stats.actions.mean[0]! - raw.mean[0]!)).toBeGreaterThan(0.1);
    expectClose(stats.actions.mean.slice(1), raw.mean.slice(1));
  });

  it('--max-frames subsamples evenly across episodes', async () => {
    const { cwd, config } = workspace(dataset);
    const { frames } = await computeNormStats(config, { cwd, maxFrames: 10 });
    expect(frames).toBe(10);
  });

  it('vla data stats writes assets/<asset_id>/norm_stats.json', async () => {
    const { cwd, config } = workspace(dataset, { delta_action_mask: [true, false] });
    const out = await runData(['stats', 'test_cfg', '--max-frames', '20'], cwd);
    expect(out).toMatch(/20 frames/);
    const file = normStatsFile(config, cwd);
    expect(file).toBe(path.join(cwd, 'assets/test_asset/norm_stats.json'));
    const stats = readNormStats(file);
    expect(stats.state.mean).toHaveLength(3);
    expect(stats.actions.q99).toHaveLength(2);
  });

  it('refuses a dataset whose dims do not match the robot', async () => {
    const { cwd, config } = workspace(dataset);
    const bad = {
      ...config,
      model: { ...config.model },
      data: { ...config.data, delta_action_mask: [true, true, true] },
    };
    await expect(computeNormStats(bad, { cwd })).rejects.toThrow(
      /delta_action_mask: expected at most 2 entries/,
    );
    const empty = tmpDir('nodata');
    await expect(
      computeNormStats({ ...config, data: { ...config.data, dataset: empty } }, { cwd }),
    ).rejects.toThrow(/not a LeRobot dataset \(no meta\/info\.json\)/);
  });
});

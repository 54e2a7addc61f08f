import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/load.js';
import { findNormStats } from '../../src/train/run.js';
import {
  checkNormStatsProvenance,
  type NormStats,
  normalize,
  normStatsHorizonNote,
  normStatsProvenance,
  readNormStats,
  statsMisfit,
  unnormalize,
  writeNormStats,
} from '../../src/transforms/normalize.js';

const stats: NormStats = {
  state: { mean: [1, -2], std: [2, 0.5], q01: [0, -3], q99: [2, -1] },
  actions: { mean: [0, 0], std: [1, 1], q01: [-1, -1], q99: [1, 1] },
};

describe('normalization (openpi formulas)', () => {
  it('z-score: (x - mean) / (std + 1e-6), per dim over rows', () => {
    const x = normalize(Float32Array.from([3, -1, 1, -2]), stats, 'state', 'zscore', 2);
    expect(x[0]).toBeCloseTo(2 / (2 + 1e-6), 6);
    expect(x[1]).toBeCloseTo(1 / (0.5 + 1e-6), 6);
    expect(x[2]).toBeCloseTo(0, 6);
    expect(x[3]).toBeCloseTo(0, 6);
  });

  it('quantile: (x - q01) / (q99 - q01 + 1e-6) * 2 - 1 maps q01 to -1 and q99 to 1', () => {
    const x = normalize(Float32Array.from([0, -3, 2, -1]), stats, 'state', 'quantile', 2);
    expect(Array.from(x).map((v) => Number(v.toFixed(5)))).toEqual([-1, -1, 1, 1]);
  });

  it('unnormalize inverts normalize in both modes', () => {
    for (const mode of ['zscore', 'quantile'] as const) {
      const orig = Float32Array.from([0.3, -2.5, 1.7, -1.2]);
      const back = unnormalize(normalize(orig.slice(), stats, 'state', mode, 2), stats, 'state', mode, 2);
      for (let i = 0; i < orig.length; i++) expect(back[i]).toBeCloseTo(orig[i]!, 5);
    }
  });

  it('refuses stats too short for the data, naming key and field', () => {
    expect(() => normalize(new Float32Array(3), stats, 'state', 'zscore', 3)).toThrow(
      'norm_stats.state.mean: expected 3 numbers (zscore normalization), got 2',
    );
  });

  it('reads and writes norm_stats.json in openpi layout, atomically', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vla-norm-'));
    const file = path.join(dir, 'assets', 'aloha', 'norm_stats.json');
    writeNormStats(file, stats);
    expect(readNormStats(file)).toEqual(stats);
    writeFileSync(file, '{"state": {}}');
    expect(() => readNormStats(file)).toThrow(/expected \{"norm_stats"/);
  });

  it("data.assets_dir reads a base checkpoint's norm stats instead of the workspace's", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vla-norm-'));
    const mine = { ...stats, state: { ...stats.state, mean: [5, 5] } };
    writeNormStats(path.join(dir, 'assets', 'sim_pick_place1000', 'norm_stats.json'), mine);
    writeNormStats(path.join(dir, 'base', 'assets', 'sim_pick_place1000', 'norm_stats.json'), stats);
    const { config: own } = resolveConfig('pi0_sim_pick_place');
    expect((findNormStats(own, dir) as NormStats).state.mean).toEqual([5, 5]);
    const { config: fromBase } = resolveConfig('pi0_sim_pick_place', ['data.assets_dir=base/assets']);
    expect((findNormStats(fromBase, dir) as NormStats).state.mean).toEqual([1, -2]);
    const { config: missing } = resolveConfig('pi0_sim_pick_place', ['data.assets_dir=nowhere']);
    expect(() => findNormStats(missing, dir)).toThrow(
      "no norm stats for pi0_sim_pick_place: data.assets_dir nowhere has no nowhere/sim_pick_place1000/norm_stats.json; expected the base checkpoint's assets folder",
    );
  });

  it('keeps the transforms the stats were computed with beside norm_stats, and refuses other ones', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vla-norm-'));
    const file = path.join(dir, 'norm_stats.json');
    const { config } = resolveConfig('pi0_sim_pick_place', ['data.delta_action_mask=null']);
    writeNormStats(file, { ...stats, computedWith: normStatsProvenance(config) });
    const doc = JSON.parse(readFileSync(file, 'utf8'));
    // openpi reads norm_stats' keys as features: only state and actions may be there.
    expect(Object.keys(doc.norm_stats)).toEqual(['state', 'actions']);
    expect(doc.computed_with.delta_action_mask).toBeNull();
    const back = readNormStats(file);
    expect(() => checkNormStatsProvenance(config, back, file)).not.toThrow();
    const { config: delta } = resolveConfig('pi0_sim_pick_place', [
      'data.delta_action_mask=[true,true,true,true,true,true,true,false]',
    ]);
    expect(() => checkNormStatsProvenance(delta, back, file)).toThrow(/data\.delta_action_mask null/);
    expect(() => checkNormStatsProvenance(delta, back, file)).toThrow(
      /delta_action_mask null, config pi0_sim_pick_place has \[true,true,true,true,true,true,true,false\].*vla data stats pi0_sim_pick_place/,
    );
    // openpi's files carry no provenance and are taken as they are.
    expect(() => checkNormStatsProvenance(delta, stats, file)).not.toThrow();
  });

  it('says when delta-action stats were computed for another chunk length than the config trains', () => {
    const { config } = resolveConfig('pi0_sim_pick_place');
    const withH = (h: number): NormStats => ({
      ...stats,
      computedWith: { ...normStatsProvenance(config), action_horizon: h },
    });
    expect(normStatsHorizonNote(config, withH(config.model.action_horizon), 'f.json')).toBeNull();
    const { config: longer } = resolveConfig('pi0_sim_pick_place', ['model.action_horizon=32']);
    expect(normStatsHorizonNote(longer, withH(16), 'f.json')).toBe(
      'f.json: norm stats were computed for 16-step delta-action chunks, config pi0_sim_pick_place trains 32-step ones; run `vla data stats pi0_sim_pick_place` for stats of its own chunks',
    );
    // Absolute actions do not depend on the chunk; openpi's files say nothing.
    const { config: absolute } = resolveConfig('pi0_sim_pick_place', [
      'model.action_horizon=32',
      'data.delta_action_mask=null',
    ]);
    expect(normStatsHorizonNote(absolute, withH(16), 'f.json')).toBeNull();
    expect(normStatsHorizonNote(longer, stats, 'f.json')).toBeNull();
    // A robot whose own chunk is shorter than the model's (a mixture's arm): its stats and its chunk are
    // both its own steps, and that is what `vla data stats` records.
    const { config: own } = resolveConfig('pi0_sim_pick_place', [
      'model.action_horizon=50',
      'data.action_horizon=16',
    ]);
    expect(normStatsProvenance(own).action_horizon).toBe(16);
    expect(normStatsHorizonNote(own, withH(16), 'f.json')).toBeNull();
    expect(normStatsHorizonNote(own, withH(50), 'f.json')).toMatch(
      /computed for 50-step .* trains 16-step ones/,
    );
  });
});

describe("statsMisfit: a base's stats against the data they would normalize", () => {
  const entry = (mean: number[], std: number[]) => ({
    mean,
    std,
    q01: mean.map((m, i) => m - 2 * std[i]!),
    q99: mean.map((m, i) => m + 2 * std[i]!),
  });
  const stats = (a: number[], s: number[]) => ({ state: entry([0, 0], [1, 1]), actions: entry(a, s) });
  const base = stats([0, 1], [0.5, 0.2]);

  it('is null where the data lies within the stats, in either mode', () => {
    for (const mode of ['zscore', 'quantile'] as const) {
      expect(statsMisfit(base, stats([0.5, 1.2], [1, 0.3]), mode)).toBeNull();
    }
  });

  it('names the dim whose spread or centre lies furthest outside, and by how much', () => {
    expect(statsMisfit(base, stats([0, 1], [0.5, 4]), 'zscore')).toBe(
      "actions[1]: the data's std 4.00, mean 1.000; the stats' std 0.200, mean 1.000 (20× their spread)",
    );
    expect(statsMisfit(base, stats([0, 4], [0.5, 0.2]), 'zscore')).toBe(
      "actions[1]: the data's std 0.200, mean 4.000; the stats' std 0.200, mean 1.000 (15× their spread)",
    );
    expect(statsMisfit(base, stats([0, 1], [0.5, 4]), 'quantile')).toMatch(
      /^actions\[1\]: the data's q01\.\.q99 range 16\.0, q01 -7\.000; the stats' q01\.\.q99 range 0\.800, q01 0\.600 \(20× their spread\)$/,
    );
  });
});

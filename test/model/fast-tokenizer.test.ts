import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/config/errors.js';
import {
  dct,
  FastTokenizer,
  type FastTokenizerSpec,
  idct,
  readFastTokenizer,
  trainFastTokenizer,
  writeFastTokenizer,
} from '../../src/model/fast-tokenizer.js';
import { Rng } from '../../src/model/rng.js';

const H = 50;
const D = 14;

/**
 * Normalised-looking chunks (within about ±1): per dim an offset and three slow sines (at most 1.5 cycles
 * over the chunk), plus a little noise.
 */
function smoothChunks(count: number, seed: number, h = H, d = D): Float32Array[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => {
    const x = new Float32Array(h * d);
    for (let j = 0; j < d; j++) {
      const offset = rng.uniform() - 0.5;
      const waves = Array.from({ length: 3 }, () => ({
        freq: rng.uniform() * 1.5,
        amp: 0.05 + 0.15 * rng.uniform(),
        phase: rng.uniform() * 2 * Math.PI,
      }));
      for (let t = 0; t < h; t++) {
        let v = offset + rng.normal() * 0.005;
        for (const w of waves) v += w.amp * Math.sin((2 * Math.PI * w.freq * t) / h + w.phase);
        x[t * d + j] = v;
      }
    }
    return x;
  });
}

/** BPE the slow way: count every adjacent pair afresh, merge the most frequent (smallest ids on ties). */
function naiveBpe(sequences: number[][], alphabet: number, vocabSize: number): Array<[number, number]> {
  const seqs = sequences.map((s) => s.slice());
  const merges: Array<[number, number]> = [];
  while (alphabet + merges.length < vocabSize) {
    const counts = new Map<string, number>();
    for (const s of seqs) {
      for (let i = 0; i + 1 < s.length; i++) {
        const k = `${s[i]},${s[i + 1]}`;
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
    }
    let best: [number, number] | null = null;
    let bestCount = 1;
    for (const [k, c] of counts) {
      const [a, b] = k.split(',').map(Number) as [number, number];
      if (c > bestCount || (c === bestCount && best && (a < best[0] || (a === best[0] && b < best[1])))) {
        best = [a, b];
        bestCount = c;
      }
    }
    if (!best) break;
    merges.push(best);
    for (const [i, s] of seqs.entries()) seqs[i] = mergeAll(s, best, alphabet + merges.length - 1);
  }
  return merges;
}

function mergeAll(s: number[], [a, b]: [number, number], z: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === a && s[i + 1] === b) {
      out.push(z);
      i++;
    } else {
      out.push(s[i]!);
    }
  }
  return out;
}

function naiveApply(symbols: number[], merges: Array<[number, number]>, alphabet: number): number[] {
  let s = symbols;
  for (const [r, m] of merges.entries()) s = mergeAll(s, m, alphabet + r);
  return s;
}

describe('DCT', () => {
  it('dct and idct invert each other', () => {
    const rng = new Rng(1);
    for (const [h, d] of [
      [1, 1],
      [7, 3],
      [50, 14],
    ] as const) {
      const x = rng.normals(h * d);
      const back = idct(dct(x, h, d), h, d);
      for (let i = 0; i < x.length; i++) expect(Math.abs(back[i]! - x[i]!)).toBeLessThan(1e-5);
      const c = rng.normals(h * d);
      const again = dct(idct(c, h, d), h, d);
      for (let i = 0; i < c.length; i++) expect(Math.abs(again[i]! - c[i]!)).toBeLessThan(1e-5);
    }
  });

  it('puts a constant entirely in k = 0, scaled by √h (orthonormal), and keeps the energy', () => {
    const h = 8;
    const d = 2;
    const x = new Float32Array(h * d);
    for (let t = 0; t < h; t++) {
      x[t * d] = 3;
      x[t * d + 1] = -1;
    }
    const c = dct(x, h, d);
    expect(c[0]).toBeCloseTo(3 * Math.sqrt(h), 5);
    expect(c[1]).toBeCloseTo(-Math.sqrt(h), 5);
    for (let i = d; i < c.length; i++) expect(Math.abs(c[i]!)).toBeLessThan(1e-5);
    const y = new Rng(2).normals(h * d);
    const energy = (v: Float32Array) => v.reduce((s, e) => s + e * e, 0);
    expect(energy(dct(y, h, d))).toBeCloseTo(energy(y), 4);
  });

  it('refuses a chunk of the wrong size, naming both sizes', () => {
    expect(() => dct(new Float32Array(10), 4, 3)).toThrow(/expected 12 values \(4 steps × 3 dims\), got 10/);
  });
});

describe('FAST tokenizer', () => {
  const train = smoothChunks(300, 7);
  const held = smoothChunks(50, 8);
  const tokenizer = trainFastTokenizer(train, { horizon: H, actionDim: D, scale: 10, vocabSize: 256 });

  it('learns merges exactly as BPE over the quantised coefficients does', () => {
    // Constant chunks of 0 and of 1 over 4 steps: coefficients [0, 0, 0, 0] and [2, 0, 0, 0] at scale 1.
    const chunks = [new Float32Array(4), new Float32Array(4).fill(1)];
    const t = trainFastTokenizer(chunks, { horizon: 4, actionDim: 1, scale: 1, vocabSize: 10 });
    expect(t.spec.minValue).toBe(0);
    expect(t.spec.maxValue).toBe(2);
    // (0, 0) occurs 5 times; after merging it into token 3 every pair occurs once, so training stops.
    expect(t.spec.merges).toEqual([[0, 0]]);
    expect(t.vocabSize).toBe(4);
    expect(t.spec.vocabSize).toBe(10);
    expect(Array.from(t.encode(chunks[0]!))).toEqual([3, 3]);
    expect(Array.from(t.encode(chunks[1]!))).toEqual([2, 3, 0]);
    // Runs merge left to right, as in training: [0, 0, 0] is (0 0) 0.
    const three = new FastTokenizer({ ...t.spec, horizon: 3 });
    expect(Array.from(three.encode(new Float32Array(3)))).toEqual([3, 0]);
  });

  it('learns the same merges as a plain BPE that recounts every pair after each merge', () => {
    const chunks = smoothChunks(30, 11, 12, 3);
    const opts = { horizon: 12, actionDim: 3, scale: 30, vocabSize: 400 };
    const t = trainFastTokenizer(chunks, opts);
    const sequences = chunks.map((c) =>
      Array.from(dct(c, 12, 3), (v) => Math.round(v * opts.scale) - t.spec.minValue),
    );
    const alphabet = t.spec.maxValue - t.spec.minValue + 1;
    const expected = naiveBpe(sequences, alphabet, opts.vocabSize);
    expect(expected.length).toBeGreaterThan(20);
    expect(t.spec.merges).toEqual(expected);
    // Encoding by merge rank segments the training chunks as training did.
    const encoded = naiveApply(sequences[0]!, expected, alphabet);
    expect(Array.from(t.encode(chunks[0]!))).toEqual(encoded);
  });

  it('round-trips smooth chunks within the quantisation bound, compressing them', () => {
    // Rounding moves each DCT coefficient by at most 0.5/scale; the inverse DCT is orthonormal, so per
    // dim ‖x̂ − x‖₂ = ‖ε‖₂ ≤ 0.5·√H/scale (Parseval): the RMS error is at most 0.5/scale and no single
    // value is off by more than 0.5·√H/scale (≈ 0.354 at H = 50, scale 10). Float32 adds ~1e-6.
    const bound = (0.5 * Math.sqrt(H)) / 10 + 1e-5;
    let tokens = 0;
    let maxError = 0;
    let maxRms = 0;
    for (const chunk of held) {
      const { tokens: ids, clamped } = tokenizer.encodeCounted(chunk);
      expect(clamped).toBe(0);
      tokens += ids.length;
      const out = tokenizer.decode(ids);
      if (!out.ok) throw new Error(out.reason);
      for (let j = 0; j < D; j++) {
        let sq = 0;
        for (let t = 0; t < H; t++) {
          const e = out.actions[t * D + j]! - chunk[t * D + j]!;
          maxError = Math.max(maxError, Math.abs(e));
          sq += e * e;
        }
        maxRms = Math.max(maxRms, Math.sqrt(sq / H));
      }
    }
    expect(maxError).toBeLessThanOrEqual(bound);
    expect(maxRms).toBeLessThanOrEqual(0.5 / 10 + 1e-5);
    expect(maxError).toBeGreaterThan(0);
    expect(tokens / held.length).toBeLessThan((H * D) / 4);
    expect(tokenizer.vocabSize).toBe(256);
    expect(tokenizer.spec.merges.length).toBe(256 - (tokenizer.spec.maxValue - tokenizer.spec.minValue + 1));
  });

  it('reports its own round trip on the training chunks', () => {
    const report = tokenizer.spec.report!;
    expect(report.chunks).toBe(train.length);
    expect(report.clamped).toBe(0);
    expect(report.maxAbsError).toHaveLength(D);
    expect(report.range).toHaveLength(D);
    for (const e of report.maxAbsError) expect(e).toBeLessThanOrEqual((0.5 * Math.sqrt(H)) / 10 + 1e-5);
    expect(report.maxErrorOfRange).toBeCloseTo(
      Math.max(...report.maxAbsError.map((e, j) => e / report.range[j]!)),
    );
    expect(report.tokensPerChunk.mean).toBeLessThan(H * D);
    expect(report.tokensPerChunk.max).toBeGreaterThanOrEqual(report.tokensPerChunk.p50);
    expect(report.tokensPerChunk.p50).toBeGreaterThan(0);
  });

  it('trains deterministically', () => {
    const again = trainFastTokenizer(smoothChunks(300, 7), {
      horizon: H,
      actionDim: D,
      scale: 10,
      vocabSize: 256,
    });
    expect(again.spec.merges).toEqual(tokenizer.spec.merges);
    expect(again.spec.minValue).toBe(tokenizer.spec.minValue);
    expect(again.spec.maxValue).toBe(tokenizer.spec.maxValue);
  });

  it('clamps coefficients outside the trained range and counts them', () => {
    const wild = held[0]!.map((v) => v * 20);
    const { tokens, clamped } = tokenizer.encodeCounted(wild);
    expect(clamped).toBeGreaterThan(0);
    expect(tokenizer.decode(tokens).ok).toBe(true);
    expect(tokenizer.roundTrip([wild]).clamped).toBe(clamped);
  });

  it('fails to decode, with a reason, a truncated list or an unknown id, never throwing', () => {
    const ids = Array.from(tokenizer.encode(held[0]!));
    const cut = tokenizer.decode(ids.slice(0, -1));
    expect(cut.ok).toBe(false);
    if (!cut.ok)
      expect(cut.reason).toMatch(/^decoded \d+ values, expected 700 values \(50 steps × 14 dims\)$/);
    for (const bad of [256, -1, 1.5, Number.NaN]) {
      const out = tokenizer.decode([...ids.slice(0, 2), bad, ...ids.slice(3)]);
      expect(out.ok).toBe(false);
      if (!out.ok) {
        expect(out.reason).toContain(`token 2 is ${bad}, outside the vocabulary 0..255`);
        expect(out.reason).toContain('expected 700 values');
      }
    }
    expect(tokenizer.decode([]).ok).toBe(false);
  });

  it('with padShort, a chunk that ends early is its low-pass version; one too long is still refused', () => {
    const ids = Array.from(tokenizer.encode(held[0]!));
    const full = tokenizer.decode(ids);
    const cut = tokenizer.decode(ids.slice(0, -3), { padShort: true });
    if (!full.ok || !cut.ok) throw new Error('expected both to decode');
    expect(full.padded).toBe(0);
    expect(cut.padded).toBeGreaterThan(0);
    // The missing values are the highest frequencies: the chunk moves by no more than they carried.
    let moved = 0;
    for (let i = 0; i < 700; i++) moved = Math.max(moved, Math.abs(cut.actions[i]! - full.actions[i]!));
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThan(0.5);
    const long = tokenizer.decode([...ids, ids[0]!], { padShort: true });
    expect(long.ok).toBe(false);
    if (!long.ok) expect(long.reason).toMatch(/^decoded \d+ values, expected 700 values/);
  });

  it('refuses chunks of the wrong size or with non-finite values, and a vocabulary below the alphabet', () => {
    expect(() => tokenizer.encode(new Float32Array(10))).toThrow(
      /expected an action chunk of 700 values \(50 steps × 14 dims\), got 10 values/,
    );
    const nan = held[0]!.slice();
    nan[3 * D + 5] = Number.NaN;
    expect(() => tokenizer.encode(nan)).toThrow(/step 3, dim 5: expected a finite number, got NaN/);
    expect(() =>
      trainFastTokenizer(train, { horizon: H, actionDim: D, scale: 1000, vocabSize: 256 }),
    ).toThrow(
      /vocabSize: expected at least \d+, the alphabet of quantised DCT coefficients from -\d+ to \d+ at scale 1000, got 256/,
    );
    expect(() => trainFastTokenizer(train, { horizon: 32, actionDim: D, scale: 10, vocabSize: 256 })).toThrow(
      /chunk 0: expected 448 values \(32 steps × 14 dims\), got 700/,
    );
  });
});

describe('fast_tokenizer.json', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fast-tokenizer-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const tokenizer = trainFastTokenizer(smoothChunks(40, 3, 10, 2), {
    horizon: 10,
    actionDim: 2,
    scale: 30,
    vocabSize: 200,
  });

  it('writes and reads back the same tokenizer', () => {
    const file = path.join(dir, 'sub', 'fast_tokenizer.json');
    writeFastTokenizer(file, tokenizer);
    const back = readFastTokenizer(file);
    expect(back.toJSON()).toEqual(tokenizer.toJSON());
    expect(back.spec.merges.length).toBeGreaterThan(0);
    const chunk = smoothChunks(1, 99, 10, 2)[0]!;
    expect(Array.from(back.encode(chunk))).toEqual(Array.from(tokenizer.encode(chunk)));
    expect(JSON.parse(readFileSync(file, 'utf8')).format).toBe('vla-fast-tokenizer/1');
  });

  const corrupt = (name: string, edit: (spec: Record<string, unknown>) => void, message: RegExp) => {
    it(`names the field when ${name}`, () => {
      const spec = tokenizer.toJSON() as unknown as Record<string, unknown>;
      edit(spec);
      const file = path.join(dir, `${name.replace(/\W+/g, '-')}.json`);
      writeFileSync(file, JSON.stringify(spec));
      expect(() => readFastTokenizer(file)).toThrow(UserError);
      expect(() => readFastTokenizer(file)).toThrow(message);
    });
  };
  corrupt(
    'a field is missing',
    (s) => delete s['scale'],
    /: scale: expected a positive number, got nothing \(missing\)/,
  );
  corrupt(
    'a field has the wrong type',
    (s) => (s['horizon'] = '10'),
    /: horizon: expected a positive integer, got "10" \(string\)/,
  );
  corrupt(
    'the format is unknown',
    (s) => (s['format'] = 'fast/0'),
    /: format: expected "vla-fast-tokenizer\/1"/,
  );
  corrupt(
    'a merge refers to an unknown id',
    (s) => {
      const merges = s['merges'] as Array<[number, number]>;
      merges[1] = [0, 10_000];
    },
    /: merges\[1\]: expected a pair of token ids below \d+ .*, got \[0,10000\] \(array of 2\)/,
  );
  corrupt(
    'a merge refers to a later merge',
    (s) => {
      const alphabet = (s['maxValue'] as number) - (s['minValue'] as number) + 1;
      (s['merges'] as Array<[number, number]>)[0] = [alphabet, 0];
    },
    /merges\[0\]: expected a pair of token ids below/,
  );
  corrupt(
    'merges is not a list',
    (s) => (s['merges'] = {}),
    /: merges: expected a list of \[left, right\] token id pairs/,
  );

  it('names the file when it is not JSON', () => {
    const file = path.join(dir, 'broken.json');
    writeFileSync(file, '{"format": ');
    expect(() => readFastTokenizer(file)).toThrow(
      new RegExp(`${file.replace(/[\\/.]/g, '\\$&')}: cannot read`),
    );
    expect(() => readFastTokenizer(path.join(dir, 'missing.json'))).toThrow(/missing\.json: cannot read/);
  });

  it('the constructor validates a spec given in code too', () => {
    const spec: FastTokenizerSpec = { ...tokenizer.toJSON(), vocabSize: 3 };
    expect(() => new FastTokenizer(spec)).toThrow(
      /FAST tokenizer spec: vocabSize: expected at least the alphabet/,
    );
  });
});

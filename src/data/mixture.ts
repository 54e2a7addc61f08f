/**
 * Training on a mixture of datasets (`data.mixture`): each sample of a batch picks a source by the
 * entries' weights, then a row of that source, both from a hash of (seed, step, position), so a batch
 * depends on (seed, step, batch size) alone, as a one-dataset loader's does, and a resumed run draws
 * exactly what an uninterrupted one would. Rows are drawn with replacement (a weight is a share of the
 * batch, not a number of passes over a dataset); each source keeps its own oversampling of early frames.
 */
import { type Batch, checkBatchRequest } from '../transforms/batch.js';

/** What the mixture needs of each source (data/loader.ts's Loader). */
export interface MixtureSource {
  readonly numSamples: number;
  readonly numFrames: number;
  readonly cameras: string[];
  readonly stateDim: number;
  readonly actionDim: number;
  readonly imageSize: number;
  readonly horizon: number;
  readonly present: boolean[];
  /** The row an epoch position at fraction `u` ∈ [0, 1) draws. */
  drawnRow(u: number): number;
  batchOfRows(rows: ArrayLike<number>): Batch;
  close(): void;
}

/** A uniform number in [0, 1) from four integers (splitmix32-style mixing: no state, any order). */
function unit(seed: number, step: number, position: number, salt: number): number {
  let z = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(step + 1, 0xc2b2ae35);
  z =
    Math.imul(z ^ (z >>> 15) ^ Math.imul(position + 1, 0x27d4eb2d), 0x165667b1) ^
    Math.imul(salt + 1, 0x5bd1e995);
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
}

export class MixtureData {
  readonly numSamples: number;
  readonly numFrames: number;
  readonly cameras: string[];
  readonly stateDim: number;
  readonly actionDim: number;
  readonly imageSize: number;
  readonly horizon: number;
  /** Where each source's rows start in the mixture's numbering (source after source). */
  private readonly firstRow: number[] = [];
  /** Cumulative weights, normalised to end at 1. */
  private readonly cumulative: number[] = [];

  constructor(
    private readonly sources: MixtureSource[],
    weights: number[],
  ) {
    const s0 = sources[0]!;
    for (const [i, s] of sources.entries()) {
      const same =
        s.cameras.join() === s0.cameras.join() &&
        s.stateDim === s0.stateDim &&
        s.actionDim === s0.actionDim &&
        s.imageSize === s0.imageSize &&
        s.horizon === s0.horizon;
      if (!same)
        throw new Error(
          `mixture source ${i}: expected the layout of source 0 (cameras ${s0.cameras.join(',')}, state ${s0.stateDim}, action ${s0.actionDim}), got cameras ${s.cameras.join(',')}, state ${s.stateDim}, action ${s.actionDim}`,
        );
    }
    const total = weights.reduce((a, b) => a + b, 0);
    let acc = 0;
    let rows = 0;
    for (const [i, s] of sources.entries()) {
      acc += weights[i]! / total;
      this.cumulative.push(acc);
      this.firstRow.push(rows);
      rows += s.numFrames;
    }
    this.cumulative[this.cumulative.length - 1] = 1;
    this.numFrames = rows;
    this.numSamples = sources.reduce((n, s) => n + s.numSamples, 0);
    this.cameras = s0.cameras;
    this.stateDim = s0.stateDim;
    this.actionDim = s0.actionDim;
    this.imageSize = s0.imageSize;
    this.horizon = s0.horizon;
  }

  /** A camera counts as present where any source has it (a source without it feeds masked images). */
  get present(): boolean[] {
    return this.cameras.map((_, c) => this.sources.some((s) => s.present[c]));
  }

  /** Which source, by weight, position `b` of step `step`'s batch draws from. */
  sourceAt(seed: number, step: number, b: number): number {
    const u = unit(seed, step, b, 0);
    const i = this.cumulative.findIndex((c) => u < c);
    return i < 0 ? this.cumulative.length - 1 : i;
  }

  batchAt(step: number, batchSize: number, seed: number): Batch {
    checkBatchRequest(step, batchSize);
    const rows = new Uint32Array(batchSize);
    for (let b = 0; b < batchSize; b++) {
      const s = this.sourceAt(seed, step, b);
      rows[b] = this.firstRow[s]! + this.sources[s]!.drawnRow(unit(seed, step, b, 1));
    }
    return this.batchOfRows(rows);
  }

  /** The batch of these rows (numbered source after source, each source's as its own loader numbers them). */
  batchOfRows(rows: ArrayLike<number>): Batch {
    const B = rows.length;
    for (let b = 0; b < B; b++) {
      const r = rows[b]!;
      if (!Number.isInteger(r) || r < 0 || r >= this.numFrames)
        throw new Error(`batchOfRows: rows[${b}]: expected an integer in 0..${this.numFrames - 1}, got ${r}`);
    }
    const bySource = this.sources.map(() => ({ rows: [] as number[], at: [] as number[] }));
    for (let b = 0; b < B; b++) {
      const r = rows[b]!;
      let s = this.firstRow.length - 1;
      while (s > 0 && r < this.firstRow[s]!) s--;
      bySource[s]!.rows.push(r - this.firstRow[s]!);
      bySource[s]!.at.push(b);
    }
    const { cameras, imageSize: S, horizon: H, stateDim: sd, actionDim: ad } = this;
    const img = cameras.length * S * S * 3;
    const out: Batch = {
      size: B,
      imageSize: S,
      cameras,
      images: new Uint8Array(B * img),
      imageMask: new Uint8Array(B * cameras.length),
      state: new Float32Array(B * sd),
      stateDim: sd,
      actions: new Float32Array(B * H * ad),
      actionDim: ad,
      horizon: H,
      actionPad: new Uint8Array(B * H),
      prompts: new Array<string>(B),
    };
    // Each sample's slice of every array, copied from its source's batch to its position.
    const copy = <T extends Uint8Array | Float32Array>(to: T, from: T, per: number, i: number, b: number) =>
      to.set(from.subarray(i * per, (i + 1) * per), b * per);
    for (const [s, { rows: sub, at }] of bySource.entries()) {
      if (sub.length === 0) continue;
      const part = this.sources[s]!.batchOfRows(sub);
      at.forEach((b, i) => {
        copy(out.images, part.images, img, i, b);
        copy(out.imageMask, part.imageMask, cameras.length, i, b);
        copy(out.state, part.state, sd, i, b);
        copy(out.actions, part.actions, H * ad, i, b);
        copy(out.actionPad, part.actionPad, H, i, b);
        out.prompts[b] = part.prompts[i]!;
      });
    }
    return out;
  }

  close(): void {
    for (const s of this.sources) s.close();
  }
}

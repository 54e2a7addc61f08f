/**
 * Training on a mixture of datasets (`data.mixture`): each sample of a batch picks a source by the
 * entries' weights, then a row of that source, both from a hash of (seed, step, position), so a batch
 * depends on (seed, step, batch size) alone, as a one-dataset loader's does, and a resumed run draws
 * exactly what an uninterrupted one would. Rows are drawn with replacement (a weight is a share of the
 * batch, not a number of passes over a dataset); each source keeps its own oversampling of early frames.
 *
 * Sources of different robots share one layout, as π0 feeds every robot to one model: camera slots by
 * position (each robot's first camera in slot 0, …, as many slots as the robot with the most; a robot's
 * missing slots are masked), state and actions zero-padded to the widest robot's dims (the batch says
 * each sample's own action dims, which the loss keeps to), and each prompt names its robot.
 */
import { robotPrompt } from '../config/mixture.js';
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
    /** Each source's robot, for a mixture of robots (prompts name them); null for one robot. */
    private readonly robots: string[] | null = null,
    /** Each source's name (its dataset's), for the loss per dataset: batches say each sample's source. */
    readonly sourceNames: string[] = sources.map((_, i) => `source ${i}`),
  ) {
    if (sourceNames.length !== sources.length || sources.length > 255)
      throw new Error(
        `mixture: expected a name for each of 1..255 sources, got ${sourceNames.length} names for ${sources.length}`,
      );
    const s0 = sources[0]!;
    for (const [i, s] of sources.entries()) {
      if (s.imageSize !== s0.imageSize || s.horizon !== s0.horizon)
        throw new Error(
          `mixture source ${i}: expected images ${s0.imageSize} and horizon ${s0.horizon} as source 0, got ${s.imageSize} and ${s.horizon}`,
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
    // Slot i is every source's camera i: named by the distinct names it holds (`cam_high|exterior`).
    const slots = Math.max(...sources.map((s) => s.cameras.length));
    this.cameras = Array.from({ length: slots }, (_, i) =>
      [...new Set(sources.flatMap((s) => (i < s.cameras.length ? [s.cameras[i]!] : [])))].join('|'),
    );
    this.stateDim = Math.max(...sources.map((s) => s.stateDim));
    this.actionDim = Math.max(...sources.map((s) => s.actionDim));
    this.imageSize = s0.imageSize;
    this.horizon = s0.horizon;
  }

  /** A camera counts as present where any source has it (a source without it feeds masked images). */
  get present(): boolean[] {
    return this.cameras.map((_, c) => this.sources.some((s) => s.present[c] ?? false));
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
    const img = S * S * 3;
    const slots = cameras.length;
    const widths = new Set(this.sources.map((s) => s.actionDim));
    const out: Batch = {
      size: B,
      imageSize: S,
      cameras,
      images: new Uint8Array(B * slots * img),
      imageMask: new Uint8Array(B * slots),
      state: new Float32Array(B * sd),
      stateDim: sd,
      actions: new Float32Array(B * H * ad),
      actionDim: ad,
      horizon: H,
      actionPad: new Uint8Array(B * H),
      prompts: new Array<string>(B),
      ...(widths.size > 1 && { actionDims: new Int32Array(B) }),

      // Which dataset each sample came from, where there are several: the loss is then logged per dataset.
      ...(this.sources.length > 1 && { sources: new Uint8Array(B) }),
    };
    // Each sample's slices, copied from its source's batch to its position, padded to the mixture's layout.
    for (const [s, { rows: sub, at }] of bySource.entries()) {
      if (sub.length === 0) continue;
      const src = this.sources[s]!;
      const part = src.batchOfRows(sub);
      const [c, psd, pad] = [src.cameras.length, src.stateDim, src.actionDim];
      at.forEach((b, i) => {
        out.images.set(part.images.subarray(i * c * img, (i + 1) * c * img), b * slots * img);
        out.imageMask.set(part.imageMask.subarray(i * c, (i + 1) * c), b * slots);
        out.state.set(part.state.subarray(i * psd, (i + 1) * psd), b * sd);
        for (let h = 0; h < H; h++) {
          const from = (i * H + h) * pad;
          out.actions.set(part.actions.subarray(from, from + pad), (b * H + h) * ad);
        }
        out.actionPad.set(part.actionPad.subarray(i * H, (i + 1) * H), b * H);
        out.prompts[b] = this.robots ? robotPrompt(this.robots[s]!, part.prompts[i]!) : part.prompts[i]!;
        if (out.actionDims) out.actionDims[b] = pad;
        // Each sample's chunk steps, where a robot's are fewer than the model's.
        if (part.horizons) {
          out.horizons ??= new Int32Array(B).fill(H);
          out.horizons[b] = part.horizons[i]!;
        }
        if (out.sources) out.sources[b] = s;
      });
    }
    return out;
  }

  close(): void {
    for (const s of this.sources) s.close();
  }
}

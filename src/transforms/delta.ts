/**
 * openpi's DeltaActions / AbsoluteActions: the masked action dims as offsets from the frame's state (in
 * the robot adapter's space, before normalisation), every step of the chunk against the same state.
 */
import type { Floats, Frames, Transform } from './frames.js';

/**
 * `mask[d]`: whether action dim d travels as a delta; null where none does. Each frame's offsets span
 * all action dims, −0 where unmasked (x + (−0) is x for every x, −0 included), so the chunk is walked
 * densely.
 */
export function deltaActions(mask: boolean[]): Transform | null {
  if (!mask.includes(true)) return null;
  const offsets = (f: Frames, sign: 1 | -1): Float64Array => {
    const { size, stateDim: sd, actionDim: ad, state } = f;
    const out = new Float64Array(size * ad).fill(-0);
    for (let b = 0; b < size; b++) {
      for (let d = 0; d < ad; d++) if (mask[d]) out[b * ad + d] = sign * state[b * sd + d]!;
    }
    return out;
  };
  const shift = (f: Frames, actions: Floats, offset: Float64Array) => {
    const { size, horizon: h, actionDim: ad } = f;
    for (let b = 0; b < size; b++) {
      const base = b * ad;
      for (let o = b * h * ad, end = o + h * ad; o < end; o += ad) {
        for (let d = 0; d < ad; d++) actions[o + d]! += offset[base + d]!;
      }
    }
  };
  return {
    name: 'delta actions',
    input: (f) => {
      if (f.actions) shift(f, f.actions, offsets(f, -1));
    },
    output: (f) => shift(f, f.actions!, offsets(f, 1)),
  };
}

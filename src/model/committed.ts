/**
 * Training-time real-time chunking (Black et al., December 2025) in numbers: a chunk's first d steps
 * are the actions the robot has committed to, given clean at flow time 0, held by the sampler and left
 * out of the loss. Shared by training (pi0.ts), TensorFlow.js's sampler and the native one.
 */

/** A committed prefix of each chunk, for a model trained with training-time real-time chunking. */
export interface Committed {
  /** [B, H, A] in the model's numbers: each sample's first `delays[i]` steps are used. */
  actions: Float32Array;
  /** [B] committed steps per sample. */
  delays: Int32Array;
}

/** The noise with each sample's committed steps replaced by the committed actions. */
export function withCommitted(noise: Float32Array, c: Committed, horizon: number, ad: number): Float32Array {
  const out = noise.slice();
  for (let i = 0; i < c.delays.length; i++) {
    const n = Math.min(horizon, c.delays[i]!) * ad;
    out.set(c.actions.subarray(i * horizon * ad, i * horizon * ad + n), i * horizon * ad);
  }
  return out;
}

/** [B·H]: 0 for committed steps, 1 for the steps the flow integrates. */
export function freeSteps(delays: Int32Array, horizon: number): Float32Array {
  const out = new Float32Array(delays.length * horizon).fill(1);
  for (let i = 0; i < delays.length; i++)
    out.fill(0, i * horizon, i * horizon + Math.min(horizon, delays[i]!));
  return out;
}

/** Per action token [B·H]: time 0 for each sample's first `delays[i]` steps (committed), its own time after. */
export function committedTimes(t: Float32Array, delays: Int32Array, horizon: number): Float32Array {
  const out = new Float32Array(t.length * horizon);
  for (let i = 0; i < t.length; i++)
    out.fill(t[i]!, i * horizon + Math.min(horizon, delays[i]!), (i + 1) * horizon);
  return out;
}

/** The chunk padding with each sample's committed steps marked too (the loss leaves them out). */
export function committedPad(pad: Uint8Array, delays: Int32Array, horizon: number): Uint8Array {
  const out = pad.slice();
  for (let i = 0; i < delays.length; i++)
    out.fill(1, i * horizon, i * horizon + Math.min(horizon, delays[i]!));
  return out;
}

/** Refuses a committed prefix of the wrong size or with delays outside 0..H, naming what differs. */
export function checkCommitted(c: Committed, batch: number, horizon: number, ad: number): void {
  if (c.actions.length !== batch * horizon * ad)
    throw new Error(
      `committed actions: expected ${batch}×${horizon}×${ad} = ${batch * horizon * ad} values, got ${c.actions.length}`,
    );
  if (c.delays.length !== batch)
    throw new Error(`committed delays: expected ${batch} (one per sample), got ${c.delays.length}`);
  for (const d of c.delays)
    if (!(d >= 0 && d <= horizon))
      throw new Error(`committed delays: expected steps in 0..${horizon}, got ${d}`);
}

import { UserError } from '../config/errors.js';

/**
 * A training batch as the loader produces it and the model consumes it: flat typed arrays in C order,
 * so the model turns each into a tensor without a per-element walk.
 *
 * Images are already resized with padding to the model's square resolution. State and actions are
 * normalized with the config's norm stats (and delta-converted where the config says), in the robot's
 * own dims; the model pads them to its `action_dim`.
 */
export interface Batch {
  /** B */
  size: number;
  /** S: images are S×S. */
  imageSize: number;
  /** Camera names in the order of the images' second axis. */
  cameras: string[];
  /** uint8 [B, cameras, S, S, 3] (HWC per image). */
  images: Uint8Array;
  /** [B, cameras]: 1 where the camera is present, 0 where it is missing (a masked image). */
  imageMask: Uint8Array;
  /** float32 [B, stateDim]. */
  state: Float32Array;
  stateDim: number;
  /** float32 [B, H, actionDim]: the action chunk from the observation's frame on. */
  actions: Float32Array;
  actionDim: number;
  /** H */
  horizon: number;
  /** [B, H]: 1 where the chunk runs past the episode's end (LeRobot's `action_is_pad`). */
  actionPad: Uint8Array;
  /**
   * [B]: each sample's chunk steps where its robot's (`data.action_horizon`) are fewer than H: the model
   * hides its action tokens past them (and `actionPad` marks them); absent where every sample has H.
   */
  horizons?: Int32Array;
  /** The language prompt of each sample (the episode's task, or the config's default prompt). */
  prompts: string[];
  /**
   * [B]: each sample's own robot's action dims, where a mixture of robots pads them to `actionDim`
   * (the flow loss leaves each sample's padding out); absent where every sample has `actionDim`.
   */
  actionDims?: Int32Array;
  /**
   * [B]: which of a mixture's datasets each sample was drawn from (the index into its `sourceNames`),
   * for the loss per dataset; absent for one dataset.
   */
  sources?: Uint8Array;
}

/** batchAt's arguments, refused with the argument, what it expects and what it got. */
export function checkBatchRequest(step: number, batchSize: number): void {
  if (!Number.isInteger(step) || step < 0)
    throw new UserError(`batchAt: step: expected an integer >= 0, got ${step}`);
  if (!Number.isInteger(batchSize) || batchSize <= 0)
    throw new UserError(`batchAt: batchSize: expected a positive integer, got ${batchSize}`);
}

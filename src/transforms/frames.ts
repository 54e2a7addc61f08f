/**
 * What the transforms work on: a batch of frames in flat typed arrays, C order (openpi's data dict,
 * batched). The robot side (`state`, `actions`) holds the robot's numbers, in π0's conventions once the
 * robot adapter has run; the model side (`modelState`, `modelActions`, `images`) holds what the model
 * reads and writes. Normalisation crosses between the two, one way on input and back on output.
 */

/** Float32 where the numbers travel; float64 where training keeps a chunk until it is normalized. */
export type Floats = Float32Array | Float64Array;

/**
 * Writes camera `camera` of frame `frame` as a letterboxed S×S HWC image into `out` at `offset`, or
 * returns false where that camera is missing (it becomes a masked black image).
 */
export type CameraSource = (frame: number, camera: number, out: Uint8Array, offset: number) => boolean;

export interface Frames {
  /** B */
  size: number;
  stateDim: number;
  actionDim: number;
  /** H: actions per frame (1 for an episode's own action rows). */
  horizon: number;
  /** float32 [B, stateDim]. Never normalized in place: absolute actions add it back to the deltas. */
  state: Float32Array;
  /**
   * [B, H, actionDim]: recorded actions on the way in (null when serving), the robot's actions on the
   * way out. Training holds its chunks in float64 so that delta and normalisation round once.
   */
  actions: Floats | null;
  /** float32 [B, stateDim]: the normalized state the model reads. */
  modelState: Float32Array | null;
  /** float32 [B, H, actionDim]: normalized actions (training's targets; the model's output when serving). */
  modelActions: Float32Array | null;
  cameraSource: CameraSource | null;
  /** uint8 [B, cameras, S, S, 3] */
  images: Uint8Array | null;
  /** [B, cameras]: 1 where the camera is present. */
  imageMask: Uint8Array | null;
  /** One per frame. */
  prompts: string[];
}

/** Frames with the model side still to be written. */
export function frames(
  init: Pick<Frames, 'size' | 'stateDim' | 'actionDim' | 'horizon' | 'state'> & Partial<Frames>,
): Frames {
  return {
    actions: null,
    modelState: null,
    modelActions: null,
    cameraSource: null,
    images: null,
    imageMask: null,
    prompts: [],
    ...init,
  };
}

/** One transform: what it does on the way into the model, and, where it has one, its inverse on the way out. */
export interface Transform {
  readonly name: string;
  input(f: Frames): void;
  output?(f: Frames): void;
}

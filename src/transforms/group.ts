/**
 * A config's transforms, composed in one place and run by the training loader, the norm stats and the
 * served policy alike (openpi's `transforms.Group`): the input transforms in order, and on the way out
 * each one's inverse in reverse order, so a transform added here reaches training and serving both.
 * Tokenising the prompt and padding to the model's dims stay with the model (model/pi0.ts
 * `prepareInputs`), which both sides call.
 */
import { UserError } from '../config/errors.js';
import type { TrainConfig } from '../config/schema.js';
import { alohaAdapter } from './aloha.js';
import { cameraImages } from './cameras.js';
import { deltaActions } from './delta.js';
import type { Frames, Transform } from './frames.js';
import { type NormStats, normalization } from './normalize.js';

export interface TransformGroup {
  /**
   * Row by row, needing no chunk (the robot adapter): training runs them over whole episodes before
   * cutting chunks, serving over each request.
   */
  perFrame: Transform[];
  /** On action chunks, against their frame's state (delta actions); norm stats are computed after these. */
  perChunk: Transform[];
  /** Into the model's numbers (normalisation, camera images); empty when composed without the model side. */
  model: Transform[];
}

/** The robot's dims as the model sees them. */
export interface RobotDims {
  stateDim: number;
  actionDim: number;
}

/** What the model side needs: the stats to normalize with and the model's image layout. */
export interface ModelSide {
  normStats: NormStats;
  cameras: number;
  imageSize: number;
}

/** The delta mask of `config` over `dims.actionDim` action dims, checked against the dims. */
function deltaMask(config: TrainConfig, { stateDim, actionDim }: RobotDims): boolean[] {
  const mask = config.data.delta_action_mask ?? [];
  if (mask.length > actionDim) {
    throw new UserError(
      `config ${config.name}: data.delta_action_mask: expected at most ${actionDim} entries (action dims), got ${mask.length}`,
    );
  }
  if (mask.some((m, d) => m && d >= stateDim)) {
    throw new UserError(
      `config ${config.name}: data.delta_action_mask: delta dims must exist in the state (${stateDim} dims)`,
    );
  }
  return Array.from({ length: actionDim }, (_, d) => mask[d] ?? false);
}

/** The config's transforms for a robot of `dims`; the model side only where `model` is given. */
export function transformGroup(config: TrainConfig, dims: RobotDims, model?: ModelSide): TransformGroup {
  const delta = deltaActions(deltaMask(config, dims));
  return {
    perFrame: config.data.adapt_to_pi ? [alohaAdapter] : [],
    perChunk: delta ? [delta] : [],
    model: model
      ? [
          normalization(model.normStats, config.data.norm, dims.stateDim, dims.actionDim),
          cameraImages(model.cameras, model.imageSize),
        ]
      : [],
  };
}

/** Every input transform, in order. */
export const inputTransforms = (g: TransformGroup): Transform[] => [...g.perFrame, ...g.perChunk, ...g.model];

export function applyInputs(steps: Transform[], f: Frames): Frames {
  for (const t of steps) t.input(f);
  return f;
}

/** The output transforms: the inverses of the inputs, last first (unnormalize, absolute actions, adapter back). */
export function applyOutputs(g: TransformGroup, f: Frames): Frames {
  const steps = inputTransforms(g);
  for (let i = steps.length - 1; i >= 0; i--) steps[i]!.output?.(f);
  return f;
}

import type { RunTrainingOptions, RunTrainingResult } from '../train/run.js';

export type { RunTrainingOptions, RunTrainingResult, TrainProgress } from '../train/run.js';

export type RunTraining = (opts: RunTrainingOptions) => Promise<RunTrainingResult>;

/**
 * The trainer, loaded when a job starts rather than imported at the top, so listing, showing or
 * plotting jobs never pays for loading TensorFlow.js and the model.
 */
export async function loadTrainer(): Promise<RunTraining> {
  return (await import('../train/run.js')).runTraining;
}

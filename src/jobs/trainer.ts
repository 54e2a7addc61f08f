import type { TrainConfig } from '../config/schema.js';

/*
 * The trainer's interface (src/train/run.ts), as agreed with its author. It is loaded when a job
 * starts rather than imported at the top, so listing or plotting jobs never pays for TensorFlow.js.
 */

export interface TrainProgress {
  step: number;
  totalSteps: number;
  loss: number;
  gradNorm: number;
  lr: number;
  samplesPerSec: number;
}

export interface RunTrainingOptions {
  config: TrainConfig;
  /** checkpoints/<config>/<exp>: step folders <step>/ and metrics.jsonl. */
  runDir: string;
  /** Continue from the newest complete checkpoint in runDir. */
  resume: boolean;
  /** On abort the trainer saves a checkpoint at the current step and returns stopped: true. */
  signal?: AbortSignal;
  onProgress?: (p: TrainProgress) => void;
  log?: (line: string) => void;
}

export interface RunTrainingResult {
  step: number;
  stopped: boolean;
  checkpoint: string | null;
  loss: number;
}

export type RunTraining = (opts: RunTrainingOptions) => Promise<RunTrainingResult>;

export async function loadTrainer(): Promise<RunTraining> {
  const specifier = '../train/run.js';
  const mod = (await import(specifier)) as { runTraining: RunTraining };
  return mod.runTraining;
}

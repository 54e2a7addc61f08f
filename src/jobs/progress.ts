import type { TrainProgress } from './trainer.js';

/** `3h07m`, `4m12s`, `9s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Four significant digits, in exponent form when small: losses and learning rates both read well. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(2);
  return Number(v.toPrecision(4)).toString();
}

export interface ProgressLine {
  step: number;
  totalSteps: number;
  loss: number;
  lr: number;
  samplesPerSec: number;
  etaSeconds: number;
}

export function progressText(p: ProgressLine, barWidth = 24): string {
  const frac = p.totalSteps > 0 ? Math.min(1, p.step / p.totalSteps) : 0;
  const filled = Math.round(frac * barWidth);
  const bar = barWidth > 0 ? `[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}] ` : '';
  return (
    `step ${p.step}/${p.totalSteps} ${bar}${(frac * 100).toFixed(0)}%` +
    ` loss ${formatNumber(p.loss)} lr ${formatNumber(p.lr)}` +
    ` ${p.samplesPerSec.toFixed(1)} samples/s ETA ${formatDuration(p.etaSeconds)}`
  );
}

export interface ProgressSummary {
  firstStep: number;
  lastStep: number;
  totalSteps: number;
  firstLoss: number | null;
  lastLoss: number | null;
  minLoss: number | null;
  meanSamplesPerSec: number | null;
  seconds: number;
}

/**
 * Follows a run's progress: ETA from the measured time per step (an exponential average, so a slow
 * first step or a checkpoint save does not dominate), and the figures for the summary at the end.
 */
export class ProgressTracker {
  private readonly t0 = performance.now();
  private lastTime: number | null = null;
  private lastStep: number | null = null;
  private secPerStep: number | null = null;
  private firstStep: number | null = null;
  private firstLoss: number | null = null;
  private lastLoss: number | null = null;
  private minLoss: number | null = null;
  private samplesSum = 0;
  private samplesCount = 0;
  private totalSteps = 0;
  private step = 0;

  update(p: TrainProgress, now = performance.now()): ProgressLine {
    if (this.lastTime !== null && this.lastStep !== null && p.step > this.lastStep) {
      const per = (now - this.lastTime) / 1000 / (p.step - this.lastStep);
      this.secPerStep = this.secPerStep === null ? per : 0.9 * this.secPerStep + 0.1 * per;
    }
    this.lastTime = now;
    this.lastStep = p.step;
    this.firstStep ??= p.step - 1;
    this.firstLoss ??= p.loss;
    this.lastLoss = p.loss;
    if (Number.isFinite(p.loss))
      this.minLoss = this.minLoss === null ? p.loss : Math.min(this.minLoss, p.loss);
    if (Number.isFinite(p.samplesPerSec) && p.samplesPerSec > 0) {
      this.samplesSum += p.samplesPerSec;
      this.samplesCount++;
    }
    this.totalSteps = p.totalSteps;
    this.step = p.step;
    const remaining = Math.max(0, p.totalSteps - p.step);
    return {
      step: p.step,
      totalSteps: p.totalSteps,
      loss: p.loss,
      lr: p.lr,
      samplesPerSec: p.samplesPerSec,
      etaSeconds: this.secPerStep === null ? Number.NaN : remaining * this.secPerStep,
    };
  }

  summary(): ProgressSummary {
    return {
      firstStep: this.firstStep ?? this.step,
      lastStep: this.step,
      totalSteps: this.totalSteps,
      firstLoss: this.firstLoss,
      lastLoss: this.lastLoss,
      minLoss: this.minLoss,
      meanSamplesPerSec: this.samplesCount > 0 ? this.samplesSum / this.samplesCount : null,
      seconds: (performance.now() - this.t0) / 1000,
    };
  }
}

export function summaryText(s: ProgressSummary): string[] {
  const steps = s.lastStep - s.firstStep;
  const from = s.firstStep > 0 ? ` (resumed at step ${s.firstStep})` : '';
  const lines = [
    `${steps} steps in ${formatDuration(s.seconds)}, now at ${s.lastStep}/${s.totalSteps}${from}`,
  ];
  if (s.lastLoss !== null) {
    lines.push(
      `loss ${formatNumber(s.lastLoss)} (first ${formatNumber(s.firstLoss!)}, min ${formatNumber(s.minLoss ?? Number.NaN)})` +
        (s.meanSamplesPerSec !== null ? `, ${s.meanSamplesPerSec.toFixed(1)} samples/s on average` : ''),
    );
  }
  return lines;
}

import { UserError } from '../config/errors.js';
import { MAX_NOISE_SCALE } from '../config/noise-scale.js';

/** An integer flag: undefined when not given, else an integer >= min or a clear error naming the flag. */
export function intOption(flag: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new UserError(`--${flag}: expected an integer >= ${min}, got "${value}"`);
  return n;
}

/** A number flag: undefined when not given, else a finite number >= min or a clear error naming the flag. */
export function numberOption(flag: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = value.trim() === '' ? Number.NaN : Number(value);
  if (!Number.isFinite(n) || n < min)
    throw new UserError(`--${flag}: expected a number >= ${min}, got "${value}"`);
  return n;
}

/** `--noise-scale`: the flow's initial noise scale (undefined: the checkpoint's `model.noise_scale`). */
export function noiseScaleOption(value: string | undefined): number | undefined {
  const s = numberOption('noise-scale', value, 0);
  if (s !== undefined && s > MAX_NOISE_SCALE)
    throw new UserError(`--noise-scale: expected a number from 0 to ${MAX_NOISE_SCALE}, got "${value}"`);
  return s;
}

export const NOISE_SCALE_HELP =
  "scale of the flow's initial noise: 1 samples as trained, 0 gives one deterministic chunk per observation (default: the checkpoint's model.noise_scale)";

/** Commander option collector for repeatable flags (`--set a=1 --set b=2`). */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** A plain aligned text table; numbers right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = header.map(
    (_, i) => rows.length > 0 && rows.every((r) => /^[-+]?[\d.,]+(\s?\S+)?$/.test(r[i] ?? '')),
  );
  const fmt = (cells: string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}

/** A one-line progress bar on a terminal (stderr); plain lines when stderr is not a terminal. */
export function progressBar(label: string, total: number): (done: number, note?: string) => void {
  const tty = process.stderr.isTTY;
  return (done, note = '') => {
    const width = 24;
    const filled = total > 0 ? Math.round((width * Math.min(done, total)) / total) : width;
    const line =
      `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${note}`.trimEnd();
    if (tty) process.stderr.write(`\r\x1b[K${line}${done >= total ? '\n' : ''}`);
    else console.error(line);
  };
}

/**
 * A run's metrics.jsonl held as columns, one curve per logged field, parsed with the jobs layer's own
 * rules (parseMetrics). A running job appends a line a step: what was appended since the last read is
 * parsed, not the whole file again, so watching a 100,000-step run costs what its new lines cost. A
 * file that shrank or was replaced, or whose steps go back (a run resumed from a checkpoint logs its
 * later steps again), is read whole, the later lines replacing the earlier as `vla jobs plot` does.
 */
import { statSync } from 'node:fs';
import { parseMetrics } from '../jobs/metrics.js';
import { latestRun, type MetricsRow } from '../plot/plot.js';
import { bound, type Curve, minMaxDownsample } from './downsample.js';
import { readBytes } from './file-bytes.js';

export interface RunMetrics {
  file: string;
  /** Steps logged (lines of one step, such as training and evaluation, count once). */
  rows: number;
  firstStep: number | null;
  lastStep: number | null;
  /** Field → its values by step, steps ascending. */
  curves: Map<string, Curve>;
}

interface Entry extends RunMetrics {
  ino: number;
  size: number;
  mtimeMs: number;
  /** Bytes parsed up to the end of the last whole line, and the lines they hold. */
  offset: number;
  lines: number;
}

const NEWLINE = 0x0a;
const CHUNK_BYTES = 512 * 1024;

function emptyRun(file: string): Entry {
  return {
    file,
    rows: 0,
    firstStep: null,
    lastStep: null,
    curves: new Map(),
    ino: 0,
    size: 0,
    mtimeMs: 0,
    offset: 0,
    lines: 0,
  };
}

/** Adds rows in step order (a row of the step last added merges into it); false when a step goes back. */
function append(run: Entry, rows: MetricsRow[]): boolean {
  for (const row of rows) {
    const step = row.step;
    if (run.lastStep !== null && step < run.lastStep) return false;
    if (run.lastStep === null || step > run.lastStep) {
      run.rows++;
      run.lastStep = step;
      run.firstStep ??= step;
    }
    for (const key in row) {
      // The line's wall time places it, it is not a curve of its own.
      if (key === 'step' || key === 'time') continue;
      let curve = run.curves.get(key);
      if (!curve) {
        curve = { x: [], y: [] };
        run.curves.set(key, curve);
      }
      const last = curve.x.length - 1;
      if (last >= 0 && curve.x[last] === step) curve.y[last] = row[key]!;
      else {
        curve.x.push(step);
        curve.y.push(row[key]!);
      }
    }
  }
  return true;
}

export class RunMetricsCache {
  private readonly runs = new Map<string, Entry>();

  /** Runs kept parsed at once (the least recently read dropped first). */
  constructor(private readonly capacity = 16) {}

  /** The run's metrics as the file stands now; an empty run when there is no file yet. */
  read(file: string): RunMetrics {
    let stat: ReturnType<typeof statSync>;
    try {
      stat = statSync(file);
    } catch {
      this.runs.delete(file);
      return emptyRun(file);
    }
    let run = this.runs.get(file);
    this.runs.delete(file);
    const same = run && run.ino === stat.ino && stat.size >= run.offset;
    if (!run || !same) run = emptyRun(file);
    if (run.size !== stat.size || run.mtimeMs !== stat.mtimeMs) {
      if (!this.readTo(run, stat.size)) {
        // Steps went back: read it all, as the runs plot reads it.
        run = emptyRun(file);
        this.readOn(run, stat.size, true);
      }
      run.ino = stat.ino;
      run.size = stat.size;
      run.mtimeMs = stat.mtimeMs;
    }
    this.runs.set(file, run);
    while (this.runs.size > this.capacity) this.runs.delete(this.runs.keys().next().value!);
    return run;
  }

  /** Reads on to `size` a few megabytes at a time, so a long run's first read holds little at once. */
  private readTo(run: Entry, size: number): boolean {
    while (run.offset + CHUNK_BYTES < size) {
      const before = run.offset;
      if (!this.readOn(run, run.offset + CHUNK_BYTES)) return false;
      // A line longer than a chunk: the rest in one read.
      if (run.offset === before) break;
    }
    return this.readOn(run, size);
  }

  /**
   * Parses the file from the run's offset to `size`. The line after the last newline (being written,
   * or the end of a file without one) is parsed too but not passed: read again next time, its step
   * merges into itself. False when the new rows go back in steps.
   */
  private readOn(run: Entry, size: number, latest = false): boolean {
    const bytes = readBytes(run.file, run.offset, size);
    const whole = bytes.lastIndexOf(NEWLINE) + 1;
    let rows = parseMetrics(bytes.toString('utf8'), run.file, run.lines + 1);
    if (latest) rows = latestRun(rows);
    if (!append(run, rows)) return false;
    run.offset += whole;
    for (let i = 0; i < whole; i++) if (bytes[i] === NEWLINE) run.lines++;
    return true;
  }
}

/** The named curves of a run (all when `keys` is null), each cut to at most `points` inside [from, to]. */
export function runCurves(
  run: RunMetrics,
  keys: string[] | null,
  points: number,
  from?: number,
  to?: number,
): Record<string, Curve> {
  const out: Record<string, Curve> = {};
  for (const [k, c] of run.curves) {
    if (keys && !keys.includes(k)) continue;
    out[k] = minMaxDownsample(c.x, c.y, points, from, to);
  }
  return out;
}

/** Every point logged after `step`, per curve (for a live update). */
export function pointsAfter(run: RunMetrics, step: number): Record<string, Curve> {
  const out: Record<string, Curve> = {};
  for (const [k, c] of run.curves) {
    const i = bound(c.x, step, false);
    if (i < c.x.length) out[k] = { x: c.x.slice(i), y: c.y.slice(i) };
  }
  return out;
}

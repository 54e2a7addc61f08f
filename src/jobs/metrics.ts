import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../config/errors.js';
import type { MetricsRow } from '../plot/plot.js';

export const metricsPath = (runDir: string): string => path.join(runDir, 'metrics.jsonl');

/**
 * Read a run's metrics.jsonl (`step`, `loss`, `grad_norm`, `lr`, `samples_per_s`, `time`, eval fields).
 * `time` (an ISO date) becomes milliseconds since the epoch; other non-numeric fields are dropped. A torn last line (the trainer is
 * writing it right now, or died mid-write) is skipped; a bad line elsewhere is an error naming it.
 */
export function readMetrics(file: string): MetricsRow[] {
  if (!existsSync(file)) return [];
  return parseMetrics(readFileSync(file, 'utf8'), file);
}

/**
 * The rows of metrics.jsonl text, by readMetrics' rules; `firstLine` is the file's line number of the
 * text's first line, for errors, when the text is what was appended to the file since it was last read.
 */
export function parseMetrics(text: string, file: string, firstLine = 1): MetricsRow[] {
  const lines = text.split('\n');
  const rows: MetricsRow[] = [];
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      if (i >= lines.length - 2 && !raw.endsWith('}')) continue;
      throw new UserError(
        `${file}:${i + firstLine}: expected a JSON object, got ${JSON.stringify(line.slice(0, 60))}`,
      );
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new UserError(
        `${file}:${i + firstLine}: expected a JSON object, got ${JSON.stringify(line.slice(0, 60))}`,
      );
    }
    const row: Record<string, number> = {};
    for (const [k, v] of Object.entries(value)) {
      const n = k === 'time' && typeof v === 'string' ? Date.parse(v) : v;
      if (typeof n === 'number' && Number.isFinite(n)) row[k] = n;
    }
    if (typeof row.step !== 'number') {
      throw new UserError(
        `${file}:${i + firstLine}: expected a numeric "step" field, got ${JSON.stringify(line.slice(0, 60))}`,
      );
    }
    rows.push(row as MetricsRow);
  }
  return rows;
}

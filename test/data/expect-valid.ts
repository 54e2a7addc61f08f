import { expect } from 'vitest';
import { validateDataset } from '../../src/data/validate.js';

/** Validates a dataset, expecting no problem; returns the report. */
export async function valid(dir: string) {
  const report = await validateDataset(dir);
  expect(report.problems).toEqual([]);
  return report;
}

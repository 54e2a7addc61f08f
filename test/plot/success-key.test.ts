import { describe, expect, it } from 'vitest';
import { type MetricsRow, successKey } from '../../src/plot/plot.js';

describe('the success a plot draws', () => {
  it("is a run's whole where several tasks log theirs beside it, else the first that says success", () => {
    // As a generalist's evaluation logs it: each task's figure first, then their mean.
    const several: MetricsRow[] = [
      { step: 10, loss: 1 },
      {
        step: 10,
        'eval_pc_success/aloha_transfer_cube': 20,
        'eval_pc_success/pick_place': 40,
        eval_pc_success: 30,
      },
    ];
    expect(successKey(several)).toBe('eval_pc_success');
    expect(successKey([{ step: 1, 'eval_pc_success/stack': 5 }])).toBe('eval_pc_success/stack');
    expect(successKey([{ step: 1, eval_success: 0.4 }])).toBe('eval_success');
    expect(successKey([{ step: 1, loss: 2 }])).toBeNull();
  });
});

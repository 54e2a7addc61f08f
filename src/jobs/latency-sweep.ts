/**
 * A latency sweep: one task's episodes under every execution mode at every simulated latency, for one
 * or more checkpoints, as real-time chunking is judged (success, time to success, the jumps where chunks
 * hand over, jerk). Each cell is one `vla sim eval` run against the checkpoint served locally; the
 * sweep's file is rewritten atomically after each cell, so a stopped sweep resumes where it stood and a
 * later sweep over more cells adds to the same report.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ExecutionMode } from '@vla-orchestrator/client';
import { UserError } from '../config/errors.js';
import { drawPanels, type Panel } from '../plot/plot.js';
import { renderSvg } from '../plot/render-svg.js';
import type { TaskSummary } from '../sim/rollout.js';

export interface SweepCell {
  /** The checkpoint folder as given, and its label in tables and legends. */
  checkpoint: string;
  label: string;
  /** Whether the checkpoint was trained with train.rtc (its `rtc` mode holds the committed steps instead of guiding). */
  trained_rtc: boolean;
  execution: ExecutionMode;
  latency_ms: number;
  summary: TaskSummary;
  eval_s: number;
}

export interface Sweep {
  task: string;
  episodes: number;
  seed: number;
  noise_scale: number | null;
  cells: SweepCell[];
}

/** What makes cells comparable: a sweep's file holds cells of one protocol only. */
export interface SweepPlan {
  task: string;
  episodes: number;
  seed: number;
  noiseScale?: number;
}

const FILE = 'sweep.json';

/** The label of a checkpoint folder: its path without the `checkpoints/` (and `base/`) it sits under. */
export function checkpointLabel(dir: string): string {
  return path
    .normalize(dir)
    .replace(/\/+$/, '')
    .replace(/^(\.\/)?checkpoints\/(base\/)?/, '');
}

/**
 * The sweep already in `dir`, if it measured the same task, episodes, seed and noise scale (cells of
 * another protocol are not comparable: that is an error naming what differs, not a silent restart).
 */
export function readSweep(dir: string, plan: SweepPlan): Sweep {
  const file = path.join(dir, FILE);
  const fresh: Sweep = {
    task: plan.task,
    episodes: plan.episodes,
    seed: plan.seed,
    noise_scale: plan.noiseScale ?? null,
    cells: [],
  };
  if (!existsSync(file)) return fresh;
  let old: Sweep;
  try {
    old = JSON.parse(readFileSync(file, 'utf8')) as Sweep;
  } catch (e) {
    throw new UserError(
      `${file}: expected a sweep's JSON, got unreadable text (${(e as Error).message}); use another --out`,
    );
  }
  if (!Array.isArray(old?.cells))
    throw new UserError(
      `${file}: expected a sweep with a "cells" list, got ${JSON.stringify(old).slice(0, 80)}`,
    );
  for (const [key, want] of [
    ['task', fresh.task],
    ['episodes', fresh.episodes],
    ['seed', fresh.seed],
    ['noise_scale', fresh.noise_scale],
  ] as const) {
    if (old[key] !== want) {
      throw new UserError(
        `${file}: ${key} is ${JSON.stringify(old[key])}, this sweep's is ${JSON.stringify(want)}; use another --out`,
      );
    }
  }
  return old;
}

export function findCell(
  sweep: Sweep,
  checkpoint: string,
  execution: ExecutionMode,
  latencyMs: number,
): SweepCell | undefined {
  return sweep.cells.find(
    (c) =>
      path.normalize(c.checkpoint) === path.normalize(checkpoint) &&
      c.execution === execution &&
      c.latency_ms === latencyMs,
  );
}

/** Adds (or replaces) a cell and rewrites the sweep's file, its report and its plot. */
export function saveCell(dir: string, sweep: Sweep, cell: SweepCell): void {
  const found = findCell(sweep, cell.checkpoint, cell.execution, cell.latency_ms);
  const i = found ? sweep.cells.indexOf(found) : -1;
  if (i >= 0) sweep.cells[i] = cell;
  else sweep.cells.push(cell);
  mkdirSync(dir, { recursive: true });
  atomicWrite(path.join(dir, FILE), `${JSON.stringify(sweep, null, 2)}\n`);
  atomicWrite(path.join(dir, 'report.md'), sweepReport(sweep));
  atomicWrite(path.join(dir, 'sweep.svg'), sweepSvg(sweep));
}

function atomicWrite(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/** What a mode is on a checkpoint: `rtc` guides an ordinary checkpoint and holds a train.rtc one's prefix. */
export function modeLabel(cell: Pick<SweepCell, 'execution' | 'trained_rtc'>): string {
  if (cell.execution !== 'rtc') return cell.execution;
  return cell.trained_rtc ? 'rtc (trained)' : 'rtc (guided)';
}

/** One line per checkpoint and mode, its cells in latency order. */
function lines(sweep: Sweep): Array<{ label: string; cells: SweepCell[] }> {
  const out = new Map<string, SweepCell[]>();
  for (const c of sweep.cells) {
    const key = `${c.label} · ${modeLabel(c)}`;
    out.set(key, [...(out.get(key) ?? []), c]);
  }
  return [...out].map(([label, cells]) => ({
    label,
    cells: cells.sort((a, b) => a.latency_ms - b.latency_ms),
  }));
}

const fixed = (v: number | null, digits: number) => (v === null ? '–' : v.toFixed(digits));

/** The sweep as Markdown: success by mode and latency, then every measure of every cell. */
export function sweepReport(sweep: Sweep): string {
  const latencies = [...new Set(sweep.cells.map((c) => c.latency_ms))].sort((a, b) => a - b);
  const out = [
    `# Latency sweep: ${sweep.task}`,
    '',
    `${sweep.episodes} episodes per cell from seed ${sweep.seed}` +
      (sweep.noise_scale === null ? '' : `, noise scale ${sweep.noise_scale}`) +
      '. Latency: the steps the simulated robot executes while a chunk computes, d = ceil(latency / control period).',
    '',
    '## Success (%)',
    '',
    `| checkpoint · execution | ${latencies.map((l) => `${l} ms`).join(' | ')} |`,
    `|---|${latencies.map(() => '---|').join('')}`,
  ];
  for (const line of lines(sweep)) {
    const row = latencies.map((l) => {
      const c = line.cells.find((x) => x.latency_ms === l);
      return c ? c.summary.pc_success.toFixed(1) : '';
    });
    out.push(`| ${line.label} | ${row.join(' | ')} |`);
  }
  out.push(
    '',
    '## Every measure',
    '',
    'Time to success: mean over the successful episodes. Jumps: max over action dims of |a_t − a_{t−1}| at the steps where a new chunk takes over (under ensembling, where one joins the average), the largest and the mean; the mean step is the same measure at every other step, the scale a jump compares with (a gripper closing is a step of ~1 in any mode); the joint columns leave the grippers out. Jerk: mean squared third difference of the executed actions over the period cubed.',
    '',
    '| checkpoint · execution | latency (ms) | success (%) | time to success (s) | largest jump | mean jump | mean step | joints: mean jump | joints: mean step | mean squared jerk | errors | eval (s) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const line of lines(sweep)) {
    for (const c of line.cells) {
      const s = c.summary;
      out.push(
        `| ${line.label} | ${c.latency_ms} | ${s.pc_success.toFixed(1)} | ${fixed(s.avg_success_s, 2)} | ` +
          `${s.boundary_jump_max.toFixed(3)} | ${s.boundary_jump_mean.toFixed(4)} | ${s.step_mean.toFixed(4)} | ` +
          `${fixed(s.boundary_joint_jump_mean ?? null, 4)} | ${fixed(s.joint_step_mean ?? null, 4)} | ` +
          `${s.mean_squared_jerk.toExponential(2)} | ` +
          `${s.failed} | ${c.eval_s.toFixed(0)} |`,
      );
    }
  }
  return `${out.join('\n')}\n`;
}

/** Success, mean jump and time to success against latency, a line per checkpoint and mode. */
export function sweepSvg(sweep: Sweep): string {
  const all = lines(sweep);
  const panel = (
    title: string,
    f: (s: TaskSummary) => number | null,
    range: [number, number] | null,
  ): Panel => ({
    title,
    log: false,
    range,
    series: all.map((line, run) => ({
      run,
      points: line.cells.flatMap((c) => {
        const v = f(c.summary);
        return v === null ? [] : [[c.latency_ms, v] as [number, number]];
      }),
    })),
  });
  const fig = drawPanels(
    all.map((l) => l.label),
    [
      panel('success (%)', (s) => s.pc_success, [0, 100]),
      // Jumps from 0: their ratios between modes are the point.
      panel('mean jump at a chunk boundary', (s) => s.boundary_jump_mean, [
        0,
        1.05 * Math.max(1e-9, ...sweep.cells.map((c) => c.summary.boundary_jump_mean)),
      ]),
      panel('time to success (s)', (s) => s.avg_success_s, null),
    ],
    { xLabel: 'latency (ms)', title: `${sweep.task}: ${sweep.episodes} episodes per point` },
  );
  return renderSvg(fig);
}

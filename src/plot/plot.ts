import { textWidth } from './font.js';

/*
 * Training curves as a list of drawing primitives in pixel coordinates, which the SVG and PNG writers
 * both render, so the two formats always show the same figure. Plotting is its own module: job curves
 * and dataset views (`vla data show`) both draw with it.
 */

/** One logged step: `step` and whatever numbers were logged with it (a run's metrics.jsonl line). */
export type MetricsRow = { step: number } & Record<string, number>;

export type Prim =
  | { kind: 'rect'; x: number; y: number; w: number; h: number; fill: string }
  | { kind: 'line'; points: Array<[number, number]>; color: string; width: number; opacity: number }
  | {
      kind: 'text';
      x: number;
      y: number;
      text: string;
      /** Height of a capital letter in pixels. */
      size: number;
      anchor: 'start' | 'middle' | 'end';
      color: string;
    };

export interface Run {
  label: string;
  rows: MetricsRow[];
}

/** One line of a panel: the index of its run (its colour and legend entry) and its (x, y) points. */
export interface Series {
  run: number;
  points: Array<[number, number]>;
}

export interface Panel {
  title: string;
  log: boolean;
  series: Series[];
  /** A fixed y range (success rate is 0..100 %), or null to fit the data. */
  range: [number, number] | null;
}

/** Colours that stay apart for up to eight overlaid runs (Tableau 10). */
export const PALETTE = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#17becf',
];
const INK = '#222222';
const GRID = '#dddddd';
const BACKGROUND = '#ffffff';

/**
 * The rows of the run as it stands: a resumed run re-logs the steps after its checkpoint, and the
 * later lines replace the earlier ones. Lines of the same step (the training metrics and the periodic
 * eval's) are merged.
 */
export function latestRun(rows: MetricsRow[]): MetricsRow[] {
  const out: MetricsRow[] = [];
  for (const row of rows) {
    while (out.length > 0 && out[out.length - 1]!.step > row.step) out.pop();
    const last = out[out.length - 1];
    if (last && last.step === row.step) Object.assign(last, row);
    else out.push({ ...row });
  }
  return out;
}

/**
 * What a figure's x axis counts: training steps, or minutes of the run's wall time since its first
 * logged line (its `time`), which puts runs of different speeds (a larger model, another precision) on
 * the footing that matters on a given machine: what each learns per minute.
 */
export type PlotAxis = 'step' | 'minutes';

/** Each row's x on `axis`; NaN where a row has no `time` (ms since the epoch, as readMetrics gives it). */
function xOf(rows: MetricsRow[], axis: PlotAxis): (r: MetricsRow) => number {
  if (axis === 'step') return (r) => r.step;
  const first = rows.find((r) => r.time !== undefined)?.time ?? Number.NaN;
  return (r) => ((r.time ?? Number.NaN) - first) / 60_000;
}

function seriesOf(
  rows: MetricsRow[],
  key: (r: MetricsRow) => number | undefined,
  x: (r: MetricsRow) => number,
): Array<[number, number]> {
  const pts: Array<[number, number]> = [];
  for (const r of rows) {
    const v = key(r);
    const at = x(r);
    if (v !== undefined && Number.isFinite(v) && Number.isFinite(at)) pts.push([at, v]);
  }
  return pts;
}

/**
 * The first field whose name says success (`eval_success`, `eval_pc_success`, …), in percent: the whole
 * run's where several tasks log theirs beside it (`eval_pc_success/<task>`).
 */
export function successKey(rows: MetricsRow[]): string | null {
  let perTask: string | null = null;
  for (const r of rows) {
    for (const k of Object.keys(r)) {
      if (!/success/i.test(k)) continue;
      if (!k.includes('/')) return k;
      perTask ??= k;
    }
  }
  return perTask;
}

function panelsFor(runs: Run[], axis: PlotAxis): Panel[] {
  const clean = runs.map((r) => latestRun(r.rows));
  const xs = clean.map((rows) => xOf(rows, axis));
  const loss = clean.map((rows, run) => ({ run, points: seriesOf(rows, (r) => r.loss, xs[run]!) }));
  const lr = clean.map((rows, run) => ({ run, points: seriesOf(rows, (r) => r.lr, xs[run]!) }));
  const panels: Panel[] = [];
  const positive = loss.every((s) => s.points.every(([, v]) => v > 0));
  const values = loss.flatMap((s) => s.points.map(([, v]) => v));
  const spread = values.length > 0 ? Math.max(...values) / Math.min(...values) : 1;
  panels.push({ title: 'loss', log: positive && spread > 20, series: loss, range: null });
  panels.push({ title: 'learning rate', log: false, series: lr, range: null });
  const success = clean.map((rows, run) => {
    const key = successKey(rows);
    if (key === null) return { run, points: [] as Array<[number, number]> };
    const pts = seriesOf(rows, (r) => r[key], xs[run]!);
    const fraction = pts.every(([, v]) => v <= 1);
    return { run, points: pts.map(([s, v]) => [s, fraction ? v * 100 : v] as [number, number]) };
  });
  if (success.some((s) => s.points.length > 0)) {
    panels.push({ title: 'eval success (%)', log: false, series: success, range: [0, 100] });
  }
  return panels;
}

/**
 * A mixture run's loss per dataset (its `loss/<dataset>` fields) as one run per dataset, each with the
 * learning rate and eval fields of the run, so the figure overlays the datasets' losses.
 */
export function runsByDataset(rows: MetricsRow[], labelPrefix = ''): Run[] {
  const names = [...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => k.startsWith('loss/'))))];
  return names.map((key) => ({
    label: `${labelPrefix}${key.slice('loss/'.length)}`,
    rows: rows.map((r) => {
      const { [key]: loss, ...rest } = r;
      const out: MetricsRow = { step: r.step };
      for (const [k, v] of Object.entries(rest)) if (k !== 'loss' && !k.startsWith('loss/')) out[k] = v;
      if (loss !== undefined) out.loss = loss;
      return out;
    }),
  }));
}

/** Round tick values (1, 2, 5 × 10^k) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function tickLabel(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  // One decimal where it matters: 1.5e-4 and 1e-4 are different ticks.
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1).replace('.0e', 'e').replace('e+', 'e');
  return Number(v.toPrecision(6)).toString();
}

/** Smoothed copy of a noisy curve (exponential moving average, as TensorBoard's slider). */
function smooth(points: Array<[number, number]>, alpha: number): Array<[number, number]> {
  let acc: number | null = null;
  return points.map(([x, y]) => {
    acc = acc === null ? y : alpha * acc + (1 - alpha) * y;
    return [x, acc];
  });
}

/** Keep at most about `max` points, so a 30,000-step run does not make a 30,000-vertex path. */
function thin(points: Array<[number, number]>, max: number): Array<[number, number]> {
  if (points.length <= max) return points;
  const stride = Math.ceil(points.length / max);
  const out = points.filter((_, i) => i % stride === 0);
  if (out[out.length - 1] !== points[points.length - 1]) out.push(points[points.length - 1]!);
  return out;
}

export interface FigureOptions {
  width?: number;
  title?: string;
}

/** Lay out one panel per metric, stacked, sharing the x axis (steps by default), with a legend naming each run. */
export function drawFigure(
  runs: Run[],
  opts: FigureOptions & { x?: PlotAxis } = {},
): { width: number; height: number; prims: Prim[] } {
  const axis = opts.x ?? 'step';
  return drawPanels(
    runs.map((r) => r.label),
    panelsFor(runs, axis),
    { ...opts, xLabel: axis === 'step' ? 'step' : 'minutes since the first logged step' },
  );
}

/**
 * Panels stacked over one shared x axis (from 0, or below), a legend naming each labelled run in its
 * colour. Series with a few points (a sweep's settings) get a dot at each.
 */
export function drawPanels(
  labels: string[],
  panels: Panel[],
  opts: FigureOptions & { xLabel: string },
): { width: number; height: number; prims: Prim[] } {
  const runs = labels.map((label) => ({ label }));
  const width = opts.width ?? 800;
  const panelH = 220;
  const top = 36;
  const legendH = 18 * Math.ceil(runs.length / 2) + 10;
  const left = 78;
  const right = 20;
  const gap = 46;
  const height = top + legendH + panels.length * (panelH + gap);
  const prims: Prim[] = [{ kind: 'rect', x: 0, y: 0, w: width, h: height, fill: BACKGROUND }];
  const text = (
    x: number,
    y: number,
    t: string,
    size: number,
    anchor: 'start' | 'middle' | 'end',
    color = INK,
  ) => prims.push({ kind: 'text', x, y, text: t, size, anchor, color });

  // The legend names every run; a title that would not fit says how many there are instead.
  const joined = runs.map((r) => r.label).join(' vs ');
  const fits = textWidth(joined, 10) < width - 40;
  text(width / 2, 22, opts.title ?? (fits ? joined : `${runs.length} runs`), 10, 'middle');
  runs.forEach((r, i) => {
    const x = left + (i % 2) * ((width - left - right) / 2);
    const y = top + 6 + 18 * Math.floor(i / 2);
    const color = PALETTE[i % PALETTE.length]!;
    prims.push({
      kind: 'line',
      points: [
        [x, y + 4],
        [x + 24, y + 4],
      ],
      color,
      width: 3,
      opacity: 1,
    });
    text(x + 32, y + 8, r.label, 8, 'start');
  });

  const allSteps = panels.flatMap((p) => p.series.flatMap((sr) => sr.points.map(([x]) => x)));
  const xLo = allSteps.length > 0 ? Math.min(0, ...allSteps) : 0;
  const xHi = allSteps.length > 0 ? Math.max(1, ...allSteps) : 1;
  const plotW = width - left - right;

  panels.forEach((panel, p) => {
    const y0 = top + legendH + p * (panelH + gap) + 16;
    const h = panelH - 16;
    text(left, y0 - 6, panel.title, 8, 'start');
    const ys = panel.series.flatMap((s) => s.points.map(([, v]) => v));
    const tf = panel.log ? Math.log10 : (v: number) => v;
    let lo: number;
    let hi: number;
    if (panel.range) [lo, hi] = panel.range;
    else if (ys.length === 0) [lo, hi] = [0, 1];
    else {
      lo = Math.min(...ys.map(tf));
      hi = Math.max(...ys.map(tf));
      if (hi - lo < 1e-12 * Math.max(1, Math.abs(hi))) {
        const pad = Math.abs(hi) * 0.1 || 1;
        lo -= pad;
        hi += pad;
      }
      if (!panel.log && lo > 0 && lo < (hi - lo) * 0.5) lo = 0;
    }
    const px = (x: number) => left + ((x - xLo) / (xHi - xLo)) * plotW;
    const py = (v: number) => y0 + h - ((tf(v) - lo) / (hi - lo)) * h;

    const yTicks = panel.log
      ? niceTicks(Math.floor(lo), Math.ceil(hi), Math.max(1, Math.ceil(hi) - Math.floor(lo)))
          .filter((e) => Number.isInteger(e) && e >= lo - 1e-9 && e <= hi + 1e-9)
          .map((e) => 10 ** e)
      : niceTicks(lo, hi);
    for (const t of yTicks) {
      const y = py(t);
      prims.push({
        kind: 'line',
        points: [
          [left, y],
          [left + plotW, y],
        ],
        color: GRID,
        width: 1,
        opacity: 1,
      });
      text(left - 6, y + 4, tickLabel(t), 7, 'end');
    }
    for (const t of niceTicks(xLo, xHi, 8)) {
      const x = px(t);
      prims.push({
        kind: 'line',
        points: [
          [x, y0],
          [x, y0 + h],
        ],
        color: GRID,
        width: 1,
        opacity: 1,
      });
      text(x, y0 + h + 14, tickLabel(t), 7, 'middle');
    }
    prims.push({
      kind: 'line',
      points: [
        [left, y0],
        [left, y0 + h],
        [left + plotW, y0 + h],
      ],
      color: INK,
      width: 1,
      opacity: 1,
    });
    if (p === panels.length - 1) text(left + plotW / 2, y0 + h + 30, opts.xLabel, 8, 'middle');

    for (const s of panel.series) {
      if (s.points.length === 0) continue;
      const color = PALETTE[s.run % PALETTE.length]!;
      const toPx = (pts: Array<[number, number]>) =>
        thin(pts, 2 * plotW).map(([x, v]) => [px(x), py(v)] as [number, number]);
      // A noisy loss reads better as a faint raw curve under a smoothed one.
      const noisy = panel.title === 'loss' && s.points.length > 50;
      prims.push({
        kind: 'line',
        points: toPx(s.points),
        color,
        width: noisy ? 1 : 2,
        opacity: noisy ? 0.3 : 1,
      });
      if (noisy)
        prims.push({ kind: 'line', points: toPx(smooth(s.points, 0.9)), color, width: 2, opacity: 1 });
      if (s.points.length <= 12) {
        for (const [x, y] of toPx(s.points))
          prims.push({ kind: 'rect', x: x - 3, y: y - 3, w: 6, h: 6, fill: color });
      }
    }
  });
  return { width, height, prims };
}

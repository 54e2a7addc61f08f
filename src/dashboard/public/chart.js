// Line charts through uPlot: one or several series, each with its own x values (runs log different
// steps), joined on a common x axis for drawing. The server sends at most about 2,000 points per series
// (min/max buckets over the whole range); live points are appended and drawn without a new request.
import uPlot from '/vendor/uPlot.esm.js';

/** Colours that stay apart for up to eight series (Tableau 10, as the CLI's PNG plots). */
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

const EMPTY = { x: [], y: [] };

/** Tick labels that tell 1e-4 from 2e-4 (uPlot's own round small values to 0). */
function tick(v) {
  if (v === null || v === undefined) return '';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1).replace('.0e', 'e');
  return String(Number(v.toPrecision(6)));
}

export class Chart {
  /**
   * @param {HTMLElement} parent
   * @param {{ title: string, labels: string[], xLabel?: string, log?: boolean, range?: [number, number],
   *   height?: number, onZoom?: (min: number, max: number) => void, onClick?: (x: number) => void,
   *   marker?: boolean, points?: boolean }} opts
   */
  constructor(parent, opts) {
    this.opts = opts;
    this.series = opts.labels.map(() => ({ x: [], y: [] }));
    this.log = opts.log ?? false;
    this.markerX = null;
    this.el = document.createElement('figure');
    this.el.className = 'chart';
    this.el.dataset.title = opts.title;
    const caption = document.createElement('figcaption');
    caption.textContent = opts.title;
    if (opts.log !== undefined) {
      const toggle = document.createElement('label');
      toggle.className = 'log-toggle';
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = this.log;
      box.addEventListener('change', () => {
        this.log = box.checked;
        this.rebuild();
      });
      toggle.append(box, ' log scale');
      caption.append(toggle);
    }
    this.plotEl = document.createElement('div');
    this.el.append(caption, this.plotEl);
    parent.append(this.el);
    this.resize = new ResizeObserver(() => {
      if (this.plot && this.plotEl.clientWidth > 0) this.plot.setSize(this.size());
    });
    this.resize.observe(this.plotEl);
    if (opts.onClick) {
      this.plotEl.addEventListener('click', () => {
        const i = this.plot.cursor.idx;
        if (i !== null && i !== undefined) opts.onClick(this.plot.data[0][i]);
      });
    }
    this.rebuild();
  }

  size() {
    return { width: Math.max(240, this.plotEl.clientWidth || 600), height: this.opts.height ?? 220 };
  }

  options() {
    const opts = this.opts;
    const marker = {
      hooks: {
        draw: [
          (u) => {
            if (this.markerX === null) return;
            const x = u.valToPos(this.markerX, 'x', true);
            const ctx = u.ctx;
            ctx.save();
            ctx.strokeStyle = '#d62728';
            ctx.lineWidth = 1.5 * devicePixelRatio;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.restore();
          },
        ],
      },
    };
    return {
      ...this.size(),
      legend: { show: opts.labels.length > 1 || opts.labels[0] !== opts.title },
      cursor: { drag: { x: Boolean(opts.onZoom), y: false }, points: { size: 5 } },
      scales: {
        x: { time: false },
        y: this.log ? { distr: 3 } : opts.range ? { range: opts.range } : {},
      },
      axes: [
        { label: opts.xLabel ?? 'step', size: 40, values: (_u, splits) => splits.map(tick) },
        { size: 64, values: (_u, splits) => splits.map(tick) },
      ],
      series: [
        { label: opts.xLabel ?? 'step' },
        ...opts.labels.map((label, i) => ({
          label,
          value: (_u, v) => (v === null || v === undefined ? '-' : tick(v)),
          stroke: PALETTE[i % PALETTE.length],
          width: 1.5,
          spanGaps: true,
          points: { show: opts.points ?? false },
        })),
      ],
      plugins: opts.marker ? [marker] : [],
      hooks: {
        draw: [
          () => {
            this.el.dataset.points = String(this.series.reduce((n, s) => n + s.x.length, 0));
            this.el.dataset.draws = String(Number(this.el.dataset.draws ?? 0) + 1);
            performance.mark(`chart:${opts.title}`);
          },
        ],
        setSelect: [
          (u) => {
            if (!opts.onZoom || u.select.width < 2) return;
            opts.onZoom(u.posToVal(u.select.left, 'x'), u.posToVal(u.select.left + u.select.width, 'x'));
          },
        ],
      },
    };
  }

  /** The series joined on one x axis (uPlot wants one), with gaps where a series has no point. */
  data() {
    const tables = this.series.map((s) => {
      if (!this.log) return [s.x, s.y];
      // A log axis cannot show 0 or less: those points become gaps.
      return [s.x, s.y.map((v) => (v > 0 ? v : null))];
    });
    if (tables.length === 1) return tables[0];
    return uPlot.join(tables);
  }

  rebuild() {
    this.plot?.destroy();
    this.plot = new uPlot(this.options(), this.data(), this.plotEl);
  }

  /** Replaces every series (`curves[i]` is `{x, y}` or null for none); `keepX` keeps a zoomed step range. */
  setCurves(curves, keepX = false) {
    this.series = this.opts.labels.map((_, i) => ({
      x: [...(curves[i] ?? EMPTY).x],
      y: [...(curves[i] ?? EMPTY).y],
    }));
    if (!keepX) {
      this.plot.setData(this.data());
      return;
    }
    const { min, max } = this.plot.scales.x;
    this.plot.setData(this.data(), false);
    this.plot.setScale('x', { min, max });
  }

  /** Appends live points to series `i`. */
  append(i, curve) {
    const s = this.series[i];
    for (let k = 0; k < curve.x.length; k++) {
      if (s.x.length > 0 && curve.x[k] <= s.x[s.x.length - 1]) continue;
      s.x.push(curve.x[k]);
      s.y.push(curve.y[k]);
    }
    this.plot.setData(this.data(), true);
  }

  /** A vertical line at x (the episode player's frame). */
  mark(x) {
    this.markerX = x;
    this.plot.redraw(false, false);
  }

  pointCount() {
    return this.series.reduce((n, s) => n + s.x.length, 0);
  }

  destroy() {
    this.resize.disconnect();
    this.plot?.destroy();
    this.el.remove();
  }
}

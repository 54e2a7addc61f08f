// The Datasets pages: the datasets the dashboard knows (given with --data, or trained on by its jobs),
// and one dataset: its info, the validator's verdict, its episodes, and an episode's camera frames as
// a player to scrub beside its state and action curves.
import { getJson, h, mediaUrl, problem, section } from './api.js';
import { Chart } from './chart.js';

const viewUrl = (id, episode) =>
  `#/datasets/view?${new URLSearchParams({ dataset: id, ...(episode === undefined ? {} : { episode }) })}`;

function datasetRow(d) {
  const name = d.id ? h('a', { href: viewUrl(d.id) }, d.id) : h('span', {}, '-');
  const cells = d.error
    ? [h('td', { colspan: 6 }, problem(d.error))]
    : [
        h('td', {}, d.version ?? '-'),
        h('td', {}, d.robotType ?? '-'),
        h('td', { class: 'num' }, d.fps ?? '-'),
        h('td', { class: 'num' }, d.episodes ?? '-'),
        h('td', { class: 'num' }, d.frames ?? '-'),
        h('td', {}, d.cameras.join(', ') || '-'),
      ];
  return h(
    'tr',
    { dataset: { dataset: d.id ?? '' }, class: d.error ? 'gone' : '' },
    h('td', {}, name, h('div', { class: 'hint' }, d.dir)),
    h('td', {}, d.sources.join(', ')),
    ...cells,
  );
}

export async function mountDatasets(main) {
  const page = h('section', { class: 'page datasets' });
  main.append(page);
  page.append(h('h2', {}, 'Datasets'));
  await section(page, async () => {
    const list = await getJson('/api/datasets');
    if (list.length === 0) {
      return h(
        'p',
        { class: 'hint' },
        'No datasets: start the dashboard with --data DIR (a LeRobot dataset, or a folder of them); the datasets of its jobs are listed too.',
      );
    }
    return h(
      'table',
      { class: 'list', id: 'datasets-table' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ...['dataset', 'named by', 'version', 'robot', 'fps', 'episodes', 'frames', 'cameras'].map((t) =>
            h('th', {}, t),
          ),
        ),
      ),
      h('tbody', {}, ...list.map(datasetRow)),
    );
  });
  return undefined;
}

function validation(report) {
  const box = h('div', {
    class: `validation ${report.problems.length === 0 ? 'ok' : 'bad'}`,
    id: 'validation',
  });
  if (report.problems.length === 0) {
    box.append(
      h('strong', {}, 'valid'),
      ` · ${report.episodes} episodes, ${report.frames} frames, ${report.videos} videos checked (LeRobot ${report.version})`,
    );
  } else {
    box.append(
      h('strong', {}, `${report.problems.length} problem${report.problems.length === 1 ? '' : 's'}`),
      h('ul', {}, ...report.problems.map((p) => h('li', {}, p))),
    );
  }
  for (const w of report.warnings) box.append(h('div', { class: 'hint' }, `warning: ${w}`));
  return box;
}

/** Frame player: shows the frame asked for last, one request at a time (scrubbing asks many). */
class Player {
  constructor(parent, dataset, episode, cameras, onFrame) {
    this.dataset = dataset;
    this.episode = episode;
    this.onFrame = onFrame;
    this.camera = cameras[0]?.key ?? null;
    this.frame = 0;
    this.shown = -1;
    this.loading = false;
    this.timer = null;
    this.img = h('img', { id: 'frame', alt: 'camera frame' });
    this.slider = h('input', {
      type: 'range',
      id: 'scrub',
      min: 0,
      max: Math.max(0, episode.length - 1),
      value: 0,
      step: 1,
      'aria-label': 'frame',
    });
    this.label = h('span', { class: 'frame-label' });
    this.play = h('button', { type: 'button', id: 'play' }, 'Play');
    const select = h(
      'select',
      { 'aria-label': 'camera' },
      ...cameras.map((c) => h('option', { value: c.key }, `${c.key} (${c.width}×${c.height})`)),
    );
    select.addEventListener('change', () => {
      this.camera = select.value;
      this.shown = -1;
      this.request();
    });
    this.slider.addEventListener('input', () => this.seek(Number(this.slider.value)));
    this.play.addEventListener('click', () => (this.timer ? this.pause() : this.start()));
    this.img.addEventListener('load', () => this.loaded());
    this.img.addEventListener('error', () => this.failed());
    this.error = h('div');
    const controls = h(
      'div',
      { class: 'player-controls' },
      this.play,
      this.slider,
      this.label,
      cameras.length > 1 ? select : '',
    );
    this.el = h(
      'div',
      { class: 'player' },
      this.camera ? this.img : h('p', { class: 'hint' }, 'This dataset has no cameras.'),
      controls,
      this.error,
    );
    parent.append(this.el);
    this.seek(0);
  }

  seek(i) {
    this.frame = Math.max(0, Math.min(this.episode.length - 1, i));
    this.slider.value = String(this.frame);
    this.label.textContent = `frame ${this.frame} / ${this.episode.length - 1} · ${(this.frame / this.fps()).toFixed(2)} s`;
    this.onFrame(this.frame);
    this.request();
  }

  fps() {
    return this.episode.fps || 30;
  }

  request() {
    if (!this.camera || this.loading || this.shown === this.frame) return;
    this.loading = true;
    this.requested = this.frame;
    this.img.src = mediaUrl('/api/datasets/frame', {
      dataset: this.dataset,
      episode: this.episode.index,
      camera: this.camera,
      frame: this.frame,
    });
  }

  loaded() {
    this.loading = false;
    this.shown = this.requested;
    this.img.dataset.frame = String(this.shown);
    this.error.replaceChildren();
    this.request();
  }

  async failed() {
    this.loading = false;
    this.pause();
    // The <img> cannot read the server's sentence: ask for it once more as JSON.
    try {
      const res = await fetch(this.img.src);
      const body = await res.json();
      this.error.replaceChildren(problem(body.error ?? `frame ${this.requested}: HTTP ${res.status}`));
    } catch (e) {
      this.error.replaceChildren(problem(`frame ${this.requested}: ${e.message}`));
    }
  }

  start() {
    this.play.textContent = 'Pause';
    if (this.frame >= this.episode.length - 1) this.seek(0);
    // At the recording's rate when frames arrive in time; slower when they do not (never skipping).
    this.timer = setInterval(() => {
      if (this.loading) return;
      if (this.frame >= this.episode.length - 1) this.pause();
      else this.seek(this.frame + 1);
    }, 1000 / Math.min(30, this.fps()));
  }

  pause() {
    clearInterval(this.timer);
    this.timer = null;
    this.play.textContent = 'Play';
  }
}

export async function mountDataset(main, params) {
  const id = params.get('dataset') ?? '';
  const page = h('section', { class: 'page dataset' });
  main.append(page);
  page.append(h('p', {}, h('a', { href: '#/datasets' }, '← all datasets')), h('h2', {}, `dataset ${id}`));
  let info;
  try {
    info = await getJson('/api/datasets/detail', { dataset: id });
  } catch (e) {
    page.append(problem(e.message));
    return undefined;
  }
  const facts = [
    ['folder', info.dir],
    ['format', `LeRobot ${info.version}`],
    ['robot', info.robotType ?? '-'],
    ['fps', info.fps],
    ['episodes', info.totalEpisodes],
    ['frames', info.totalFrames],
    [
      'cameras',
      info.cameras
        .map((c) => `${c.key} ${c.width}×${c.height} ${c.video ? `video (${c.codec ?? '?'})` : 'PNG'}`)
        .join(', ') || '-',
    ],
    ['tasks', info.tasks.join(' · ') || '-'],
  ];
  page.append(
    h('dl', { class: 'facts' }, ...facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))])),
  );
  for (const w of info.warnings) page.append(problem(`warning: ${w}`));
  const validationSlot = h('div');
  page.append(h('h3', {}, 'Validation'), validationSlot);
  section(validationSlot, async () => validation(await getJson('/api/datasets/validate', { dataset: id })));

  const chosen = Number(params.get('episode') ?? info.episodes[0]?.index ?? 0);
  const episodes = h(
    'div',
    { class: 'episode-list' },
    h(
      'table',
      { class: 'list' },
      h('thead', {}, h('tr', {}, h('th', {}, 'episode'), h('th', {}, 'frames'), h('th', {}, 'task'))),
      h(
        'tbody',
        {},
        ...info.episodes.map((e) =>
          h(
            'tr',
            { class: e.index === chosen ? 'selected' : '' },
            h('td', { class: 'num' }, h('a', { href: viewUrl(id, e.index) }, String(e.index))),
            h('td', { class: 'num' }, String(e.length)),
            h('td', {}, e.tasks.join(' · ')),
          ),
        ),
      ),
    ),
  );
  const playerBox = h('div', { class: 'player-box' });
  const viewer = h('div', { class: 'episode-view' });
  page.append(h('h3', {}, `Episode ${chosen}`), h('div', { class: 'episode' }, episodes, playerBox, viewer));
  const episode = info.episodes.find((e) => e.index === chosen);
  if (!episode) {
    viewer.append(problem(`dataset ${id}: no episode ${chosen}`));
    return undefined;
  }
  const charts = [];
  const player = new Player(playerBox, id, { ...episode, fps: info.fps }, info.cameras, (frame) => {
    for (const c of charts) c.mark(frame);
  });
  try {
    const curves = await getJson('/api/datasets/episode', { dataset: id, episode: chosen });
    for (const part of ['state', 'action']) {
      const p = curves[part];
      if (!p) continue;
      const chart = new Chart(viewer, {
        title: part,
        labels: p.names,
        xLabel: 'frame',
        marker: true,
        height: 200,
        onClick: (x) => player.seek(Math.round(x)),
      });
      chart.setCurves(p.curves);
      chart.mark(player.frame);
      charts.push(chart);
    }
  } catch (e) {
    viewer.append(problem(e.message));
  }
  return () => {
    player.pause();
    for (const c of charts) c.destroy();
  };
}

// The Jobs pages: the registry's jobs (live), several runs' curves overlaid, and one job in full with
// its live curves, log, history, config and the stop and resume buttons.
import { ago, badge, getJson, h, num, openEvents, postJson, problem, when } from './api.js';
import { Chart } from './chart.js';

/** The curves a run logs, as the trainer names them in metrics.jsonl. */
const CURVES = [
  { key: 'loss', title: 'loss', log: true },
  { key: 'lr', title: 'learning rate', log: false },
  { key: 'grad_norm', title: 'gradient norm', log: false },
];

const label = (job) => `job ${job.id}: ${job.configName}/${job.expName}`;

function progress(job) {
  const frac = job.totalSteps > 0 ? Math.min(1, job.step / job.totalSteps) : 0;
  return h(
    'div',
    { class: 'progress', title: `${(frac * 100).toFixed(1)}%` },
    h('div', { class: `bar ${job.status}`, style: `width:${(frac * 100).toFixed(1)}%` }),
    h('span', {}, `${job.step}/${job.totalSteps}`),
  );
}

function jobRow(job, selected, onToggle) {
  const m = job.metrics ?? {};
  return h(
    'tr',
    { dataset: { job: job.id, status: job.status }, class: job.runDirExists ? '' : 'gone' },
    h(
      'td',
      {},
      h('input', {
        type: 'checkbox',
        checked: selected.has(job.id),
        title: 'overlay its curves',
        onchange: (e) => onToggle(job.id, e.target.checked),
      }),
    ),
    h('td', { class: 'num' }, h('a', { href: `#/jobs/${job.id}` }, String(job.id))),
    h('td', {}, badge(job.status)),
    h(
      'td',
      {},
      h('a', { href: `#/jobs/${job.id}` }, `${job.configName}/${job.expName}`),
      job.runDirExists ? '' : h('span', { class: 'warn' }, ' run folder removed'),
    ),
    h('td', {}, progress(job)),
    h('td', { class: 'num' }, num(m.loss)),
    h('td', { class: 'num' }, num(m.lr)),
    h('td', { class: 'num' }, m.samples_per_s === undefined ? '-' : m.samples_per_s.toFixed(1)),
    h('td', { class: 'num' }, job.eta),
    h('td', { title: when(job.updatedAt) }, ago(job.updatedAt)),
  );
}

/**
 * Charts of several runs overlaid. After drawing, `onWatch` gets the runs and the last step drawn of
 * each (`ID:STEP,…`), for the page's one event stream to send their new points to `append`.
 */
class Overlay {
  constructor(parent, onWatch) {
    this.el = h('div', { class: 'charts' });
    parent.append(this.el);
    this.onWatch = onWatch;
    this.jobs = [];
    this.charts = [];
    this.index = new Map();
    this.shown = 0;
  }

  async show(jobs) {
    // Ticks come faster than curves load: only the last one asked for is drawn.
    const mine = ++this.shown;
    this.jobs = jobs;
    this.index = new Map(jobs.map((j, i) => [j.id, i]));
    for (const c of this.charts) c.destroy();
    this.charts = [];
    this.el.replaceChildren();
    if (jobs.length === 0) {
      this.el.append(h('p', { class: 'hint' }, 'Tick runs in the table to overlay their curves.'));
      this.onWatch('');
      return;
    }
    const labels = jobs.map(label);
    this.charts = CURVES.map((c) => new Chart(this.el, { title: c.title, labels, log: c.log }));
    const answers = await Promise.all(
      jobs.map((j) =>
        getJson(`/api/jobs/${j.id}/curves`, { keys: CURVES.map((c) => c.key).join(','), points: 1000 }).catch(
          (e) => e,
        ),
      ),
    );
    if (mine !== this.shown) return;
    const marks = [];
    answers.forEach((a, i) => {
      if (a instanceof Error) this.el.prepend(problem(`${labels[i]}: ${a.message}`));
      else marks.push(`${jobs[i].id}:${a.lastStep ?? ''}`);
    });
    CURVES.forEach((c, k) =>
      this.charts[k].setCurves(answers.map((a) => (a instanceof Error ? null : a.curves[c.key]))),
    );
    this.onWatch(marks.join(','));
  }

  /** A run's points logged since it was drawn. */
  append(e) {
    const i = this.index.get(e.id);
    if (i === undefined) return;
    CURVES.forEach((c, k) => e.curves[c.key] && this.charts[k]?.append(i, e.curves[c.key]));
  }

  close() {
    for (const c of this.charts) c.destroy();
  }
}

export async function mountJobs(main) {
  const page = h('section', { class: 'page jobs' });
  main.append(page);
  const summary = h('span', { class: 'summary' });
  const filter = h('input', {
    type: 'search',
    placeholder: 'filter by experiment',
    'aria-label': 'filter jobs',
  });
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'list', id: 'jobs-table' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ...['', 'id', 'status', 'experiment', 'progress', 'loss', 'lr', 'samples/s', 'ETA', 'updated'].map(
          (t) => h('th', {}, t),
        ),
      ),
    ),
    tbody,
  );
  page.append(h('h2', {}, 'Jobs ', summary), h('div', { class: 'toolbar' }, filter), table);
  page.append(h('h3', {}, 'Curves'));

  let jobs = [];
  let selected = null;
  // One event stream for the page (browsers open few connections to one host): the jobs table, and
  // the new points of the runs drawn, reopened when the runs drawn change.
  let closeEvents = null;
  let closed = false;
  const watch = (marks) => {
    if (closed) return;
    closeEvents?.();
    closeEvents = openEvents(
      { list: 1, ...(marks ? { metrics: marks } : {}) },
      {
        jobs: (list) => {
          jobs = list;
          render();
        },
        metrics: (e) => overlay.append(e),
        reset: () => showOverlay(),
      },
    );
  };
  const overlay = new Overlay(page, watch);
  const render = () => {
    const text = filter.value.trim().toLowerCase();
    const counts = {};
    for (const j of jobs) counts[j.status] = (counts[j.status] ?? 0) + 1;
    summary.textContent = `${jobs.length} job${jobs.length === 1 ? '' : 's'}${Object.entries(counts)
      .map(([s, n]) => ` · ${n} ${s}`)
      .join('')}`;
    const shown = jobs.filter((j) => !text || `${j.configName}/${j.expName}`.toLowerCase().includes(text));
    tbody.replaceChildren(
      ...shown
        .slice()
        .reverse()
        .map((j) => jobRow(j, selected, toggle)),
    );
    if (jobs.length === 0)
      tbody.append(
        h(
          'tr',
          {},
          h(
            'td',
            { colspan: 10, class: 'hint' },
            'No jobs yet: start one with vla train <config> --exp-name NAME --detach',
          ),
        ),
      );
  };
  const showOverlay = () => overlay.show(jobs.filter((j) => selected.has(j.id)));
  const toggle = (id, on) => {
    if (on) selected.add(id);
    else selected.delete(id);
    showOverlay();
  };
  filter.addEventListener('input', render);

  try {
    jobs = await getJson('/api/jobs');
  } catch (e) {
    page.append(problem(e.message));
    return undefined;
  }
  // At first, the running jobs (or else the newest) are drawn.
  const running = jobs.filter((j) => j.status === 'running' || j.status === 'stopping');
  selected = new Set((running.length > 0 ? running : jobs.slice(-1)).slice(-4).map((j) => j.id));
  render();
  table.dataset.ready = '1';
  showOverlay();
  return () => {
    closed = true;
    closeEvents?.();
    overlay.close();
  };
}

function facts(job) {
  const m = job.metrics ?? {};
  const rows = [
    ['progress', progress(job)],
    ['ETA', job.eta],
    ['loss', num(m.loss)],
    ['learning rate', num(m.lr)],
    ['gradient norm', num(m.grad_norm)],
    ['samples/s', m.samples_per_s === undefined ? '-' : m.samples_per_s.toFixed(1)],
    ['process', job.pid === null ? '-' : `pid ${job.pid} on ${job.host}${job.alive ? ' (alive)' : ''}`],
    ['run folder', job.runDir],
    ['checkpoint', job.checkpoint ?? '-'],
    ['log', job.logPath],
    ['created', when(job.createdAt)],
    ['started', when(job.startedAt)],
    ['updated', `${when(job.updatedAt)} (${ago(job.updatedAt)})`],
    ['ended', when(job.finishedAt)],
  ];
  return h('dl', { class: 'facts' }, ...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

export async function mountJob(main, id) {
  const page = h('section', { class: 'page job' });
  main.append(page);
  let job;
  try {
    job = await getJson(`/api/jobs/${id}`);
  } catch (e) {
    page.append(h('p', {}, h('a', { href: '#/jobs' }, '← all jobs')), problem(e.message));
    return undefined;
  }
  const title = h('h2', {}, `job ${job.id} · ${job.configName}/${job.expName} `, badge(job.status));
  const message = h('div', { class: 'message', role: 'status' });
  const stop = h('button', { id: 'stop', type: 'button' }, 'Stop');
  const resume = h('button', { id: 'resume', type: 'button' }, 'Resume');
  const factsSlot = h('div', {}, facts(job));
  const problems = h('div', { class: 'problems' }, ...job.problems.map(problem));
  const buttons = () => {
    stop.disabled = !['running', 'queued'].includes(job.status);
    resume.disabled = !job.resumable;
  };
  buttons();
  const act = async (what, button) => {
    button.disabled = true;
    message.textContent = `${what}…`;
    try {
      const r = await postJson(`/api/jobs/${id}/${what}`);
      message.textContent =
        what === 'stop'
          ? `asked process ${r.pid} to save a checkpoint and stop`
          : `resuming in the background (pid ${r.pid}) from step ${r.job.step}`;
      update(r.job);
    } catch (e) {
      message.textContent = '';
      message.append(problem(e.message));
      buttons();
    }
  };
  stop.addEventListener('click', () => act('stop', stop));
  resume.addEventListener('click', () => act('resume', resume));
  page.append(
    h('p', {}, h('a', { href: '#/jobs' }, '← all jobs')),
    h('div', { class: 'title-row' }, title, h('div', { class: 'actions' }, stop, resume)),
    message,
    problems,
    factsSlot,
  );
  if (job.fullError) page.append(h('h3', {}, 'Error'), h('pre', { class: 'error' }, job.fullError));

  const update = (summary) => {
    job = { ...job, ...summary };
    title.replaceChildren(`job ${job.id} · ${job.configName}/${job.expName} `, badge(job.status));
    factsSlot.replaceChildren(facts(job));
    buttons();
  };

  const chartsEl = h('div', { class: 'charts' });
  page.append(h('h3', {}, 'Curves'), chartsEl);
  const charts = new Map();
  let lastStep = null;
  let zoomed = false;
  const full = h('button', { type: 'button', class: 'small', hidden: true }, 'whole run');
  const load = async (from, to) => {
    const r = await getJson(`/api/jobs/${id}/curves`, { from, to });
    lastStep = r.lastStep;
    const keys = Object.keys(r.curves);
    const wanted = [
      ...CURVES,
      ...keys
        // A run evaluated on several tasks: their means, and each task's success (not its rewards).
        .filter((k) => k.startsWith('eval_') && (!k.includes('/') || k.startsWith('eval_pc_success/')))
        .map((k) => ({ key: k, title: k.replace(/^eval_/, 'eval '), log: undefined })),
    ];
    for (const c of wanted) {
      if (!charts.has(c.key) && (r.curves[c.key] || CURVES.includes(c))) {
        charts.set(
          c.key,
          new Chart(chartsEl, {
            title: c.title,
            labels: [c.title],
            log: c.log,
            onZoom: zoom,
            points: c.key.startsWith('eval_'),
          }),
        );
      }
    }
    for (const [key, chart] of charts) chart.setCurves([r.curves[key] ?? null], zoomed);
    chartsEl.dataset.rows = String(r.rows);
  };
  // Zooming in fetches the steps in view at full detail (the whole run is cut to ~2,000 points).
  const zoom = (from, to) => {
    zoomed = true;
    full.hidden = false;
    load(from, to).catch((e) => chartsEl.prepend(problem(e.message)));
  };
  full.addEventListener('click', () => {
    zoomed = false;
    full.hidden = true;
    load().catch((e) => chartsEl.prepend(problem(e.message)));
  });
  chartsEl.before(full);
  let curvesLoaded = false;
  try {
    await load();
    curvesLoaded = true;
  } catch (e) {
    // A removed run folder is already said above; anything else is said here.
    if (e.status === 410 && job.problems.length > 0)
      chartsEl.append(h('p', { class: 'hint' }, 'No curves to draw.'));
    else chartsEl.append(problem(e.message));
  }

  const log = h('pre', { class: 'log', id: 'log' });
  page.append(h('h3', {}, 'Log'), log);
  try {
    log.textContent = (await getJson(`/api/jobs/${id}/log`, { lines: 200 })).text || '(the log is empty)';
    log.scrollTop = log.scrollHeight;
  } catch (e) {
    log.replaceWith(problem(e.message));
  }

  page.append(
    h('h3', {}, 'History'),
    h(
      'table',
      { class: 'list' },
      h('thead', {}, h('tr', {}, h('th', {}, 'time'), h('th', {}, 'status'), h('th', {}, 'what'))),
      h(
        'tbody',
        {},
        ...job.events.map((e) =>
          h('tr', {}, h('td', {}, when(e.time)), h('td', {}, badge(e.status)), h('td', {}, e.message)),
        ),
      ),
    ),
    h('details', {}, h('summary', {}, 'Config'), h('pre', { class: 'config' }, job.configYaml)),
  );

  const close = openEvents(
    { list: 1, log: id, ...(curvesLoaded ? { metrics: `${id}:${lastStep ?? ''}` } : {}) },
    {
      jobs: (list) => {
        const now = list.find((j) => j.id === id);
        if (now) update(now);
      },
      metrics: (e) => {
        if (zoomed) return;
        for (const [key, chart] of charts) if (e.curves[key]) chart.append(0, e.curves[key]);
      },
      reset: () => load().catch(() => {}),
      // Said once: a removed run folder is already among the problems.
      problem: (e) => problems.childElementCount === 0 && problems.append(problem(e.message)),
      log: (e) => {
        const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.textContent = (log.textContent + e.text).split('\n').slice(-2000).join('\n');
        if (atEnd) log.scrollTop = log.scrollHeight;
      },
    },
  );
  return () => {
    close();
    for (const c of charts.values()) c.destroy();
  };
}

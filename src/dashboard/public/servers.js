// The Servers page: policy servers (vla serve) whose /metrics the dashboard's process polls. Each shows
// its robots, request rate, latency p50/p99 and batch sizes over time, and its errors; a server that
// stops answering says so, with when it last did.
import { ago, getJson, h, num, openEvents, postJson, problem } from './api.js';
import { Chart } from './chart.js';

const seconds = (t) => t / 1000;

/** One server's card: figures and four charts over the time the dashboard has watched it. */
class ServerCard {
  constructor(parent, state) {
    this.url = state.metricsUrl;
    this.polls = -1;
    this.history = [...state.history];
    this.status = h('div', { class: 'server-status' });
    this.figures = h('dl', { class: 'facts compact' });
    this.chartsEl = h('div', { class: 'charts grid' });
    const remove = h('button', { type: 'button', class: 'small' }, 'stop watching');
    remove.addEventListener('click', async () => {
      await postJson('/api/servers/remove', { url: state.url });
      this.destroy();
    });
    this.el = h(
      'article',
      { class: 'server', dataset: { url: state.metricsUrl } },
      h('div', { class: 'title-row' }, h('h3', {}, state.url), remove),
      this.status,
      this.figures,
      this.chartsEl,
    );
    parent.append(this.el);
    this.charts = {
      rate: new Chart(this.chartsEl, {
        title: 'requests/s',
        labels: ['requests/s', 'errors/s'],
        xLabel: 'time (s)',
        height: 160,
      }),
      latency: new Chart(this.chartsEl, {
        title: 'latency (ms)',
        labels: ['p50', 'p99'],
        xLabel: 'time (s)',
        height: 160,
      }),
      connected: new Chart(this.chartsEl, {
        title: 'connected robots',
        labels: ['connected robots'],
        xLabel: 'time (s)',
        height: 160,
      }),
      batch: new Chart(this.chartsEl, {
        title: 'mean batch size',
        labels: ['mean batch size'],
        xLabel: 'time (s)',
        height: 160,
      }),
    };
    this.update(state, false);
  }

  update(state, append = true) {
    // The reply to "watch this" and the pushed states travel on different connections: a reply
    // that arrives after a push is older than what the card shows.
    if (state.polls < this.polls) return;
    this.polls = state.polls;
    if (append) {
      for (const p of state.history) if (!this.history.some((q) => q.t === p.t)) this.history.push(p);
      if (this.history.length > 1800) this.history.splice(0, this.history.length - 1800);
    }
    this.el.classList.toggle('down', !state.ok);
    const badge = state.ok
      ? h('span', { class: 'badge running' }, 'answering')
      : state.error
        ? h('span', { class: 'badge failed' }, state.lastSeen ? 'not answering' : 'never answered')
        : h('span', { class: 'badge' }, 'first reading…');
    this.status.replaceChildren(
      badge,
      state.ok ? ` · polled ${ago(state.lastSeen)}` : '',
      state.error ? problem(state.error) : '',
    );
    const n = state.now;
    if (n) {
      const last = this.history.at(-1) ?? {};
      const errors =
        Object.entries(n.errors)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ') || 'none';
      const closes =
        Object.entries(n.closes)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ') || 'none';
      const batches =
        n.batchSizes
          .filter((b) => b.calls > 0)
          .map((b) => `≤${b.le}: ${b.calls}`)
          .join(', ') || '-';
      const rows = [
        ['connected robots', n.connected],
        ['requests', n.requests],
        ['requests/s', num(last.requestsPerSec, 3)],
        ['latency p50 / p99', `${num(last.p50Ms ?? n.p50Ms, 3)} / ${num(last.p99Ms ?? n.p99Ms, 3)} ms`],
        ['mean batch size', num(n.batchMean, 3)],
        ['policy calls by batch size', batches],
        ['errors', errors],
        ['closed by the server', closes],
        ['connections', n.connectionsTotal],
      ];
      this.figures.replaceChildren(
        ...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', { dataset: { fact: k } }, String(v))]),
      );
    }
    // A server never heard from has nothing to draw: its error says why.
    this.chartsEl.hidden = this.history.length === 0;
    const t0 = this.history[0]?.t ?? 0;
    const x = this.history.map((p) => seconds(p.t - t0));
    const curve = (key) => ({ x, y: this.history.map((p) => p[key]) });
    this.charts.rate.setCurves([curve('requestsPerSec'), curve('errorsPerSec')]);
    this.charts.latency.setCurves([curve('p50Ms'), curve('p99Ms')]);
    this.charts.connected.setCurves([curve('connected')]);
    this.charts.batch.setCurves([curve('batchMean')]);
  }

  destroy() {
    for (const c of Object.values(this.charts)) c.destroy();
    this.el.remove();
  }
}

export async function mountServers(main) {
  const page = h('section', { class: 'page servers' });
  main.append(page);
  const input = h('input', {
    type: 'text',
    id: 'server-url',
    placeholder: 'ws://127.0.0.1:8000',
    size: 32,
    'aria-label': 'server URL',
  });
  const message = h('div');
  const list = h('div', { class: 'server-list' });
  const cards = new Map();
  const show = (state) => {
    const card = cards.get(state.metricsUrl);
    if (card?.el.isConnected) card.update(state);
    else cards.set(state.metricsUrl, new ServerCard(list, state));
  };
  const form = h('form', { class: 'toolbar' }, input, h('button', { type: 'submit' }, 'Watch'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    message.replaceChildren();
    try {
      show(await postJson('/api/servers', { url: input.value.trim() }));
      input.value = '';
    } catch (err) {
      message.append(problem(err.message));
    }
  });
  page.append(
    h('h2', {}, 'Policy servers'),
    h(
      'p',
      { class: 'hint' },
      'The dashboard reads each server’s /metrics every 2 s (start it with --server URL, or add one here).',
    ),
    form,
    message,
    list,
  );
  try {
    const states = await getJson('/api/servers');
    if (states.length === 0)
      list.append(h('p', { class: 'hint', id: 'no-servers' }, 'No servers watched yet.'));
    for (const s of states) show(s);
  } catch (e) {
    page.append(problem(e.message));
  }
  const close = openEvents(
    { servers: 1 },
    {
      servers: (states) => {
        document.getElementById('no-servers')?.remove();
        for (const s of states) show(s);
      },
    },
  );
  return () => {
    close();
    for (const c of cards.values()) c.destroy();
  };
}

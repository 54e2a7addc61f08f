// The Evaluations pages: every eval_info.json found (success, rewards), the success of runs' periodic
// evaluations over their training steps, and one evaluation in full: per-episode table and videos.
import { getJson, h, mediaUrl, num, problem, section, when } from './api.js';
import { Chart } from './chart.js';

const pct = (v) => (v === undefined || v === null ? '-' : `${v.toFixed(1)}%`);

function evalRow(e) {
  const link = h('a', { href: `#/evals/view?eval=${encodeURIComponent(e.id)}` }, e.dir);
  if (e.error)
    return h('tr', { class: 'gone' }, h('td', {}, link), h('td', { colspan: 6 }, problem(e.error)));
  return h(
    'tr',
    { dataset: { eval: e.id } },
    h('td', {}, link),
    h('td', {}, e.tasks.map((t) => t.task).join(', ')),
    h('td', { class: 'num' }, String(e.overall?.episodes ?? '-')),
    h('td', { class: 'num' }, pct(e.overall?.pc_success)),
    h('td', { class: 'num' }, num(e.overall?.avg_sum_reward)),
    h('td', { class: 'num' }, num(e.overall?.avg_max_reward)),
    h('td', {}, e.checkpoint ?? '-', h('div', { class: 'hint' }, when(e.modified))),
  );
}

export async function mountEvals(main) {
  const page = h('section', { class: 'page evals' });
  main.append(page);
  page.append(h('h2', {}, 'Evaluations'));
  let chart = null;
  await section(page, async () => {
    const evals = await getJson('/api/evals');
    if (evals.length === 0) {
      return h(
        'p',
        { class: 'hint' },
        'No evaluations found: vla sim eval --out DIR writes DIR/eval_info.json; start the dashboard with --evals DIR (default outputs).',
      );
    }
    return h(
      'table',
      { class: 'list', id: 'evals-table' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ...[
            'evaluation',
            'tasks',
            'episodes',
            'success',
            'avg sum reward',
            'avg max reward',
            'checkpoint',
          ].map((t) => h('th', {}, t)),
        ),
      ),
      h('tbody', {}, ...evals.map(evalRow)),
    );
  });
  page.append(h('h3', {}, 'Success over training steps'));
  await section(page, async () => {
    const all = await getJson('/api/evals/training');
    const runs = all.filter((r) => r.error === null);
    const out = h('div', {}, ...all.filter((r) => r.error).map((r) => problem(`${r.label}: ${r.error}`)));
    if (runs.length === 0) {
      out.append(
        h(
          'p',
          { class: 'hint' },
          'No run has periodic evaluations yet (train.eval_task and train.eval_interval in its config).',
        ),
      );
      return out;
    }
    const box = h('div', { class: 'charts' });
    out.append(box);
    chart = new Chart(box, {
      title: 'eval success (%)',
      labels: runs.map((r) => r.label),
      range: [0, 100],
      points: true,
    });
    chart.setCurves(runs.map((r) => r.curves.eval_pc_success ?? Object.values(r.curves)[0] ?? null));
    return out;
  });
  return () => chart?.destroy();
}

function episodeTable(task) {
  return h(
    'table',
    { class: 'list episodes' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ...[
          'episode',
          'seed',
          'prompt',
          'success',
          'sum reward',
          'max reward',
          'steps',
          'success step',
          'error',
        ].map((t) => h('th', {}, t)),
      ),
    ),
    h(
      'tbody',
      {},
      ...task.per_episode.map((e) =>
        h(
          'tr',
          {},
          h('td', { class: 'num' }, String(e.episode_ix)),
          h('td', { class: 'num' }, e.seed ?? '-'),
          h('td', {}, e.prompt ?? '-'),
          h(
            'td',
            {},
            h('span', { class: `badge ${e.success ? 'finished' : 'failed'}` }, e.success ? 'yes' : 'no'),
          ),
          h('td', { class: 'num' }, num(e.sum_reward)),
          h('td', { class: 'num' }, num(e.max_reward)),
          h('td', { class: 'num' }, e.steps ?? '-'),
          h('td', { class: 'num' }, e.success_step ?? '-'),
          h('td', { class: 'error-cell' }, e.error ?? ''),
        ),
      ),
    ),
  );
}

export async function mountEval(main, params) {
  const id = params.get('eval') ?? '';
  const page = h('section', { class: 'page eval' });
  main.append(page);
  page.append(h('p', {}, h('a', { href: '#/evals' }, '← all evaluations')));
  await section(page, async () => {
    const e = await getJson('/api/evals/detail', { eval: id });
    const out = h('div', {}, h('h2', {}, `evaluation ${e.dir}`));
    if (e.error) {
      out.append(problem(e.error));
      return out;
    }
    out.append(
      h(
        'div',
        { class: 'cards' },
        ...e.tasks.map((t) =>
          h(
            'div',
            { class: 'card' },
            h('div', { class: 'card-title' }, t.task),
            h('div', { class: 'big' }, pct(t.pc_success)),
            h('div', {}, `${t.episodes} episodes${t.failed ? `, ${t.failed} with errors` : ''}`),
            h('div', {}, `avg sum reward ${num(t.avg_sum_reward)} · avg max reward ${num(t.avg_max_reward)}`),
          ),
        ),
      ),
      h('p', { class: 'hint' }, `checkpoint ${e.checkpoint ?? '-'} · ${when(e.modified)}`),
    );
    for (const w of e.info.warnings ?? []) out.append(problem(`warning: ${w}`));
    for (const m of e.missingVideos) out.append(problem(`missing video: ${m}`));
    if (e.videoFiles.length > 0) {
      out.append(
        h('h3', {}, 'Videos'),
        h(
          'div',
          { class: 'videos' },
          ...e.videoFiles.map((v) =>
            h(
              'figure',
              { class: 'video' },
              h('video', {
                src: mediaUrl('/api/evals/video', { file: v.id }),
                controls: true,
                muted: true,
                preload: 'metadata',
                'data-file': v.file,
              }),
              h('figcaption', {}, v.file),
            ),
          ),
        ),
      );
    }
    for (const t of e.info.per_task) out.append(h('h3', {}, `${t.task}: episodes`), episodeTable(t));
    return out;
  });
  return undefined;
}

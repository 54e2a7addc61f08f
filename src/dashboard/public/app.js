// The page's router: the part after # names a page and its parameters (#/jobs/3,
// #/datasets/view?dataset=NAME&episode=2); each page mounts into <main> and returns what closes it
// (event streams, timers, charts) when another is opened.
import { problem } from './api.js';
import { mountDataset, mountDatasets } from './datasets.js';
import { mountEval, mountEvals } from './evals.js';
import { mountJob, mountJobs } from './jobs.js';
import { mountServers } from './servers.js';

const ROUTES = [
  [/^\/jobs$/, 'jobs', () => mountJobs],
  [/^\/jobs\/(\d+)$/, 'jobs', (m) => (main, params) => mountJob(main, Number(m[1]), params)],
  [/^\/evals$/, 'evals', () => mountEvals],
  [/^\/evals\/view$/, 'evals', () => mountEval],
  [/^\/datasets$/, 'datasets', () => mountDatasets],
  [/^\/datasets\/view$/, 'datasets', () => mountDataset],
  [/^\/servers$/, 'servers', () => mountServers],
];

const main = document.getElementById('main');
let close = null;
/** Pages opened so far: a page that finishes mounting after another was opened closes at once. */
let opened = 0;

async function show() {
  const mine = ++opened;
  const hash = location.hash.replace(/^#/, '') || '/jobs';
  const [path, query = ''] = hash.split('?');
  const params = new URLSearchParams(query);
  if (close) {
    close();
    close = null;
  }
  main.replaceChildren();
  let page = null;
  for (const [pattern, name, make] of ROUTES) {
    const m = pattern.exec(path);
    if (m) {
      page = { name, mount: make(m) };
      break;
    }
  }
  for (const a of document.querySelectorAll('nav a'))
    a.classList.toggle('active', a.dataset.page === page?.name);
  if (!page) {
    main.append(
      problem(`no page ${JSON.stringify(path)}: the pages are Jobs, Evaluations, Datasets and Servers`),
    );
    return;
  }
  document.body.dataset.page = page.name;
  try {
    const closeThis = (await page.mount(main, params)) ?? null;
    if (mine === opened) close = closeThis;
    else closeThis?.();
  } catch (e) {
    if (mine === opened) main.append(problem(e.message));
  }
}

window.addEventListener('hashchange', show);
show();

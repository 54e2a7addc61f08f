// Talking to the dashboard's server: JSON reads, token-carrying actions, the event stream, and the
// small DOM helpers every page builds with (text always set as text, never parsed as HTML).

const TOKEN = document.querySelector('meta[name="vla-token"]')?.getAttribute('content') ?? '';

/** A failed request, with the server's sentence saying why. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function answer(res) {
  const type = res.headers.get('content-type') ?? '';
  const body = type.includes('application/json') ? await res.json() : { error: await res.text() };
  if (!res.ok) throw new ApiError(res.status, body.error ?? `HTTP ${res.status}`);
  return body;
}

export async function getJson(path, params = {}) {
  const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null));
  const url = q.size > 0 ? `${path}?${q}` : path;
  return answer(await fetch(url, { headers: { 'X-VLA-Token': TOKEN } }));
}

export async function postJson(path, body = {}) {
  return answer(
    await fetch(path, {
      method: 'POST',
      headers: { 'X-VLA-Token': TOKEN, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    }),
  );
}

/** A URL for <img>/<video> (they send the cookie the first page load set). */
export function mediaUrl(path, params) {
  return `${path}?${new URLSearchParams(params)}`;
}

/**
 * The server's event stream for what a page watches (`list`, `metrics`, `log`, `servers`); handlers by
 * event name. Returns a function that closes it.
 */
export function openEvents(params, handlers) {
  const source = new EventSource(`/api/events?${new URLSearchParams(params)}`);
  for (const [name, handle] of Object.entries(handlers)) {
    source.addEventListener(name, (e) => handle(JSON.parse(e.data)));
  }
  const status = document.getElementById('live');
  source.addEventListener('open', () => status?.classList.add('on'));
  source.addEventListener('error', () => status?.classList.remove('on'));
  return () => source.close();
}

/** `h('td', { class: 'num' }, 'text', child)`: an element; strings become text nodes. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** A red box saying what is wrong, naming the thing. */
export function problem(message) {
  return h('div', { class: 'problem', role: 'alert' }, message);
}

/** Four significant digits; exponent form when small (losses and learning rates both read well). */
export function num(v, digits = 4) {
  if (v === undefined || v === null || Number.isNaN(v)) return '-';
  if (!Number.isFinite(v)) return String(v);
  if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(2);
  return String(Number(v.toPrecision(digits)));
}

export function ago(ms) {
  if (!ms) return '-';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)}h ago`;
  return `${(s / 86400).toFixed(1)}d ago`;
}

export const when = (ms) => (ms ? new Date(ms).toLocaleString() : '-');

export function badge(status) {
  return h('span', { class: `badge ${status}` }, status);
}

/** A page's part that loads: a placeholder, then what `render` makes, or the error naming what failed. */
export async function section(parent, render) {
  const slot = h('div', { class: 'loading' }, 'loading…');
  parent.append(slot);
  try {
    const el = await render();
    slot.replaceWith(el ?? '');
  } catch (e) {
    slot.replaceWith(problem(e.message));
  }
}

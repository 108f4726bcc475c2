// Kiln's dashboard: plain JavaScript over the REST API, no framework and
// no build step. Views are `#/…` routes rendered into <main>; every piece
// of text goes in with textContent (never innerHTML), so nothing a build
// log or a request says can become markup.
'use strict';

const STATUS = ['PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'];
const PAGE_SIZE = 50;

let session = null; // {org, admin, csrf}
let events = null; // the EventSource of /v1/events while signed in
let eventHandler = null; // the current view's listener for build events
let leaveView = null; // what the current view closes when it is left

// ---- small helpers ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const main = () => document.getElementById('main');

function toast(text) {
  const box = document.getElementById('toast');
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 4000);
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// A call of the API with the session cookie; state-changing calls carry
// the session's CSRF token.
async function api(method, path, body, contentType) {
  const headers = {};
  if (method !== 'GET') headers['X-Kiln-CSRF'] = session ? session.csrf : '';
  let payload;
  if (body !== undefined) {
    if (contentType) { headers['Content-Type'] = contentType; payload = body; }
    else { headers['Content-Type'] = 'application/json'; payload = JSON.stringify(body); }
  }
  const answer = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
  if (answer.status === 204) return null;
  const text = await answer.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!answer.ok) {
    const message = json && json.error ? json.error.message : `${answer.status} ${answer.statusText}`;
    if (answer.status === 401 && path !== '/ui/session') { signedOut(message); }
    throw new ApiError(answer.status, message);
  }
  return json;
}

const short = (s, n) => (s && s.length > n ? s.slice(0, n) : s || '');
const statusName = (s) => String(s || '').replace('BUILD_STATUS_', '');

function badge(status) {
  const name = statusName(status);
  return h('span', { class: `badge s-${name}` }, name.toLowerCase());
}

function duration(ms) {
  if (ms === null || ms === undefined) return '';
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function ago(time) {
  if (!time) return '';
  const s = Math.max(0, (Date.now() - Date.parse(time)) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(time).toLocaleDateString();
}

function bytes(n) {
  if (n === null || n === undefined) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function buildDuration(b) {
  if (b.metrics) return b.metrics.durationMs;
  if (b.startTime) return (b.finishTime ? Date.parse(b.finishTime) : Date.now()) - Date.parse(b.startTime);
  return null;
}

function cacheRatio(b) {
  const m = b.metrics;
  if (!m || !m.totalSteps) return '';
  return `${m.cachedSteps}/${m.totalSteps}`;
}

function trigger(b) {
  if (!b.trigger) return 'API';
  const t = b.trigger;
  const kind = String(t.kind || '').toLowerCase();
  return t.pusher ? `${kind} by ${t.pusher}` : kind;
}

function copyButton(text, what) {
  return h('button', {
    type: 'button', class: 'copy', 'aria-label': `Copy ${what}`,
    onclick: async () => {
      try { await navigator.clipboard.writeText(text); toast(`Copied ${what}`); }
      catch (_) { toast(`Copy failed: select the text instead`); }
    },
  }, 'Copy');
}

function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  const parts = [h('label', { for: id }, label), input];
  if (hint) parts.push(h('p', { class: 'hint' }, hint));
  return parts;
}

function showError(where, error) {
  where.replaceChildren(h('p', { class: 'error-text', role: 'alert' }, error.message || String(error)));
}

// ---- session and routing ----

function signedOut(message) {
  session = null;
  if (events) { events.close(); events = null; }
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  if (!location.hash.startsWith('#/signin')) {
    signInView(message);
  }
}

function openEvents() {
  if (events) events.close();
  events = new EventSource('/v1/events');
  const deliver = (e) => {
    let event;
    try { event = JSON.parse(e.data); } catch (_) { return; }
    if (eventHandler) eventHandler(event);
  };
  for (const type of ['build.queued', 'build.started', 'build.succeeded', 'build.failed', 'build.cancelled']) {
    events.addEventListener(type, deliver);
  }
  events.addEventListener('reset', () => { if (eventHandler) eventHandler({ type: 'reset' }); });
  events.addEventListener('error', (e) => {
    // An event named `error` from the server (with data): the session
    // ended. Without data: the connection dropped, and EventSource
    // reconnects by itself, resuming with Last-Event-ID.
    if (e.data) { events.close(); events = null; signedOut('Your session ended.'); }
  });
}

function signedIn(view) {
  session = view;
  document.getElementById('nav').hidden = false;
  document.getElementById('who').hidden = false;
  document.getElementById('who-org').textContent = `${view.org}${view.admin ? ' (admin)' : ''}`;
  openEvents();
}

function setView(title, nav, ...content) {
  if (leaveView) { leaveView(); leaveView = null; }
  eventHandler = null;
  document.title = `${title} · Kiln`;
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  main().replaceChildren(...content);
}

function route() {
  if (!session) { signInView(); return; }
  const hash = location.hash || '#/builds';
  const [path, query] = hash.slice(1).split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  if (parts[0] === 'builds' && parts[1]) buildView(decodeURIComponent(parts[1]));
  else if (parts[0] === 'new') newBuildView(params);
  else if (parts[0] === 'trends') trendsView(params);
  else if (parts[0] === 'secrets') secretsView();
  else if (parts[0] === 'plugins') pluginsView();
  else buildsView(params);
  main().focus();
}

// ---- sign in ----

function signInView(message) {
  const token = h('input', { type: 'password', name: 'token', autocomplete: 'off', required: true, spellcheck: 'false' });
  const problem = h('div', { 'aria-live': 'assertive' }, message ? h('p', { class: 'error-text' }, message) : null);
  const form = h('form', {
    class: 'signin',
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const view = await api('POST', '/ui/session', { token: token.value.trim() });
        token.value = '';
        signedIn(view);
        if (!location.hash || location.hash.startsWith('#/signin')) location.hash = '#/builds';
        else route();
      } catch (error) { showError(problem, error); }
    },
  },
  h('h1', {}, 'Sign in to Kiln'),
  field('Token', token, 'An organization token, or the operator’s admin token (<data-dir>/admin-token). It is exchanged for a session cookie and not kept by the browser.'),
  problem,
  h('p', {}, h('button', { type: 'submit', class: 'primary' }, 'Sign in')));
  setView('Sign in', null, form);
  token.focus();
}

async function signOut() {
  try { await api('DELETE', '/ui/session'); } catch (_) { /* already ended */ }
  signedOut();
  location.hash = '#/signin';
}

// ---- builds ----

function buildRow(b) {
  const git = b.source && b.source.git;
  const ref = (b.imageRefs || [])[0];
  return h('tr', { 'data-build': b.buildId },
    h('td', {}, badge(b.status)),
    h('td', {}, h('a', { href: `#/builds/${encodeURIComponent(b.buildId)}` }, `#${b.number} ${b.name}`)),
    h('td', { class: 'hide-narrow' }, git ? [git.branch || git.reference, ' ', h('code', {}, short(git.commit, 8))] : (b.source ? b.source.kind : '')),
    h('td', { class: 'hide-narrow' }, b.request ? b.request.builder : ''),
    h('td', { class: 'hide-narrow' }, trigger(b)),
    h('td', {}, h('time', { datetime: b.createTime, title: b.createTime }, ago(b.createTime))),
    h('td', { class: 'num' }, duration(buildDuration(b))),
    h('td', { class: 'num hide-narrow' }, cacheRatio(b)),
    h('td', { class: 'hide-narrow' }, ref ? h('span', { class: 'ref' }, h('code', {}, ref), copyButton(ref, 'image reference')) : '',
      b.digest ? h('div', { class: 'hint mono', title: b.digest }, short(b.digest, 19)) : null));
}

function buildsView(params) {
  const status = h('select', { name: 'status' }, h('option', { value: '' }, 'any'),
    STATUS.map((s) => h('option', { value: `BUILD_STATUS_${s}`, selected: params.get('status') === `BUILD_STATUS_${s}` }, s.toLowerCase())));
  const name = h('input', { name: 'name', value: params.get('name') || '', size: 16 });
  const branch = h('input', { name: 'branch', value: params.get('branch') || '', size: 14 });
  const filters = h('form', {
    class: 'filters', role: 'search', 'aria-label': 'Filter builds',
    onsubmit: (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      if (status.value) q.set('status', status.value);
      if (name.value.trim()) q.set('name', name.value.trim());
      if (branch.value.trim()) q.set('branch', branch.value.trim());
      location.hash = `#/builds?${q}`;
    },
  }, h('div', {}, field('Status', status)), h('div', {}, field('Name', name)), h('div', {}, field('Branch', branch)),
  h('button', { type: 'submit' }, 'Filter'));
  const body = h('tbody');
  const table = h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', { class: 'sr-only' }, 'Builds, newest first'),
    h('thead', {}, h('tr', {}, ['Status', 'Build', 'Branch / commit', 'Builder', 'Trigger', 'Queued', 'Duration', 'Cache', 'Image'].map((c, i) =>
      h('th', { scope: 'col', class: [6, 7].includes(i) ? 'num' : ([2, 3, 4, 7, 8].includes(i) ? 'hide-narrow' : null) }, c)))),
    body));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const state = h('p', { class: 'hint', 'aria-live': 'polite' }, 'Loading…');
  setView('Builds', 'builds', h('h1', {}, 'Builds'), filters, state, table, pager);

  const query = new URLSearchParams({ pageSize: params.get('pageSize') || String(PAGE_SIZE) });
  for (const key of ['status', 'name', 'branch', 'pageToken']) if (params.get(key)) query.set(key, params.get(key));
  const firstPage = !params.get('pageToken');
  const matches = (b) => (!params.get('status') || b.status === params.get('status'))
    && (!params.get('name') || b.name === params.get('name'))
    && (!params.get('branch') || (b.source && b.source.git && b.source.git.branch === params.get('branch')));
  api('GET', `/v1/builds?${query}`).then((list) => {
    body.replaceChildren(...list.builds.map(buildRow));
    state.textContent = list.builds.length ? '' : 'No builds yet. Start one from “New build”.';
    const links = [];
    if (!firstPage) {
      const q = new URLSearchParams(params); q.delete('pageToken');
      links.push(h('a', { href: `#/builds?${q}` }, 'Newest'));
    }
    if (list.nextPageToken) {
      const q = new URLSearchParams(params); q.set('pageToken', list.nextPageToken);
      links.push(h('a', { href: `#/builds?${q}`, rel: 'next' }, 'Older'));
    }
    pager.replaceChildren(...links);
  }).catch((error) => showError(state, error));

  // Live: a build that changes is fetched again and its row replaced; a
  // new one matching the filters goes on top of the first page.
  eventHandler = async (event) => {
    if (event.type === 'reset') { route(); return; }
    const id = event.data && event.data.buildId;
    if (!id) return;
    const row = body.querySelector(`tr[data-build="${CSS.escape(id)}"]`);
    if (!row && !firstPage) return;
    try {
      const b = await api('GET', `/v1/builds/${encodeURIComponent(id)}`);
      const current = body.querySelector(`tr[data-build="${CSS.escape(id)}"]`);
      if (current) current.replaceWith(buildRow(b));
      else if (matches(b)) { body.prepend(buildRow(b)); state.textContent = ''; }
    } catch (_) { /* gone meanwhile */ }
  };
}

// ---- one build ----

const STEP = /^#(\d+) (.*)$/;
/// Lines a step shows when opened; earlier ones wait behind a button.
const STEP_LINES_SHOWN = 2000;

// A build's log, folded by BuildKit step (`#N …`); other lines (Kiln's
// own, a container's) go in the step they follow, or the first group.
// Lines are kept as data and put on the page only for open steps (the
// last STEP_LINES_SHOWN of a step at first), so a 100,000-line log shows
// its steps at once and costs DOM only for what is read. While the build
// runs, the step being written is open and closes when it is done.
class LogView {
  constructor() {
    this.root = h('div', { class: 'log', role: 'log', 'aria-label': 'Build log', 'data-lines': '0' });
    this.steps = new Map();
    this.lines = [];
    this.pending = [];
    this.scheduled = false;
    this.live = false;
    this.current = this.group('setup', 'Kiln');
    this.current.details.open = true;
  }

  group(key, title) {
    const name = h('span', { class: 'name' }, title);
    const state = h('span', { class: 'state' });
    const count = h('span', { class: 'took count' });
    const took = h('span', { class: 'took' });
    const box = h('div', { class: 'lines' });
    const details = h('details', { 'data-step': key }, h('summary', {}, name, state, count, took), box);
    const step = { details, name, state, count, took, box, key, lines: [], from: 0, to: 0, status: null };
    details.addEventListener('toggle', () => { if (details.open) this.render(step); });
    this.steps.set(key, step);
    this.root.append(details);
    return step;
  }

  add(line) {
    this.pending.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      requestAnimationFrame(() => this.flush());
    }
  }

  // Lines are sorted into steps in batches, once per frame.
  flush() {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = [];
    const touched = new Set();
    for (const line of batch) {
      this.lines.push(line);
      let step = this.current;
      let text = line.line;
      const m = STEP.exec(text);
      if (m) {
        const key = m[1];
        step = this.steps.get(key);
        if (!step) {
          step = this.group(key, `#${key} ${m[2]}`);
          if (this.live) { step.details.open = true; step.autoOpened = true; }
        }
        this.current = step;
        const rest = m[2];
        if (rest === 'CACHED') this.mark(step, 'CACHED');
        else if (rest.startsWith('DONE')) { this.mark(step, 'DONE'); step.took.textContent = rest.slice(5); }
        else if (rest.startsWith('ERROR')) { this.mark(step, 'ERROR'); step.details.open = true; }
        text = rest;
      }
      step.lines.push({ seq: line.seq, time: line.time, text, error: line.stream === 'stderr' && /error/i.test(text) });
      touched.add(step);
    }
    for (const step of touched) {
      step.count.textContent = `${step.lines.length} ${step.lines.length === 1 ? 'line' : 'lines'}`;
      if (step.autoOpened && (step.status === 'DONE' || step.status === 'CACHED')) {
        step.details.open = false;
        step.autoOpened = false;
      }
      if (step.details.open) this.render(step);
    }
    this.root.dataset.lines = String(this.lines.length);
    if (this.onflush) this.onflush();
  }

  lineElement(l) {
    return h('div', { class: l.error ? 'l err' : 'l', 'data-seq': l.seq },
      h('span', { class: 'ts' }, l.time ? l.time.slice(11, 23) : ''), l.text);
  }

  // Put an open step's unshown lines on the page: new ones at the end; on
  // first opening only the last STEP_LINES_SHOWN, the rest behind a button.
  render(step, all) {
    if (step.to === 0 && !all) step.from = step.to = Math.max(0, step.lines.length - STEP_LINES_SHOWN);
    const fragment = document.createDocumentFragment();
    for (let i = step.to; i < step.lines.length; i++) fragment.append(this.lineElement(step.lines[i]));
    step.box.append(fragment);
    step.to = step.lines.length;
    if (all && step.from > 0) {
      const earlier = document.createDocumentFragment();
      for (let i = 0; i < step.from; i++) earlier.append(this.lineElement(step.lines[i]));
      step.from = 0;
      step.box.prepend(earlier);
    }
    if (step.from > 0 && !step.more) {
      step.more = h('button', { type: 'button', class: 'link', onclick: () => this.render(step, true) }, `Show ${step.from} earlier lines`);
      step.box.prepend(step.more);
    } else if (step.from === 0 && step.more) {
      step.more.remove();
      step.more = null;
    }
  }

  expandAll() {
    for (const step of this.steps.values()) {
      step.details.open = true;
      this.render(step, true);
    }
  }

  mark(step, state) {
    step.state.replaceChildren(h('span', { class: `badge b-${state}` }, state));
    step.status = state;
  }

  failingStep() {
    let failing = null;
    for (const step of this.steps.values()) if (step.status === 'ERROR') failing = step;
    return failing;
  }

  text() {
    return this.lines.map((l) => `${l.time} ${l.line}`).join('\n') + '\n';
  }

  // Every matching line: its step opened (all of it), the line marked.
  find(term) {
    for (const el of this.root.querySelectorAll('.l.hit')) el.classList.remove('hit');
    if (!term) return 0;
    const needle = term.toLowerCase();
    let hits = 0;
    let first = null;
    for (const step of this.steps.values()) {
      const seqs = new Set(step.lines.filter((l) => l.text.toLowerCase().includes(needle)).map((l) => String(l.seq)));
      if (!seqs.size) continue;
      hits += seqs.size;
      step.details.open = true;
      this.render(step, true);
      for (const el of step.box.querySelectorAll('.l')) {
        if (seqs.has(el.dataset.seq)) {
          el.classList.add('hit');
          if (!first) first = el;
        }
      }
    }
    if (first) first.scrollIntoView({ block: 'center' });
    return hits;
  }
}

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== '' && v !== null && v !== undefined && !(Array.isArray(v) && !v.length))
    .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function rebuildRequest(b) {
  const r = b.request || {};
  const source = b.source || {};
  const body = { name: b.name };
  if (source.git) {
    body.gitSource = { url: source.git.url, reference: source.git.commit || source.git.reference };
    if (source.git.contextDir) body.gitSource.contextDir = source.git.contextDir;
  } else if (source.contextId) {
    body.contextId = source.contextId;
  } else if (source.url) {
    body.contextUrl = source.url;
  } else {
    return null;
  }
  if (r.contextDir && !source.git) body.contextDir = r.contextDir;
  for (const key of ['dockerfile', 'builder', 'target', 'platform', 'profile']) if (r[key]) body[key] = r[key];
  if (r.platforms && r.platforms.length) body.platforms = r.platforms;
  if (r.tags && r.tags.length) body.tags = r.tags;
  if (r.buildArgs && Object.keys(r.buildArgs).length) body.buildArgs = r.buildArgs;
  if (r.secrets && r.secrets.length) body.secrets = r.secrets;
  if (r.secretBuildArgs && r.secretBuildArgs.length) body.secretBuildArgs = r.secretBuildArgs;
  if (r.noCache) body.noCache = true;
  if (r.timeoutSecs) body.timeoutSecs = r.timeoutSecs;
  return body;
}

function buildView(id) {
  const header = h('div', { class: 'head' });
  const banner = h('div');
  const details = h('div', { class: 'cols' });
  const log = new LogView();
  const findInput = h('input', { type: 'search', 'aria-label': 'Find in log', placeholder: 'Find in log' });
  const findCount = h('span', { class: 'hint', 'aria-live': 'polite' });
  const showTimes = h('input', { type: 'checkbox', id: 'show-ts', onchange: () => log.root.classList.toggle('show-ts', showTimes.checked) });
  const download = h('button', {
    type: 'button',
    onclick: () => {
      const url = URL.createObjectURL(new Blob([log.text()], { type: 'text/plain' }));
      const a = h('a', { href: url, download: `kiln-build-${id}.log` });
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    },
  }, 'Download log');
  const expand = h('button', { type: 'button', class: 'expand-all', onclick: () => log.expandAll() }, 'Expand all');
  const logState = h('span', { class: 'hint', 'aria-live': 'polite' });
  const bar = h('form', {
    class: 'logbar', role: 'search', 'aria-label': 'Find in log',
    onsubmit: (e) => { e.preventDefault(); const n = log.find(findInput.value); findCount.textContent = findInput.value ? `${n} matching lines` : ''; },
  }, findInput, h('button', { type: 'submit' }, 'Find'), findCount,
  h('span', {}, showTimes, ' ', h('label', { for: 'show-ts' }, 'Timestamps')), expand, download, logState);
  setView(`Build ${id}`, 'builds', header, banner, details, h('h2', {}, 'Log'), bar, log.root);

  let stream = null;
  let finished = false;
  const render = (b) => {
    finished = ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(statusName(b.status));
    log.live = !finished;
    document.title = `#${b.number} ${b.name} · Kiln`;
    const cancel = h('button', {
      type: 'button', class: 'danger', disabled: finished,
      onclick: async () => {
        try { render(await api('POST', `/v1/builds/${encodeURIComponent(id)}:cancel`)); toast('Cancelled'); }
        catch (error) { toast(error.message); }
      },
    }, 'Cancel');
    const again = rebuildRequest(b);
    const rebuild = h('button', {
      type: 'button', disabled: !again,
      title: again ? null : 'An inline context is not kept after its build: upload it as an archive to rebuild',
      onclick: async () => {
        try {
          const accepted = await api('POST', '/v1/builds', again);
          location.hash = `#/builds/${encodeURIComponent(accepted.buildId)}`;
        } catch (error) { toast(error.message); }
      },
    }, 'Rebuild');
    header.replaceChildren(badge(b.status), h('h1', {}, `#${b.number} ${b.name}`), h('div', { class: 'actions' }, cancel, rebuild));
    if (b.failure) {
      banner.replaceChildren(h('div', { class: 'banner', role: 'alert' },
        h('strong', {}, b.failure.reason), ' ', b.failure.message,
        b.failure.hint ? h('p', { class: 'hint' }, b.failure.hint) : null));
    } else banner.replaceChildren();
    const m = b.metrics || {};
    const git = b.source && b.source.git;
    const r = b.request || {};
    const refs = (b.imageRefs || []).map((ref) => h('div', { class: 'ref' }, h('code', {}, ref), copyButton(ref, 'image reference')));
    details.replaceChildren(
      h('section', {}, h('h2', {}, 'Result'), facts([
        ['Status', statusName(b.status).toLowerCase()],
        ['Images', refs],
        ['Digest', b.digest ? h('code', {}, b.digest) : ''],
        ['Platforms', (b.platforms || []).map((p) => h('div', {}, `${p.platform}: `, h('code', { title: p.digest }, short(p.digest, 19)),
          ` ${bytes(p.sizeBytes)}, ${p.layerCount} layers${p.engine ? `, engine ${p.engine}` : ''}`))],
        ['Engine', b.engine],
        ['Cache from', (b.cacheFrom || []).map((c) => h('div', {}, h('code', {}, c)))],
        ['Queued', b.createTime ? new Date(b.createTime).toLocaleString() : ''],
        ['Duration', duration(buildDuration(b))],
        ['Cache', m.totalSteps ? `${m.cachedSteps} of ${m.totalSteps} steps cached` : ''],
        ['Image size', bytes(m.imageSizeBytes)],
        ['Layers', m.layerCount],
        ['Phases', m.phases ? `queued ${duration(m.phases.queuedMs)}, context ${duration(m.phases.contextMs)}, build ${duration(m.phases.buildMs)}, push ${duration(m.phases.pushMs)}` : ''],
        ['Attachments', (b.attachments || []).map((a) => h('div', {}, `${a.kind}: `, h('code', {}, a.reference)))],
      ])),
      h('section', {}, h('h2', {}, 'Source and request'), facts([
        ['Source', b.source ? b.source.kind : ''],
        ['Repository', git ? git.url : ''],
        ['Ref', git ? (git.branch || git.reference) : ''],
        ['Commit', git && git.commit ? h('code', {}, git.commit) : ''],
        ['Context dir', git ? git.contextDir : r.contextDir],
        ['Context', b.source && b.source.contextId ? h('code', {}, b.source.contextId) : ''],
        ['Dockerfile', r.dockerfile],
        ['Builder', r.builder],
        ['Platform', r.platform || (r.platforms || []).join(', ')],
        ['Profile', b.profileUsed || r.profile],
        ['Tags', (r.tags || []).join(', ')],
        ['Build args', Object.entries(r.buildArgs || {}).map(([k, v]) => `${k}=${v}`).join(', ')],
        ['Secrets', (r.secrets || []).join(', ')],
        ['Trigger', trigger(b)],
        ['Wizard', b.wizard ? `${b.wizard.stack} (${(b.wizard.reasons || []).join('; ')})` : ''],
      ])));
    if (finished) {
      const failing = log.failingStep();
      if (failing && b.failure) { failing.details.open = true; }
    }
  };

  const openLog = () => {
    stream = new EventSource(`/v1/builds/${encodeURIComponent(id)}/logs?fromStart=true&follow=true`);
    stream.addEventListener('log', (e) => {
      try { log.add(JSON.parse(e.data)); } catch (_) { /* not a line */ }
      logState.textContent = '';
    });
    stream.addEventListener('end', async () => {
      stream.close();
      try { render(await api('GET', `/v1/builds/${encodeURIComponent(id)}`)); } catch (_) { /* keep what is shown */ }
      logState.textContent = `${log.lines.length + log.pending.length} lines`;
      log.root.dataset.ended = 'true';
      const failing = log.failingStep();
      if (failing) { failing.details.open = true; }
    });
    stream.addEventListener('error', (e) => {
      if (e.data) { stream.close(); signedOut('Your session ended.'); return; }
      // Dropped: EventSource reconnects with Last-Event-ID, so no line is
      // lost or repeated.
      if (stream.readyState !== EventSource.CLOSED) logState.textContent = 'Reconnecting…';
    });
  };

  api('GET', `/v1/builds/${encodeURIComponent(id)}`).then((b) => { render(b); openLog(); })
    .catch((error) => { showError(header, error); });
  eventHandler = async (event) => {
    if (!event.data || event.data.buildId !== id) return;
    try { render(await api('GET', `/v1/builds/${encodeURIComponent(id)}`)); } catch (_) { /* keep */ }
  };
  leaveView = () => { if (stream) stream.close(); };
}

// ---- new build ----

// A folder picked in the browser, as an uncompressed tar (ustar): the
// upload API takes tar, tar.gz or zip.
async function tarOf(files, strip) {
  const enc = new TextEncoder();
  const chunks = [];
  const octal = (n, len) => n.toString(8).padStart(len - 1, '0') + '\0';
  for (const file of files) {
    let path = file.webkitRelativePath || file.name;
    if (strip && path.includes('/')) path = path.slice(path.indexOf('/') + 1);
    let name = path;
    let prefix = '';
    if (enc.encode(name).length > 100) {
      const cut = path.lastIndexOf('/', 154);
      prefix = path.slice(0, cut); name = path.slice(cut + 1);
    }
    const header = new Uint8Array(512);
    const put = (text, at, len) => header.set(enc.encode(text).slice(0, len), at);
    put(name, 0, 100);
    put(octal(0o644, 8), 100, 8);
    put(octal(0, 8), 108, 8);
    put(octal(0, 8), 116, 8);
    put(octal(file.size, 12), 124, 12);
    put(octal(Math.floor(file.lastModified / 1000), 12), 136, 12);
    put('        ', 148, 8);
    put('0', 156, 1);
    put('ustar\0', 257, 6);
    put('00', 263, 2);
    put(prefix, 345, 155);
    let sum = 0;
    for (const byte of header) sum += byte;
    put(octal(sum, 7) + ' ', 148, 8);
    chunks.push(header, new Uint8Array(await file.arrayBuffer()));
    const pad = (512 - (file.size % 512)) % 512;
    if (pad) chunks.push(new Uint8Array(pad));
  }
  chunks.push(new Uint8Array(1024));
  return new Blob(chunks, { type: 'application/x-tar' });
}

function lines(text) {
  return text.split('\n').map((l) => l.trim()).filter(Boolean);
}

function newBuildView(params) {
  const out = h('div', { 'aria-live': 'polite' });
  const name = h('input', { name: 'name', required: true, pattern: '[a-z0-9][a-z0-9._-]*', value: params.get('name') || '' });
  const kindGit = h('input', { type: 'radio', name: 'kind', value: 'git', id: 'kind-git', checked: true });
  const kindUpload = h('input', { type: 'radio', name: 'kind', value: 'upload', id: 'kind-upload' });
  const gitUrl = h('input', { name: 'gitUrl', class: 'wide', placeholder: 'https://git.example.com/team/app.git' });
  const gitRef = h('input', { name: 'gitRef', placeholder: 'main' });
  const gitDir = h('input', { name: 'gitContextDir', placeholder: '(the repository root)' });
  const archive = h('input', { type: 'file', name: 'archive', accept: '.zip,.tar,.tar.gz,.tgz,application/zip,application/x-tar,application/gzip' });
  const folder = h('input', { type: 'file', name: 'folder', webkitdirectory: true, multiple: true });
  const dockerfile = h('input', { name: 'dockerfile', placeholder: 'Dockerfile' });
  const tags = h('input', { name: 'tags', placeholder: 'latest' });
  const buildArgs = h('textarea', { name: 'buildArgs', rows: 3, cols: 40, placeholder: 'KEY=value, one per line' });
  const builder = h('select', { name: 'builder' }, h('option', { value: '' }, 'default'));
  const profile = h('select', { name: 'profile' }, ['', 'auto', 'small', 'medium', 'large'].map((p) => h('option', { value: p }, p || 'default')));
  const secrets = h('div', { class: 'hint' }, 'No build secrets saved.');
  const noCache = h('input', { type: 'checkbox', id: 'no-cache', name: 'noCache' });
  const gitBox = h('fieldset', {}, h('legend', {}, 'Git repository'), field('URL', gitUrl), field('Branch, tag or commit', gitRef), field('Context directory', gitDir));
  const uploadBox = h('fieldset', { hidden: true }, h('legend', {}, 'Upload'),
    field('An archive (zip, tar or tar.gz)', archive), field('…or a folder', folder, 'A folder is packed into a tar in the browser, then uploaded.'));
  const detectOut = h('div', { 'aria-live': 'polite' });
  let uploadedId = null;
  const pick = () => { gitBox.hidden = !kindGit.checked; uploadBox.hidden = !kindUpload.checked; uploadedId = null; };
  kindGit.addEventListener('change', pick);
  kindUpload.addEventListener('change', pick);
  archive.addEventListener('change', () => { uploadedId = null; });
  folder.addEventListener('change', () => { uploadedId = null; });

  const upload = async () => {
    if (uploadedId) return uploadedId;
    let blob;
    if (archive.files.length) blob = archive.files[0];
    else if (folder.files.length) blob = await tarOf(Array.from(folder.files), true);
    else throw new Error('Choose an archive or a folder to upload.');
    out.replaceChildren(h('p', {}, `Uploading ${bytes(blob.size)}…`));
    const answer = await api('POST', '/v1/contexts', blob, 'application/octet-stream');
    uploadedId = answer.contextId;
    return uploadedId;
  };

  const detect = h('button', {
    type: 'button', class: 'detect',
    onclick: async () => {
      detectOut.replaceChildren(h('p', {}, 'Detecting…'));
      try {
        let source;
        if (kindGit.checked) {
          if (!gitUrl.value.trim()) throw new Error('Give the repository URL.');
          source = { gitSource: { url: gitUrl.value.trim() } };
          if (gitRef.value.trim()) source.gitSource.reference = gitRef.value.trim();
        } else {
          source = { contextId: await upload() };
        }
        out.replaceChildren();
        const answer = await api('POST', '/v1/wizard:detect', { ...source, monorepo: true });
        if (!answer.detected) { detectOut.replaceChildren(h('p', {}, 'The wizard recognizes no stack here: add a Dockerfile.')); return; }
        detectOut.replaceChildren(h('h2', {}, 'What the wizard sees'), ...answer.projects.map((p) => h('section', {},
          h('h3', {}, `${p.path || '(root)'}: ${p.stack}${p.tool ? ` with ${p.tool}` : ''}`),
          h('ul', {}, (p.reasons || []).map((r) => h('li', {}, r))),
          p.hasDockerfile ? h('p', {}, 'It has its own Dockerfile, which is used.') :
            h('details', {}, h('summary', {}, 'The Dockerfile it would write'), h('pre', { class: 'log lines' }, p.dockerfile)),
          answer.projects.length > 1 ? h('button', { type: 'button', class: 'use-project', onclick: () => { gitDir.value = p.contextDir; ctxDir.value = p.contextDir; toast(`Context directory: ${p.contextDir || 'the root'}`); } }, `Use ${p.contextDir || 'the root'}`) : null)));
      } catch (error) { showError(detectOut, error); }
    },
  }, 'Detect with the wizard');
  const ctxDir = h('input', { name: 'contextDir', placeholder: '(the archive root)' });
  uploadBox.append(...field('Context directory', ctxDir));

  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      const body = { name: name.value.trim() };
      try {
        if (kindGit.checked) {
          if (!gitUrl.value.trim()) throw new Error('Give the repository URL.');
          body.gitSource = { url: gitUrl.value.trim() };
          if (gitRef.value.trim()) body.gitSource.reference = gitRef.value.trim();
          if (gitDir.value.trim()) body.gitSource.contextDir = gitDir.value.trim();
        } else {
          body.contextId = await upload();
          if (ctxDir.value.trim()) body.contextDir = ctxDir.value.trim();
        }
        if (dockerfile.value.trim()) body.dockerfile = dockerfile.value.trim();
        const tagList = tags.value.split(',').map((t) => t.trim()).filter(Boolean);
        if (tagList.length) body.tags = tagList;
        const args = {};
        for (const line of lines(buildArgs.value)) {
          const at = line.indexOf('=');
          if (at < 1) throw new Error(`Build argument “${line}” is not KEY=value.`);
          args[line.slice(0, at)] = line.slice(at + 1);
        }
        if (Object.keys(args).length) body.buildArgs = args;
        if (builder.value) body.builder = builder.value;
        if (profile.value) body.profile = profile.value;
        const chosen = Array.from(secrets.querySelectorAll('input:checked')).map((i) => i.value);
        if (chosen.length) body.secrets = chosen;
        if (noCache.checked) body.noCache = true;
        const accepted = await api('POST', '/v1/builds', body);
        location.hash = `#/builds/${encodeURIComponent(accepted.buildId)}`;
      } catch (error) { showError(out, error); }
    },
  },
  h('h1', {}, 'New build'),
  field('Image name', name, 'Lower-case letters, digits, ., _ and -; the image goes to <registry>/<organization>/<name>.'),
  h('fieldset', {}, h('legend', {}, 'Source'),
    h('div', {}, kindGit, ' ', h('label', { for: 'kind-git', class: 'inline' }, 'Git repository')),
    h('div', {}, kindUpload, ' ', h('label', { for: 'kind-upload', class: 'inline' }, 'Upload a folder or an archive'))),
  gitBox, uploadBox,
  h('p', {}, detect, ' ', h('span', { class: 'hint' }, 'What the Dockerfile wizard sees here, without building: the stack, why, and the Dockerfile it would write.')),
  detectOut,
  h('fieldset', {}, h('legend', {}, 'Build'),
    field('Dockerfile', dockerfile, 'Relative to the context; none and no Dockerfile there: the wizard writes one.'),
    field('Tags', tags, 'Comma-separated.'),
    field('Build arguments', buildArgs),
    field('Builder', builder), field('Profile', profile),
    h('div', {}, h('span', { class: 'label' }, 'Secrets to mount'), secrets),
    h('p', {}, noCache, ' ', h('label', { for: 'no-cache', class: 'inline' }, 'Build without cache'))),
  out,
  h('p', {}, h('button', { type: 'submit', class: 'primary' }, 'Start build')));
  setView('New build', 'new', form);

  api('GET', '/v1/plugins').then((list) => {
    const ids = [];
    for (const p of list.plugins) for (const b of (p.kinds.builder || [])) ids.push(b);
    builder.append(...ids.map((b) => h('option', { value: b }, b)));
  }).catch(() => {});
  api('GET', '/v1/secrets').then((saved) => {
    const names = Object.keys(saved.buildSecrets || {});
    if (names.length) {
      secrets.replaceChildren(...names.map((n, i) => h('div', {}, h('input', { type: 'checkbox', value: n, id: `secret-${i}` }), ' ', h('label', { for: `secret-${i}`, class: 'inline' }, n))));
    }
  }).catch(() => {});
}

// ---- trends ----

function barChart(title, values, format, failed) {
  const width = 720; const height = 160; const pad = 24;
  const max = Math.max(1, ...values);
  // Bars as wide as 30 builds' would be at most, so a few do not fill the chart.
  const step = Math.min((width - pad) / 30, (width - pad) / Math.max(values.length, 1));
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${title}: ${values.map(format).join(', ')}`);
  const add = (tag, attrs, text) => {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text) el.textContent = text;
    svg.append(el);
    return el;
  };
  add('line', { class: 'axis', x1: pad, y1: height - pad, x2: width, y2: height - pad });
  add('text', { x: 0, y: 12 }, format(max));
  values.forEach((v, i) => {
    const barHeight = ((height - 2 * pad) * v) / max;
    const bar = add('rect', { class: failed[i] ? 'bar failed' : 'bar', x: pad + i * step + 2, y: height - pad - barHeight, width: Math.max(step - 4, 1), height: barHeight });
    const tip = document.createElementNS('http://www.w3.org/2000/svg', 'title');
    tip.textContent = format(v);
    bar.append(tip);
  });
  return svg;
}

function trendsView(params) {
  const name = h('input', { name: 'name', value: params.get('name') || '', required: true });
  const out = h('div');
  const now = h('div', { class: 'stats' });
  const form = h('form', {
    class: 'filters',
    onsubmit: (e) => { e.preventDefault(); location.hash = `#/trends?name=${encodeURIComponent(name.value.trim())}`; },
  }, h('div', {}, field('Image name', name)), h('button', { type: 'submit' }, 'Show'));
  setView('Trends', 'trends', h('h1', {}, 'Trends'), h('h2', {}, 'Now'), now, h('h2', {}, 'Last 30 builds of a name'), form, out);
  const counts = async () => {
    const [pending, running] = await Promise.all(['PENDING', 'RUNNING'].map((s) => api('GET', `/v1/builds?status=BUILD_STATUS_${s}&pageSize=100`)));
    const stat = (label, list) => h('div', { class: 'stat' }, h('div', { class: 'v' }, `${list.builds.length}${list.nextPageToken ? '+' : ''}`), label);
    now.replaceChildren(stat('queued', pending), stat('running', running));
  };
  counts().catch((error) => showError(now, error));
  eventHandler = () => { counts().catch(() => {}); };
  if (!params.get('name')) { out.replaceChildren(h('p', { class: 'hint' }, 'Name an image to see its builds’ durations and cache use.')); return; }
  api('GET', `/v1/builds?name=${encodeURIComponent(params.get('name'))}&pageSize=30`).then((list) => {
    const builds = list.builds.filter((b) => b.metrics).reverse();
    if (!builds.length) { out.replaceChildren(h('p', {}, 'No finished builds of that name.')); return; }
    const failed = builds.map((b) => statusName(b.status) !== 'SUCCEEDED');
    out.replaceChildren(
      h('h3', {}, 'Duration'), barChart('Duration', builds.map((b) => b.metrics.durationMs), duration, failed),
      h('h3', {}, 'Cache hits (cached / total steps)'),
      barChart('Cache hits', builds.map((b) => (b.metrics.totalSteps ? b.metrics.cachedSteps / b.metrics.totalSteps : 0)), (v) => `${Math.round(v * 100)} %`, failed),
      h('p', { class: 'hint' }, `Builds #${builds[0].number} to #${builds[builds.length - 1].number}, oldest on the left; failed ones in red.`));
  }).catch((error) => showError(out, error));
}

// ---- secrets and plugins ----

function secretsView() {
  const out = h('div');
  const name = h('input', { name: 'secretName', required: true, pattern: '[A-Za-z_][A-Za-z0-9_.-]*' });
  const value = h('input', { name: 'secretValue', type: 'password', required: true, autocomplete: 'off' });
  const problem = h('div', { 'aria-live': 'assertive' });
  const load = () => api('GET', '/v1/secrets').then((saved) => {
    const rows = [];
    const del = (kind, key) => h('button', {
      type: 'button', class: 'danger', 'aria-label': `Delete ${kind} ${key}`,
      onclick: async () => {
        try { await api('DELETE', `/v1/secrets/${kind}/${encodeURIComponent(key)}`); load(); toast(`Deleted ${key}`); }
        catch (error) { toast(error.message); }
      },
    }, 'Delete');
    for (const key of Object.keys(saved.buildSecrets || {})) rows.push(['build secret', key, del('build', key)]);
    for (const key of Object.keys(saved.registryCredentials || {})) rows.push(['registry credential', key, del('registry', key)]);
    for (const key of Object.keys(saved.gitCredentials || {})) rows.push(['git credential', key, del('git', key)]);
    out.replaceChildren(rows.length ? h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Kind'), h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
      h('tbody', {}, rows.map(([k, n, b]) => h('tr', {}, h('td', {}, k), h('td', {}, h('code', {}, n)), h('td', {}, b))))))
      : h('p', {}, 'No secrets saved.'));
  }).catch((error) => showError(out, error));
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        await api('PUT', '/v1/secrets', { buildSecrets: { [name.value.trim()]: value.value } });
        value.value = ''; name.value = ''; problem.replaceChildren(); load(); toast('Saved');
      } catch (error) { showError(problem, error); }
    },
  }, h('h2', {}, 'Set a build secret'), field('Name', name), field('Value', value, 'Stored encrypted; never shown again, here or in logs.'), problem,
  h('p', {}, h('button', { type: 'submit', class: 'primary' }, 'Save')));
  setView('Secrets', 'secrets', h('h1', {}, 'Secrets'), h('p', { class: 'hint' }, 'Names and kinds only: values are never shown.'), out, form);
  load();
}

function pluginsView() {
  const out = h('div', {}, h('p', {}, 'Loading…'));
  setView('Plugins', 'plugins', h('h1', {}, 'Plugins'), out);
  const perms = (p) => Object.entries(p || {}).filter(([, v]) => v && v.length).map(([k, v]) => `${k}: ${v.join(', ')}`).join('; ') || 'none';
  api('GET', '/v1/plugins').then((list) => {
    out.replaceChildren(h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Plugin', 'World', 'Provides', 'Asked', 'Granted', 'Limits'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, list.plugins.map((p) => h('tr', {},
        h('td', {}, h('strong', {}, p.id), ` ${p.version}`, h('div', { class: 'hint' }, p.description)),
        h('td', {}, p.world),
        h('td', {}, Object.entries(p.kinds || {}).filter(([, v]) => v && v.length).map(([k, v]) => `${k}: ${v.join(', ')}`).join('; ')),
        h('td', {}, perms(p.askedPermissions)),
        h('td', {}, perms(p.grantedPermissions)),
        h('td', { class: 'num' }, `${p.limits.memoryMib} MiB, ${p.limits.timeSecs} s`)))))),
    h('h2', {}, 'Load errors'),
    (list.loadErrors || []).length ? h('ul', {}, list.loadErrors.map((e) => h('li', {}, h('code', {}, e.origin), `: ${e.message}`))) : h('p', {}, 'None.'));
  }).catch((error) => showError(out, error));
}

// ---- start ----

window.addEventListener('hashchange', route);
document.addEventListener('DOMContentLoaded', async () => {
  document.getElementById('sign-out').addEventListener('click', signOut);
  try {
    signedIn(await api('GET', '/ui/session'));
  } catch (_) {
    session = null;
  }
  route();
});

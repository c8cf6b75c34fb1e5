// Latch dashboard: a client of the admin API under /v1. Plain ES2020, no build step.
// Everything the server sends is rendered with textContent / createElement, never as HTML:
// run inputs, request bodies and headers come from callers nobody vouches for.
'use strict';

const KEY_STORAGE = 'latch.adminKey';
const STATUSES = ['running', 'waiting', 'completed', 'failed', 'cancelled'];
const ENDED = new Set(['completed', 'failed', 'cancelled']);
const RUNS_PAGE = 50;
const RUNS_POLL_MS = 2000;
const RUN_POLL_MS = 3000;

/* ---------- DOM helpers ---------- */

const $ = (selector, root = document) => root.querySelector(selector);

/** An element with attributes (`class`, `on<event>` listeners, anything else as an attribute) and children (nodes or text). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const isEnded = (status) => ENDED.has(status);
const pretty = (value) => JSON.stringify(value, null, 2);
const enc = encodeURIComponent;

function compact(value, max = 140) {
  const text = value === undefined ? '' : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** "3 s ago", "in 2 min": a time relative to now. */
function relTime(ms, now = Date.now()) {
  const seconds = Math.round((now - ms) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 1) return 'just now';
  let amount;
  if (abs < 60) amount = `${abs} s`;
  else if (abs < 3600) amount = `${Math.floor(abs / 60)} min`;
  else if (abs < 86400) amount = `${Math.floor(abs / 3600)} h`;
  else amount = `${Math.floor(abs / 86400)} d`;
  return seconds >= 0 ? `${amount} ago` : `in ${amount}`;
}

/** A relative time kept fresh by the ticker, with the absolute time as its title. */
function timeEl(ms) {
  if (typeof ms !== 'number') return h('span', { class: 'subtle' }, '—');
  const date = new Date(ms);
  return h('time', { class: 'rel', datetime: date.toISOString(), title: date.toLocaleString(), 'data-ts': ms },
    relTime(ms));
}

function badge(status) {
  return h('span', { class: `badge ${status}` }, status);
}

function chip(text, title) {
  return h('span', { class: 'chip', title }, text);
}

/** A <pre> of a JSON value, pretty-printed. */
function jsonBlock(value, attrs = {}) {
  return h('pre', attrs, pretty(value));
}

/** A card with a heading and its content. */
function card(title, ...content) {
  return h('section', { class: 'card' }, title ? h('h2', null, title) : null, ...content);
}

/** A table that stacks into cards on narrow screens; `columns` label the cells. */
function table(id, columns) {
  const tbody = h('tbody');
  const el = h('table', { id, class: 'stack' },
    h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col' }, c)))), tbody);
  return { el, tbody, columns };
}

/** A row whose cells carry their column's label (shown when the table is stacked). */
function row(columns, attrs, cells) {
  return h('tr', attrs, cells.map((cell, i) => {
    const plain = cell === null || cell instanceof Node || typeof cell !== 'object';
    const { content, ...cellAttrs } = plain ? { content: cell } : cell;
    return h('td', { 'data-label': columns[i], ...cellAttrs }, content);
  }));
}

function emptyRow(columns, text) {
  return h('tr', { class: 'empty' }, h('td', { colspan: columns.length }, text));
}

/* ---------- Toasts ---------- */

function toast(message, kind = 'info') {
  const box = $('#toasts');
  const existing = [...box.children].find((t) => t.dataset.message === message);
  if (existing) existing.remove();
  const close = h('button', { type: 'button', 'aria-label': 'Dismiss' }, '×');
  const el = h('div', { class: `toast ${kind}`, 'data-message': message }, h('span', { class: 'msg' }, message), close);
  close.addEventListener('click', () => el.remove());
  box.append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000);
}

/** Shows an error to the user, unless it was an aborted request or already handled. */
function report(error) {
  if (!error || error.name === 'AbortError' || error.handled) return;
  console.error(error);
  toast(error.message || String(error), 'error');
}

/* ---------- API ---------- */

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(status ? `${message} (${status} ${code})` : message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

const adminKey = () => sessionStorage.getItem(KEY_STORAGE);

/** The error an answer carries: `{"error":{"code","message"}}`, or its text. */
async function errorFrom(response) {
  const text = await response.text().catch(() => '');
  let error = null;
  try { error = JSON.parse(text).error; } catch (_) { /* not JSON */ }
  const message = (error && error.message) || text.trim() || response.statusText || 'request failed';
  return new ApiError(response.status, (error && error.code) || 'http-error', message, error && error.details);
}

/** Calls the admin API with the admin key; answers the parsed JSON or throws an ApiError. */
async function api(path, { method = 'GET', body, signal, key = adminKey() } = {}) {
  const headers = { Authorization: `Bearer ${key}`, Accept: 'application/json' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    if (typeof body !== 'string') body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'The Latch server could not be reached.');
  }
  if (!response.ok) throw refused(await errorFrom(response), key);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** A 401 with the stored key signs out (the key changed or was wrong). */
function refused(error, key) {
  if (error.status === 401 && key && key === adminKey()) {
    signOut('The server refused the stored admin key; sign in again.');
    error.handled = true;
  }
  return error;
}

/* ---------- Small behaviours ---------- */

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (_) {
    const area = h('textarea', { readonly: true, 'aria-hidden': 'true', class: 'clip-helper' });
    area.value = text;
    document.body.append(area);
    area.select();
    let copied = false;
    try { copied = document.execCommand('copy'); } catch (_) { copied = false; }
    area.remove();
    return copied;
  }
}

/** A button that copies `text()` and says "Copied" for a few seconds. */
function copyButton(className, text, label = 'Copy') {
  const button = h('button', { type: 'button', class: `btn ghost small ${className}` }, label);
  button.addEventListener('click', async () => {
    const ok = await copyText(text());
    button.textContent = ok ? 'Copied' : 'Copy failed';
    clearTimeout(button.resetTimer);
    button.resetTimer = setTimeout(() => { button.textContent = label; }, 4000);
  });
  return button;
}

/** A destructive button: the first click asks ("Confirm …"), a second within 5 s acts. */
function confirmButton(button, confirmText, action) {
  const label = button.textContent;
  let timer = null;
  const reset = () => {
    clearTimeout(timer);
    button.classList.remove('confirming');
    button.textContent = label;
  };
  button.addEventListener('click', async () => {
    if (!button.classList.contains('confirming')) {
      button.classList.add('confirming');
      button.textContent = confirmText;
      timer = setTimeout(reset, 5000);
      return;
    }
    clearTimeout(timer);
    button.disabled = true;
    button.textContent = 'Working…';
    try { await action(); } catch (e) { report(e); } finally { reset(); button.disabled = false; }
  });
  return button;
}

/** Disables a form's submit button while `work` runs. */
async function busy(form, work) {
  const submit = form.querySelector('[type=submit]');
  if (submit) submit.disabled = true;
  try { await work(); } catch (e) { report(e); } finally { if (submit) submit.disabled = false; }
}

/** The text of a JSON textarea, or throws a readable error if it is not JSON. */
function jsonText(text, what) {
  const trimmed = text.trim();
  try {
    JSON.parse(trimmed);
  } catch (e) {
    throw Object.assign(new Error(`The ${what} is not valid JSON: ${e.message}`), { local: true });
  }
  return trimmed;
}

/* ---------- Views and routing ---------- */

let view = null;

/** A fresh view: whatever the previous one left running (timers, requests) stops. */
function newView(title) {
  if (view) view.leave();
  const controller = new AbortController();
  const current = {
    alive: true,
    signal: controller.signal,
    cleanups: [() => controller.abort()],
    leave() { this.alive = false; this.cleanups.forEach((fn) => fn()); },
  };
  view = current;
  document.title = title ? `${title} · Latch` : 'Latch';
  window.scrollTo(0, 0);
  return current;
}

/** Runs `fn` every `ms` while the view lives and the page is visible. */
function every(v, ms, fn) {
  let timer = null;
  const tick = async () => {
    if (!v.alive) return;
    if (document.visibilityState === 'visible') await fn().catch(report);
    if (v.alive) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  v.cleanups.push(() => clearTimeout(timer));
}

function mount(...nodes) {
  $('#view').replaceChildren(...nodes);
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  let parts;
  try { parts = path.split('/').filter(Boolean).map(decodeURIComponent); } catch (_) { parts = []; }
  return { parts, query: new URLSearchParams(query) };
}

function setNav(signedIn, section) {
  $('#nav').hidden = !signedIn;
  for (const link of document.querySelectorAll('#nav a')) {
    const active = link.id === `nav-${section}`;
    link.classList.toggle('active', active);
    if (active) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
  }
}

const ROUTES = {
  runs: (v, id, query) => (id ? runPage(v, id) : runsPage(v, query)),
  modules: (v, name) => (name ? modulePage(v, name) : modulesPage(v)),
  keys: (v) => keysPage(v),
  secrets: (v) => secretsPage(v),
};

function route() {
  if (!adminKey()) {
    setNav(false);
    signInPage(newView('Sign in'));
    return;
  }
  const { parts, query } = parseHash();
  const [section = 'runs', id] = parts;
  const page = ROUTES[section];
  setNav(true, page ? section : null);
  const v = newView(section[0].toUpperCase() + section.slice(1));
  if (!page) {
    mount(card('Not found', h('p', null, 'There is no such page. '), h('a', { href: '#/runs' }, 'Go to runs')));
    return;
  }
  Promise.resolve(page(v, id, query)).catch(report);
}

function signOut(message) {
  sessionStorage.removeItem(KEY_STORAGE);
  route();
  if (message) $('#sign-in-error').textContent = message;
}

/* ---------- Sign in ---------- */

function signInPage() {
  const input = h('input', { id: 'admin-key', type: 'password', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'Admin key' });
  const button = h('button', { id: 'sign-in', type: 'submit', class: 'btn' }, 'Sign in');
  const error = h('p', { id: 'sign-in-error', class: 'error-text', role: 'alert' });
  const form = h('form', { class: 'card signin' },
    h('h1', null, 'Sign in to Latch'),
    h('p', { class: 'subtle' }, 'Paste the admin key the server printed on its first start (or LATCH_ADMIN_KEY). ',
      'It stays in this tab only and is forgotten when the tab closes.'),
    h('div', { class: 'field' }, h('label', { for: 'admin-key' }, 'Admin key'), input),
    button, error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    error.textContent = '';
    if (!key) { error.textContent = 'Enter the admin key.'; return; }
    button.disabled = true;
    button.textContent = 'Checking…';
    try {
      await api('/v1/modules', { key });
      sessionStorage.setItem(KEY_STORAGE, key);
      if (parseHash().parts.length === 0) location.hash = '#/runs'; else route();
    } catch (e) {
      error.textContent = e.status === 401
        ? `That is not the admin key: the server refused it (${e.code}).`
        : `Could not sign in: ${e.message}`;
      button.disabled = false;
      button.textContent = 'Sign in';
      input.select();
    }
  });
  mount(form);
  input.focus();
}

/* ---------- Runs list ---------- */

const RUN_COLUMNS = ['Run', 'Module', 'Status', 'Started', 'Updated', 'Waits on'];

function waitsCell(run) {
  const waits = (run.waiting_on || []).map((w) => chip(w.webhook || (w.trigger ? `trigger ${w.trigger}` : '?')));
  if (run.wake_at_ms) waits.push(h('span', { class: 'subtle' }, 'timer ', timeEl(run.wake_at_ms)));
  return waits.length ? h('span', { class: 'chips' }, waits) : '';
}

function runRow(run) {
  return row(RUN_COLUMNS, { 'data-run-id': run.id }, [
    { class: 'id', content: h('a', { href: `#/runs/${enc(run.id)}`, title: run.id }, run.id) },
    h('a', { href: `#/modules/${enc(run.module)}` }, run.module),
    { class: 'status', content: badge(run.status) },
    timeEl(run.created_at_ms),
    timeEl(run.updated_at_ms),
    waitsCell(run),
  ]);
}

/** Updates a tbody to `items` in order, keeping rows whose data did not change (so references stay valid). */
function syncRows(tbody, items, keyOf, build, emptyText, columns) {
  const old = new Map();
  for (const tr of [...tbody.children]) {
    if (tr.rowKey === undefined) tr.remove(); else old.set(tr.rowKey, tr);
  }
  items.forEach((item, index) => {
    const key = keyOf(item);
    const signature = JSON.stringify(item);
    let tr = old.get(key);
    if (!tr || tr.signature !== signature) {
      const fresh = build(item);
      fresh.rowKey = key;
      fresh.signature = signature;
      if (tr) tr.replaceWith(fresh);
      tr = fresh;
    }
    old.delete(key);
    if (tbody.children[index] !== tr) tbody.insertBefore(tr, tbody.children[index] || null);
  });
  old.forEach((tr) => tr.remove());
  if (!items.length) tbody.append(emptyRow(columns, emptyText));
}

function selectField(id, label, options, selected) {
  const select = h('select', { id }, options.map(([value, text]) => h('option', { value }, text)));
  select.value = selected;
  return { select, field: h('div', { class: 'field' }, h('label', { for: id }, label), select) };
}

function liveIndicator(v) {
  const el = h('span', { class: 'live', title: 'Refreshes every 2 s while this tab is visible' },
    h('span', { class: 'live-dot' }), h('span', { class: 'live-text' }, 'Live'));
  const update = () => {
    const paused = document.visibilityState !== 'visible';
    el.classList.toggle('paused', paused);
    $('.live-text', el).textContent = paused ? 'Paused' : 'Live';
  };
  document.addEventListener('visibilitychange', update);
  v.cleanups.push(() => document.removeEventListener('visibilitychange', update));
  update();
  return el;
}

async function runsPage(v, query) {
  const filters = { status: query.get('status') || '', module: query.get('module') || '' };
  let pages = 1;
  let loadCount = 0;
  const status = selectField('status-filter', 'Status', [['', 'all'], ...STATUSES.map((s) => [s, s])], filters.status);
  const module = selectField('module-filter', 'Module', [['', 'all modules']], '');
  const runs = table('runs', RUN_COLUMNS);
  const more = h('button', { type: 'button', class: 'btn ghost', hidden: true }, 'Load more');
  const note = h('p', { class: 'subtle', hidden: true });
  mount(
    h('div', { class: 'page-head' }, h('div', { class: 'grow' }, h('h1', null, 'Runs')), liveIndicator(v)),
    card(null, h('div', { class: 'filters' }, status.field, module.field)),
    h('section', { class: 'card' }, h('div', { class: 'table-wrap' }, runs.el), note,
      h('div', { class: 'more' }, more)),
  );

  const load = async () => {
    const ticket = ++loadCount;
    const params = new URLSearchParams({ limit: String(Math.min(RUNS_PAGE * pages, 1000)) });
    if (filters.status) params.set('status', filters.status);
    if (filters.module) params.set('module', filters.module);
    const page = await api(`/v1/runs?${params}`, { signal: v.signal });
    if (ticket !== loadCount || !v.alive) return;
    const emptyText = filters.status || filters.module ? 'No runs match these filters.' : 'No runs yet. Start one from a module.';
    syncRows(runs.tbody, page.runs, (r) => r.id, runRow, emptyText, RUN_COLUMNS);
    more.hidden = !page.next_cursor || RUNS_PAGE * pages >= 1000;
    note.hidden = !page.unreadable;
    note.textContent = page.unreadable ? `${page.unreadable.length} run record(s) could not be read.` : '';
  };
  const refilter = () => {
    filters.status = status.select.value;
    filters.module = module.select.value;
    pages = 1;
    const params = new URLSearchParams(Object.entries(filters).filter(([, value]) => value));
    history.replaceState(null, '', `#/runs${params.toString() ? `?${params}` : ''}`);
    load().catch(report);
  };
  status.select.addEventListener('change', refilter);
  module.select.addEventListener('change', refilter);
  more.addEventListener('click', () => { pages += 1; load().catch(report); });

  fillModuleFilter(v, module.select, filters.module).catch(report);
  every(v, RUNS_POLL_MS, load);
  await load();
}

async function fillModuleFilter(v, select, selected) {
  const { modules } = await api('/v1/modules', { signal: v.signal });
  const names = modules.map((m) => m.name);
  if (selected && !names.includes(selected)) names.push(selected);
  for (const name of names) select.append(h('option', { value: name }, name));
  select.value = selected;
}

/* ---------- One run ---------- */

/** One line about an event, from its fields (see Event in engine/src/store/records.rs). */
function summarizeEvent(e) {
  const failure = (f) => `${f.code}: ${f.message}`;
  switch (e.type) {
    case 'started': return `input ${compact(e.input)}${e.trigger ? ` · started by ${e.trigger.method} ${e.trigger.path}` : ''}`;
    case 'now': return new Date(e.ms).toISOString();
    case 'random': return String(e.value);
    case 'log': return `[${e.level}] ${e.message}`;
    case 'webhook-created': return e.webhook.Ok ? `${e.webhook.Ok.id} ${e.webhook.Ok.url}` : failure(e.webhook.Err);
    case 'webhook-closed': return e.id;
    case 'wait-started': return e.on.map((t) => (t.kind === 'timer' ? `timer until ${new Date(t.at_ms).toLocaleTimeString()}`
      : t.kind === 'webhook' ? t.id : `trigger ${t.name}`)).join(' or ');
    case 'wait-ended': return e.result.outcome === 'request'
      ? `${e.result.request.id} on ${e.result.request.webhook}: ${compact(e.result.request.data, 100)}` : e.result.outcome;
    case 'responded': return `${e.status} to ${e.request_id}${e.result.Err ? ` (failed: ${failure(e.result.Err)})` : ''}`;
    case 'step-started': return `${e.name}, attempt ${e.attempt}`;
    case 'step-attempt': return `${e.name}, attempt ${e.attempt}: ${e.outcome.Err ? failure(e.outcome.Err) : 'ok'}${e.fatal ? ' (fatal)' : ''}`;
    case 'http-sent': return `${e.method} ${e.url} → ${e.result.Ok ? e.result.Ok.status : failure(e.result.Err)}`;
    case 'completed': return `output ${compact(e.output)}`;
    case 'failed': return failure(e.error);
    default: return '';
  }
}

function eventItem(e, fresh) {
  const { seq, at_ms: at, type, ...fields } = e;
  let summary = '';
  try { summary = summarizeEvent(e); } catch (_) { summary = compact(fields); }
  const detailed = Object.keys(fields).length && !['now', 'random'].includes(type);
  return h('li', { 'data-event-type': type, 'data-seq': seq, class: fresh ? 'fresh' : null },
    h('div', { class: 'ev-head' }, h('span', { class: 'ev-type' }, type), h('span', { class: 'ev-seq' }, `#${seq}`),
      h('span', { class: 'ev-time' }, timeEl(at))),
    summary ? h('div', { class: 'ev-summary' }, summary) : null,
    detailed ? h('details', null, h('summary', null, 'Details'), jsonBlock(fields)) : null);
}

function requestItem(r) {
  const tags = [badge(r.state)];
  if (r.held) tags.push(chip('held', 'its caller still waits for the run to take it'));
  if (r.reason) tags.push(chip(r.reason));
  if (r.acknowledged !== undefined) tags.push(chip(r.acknowledged ? 'caller got 2xx' : 'caller got an error'));
  const caller = r.caller && r.caller.kind === 'api-key' ? `api key ${r.caller.name}` : r.caller && r.caller.kind;
  return h('li', { 'data-request-id': r.id, 'data-state': r.state },
    h('div', { class: 'req-head' }, tags, h('b', null, r.method), h('span', { class: 'path' }, r.path),
      chip(r.webhook), caller ? h('span', { class: 'subtle' }, caller) : null,
      h('span', { class: 'when' }, timeEl(r.received_at_ms))),
    h('details', { 'data-key': `${r.id}:${r.state}` }, h('summary', null, 'Body, query and headers'),
      h('h3', null, 'Body'), jsonBlock(r.data),
      r.query && r.query.length ? [h('h3', null, 'Query'), jsonBlock(Object.fromEntries(r.query))] : null,
      h('h3', null, 'Headers'), h('pre', null, (r.headers || []).map(([k, val]) => `${k}: ${val}`).join('\n'))));
}

const TEST_METHODS = ['POST', 'GET', 'PUT', 'PATCH', 'DELETE'];

/** Sends a test call to a public URL as an outside system would (without the admin key). */
async function sendTestCall(url, method, bodyText) {
  const init = { method, cache: 'no-store', credentials: 'omit' };
  if (method !== 'GET' && bodyText.trim()) {
    init.body = jsonText(bodyText, 'body');
    init.headers = { 'Content-Type': 'application/json' };
  }
  const response = await fetch(url, init);
  return { status: response.status, statusText: response.statusText, text: await response.text() };
}

function showTestResult(box, result) {
  let body = result.text;
  try { if (body) body = pretty(JSON.parse(body)); } catch (_) { /* not JSON: as it came */ }
  box.hidden = false;
  box.dataset.status = String(result.status);
  box.className = `test-call-result ${result.status < 400 ? 'ok' : 'bad'}`;
  box.replaceChildren(h('div', { class: 'status-line' }, `${result.status} ${result.statusText}`.trim()),
    h('pre', null, body || '(empty body)'));
}

/** A URL the run waits on: the URL, a copy button, and a form to send a test call. */
function waitItem(wait, onSent) {
  const result = h('div', { class: 'test-call-result', hidden: true, role: 'status' });
  const methods = h('select', { name: 'method', 'aria-label': 'Method' }, TEST_METHODS.map((m) => h('option', { value: m }, m)));
  const body = h('textarea', { name: 'body', rows: 3, 'aria-label': 'JSON body', spellcheck: 'false' }, '{}');
  const form = h('form', { class: 'test-call' },
    h('div', { class: 'form-row' },
      h('div', { class: 'field narrow' }, methods),
      h('div', { class: 'field' }, body),
      h('button', { type: 'submit', class: 'btn' }, 'Send test call')),
    result);
  const note = h('span', { class: 'subtle past-note', hidden: true }, 'no longer waited on');
  const item = h('li', { class: 'wait-item wait-url', 'data-url': wait.url },
    h('div', { class: 'wait-head' }, h('span', { class: 'what' }, wait.webhook ? `Webhook ${wait.webhook}` : `Trigger ${wait.trigger}`), note),
    h('div', { class: 'url-line' }, h('code', { class: 'url-text' }, wait.url), copyButton('copy-url', () => wait.url)),
    wait.url.includes('[url-key:') ? h('p', { class: 'hint' }, 'The key in this URL is redacted here: a call needs the URL the run handed out.') : null,
    form);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(form, async () => {
      try {
        showTestResult(result, await sendTestCall(wait.url, methods.value, body.value));
      } catch (e) {
        result.hidden = false;
        result.className = 'test-call-result bad';
        result.removeAttribute('data-status');
        result.replaceChildren(h('div', { class: 'status-line' }, e.local ? e.message : `The call did not get an answer: ${e.message}`));
      }
      item.dataset.used = 'true';
      onSent();
    });
  });
  item.markPast = (past) => {
    item.classList.toggle('wait-url', !past);
    item.classList.toggle('wait-past', past);
    note.hidden = !past;
  };
  return item;
}

function loading() {
  mount(h('p', { class: 'loading' }, 'Loading…'));
}

async function runPage(v, id) {
  const path = `/v1/runs/${enc(id)}`;
  loading();
  const [run, log, arrived] = await Promise.all([
    api(path, { signal: v.signal }), api(`${path}/events`, { signal: v.signal }),
    api(`${path}/requests`, { signal: v.signal }),
  ]).catch((e) => {
    if (e.status === 404 || e.status === 400) {
      mount(card('Run not found', h('p', null, e.message), h('a', { href: '#/runs' }, '← All runs')));
      e.handled = true;
    }
    throw e;
  });
  if (!v.alive) return;
  const page = runLayout(run);
  mount(page.root);
  const state = { events: new Set(), lastSeq: null, ended: false, requestsSig: '', refreshTimer: null };

  const addEvents = (events, fresh) => {
    for (const e of [...events].sort((a, b) => a.seq - b.seq)) {
      if (state.events.has(e.seq)) continue;
      state.events.add(e.seq);
      state.lastSeq = Math.max(state.lastSeq ?? 0, e.seq);
      page.events.append(eventItem(e, fresh));
      if (isEnded(e.type)) state.ended = true;
    }
    page.noEvents.hidden = state.events.size > 0;
  };
  const showRequests = (list) => {
    const signature = JSON.stringify(list);
    if (signature === state.requestsSig) return;
    state.requestsSig = signature;
    const open = new Set([...page.requests.querySelectorAll('details[open]')].map((d) => d.dataset.key));
    page.requests.replaceChildren(...list.map(requestItem));
    page.requests.querySelectorAll('details').forEach((d) => { d.open = open.has(d.dataset.key); });
    page.noRequests.hidden = list.length > 0;
    page.requestCount.textContent = list.length ? String(list.length) : '';
  };
  const refresh = async () => {
    const [fresh, requests] = await Promise.all([api(path, { signal: v.signal }), api(`${path}/requests`, { signal: v.signal })]);
    if (!v.alive) return;
    page.update(fresh);
    showRequests(requests.requests);
    if (isEnded(fresh.status) && !state.ended) {
      addEvents((await api(`${path}/events`, { signal: v.signal })).events, true);
      state.ended = true;
    }
  };
  const soon = () => {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(() => refresh().catch(report), 200);
  };
  v.cleanups.push(() => clearTimeout(state.refreshTimer));
  page.onTestCall = soon;

  addEvents(log.events, false);
  if (log.unreadable) page.eventsNote.textContent = `${log.unreadable.length} event record(s) could not be read.`;
  page.update(run);
  showRequests(arrived.requests);
  confirmButton(page.cancel, 'Confirm cancel', async () => {
    const answer = await api(`${path}/cancel`, { method: 'POST', signal: v.signal });
    toast(answer.status === 'cancelled' ? 'Run cancelled.' : 'Cancelling: the run stops at its next step.', 'success');
    soon();
  });
  every(v, RUN_POLL_MS, refresh);
  if (!state.ended && !isEnded(run.status)) followEvents(v, path, state, (events) => { addEvents(events, true); soon(); });
}

/** The run page's elements, and `update(run)` to show a fresh view of the run in place. */
function runLayout(run) {
  const status = h('span', { id: 'run-status', class: 'badge big' });
  const cancel = h('button', { id: 'cancel-run', type: 'button', class: 'btn danger' }, 'Cancel run');
  const meta = h('div', { class: 'meta' });
  const waits = h('ul', { class: 'wait-list' });
  const noWaits = h('p', { class: 'empty' }, 'Not waiting on any URL.');
  const events = h('ol', { id: 'run-events', class: 'timeline' });
  const noEvents = h('p', { class: 'empty' }, 'No events yet.');
  const eventsNote = h('p', { class: 'subtle' });
  const requests = h('ul', { id: 'run-requests', class: 'req-list' });
  const noRequests = h('p', { class: 'empty' }, 'No calls arrived for this run.');
  const requestCount = h('span', { class: 'count' });
  const result = h('section', { class: 'card', hidden: true });
  const input = h('pre', { id: 'run-input' });
  const webhooks = h('div');
  const page = { status, cancel, events, noEvents, eventsNote, requests, noRequests, requestCount, onTestCall: () => {} };
  const waitItems = new Map();

  const syncWaits = (list) => {
    const current = new Set(list.map((w) => w.url));
    for (const wait of list) {
      let item = waitItems.get(wait.url);
      if (!item) {
        item = waitItem(wait, () => page.onTestCall());
        waitItems.set(wait.url, item);
        waits.append(item);
      }
      item.markPast(false);
    }
    for (const [url, item] of waitItems) {
      if (current.has(url)) continue;
      if (item.dataset.used) { item.markPast(true); continue; }
      item.remove();
      waitItems.delete(url);
    }
    noWaits.hidden = list.length > 0;
  };
  const showResult = (r) => {
    const parts = [];
    if ('output' in r) parts.push(h('h2', null, 'Output'), jsonBlock(r.output, { id: 'run-output' }));
    if (r.error) {
      parts.push(h('h2', null, 'Error'), h('div', { id: 'run-error', class: 'error-box' },
        h('span', { class: 'code' }, r.error.code), ' ', h('span', null, r.error.message)));
    }
    const signature = JSON.stringify([r.output, r.error]);
    if (result.signature === signature) return;
    result.signature = signature;
    result.hidden = !parts.length;
    result.replaceChildren(...parts);
  };
  const showWebhooks = (list) => {
    webhooks.replaceChildren(list.length ? h('details', null, h('summary', null, `All webhooks of this run (${list.length})`),
      h('ul', { class: 'wait-list' }, list.map((w) => h('li', { class: 'url-line spaced' },
        chip(w.id), h('code', { class: 'url-text' }, w.url), copyButton('copy-webhook', () => w.url))))) : '');
  };

  page.update = (r) => {
    status.textContent = r.status;
    status.className = `badge big ${r.status}`;
    const ended = isEnded(r.status);
    cancel.hidden = ended;
    cancel.disabled = ended;
    meta.replaceChildren(
      h('span', null, 'module ', h('a', { href: `#/modules/${enc(r.module)}` }, r.module)),
      h('span', { title: r.version }, 'version ', h('code', null, String(r.version).slice(0, 12))),
      h('span', null, 'started ', timeEl(r.created_at_ms)),
      h('span', null, 'updated ', timeEl(r.updated_at_ms)),
      r.wake_at_ms ? h('span', null, 'timer ', timeEl(r.wake_at_ms)) : '');
    syncWaits((r.waiting_on || []).filter((w) => w && w.url));
    showResult(r);
    if (input.textContent !== pretty(r.input)) input.textContent = pretty(r.input);
    if (webhooks.count !== (r.webhooks || []).length) { webhooks.count = (r.webhooks || []).length; showWebhooks(r.webhooks || []); }
  };

  page.root = h('div', { id: 'run' },
    h('div', { class: 'crumbs' }, h('a', { href: '#/runs' }, 'Runs'), ' / ', h('span', { class: 'mono' }, run.id)),
    h('div', { class: 'page-head' },
      h('div', { class: 'grow' },
        h('h1', null, 'Run ', status),
        h('div', { class: 'url-line spaced-top' }, h('code', { class: 'mono' }, run.id), copyButton('copy-id', () => run.id, 'Copy id')),
        meta),
      cancel),
    h('div', { class: 'grid' },
      h('div', null,
        card('Waiting on', noWaits, waits, webhooks),
        card('Timeline', events, noEvents, eventsNote)),
      h('div', null,
        result,
        card('Input', input),
        h('section', { class: 'card' }, h('h2', null, 'Requests ', requestCount), requests, noRequests))));
  return page;
}

/**
 * Follows a run's log as Server-Sent Events, read with fetch() so that the admin key can be sent
 * (EventSource cannot). Reconnects with Last-Event-ID after a dropped stream, catching up
 * with a plain read in between; stops when the run ends or the view is left.
 */
async function followEvents(v, path, state, onEvents) {
  let delay = 1000;
  while (v.alive && !state.ended) {
    try {
      await readEventStream(v, `${path}/events?follow=true`, state.lastSeq, onEvents);
      delay = 1000;
    } catch (e) {
      if (e.name === 'AbortError' || e.handled) return;
    }
    if (!v.alive || state.ended) return;
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
    try { onEvents((await api(`${path}/events`, { signal: v.signal })).events); } catch (e) { if (e.handled) return; }
  }
}

async function readEventStream(v, url, after, onEvents) {
  const key = adminKey();
  const headers = { Authorization: `Bearer ${key}`, Accept: 'text/event-stream' };
  if (after !== null) headers['Last-Event-ID'] = String(after);
  const response = await fetch(url, { headers, signal: v.signal, cache: 'no-store' });
  if (!response.ok) throw refused(await errorFrom(response), key);
  if (!response.body) throw new Error('this browser cannot read a stream');
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const data = sseData(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (data) onEvents([JSON.parse(data)]);
    }
  }
}

/** The data of one SSE message (its `data:` lines joined), or null for a comment or keep-alive. */
function sseData(block) {
  const lines = block.split('\n').map((line) => line.replace(/\r$/, '')).filter((line) => line.startsWith('data:'));
  return lines.length ? lines.map((line) => line.slice(5).replace(/^ /, '')).join('\n') : null;
}

/* ---------- Modules ---------- */

const MODULE_COLUMNS = ['Name', 'Description', 'Triggers', 'Versions', 'Latest', 'Uploaded'];

function triggerNames(info) {
  return [...(info.triggers || []).map((t) => chip(t.name, `start trigger /${t.suffix}`)),
    ...(info.named_triggers || []).map((t) => chip(t.name, 'named trigger'))];
}

async function modulesPage(v) {
  const modules = table('modules', MODULE_COLUMNS);
  mount(h('div', { class: 'page-head' }, h('div', { class: 'grow' }, h('h1', null, 'Modules'),
    h('p', { class: 'subtle' }, 'Upload a component with ', h('code', null, 'latch deploy NAME file.wasm'),
      ' or ', h('code', null, 'PUT /v1/modules/{name}'), '.'))),
  h('section', { class: 'card' }, h('div', { class: 'table-wrap' }, modules.el)));
  const { modules: list } = await api('/v1/modules', { signal: v.signal });
  syncRows(modules.tbody, list, (m) => m.name, (m) => {
    const info = (m.latest && m.latest.info) || {};
    return row(MODULE_COLUMNS, { 'data-module': m.name }, [
      h('a', { href: `#/modules/${enc(m.name)}` }, h('b', null, m.name)),
      h('span', { class: 'desc' }, info.description || '—'),
      h('span', { class: 'chips' }, triggerNames(info)),
      String(m.versions),
      m.latest ? h('code', { title: m.latest.version }, m.latest.version.slice(0, 12)) : '—',
      m.latest ? timeEl(m.latest.uploaded_at_ms) : '—',
    ]);
  }, 'No modules yet.', MODULE_COLUMNS);
}

function authText(auth) {
  switch (auth && auth.kind) {
    case 'url-key': return 'a key in the URL';
    case 'query-api-key': return 'an API key in the URL (?key=)';
    case 'bearer': return `a bearer API key with roles: ${auth.roles.join(', ') || '(none)'}`;
    case 'signature': return `a ${auth.scheme} signature with the secret "${auth.secret}"`;
    default: return 'none: the URL is the capability';
  }
}

function responseText(mode) {
  if (!mode) return '';
  return mode.mode === 'manual' ? `answered by the run (within ${mode.deadline_ms} ms)` : `automatic ${mode.response.status}`;
}

function startTrigger(module, t) {
  const url = `${location.origin}/t/${module}/${t.suffix}`;
  return h('div', { class: 'trigger', 'data-trigger': t.name },
    h('div', { class: 'trigger-head' }, h('b', null, t.name), h('span', { class: 'chips' }, t.methods.map((m) => chip(m)))),
    h('div', { class: 'url-line' }, h('code', { class: 'url-text' }, url), copyButton('copy-trigger', () => url)),
    h('dl', { class: 'kv spaced-top' },
      h('dt', null, 'Auth'), h('dd', null, authText(t.auth)),
      t.on_auth_failure === 'ignore' ? [h('dt', null, 'Auth failure'), h('dd', null, 'ignored (200, nothing delivered)')] : null,
      h('dt', null, 'Answer'), h('dd', null, responseText(t.response))),
    t.expects ? h('details', null, h('summary', null, 'Expected request (JSON Schema)'), jsonBlock(t.expects)) : null);
}

function namedTrigger(t) {
  return h('div', { class: 'trigger', 'data-named-trigger': t.name },
    h('div', { class: 'trigger-head' }, h('b', null, t.name)),
    h('dl', { class: 'kv' }, h('dt', null, 'Auth'), h('dd', null, authText(t.auth)),
      t.condition ? [h('dt', null, 'Condition'), h('dd', null, h('code', null, t.condition))] : null));
}

function startRunForm(name) {
  const input = h('textarea', { name: 'input', id: 'start-run-input', rows: 6, spellcheck: 'false' }, '{}');
  const error = h('p', { class: 'error-text', role: 'alert' });
  const form = h('form', { id: 'start-run' },
    h('div', { class: 'field' }, h('label', { for: 'start-run-input' }, 'Input (JSON)'), input),
    h('button', { type: 'submit', class: 'btn' }, 'Start run'), error);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    error.textContent = '';
    busy(form, async () => {
      let body;
      try { body = jsonText(input.value, 'input'); } catch (e) { error.textContent = e.message; return; }
      let run;
      try {
        run = await api(`/v1/modules/${enc(name)}/runs`, { method: 'POST', body });
      } catch (e) {
        const failures = (e.details && e.details.failures) || [];
        error.textContent = [e.message, ...failures.map((f) => `• ${f}`)].join('\n');
        return;
      }
      toast('Run started.', 'success');
      location.hash = `#/runs/${enc(run.id)}`;
    });
  });
  return form;
}

async function modulePage(v, name) {
  loading();
  let module;
  try {
    module = await api(`/v1/modules/${enc(name)}`, { signal: v.signal });
  } catch (e) {
    if (e.status !== 404) throw e;
    mount(card('Module not found', h('p', null, e.message), h('a', { href: '#/modules' }, '← All modules')));
    return;
  }
  const versions = [...module.versions].reverse();
  const latest = versions[0];
  const info = (latest && latest.info) || { triggers: [], named_triggers: [] };
  const versionRows = table('versions', ['Version', 'Size', 'Uploaded']);
  versions.forEach((ver, i) => versionRows.tbody.append(row(versionRows.columns, { 'data-version': ver.version }, [
    h('span', null, h('code', { title: ver.version }, ver.version.slice(0, 12)), i === 0 ? [' ', chip('latest')] : null),
    formatBytes(ver.size), timeEl(ver.uploaded_at_ms)])));
  const named = info.named_triggers || [];
  mount(h('div', { id: 'module' },
    h('div', { class: 'crumbs' }, h('a', { href: '#/modules' }, 'Modules'), ' / ', module.name),
    h('div', { class: 'page-head' }, h('div', { class: 'grow' }, h('h1', null, module.name),
      h('p', { class: 'module-description' }, info.description || 'No description.'),
      h('div', { class: 'meta' }, h('span', null, `${module.versions.length} version(s)`),
        h('a', { href: `#/runs?module=${enc(module.name)}` }, 'Runs of this module →')))),
    h('div', { class: 'grid' },
      h('div', null,
        card('Start a run', startRunForm(module.name)),
        card('Start triggers', (info.triggers || []).length ? info.triggers.map((t) => startTrigger(module.name, t))
          : h('p', { class: 'empty' }, 'No start triggers: runs start from the API.')),
        named.length ? card('Named triggers', named.map(namedTrigger)) : null),
      h('div', null, h('section', { class: 'card' }, h('h2', null, 'Versions'), h('div', { class: 'table-wrap' }, versionRows.el))))));
}

/* ---------- API keys ---------- */

const KEY_COLUMNS = ['Name', 'Roles', 'Created', ''];

async function keysPage(v) {
  const keys = table('keys', KEY_COLUMNS);
  const value = h('code', { id: 'new-key-value', class: 'url-text' });
  const shown = h('div', { class: 'secret-box', hidden: true },
    h('p', null, h('b', null, 'Copy the new key now: '), 'it is shown only once (only its sha256 is stored).'),
    h('div', { class: 'url-line' }, value, copyButton('copy-key', () => value.textContent)));
  const form = h('form', { id: 'new-key' },
    h('div', { class: 'form-row' },
      h('div', { class: 'field' }, h('label', { for: 'new-key-name' }, 'Name'),
        h('input', { id: 'new-key-name', name: 'name', required: true, autocomplete: 'off', placeholder: 'ci-deploy' })),
      h('div', { class: 'field' }, h('label', { for: 'new-key-roles' }, 'Roles (comma separated)'),
        h('input', { id: 'new-key-roles', name: 'roles', autocomplete: 'off', placeholder: 'orders, payments' })),
      h('button', { type: 'submit', class: 'btn' }, 'Create key')),
    shown);
  mount(h('div', { class: 'page-head' }, h('div', { class: 'grow' }, h('h1', null, 'API keys'),
    h('p', { class: 'subtle' }, 'Keys callers present to webhooks and triggers guarded by a bearer key.'))),
  card('Create a key', form),
  h('section', { class: 'card' }, h('div', { class: 'table-wrap' }, keys.el)));

  const load = async () => {
    const { keys: list } = await api('/v1/keys', { signal: v.signal });
    syncRows(keys.tbody, list, (k) => k.name, (k) => row(KEY_COLUMNS, { 'data-key': k.name }, [
      h('b', null, k.name),
      h('span', { class: 'chips' }, k.roles.length ? k.roles.map((r) => chip(r)) : h('span', { class: 'subtle' }, 'no roles')),
      timeEl(k.created_at_ms),
      { class: 'actions', content: confirmButton(h('button', { type: 'button', class: 'btn danger small revoke-key' }, 'Revoke'),
        'Confirm revoke', async () => {
          await api(`/v1/keys/${enc(k.name)}`, { method: 'DELETE' });
          toast(`Key "${k.name}" revoked.`, 'success');
          await load();
        }) },
    ]), 'No API keys yet.', KEY_COLUMNS);
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(form, async () => {
      const name = form.elements.namedItem('name').value.trim();
      const roles = form.elements.namedItem('roles').value.split(',').map((r) => r.trim()).filter(Boolean);
      const created = await api('/v1/keys', { method: 'POST', body: { name, roles } });
      value.textContent = created.key;
      shown.hidden = false;
      form.elements.namedItem('name').value = '';
      form.elements.namedItem('roles').value = '';
      toast(`Key "${created.name}" created.`, 'success');
      await load();
    });
  });
  await load();
}

/* ---------- Secrets ---------- */

const SECRET_COLUMNS = ['Name', ''];

async function secretsPage(v) {
  const secrets = table('secrets', SECRET_COLUMNS);
  const form = h('form', { id: 'new-secret', autocomplete: 'off' },
    h('div', { class: 'form-row' },
      h('div', { class: 'field' }, h('label', { for: 'new-secret-name' }, 'Name'),
        h('input', { id: 'new-secret-name', name: 'name', required: true, placeholder: 'stripe' })),
      h('div', { class: 'field' }, h('label', { for: 'new-secret-value' }, 'Value'),
        h('input', { id: 'new-secret-value', name: 'value', type: 'password', required: true, autocomplete: 'new-password' })),
      h('button', { type: 'submit', class: 'btn' }, 'Save secret')),
    h('p', { class: 'hint' }, 'Saving under an existing name replaces its value. Values are never shown again.'));
  mount(h('div', { class: 'page-head' }, h('div', { class: 'grow' }, h('h1', null, 'Secrets'),
    h('p', { class: 'subtle' }, 'Signing secrets webhooks verify HMAC signatures with.'))),
  card('Set a secret', form),
  h('section', { class: 'card' }, h('div', { class: 'table-wrap' }, secrets.el)));

  const load = async () => {
    const { secrets: names } = await api('/v1/secrets', { signal: v.signal });
    syncRows(secrets.tbody, names, (n) => n, (n) => row(SECRET_COLUMNS, { 'data-secret': n }, [
      h('b', null, n),
      { class: 'actions', content: confirmButton(h('button', { type: 'button', class: 'btn danger small delete-secret' }, 'Delete'),
        'Confirm delete', async () => {
          await api(`/v1/secrets/${enc(n)}`, { method: 'DELETE' });
          toast(`Secret "${n}" deleted.`, 'success');
          await load();
        }) },
    ]), 'No secrets yet.', SECRET_COLUMNS);
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(form, async () => {
      const name = form.elements.namedItem('name').value.trim();
      const value = form.elements.namedItem('value');
      const saved = await api(`/v1/secrets/${enc(name)}`, { method: 'PUT', body: { value: value.value } });
      value.value = '';
      form.elements.namedItem('name').value = '';
      toast(`Secret "${name}" ${saved.created ? 'created' : 'replaced'}.`, 'success');
      await load();
    });
  });
  await load();
}

/* ---------- Start ---------- */

function tickRelativeTimes() {
  const now = Date.now();
  for (const el of document.querySelectorAll('time.rel')) {
    const text = relTime(Number(el.dataset.ts), now);
    if (el.textContent !== text) el.textContent = text;
  }
}

function start() {
  $('#sign-out').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', route);
  setInterval(tickRelativeTimes, 1000);
  route();
}

start();

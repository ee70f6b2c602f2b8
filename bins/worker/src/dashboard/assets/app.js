// The dashboard's page. Every value from the queue is written with textContent (never as
// HTML): message texts are attacker-controlled. Actions are POSTs carrying the CSRF token.
'use strict';

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const REFRESH_MS = 5000;
const PAGE = 50;
const FILTER_FIELDS = ['kind', 'phone_number_id', 'error', 'older_than', 'newer_than'];

const $ = (selector) => document.querySelector(selector);

/** An element with its text set as text. */
function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

async function api(path, body) {
  const init = { credentials: 'same-origin' };
  if (body !== undefined) {
    init.method = 'POST';
    init.headers = { 'Content-Type': 'application/json', 'X-CSRF-Token': CSRF };
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401) {
    location.href = '/login';
    throw new Error('log in first');
  }
  const doc = await r.json();
  if (!r.ok) throw new Error(doc.error || r.statusText);
  return doc;
}

function say(text, bad) {
  const m = $('#message');
  m.textContent = text;
  m.classList.toggle('bad', !!bad);
}

/** "3m 20s" from milliseconds. */
function span(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
}

function ago(t) {
  return t ? span(Date.now() - t) + ' ago' : '-';
}

// ---- views -------------------------------------------------------------------------------

const VIEWS = ['overview', 'dead', 'job'];
let current = 'overview';

function show(view) {
  current = view;
  for (const v of VIEWS) $('#view-' + v).hidden = v !== view;
  $('#nav-overview').classList.toggle('here', view === 'overview');
  $('#nav-dead').classList.toggle('here', view !== 'overview');
}

function route() {
  const h = location.hash || '#/';
  const run = (p) => p.catch((e) => say(e.message, true));
  if (h.startsWith('#/job/')) {
    show('job');
    run(loadJob(decodeURIComponent(h.slice('#/job/'.length))));
  } else if (h.startsWith('#/dead')) {
    show('dead');
    run(loadDead());
  } else {
    show('overview');
    run(loadOverview());
  }
}

// ---- overview ----------------------------------------------------------------------------

async function loadOverview() {
  const o = await api('/api/overview');
  $('#queue-name').textContent = o.queue;
  for (const name of ['pending', 'delayed', 'in_hand', 'dead', 'live_consumers']) {
    $('[data-stat="' + name + '"]').textContent = o[name].toLocaleString('en');
  }
  $('[data-stat="oldest_pending"]').textContent =
    o.oldest_pending_ms === null ? '-' : span(o.oldest_pending_ms);
  const rows = o.consumers.map((c) => {
    const tr = el('tr', undefined, c.lease_left_ms < 0 ? 'lapsed' : '');
    tr.append(
      el('td', c.id),
      el('td', c.lease_left_ms < 0 ? 'lapsed ' + span(-c.lease_left_ms) + ' ago' : span(c.lease_left_ms) + ' left'),
      el('td', c.in_hand, 'num'),
    );
    return tr;
  });
  if (rows.length === 0) {
    const tr = el('tr');
    const td = el('td', 'no consumer', 'dim');
    td.colSpan = 3;
    tr.append(td);
    rows.push(tr);
  }
  $('#consumers tbody').replaceChildren(...rows);
  drawChart(o.chart, o.chart_step_ms);
}

function drawChart(points, stepMs) {
  const svg = $('#chart');
  const NS = 'http://www.w3.org/2000/svg';
  const W = 1200, H = 160;
  const withRates = points.filter((p) => p.enqueued !== null);
  const top = Math.max(1, ...withRates.map((p) => Math.max(p.enqueued, p.completed)));
  const end = points.length ? points[points.length - 1].t : Date.now();
  const hour = 3600 * 1000;
  const line = (field, cls) => {
    const pl = document.createElementNS(NS, 'polyline');
    pl.setAttribute('class', cls);
    pl.setAttribute('points', withRates.map((p) =>
      ((W * (p.t - (end - hour))) / hour).toFixed(1) + ',' + (H - 4 - ((H - 8) * p[field]) / top).toFixed(1)).join(' '));
    return pl;
  };
  const mark = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const grid = [];
  for (const f of [0, 0.5, 1]) {
    const y = (H - 4 - (H - 8) * f).toFixed(1);
    grid.push(mark('line', { x1: 0, x2: W, y1: y, y2: y, class: 'grid' }));
    grid.push(mark('text', { x: 4, y: f === 0 ? y - 3 : Number(y) + 12, class: 'tick' }, (top * f).toFixed(1) + '/s'));
  }
  for (const [f, label] of [[0, '60 min ago'], [0.5, '30 min ago'], [1, 'now']]) {
    grid.push(mark('text', { x: f * W + (f === 1 ? -4 : f === 0 ? 60 : 0), y: H - 6, class: 'tick', 'text-anchor': f === 1 ? 'end' : 'middle' }, label));
  }
  svg.replaceChildren(...grid, line('enqueued', 'enq'), line('completed', 'done'));
  const note = points.length === 0
    ? 'sampling every ' + stepMs / 1000 + ' s: the chart starts with the second sample'
    : withRates.length === 0
      ? 'no completion count: this queue\'s workers do not keep one'
      : 'peak ' + top.toFixed(1) + ' jobs/s; sampled every ' + stepMs / 1000 + ' s by this dashboard';
  $('#chart-note').textContent = note;
}

// ---- dead letters ------------------------------------------------------------------------

const dead = { filter: {}, offset: 0, total: 0, picked: new Set() };

function readFilter() {
  const form = $('#filter');
  const f = {};
  for (const name of FILTER_FIELDS) {
    const v = form.elements[name].value.trim();
    if (v) f[name] = v;
  }
  return f;
}

function describe(filter) {
  const parts = Object.entries(filter).map(([k, v]) => k + ' = ' + v);
  return parts.length ? 'matching ' + parts.join(', ') : 'in the dead list';
}

async function loadDead() {
  // Marked while a page is on its way, so that nothing (a person, a test) acts on the old one.
  const view = $('#view-dead');
  view.dataset.loading = 'yes';
  try {
    await showDead();
  } finally {
    delete view.dataset.loading;
  }
}

async function showDead() {
  const params = new URLSearchParams(dead.filter);
  params.set('offset', dead.offset);
  params.set('limit', PAGE);
  const d = await api('/api/dead?' + params);
  dead.total = d.total;
  dead.picked.clear();
  $('#pick-all').checked = false;
  $('#dead-total').textContent = d.total.toLocaleString('en') + ' dead jobs ' + describe(dead.filter);
  $('#dead-table tbody').replaceChildren(...d.jobs.map(row));
  const last = Math.min(dead.offset + PAGE, d.total);
  $('#page-info').textContent = d.total ? (dead.offset + 1) + '-' + last + ' of ' + d.total.toLocaleString('en') : '';
  $('#newer').disabled = dead.offset === 0;
  $('#older').disabled = last >= d.total;
  $('#replay-matching').disabled = $('#purge-matching').disabled = d.total === 0;
  updatePicked();
}

function row(j) {
  const tr = el('tr');
  tr.dataset.key = j.key;
  const pick = el('input', undefined, 'pick');
  pick.type = 'checkbox';
  pick.addEventListener('change', () => {
    if (pick.checked) dead.picked.add(j.key); else dead.picked.delete(j.key);
    updatePicked();
  });
  const link = el('a', j.id === null ? '(unreadable)' : j.id);
  link.href = '#/job/' + encodeURIComponent(j.key);
  const cells = [j.kind, j.type, j.phone_number_id, j.from, j.text].map((v) => el('td', v));
  const first = el('td');
  first.append(pick);
  const idCell = el('td');
  idCell.append(link);
  tr.append(first, idCell, ...cells, el('td', j.attempt, 'num'), el('td', j.error, 'error-text'), el('td', ago(j.died_at)));
  return tr;
}

function updatePicked() {
  const n = dead.picked.size;
  $('#replay-selected').disabled = $('#purge-selected').disabled = n === 0;
  $('#replay-selected').textContent = 'Replay selected' + (n ? ' (' + n + ')' : '');
  $('#purge-selected').textContent = 'Purge selected' + (n ? ' (' + n + ')' : '');
}

/** Asks before acting; resolves true on Confirm. */
function confirmed(text) {
  const dialog = $('#confirm');
  $('#confirm-text').textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

const VERB = { replay: ['Replay', 'Replayed', 'back to pending'], purge: ['Purge', 'Purged', 'for good'] };

async function act(action, selection, count, what) {
  const [verb, done, where] = VERB[action];
  const plural = count === 1 ? 'dead job' : 'dead jobs';
  if (!(await confirmed(verb + ' ' + count.toLocaleString('en') + ' ' + plural + ' ' + what + ' ' + where + '?'))) return null;
  const r = await api('/api/' + action, selection);
  say(done + ' ' + r.count.toLocaleString('en') + ' ' + (r.count === 1 ? 'dead job' : 'dead jobs') + '.');
  return r;
}

function wire() {
  window.addEventListener('hashchange', route);
  $('#filter').addEventListener('submit', (e) => {
    e.preventDefault();
    dead.filter = readFilter();
    dead.offset = 0;
    if (location.hash !== '#/dead') location.hash = '#/dead'; else route();
  });
  $('#clear').addEventListener('click', () => {
    $('#filter').reset();
    dead.filter = {};
    dead.offset = 0;
    route();
  });
  $('#newer').addEventListener('click', () => { dead.offset = Math.max(0, dead.offset - PAGE); route(); });
  $('#older').addEventListener('click', () => { dead.offset += PAGE; route(); });
  $('#pick-all').addEventListener('change', (e) => {
    for (const box of document.querySelectorAll('#dead-table input.pick')) {
      box.checked = e.target.checked;
      const key = box.closest('tr').dataset.key;
      if (box.checked) dead.picked.add(key); else dead.picked.delete(key);
    }
    updatePicked();
  });
  const onDead = (f) => async () => {
    try {
      if (await f()) await loadDead();
    } catch (e) { say(e.message, true); }
  };
  for (const action of ['replay', 'purge']) {
    $('#' + action + '-selected').addEventListener('click', onDead(() =>
      act(action, { keys: [...dead.picked] }, dead.picked.size, 'selected')));
    $('#' + action + '-matching').addEventListener('click', onDead(() => {
      const all = Object.keys(dead.filter).length === 0;
      return act(action, all ? { all: true } : { filter: dead.filter }, dead.total, describe(dead.filter));
    }));
    $('#job-' + action).addEventListener('click', async () => {
      try {
        const key = $('#view-job').dataset.key;
        if (await act(action, { keys: [key] }, 1, 'shown here')) location.hash = '#/dead';
      } catch (e) { say(e.message, true); }
    });
  }
  setInterval(() => {
    if (current === 'overview' && !document.hidden) loadOverview().catch((e) => say(e.message, true));
  }, REFRESH_MS);
}

// ---- one job -----------------------------------------------------------------------------

async function loadJob(key) {
  const j = await api('/api/job?key=' + encodeURIComponent(key));
  $('#view-job').dataset.key = j.key;
  $('#job-title').textContent = (j.kind || 'unreadable') + ' ' + (j.id || j.key);
  const fields = [
    ['id', j.id], ['kind', j.kind], ['type', j.type], ['from', j.from],
    ['phone_number_id', j.phone_number_id], ['text', j.text],
    ...j.fields,
    ['received', j.received_at ? new Date(j.received_at).toISOString() + ' (' + ago(j.received_at) + ')' : null],
    ['attempts', j.attempt], ['last error', j.error], ['previous error', j.last_error],
    ['died', j.died_at ? new Date(j.died_at).toISOString() + ' (' + ago(j.died_at) + ')' : null],
    ['entry key', j.key],
  ];
  const items = [];
  for (const [name, value] of fields) {
    if (value === null || value === undefined) continue;
    items.push(el('dt', name), el('dd', value));
  }
  $('#job-fields').replaceChildren(...items);
  $('#job-payload').textContent = j.payload !== null ? j.payload : j.unreadable;
}

wire();
route();
if (current !== 'overview') {
  api('/api/overview').then((o) => { $('#queue-name').textContent = o.queue; }, () => {});
}

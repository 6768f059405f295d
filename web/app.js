// The web admin: plain browser JavaScript over the /api/v1 API of the same origin (no build
// step, no framework). Session cookie auth; every change carries X-Requested-With, which the
// server requires of cookie-authenticated changes (CSRF). Live figures arrive by server-sent
// events for the clients on the current page only.
'use strict';

const PAGE = 50;
const GiB = 1024 ** 3;
const $ = (id) => document.getElementById(id);
const state = { offset: 0, total: 0, q: '', sort: 'name', items: [], events: null, open: null, range: 'day', chart: null, nodesTimer: null };
/** Nodes heartbeat every 5 s (src/cluster/nodes.ts): refreshing faster would show nothing new. */
const NODES_REFRESH_MS = 5000;

async function api(method, path, body) {
  const res = await fetch(`/api/v1${path}`, {
    method,
    headers: { 'x-requested-with': 'wireguard-ts', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  const data = type.includes('json') ? await res.json() : await res.text();
  if (!res.ok) throw Object.assign(new Error(data.error ? data.error.message : res.statusText), { status: res.status, code: data.error && data.error.code, field: data.error && data.error.field });
  return data;
}

function bytes(n) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${u[i]}`;
}
const rate = (n) => `${bytes(Math.round(n))}/s`;
function ago(iso) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s} s ago` : s < 7200 ? `${Math.floor(s / 60)} min ago` : s < 172800 ? `${Math.floor(s / 3600)} h ago` : `${Math.floor(s / 86400)} days ago`;
}
const STATE_TEXT = { active: 'active', disabled: 'disabled', expired: 'expired', 'over-quota': 'over quota' };
function stateReason(c) {
  if (c.state === 'expired') return `Expired on ${new Date(c.expiresAt).toLocaleString()}: removed from the device, kept here. Move the date to re-enable it.`;
  if (c.state === 'over-quota') return `Over its monthly quota (${bytes(c.usage.rx + c.usage.tx)} of ${bytes(c.quotaBytes)}): disabled until ${nextMonth()}.`;
  if (c.state === 'disabled') return 'Disabled by an administrator.';
  return 'Active.';
}
function nextMonth() {
  const d = new Date();
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)).toLocaleDateString();
}
const localInput = (iso) => (iso ? new Date(Date.parse(iso) - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16) : '');
const fromLocal = (v) => (v ? new Date(v).toISOString() : null);

function show(section) {
  for (const id of ['setup', 'login', 'clients']) $(id).hidden = id !== section;
  $('logout').hidden = section !== 'clients';
  $('totp-open').hidden = section !== 'clients';
  if (section !== 'clients') {
    $('summary').replaceChildren();
    $('nodes').hidden = true;
    clearInterval(state.nodesTimer);
  }
}

// ---- setup and login ----

async function start() {
  const setup = /#setup=([A-Za-z0-9_-]+)/.exec(location.hash);
  try {
    await api('GET', '/session');
    return enter();
  } catch { /* not logged in */ }
  if (setup && (await api('GET', '/setup')).needed) return show('setup');
  show('login');
}

$('setup').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.target;
  const token = /#setup=([A-Za-z0-9_-]+)/.exec(location.hash)[1];
  try {
    await api('POST', '/setup', { token, username: f.username.value, password: f.password.value });
    history.replaceState(null, '', '/');
    enter();
  } catch (err) { f.querySelector('.error').textContent = err.message; }
});

$('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.target;
  const body = { username: f.username.value, password: f.password.value };
  if (!$('totp-field').hidden) body.totp = f.totp.value;
  try {
    await api('POST', '/session', body);
    f.querySelector('.error').textContent = '';
    enter();
  } catch (err) {
    if (err.code === 'totp_required') $('totp-field').hidden = false;
    f.querySelector('.error').textContent = err.message;
  }
});

$('logout').addEventListener('click', async () => {
  await api('DELETE', '/session').catch(() => undefined);
  if (state.events) state.events.close();
  // The next login may be another administrator's, or this one's with two-factor turned off.
  $('totp-field').hidden = true;
  $('login').totp.value = '';
  show('login');
});

function enter() {
  show('clients');
  loadSummary();
  load();
  // A refresh that fails (the database down, the session ended) keeps the last table; the next one retries.
  const refreshNodes = () => loadNodes().catch(() => undefined);
  refreshNodes();
  clearInterval(state.nodesTimer);
  state.nodesTimer = setInterval(refreshNodes, NODES_REFRESH_MS);
}

// ---- two-factor login: enrolled by confirming a code of a new secret, turned off with a code ----

const totp = { on: false, secret: null };

function renderTotp() {
  const enrolling = totp.secret !== null;
  $('totp-status').textContent = totp.on ? 'On: logging in asks for a code from your authenticator app. Turning it off takes a code too.' : 'Off: logging in asks only for the password.';
  $('totp-enroll').hidden = !enrolling;
  $('totp-code-field').hidden = !totp.on && !enrolling;
  $('totp-start').hidden = totp.on || enrolling;
  $('totp-confirm').hidden = !enrolling;
  $('totp-disable').hidden = !totp.on;
  $('totp-code').value = '';
  $('totp-dialog').querySelector('.error').textContent = '';
}

async function totpStep(action) {
  try {
    await action();
    renderTotp();
  } catch (err) {
    $('totp-dialog').querySelector('.error').textContent = err.message;
  }
}

$('totp-open').addEventListener('click', () => totpStep(async () => {
  totp.on = (await api('GET', '/session')).totp;
  totp.secret = null;
  $('totp-dialog').showModal();
}));
$('totp-start').addEventListener('click', () => totpStep(async () => {
  const t = await api('POST', '/totp');
  totp.secret = t.secret;
  $('totp-qr').src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(t.qr)}`;
  $('totp-secret').textContent = t.secret;
}));
$('totp-confirm').addEventListener('click', () => totpStep(async () => {
  await api('POST', '/totp/confirm', { secret: totp.secret, code: $('totp-code').value.trim() });
  totp.on = true;
  totp.secret = null;
}));
$('totp-disable').addEventListener('click', () => totpStep(async () => {
  await api('DELETE', '/totp', { code: $('totp-code').value.trim() });
  totp.on = false;
}));
$('totp-close').addEventListener('click', () => $('totp-dialog').close());

// ---- server summary ----

async function loadSummary() {
  const s = await api('GET', '/status');
  const c = s.clients;
  $('summary').replaceChildren(...[
    ['Interface', s.interface], ['Endpoint', s.endpoint], ['Subnet', s.address],
    ['Clients', `${c.total} (${c.active} active, ${c.disabled} disabled, ${c.expired} expired, ${c['over-quota']} over quota)`],
    ['Online', String(s.device.online)], ['Received', bytes(s.device.rx)], ['Sent', bytes(s.device.tx)],
  ].map(([k, v]) => { const span = document.createElement('span'); const b = document.createElement('b'); b.textContent = v; span.append(`${k} `, b); return span; }));
}

// ---- cluster nodes (a PostgreSQL store only: on SQLite no node heartbeats and the panel stays hidden) ----

async function loadNodes() {
  const { nodes } = await api('GET', '/cluster');
  $('nodes').hidden = nodes.length === 0;
  $('node-rows').replaceChildren(...nodes.map((n) => {
    const tr = document.createElement('tr');
    tr.dataset.node = n.name;
    tr.append(cell(n.name), pillCell(n.up ? 'up' : 'down', n.up ? 'up' : 'down'), cell(String(n.peers), 'num'), cell(String(n.online), 'num'), cell(bytes(n.rx), 'num'), cell(bytes(n.tx), 'num'),
      cell(String(n.lag), 'num'), cell(ago(new Date(n.heartbeatAt).toISOString())));
    return tr;
  }));
}

// ---- the clients table ----

async function load() {
  const params = new URLSearchParams({ offset: state.offset, limit: PAGE, sort: state.sort });
  if (state.q) params.set('q', state.q);
  const page = await api('GET', `/clients?${params}`);
  state.total = page.total;
  state.items = page.items;
  render();
  listen();
}

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

/** A cell holding a coloured state label (`kind` picks the colour in app.css). */
function pillCell(kind, text) {
  const pill = document.createElement('span');
  pill.className = `pill ${kind}`;
  pill.textContent = text;
  const td = document.createElement('td');
  td.append(pill);
  return td;
}

function render() {
  $('rows').replaceChildren(...state.items.map((c) => {
    const tr = document.createElement('tr');
    tr.dataset.id = c.id;
    tr.append(cell(c.name), cell(c.address || '-'), pillCell(c.state, STATE_TEXT[c.state]), cell(ago(c.live && c.live.latestHandshake), 'hs'), cell((c.live && c.live.endpoint) || '-', 'ep'),
      cell(rate(c.rxRate || 0), 'num rx'), cell(rate(c.txRate || 0), 'num tx'), cell(bytes(c.usage.rx + c.usage.tx), 'num'));
    tr.addEventListener('click', () => openClient(c.id));
    return tr;
  }));
  const last = Math.min(state.offset + PAGE, state.total);
  $('page').textContent = state.total === 0 ? 'no clients' : `${state.offset + 1}–${last} of ${state.total}`;
  $('prev').disabled = state.offset === 0;
  $('next').disabled = last >= state.total;
}

function listen() {
  if (state.events) state.events.close();
  if (state.items.length === 0) return;
  state.events = new EventSource(`/api/v1/events?ids=${state.items.map((c) => c.id).join(',')}`);
  state.events.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    for (const row of msg.clients) {
      const c = state.items.find((x) => x.id === row.id);
      const tr = $('rows').querySelector(`tr[data-id="${row.id}"]`);
      if (!c || !tr) continue;
      c.live = row.live;
      tr.querySelector('.hs').textContent = ago(row.live && row.live.latestHandshake);
      tr.querySelector('.ep').textContent = (row.live && row.live.endpoint) || '-';
      tr.querySelector('.rx').textContent = rate(row.rxRate);
      tr.querySelector('.tx').textContent = rate(row.txRate);
    }
  };
}

let searchTimer;
$('search').addEventListener('input', (e) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => { state.q = e.target.value.trim(); state.offset = 0; load(); }, 200);
});
$('sort').addEventListener('change', (e) => { state.sort = e.target.value; state.offset = 0; load(); });
$('prev').addEventListener('click', () => { state.offset = Math.max(0, state.offset - PAGE); load(); });
$('next').addEventListener('click', () => { state.offset += PAGE; load(); });

// ---- adding ----

$('add').addEventListener('click', () => {
  $('add-form').reset();
  $('add-form').querySelector('.error').textContent = '';
  $('add-dialog').showModal();
});

$('add-submit').addEventListener('click', async (e) => {
  e.preventDefault();
  const f = $('add-form');
  if (!f.reportValidity()) return;
  const body = { name: f.name.value.trim() };
  if (f.expiresAt.value) body.expiresAt = fromLocal(f.expiresAt.value);
  if (f.quota.value) body.quotaBytes = Math.round(Number(f.quota.value) * GiB);
  try {
    const c = await api('POST', '/clients', body);
    $('add-dialog').close();
    await load();
    loadSummary();
    openClient(c.id);
  } catch (err) { f.querySelector('.error').textContent = err.message; }
});

// ---- one client ----

async function openClient(id) {
  const c = await api('GET', `/clients/${id}`);
  state.open = c;
  $('c-name').textContent = `${c.name} · ${c.address || ''}`;
  $('c-state').textContent = stateReason(c);
  $('c-state').className = `state pill ${c.state}`;
  $('c-toggle').textContent = c.enabled ? 'Disable' : 'Enable';
  $('c-expires').value = localInput(c.expiresAt);
  $('c-quota').value = c.quotaBytes ? String(c.quotaBytes / GiB) : '';
  $('client-dialog').querySelector('.error').textContent = '';
  $('c-qr').src = `/api/v1/clients/${id}/qr.svg?t=${Date.now()}`;
  $('c-config').textContent = await api('GET', `/clients/${id}/config`).catch((err) => err.message);
  if (!$('client-dialog').open) $('client-dialog').showModal();
  drawChart();
}

async function change(patch) {
  const err = $('client-dialog').querySelector('.error');
  try {
    await api('PATCH', `/clients/${state.open.id}`, patch);
    err.textContent = '';
    await openClient(state.open.id);
    load();
    loadSummary();
  } catch (e) { err.textContent = e.message; }
}

$('c-toggle').addEventListener('click', () => change({ enabled: !state.open.enabled }));
$('c-expires-save').addEventListener('click', () => change({ expiresAt: fromLocal($('c-expires').value) }));
$('c-expires-clear').addEventListener('click', () => change({ expiresAt: null }));
$('c-quota-save').addEventListener('click', () => change({ quotaBytes: $('c-quota').value ? Math.round(Number($('c-quota').value) * GiB) : null }));
$('c-close').addEventListener('click', () => $('client-dialog').close());

$('c-delete').addEventListener('click', () => {
  $('confirm-text').textContent = `Delete client ${state.open.name}? Its keys and traffic history are removed and it is cut off at once.`;
  $('confirm-dialog').showModal();
});
$('confirm-dialog').addEventListener('close', async () => {
  if ($('confirm-dialog').returnValue !== 'ok') return;
  await api('DELETE', `/clients/${state.open.id}`);
  $('client-dialog').close();
  load();
  loadSummary();
});

for (const b of document.querySelectorAll('.ranges button')) {
  b.addEventListener('click', () => { state.range = b.dataset.range; drawChart(); });
}

async function drawChart() {
  for (const b of document.querySelectorAll('.ranges button')) b.classList.toggle('on', b.dataset.range === state.range);
  const t = await api('GET', `/clients/${state.open.id}/traffic?range=${state.range}`);
  const xs = t.points.map((p) => p[0] / 1000);
  const data = [xs, t.points.map((p) => p[1]), t.points.map((p) => p[2])];
  let rx = 0; let tx = 0;
  for (const p of t.points) { rx += p[1]; tx += p[2]; }
  $('c-totals').textContent = `Shown: received ${bytes(rx)}, sent ${bytes(tx)} in ${t.points.length} points · ${t.month.month}: received ${bytes(t.month.rx)}, sent ${bytes(t.month.tx)}`;
  $('c-chart').dataset.points = String(t.points.length);
  if (state.chart) state.chart.destroy();
  state.chart = new uPlot({
    width: 520, height: 220,
    // The whole range, not just the span of the points: one point is a dot in its hour, not a decade.
    scales: { x: { time: true, range: () => [t.from / 1000, t.to / 1000] } },
    axes: [{}, { values: (u, vals) => vals.map((v) => bytes(v)), size: 70 }],
    series: [{}, { label: 'received', stroke: '#2f6fed', width: 2, points: { show: true } }, { label: 'sent', stroke: '#067647', width: 2, points: { show: true } }],
  }, data, $('c-chart'));
}

start();

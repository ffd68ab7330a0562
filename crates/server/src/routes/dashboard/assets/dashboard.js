// The spywatcher dashboard: the cache's statistics (polled from the admin
// stats route) and a guild's six analytics (fetched once, then kept current
// by the `/ws` pushes). No library: a few DOM and SVG helpers of its own.
'use strict';

const TYPES = ['ghosts', 'lurkers', 'heatmap', 'roles', 'clients', 'shifts'];
// The columns each analytics shows, in order (every row also has userId).
const COLUMNS = {
  ghosts: ['username', 'typingCount', 'messageCount', 'ghostScore'],
  lurkers: ['username', 'presenceCount', 'lurkerScore'],
  heatmap: ['username', 'channel', 'count'],
  roles: ['username', 'roleChangeCount', 'roleDriftScore'],
  clients: ['username', 'oldClients', 'newClients', 'clientDriftScore'],
  shifts: ['username', 'messageDrop', 'typingSpike', 'behaviorShiftScore'],
};
const TOKEN_KEY = 'spywatcher.token';
const POLL_MS = 1000;
const HISTORY = 600; // points on the hit-rate chart (ten minutes)
const TABLE_ROWS = 100; // rows rendered per table

const $ = (id) => document.getElementById(id);
const SVG_NS = 'http://www.w3.org/2000/svg';

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  admin: false,
  guild: null,
  data: {}, // type -> rows
  origin: {}, // type -> X-Cache of the last fetch, or 'push'
  sort: {}, // type -> {column, descending}
  updating: new Set(),
  dirty: new Set(),
  frame: 0,
  history: [], // {t, rate}
  previous: null, // the last stats, for per-poll rates
  poll: 0,
  socket: null,
  retry: 0,
};

// ---- small helpers -------------------------------------------------------

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attributes) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  return node;
}

function show(node, visible) {
  node.hidden = !visible;
}

function format(value) {
  if (Array.isArray(value)) return value.join(', ');
  if (typeof value === 'number') return Number.isInteger(value) ? value.toLocaleString('en') : value.toFixed(2);
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  return value === undefined || value === null ? '' : String(value);
}

async function api(method, path) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${state.token}` },
    cache: 'no-store',
  });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  return { status: response.status, ok: response.ok, body, cache: response.headers.get('x-cache') };
}

function describe(answer) {
  const reason = answer.body && (answer.body.message || answer.body.error);
  return `${answer.status}${reason ? `: ${reason}` : ''}`;
}

// ---- sign-in ---------------------------------------------------------------

async function signIn(token) {
  state.token = token;
  let guilds;
  try {
    guilds = await api('GET', '/api/guilds');
  } catch (e) {
    return failSignIn(`The server did not answer (${e.message}).`);
  }
  if (guilds.status === 401) return failSignIn('This token is not valid (401).');
  if (guilds.status === 403) return failSignIn('This token may not read analytics (403): use the admin or the read token.');
  if (!guilds.ok) return failSignIn(`The server refused: ${describe(guilds)}.`);
  sessionStorage.setItem(TOKEN_KEY, token);
  const stats = await api('GET', '/api/admin/monitoring/cache/stats');
  state.admin = stats.ok;
  show($('login'), false);
  show($('app'), true);
  show($('sign-out'), true);
  $('login-error').textContent = '';
  show($('cache-body'), state.admin);
  show($('cache-note'), !state.admin);
  $('cache-note').textContent = 'The cache statistics and controls need the admin token.';
  if (state.admin) {
    renderStats(stats.body);
    state.poll = setInterval(pollStats, POLL_MS);
  }
  fillGuilds(guilds.body || []);
  connect();
}

function failSignIn(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  show($('login'), true);
  show($('app'), false);
  $('login-error').textContent = message;
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

// ---- the cache -------------------------------------------------------------

async function pollStats() {
  try {
    const answer = await api('GET', '/api/admin/monitoring/cache/stats');
    if (answer.ok) renderStats(answer.body);
    else $('cache-status').textContent = `stats: ${describe(answer)}`;
  } catch (e) {
    $('cache-status').textContent = `stats: no answer (${e.message})`;
  }
}

function renderStats(body) {
  const stats = body.stats;
  $('cache-status').textContent = stats.backend === body.status ? stats.backend : `${stats.backend} · ${body.status}`;
  const cards = [
    ['hit rate', `${stats.hitRate.toFixed(2)} %`, 'hit-rate'],
    ['hits L1', stats.l1Hits],
    ['hits Redis', stats.l2Hits],
    ['misses', stats.misses],
    ['stale', stats.stale || 0],
    ['keys', stats.keyCount, 'keys'],
    ['memory', stats.memoryUsed],
    ['evictions', stats.evictedKeys],
    ['circuit', stats.circuit, stats.circuit === 'open' ? 'bad' : ''],
    ['journal backlog', body.journalBacklog ?? 0, body.journalBacklog > 0 ? 'bad' : ''],
  ];
  $('cards').replaceChildren(
    ...cards.map(([label, value, kind]) =>
      el('div', { class: `card ${kind || ''}`, 'data-stat': label }, el('b', {}, format(value)), el('span', {}, label)),
    ),
  );
  const rows = Object.entries(stats.byType).map(([type, t]) =>
    el('tr', {}, el('td', {}, type.replace(/^analytics:/, '')), el('td', {}, format(t.hits)), el('td', {}, format(t.misses)),
      el('td', {}, format(t.stale || 0)), el('td', {}, `${t.hitRate.toFixed(2)} %`)),
  );
  $('by-type').tBodies[0].replaceChildren(...rows);
  renderInsights(body.insights);
  recordHitRate(stats);
}

// What the cache learned of its workload, and the settings it suggests
// (never applied by itself).
function renderInsights(insights) {
  if (!insights) return;
  const ms = (v) => (v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${v} ms`);
  const rows = Object.entries(insights.byType).map(([type, t]) =>
    el('tr', {}, el('td', {}, type), el('td', {}, format(t.reads)), el('td', {}, `${t.hitRate.toFixed(2)} %`),
      el('td', {}, ms(t.lifetime.p50Ms)), el('td', {}, `${format(t.ended.invalidated)} / ${format(t.ended.expired)}`),
      el('td', {}, `${t.expiredUnreadPercent.toFixed(1)} %`), el('td', {}, ms(t.missCost.p50Ms)),
      el('td', {}, format(t.bytesPerEntry)), el('td', {}, format(t.stale))),
  );
  $('insights').tBodies[0].replaceChildren(...rows);
  const items = insights.suggestions.length
    ? insights.suggestions.map((s) => el('li', { 'data-type': s.type }, el('span', {}, s.reason), ' ', el('code', {}, s.apply)))
    : [el('li', { class: 'none' }, 'No suggestion: the settings fit the workload measured so far.')];
  $('suggestions').replaceChildren(...items);
  const guilds = insights.busiestGuilds.map((g) =>
    el('tr', {}, el('td', {}, g.guildId), el('td', {}, format(g.reads)), el('td', {}, `${g.hitRate.toFixed(2)} %`),
      el('td', {}, format(g.misses)), el('td', {}, format(g.stale))),
  );
  $('busiest').tBodies[0].replaceChildren(...guilds);
}

// One point per poll: the share of this interval's reads served fresh, or
// the overall rate when nothing was read.
function recordHitRate(stats) {
  const reads = (s) => s.hits + s.misses + (s.stale || 0);
  let rate = stats.hitRate;
  if (state.previous) {
    const delta = reads(stats) - reads(state.previous);
    if (delta > 0) rate = (100 * (stats.hits - state.previous.hits)) / delta;
  }
  state.previous = stats;
  state.history.push({ t: Date.now(), rate });
  if (state.history.length > HISTORY) state.history.shift();
  drawHitChart();
}

function drawHitChart() {
  const chart = $('hit-chart');
  const [width, height, left, bottom] = [640, 170, 34, 18];
  const points = state.history;
  const nodes = [];
  for (const pct of [0, 50, 100]) {
    const y = (height - bottom) * (1 - pct / 100) + 4;
    nodes.push(svg('line', { class: 'axis', x1: left, x2: width, y1: y, y2: y }));
    const label = svg('text', { x: 2, y: y + 4 });
    label.textContent = `${pct}%`;
    nodes.push(label);
  }
  if (points.length > 0) {
    const span = Math.max(points[points.length - 1].t - points[0].t, POLL_MS * 10);
    const x = (p) => left + ((p.t - points[0].t) / span) * (width - left - 4);
    const y = (p) => (height - bottom) * (1 - p.rate / 100) + 4;
    const path = points.map((p, i) => `${i ? 'L' : 'M'}${x(p).toFixed(1)},${y(p).toFixed(1)}`).join('');
    nodes.push(svg('path', { class: 'line', d: path }));
    const last = svg('text', { x: width - 60, y: height - 3 });
    last.textContent = `${points[points.length - 1].rate.toFixed(1)} %`;
    nodes.push(last);
  }
  chart.replaceChildren(...nodes);
}

// ---- controls (admin) ------------------------------------------------------

let pending = null;

function ask(text, action) {
  pending = action;
  $('confirm-text').textContent = text;
  show($('confirm'), true);
  $('confirm-yes').focus();
}

async function answer(promise) {
  show($('confirm'), false);
  try {
    const result = await promise;
    $('answer').textContent = `${result.status} ${JSON.stringify(result.body, null, 1)}`;
  } catch (e) {
    $('answer').textContent = `no answer: ${e.message}`;
  }
  pollStats();
}

function onControl(event) {
  const action = event.target.dataset.action;
  if (action === 'warm') {
    const guild = state.guild;
    ask(`Compute and cache the six analytics of guild ${guild}?`, () =>
      api('POST', `/api/admin/monitoring/cache/warm?guildId=${encodeURIComponent(guild)}`));
  } else if (action === 'clear') {
    ask('Delete every cache entry of this service?', () => api('DELETE', '/api/admin/monitoring/cache/clear'));
  }
}

function onInvalidate(event) {
  event.preventDefault();
  const tag = $('tag').value.trim();
  ask(`Invalidate every entry tagged ${tag}?`, () =>
    api('DELETE', `/api/admin/monitoring/cache/invalidate/${encodeURIComponent(tag)}`));
}

// ---- analytics -------------------------------------------------------------

function fillGuilds(guilds) {
  const select = $('guild');
  select.replaceChildren(...guilds.map((g) => el('option', { value: g.guildId }, `${g.guildId}`)));
  if (guilds.length === 0) {
    $('analytics-note').textContent = 'No events yet: ingest some, or start the server with --demo.';
    return;
  }
  selectGuild(guilds[0].guildId);
}

function selectGuild(guild) {
  const previous = state.guild;
  state.guild = guild;
  $('guild').value = guild;
  state.data = {};
  state.origin = {};
  buildTables();
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    if (previous) state.socket.send(JSON.stringify({ type: 'unsubscribe', guildId: previous }));
    state.socket.send(JSON.stringify({ type: 'subscribe', guildId: guild }));
  }
  for (const type of TYPES) fetchAnalytics(type);
}

async function fetchAnalytics(type) {
  const guild = state.guild;
  state.updating.add(type);
  schedule(type);
  try {
    const answer = await api('GET', `/api/analytics/${type}?guildId=${encodeURIComponent(guild)}`);
    if (guild !== state.guild) return;
    if (answer.ok) {
      state.data[type] = answer.body;
      state.origin[type] = answer.cache || '';
    } else {
      state.data[type] = null;
      state.origin[type] = describe(answer);
    }
  } catch (e) {
    state.origin[type] = `no answer: ${e.message}`;
  } finally {
    state.updating.delete(type);
    schedule(type);
  }
}

function buildTables() {
  const tables = TYPES.map((type) => {
    const body = el('div', { class: 'body' });
    const article = el('article', { class: `analytics ${type}`, id: `table-${type}`, 'data-type': type },
      el('h3', {}, type, el('small', { class: 'origin' }, '')));
    if (type === 'heatmap') {
      article.classList.add('heatmap');
      article.append(el('div', { class: 'scroll' }, svg('svg', { id: 'heatmap-chart', role: 'img', 'aria-label': 'typing per user and channel' })));
    }
    article.append(body);
    return article;
  });
  $('tables').replaceChildren(...tables);
}

// Renders at most once per frame, whatever the rate of pushes.
function schedule(type) {
  state.dirty.add(type);
  if (!state.frame) state.frame = requestAnimationFrame(renderDirty);
}

function renderDirty() {
  state.frame = 0;
  for (const type of state.dirty) renderTable(type);
  state.dirty.clear();
}

function sortedRows(type) {
  const rows = state.data[type] || [];
  const sort = state.sort[type];
  if (!sort) return rows;
  const key = (row) => {
    const v = row[sort.column];
    return Array.isArray(v) ? v.length : v;
  };
  const sorted = [...rows].sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    const order = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
    return sort.descending ? -order : order;
  });
  return sorted;
}

function renderTable(type) {
  const article = $(`table-${type}`);
  if (!article) return;
  article.classList.toggle('updating', state.updating.has(type));
  const rows = state.data[type];
  const origin = state.origin[type] || '';
  article.querySelector('.origin').textContent = rows ? `${rows.length} rows · ${origin}` : origin;
  const body = article.querySelector('.body');
  if (!rows) {
    body.replaceChildren();
    return;
  }
  const columns = COLUMNS[type];
  const sort = state.sort[type];
  const head = el('tr', {}, ...columns.map((column) => {
    const th = el('th', { class: 'sortable', 'data-column': column, scope: 'col' }, column);
    if (sort && sort.column === column) th.setAttribute('aria-sort', sort.descending ? 'descending' : 'ascending');
    th.addEventListener('click', () => {
      const same = sort && sort.column === column;
      state.sort[type] = { column, descending: same ? !sort.descending : true };
      schedule(type);
    });
    return th;
  }));
  const visible = sortedRows(type).slice(0, TABLE_ROWS);
  const lines = visible.map((row) => el('tr', {}, ...columns.map((c) => el('td', {}, format(row[c])))));
  const table = el('table', { class: 'grid' }, el('thead', {}, head), el('tbody', {}, ...lines));
  if (rows.length === 0) body.replaceChildren(el('p', { class: 'hint' }, 'No rows.'));
  else body.replaceChildren(table);
  if (type === 'heatmap') drawHeatmap(rows);
}

// Typing per user (rows) and channel (columns): the busiest 15 users and
// 12 channels, a cell's opacity its share of the largest count.
function drawHeatmap(rows) {
  const chart = $('heatmap-chart');
  const totals = (key, label) => {
    const map = new Map();
    for (const row of rows) {
      const entry = map.get(row[key]) || { id: row[key], label: row[label], count: 0 };
      entry.count += row.count;
      map.set(row[key], entry);
    }
    return [...map.values()].sort((a, b) => b.count - a.count || String(a.id).localeCompare(String(b.id)));
  };
  const users = totals('userId', 'username').slice(0, 15);
  const channels = totals('channelId', 'channel').slice(0, 12);
  const [cell, left, top] = [26, 130, 84];
  const width = left + channels.length * cell + 60; // room for the last tilted label
  const height = top + users.length * cell + 4;
  chart.setAttribute('viewBox', `0 0 ${width} ${height}`);
  chart.setAttribute('width', width);
  chart.setAttribute('height', height);
  const max = Math.max(1, ...rows.map((r) => r.count));
  const at = new Map(rows.map((r) => [`${r.userId}|${r.channelId}`, r]));
  const nodes = [];
  channels.forEach((c, j) => {
    const label = svg('text', { x: left + j * cell + cell / 2, y: top - 6, transform: `rotate(-45 ${left + j * cell + cell / 2} ${top - 6})` });
    label.textContent = c.label.length > 12 ? `#${c.label.slice(0, 11)}…` : `#${c.label}`;
    nodes.push(label);
  });
  users.forEach((u, i) => {
    const label = svg('text', { x: 2, y: top + i * cell + cell / 2 + 4 });
    label.textContent = u.label.length > 18 ? `${u.label.slice(0, 17)}…` : u.label;
    nodes.push(label);
    channels.forEach((c, j) => {
      const row = at.get(`${u.id}|${c.id}`);
      if (!row) return;
      const rect = svg('rect', {
        class: 'cell', x: left + j * cell + 1, y: top + i * cell + 1, width: cell - 2, height: cell - 2,
        'fill-opacity': (0.15 + (0.85 * row.count) / max).toFixed(2),
      });
      const title = svg('title', {});
      title.textContent = `${u.label} in #${c.label}: ${row.count}`;
      rect.append(title);
      nodes.push(rect);
    });
  });
  if (users.length === 0) {
    const none = svg('text', { x: 4, y: 20 });
    none.textContent = 'No typing yet.';
    nodes.push(none);
  }
  chart.replaceChildren(...nodes);
}

// ---- real time -------------------------------------------------------------

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const socket = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(state.token)}`);
  state.socket = socket;
  socket.addEventListener('open', () => {
    state.retry = 0;
    $('connection').textContent = 'live';
    $('connection').classList.add('live');
    if (state.guild) socket.send(JSON.stringify({ type: 'subscribe', guildId: state.guild }));
  });
  socket.addEventListener('message', (event) => onPush(JSON.parse(event.data)));
  socket.addEventListener('close', () => {
    $('connection').textContent = 'offline';
    $('connection').classList.remove('live');
    if (state.socket !== socket || !state.token) return;
    state.retry = Math.min(state.retry + 1, 6);
    setTimeout(connect, 500 * 2 ** state.retry);
  });
}

function onPush(message) {
  if (message.guildId !== state.guild) return;
  if (message.type === 'invalidated') {
    // The analytics it changed follow as pushes; mark them meanwhile.
    for (const type of TYPES) {
      if (state.data[type]) {
        state.updating.add(type);
        schedule(type);
      }
    }
    setTimeout(() => {
      for (const type of TYPES) {
        if (state.updating.delete(type)) schedule(type);
      }
    }, 3000);
  } else if (message.type === 'analytics' && TYPES.includes(message.analytics)) {
    state.data[message.analytics] = message.data;
    state.origin[message.analytics] = `pushed ${new Date(message.timestamp).toLocaleTimeString()}`;
    state.updating.delete(message.analytics);
    schedule(message.analytics);
  }
}

// ---- start -----------------------------------------------------------------

function start() {
  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    signIn($('token').value.trim());
  });
  $('sign-out').addEventListener('click', signOut);
  $('guild').addEventListener('change', (event) => selectGuild(event.target.value));
  for (const button of document.querySelectorAll('[data-action]')) button.addEventListener('click', onControl);
  $('invalidate-form').addEventListener('submit', onInvalidate);
  $('confirm-yes').addEventListener('click', () => pending && answer(pending()));
  $('confirm-no').addEventListener('click', () => show($('confirm'), false));
  if (state.token) signIn(state.token);
  else show($('login'), true);
}

start();

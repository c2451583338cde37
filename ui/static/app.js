// The crmsync status dashboard: plain DOM code that reads the GraphQL API with the
// user's token. Every value from the API goes into the page as text, never as HTML.
'use strict';

const TOKEN_KEY = 'crmsync.token';
const GRAPHQL = new URL('../graphql', location.href).toString();
const CHART_HOURS = 3;
const REFRESH_MS = 30000;

const $ = (sel) => document.querySelector(sel);

// el builds an element; attrs sets properties (class, title, dataset…), children are
// nodes or strings (as text).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'onclick') e.addEventListener('click', v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function plural(n, word) { return `${n.toLocaleString()} ${word}${n === 1 ? '' : 's'}`; }
function num(n) { return el('td', { class: 'num' }, n === null || n === undefined ? '–' : n.toLocaleString()); }
function when(t) { return t ? new Date(t).toLocaleString() : '–'; }

// table renders rows (arrays of cells: nodes or strings) under headers; a header
// starting with '#' is a right-aligned number column.
function table(headers, rows, empty) {
  if (!rows.length) return el('p', { class: 'empty' }, empty);
  const head = el('tr', {}, ...headers.map((h) => h.startsWith('#') ? el('th', { class: 'num' }, h.slice(1)) : el('th', {}, h)));
  const body = rows.map((cells) => el('tr', {}, ...cells.map((c) => c instanceof HTMLTableCellElement ? c : el('td', {}, c))));
  return el('table', {}, el('thead', {}, head), el('tbody', {}, ...body));
}

function fill(sectionId, ...nodes) {
  $('#' + sectionId + ' .body').replaceChildren(...nodes);
}

// --- token -------------------------------------------------------------------

// A link may carry the token in its fragment (#token=…), which browsers never send
// to the server; it is moved into sessionStorage and taken out of the address bar.
function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const t = params.get('token');
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t.trim());
  history.replaceState(null, '', location.pathname + location.search);
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

class APIError extends Error {
  constructor(message, codes) { super(message); this.codes = codes; }
}

async function gql(query, variables) {
  let res;
  try {
    res = await fetch(GRAPHQL, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Authorization': 'Bearer ' + token() },
      body: JSON.stringify({ query, variables: variables || {} }),
    });
  } catch (e) {
    throw new APIError('crmsync does not answer: ' + e.message, []);
  }
  let body;
  try {
    body = await res.json();
  } catch (e) {
    throw new APIError('GraphQL answered HTTP ' + res.status + ' without JSON', []);
  }
  if (body.errors && body.errors.length) {
    const codes = body.errors.map((e) => (e.extensions && e.extensions.code) || '');
    throw new APIError(body.errors.map((e) => e.message + (e.extensions && e.extensions.code ? ' (' + e.extensions.code + ')' : '')).join('\n'), codes);
  }
  if (!res.ok) throw new APIError('GraphQL answered HTTP ' + res.status, []);
  return body.data;
}

// --- errors ------------------------------------------------------------------

let errors = [];

function showError(view, err) {
  errors.push(view + ': ' + err.message);
  const box = $('#error');
  box.textContent = errors.join('\n');
  box.hidden = false;
  if (err.codes && err.codes.includes('UNAUTHENTICATED')) signOut(false);
}

function clearErrors() {
  errors = [];
  $('#error').hidden = true;
  $('#error').textContent = '';
}

// --- views -------------------------------------------------------------------

const HEALTH_CLASS = { HEALTHY: 'ok', DEGRADED: 'warn', FAILING: 'bad', UNKNOWN: 'empty' };

async function loadConnections() {
  const data = await gql(`query { connections { id name organizationUrl
    registration { stepsCreated stepsUpdated stepsRemoved warnings registeredAt }
    health { status reasons lastEventAt } } }`);
  const perConn = await Promise.all(data.connections.map((c) => gql(`query($c: ID!) {
    ingestStats(connectionId: $c) { pending processed failed latencyP95Ms }
    marketingLists(connectionId: $c, first: 100) { totalCount edges { node {
      id name type memberCount lastSyncedAt nextSyncAt warning group { name } } } } }`, { c: c.id })));

  const connRows = data.connections.map((c, i) => {
    const s = perConn[i].ingestStats;
    const r = c.registration;
    const h = c.health;
    const health = el('td', { class: 'health' }, el('span', { class: HEALTH_CLASS[h.status] }, h.status),
      ...h.reasons.map((w) => el('div', { class: 'detail' }, w)));
    const reg = r && r.registeredAt
      ? el('span', {}, `${r.stepsCreated} created, ${r.stepsUpdated} updated, ${r.stepsRemoved} removed (${when(r.registeredAt)})`,
        ...r.warnings.map((w) => el('div', { class: 'detail warn' }, w)))
      : el('span', { class: 'empty' }, 'not registered');
    return [el('td', {}, c.name, el('div', { class: 'detail id' }, c.id)), c.organizationUrl, health, when(h.lastEventAt),
      num(s.processed), num(s.pending), num(s.failed), num(Math.round(s.latencyP95Ms)), reg];
  });
  fill('connections', table(['Name', 'Organization', 'Health', 'Last event', '#Processed', '#Pending', '#Failed', '#p95 ms', 'Registration steps'],
    connRows, 'No connections yet.'));

  const lists = [];
  data.connections.forEach((c, i) => {
    const ml = perConn[i].marketingLists;
    for (const { node: l } of ml.edges) {
      lists.push([c.name, el('td', {}, l.name, l.warning ? el('div', { class: 'detail warn' }, l.warning) : null), l.type,
        num(l.memberCount), l.group ? l.group.name : '–', when(l.lastSyncedAt), when(l.nextSyncAt)]);
    }
    if (ml.totalCount > ml.edges.length) lists.push([c.name, el('td', { class: 'empty' }, `… and ${ml.totalCount - ml.edges.length} more`), '', '', '', '', '']);
  });
  fill('lists', table(['Connection', 'Name', 'Type', '#Members', 'Group', 'Last sync', 'Next sync'], lists, 'No marketing lists known yet.'));
}

async function loadGroups() {
  const data = await gql(`query { subscriberGroups(first: 200) { totalCount edges { node {
    id name crmSync subscriberCount connection { name } } } } }`);
  const g = data.subscriberGroups;
  const rows = g.edges.map(({ node: n }) => [n.name,
    el('span', { class: n.crmSync ? 'ok' : 'empty' }, n.crmSync ? 'on' : 'off'),
    num(n.subscriberCount), n.connection ? n.connection.name : '–']);
  const more = g.totalCount > g.edges.length ? el('p', { class: 'empty' }, `Showing ${g.edges.length} of ${g.totalCount}.`) : null;
  fill('groups', table(['Name', 'CRM sync', '#Subscribers', 'Connection'], rows, 'No subscriber groups yet.'), more || '');
}

const EVENT_FIELDS = 'id at direction message entity recordId status detail';

function eventRow(e, extra) {
  const cls = e.status === 'FAILED' ? 'bad' : e.status === 'APPLIED' ? 'ok' : '';
  return [when(e.at), el('span', { class: cls }, e.status), e.direction, `${e.message} ${e.entity}`,
    el('td', { class: 'id' }, e.recordId || '–'), el('td', { class: 'detail' }, e.detail || ''), ...(extra || [])];
}

async function loadEvents() {
  const status = $('#event-status').value || null;
  const data = await gql(`query($s: SyncStatus) { syncEvents(status: $s, first: 50) { totalCount edges { node { ${EVENT_FIELDS} } } } }`, { s: status });
  const ev = data.syncEvents;
  fill('events', el('p', { class: 'empty' }, `${ev.totalCount.toLocaleString()} events${status ? ' ' + status : ''}; the newest ${ev.edges.length} shown.`),
    table(['At', 'Status', 'Direction', 'Change', 'Record', 'Detail'], ev.edges.map(({ node }) => eventRow(node)), 'No sync events.'));
}

async function loadDeadLetters() {
  const data = await gql(`query { syncEvents(status: FAILED, first: 100) { totalCount edges { node { ${EVENT_FIELDS} } } } }`);
  const ev = data.syncEvents;
  const rows = ev.edges.map(({ node }) => eventRow(node, [el('td', {}, el('button', {
    type: 'button', class: 'replay', dataset: { record: node.recordId || '' },
    title: node.recordId ? 'Re-queue the failed events of this record' : 'This event names no record',
    ...(node.recordId ? {} : { disabled: '' }),
    onclick: () => replay(node.recordId),
  }, 'Replay'))]));
  fill('dead-letters', table(['At', 'Status', 'Direction', 'Change', 'Record', 'Detail', ''], rows, 'No failed events.'),
    ev.totalCount > ev.edges.length ? el('p', { class: 'empty' }, `Showing ${ev.edges.length} of ${ev.totalCount}.`) : '');
}

async function replay(recordId) {
  if (!recordId) return;
  for (const b of document.querySelectorAll('#dead-letters button.replay')) b.disabled = true;
  try {
    const data = await gql(`mutation($r: ID!) { replayEvents(recordId: $r, status: FAILED) }`, { r: recordId });
    const n = data.replayEvents;
    $('#msg').textContent = `Re-queued ${n} failed event${n === 1 ? '' : 's'} of record ${recordId}.`;
  } catch (e) {
    showError('Replay', e);
  }
  await Promise.all([run('Dead letters', loadDeadLetters), run('Sync events', loadEvents)]);
}

async function loadSends() {
  const data = await gql(`query { campaignSends(first: 50) { totalCount edges { node {
    id subject status recipientCount createdAt error
    stats { sent opens clicks bounces unsubscribes complaints }
    progress { sent deferred failed total pass } } } } }`);
  const rows = data.campaignSends.edges.map(({ node: s }) => [
    el('td', {}, s.subject, s.error ? el('div', { class: 'detail bad' }, s.error) : null),
    el('span', { class: s.status === 'FAILED' ? 'bad' : s.status === 'SENT' ? 'ok' : '' }, s.status),
    when(s.createdAt), num(s.recipientCount),
    el('td', { class: 'num' }, `${s.progress.sent}/${s.progress.total}` + (s.progress.deferred ? ` (${s.progress.deferred} deferred)` : '')),
    num(s.stats.opens), num(s.stats.clicks), num(s.stats.bounces), num(s.stats.unsubscribes), num(s.stats.complaints)]);
  fill('sends', table(['Subject', 'Status', 'Created', '#Recipients', '#Delivered', '#Opens', '#Clicks', '#Bounces', '#Unsubscribes', '#Complaints'],
    rows, 'No campaign sends yet.'));
}

// barChart draws one bar per minute (oldest first) of total, and over it the
// part of each minute that went wrong (red); title(i) describes minute i.
function barChart(label, total, bad, title) {
  const minutes = total.length;
  const max = Math.max(1, ...total);
  const svgNS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(svgNS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${minutes} 100`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const bar = (i, n, cls) => {
    const h = (n / max) * 100;
    const r = document.createElementNS(svgNS, 'rect');
    r.setAttribute('class', cls);
    r.setAttribute('x', i + 0.1);
    r.setAttribute('width', 0.8);
    r.setAttribute('y', 100 - h);
    r.setAttribute('height', h);
    const t = document.createElementNS(svgNS, 'title');
    t.textContent = title(i);
    r.append(t);
    svg.append(r);
  };
  total.forEach((n, i) => { if (n) bar(i, n, 'bar'); });
  bad.forEach((n, i) => { if (n) bar(i, n, 'bar-failed'); });
  return { svg, max, sum: total.reduce((a, b) => a + b, 0) };
}

function minuteLabel(t) { return new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }); }

// loadCharts reads each connection's sync statistics and Web API budget over the
// last CHART_HOURS hours: the events of all connections in one chart, the budget
// of each connection in one of its own.
async function loadCharts() {
  const minutes = CHART_HOURS * 60;
  const first = Math.floor(Date.now() / 60000) - minutes + 1; // unix minute of the oldest bar
  const since = new Date(first * 60000).toISOString();
  const { connections } = await gql(`query { connections { id name } }`);
  const per = await Promise.all(connections.map((c) => gql(`query($c: ID!, $since: Time!, $h: Int) {
    syncStats(connectionId: $c, since: $since) { truncated buckets { at status count } }
    apiBudget(connectionId: $c) { used limit left throttled minutes(hours: $h) { at requests throttled } } }`,
  { c: c.id, since, h: CHART_HOURS })));

  const total = new Array(minutes).fill(0);
  const failed = new Array(minutes).fill(0);
  let truncated = false;
  for (const { syncStats: st } of per) {
    truncated = truncated || st.truncated;
    for (const b of st.buckets) {
      const i = Math.floor(Date.parse(b.at) / 60000) - first;
      if (i < 0 || i >= minutes) continue;
      total[i] += b.count;
      if (b.status === 'FAILED') failed[i] += b.count;
    }
  }
  const at = (i) => minuteLabel((first + i) * 60000);
  const events = barChart(`Sync events per minute over the last ${CHART_HOURS} hours`, total, failed,
    (i) => `${at(i)}: ${total[i]} events, ${failed[i]} failed`);
  let caption = `${CHART_HOURS} h ago … now. ${plural(events.sum, 'event')}, at most ${events.max.toLocaleString()} in a minute.`;
  if (truncated) caption += ' A connection had more events than one statistic reads; not all are counted.';
  fill('chart', events.svg, el('p', { class: 'empty' }, caption));

  const budgets = connections.map((c, k) => {
    const b = per[k].apiBudget;
    const req = b.minutes.map((m) => m.requests);
    const chart = barChart(`Web API requests of ${c.name} per minute over the last ${CHART_HOURS} hours`, req, b.minutes.map((m) => m.throttled),
      (i) => `${minuteLabel(b.minutes[i].at)}: ${req[i]} requests, ${b.minutes[i].throttled} throttled`);
    const summary = el('p', { class: 'budget-summary', dataset: { connection: c.id, used: String(b.used), requests: String(chart.sum) } },
      `${b.used.toLocaleString()} of ${b.limit.toLocaleString()} requests used in the last 5 minutes, ${b.left.toLocaleString()} left`,
      b.throttled ? el('span', { class: 'bad' }, `; ${b.throttled.toLocaleString()} throttled`) : '',
      `. ${plural(chart.sum, 'request')} in the last ${CHART_HOURS} hours, at most ${chart.max.toLocaleString()} in a minute.`);
    return el('div', { class: 'budget' }, el('h3', {}, c.name), chart.svg, summary);
  });
  fill('budget', ...(budgets.length ? budgets : [el('p', { class: 'empty' }, 'No connections yet.')]));
}

// --- wiring ------------------------------------------------------------------

async function run(view, load) {
  try {
    await load();
  } catch (e) {
    showError(view, e);
  }
}

let loading = false;

async function refresh() {
  if (!token() || loading) return;
  loading = true;
  clearErrors();
  try {
    await Promise.all([
      run('Connections and lists', loadConnections), run('Subscriber groups', loadGroups),
      run('Sync events', loadEvents), run('Dead letters', loadDeadLetters),
      run('Campaign sends', loadSends), run('Charts', loadCharts),
    ]);
    if (token()) $('#msg').textContent = 'Updated ' + new Date().toLocaleTimeString() + '.';
  } finally {
    loading = false;
  }
}

function show() {
  const has = token() !== '';
  $('#token-form').hidden = has;
  $('#dashboard').hidden = !has;
  $('#toolbar').hidden = !has;
  if (has) refresh();
}

function signOut(clear) {
  sessionStorage.removeItem(TOKEN_KEY);
  $('#token-form').hidden = false;
  $('#dashboard').hidden = true;
  $('#toolbar').hidden = true;
  if (clear) clearErrors();
}

document.addEventListener('DOMContentLoaded', () => {
  takeTokenFromFragment();
  $('#token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('#token').value.trim();
    $('#token').value = '';
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    show();
  });
  $('#refresh').addEventListener('click', refresh);
  $('#sign-out').addEventListener('click', () => signOut(true));
  $('#event-status').addEventListener('change', () => run('Sync events', loadEvents));
  window.addEventListener('hashchange', () => { takeTokenFromFragment(); show(); });
  setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  show();
});

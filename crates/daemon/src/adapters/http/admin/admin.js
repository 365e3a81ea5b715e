// pushd's admin page: everything it shows comes from the HTTP API of the listener that served
// it, with the token typed once and kept in this tab's sessionStorage. No build step, no
// external assets.
'use strict';

const $ = (id) => document.getElementById(id);
const KEY = 'pushd-token';
let token = sessionStorage.getItem(KEY) || '';
let listedAt = 0;
let online = [];

function setStatus(text, bad) {
  $('status').textContent = text;
  $('status').className = bad ? 'bad' : '';
}

// One API call; a 401 asks for the token (again).
async function api(method, path, body) {
  const headers = {};
  if (token) headers.Authorization = 'Bearer ' + token;
  const response = await fetch(path, { method, headers, body, cache: 'no-store' });
  if (response.status === 401) {
    $('login').hidden = false;
    setStatus(token ? 'the token was refused' : 'this pushd wants its API token', true);
    throw new Error('unauthorized');
  }
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
  return { status: response.status, json, text };
}

function cell(row, text, numeric) {
  const td = row.insertCell();
  td.textContent = text;
  if (numeric) td.className = 'n';
  return td;
}

function idle(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's';
  return Math.floor(s / 3600) + 'h' + String(Math.floor(s / 60) % 60).padStart(2, '0') + 'm';
}

// The online table, idle times counted on from the last list.
function drawOnline() {
  const body = $('uids');
  body.replaceChildren();
  const since = Date.now() - listedAt;
  for (const entry of online) {
    const row = body.insertRow();
    row.dataset.uid = entry.uid;
    cell(row, entry.uid);
    cell(row, entry.connections.length, true);
    const least = Math.min(...entry.connections.map((c) => c.idle_ms));
    cell(row, idle(least + since), true);
    const kick = document.createElement('button');
    kick.textContent = 'kick';
    kick.onclick = () => act(() => api('POST', '/v1/kick/' + encodeURIComponent(entry.uid)), 'kicked ' + entry.uid);
    row.insertCell().append(kick);
  }
  $('online-count').textContent = '(' + online.length + ')';
}

async function refreshList() {
  const list = await api('GET', '/v1/list');
  online = list.json || [];
  listedAt = Date.now();
  drawOnline();
}

async function refreshGroups() {
  const groups = await api('GET', '/v1/groups');
  const body = $('groups');
  body.replaceChildren();
  for (const g of groups.json || []) {
    const row = body.insertRow();
    cell(row, g.group);
    cell(row, g.members, true);
    cell(row, g.online, true);
  }
}

async function refreshStats() {
  const stats = (await api('GET', '/v1/stats')).json;
  const shown = {
    version: stats.version, uptime: idle(stats.uptime_ms), connections: stats.connections,
    uids: stats.uids, bans: stats.bans, 'group memberships': stats.group_memberships,
    'waiting messages': stats.mailbox.messages,
  };
  for (const [name, value] of Object.entries(stats.counters)) shown[name.replaceAll('_', ' ')] = value;
  const list = $('counters');
  list.replaceChildren();
  for (const [name, value] of Object.entries(shown)) {
    const dt = document.createElement('dt');
    dt.textContent = name;
    const dd = document.createElement('dd');
    dd.textContent = value;
    list.append(dt, dd);
  }
}

let pending = null;
// Many events at once (a deploy) make one refresh, not one each.
function refreshSoon() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refreshList().then(refreshGroups).catch(() => {}); }, 200);
}

function logEvent(kind, data) {
  let text = kind;
  try {
    const event = JSON.parse(data);
    text = [new Date(event.at_ms).toLocaleTimeString(), kind, event.uid,
      event.reason ? '(' + event.reason + ')' : ''].join(' ');
  } catch (_) { /* shown as it came */ }
  const log = $('events');
  log.textContent = (text + '\n' + log.textContent).split('\n').slice(0, 200).join('\n');
}

// The event stream, read with fetch (EventSource cannot send the token); reconnects.
async function followEvents() {
  for (;;) {
    try {
      const headers = token ? { Authorization: 'Bearer ' + token } : {};
      const response = await fetch('/v1/events', { headers, cache: 'no-store' });
      if (!response.ok) throw new Error('events: ' + response.status);
      setStatus('live');
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let kind = 'message', data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) kind = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (data) { logEvent(kind, data); refreshSoon(); }
        }
      }
    } catch (_) { /* below */ }
    setStatus('events stream lost; reconnecting', true);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

// A form's action, its outcome shown under the forms.
async function act(call, done) {
  try {
    const answer = await call();
    $('result').textContent = answer.status < 300 ? done + ': ' + answer.text.trim()
      : answer.status + ': ' + ((answer.json && answer.json.error) || answer.text.trim());
    refreshSoon();
  } catch (err) {
    $('result').textContent = String(err);
  }
}

function onSubmit(id, handler) {
  $(id).addEventListener('submit', (event) => {
    event.preventDefault();
    handler(Object.fromEntries(new FormData(event.target)));
  });
}

onSubmit('send', (f) => act(() => api('POST', '/v1/send/' + encodeURIComponent(f.uid), f.message), 'sent'));
onSubmit('send-group', (f) => act(() => api('POST', '/v1/groups/' + encodeURIComponent(f.group) + '/send', f.message), 'sent'));
onSubmit('kick', (f) => {
  const body = {};
  if (f.reason) body.reason = f.reason;
  if (f.ban) body.ban = f.ban;
  act(() => api('POST', '/v1/kick/' + encodeURIComponent(f.uid), JSON.stringify(body)), 'kicked');
});
onSubmit('login', () => {
  token = $('token').value.trim();
  sessionStorage.setItem(KEY, token);
  $('login').hidden = true;
  start();
});

let started = false;
async function start() {
  try {
    await refreshStats();
  } catch (_) {
    return; // asked for the token
  }
  $('login').hidden = true;
  setStatus('connected');
  await refreshList();
  await refreshGroups();
  if (started) return;
  started = true;
  followEvents();
  setInterval(() => refreshStats().catch(() => {}), 2000);
  setInterval(() => refreshList().then(refreshGroups).catch(() => {}), 10000);
  setInterval(drawOnline, 1000);
}

start();

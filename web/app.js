// spiderhub dashboard: plain JS, no build step. Every call goes through the REST API
// with the bearer token; live data comes from the broker's /live WebSocket (one snapshot
// per second at most); nothing here polls.
'use strict';

// A token handed over by another broker's dashboard when it switched here (failover):
// taken from the fragment (never sent to a server) and removed from the address at once.
(() => {
  const m = /^#handoff=([^&]*)(?:&to=(.*))?$/.exec(location.hash);
  if (!m) return;
  localStorage.setItem('spiderhub.token', decodeURIComponent(m[1]));
  history.replaceState(null, '', location.pathname + (m[2] ? decodeURIComponent(m[2]) : '#/runs'));
})();

const state = {
  token: localStorage.getItem('spiderhub.token') || '',
  brokers: [],             // GET /brokers: where to go when this broker is gone (failover)
  switching: false,
  snapshot: null,          // last /live message
  ws: null,
  rates: {},               // identity -> {t, done, rate}
  history: {},             // node id -> [{t, cpu, mem}]
  jobs: [],                // last GET /jobs, for names
  blocks: {},              // identity -> {at, data}
};

// ---- helpers ---------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const short = (id) => (id || '').slice(0, 8);
const main = () => document.getElementById('main');
// Replaces the page content; absent parts (null, undefined, false) are skipped.
const show = (...parts) => main().replaceChildren(...parts.flat().filter((p) => p !== null && p !== undefined && p !== false));

function showError(err) {
  const box = document.getElementById('error');
  box.textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
}

function clearError() {
  document.getElementById('error').hidden = true;
}

// Calls the REST API; throws an Error carrying the API's own message.
async function api(method, path, body) {
  const opts = { method, headers: { Authorization: 'Bearer ' + state.token } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    throw new Error(`${method} ${path}: broker unreachable (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!res.ok) {
    const msg = data && data.error ? `${data.error.code}: ${data.error.message}` : `HTTP ${res.status}`;
    const e = new Error(`${method} ${path} failed: ${msg}`);
    e.status = res.status;
    throw e;
  }
  return data;
}

async function guarded(fn) {
  try {
    clearError();
    return await fn();
  } catch (e) {
    showError(e);
    if (e.status === 401) logout();
    return undefined;
  }
}

// ---- live feed ---------------------------------------------------------------------

function connectLive() {
  if (state.ws) return;
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}/live?access_token=${encodeURIComponent(state.token)}`);
  state.ws = ws;
  const badge = document.getElementById('live');
  ws.onopen = () => {
    badge.textContent = 'live';
    badge.classList.add('on');
    api('GET', '/api/v1.0/brokers').then((b) => { state.brokers = b || []; }, () => {});
  };
  ws.onmessage = (ev) => {
    const snap = JSON.parse(ev.data);
    const now = Date.now();
    for (const r of snap.runs) {
      const done = (r.success || 0) + (r.error || 0);
      const prev = state.rates[r.identity];
      let rate = 0;
      if (prev && now > prev.t) rate = ((done - prev.done) * 1000) / (now - prev.t);
      state.rates[r.identity] = { t: now, done, rate: prev ? prev.rate * 0.5 + rate * 0.5 : 0 };
    }
    for (const n of snap.nodes) {
      if (n.cpu === undefined) continue;
      const h = state.history[n.id] || (state.history[n.id] = []);
      if (!h.length || h[h.length - 1].time !== n.statusTime)
        h.push({ time: n.statusTime, cpu: n.cpu, mem: n.freeMemory });
      while (h.length && Date.parse(h[0].time) < now - 3600e3) h.shift();
    }
    state.snapshot = snap;
    renderLive();
  };
  ws.onclose = () => {
    badge.textContent = 'offline';
    badge.classList.remove('on');
    state.ws = null;
    if (!state.token) return;
    findActiveBroker();
    setTimeout(connectLive, 2000);  // never faster than that
  };
}

// Several brokers on PostgreSQL: when this one is gone or has become a standby, go to the
// active one (asked on each known broker's public /healthz) and take the token along in
// the fragment. One broker (SQLite): nothing to find, the feed just reconnects.
async function healthOf(base) {
  try {
    const res = await fetch(new URL('healthz', base), { cache: 'no-store' });
    return { status: res.status, body: await res.json() };
  } catch (_) {
    return { status: 0, body: null };
  }
}

async function findActiveBroker() {
  if (state.switching) return;
  state.switching = true;
  try {
    const here = await healthOf(location.origin + '/');
    if (here.status === 200) return;  // a blip: this broker is still the active one
    const candidates = state.brokers.map((b) => b.url).filter(Boolean);
    if (here.body && here.body.leader) candidates.unshift(here.body.leader);
    for (const url of candidates) {
      if (new URL(url).origin === location.origin) continue;
      const h = await healthOf(url);
      if (h.status !== 200) continue;
      showError(`this broker is ${here.status ? 'a standby' : 'unreachable'}: switching to the active broker ${url}`);
      const to = location.hash && !location.hash.startsWith('#handoff') ? location.hash : '#/runs';
      location.href = new URL('/', url).href + '#handoff=' + encodeURIComponent(state.token) +
        '&to=' + encodeURIComponent(to);
      return;
    }
  } finally {
    state.switching = false;
  }
}

// ---- pages -------------------------------------------------------------------------

function currentPage() {
  const parts = (location.hash || '#/runs').slice(2).split('/');
  return { name: parts[0] || 'runs', arg: parts[1] };
}

function render() {
  const page = currentPage();
  for (const a of document.querySelectorAll('nav a'))
    a.classList.toggle('active', a.dataset.page === page.name);
  if (!state.token) return renderLogin();
  document.getElementById('nav').hidden = false;
  document.getElementById('logout').hidden = false;
  connectLive();
  if (page.name === 'nodes') return renderNodes(true);
  if (page.name === 'jobs') return renderJobs(page.arg);
  if (page.name === 'runs' && page.arg) return renderRun(page.arg, true);
  return renderRuns();
}

// Live updates only touch the live pages.
function renderLive() {
  const page = currentPage();
  if (page.name === 'nodes') renderNodes(false);
  else if (page.name === 'runs' && page.arg) renderRun(page.arg, false);
  else if (page.name === 'runs' || page.name === '') renderRuns();
}

function renderLogin() {
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  const input = el('input', { type: 'password', id: 'token', placeholder: 'API token', autocomplete: 'current-password' });
  const form = el('form', { class: 'card login', onsubmit: async (ev) => {
    ev.preventDefault();
    state.token = input.value.trim();
    const ok = await guarded(() => api('GET', '/api/v1.0/nodes'));
    if (ok === undefined) { state.token = ''; return; }
    localStorage.setItem('spiderhub.token', state.token);
    render();
  } }, el('h2', {}, 'Log in'), el('label', { for: 'token' }, 'API token (auth.token of the broker)'), input,
  el('button', { class: 'primary', type: 'submit', id: 'login' }, 'Log in'));
  show(form);
}

function logout() {
  state.token = '';
  localStorage.removeItem('spiderhub.token');
  if (state.ws) state.ws.close();
  location.hash = '#/runs';
  render();
}

function sparkline(points) {
  const c = el('canvas', { class: 'spark', width: 160, height: 32 });
  const g = c.getContext('2d');
  if (points.length < 2) return c;
  const maxMem = Math.max(...points.map((p) => p.mem), 1);
  const line = (key, max, color) => {
    g.strokeStyle = color;
    g.beginPath();
    points.forEach((p, i) => {
      const x = (i / (points.length - 1)) * 158 + 1;
      const y = 31 - (p[key] / max) * 30;
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  };
  line('cpu', 100, '#2563eb');
  line('mem', maxMem, '#16a34a');
  return c;
}

async function loadHistory(nodes) {
  await Promise.all(nodes.map(async (n) => {
    const rows = await api('GET', `/api/v1.0/nodes/${n.id}/status`);
    const hourAgo = Date.now() - 3600e3;
    state.history[n.id] = rows.filter((r) => Date.parse(r.creationTime) >= hourAgo).reverse()
      .map((r) => ({ time: r.creationTime, cpu: r.cpu, mem: r.freeMemory }));
  }));
}

async function renderNodes(first) {
  let nodes = state.snapshot ? state.snapshot.nodes : null;
  if (first) {
    if (!nodes) nodes = await guarded(() => api('GET', '/api/v1.0/nodes'));
    if (nodes) await guarded(() => loadHistory(nodes));
  }
  if (!nodes) return;
  const rows = nodes.map((n) => el('tr', { 'data-node': n.id },
    el('td', { class: 'mono' }, el('span', { class: 'dot' + (n.isOnline ? ' on' : ''), 'data-testid': `online-${n.id}` }),
      short(n.id), n.isOnline ? '' : ' (offline)', n.isEnabled ? '' : ' (disabled)'),
    el('td', {}, n.group), el('td', { class: 'hide-narrow' }, n.operatingSystem),
    el('td', {}, n.cpu ?? '–', '%'), el('td', {}, n.freeMemory ?? '–', ' MB'),
    el('td', {}, n.processCount ?? 0), el('td', {}, n.leasedBlocks ?? 0),
    el('td', { title: 'cpu (blue) and free memory (green), last hour' }, sparkline(state.history[n.id] || []))));
  const online = nodes.filter((n) => n.isOnline).length;
  show(el('h2', {}, `Nodes (${online} of ${nodes.length} online)`),
    el('div', { class: 'scroll' }, el('table', { id: 'nodes' },
      el('tr', {}, ['Node', 'Group', 'OS', 'CPU', 'Free mem', 'Processes', 'Leased blocks', 'Last hour']
        .map((t, i) => el('th', { class: i === 2 ? 'hide-narrow' : undefined }, t))), rows)));
}

function jobName(id) {
  const j = state.jobs.find((x) => x.id === id);
  return j ? j.name : short(id);
}

function progress(r) {
  const total = Math.max(r.total || 0, 1);
  const ok = ((r.success || 0) / total) * 100;
  const bad = ((r.error || 0) / total) * 100;
  const settled = (r.success || 0) + (r.error || 0) + (r.skipped || 0);  // skipped: robots.txt
  const pct = r.total ? Math.floor((settled / r.total) * 100) : 0;
  return el('div', { class: 'bar', 'data-testid': `progress-${r.identity}`, 'data-percent': pct },
    el('div', { class: 'ok', style: `width:${ok}%` }), el('div', { class: 'err', style: `left:${ok}%;width:${bad}%` }),
    el('span', {}, `${pct}%`));
}

async function exitRun(identity) {
  if (!confirm(`Stop run ${short(identity)} everywhere?`)) return;
  await guarded(() => api('POST', `/api/v1.0/runs/${identity}/exit`));
}

function renderRuns() {
  if (!state.jobs.length && !state.loadingJobs) {
    state.loadingJobs = true;
    guarded(async () => { state.jobs = await api('GET', '/api/v1.0/jobs'); renderRuns(); });
  }
  const runs = state.snapshot ? state.snapshot.runs : [];
  const rows = runs.map((r) => el('tr', { 'data-run': r.identity },
    el('td', {}, jobName(r.jobId)),
    el('td', { class: 'mono' }, el('a', { href: `#/runs/${r.identity}` }, short(r.identity))),
    el('td', { class: 'status-' + r.status }, r.status),
    el('td', {}, progress(r)),
    el('td', { class: 'counts' }, `${r.success}/${r.error}/${r.skipped || 0}/${r.left}/${r.total}`),
    el('td', {}, r.status === 'Running' ? (state.rates[r.identity]?.rate || 0).toFixed(0) : '–'),
    el('td', { class: 'hide-narrow' }, (r.nodes || []).length),
    el('td', {}, r.status === 'Running' ? el('button', { class: 'danger', onclick: () => exitRun(r.identity) }, 'Exit') : '')));
  show(el('h2', {}, 'Runs'),
    state.snapshot ? null : el('p', {}, 'waiting for the live feed…'),
    el('div', { class: 'scroll' }, el('table', { id: 'runs' },
      el('tr', {}, ['Job', 'Run', 'Status', 'Progress', 'Success/Error/Skipped/Left/Total', 'Pages/s', 'Nodes', '']
        .map((t, i) => el('th', { class: i === 6 ? 'hide-narrow' : undefined }, t))), rows)));
}

async function renderRun(identity, first) {
  const run = (state.snapshot?.runs || []).find((r) => r.identity === identity);
  const b = state.blocks[identity];
  // Blocks, hosts and logs are read on open and then at most every 2 s while the run is live.
  if (first || (run && run.status === 'Running' && (!b || Date.now() - b.at > 2000))) {
    state.blocks[identity] = { at: Date.now(), data: b?.data, logs: b?.logs, hosts: b?.hosts };
    const live = !run || run.status === 'Running';
    Promise.all([
      api('GET', `/api/v1.0/runs/${identity}/blocks`).catch((e) => ({ error: e.message })),
      api('GET', `/api/v1.0/runs/${identity}/logs?bytes=8192`).catch((e) => ({ error: e.message })),
      live ? api('GET', `/api/v1.0/runs/${identity}/hosts`).catch(() => null) : Promise.resolve(b?.hosts),
    ]).then(([blocks, logs, hosts]) => {
      state.blocks[identity] = { at: Date.now(), data: blocks, logs, hosts };
      if (currentPage().arg === identity) renderRun(identity, false);
    });
  }
  const cur = state.blocks[identity] || {};
  const parts = [el('h2', {}, `Run ${short(identity)} `, run ? el('span', { class: 'status-' + run.status }, run.status) : '')];
  if (run) {
    parts.push(el('div', { class: 'card' }, progress(run),
      el('p', { class: 'counts' }, el('span', {}, `success ${run.success}`), el('span', {}, `error ${run.error}`),
        el('span', { 'data-testid': 'skipped' }, `skipped ${run.skipped || 0}`),
        el('span', {}, `left ${run.left}`), el('span', {}, `total ${run.total}`),
        el('span', {}, `pages/s ${(state.rates[identity]?.rate || 0).toFixed(0)}`)),
      run.reason ? el('p', {}, run.reason) : null,
      run.status === 'Running' ? el('button', { class: 'danger', onclick: () => exitRun(identity) }, 'Exit run') : null));
    parts.push(el('div', { class: 'scroll' }, el('table', {},
      el('tr', {}, ['Node', 'Status', 'Success', 'Error', 'Left', 'Exit code', 'Reason'].map((t) => el('th', {}, t))),
      (run.nodes || []).map((n) => el('tr', {}, el('td', { class: 'mono' }, short(n.nodeId)),
        el('td', { class: 'status-' + n.status }, n.status), el('td', {}, n.success), el('td', {}, n.error),
        el('td', {}, n.left), el('td', {}, n.exitCode ?? ''), el('td', {}, n.reason))))));
  }
  if (cur.data && !cur.data.error) {
    const c = cur.data.counts;
    parts.push(el('h2', {}, 'Blocks'), el('p', { class: 'counts', id: 'block-counts' },
      ...Object.entries(c).map(([k, v]) => el('span', {}, `${k} ${v}`))));
  } else if (cur.data?.error) {
    parts.push(el('p', { class: 'hint' }, cur.data.error));
  }
  if (cur.hosts && cur.hosts.hosts && cur.hosts.hosts.length) {
    // Politeness per host (live runs only): the busiest first, 50 at most.
    const hosts = [...cur.hosts.hosts].sort((a, b) => (b.inFlight + b.pending) - (a.inFlight + a.pending)).slice(0, 50);
    const when = (ms) => (ms ? new Date(ms).toISOString().slice(11, 19) : '');
    parts.push(el('h2', {}, 'Hosts'), el('div', { class: 'scroll' }, el('table', { id: 'hosts' },
      el('tr', {}, ['Host', 'Waiting', 'In flight', 'Concurrency', 'Delay ms', 'Done', 'Errors', 'Skipped', 'robots.txt', 'Paused until']
        .map((t) => el('th', {}, t))),
      hosts.map((h) => el('tr', {}, el('td', { class: 'mono' }, h.key), el('td', {}, h.pending + h.waitingForRobots),
        el('td', {}, h.inFlight), el('td', {}, `${h.concurrency}/${h.maxConcurrency}`), el('td', {}, h.delayMs),
        el('td', {}, h.done), el('td', {}, h.errors), el('td', {}, h.skipped), el('td', {}, h.robots),
        el('td', {}, when(h.pausedUntil)))))));
  }
  if (cur.logs && !cur.logs.error) {
    parts.push(el('h2', {}, 'Application logs'));
    for (const n of cur.logs.nodes)
      parts.push(el('div', { class: 'card' }, el('strong', { class: 'mono' }, short(n.nodeId)), ` ${n.state}`,
        n.exitCode !== null ? ` (exit ${n.exitCode})` : '', el('pre', { class: 'log' }, n.stdout || '(no output)'),
        n.stderr ? el('pre', { class: 'log' }, n.stderr) : null));
  }
  show(...parts);
}

// ---- jobs --------------------------------------------------------------------------

const jobFields = {
  block: [['FullClassName', 'Worker class (FullClassName)'], ['Arguments', 'Arguments (JSON for the sample spider)'],
          ['Priority', 'Priority'], ['Site', 'Site settings (JSON)'],
          ['MaxConcurrencyPerHost', 'Requests in flight per host (all nodes)'], ['DelayMs', 'Delay between requests to a host (ms)'],
          ['RobotsTxt', 'robots.txt: obey or ignore'], ['PolitenessKey', 'Politeness key: host, domain or ip'],
          ['AdaptiveThrottle', 'Adaptive throttle: on or off']],
  application: [['Package', 'Package'], ['Application', 'Program inside the package'], ['Arguments', 'Arguments'],
                ['NodeCount', 'Nodes'], ['NodeGroup', 'Node group'], ['Os', 'OS filter']],
};

async function renderJobs(editId) {
  const jobs = await guarded(() => api('GET', '/api/v1.0/jobs'));
  if (!jobs) return;
  state.jobs = jobs;
  const table = el('table', { id: 'jobs' },
    el('tr', {}, ['Name', 'Type', 'Cron', 'Enabled', 'Next fire', ''].map((t) => el('th', {}, t))),
    jobs.map((j) => el('tr', { 'data-job': j.name },
      el('td', {}, j.name), el('td', {}, j.jobType), el('td', { class: 'mono' }, j.cron),
      el('td', {}, j.isEnabled ? 'yes' : 'no'), el('td', { class: 'mono' }, (j.nextFireTimes || [])[0] || '–'),
      el('td', { class: 'actions' },
        el('button', { class: 'primary', 'data-action': 'trigger', onclick: async () => {
          const r = await guarded(() => api('POST', `/api/v1.0/jobs/${j.id}/trigger`));
          if (r && r.identity) location.hash = `#/runs/${r.identity}`;
        } }, 'Trigger'),
        el('button', { onclick: async () => {
          await guarded(() => api('PUT', `/api/v1.0/jobs/${j.id}`, { ...j, isEnabled: !j.isEnabled }));
          renderJobs();
        } }, j.isEnabled ? 'Disable' : 'Enable'),
        el('button', { onclick: () => { location.hash = `#/jobs/${j.id}`; } }, 'Edit'),
        el('button', { class: 'danger', onclick: async () => {
          if (!confirm(`Delete job ${j.name}?`)) return;
          await guarded(() => api('DELETE', `/api/v1.0/jobs/${j.id}`));
          renderJobs();
        } }, 'Delete')))));
  const editing = jobs.find((j) => j.id === editId);
  show(el('h2', {}, 'Jobs'), el('div', { class: 'scroll' }, table),
    el('h2', {}, editing ? `Edit ${editing.name}` : 'New job'), jobForm(editing));
}

function jobForm(job) {
  const name = el('input', { id: 'job-name', value: job?.name || '', required: true, maxlength: 50 });
  const type = el('select', { id: 'job-type' }, el('option', { value: 'block' }, 'block'),
    el('option', { value: 'application' }, 'application'));
  type.value = job?.jobType || 'block';
  const cron = el('input', { id: 'job-cron', value: job?.cron || '0 * * * *', class: 'mono' });
  const cronHint = el('div', { class: 'hint', id: 'cron-hint' });
  const desc = el('input', { id: 'job-description', value: job?.description || '' });
  const props = el('div', { style: 'display:contents' });
  const inputs = {};
  const drawProps = () => {
    props.replaceChildren();
    for (const [key, label] of jobFields[type.value]) {
      inputs[key] = el('input', { id: `prop-${key}`, value: job?.properties?.[key] || '' });
      props.append(el('label', { for: `prop-${key}` }, label), inputs[key]);
    }
  };
  drawProps();
  type.addEventListener('change', drawProps);
  let timer = null;
  const checkCron = async () => {
    try {
      const r = await api('GET', `/api/v1.0/cron?expr=${encodeURIComponent(cron.value)}`);
      cronHint.className = 'hint';
      cronHint.textContent = 'next: ' + r.next.join(', ');
    } catch (e) {
      cronHint.className = 'hint bad';
      cronHint.textContent = e.message;
    }
  };
  // Checked when the user pauses typing (1 s) or leaves the field: never faster.
  cron.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(checkCron, 1000); });
  cron.addEventListener('change', () => { clearTimeout(timer); checkCron(); });
  checkCron();
  const form = el('form', { class: 'job card', id: 'job-form', onsubmit: async (ev) => {
    ev.preventDefault();
    const properties = {};
    for (const [key, input] of Object.entries(inputs))
      if (input.value.trim() && jobFields[type.value].some(([k]) => k === key)) properties[key] = input.value.trim();
    const body = { name: name.value.trim(), jobType: type.value, cron: cron.value.trim(),
                   description: desc.value, isEnabled: job ? job.isEnabled : true, properties };
    const saved = await guarded(() => job ? api('PUT', `/api/v1.0/jobs/${job.id}`, body)
                                          : api('POST', '/api/v1.0/jobs', body));
    if (saved) { location.hash = '#/jobs'; renderJobs(); }
  } },
  el('label', { for: 'job-name' }, 'Name'), name, el('label', { for: 'job-type' }, 'Type'), type,
  el('label', { for: 'job-cron' }, 'Cron'), cron, cronHint,
  el('label', { for: 'job-description' }, 'Description'), desc, props,
  el('span'), el('div', { class: 'actions' }, el('button', { class: 'primary', type: 'submit', id: 'job-save' },
    job ? 'Save' : 'Create'), job ? el('button', { type: 'button', onclick: () => { location.hash = '#/jobs'; } }, 'Cancel') : null));
  return form;
}

// ---- start -------------------------------------------------------------------------

document.getElementById('logout').addEventListener('click', logout);
window.addEventListener('hashchange', render);
render();

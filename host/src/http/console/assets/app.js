// The Wharf console. No framework and no build step: the host embeds this
// file. Every value from the server reaches the page as text (textContent,
// attributes set one by one), never as HTML, and the Content-Security-Policy
// forbids inline script besides.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const HISTORY_SECONDS = 600;

  /** An element with attributes and children (strings become text). */
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (v !== false && v != null) e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid != null) e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }

  /** A request of the console's own: its header lets the session cookie stand for the admin token. */
  async function call(method, path, body) {
    const headers = { 'x-wharf-console': '1' };
    let payload;
    if (body instanceof ArrayBuffer) {
      headers['content-type'] = 'application/wasm';
      payload = body;
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const r = await fetch(path, { method, headers, body: payload, credentials: 'same-origin' });
    let data = null;
    try { data = await r.json(); } catch (_) { /* no JSON body */ }
    return { status: r.status, ok: r.ok, data, requestId: r.headers.get('x-request-id') };
  }
  const why = (r) => (r.data && r.data.error && r.data.error.message) || ('HTTP ' + r.status);
  const short = (sha) => (sha || '').slice(0, 12);
  const clock = (ms) => (ms ? new Date(ms).toLocaleTimeString() : '');

  // ---- session and views ----
  let live = null;
  let view = 'components';

  async function boot() {
    const r = await call('GET', '/console/session').catch(() => null);
    if (r && r.ok) start(); else showLogin('');
  }

  function showLogin(message) {
    if (live) { live.close(); live = null; }
    for (const v of document.querySelectorAll('.view')) v.hidden = true;
    $('tabs').hidden = true;
    $('logout').hidden = true;
    $('link').textContent = '';
    $('login').hidden = false;
    $('login-error').textContent = message;
    $('token').focus();
  }

  function start() {
    $('login').hidden = true;
    $('tabs').hidden = false;
    $('logout').hidden = false;
    show(view);
    connect();
    loadProducts();
  }

  function show(name) {
    view = name;
    for (const v of document.querySelectorAll('.view')) v.hidden = v.id !== name;
    for (const b of $('tabs').querySelectorAll('button')) {
      if (b.dataset.view === name) b.setAttribute('aria-current', 'page'); else b.removeAttribute('aria-current');
    }
  }

  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await call('POST', '/console/login', { token: $('token').value }).catch(() => null);
    $('token').value = '';
    if (r && r.ok) {
      start();
    } else {
      $('login-error').textContent = r ? why(r) : 'the host did not answer';
      $('token').focus();
    }
  });
  $('logout').addEventListener('click', async () => {
    await call('POST', '/console/logout').catch(() => null);
    showLogin('');
  });
  for (const b of $('tabs').querySelectorAll('button')) b.addEventListener('click', () => show(b.dataset.view));

  // ---- the live stream: one connection, one snapshot a second ----
  function connect() {
    if (live) live.close();
    live = new EventSource('/console/live');
    live.onopen = () => { $('link').textContent = 'live'; };
    live.onmessage = (m) => {
      const snapshot = JSON.parse(m.data);
      $('link').textContent = 'live, ' + clock(snapshot.at_ms);
      renderComponents(snapshot.components || [], snapshot.at_ms, snapshot.served || {});
      renderStreams(snapshot.streams || {}, snapshot.at_ms);
      refreshOrders();
    };
    live.onerror = async () => {
      // EventSource comes back by itself (a restart, say); a session that
      // ended does not, so ask.
      $('link').textContent = 'reconnecting';
      const r = await call('GET', '/console/session').catch(() => null);
      if (r && r.status === 401) showLogin('The session ended: log in again.');
    };
  }

  // ---- components ----
  const cards = new Map(); // name -> {card, fields, window}
  const WINDOW = 10; // snapshots the rates and percentiles span

  /** Rates and percentiles of what a version answered over the window. */
  function served(entry, stats, bounds, at) {
    if (!stats) return null;
    const w = entry.window.filter((s) => s.version === stats.version);
    w.push({ ...stats, at });
    while (w.length > WINDOW + 1) w.shift();
    entry.window = w;
    const first = w[0];
    const secs = Math.max(0.001, (at - first.at) / 1000);
    const buckets = stats.buckets.map((n, i) => n - first.buckets[i]);
    const total = buckets.reduce((a, b) => a + b, 0);
    const pct = (p) => {
      if (!total) return '–';
      let seen = 0;
      for (let i = 0; i < buckets.length; i++) {
        seen += buckets[i];
        if (seen >= total * p) return i < bounds.length ? '< ' + bounds[i] + ' ms' : '≥ ' + bounds[bounds.length - 1] + ' ms';
      }
      return '–';
    };
    const made = stats.instantiations - first.instantiations;
    const madeNs = stats.instantiate_ns - first.instantiate_ns;
    const lifetime = stats.instantiations ? stats.instantiate_ns / stats.instantiations : 0;
    const mean = made ? madeNs / made : lifetime;
    return {
      rate: (stats.answers - first.answers) / secs,
      errors: (stats.errors - first.errors) / secs,
      p50: pct(0.5),
      p99: pct(0.99),
      instantiate: mean ? (mean / 1000).toFixed(0) + ' µs' : '–',
    };
  }

  function renderComponents(list, at, servedNow) {
    const box = $('component-list');
    const seen = new Set();
    for (const c of list) {
      seen.add(c.name);
      let entry = cards.get(c.name);
      if (!entry) {
        entry = componentCard(c.name);
        cards.set(c.name, entry);
        box.append(entry.card);
      }
      const f = entry.fields;
      f.version.textContent = short(c.version);
      f.version.title = c.version || '';
      f.source.textContent = c.source || '';
      f.loaded.textContent = clock(c.loaded_at_ms);
      f.loaded.dataset.ms = String(c.loaded_at_ms || '');
      f.requests.textContent = String(c.requests ?? 0);
      const s = served(entry, (servedNow.components || {})[c.name], servedNow.bucket_ms || [], at);
      f.rate.textContent = s ? s.rate.toFixed(1) : '–';
      f.errors.textContent = s ? s.errors.toFixed(1) : '–';
      f.latency.textContent = s ? s.p50 + ' / ' + s.p99 : '–';
      f.instantiate.textContent = s ? s.instantiate : '–';
      const stats = (servedNow.components || {})[c.name];
      replaceList(f.grants, grantLines(stats ? stats.grants : undefined));
      const fleet = c.fleet || {};
      const hosts = fleet.hosts || [];
      f.hosts.textContent = hosts.map((h) => (h.addr || h.id) + ' ' + short(h.version)).join(', ') +
        (fleet.converged === false ? ' (converging)' : '');
      f.canary.textContent = fleet.canary ? short(fleet.canary.version) + ' at ' + fleet.canary.share + '%' :
        (fleet.last_canary ? 'last: ' + (fleet.last_canary.verdict || '') : 'none');
      replaceList(f.routes, c.routes || []);
      replaceList(f.subscriptions, (c.subscriptions || []).map((s) => s.stream + ' (' + s.group + ')'));
    }
    for (const [name, entry] of cards) {
      if (!seen.has(name)) { entry.card.remove(); cards.delete(name); }
    }
  }

  /** The grants as lines; none configured: the manifest's own claims hold. */
  function grantLines(g) {
    if (g === undefined) return [];
    if (g === null) return ['none configured: what its manifest declares'];
    const list = (xs) => (xs.length ? xs.join(', ') : 'none');
    const lines = ['publish: ' + list(g.publish), 'consume: ' + list(g.consume), 'call: ' + list(g.call)];
    if (g.memory_bytes != null) lines.push('memory: ' + Math.round(g.memory_bytes / 1048576) + ' MiB');
    if (g.timeout_ms != null) lines.push('timeout: ' + g.timeout_ms + ' ms');
    return lines;
  }

  function replaceList(ul, items) {
    const text = items.join('\n');
    if (ul.dataset.text === text) return;
    ul.dataset.text = text;
    ul.replaceChildren(...items.map((i) => el('li', null, i)));
  }

  function componentCard(name) {
    const f = {};
    const dd = (key) => (f[key] = el('dd'));
    const input = el('input', { type: 'file', accept: '.wasm,application/wasm', 'aria-label': 'Deploy a .wasm to ' + name });
    input.addEventListener('change', () => { if (input.files[0]) deploy(name, input.files[0]); input.value = ''; });
    const card = el('article', { class: 'card', 'data-component': name },
      el('h3', null, name),
      el('dl', null,
        el('dt', null, 'Version'), dd('version'),
        el('dt', null, 'From'), dd('source'),
        el('dt', null, 'Loaded at'), dd('loaded'),
        el('dt', null, 'Requests'), dd('requests'),
        el('dt', null, 'Requests/s'), dd('rate'),
        el('dt', null, 'Errors/s'), dd('errors'),
        el('dt', null, 'p50 / p99'), dd('latency'),
        el('dt', null, 'Instantiate'), dd('instantiate'),
        el('dt', null, 'Hosts'), dd('hosts'),
        el('dt', null, 'Canary'), dd('canary')),
      el('div', null, 'Routes', (f.routes = el('ul'))),
      el('div', null, 'Subscriptions', (f.subscriptions = el('ul'))),
      el('div', null, 'Grants', (f.grants = el('ul', { class: 'grants' }))),
      el('div', { class: 'actions' },
        el('label', { class: 'file' }, 'Deploy a .wasm…', input),
        el('button', { type: 'button', class: 'secondary', onclick: () => rollback(name) }, 'Roll back')));
    card.addEventListener('dragover', (e) => { e.preventDefault(); card.classList.add('drop'); });
    card.addEventListener('dragleave', () => card.classList.remove('drop'));
    card.addEventListener('drop', (e) => {
      e.preventDefault();
      card.classList.remove('drop');
      const file = e.dataTransfer && e.dataTransfer.files[0];
      if (file) deploy(name, file);
    });
    return { card, fields: f, window: [] };
  }

  async function deploy(name, file) {
    $('deploy-status').textContent = 'Deploying ' + file.name + ' to ' + name + '…';
    const r = await call('PUT', '/admin/components/' + encodeURIComponent(name), await file.arrayBuffer());
    $('deploy-status').textContent = r.ok
      ? name + ' now runs ' + short(r.data && r.data.version) + '.'
      : 'Deploying ' + name + ' failed: ' + why(r);
  }

  async function rollback(name) {
    const r = await call('POST', '/admin/components/' + encodeURIComponent(name) + '/rollback');
    $('deploy-status').textContent = r.ok
      ? name + ' rolled back to ' + short(r.data && r.data.version) + '.'
      : 'Rolling back ' + name + ' failed: ' + why(r);
  }

  // ---- streams ----
  const history = new Map(); // "stream/group" -> [{lag, pending}]
  const handledBefore = new Map(); // "stream/group" -> {handled, at}
  const streamBoxes = new Map(); // stream -> {box, head, groups: Map}

  function renderStreams(report, at) {
    if (report.error) { $('stream-list').replaceChildren(el('p', { class: 'error' }, report.error)); streamBoxes.clear(); return; }
    const streams = report.streams || {};
    for (const [name, s] of Object.entries(streams)) {
      let box = streamBoxes.get(name);
      if (!box) {
        box = streamBox(name);
        streamBoxes.set(name, box);
        $('stream-list').append(box.box);
      }
      box.length.textContent = 'length ' + s.length;
      box.delayed.textContent = 'delayed ' + s.delayed;
      box.deadCount.textContent = 'dead letters ' + s.dead_letters;
      box.showDead.hidden = !s.dead_letters;
      box.points.push({ length: s.length || 0, delayed: s.delayed || 0, dead: s.dead_letters || 0 });
      if (box.points.length > HISTORY_SECONDS) box.points.shift();
      chart(box.svg, box.points, [['length', 'delayed', 'dead']]);
      for (const g of s.groups || []) {
        const key = name + '/' + g.name;
        const before = handledBefore.get(key);
        const rate = before ? ((g.handled - before.handled) * 1000) / Math.max(1, at - before.at) : 0;
        handledBefore.set(key, { handled: g.handled || 0, at });
        const points = history.get(key) || [];
        points.push({ lag: g.lag || 0, pending: g.pending || 0, handled: rate });
        if (points.length > HISTORY_SECONDS) points.shift();
        history.set(key, points);
        let row = box.groups.get(g.name);
        if (!row) {
          row = groupRow(g.name);
          box.groups.set(g.name, row);
          box.tbody.append(row.tr);
        }
        row.consumers.textContent = String(g.consumers);
        row.lag.textContent = g.lag == null ? '?' : String(g.lag);
        row.pending.textContent = String(g.pending);
        row.rate.textContent = rate.toFixed(1);
        // Handled per second on a scale of its own: another unit.
        chart(row.svg, points, [['lag', 'pending'], ['handled']]);
      }
    }
    for (const [component, n] of Object.entries(report.outboxes || {})) {
      let o = outboxes.get(component);
      if (!o) {
        o = { count: el('span', { class: 'numbers' }), svg: sparkline(['waiting'], 'outbox of ' + component), points: [] };
        outboxes.set(component, o);
        $('outboxes').append(el('span', { class: 'outbox', 'data-outbox': component }, component + ' ', o.count, o.svg));
      }
      o.count.textContent = String(n);
      o.points.push({ waiting: n });
      if (o.points.length > HISTORY_SECONDS) o.points.shift();
      chart(o.svg, o.points, [['waiting']]);
    }
  }
  const outboxes = new Map(); // component -> {count, svg, points}

  function streamBox(name) {
    const b = { groups: new Map(), points: [] };
    b.svg = sparkline(['length', 'delayed', 'dead'], 'length, delayed and dead letters of ' + name);
    b.length = el('span');
    b.delayed = el('span');
    b.deadCount = el('span');
    b.showDead = el('button', { type: 'button', class: 'secondary', onclick: () => showDeadLetters(name) }, 'Show dead letters');
    b.tbody = el('tbody');
    b.box = el('section', { class: 'stream', 'data-stream': name },
      el('h3', null, name, b.length, b.delayed, b.deadCount, b.svg),
      el('div', { class: 'actions' }, b.showDead),
      el('div', { class: 'scroll' }, el('table', null,
        el('thead', null, el('tr', null, el('th', null, 'Group'), el('th', { class: 'num' }, 'Consumers'),
          el('th', { class: 'num' }, 'Lag'), el('th', { class: 'num' }, 'Pending'), el('th', { class: 'num' }, 'Handled/s'),
          el('th', null, 'Lag, pending, handled/s: 10 min'))),
        b.tbody)));
    return b;
  }

  function groupRow(name) {
    const r = { svg: sparkline(['lag', 'pending', 'handled'], 'lag, pending and handled per second of ' + name) };
    r.tr = el('tr', null, el('td', null, name), (r.consumers = el('td', { class: 'num' })), (r.lag = el('td', { class: 'num' })),
      (r.pending = el('td', { class: 'num' })), (r.rate = el('td', { class: 'num' })), el('td', null, r.svg));
    return r;
  }

  /** A small chart of the last 10 minutes: one line per series, in that order. */
  function sparkline(series, label) {
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('viewBox', '0 0 ' + HISTORY_SECONDS + ' 40');
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
    for (const cls of series) {
      const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
      line.setAttribute('class', cls);
      line.dataset.series = cls;
      svg.append(line);
    }
    return svg;
  }

  /** Draws `points` into `svg`; each group of series shares one scale. */
  function chart(svg, points, scales) {
    const start = HISTORY_SECONDS - points.length;
    for (const keys of scales) {
      const top = Math.max(1, ...points.map((p) => Math.max(...keys.map((k) => p[k]))));
      for (const key of keys) {
        const line = svg.querySelector('[data-series=' + key + ']');
        line.setAttribute('points', points.map((p, i) => (start + i) + ',' + (40 - (38 * p[key]) / top).toFixed(1)).join(' '));
      }
    }
  }

  async function showDeadLetters(stream) {
    $('dead').hidden = false;
    $('dead-title').textContent = 'Dead letters of ' + stream;
    const r = await call('GET', '/admin/dead-letters/' + encodeURIComponent(stream));
    const body = $('dead-table').querySelector('tbody');
    if (!r.ok) { $('dead-status').textContent = why(r); body.replaceChildren(); return; }
    $('dead-status').textContent = r.data.total + ' in all';
    body.replaceChildren(...r.data.entries.map((d) => el('tr', { 'data-dead-letter': d.id },
      el('td', null, d.id), el('td', null, d.group), el('td', { class: 'num' }, d.attempts), el('td', null, d.error),
      el('td', { class: 'payload' }, typeof d.payload === 'string' ? d.payload : JSON.stringify(d.payload)),
      el('td', { class: 'actions' },
        el('button', { type: 'button', onclick: () => deadLetter(stream, d.id, 'replay') }, 'Replay'),
        el('button', { type: 'button', class: 'secondary', onclick: () => deadLetter(stream, d.id, 'discard') }, 'Discard')))));
  }

  async function deadLetter(stream, id, what) {
    const base = '/admin/dead-letters/' + encodeURIComponent(stream) + '/' + encodeURIComponent(id);
    const r = what === 'replay' ? await call('POST', base + '/replay') : await call('DELETE', base);
    if (r.ok) await showDeadLetters(stream);
    $('dead-status').textContent = r.ok ? (what === 'replay' ? 'Replayed ' : 'Discarded ') + id + '.' : why(r);
  }

  // ---- the demo shop, through the public API ----
  const orders = []; // {id, product, quantity, status, row, placed}

  async function loadProducts() {
    const r = await call('GET', '/products?limit=100').catch(() => null);
    if (!r || !r.ok || !Array.isArray(r.data)) return;
    $('products').querySelector('tbody').replaceChildren(...r.data.map((p) => el('tr', { 'data-product': p.id },
      el('td', null, p.name), el('td', { class: 'num' }, Number(p.price).toFixed(2)), el('td', { class: 'num' }, p.quantity),
      el('td', null, p.id))));
    const select = $('order-product');
    const chosen = select.value;
    select.replaceChildren(...r.data.map((p) => el('option', { value: p.id }, p.name)));
    if (chosen) select.value = chosen;
  }

  $('product-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { name: $('product-name').value, price: Number($('product-price').value), quantity: Number($('product-quantity').value) };
    const r = await call('POST', '/products', body);
    $('shop-status').textContent = r.ok ? 'Created ' + r.data.name + '.' : 'Not created: ' + why(r);
    if (r.ok) { $('product-form').reset(); loadProducts(); }
  });

  $('order-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { product_id: $('order-product').value, quantity: Number($('order-quantity').value) };
    const r = await call('POST', '/orders', body);
    if (!r.ok) { $('shop-status').textContent = 'Not placed: ' + why(r); return; }
    $('shop-status').textContent = 'Placed order ' + r.data.id + '.';
    const o = { id: r.data.id, status: r.data.status, placed: Date.now(), requestId: r.requestId };
    o.badge = el('span', { class: 'badge ' + o.status }, o.status);
    o.timeline = el('ol');
    o.row = el('tr', { 'data-order': o.id }, el('td', null, o.id, el('br'), el('small', { title: 'request id: in every log line and span of this order' }, 'request ' + (o.requestId || ''))), el('td', null, r.data.product_id),
      el('td', { class: 'num' }, r.data.quantity), el('td', null, o.badge),
      el('td', null,
        el('button', { type: 'button', class: 'secondary', onclick: () => timeline(o) }, 'Timeline'), ' ',
        el('button', { type: 'button', class: 'secondary refund', onclick: () => refund(o) }, 'Refund'), o.timeline));
    orders.unshift(o);
    $('orders').querySelector('tbody').prepend(o.row);
  });

  // Orders still moving: pending ones, and recent ones (a refund comes later).
  async function refreshOrders() {
    const moving = orders.filter((o) => o.status === 'pending' || Date.now() - o.placed < 30000);
    if (!moving.length) return;
    await Promise.all(moving.map(async (o) => {
      const r = await call('GET', '/orders/' + encodeURIComponent(o.id)).catch(() => null);
      if (r && r.ok && r.data.status !== o.status) {
        o.status = r.data.status;
        o.badge.className = 'badge ' + o.status;
        o.badge.textContent = o.status;
      }
    }));
    // The stock moves a moment after the order: inventory takes it from the event.
    loadProducts();
  }

  async function refund(o) {
    const r = await call('POST', '/orders/' + encodeURIComponent(o.id) + '/refund');
    $('shop-status').textContent = r.ok ? 'Refund asked for ' + o.id + '.' : 'Not refunded: ' + why(r);
    o.placed = Date.now(); // watch it again: the refund lands through the streams
  }

  /** Every stream hop the order's request caused, and which groups are done with it. */
  async function timeline(o) {
    const r = await call('GET', '/admin/requests/' + encodeURIComponent(o.requestId || ''));
    if (!r.ok) { o.timeline.replaceChildren(el('li', null, why(r))); return; }
    o.timeline.replaceChildren(...r.data.hops.map((h) => el('li', { 'data-hop': h.stream },
      clock(h.at_ms) + ' ' + h.stream + ' from ' + h.origin + ': ' +
      h.groups.map((g) => g.group + (g.done ? ' done' : ' waiting')).join(', '))));
    if (!r.data.hops.length) o.timeline.replaceChildren(el('li', null, 'no recent stream entries'));
  }

  boot();
})();

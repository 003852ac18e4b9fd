// The API page: every operation of /openapi.json, with its schemas and a
// form that sends it. Values reach the page as text only (textContent), and
// the bearer token stays in this page's memory: never stored, never sent
// anywhere but this host.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  let token = '';

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

  $('auth-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('bearer').value.trim();
    $('bearer').value = '';
    $('auth-status').textContent = token ? 'Requests carry Authorization: Bearer (set).' : 'Requests are sent without credentials.';
  });
  $('auth-clear').addEventListener('click', () => {
    token = '';
    $('auth-status').textContent = 'Requests are sent without credentials.';
  });

  /** A value that fits `schema`, to start a request body from. */
  function example(schema, depth) {
    if (!schema || depth > 6) return null;
    if (schema.example !== undefined) return schema.example;
    if (schema.default !== undefined) return schema.default;
    if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
    const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
    switch (type) {
      case 'object': {
        const out = {};
        for (const [name, prop] of Object.entries(schema.properties || {})) out[name] = example(prop, depth + 1);
        return out;
      }
      case 'array': return [example(schema.items, depth + 1)];
      case 'integer': return schema.minimum !== undefined ? schema.minimum : 1;
      case 'number': return schema.minimum !== undefined && schema.minimum > 0 ? schema.minimum : 1.5;
      case 'boolean': return true;
      case 'string': return schema.minLength ? 'x'.repeat(schema.minLength) : 'string';
      default: return null;
    }
  }

  function operation(method, path, op) {
    const upper = method.toUpperCase();
    const params = (op.parameters || []).map((p) => ({ p, input: el('input', { 'aria-label': p.name, required: p.required ? true : null }) }));
    const schema = op.requestBody && op.requestBody.content && op.requestBody.content['application/json'] &&
      op.requestBody.content['application/json'].schema;
    const body = schema ? el('textarea', { 'aria-label': 'Request body (JSON)', spellcheck: 'false' }) : null;
    if (body) body.value = JSON.stringify(example(schema, 0), null, 2);
    const answer = el('div', { class: 'answer', role: 'status', 'aria-live': 'polite' });
    const send = el('button', { type: 'submit', class: 'send' }, 'Send');
    const okKey = Object.keys(op.responses || {}).find((k) => k === '2XX' || k.startsWith('2'));
    const ok = okKey && op.responses[okKey].content && op.responses[okKey].content['application/json'];
    const form = el('form', { onsubmit: (e) => { e.preventDefault(); run(upper, path, params, body, answer); } },
      params.length ? el('div', { class: 'params' }, params.map(({ p, input }) => [
        el('label', null, p.name + ' (' + p.in + (p.required ? ', required' : '') + ')'), input])) : null,
      body ? el('div', null, el('p', null, 'Request body'), body) : null,
      send);
    return el('details', { class: 'op', 'data-op': upper + ' ' + path },
      el('summary', null, el('span', { class: 'm ' + upper }, upper), ' ', el('code', null, path), ' ', op.summary || ''),
      el('div', { class: 'body' },
        schema ? el('details', null, el('summary', null, 'Request schema'), el('pre', null, JSON.stringify(schema, null, 2))) : null,
        ok ? el('details', null, el('summary', null, 'Response schema'), el('pre', null, JSON.stringify(ok.schema, null, 2))) : null,
        form, answer));
  }

  async function run(method, path, params, body, answer) {
    let url = path;
    const query = new URLSearchParams();
    for (const { p, input } of params) {
      if (p.in === 'path') url = url.replace('{' + p.name + '}', encodeURIComponent(input.value));
      else if (p.in === 'query' && input.value !== '') query.set(p.name, input.value);
    }
    if ([...query].length) url += '?' + query;
    const headers = {};
    if (token) headers.authorization = 'Bearer ' + token;
    let payload;
    if (body) {
      headers['content-type'] = 'application/json';
      payload = body.value;
    }
    answer.replaceChildren(el('p', null, 'Sending ' + method + ' ' + url + '…'));
    try {
      const r = await fetch(url, { method, headers, body: payload, credentials: 'omit' });
      const text = await r.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON */ }
      answer.replaceChildren(
        el('p', null, el('span', { class: 'status' }, String(r.status)), ' ' + r.statusText + ' · ' + method + ' ' + url +
          ' · request id ' + (r.headers.get('x-request-id') || '')),
        el('pre', { class: 'response' }, shown));
    } catch (e) {
      answer.replaceChildren(el('p', null, 'No answer: ' + e));
    }
  }

  fetch('/openapi.json').then((r) => r.json()).then((doc) => {
    const byTag = new Map();
    for (const [path, ops] of Object.entries(doc.paths || {})) {
      for (const [method, op] of Object.entries(ops)) {
        const tag = (op.tags || ['other'])[0];
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push(operation(method, path, op));
      }
    }
    $('ops').replaceChildren(...[...byTag].map(([tag, ops]) => el('section', null, el('h2', null, tag), ops)));
  }).catch((e) => { $('ops').replaceChildren(el('p', null, 'Cannot read /openapi.json: ' + e)); });
})();

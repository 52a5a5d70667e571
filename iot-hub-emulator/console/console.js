// The emulator's web console. Plain JavaScript, no build step. Every hub operation goes
// through the hub's own REST API with a short-lived iothubowner token from /console/token,
// so what the page shows is what the API returns. Device data is only ever put in the page
// as text (textContent), never as markup.
'use strict';
(() => {
  const API_VERSION = '2021-04-12';
  // Rows a telemetry view keeps (oldest go first), and messages it holds while paused.
  const TELEMETRY_ROWS = 500;
  const PAUSED_MAX = 500;

  const $ = (sel, root = document) => root.querySelector(sel);
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  };

  // ---- tokens and API calls ----------------------------------------------------------
  let session = null;
  async function getSession() {
    if (!session || session.expiresAt - Date.now() / 1000 < 60) {
      const r = await fetch('/console/token', { credentials: 'same-origin', cache: 'no-store' });
      if (r.status === 401) {
        location.reload();
        throw new Error('Not logged in.');
      }
      if (!r.ok) throw new Error('The console token was refused (HTTP ' + r.status + ').');
      session = await r.json();
    }
    return session;
  }

  async function api(method, path, body, extraHeaders) {
    const s = await getSession();
    const headers = Object.assign({ Authorization: s.authorization }, extraHeaders || {});
    let payload;
    if (typeof body === 'string') {
      payload = body;
      if (!headers['Content-Type']) headers['Content-Type'] = 'text/plain; charset=utf-8';
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
    const url = path + (path.includes('?') ? '&' : '?') + 'api-version=' + API_VERSION;
    const r = await fetch(url, { method, headers, body: payload, cache: 'no-store' });
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
    return { status: r.status, ok: r.ok, json, text, headers: r.headers };
  }

  // The hub's error body nests its message as JSON in "Message".
  function errorText(res) {
    let msg = res.text;
    if (res.json && typeof res.json.Message === 'string') {
      try {
        const inner = JSON.parse(res.json.Message);
        msg = inner.message + ' (' + inner.errorCode + ')';
      } catch (_) { msg = res.json.Message; }
    }
    return 'HTTP ' + res.status + ': ' + msg;
  }

  function banner(text) {
    const b = $('#banner');
    b.textContent = text || '';
    b.hidden = !text;
  }

  const pretty = (v) => JSON.stringify(v, null, 2);
  const enc = encodeURIComponent;

  // A JSON merge patch that turns `before` into `after` (removed keys become null).
  function mergePatch(before, after) {
    const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
    if (!isObj(before) || !isObj(after)) return after;
    const patch = {};
    for (const k of Object.keys(after)) {
      if (!(k in before)) patch[k] = after[k];
      else if (JSON.stringify(before[k]) !== JSON.stringify(after[k])) {
        patch[k] = isObj(before[k]) && isObj(after[k]) ? mergePatch(before[k], after[k]) : after[k];
      }
    }
    for (const k of Object.keys(before)) if (!(k in after)) patch[k] = null;
    return patch;
  }

  const withoutMeta = (o) => {
    const copy = Object.assign({}, o || {});
    delete copy.$metadata;
    delete copy.$version;
    return copy;
  };

  // ---- views ------------------------------------------------------------------------
  let current = { view: 'devices', deviceId: null };

  function route() {
    const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
    let view = 'devices';
    let deviceId = null;
    if (hash.startsWith('device/')) {
      view = 'device';
      deviceId = hash.slice('device/'.length);
    } else if (['telemetry', 'query', 'jobs', 'connection', 'faults'].includes(hash)) {
      view = hash;
    }
    current = { view, deviceId };
    for (const s of document.querySelectorAll('[data-view]')) s.hidden = s.dataset.view !== view;
    for (const a of document.querySelectorAll('[data-nav]')) {
      if (a.dataset.nav === view) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    banner('');
    const load = {
      devices: loadDevices,
      device: () => loadDevice(deviceId),
      jobs: loadJobs,
      connection: loadConnection,
      faults: loadFaults,
    }[view];
    if (load) load().catch((e) => banner(e.message));
  }

  // ---- devices ----------------------------------------------------------------------
  async function loadDevices() {
    const res = await api('GET', '/devices?top=1000');
    if (!res.ok) return banner('Listing devices failed: ' + errorText(res));
    const rows = $('#device-rows');
    rows.replaceChildren();
    const devices = res.json || [];
    let connected = 0;
    for (const d of devices) {
      if (d.connectionState === 'Connected') connected++;
      const tr = el('tr');
      tr.dataset.deviceId = d.deviceId;
      const idCell = el('td');
      const a = el('a', d.deviceId);
      a.href = '#/device/' + enc(d.deviceId);
      idCell.append(a);
      tr.append(idCell, el('td', d.connectionState, 'state ' + d.connectionState),
        el('td', d.lastActivityTime || ''), el('td', d.status || ''),
        el('td', d.cloudToDeviceMessageCount ?? 0));
      rows.append(tr);
    }
    $('#devices-summary').textContent = devices.length + ' devices, ' + connected + ' connected';
  }

  // ---- one device ---------------------------------------------------------------------
  let twin = null;

  async function loadDevice(id) {
    $('#device-id').textContent = id;
    $('#twin-message').textContent = '';
    $('#twin-message').className = '';
    $('#method-status').textContent = '';
    $('#method-time').textContent = '';
    $('#method-result').textContent = '';
    $('#c2d-message').textContent = '';
    deviceTelemetry.reset();
    const [dev, s] = await Promise.all([api('GET', '/devices/' + enc(id)), getSession()]);
    if (!dev.ok) return banner('Reading the device failed: ' + errorText(dev));
    showDeviceState(dev.json);
    const key = dev.json.authentication && dev.json.authentication.symmetricKey &&
      dev.json.authentication.symmetricKey.primaryKey;
    $('#device-cs').value = key
      ? 'HostName=' + s.hostName + ';DeviceId=' + id + ';SharedAccessKey=' + key +
        (s.deviceGateway ? ';GatewayHostName=' + s.deviceGateway : '')
      : '(this device does not authenticate with a symmetric key)';
    await loadTwin(id, true);
  }

  function showDeviceState(d) {
    const state = $('#device-state');
    state.textContent = d.connectionState;
    state.className = 'pill ' + d.connectionState;
    $('#device-activity').textContent = d.lastActivityTime ? 'last activity ' + d.lastActivityTime : '';
  }

  async function loadTwin(id, fillEditors) {
    const res = await api('GET', '/twins/' + enc(id));
    if (!res.ok) return banner('Reading the twin failed: ' + errorText(res));
    twin = res.json;
    $('#twin-json').textContent = pretty(twin);
    $('#twin-etag').textContent = twin.etag || '';
    $('#twin-version').textContent = twin.version ?? '';
    if (fillEditors) {
      $('#tags-editor').value = pretty(twin.tags || {});
      $('#desired-editor').value = pretty(withoutMeta(twin.properties && twin.properties.desired));
    }
  }

  async function saveTwin(ev) {
    ev.preventDefault();
    const msg = $('#twin-message');
    msg.className = '';
    let tags, desired;
    try {
      tags = JSON.parse($('#tags-editor').value || '{}');
      desired = JSON.parse($('#desired-editor').value || '{}');
    } catch (e) {
      msg.className = 'error';
      msg.textContent = 'Not valid JSON: ' + e.message;
      return;
    }
    const id = current.deviceId;
    const patch = {};
    const tagPatch = mergePatch(twin.tags || {}, tags);
    const desiredPatch = mergePatch(withoutMeta(twin.properties && twin.properties.desired), desired);
    if (Object.keys(tagPatch).length) patch.tags = tagPatch;
    if (Object.keys(desiredPatch).length) patch.properties = { desired: desiredPatch };
    if (!Object.keys(patch).length) {
      msg.textContent = 'Nothing changed.';
      return;
    }
    const etag = twin.etag;
    msg.textContent = 'Saving…';
    const res = await api('PATCH', '/twins/' + enc(id), patch, { 'If-Match': '"' + etag + '"' });
    if (res.status === 412) {
      msg.className = 'conflict';
      msg.textContent = 'Conflict: the twin changed since it was loaded (etag ' + etag +
        ' is stale, the hub answered 412). Nothing was saved; your edits are still here. ' +
        'Reload the twin to see the other change, then save again.';
      return;
    }
    if (!res.ok) {
      msg.className = 'error';
      msg.textContent = 'Not saved: ' + errorText(res);
      return;
    }
    twin = res.json;
    msg.className = 'ok';
    msg.textContent = 'Saved: desired version ' + (twin.properties.desired.$version ?? '?') + ', etag ' + twin.etag + '.';
    await loadTwin(id, true);
  }

  async function invokeMethod(ev) {
    ev.preventDefault();
    let payload;
    try {
      payload = JSON.parse($('#method-payload').value || 'null');
    } catch (e) {
      $('#method-status').textContent = 'payload is not valid JSON: ' + e.message;
      return;
    }
    const body = {
      methodName: $('#method-name').value,
      payload,
      responseTimeoutInSeconds: Number($('#method-timeout').value) || 30,
    };
    $('#method-status').textContent = 'waiting…';
    $('#method-result').textContent = '';
    $('#method-time').textContent = '';
    const started = performance.now();
    const res = await api('POST', '/twins/' + enc(current.deviceId) + '/methods', body);
    const ms = Math.round(performance.now() - started);
    $('#method-time').textContent = ms + ' ms';
    if (!res.ok) {
      $('#method-status').textContent = 'failed';
      $('#method-result').textContent = errorText(res);
      return;
    }
    $('#method-status').textContent = String(res.json.status);
    $('#method-result').textContent = pretty(res.json.payload);
  }

  async function sendC2d(ev) {
    ev.preventDefault();
    const params = new URLSearchParams();
    for (const line of $('#c2d-props').value.split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) params.append('app.' + line.slice(0, i).trim(), line.slice(i + 1).trim());
    }
    const q = params.toString();
    const res = await api('POST', '/emulator/devices/' + enc(current.deviceId) + '/messages' + (q ? '?' + q : ''),
      $('#c2d-body').value);
    const msg = $('#c2d-message');
    if (res.ok) {
      msg.className = 'ok';
      msg.textContent = 'Queued, message id ' + res.json.messageId + '.';
    } else {
      msg.className = 'error';
      msg.textContent = 'Not sent: ' + errorText(res);
    }
  }

  // ---- telemetry views --------------------------------------------------------------
  function telemetryView(container, accepts) {
    container.append($('#telemetry-template').content.cloneNode(true));
    const rows = $('.telemetry-rows', container);
    const pause = $('.pause', container);
    const filter = $('.filter', container);
    const counts = $('.counts', container);
    let paused = false;
    let held = [];
    let missed = 0;
    let heldDropped = 0;

    const matches = (tr) => {
      const f = filter.value.trim().toLowerCase();
      return !f || tr.textContent.toLowerCase().includes(f);
    };
    const showCounts = () => {
      let shown = 0;
      for (const tr of rows.children) if (!tr.hidden) shown++;
      const parts = [shown + ' shown'];
      if (paused) parts.push(held.length + ' waiting');
      if (missed) parts.push(missed + ' missed');
      if (heldDropped) parts.push(heldDropped + ' dropped while paused');
      counts.textContent = parts.join(', ');
    };
    const render = (r) => {
      const tr = el('tr');
      tr.dataset.deviceId = r.deviceId;
      const body = r.body !== undefined ? r.body : '(binary, base64) ' + r.bodyBase64;
      const props = Object.assign({}, r.properties.application || {});
      for (const k of ['messageId', 'correlationId', 'contentType', 'contentEncoding']) {
        if (r.properties[k]) props['$' + k] = r.properties[k];
      }
      const bodyCell = el('td');
      bodyCell.append(el('code', body, 'body'));
      tr.append(el('td', r.sequenceNumber), el('td', r.enqueuedTime), el('td', r.deviceId + (r.moduleId ? '/' + r.moduleId : '')),
        bodyCell, el('td', Object.keys(props).length ? JSON.stringify(props) : ''));
      tr.hidden = !matches(tr);
      rows.prepend(tr);
      while (rows.children.length > TELEMETRY_ROWS) rows.lastElementChild.remove();
    };
    pause.addEventListener('click', () => {
      paused = !paused;
      pause.setAttribute('aria-pressed', String(paused));
      pause.textContent = paused ? 'Resume' : 'Pause';
      if (!paused) {
        held.forEach(render);
        held = [];
      }
      showCounts();
    });
    filter.addEventListener('input', () => {
      for (const tr of rows.children) tr.hidden = !matches(tr);
      showCounts();
    });
    $('.clear', container).addEventListener('click', () => {
      rows.replaceChildren();
      held = [];
      missed = 0;
      heldDropped = 0;
      showCounts();
    });
    return {
      add(r) {
        if (!accepts(r)) return;
        if (paused) {
          held.push(r);
          if (held.length > PAUSED_MAX) {
            held.shift();
            heldDropped++;
          }
        } else {
          render(r);
        }
        showCounts();
      },
      missed(n) {
        missed += n;
        showCounts();
      },
      reset() {
        rows.replaceChildren();
        held = [];
        showCounts();
      },
    };
  }

  let hubTelemetry;
  let deviceTelemetry;

  // One stream for the page: connection changes refresh what is on screen, telemetry goes
  // to both views. EventSource reconnects by itself and resumes after the last event id.
  function startEvents() {
    const es = new EventSource('/console/events');
    let refresh = null;
    es.addEventListener('devices', () => {
      // Activity changes with every message; one reload per 200 ms is plenty.
      if (refresh) return;
      refresh = setTimeout(async () => {
        refresh = null;
        try {
          if (current.view === 'devices') await loadDevices();
          if (current.view === 'device') {
            const res = await api('GET', '/devices/' + enc(current.deviceId));
            if (res.ok) showDeviceState(res.json);
          }
        } catch (e) { banner(e.message); }
      }, 200);
    });
    es.addEventListener('telemetry', (ev) => {
      const r = JSON.parse(ev.data);
      hubTelemetry.add(r);
      deviceTelemetry.add(r);
    });
    es.addEventListener('dropped', (ev) => {
      const n = JSON.parse(ev.data).count;
      hubTelemetry.missed(n);
      deviceTelemetry.missed(n);
    });
    es.addEventListener('open', () => banner(''));
    es.addEventListener('error', () => {
      if (es.readyState === EventSource.CLOSED) banner('The live stream closed; reload the page.');
    });
  }

  // ---- query, jobs, connection strings, faults ------------------------------------------
  let queryContinuation = null;

  async function runQuery(more) {
    const msg = $('#query-message');
    msg.className = '';
    const headers = { 'x-ms-max-item-count': '100' };
    if (more && queryContinuation) headers['x-ms-continuation'] = queryContinuation;
    const res = await api('POST', '/devices/query', { query: $('#query-text').value }, headers);
    if (!res.ok) {
      msg.className = 'error';
      msg.textContent = errorText(res);
      return;
    }
    queryContinuation = res.headers.get('x-ms-continuation');
    $('#query-more').hidden = !queryContinuation;
    const rowsData = Array.isArray(res.json) ? res.json : [];
    const table = $('#query-table');
    const columns = [];
    for (const r of rowsData) {
      const keys = r !== null && typeof r === 'object' ? Object.keys(r) : ['value'];
      for (const k of keys) if (!columns.includes(k)) columns.push(k);
    }
    const head = el('tr');
    for (const c of columns) {
      const th = el('th', c);
      th.scope = 'col';
      head.append(th);
    }
    $('thead', table).replaceChildren(head);
    const body = $('tbody', table);
    if (!more) body.replaceChildren();
    for (const r of rowsData) {
      const tr = el('tr');
      for (const c of columns) {
        const v = r !== null && typeof r === 'object' ? r[c] : r;
        const td = el('td');
        if (v !== null && typeof v === 'object') td.append(el('code', JSON.stringify(v)));
        else td.textContent = v === undefined ? '' : String(v);
        tr.append(td);
      }
      body.append(tr);
    }
    msg.textContent = body.children.length + ' rows' + (queryContinuation ? ' (more available)' : '');
  }

  async function loadJobs() {
    const res = await api('GET', '/jobs/v2/query');
    const msg = $('#jobs-message');
    if (!res.ok) {
      msg.textContent = errorText(res);
      return;
    }
    const jobs = Array.isArray(res.json) ? res.json : [];
    msg.textContent = jobs.length ? '' : 'No jobs. Schedule one with `iothub job schedule` or the service SDK.';
    const rows = $('#jobs-rows');
    rows.replaceChildren();
    for (const j of jobs) {
      const st = j.deviceJobStatistics || {};
      const tr = el('tr');
      const actions = el('td');
      if (['queued', 'scheduled', 'running'].includes(j.status)) {
        const b = el('button', 'Cancel');
        b.type = 'button';
        b.setAttribute('aria-label', 'Cancel job ' + j.jobId);
        b.addEventListener('click', async () => {
          const r = await api('POST', '/jobs/v2/' + enc(j.jobId) + '/cancel');
          if (!r.ok) msg.textContent = errorText(r);
          await loadJobs();
        });
        actions.append(b);
      }
      tr.append(el('td', j.jobId), el('td', j.type), el('td', j.status), el('td', j.queryCondition || ''),
        el('td', j.startTime || ''),
        el('td', (st.succeededCount ?? 0) + ' / ' + (st.failedCount ?? 0) + ' / ' + (st.deviceCount ?? 0)), actions);
      rows.append(tr);
    }
  }

  async function loadConnection() {
    const s = await getSession();
    $('#service-cs').value = s.serviceConnectionString;
  }

  async function loadFaults() {
    const res = await api('GET', '/emulator/faults');
    if (res.ok) $('#faults-message').textContent = res.json.fired + ' injected faults have fired so far.';
  }

  async function applyFaults(ev) {
    ev.preventDefault();
    const settings = {};
    for (const input of document.querySelectorAll('[data-fault]')) {
      if (input.value === '') continue;
      settings[input.dataset.fault] = input.tagName === 'SELECT' ? input.value === 'true' : Number(input.value);
    }
    const res = await api('POST', '/emulator/faults', settings);
    const msg = $('#faults-message');
    msg.className = res.ok ? 'ok' : 'error';
    msg.textContent = res.ok ? 'Applied ' + JSON.stringify(settings) + '; ' + res.json.fired + ' faults fired so far.' : errorText(res);
  }

  async function copy(id) {
    const input = document.getElementById(id);
    try {
      await navigator.clipboard.writeText(input.value);
    } catch (_) {
      input.select();
      document.execCommand('copy');
    }
  }

  // ---- start ------------------------------------------------------------------------------
  document.addEventListener('DOMContentLoaded', async () => {
    hubTelemetry = telemetryView($('[data-telemetry="hub"]'), () => true);
    deviceTelemetry = telemetryView($('[data-telemetry="device"]'),
      (r) => current.view === 'device' && r.deviceId === current.deviceId);
    const guard = (f) => (ev) => f(ev).catch((e) => banner(e.message));
    $('#twin-form').addEventListener('submit', guard(saveTwin));
    $('#twin-reload').addEventListener('click', guard(() => loadTwin(current.deviceId, true)));
    $('#method-form').addEventListener('submit', guard(invokeMethod));
    $('#c2d-form').addEventListener('submit', guard(sendC2d));
    $('#query-form').addEventListener('submit', guard((ev) => { ev.preventDefault(); return runQuery(false); }));
    $('#query-more').addEventListener('click', guard(() => runQuery(true)));
    $('#jobs-reload').addEventListener('click', guard(loadJobs));
    $('#faults-form').addEventListener('submit', guard(applyFaults));
    $('#disconnect-all').addEventListener('click', guard(async () => {
      const res = await api('POST', '/emulator/disconnect-all');
      $('#faults-message').textContent = res.ok ? res.json.disconnected + ' connections dropped.' : errorText(res);
    }));
    for (const b of document.querySelectorAll('[data-copy]')) {
      b.addEventListener('click', () => copy(b.dataset.copy));
    }
    window.addEventListener('hashchange', route);
    try {
      const s = await getSession();
      $('#hub-name').textContent = s.hostName;
      $('#logout-form').hidden = !s.loginRequired;
    } catch (e) {
      banner(e.message);
    }
    route();
    startEvents();
  });
})();

// The termsync operator console: plain JavaScript, no build step, no external
// files. Every value from the server goes into the page through textContent or
// attribute setters (h() below), never as HTML, so a user named
// "<script>..." is shown, not run. The admin token lives in sessionStorage
// (this tab only) and travels in the Authorization header, never in an address.
'use strict';

(function () {
  var TOKEN_KEY = 'termsync.adminToken';
  var PAGE = 50;
  var MODES = [
    { id: 'off', label: 'Disabled', text: 'Users are not synchronised: changes made on the server stay on the server, and enrollments on a terminal stay on that terminal.' },
    { id: 'server', label: 'All Devices', text: 'Users created or changed on the server are sent to every approved terminal. Enrollments made on a terminal are not copied to the others.' },
    { id: 'all', label: 'All Devices (including user update from device)', text: 'Server changes go to every approved terminal, and a user enrolled or edited on any terminal is read into the server (server fields win, empty ones are filled) and sent to all the other terminals.' },
    { id: 'specific', label: 'Specific Devices (only devices belonging to the access group)', text: 'Like "All Devices (including user update from device)", but a user goes only to the terminals that serve one of the user\u2019s access groups.' },
  ];
  var STATE_TEXT = {
    current: 'holds the current record',
    owed: 'owed',
    refused: 'refused',
    'out-of-scope': 'out of scope',
    offline: 'terminal offline',
    pending: 'terminal pending',
  };

  // ------------------------------------------------------------- helpers

  function $(id) { return document.getElementById(id); }

  /** h('a', {href: '#/x', class: 'y'}, 'text', child...): an element; strings become text nodes. */
  function h(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = String(v);
        else if (k.slice(0, 2) === 'on' && typeof v === 'function') e.addEventListener(k.slice(2), v);
        else if (v === true) e.setAttribute(k, '');
        else e.setAttribute(k, String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }
  function add(parent, c) {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { add(parent, x); }); return; }
    parent.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }
  function pad(n) { return n < 10 ? '0' + n : String(n); }
  function when(ms) {
    if (!ms) return '\u2014';
    var d = new Date(ms);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }
  function userLink(id) { return id === null || id === undefined ? '' : h('a', { href: '#/user/' + encodeURIComponent(id), 'data-user': id }, id); }
  function terminalLink(id) { return id === null || id === undefined ? '' : h('a', { href: '#/terminal/' + encodeURIComponent(id), 'data-terminal': id }, id); }
  function badge(kind, text) { return h('span', { class: 'badge b-' + kind }, text); }
  function table(headers, rows, attrs) {
    return h('div', { class: 'scroll' }, h('table', attrs || null,
      h('thead', null, h('tr', null, headers.map(function (x) { return h('th', { scope: 'col', class: x.cls || null }, x.text || x); }))),
      h('tbody', null, rows)));
  }
  function field(labelText, input) {
    var id = input.id || ('f' + Math.random().toString(36).slice(2));
    input.id = id;
    return h('div', { class: 'field' }, h('label', { for: id }, labelText), input);
  }
  function banner(text, ok) {
    var b = $('banner');
    b.textContent = text || '';
    b.className = ok ? 'ok' : '';
    b.hidden = !text;
  }

  // ---------------------------------------------------------------- API

  function token() { return sessionStorage.getItem(TOKEN_KEY); }
  function AuthError() { this.message = 'not signed in'; }
  function ApiError(status, message) { this.status = status; this.message = message; }

  function api(method, path, body) {
    var headers = { accept: 'application/json' };
    var t = token();
    if (t) headers.authorization = 'Bearer ' + t;
    if (method !== 'GET' && method !== 'DELETE') headers['content-type'] = 'application/json';
    return fetch(path, { method: method, headers: headers, cache: 'no-store', credentials: 'omit', body: body === undefined ? undefined : JSON.stringify(body) }).then(function (r) {
      if (r.status === 401) { showLogin(); throw new AuthError(); }
      if (r.status === 204) return null;
      return r.text().then(function (text) {
        var j = null;
        try { j = text ? JSON.parse(text) : null; } catch (e) { j = null; }
        if (!r.ok) throw new ApiError(r.status, j && j.error ? j.error : 'HTTP ' + r.status);
        return j;
      });
    });
  }
  function failed(e) {
    if (e instanceof AuthError) return;
    banner(e && e.message ? e.message : String(e));
  }

  // ------------------------------------------------------------- login

  function showLogin() {
    $('login').hidden = false;
    $('nav').hidden = true;
    clear($('view'));
    stopTimers();
    $('token').focus();
  }

  $('login-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var t = $('token').value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    api('GET', '/api/status').then(function () {
      $('token').value = '';
      $('login-error').textContent = '';
      $('login').hidden = true;
      $('nav').hidden = false;
      route();
    }, function (e) {
      sessionStorage.removeItem(TOKEN_KEY);
      $('login').hidden = false;
      $('login-error').textContent = e instanceof AuthError ? 'That token is not the admin token of this daemon.' : (e.message || String(e));
    });
  });

  $('signout').addEventListener('click', function () {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin();
  });

  // ------------------------------------------------------------ routing

  var timers = [];
  var streamAbort = null;
  function every(ms, fn) { timers.push(setInterval(fn, ms)); }
  function stopTimers() {
    timers.forEach(clearInterval);
    timers = [];
    if (streamAbort) { streamAbort.abort(); streamAbort = null; }
  }

  function parseHash() {
    var raw = location.hash.replace(/^#\/?/, '');
    var q = '';
    var i = raw.indexOf('?');
    if (i >= 0) { q = raw.slice(i + 1); raw = raw.slice(0, i); }
    var parts = raw.split('/').map(function (p) { try { return decodeURIComponent(p); } catch (e) { return p; } });
    return { parts: parts, query: new URLSearchParams(q) };
  }

  function route() {
    stopTimers();
    banner('');
    var r = parseHash();
    var section = r.parts[0] || 'users';
    var view = clear($('view'));
    var nav = { user: 'users', users: 'users', terminal: 'terminals', terminals: 'terminals', settings: 'settings', failures: 'failures', log: 'log' }[section] || 'users';
    Array.prototype.forEach.call(document.querySelectorAll('#nav a'), function (a) {
      if (a.getAttribute('data-section') === nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    });
    var pages = { users: usersPage, user: userPage, terminals: terminalsPage, terminal: terminalPage, settings: settingsPage, failures: failuresPage, log: logPage };
    (pages[section] || usersPage)(view, r);
  }
  function heading(view, text) {
    var e = h('h2', { tabindex: '-1' }, text);
    view.appendChild(e);
    document.title = text + ' \u2014 termsync';
    return e;
  }
  function go(hash) {
    if (location.hash === hash) route(); else location.hash = hash;
  }
  window.addEventListener('hashchange', function () { if (!$('login').hidden) return; route(); var t = document.querySelector('#view h2'); if (t) t.focus(); });

  // -------------------------------------------------------------- users

  function usersPage(view, r) {
    heading(view, 'Users');
    var q = r.query.get('q') || '';
    var by = r.query.get('by') === 'id' ? 'id' : 'name';
    var input = h('input', { type: 'search', id: 'user-q', name: 'q', value: q, placeholder: by === 'id' ? 'ID starts with\u2026' : 'Name starts with\u2026', autocomplete: 'off' });
    var select = h('select', { id: 'user-by', name: 'by' }, h('option', { value: 'name', selected: by === 'name' }, 'Name'), h('option', { value: 'id', selected: by === 'id' }, 'ID'));
    var form = h('form', { class: 'inline', role: 'search', onsubmit: function (ev) {
      ev.preventDefault();
      go('#/users?by=' + encodeURIComponent(select.value) + '&q=' + encodeURIComponent(input.value));
    } }, field('Search', input), field('By', select), h('button', { type: 'submit', class: 'primary' }, 'Search'), h('a', { href: '#/user/', class: 'button', id: 'new-user' }, 'New user'));
    view.appendChild(form);
    var results = h('div', { id: 'user-results' });
    view.appendChild(results);
    var stack = [];
    var after = null;
    function load() {
      var path = '/api/user-search?by=' + by + '&limit=' + PAGE + '&q=' + encodeURIComponent(q) + (after ? '&after=' + encodeURIComponent(after) : '');
      api('GET', path).then(function (page) {
        clear(results);
        if (page.users.length === 0) { results.appendChild(h('p', { class: 'muted' }, q ? 'No user matches.' : 'No users yet.')); }
        else {
          results.appendChild(table(['ID', 'Name', { text: 'Cards', cls: 'num' }, { text: 'Fingers', cls: 'num hide-narrow' }, { text: 'Faces', cls: 'num hide-narrow' }, 'PIN', 'Status'], page.users.map(function (u) {
            return h('tr', { 'data-user': u.id },
              h('td', null, userLink(u.id)), h('td', { class: 'wrap', dir: 'auto' }, u.name),
              h('td', { class: 'num' }, u.cards), h('td', { class: 'num hide-narrow' }, u.fingers), h('td', { class: 'num hide-narrow' }, u.faces),
              h('td', null, u.pinSet ? 'set' : '\u2014'), h('td', null, u.disabled ? badge('warn', 'disabled') : badge('ok', 'active')));
          }), { id: 'users-table' }));
        }
        var prev = h('button', { type: 'button', disabled: stack.length === 0, onclick: function () { after = stack.pop() || null; load(); } }, '\u2190 Previous');
        var next = h('button', { type: 'button', disabled: !page.next, onclick: function () { stack.push(after); after = page.next; load(); } }, 'Next \u2192');
        results.appendChild(h('div', { class: 'pager' }, prev, h('span', { class: 'muted' }, 'Page ' + (stack.length + 1)), next));
      }, failed);
    }
    load();
  }

  function syncDetail(s) {
    if (s.state === 'refused') {
      var held = s.heldBy && s.heldBy.length ? [': a card of this user is held by ', s.heldBy.map(function (id, i) { return [i ? ', ' : '', 'user ', userLink(id)]; })] : '';
      return [s.reason || 'refused', held, s.since ? ' (since ' + when(s.since) + ')' : ''];
    }
    if (s.state === 'owed' || (s.state === 'offline' && s.since)) return ['queued since ' + when(s.since) + (s.attempts ? ', ' + s.attempts + ' attempts' : '') + (s.lastError ? ', last error: ' + s.lastError : '')];
    return [s.reason || ''];
  }

  function userPage(view, r) {
    var id = r.parts.slice(1).join('/');
    if (!id) return userEdit(view, null);
    if (r.parts[r.parts.length - 1] === 'edit' && r.parts.length > 2) return userEdit(view, r.parts.slice(1, -1).join('/'));
    heading(view, 'User ' + id);
    var body = h('div', { id: 'user-detail' });
    view.appendChild(body);
    api('GET', '/api/users/' + encodeURIComponent(id)).then(function (u) {
      var editHash = '#/user/' + encodeURIComponent(id) + '/edit';
      body.appendChild(h('div', { class: 'actions' },
        h('a', { href: editHash, class: 'button', id: 'edit-user' }, 'Edit'),
        h('button', { type: 'button', class: 'danger', id: 'delete-user', onclick: function () {
          if (!confirm('Delete user ' + id + ' from the server and from the terminals in scope?')) return;
          api('DELETE', '/api/users/' + encodeURIComponent(id)).then(function () { banner('User ' + id + ' deleted.', true); location.hash = '#/users'; }, failed);
        } }, 'Delete')));
      body.appendChild(h('h3', null, 'Sync state per terminal'));
      var sync = h('div', { id: 'user-sync' });
      body.appendChild(sync);
      function loadSync() {
        api('GET', '/api/users/' + encodeURIComponent(id) + '/sync').then(function (s) {
          clear(sync);
          sync.appendChild(h('p', { class: 'muted' }, 'Sync mode: ' + modeLabel(s.syncMode)));
          sync.appendChild(table(['Terminal', 'State', 'Detail', ''], s.terminals.map(function (t) {
            return h('tr', { 'data-terminal': t.terminal, 'data-state': t.state },
              h('td', null, terminalLink(t.terminal)), h('td', null, badge(t.state, STATE_TEXT[t.state] || t.state)), h('td', { class: 'wrap' }, syncDetail(t)),
              h('td', null, t.state === 'refused' ? h('button', { type: 'button', onclick: function () {
                api('POST', '/api/push-failures/retry', { terminalId: t.terminal, userId: id }).then(loadSync, failed);
              } }, 'Retry') : ''));
          }), { id: 'sync-table' }));
        }, failed);
      }
      loadSync();
      every(2000, loadSync);
      body.appendChild(h('h3', null, 'Set PIN'));
      var pin = h('input', { type: 'password', id: 'pin', inputmode: 'numeric', autocomplete: 'new-password', pattern: '[0-9]{4,16}', required: true });
      body.appendChild(h('form', { class: 'inline', id: 'pin-form', onsubmit: function (ev) {
        ev.preventDefault();
        api('PUT', '/api/users/' + encodeURIComponent(id) + '?merge=1', { pin: pin.value }).then(function () { pin.value = ''; banner('PIN set for ' + id + '.', true); }, failed);
      } }, field('New PIN (4 to 16 digits; never shown)', pin), h('button', { type: 'submit' }, 'Set PIN'), h('span', { class: 'muted' }, u.pinSet ? 'A PIN is set.' : 'No PIN set.')));
      body.appendChild(h('h3', null, 'Fields'));
      body.appendChild(userFields(u));
    }, failed);
  }

  function userFields(u) {
    var dl = h('dl', { class: 'fields', id: 'user-fields' });
    Object.keys(u).forEach(function (k) {
      var v = u[k];
      var shown;
      if (k === 'photo') shown = v ? (v.length / 2) + ' bytes' : '\u2014';
      else if (k === 'fingers' && Array.isArray(v)) shown = v.length ? h('pre', null, v.map(function (f) { return 'finger ' + f.index + ' (flag ' + (f.flag || 0) + '): templates of ' + f.templates[0].length / 2 + ' and ' + f.templates[1].length / 2 + ' bytes'; }).join('\n')) : '\u2014';
      else if (k === 'faces' && Array.isArray(v)) shown = v.length ? h('pre', null, v.map(function (f) { return 'face ' + f.index + ' (flag ' + (f.flag || 0) + '): ' + f.data.length / 2 + ' bytes'; }).join('\n')) : '\u2014';
      else if (k === 'cards' && Array.isArray(v)) shown = v.length ? h('pre', null, v.map(function (c) { return 'type ' + c.type + ': ' + c.data; }).join('\n')) : '\u2014';
      else if (k === 'jobCodes' && Array.isArray(v)) shown = v.length ? h('pre', null, v.map(function (j) { return j.code + ' ' + j.label; }).join('\n')) : '\u2014';
      else if (Array.isArray(v) && v.every(function (x) { return typeof x === 'number'; })) shown = v.length ? v.join(', ') : '\u2014';
      else if ((k === 'startTime' || k === 'endTime') && typeof v === 'number') shown = v ? when(v * 1000) + ' (' + v + ')' : '0 (no limit)';
      else if (typeof v === 'object' && v !== null) shown = h('pre', null, JSON.stringify(v, null, 1));
      else shown = String(v);
      dl.appendChild(h('dt', null, k));
      dl.appendChild(h('dd', { 'data-field': k, dir: 'auto' }, shown));
    });
    return dl;
  }

  function userEdit(view, id) {
    heading(view, id ? 'Edit user ' + id : 'New user');
    var form = h('form', { id: 'user-form' });
    view.appendChild(form);
    function build(u) {
      var idIn = h('input', { type: 'text', id: 'u-id', value: u.id || '', required: true, readonly: !!id, spellcheck: 'false' });
      var name = h('input', { type: 'text', id: 'u-name', value: u.name || '', dir: 'auto' });
      var disabled = h('input', { type: 'checkbox', id: 'u-disabled', checked: !!u.disabled });
      var cards = h('textarea', { id: 'u-cards', rows: 3, spellcheck: 'false' });
      cards.value = (u.cards || []).map(function (c) { return c.type + ' ' + c.data; }).join('\n');
      var groups = h('input', { type: 'text', id: 'u-groups', value: (u.accessGroups || []).join(', '), inputmode: 'numeric' });
      var advanced = h('textarea', { id: 'u-json', rows: 10, spellcheck: 'false' });
      var rest = {};
      Object.keys(u).forEach(function (k) { if (['id', 'name', 'disabled', 'cards', 'accessGroups', 'pinSet'].indexOf(k) < 0) rest[k] = u[k]; });
      advanced.value = JSON.stringify(rest, null, 2);
      var err = h('p', { class: 'error', role: 'alert', id: 'u-error' });
      add(form, [
        h('div', { class: 'grid' }, field('User ID', idIn), field('Name', name)),
        h('p', null, h('label', { for: 'u-disabled', style: null }, disabled, ' Disabled (the terminals refuse this user)')),
        field('Cards: one per line, "TYPE HEX" (e.g. 1 0a1b2c3d)', cards),
        field('Access groups (numbers, separated by commas)', groups),
        h('details', null, h('summary', null, 'Other fields (JSON): times, auth modes, fingerprints, faces, job codes, phrase, photo'), advanced),
        err,
        h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'u-save' }, 'Save'), h('a', { href: id ? '#/user/' + encodeURIComponent(id) : '#/users' }, 'Cancel')),
      ]);
      form.onsubmit = function (ev) {
        ev.preventDefault();
        err.textContent = '';
        var body;
        try {
          body = JSON.parse(advanced.value || '{}');
          if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error('the other fields must be a JSON object');
        } catch (e) { err.textContent = 'Other fields: ' + e.message; return; }
        body.name = name.value;
        body.disabled = disabled.checked;
        body.cards = [];
        var lines = cards.value.split('\n').map(function (l) { return l.trim(); }).filter(Boolean);
        for (var i = 0; i < lines.length; i++) {
          var m = /^(\d+)\s+([0-9a-fA-F]+)$/.exec(lines[i]);
          if (!m) { err.textContent = 'Card line ' + (i + 1) + ' must be "TYPE HEX", e.g. 1 0a1b2c3d'; return; }
          body.cards.push({ type: Number(m[1]), data: m[2].toLowerCase() });
        }
        body.accessGroups = groups.value.split(',').map(function (g) { return g.trim(); }).filter(Boolean).map(Number);
        if (body.accessGroups.some(function (g) { return !(g >= 0) || Math.floor(g) !== g; })) { err.textContent = 'Access groups must be whole numbers'; return; }
        // keep the stored PIN: the server keeps it when pinSet stays true
        if (u.pinSet) body.pinSet = true;
        var uid = id || idIn.value.trim();
        if (!uid) { err.textContent = 'A user ID is required'; return; }
        api('PUT', '/api/users/' + encodeURIComponent(uid), body).then(function (res) {
          banner((res.created ? 'User created' : res.changed ? 'User saved' : 'Nothing changed') + (res.pushedTo && res.pushedTo.length ? '; sending it to ' + res.pushedTo.join(', ') : '') + '.', true);
          location.hash = '#/user/' + encodeURIComponent(uid);
        }, function (e) { err.textContent = e.message || String(e); });
      };
      (id ? name : idIn).focus();
    }
    if (id) api('GET', '/api/users/' + encodeURIComponent(id)).then(build, failed);
    else build({});
  }

  // ---------------------------------------------------------- terminals

  // several daemons on PostgreSQL: each terminal has a lease, and the daemon driving it is shown
  function terminalRow(t, reload, cluster) {
    var actions = h('div', { class: 'actions' });
    if (!t.approved) {
      actions.appendChild(h('button', { type: 'button', class: 'primary', 'data-action': 'approve', onclick: function () {
        api('POST', '/api/terminals/' + encodeURIComponent(t.id) + '/approve').then(function () { banner('Terminal ' + t.id + ' approved.', true); reload(); }, failed);
      } }, 'Approve'));
      actions.appendChild(h('button', { type: 'button', class: 'danger', 'data-action': 'reject', onclick: function () {
        if (!confirm('Reject terminal ' + t.id + '? It is removed; if it dials in again it waits for approval again.')) return;
        api('POST', '/api/terminals/' + encodeURIComponent(t.id) + '/reject').then(reload, failed);
      } }, 'Reject'));
    }
    return h('tr', { 'data-terminal': t.id, 'data-state': t.state },
      h('td', null, terminalLink(t.id)), h('td', null, badge(t.state, t.state)),
      cluster ? h('td', { class: 'wrap', 'data-owner': t.owner || '' }, t.owner || h('span', { class: 'muted' }, 'no daemon')) : null,
      h('td', null, t.protocol || 'termsync', h('span', { class: 'muted' }, ' (' + (t.direction === 'dial' ? 'server dials' : 'dials in') + ')')),
      h('td', { class: 'wrap' }, t.address || '\u2014'), h('td', { class: 'wrap' }, t.model || '\u2014'), h('td', { class: 'wrap' }, t.firmware || '\u2014'),
      h('td', { class: 'num', title: t.usersHeld ? 'at the last resync, ' + when(t.usersHeld.at) : 'not resynced yet' }, t.usersHeld ? t.usersHeld.count : '\u2014'),
      h('td', { class: 'num', 'data-owed': t.pushesOwed }, t.pushesOwed),
      h('td', null, '#' + t.lastEventId, h('br'), h('span', { class: 'muted' }, when(t.lastSeen))),
      h('td', null, actions));
  }

  function terminalsPage(view) {
    heading(view, 'Terminals');
    var list = h('div', { id: 'terminal-list' });
    view.appendChild(list);
    function load() {
      api('GET', '/api/terminals').then(function (ts) {
        clear(list);
        if (!ts.length) list.appendChild(h('p', { class: 'muted' }, 'No terminals yet.'));
        else {
          var cluster = ts.some(function (t) { return !!t.lease; });
          var heads = ['ID', 'State'].concat(cluster ? ['Driven by'] : [], ['Protocol', 'Address', 'Model', 'Firmware', { text: 'Users held', cls: 'num' }, { text: 'Pushes owed', cls: 'num' }, 'Last event', '']);
          list.appendChild(table(heads, ts.map(function (t) { return terminalRow(t, load, cluster); }), { id: 'terminals-table' }));
        }
      }, failed);
    }
    load();
    every(2000, load);
    view.appendChild(h('h3', null, 'Add a terminal the server dials'));
    var id = h('input', { type: 'text', id: 't-id', required: true, pattern: '[A-Za-z0-9._\\-]{1,64}', spellcheck: 'false' });
    var host = h('input', { type: 'text', id: 't-host', required: true, spellcheck: 'false' });
    // the port defaults to the protocol's (left empty: the daemon's default for it); a ZK terminal may have a comm key
    var DEFAULT_PORTS = { termsync: 51211, zk: 4370, gsdk: 51211 };
    var protocol = h('select', { id: 't-protocol' }, h('option', { value: 'termsync', selected: true }, 'termsync'), h('option', { value: 'zk' }, 'zk (ZKTeco)'), h('option', { value: 'gsdk' }, 'gsdk (Suprema, device gateway)'));
    var port = h('input', { type: 'number', id: 't-port', min: 1, max: 65535, placeholder: String(DEFAULT_PORTS.termsync) });
    var zkPassword = h('input', { type: 'password', id: 't-zk-password', inputmode: 'numeric', autocomplete: 'new-password', pattern: '[0-9]{1,10}', title: "the terminal's comm key: digits, 0..4294967295 (empty: none)" });
    var zkField = field('ZK comm key', zkPassword);
    zkField.hidden = true;
    protocol.addEventListener('change', function () {
      port.placeholder = String(DEFAULT_PORTS[protocol.value] || '');
      zkField.hidden = protocol.value !== 'zk';
      if (protocol.value !== 'zk') zkPassword.value = '';
      // a Suprema terminal is gsdk-DEVICEID; without a host it dials the device gateway
      host.required = protocol.value !== 'gsdk';
      host.placeholder = protocol.value === 'gsdk' ? 'empty: it dials the gateway' : '';
      id.placeholder = protocol.value === 'gsdk' ? 'gsdk-DEVICEID' : '';
    });
    var groups = h('input', { type: 'text', id: 't-groups', inputmode: 'numeric' });
    view.appendChild(h('form', { class: 'inline', id: 'add-terminal', onsubmit: function (ev) {
      ev.preventDefault();
      var body = { id: id.value.trim(), protocol: protocol.value };
      if (host.value.trim() !== '' || protocol.value !== 'gsdk') body.host = host.value.trim();
      if (port.value !== '') body.port = Number(port.value);
      if (protocol.value === 'zk' && zkPassword.value !== '') {
        var key = Number(zkPassword.value);
        if (!/^[0-9]{1,10}$/.test(zkPassword.value) || key > 4294967295) { failed(new Error('The ZK comm key is a number 0..4294967295')); return; }
        body.zkPassword = key;
      }
      var g = groups.value.split(',').map(function (x) { return x.trim(); }).filter(Boolean).map(Number);
      if (g.length) body.accessGroups = g;
      api('POST', '/api/terminals', body).then(function () { banner('Terminal ' + body.id + ' added.', true); id.value = ''; host.value = ''; zkPassword.value = ''; load(); }, failed);
    } }, field('ID', id), field('Host', host), field('Protocol', protocol), field('Port', port), zkField, field('Access groups', groups), h('button', { type: 'submit', class: 'primary' }, 'Add')));
  }

  function terminalPage(view, r) {
    var id = r.parts.slice(1).join('/');
    heading(view, 'Terminal ' + id);
    var box = h('div', { id: 'terminal-detail' });
    var progress = h('div', { id: 'resync-progress', role: 'status', 'aria-live': 'polite' });
    view.appendChild(box);
    view.appendChild(progress);
    var resyncFrom = null;
    function load() {
      api('GET', '/api/terminals/' + encodeURIComponent(id)).then(function (t) {
        clear(box);
        box.appendChild(table(['ID', 'State', 'Protocol', 'Address', 'Model', 'Firmware', { text: 'Users held', cls: 'num' }, { text: 'Pushes owed', cls: 'num' }, 'Last event', ''], [terminalRow(t, load)], { id: 'terminals-table' }));
        var actions = h('div', { class: 'actions' });
        actions.appendChild(h('button', { type: 'button', id: 'resync', disabled: t.state !== 'online', title: t.state !== 'online' ? 'a resync needs the terminal online' : null, onclick: function () {
          api('GET', '/api/events?order=desc&limit=1').then(function (ev) {
            resyncFrom = ev.length ? ev[0].id : 0;
            return api('POST', '/api/terminals/' + encodeURIComponent(id) + '/resync');
          }).then(function () { progress.className = 'progress'; progress.textContent = 'Resync requested: comparing user lists\u2026'; }, failed);
        } }, 'Resync'));
        actions.appendChild(h('button', { type: 'button', class: 'danger', id: 'remove-terminal', onclick: function () {
          if (!confirm('Remove terminal ' + id + '? Its session ends and its queued pushes are dropped; the server keeps its users.')) return;
          api('DELETE', '/api/terminals/' + encodeURIComponent(id)).then(function () { banner('Terminal ' + id + ' removed.', true); location.hash = '#/terminals'; }, failed);
        } }, 'Remove'));
        box.appendChild(actions);
        var groups = h('input', { type: 'text', id: 'groups', value: t.accessGroups.join(', '), inputmode: 'numeric' });
        box.appendChild(h('form', { class: 'inline', id: 'groups-form', onsubmit: function (ev) {
          ev.preventDefault();
          var g = groups.value.split(',').map(function (x) { return x.trim(); }).filter(Boolean).map(Number);
          api('PUT', '/api/terminals/' + encodeURIComponent(id) + '/groups', { accessGroups: g }).then(function () { banner('Access groups saved.', true); }, failed);
        } }, field('Access groups served (used by "Specific Devices")', groups), h('button', { type: 'submit' }, 'Save groups')));
        if (resyncFrom !== null) {
          api('GET', '/api/events?type=RECONCILE&terminal=' + encodeURIComponent(id) + '&after=' + resyncFrom + '&limit=1').then(function (done) {
            if (done.length) {
              progress.textContent = 'Resync finished: ' + (typeof done[0].detail === 'object' && done[0].detail ? JSON.stringify(done[0].detail) : (done[0].detail || 'lists compared')) + '; pushes owed: ' + t.pushesOwed + '.';
              if (t.pushesOwed === 0) resyncFrom = null;
            } else progress.textContent = 'Resync running: comparing user lists\u2026 pushes owed: ' + t.pushesOwed;
          }, failed);
        }
      }, failed);
    }
    load();
    every(1500, load);
    view.appendChild(h('p', null, h('a', { href: '#/log?terminal=' + encodeURIComponent(id) }, 'Monitoring log of this terminal')));
  }

  // ----------------------------------------------------------- settings

  function modeLabel(id) {
    for (var i = 0; i < MODES.length; i++) if (MODES[i].id === id) return MODES[i].label;
    return id;
  }

  function settingsPage(view) {
    heading(view, 'Sync settings');
    var box = h('div');
    view.appendChild(box);
    api('GET', '/api/settings').then(function (s) {
      var fs = h('fieldset', { style: null }, h('legend', null, 'Automatic user synchronization'));
      MODES.forEach(function (m) {
        var input = h('input', { type: 'radio', name: 'mode', id: 'mode-' + m.id, value: m.id, checked: s.syncMode === m.id });
        fs.appendChild(h('div', { class: 'mode' }, input, h('div', null, h('label', { for: 'mode-' + m.id }, m.label), h('p', null, m.text))));
      });
      var form = h('form', { id: 'settings-form', onsubmit: function (ev) {
        ev.preventDefault();
        var chosen = form.querySelector('input[name=mode]:checked');
        if (!chosen || chosen.value === s.syncMode) { banner('The sync mode is already "' + modeLabel(s.syncMode) + '".', true); return; }
        if (!confirm('Change automatic user synchronization from "' + modeLabel(s.syncMode) + '" to "' + modeLabel(chosen.value) + '"?')) return;
        api('PUT', '/api/settings', { syncMode: chosen.value }).then(function (n) {
          s = n;
          banner('Sync mode changed to "' + modeLabel(n.syncMode) + '" (recorded in the monitoring log).', true);
        }, failed);
      } }, fs, h('button', { type: 'submit', class: 'primary', id: 'save-mode' }, 'Save'));
      box.appendChild(h('p', { class: 'muted' }, 'Current: ', h('strong', { id: 'current-mode' }, modeLabel(s.syncMode))));
      box.appendChild(form);
    }, failed);
  }

  // ----------------------------------------------------------- failures

  function failuresPage(view) {
    heading(view, 'Failures');
    view.appendChild(h('h3', null, 'Push failures'));
    view.appendChild(h('p', { class: 'muted' }, 'Users a terminal refused. Fix the user (for example a card another user holds) and the change is sent again; or retry as is.'));
    var push = h('div', { id: 'push-failures' });
    view.appendChild(push);
    view.appendChild(h('h3', null, 'Pull failures'));
    view.appendChild(h('p', { class: 'muted' }, 'Users a terminal reported changed but could not deliver to the server.'));
    var pull = h('div', { id: 'pull-failures' });
    view.appendChild(pull);
    function loadPush() {
      api('GET', '/api/push-failures?limit=1000').then(function (fs) {
        clear(push);
        if (!fs.length) { push.appendChild(h('p', null, 'None.')); return; }
        push.appendChild(table(['Terminal', 'User', 'Reason', 'When', ''], fs.map(function (f) {
          return h('tr', { 'data-terminal': f.terminalId, 'data-user': f.userId },
            h('td', null, terminalLink(f.terminalId)), h('td', null, userLink(f.userId)), h('td', { class: 'wrap' }, f.reason || ('status ' + f.status)), h('td', null, when(f.time)),
            h('td', null, h('button', { type: 'button', onclick: function () { api('POST', '/api/push-failures/retry', { terminalId: f.terminalId, userId: f.userId }).then(loadPush, failed); } }, 'Retry')));
        })));
      }, failed);
    }
    function loadPull() {
      api('GET', '/api/pull-failures?limit=1000').then(function (fs) {
        clear(pull);
        var list = Array.isArray(fs) ? fs : (fs && fs.failures) || [];
        if (!list.length) { pull.appendChild(h('p', null, 'None.')); return; }
        pull.appendChild(table(['Terminal', 'User', 'Reason', 'Last tried', 'Attempts', ''], list.map(function (f) {
          return h('tr', { 'data-terminal': f.terminalId, 'data-user': f.userId },
            h('td', null, terminalLink(f.terminalId)), h('td', null, userLink(f.userId)), h('td', { class: 'wrap' }, f.reason || ''), h('td', null, when(f.lastAt)), h('td', null, String(f.attempts || 1)),
            h('td', null, h('button', { type: 'button', onclick: function () { api('POST', '/api/pull-failures/retry', { terminalId: f.terminalId, userId: f.userId }).then(loadPull, failed); } }, 'Retry')));
        })));
      }, function (e) {
        clear(pull);
        if (e instanceof ApiError && e.status === 404) pull.appendChild(h('p', { class: 'muted', id: 'pull-unavailable' }, 'Not available: this daemon does not record pull failures.'));
        else failed(e);
      });
    }
    loadPush();
    loadPull();
    every(3000, function () { loadPush(); loadPull(); });
  }

  // ---------------------------------------------------------------- log

  function logPage(view, r) {
    heading(view, 'Monitoring log');
    var type = h('input', { type: 'text', id: 'f-type', value: r.query.get('type') || '', list: 'event-types', spellcheck: 'false' });
    var term = h('input', { type: 'text', id: 'f-terminal', value: r.query.get('terminal') || '', spellcheck: 'false' });
    var user = h('input', { type: 'text', id: 'f-user', value: r.query.get('user') || '', spellcheck: 'false' });
    var types = h('datalist', { id: 'event-types' }, ['USER_UPDATE_SUCCESS_DEVICE', 'USER_UPDATE_SUCCESS_SERVER', 'SERVER_DB_SAVE_FAIL', 'USER_DELETED_ON_DEVICE', 'PUSH_FAILED', 'RECONCILE', 'TERMINAL_ONLINE', 'TERMINAL_OFFLINE', 'TERMINAL_PENDING', 'SYNC_MODE_CHANGED'].map(function (t) { return h('option', { value: t }); }));
    var live = h('span', { id: 'live' }, h('span', { class: 'live', id: 'live-dot' }), h('span', { id: 'live-text' }, 'connecting'));
    view.appendChild(h('form', { class: 'inline', id: 'log-filter', onsubmit: function (ev) {
      ev.preventDefault();
      var p = new URLSearchParams();
      if (type.value.trim()) p.set('type', type.value.trim());
      if (term.value.trim()) p.set('terminal', term.value.trim());
      if (user.value.trim()) p.set('user', user.value.trim());
      go('#/log' + (p.toString() ? '?' + p.toString() : ''));
    } }, field('Type', type), types, field('Terminal', term), field('User', user), h('button', { type: 'submit', class: 'primary' }, 'Filter'), live));
    var body = h('tbody', { id: 'log' });
    view.appendChild(h('div', { class: 'scroll' }, h('table', null, h('thead', null, h('tr', null, ['Time', 'Event', 'Terminal', 'User', 'Detail'].map(function (x) { return h('th', { scope: 'col' }, x); }))), body)));
    var f = { type: r.query.get('type') || '', terminal: r.query.get('terminal') || '', user: r.query.get('user') || '' };
    function matches(e) {
      return (!f.type || e.type === f.type) && (!f.terminal || e.terminal === f.terminal) && (!f.user || e.user === f.user);
    }
    function row(e) {
      var detail = e.detail === null || e.detail === undefined ? '' : typeof e.detail === 'object' ? JSON.stringify(e.detail) : String(e.detail);
      return h('tr', { 'data-id': e.id, 'data-type': e.type }, h('td', { class: 'muted' }, when(e.time)), h('td', null, e.label), h('td', null, terminalLink(e.terminal)), h('td', { dir: 'auto' }, userLink(e.user)), h('td', { class: 'wrap muted' }, detail));
    }
    var q = new URLSearchParams({ order: 'desc', limit: '200' });
    if (f.type) q.set('type', f.type);
    if (f.terminal) q.set('terminal', f.terminal);
    if (f.user) q.set('user', f.user);
    api('GET', '/api/events?' + q.toString()).then(function (evs) {
      evs.forEach(function (e) { body.appendChild(row(e)); });
      var last = evs.length ? evs[0].id : null;
      if (last === null) return api('GET', '/api/events?order=desc&limit=1').then(function (x) { stream(x.length ? x[0].id : 0); });
      stream(last);
    }, failed);
    function setLive(on, text) { $('live-dot').className = 'live' + (on ? ' on' : ''); $('live-text').textContent = text; }
    // Server-sent events read through fetch, so the token goes in a header
    // (EventSource cannot send one).
    function stream(after) {
      var ac = new AbortController();
      streamAbort = ac;
      var headers = { accept: 'text/event-stream' };
      if (token()) headers.authorization = 'Bearer ' + token();
      fetch('/api/events/stream?after=' + after, { headers: headers, signal: ac.signal, cache: 'no-store' }).then(function (res) {
        if (res.status === 401) { showLogin(); return; }
        if (!res.ok || !res.body) throw new Error('event stream: HTTP ' + res.status);
        setLive(true, 'live');
        var reader = res.body.getReader();
        var dec = new TextDecoder();
        var buf = '';
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) throw new Error('the event stream ended');
            buf += dec.decode(chunk.value, { stream: true });
            var sep;
            while ((sep = buf.indexOf('\n\n')) >= 0) {
              var block = buf.slice(0, sep);
              buf = buf.slice(sep + 2);
              var data = block.split('\n').filter(function (l) { return l.indexOf('data:') === 0; }).map(function (l) { return l.slice(5).replace(/^ /, ''); }).join('\n');
              if (!data) continue;
              var e = JSON.parse(data);
              after = e.id;
              if (!matches(e)) continue;
              var tr = row(e);
              body.insertBefore(tr, body.firstChild);
              while (body.childNodes.length > 500) body.removeChild(body.lastChild);
            }
            return pump();
          });
        }
        return pump();
      }).catch(function (e) {
        if (ac.signal.aborted) return;
        setLive(false, 'reconnecting (' + (e && e.message ? e.message : e) + ')');
        setTimeout(function () { if (streamAbort === ac) stream(after); }, 2000);
      });
    }
  }

  // ---------------------------------------------------------------- start

  // Without a configured token (loopback only) the API answers at once; with
  // one, a stored token is tried, else the login form shows.
  api('GET', '/api/status').then(function () {
    $('login').hidden = true;
    $('nav').hidden = false;
    if (!location.hash) location.hash = '#/users'; else route();
  }, function (e) { if (!(e instanceof AuthError)) failed(e); });
})();

// The web UI (web-ui.md): hash routing, the page frame and badge, and the views. Pure logic lives in
// lib.js, OpenPGP in crypto.js; this module owns the DOM, fetch and localStorage.
//
// Rules kept throughout: the browser talks to its own origin only (relative fetches); a fragment key,
// a plaintext, a file name or a private key never goes into a request; the management token only in
// X-Lethe-Request-Token; every failure ends in an alert or a view, never an uncaught error.

import * as lib from './lib.js';
import * as pgp from './crypto.js';
import { field, h, nextId, readonlyField } from './dom.js';

const TOKEN_HEADER = 'X-Lethe-Request-Token';
const READ_ONLY_TEXT = 'This server only opens links; secrets are created elsewhere.';
const NO_REQUESTS_TEXT = 'Secret requests are not available on this server.';
const KEY_FAILED_TEXT =
  'The encryption key from the server does not match this link. Nothing was encrypted or sent. ' +
  'Ask the person who sent you the link for a new one.';

const app = {
  config: lib.readConfig({}),
  base: location.origin,
  // Bumped on every route change: async work started by an old view must not draw into a new one.
  generation: 0,
};

// ---- server calls -------------------------------------------------------------------------------

/// One same-origin request. Resolves to {status, data} (data: parsed JSON or null); a network
/// failure resolves to status 0, so callers handle every outcome as a value.
async function call(method, path, { json, body, headers = {}, binary = false } = {}) {
  const init = { method, headers: { ...headers }, credentials: 'same-origin', cache: 'no-store' };
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch {
    return { status: 0, data: null };
  }
  try {
    if (binary && resp.ok) return { status: resp.status, data: new Uint8Array(await resp.arrayBuffer()) };
    const text = await resp.text();
    return { status: resp.status, data: text ? JSON.parse(text) : null };
  } catch {
    return { status: resp.status, data: null };
  }
}

function serverMessage(result, fallback) {
  if (result.status === 0) return 'The server could not be reached. Check the connection and try again.';
  const m = result.data && typeof result.data.message === 'string' ? result.data.message : null;
  return m || fallback || `The server answered with status ${result.status}.`;
}

// ---- request store (web-ui.md §7) ---------------------------------------------------------------

function loadStore() {
  try {
    return lib.parseStore(localStorage.getItem(lib.STORE_KEY));
  } catch {
    return { requests: [], invalid: [] };
  }
}

function saveStore(store) {
  localStorage.setItem(lib.STORE_KEY, lib.serializeStore(store));
  window.dispatchEvent(new Event('lethe-requests-changed'));
}

/// Rewrites one entry against the current store (fn returns the new entry, or null to remove it),
/// so concurrent actions and refreshes merge by id instead of overwriting each other.
function updateEntry(id, fn) {
  const store = loadStore();
  const requests = [];
  for (const e of store.requests) {
    if (e.id !== id) requests.push(e);
    else {
      const next = fn(e);
      if (next) requests.push(next);
    }
  }
  saveStore({ ...store, requests });
}

function setState(id, state) {
  updateEntry(id, (e) => ({ ...e, state }));
}

let refreshing = null;

/// Refreshes the state of every entry not in a final state (§7.2). One run at a time.
function refreshStates() {
  if (!refreshing) {
    refreshing = doRefresh().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

async function doRefresh() {
  const now = Math.floor(Date.now() / 1000);
  const open = loadStore().requests.filter((e) => !lib.FINAL_STATES.includes(e.state));
  await Promise.all(
    open.map(async (e) => {
      let fresh = null;
      if (now >= e.expiresAt) fresh = 'expired';
      else {
        const r = await call('GET', `/request/${encodeURIComponent(e.id)}`, {
          headers: { [TOKEN_HEADER]: e.token },
        });
        if (r.status === 200 && r.data && (r.data.state === 'pending' || r.data.state === 'fulfilled')) {
          fresh = r.data.state;
        } else if (r.status === 404) fresh = 'revoked';
      }
      if (fresh && fresh !== e.state) {
        updateEntry(e.id, (cur) => ({ ...cur, state: lib.mergeState(cur.state, fresh) }));
      }
    }),
  );
}

// ---- frame: navigation and badge ----------------------------------------------------------------

const main = document.querySelector('main');
const nav = document.querySelector('nav');
let requestsLink = null;

function buildNav() {
  const c = app.config;
  const links = [];
  if (!c.readOnly) links.push(h('a', { href: '#/' }, 'Share a secret'));
  if (!c.readOnly && !c.disableUpload) links.push(h('a', { href: '#/file' }, 'Share a file'));
  if (c.secretRequests) {
    links.push(h('a', { href: '#/request' }, 'Request a secret'));
    requestsLink = h('a', { href: '#/requests' });
    links.push(requestsLink);
  }
  // A link to the view already shown fires no hashchange; it should still start that view afresh
  // (a new form after a created link), as a person expects from clicking it.
  for (const a of links) {
    a.addEventListener('click', () => {
      if (a.getAttribute('href') === location.hash || (a.getAttribute('href') === '#/' && location.hash === '')) {
        onRoute();
      }
    });
  }
  nav.replaceChildren(h('ul', {}, links.map((a) => h('li', {}, a))));
  updateBadge();
}

/// The link's accessible name is exactly "Requests" or "Requests (N waiting)": the number is shown
/// but hidden from assistive technology, the words are there but visually hidden.
function updateBadge() {
  if (!requestsLink) return;
  const n = lib.waitingCount(loadStore().requests);
  const parts = ['Requests'];
  if (n > 0) {
    parts.push(h('span', { class: 'badge', 'aria-hidden': 'true' }, String(n)));
    parts.push(h('span', { class: 'visually-hidden' }, ` (${n} waiting)`));
  }
  requestsLink.replaceChildren(...parts);
}

// ---- views ----------------------------------------------------------------------------------------

/// A fresh view: one h1, an alert and a status region, and a body. `top` goes between the h1 and the
/// alert (the Requests page's buttons).
function newView(heading, top) {
  const gen = ++app.generation;
  const h1 = h('h1', { tabindex: '-1' }, heading);
  const alert = h('div', { role: 'alert', class: 'alert' });
  const status = h('div', { role: 'status', class: 'status' });
  const body = h('div', { class: 'view' });
  main.replaceChildren(h1, ...(top ? [top] : []), alert, status, body);
  document.title = `${heading} · lethe`;
  h1.focus();
  const v = {
    body,
    get live() {
      return gen === app.generation;
    },
    heading(text) {
      h1.textContent = text;
      document.title = `${text} · lethe`;
    },
    alert(text) {
      status.textContent = '';
      alert.textContent = text;
    },
    status(text) {
      alert.textContent = '';
      status.textContent = text;
    },
    /// An import can refuse some files and take others: both are said.
    both(alertText, statusText) {
      alert.textContent = alertText;
      status.textContent = statusText;
    },
    clearMessages() {
      alert.textContent = '';
      status.textContent = '';
    },
    show(...children) {
      body.replaceChildren(...children);
    },
  };
  return v;
}

async function copy(text, v, input) {
  try {
    await navigator.clipboard.writeText(text);
    v.status('Copied');
  } catch {
    // Without clipboard permission, select the text so a person can copy it with the keyboard.
    if (input) {
      input.focus();
      input.select();
    }
    v.alert('Could not copy automatically. The text is selected: press Ctrl+C to copy it.');
  }
}

function expiryFieldset(name) {
  const c = app.config;
  const chosen = lib.defaultExpiration(c);
  const radios = c.expirations.map((seconds) => {
    const id = nextId('exp');
    return h(
      'span',
      { class: 'radio' },
      h('input', { type: 'radio', name, id, value: String(seconds), checked: seconds === chosen }),
      h('label', { for: id }, lib.durationLabel(seconds)),
    );
  });
  return h('fieldset', {}, h('legend', {}, 'Expires after'), ...radios);
}

function chosenExpiration(form, name) {
  const checked = form.querySelector(`input[name="${name}"]:checked`);
  return checked ? Number(checked.value) : lib.defaultExpiration(app.config);
}

function unavailable(heading, sentence) {
  const v = newView(heading);
  v.show(h('p', {}, sentence));
}

// 4.1 / 4.2 Share a secret or a file.
function shareView(kind) {
  const heading = kind === 'file' ? 'Share a file' : 'Share a secret';
  const c = app.config;
  if (c.readOnly) return unavailable(heading, READ_ONLY_TEXT);
  if (kind === 'file' && c.disableUpload) return unavailable(heading, 'File sharing is not available on this server.');
  const v = newView(heading);
  const input =
    kind === 'file' ? h('input', { type: 'file' }) : h('textarea', { rows: '8', spellcheck: 'false', autocomplete: 'off' });
  const oneTime = h('input', { type: 'checkbox', checked: true });
  const oneTimeId = nextId('onetime');
  oneTime.id = oneTimeId;
  const button = h('button', { type: 'submit' }, 'Create link');
  const form = h(
    'form',
    { novalidate: true },
    field(kind === 'file' ? 'File' : 'Secret', input),
    expiryFieldset('expiration'),
    h('p', { class: 'check' }, oneTime, h('label', { for: oneTimeId }, 'One-time: delete after the first view')),
    h('p', {}, button),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    button.disabled = true;
    createSecret(v, kind, input, chosenExpiration(form, 'expiration'), oneTime.checked)
      .catch(() => v.live && v.alert('Something went wrong while encrypting. Nothing was sent.'))
      .finally(() => {
        button.disabled = false;
      });
  });
  v.show(form);
}

async function createSecret(v, kind, input, expiration, oneTime) {
  v.clearMessages();
  const c = app.config;
  const key = lib.randomKey();
  let result;
  if (kind === 'file') {
    const file = input.files && input.files[0];
    if (!file) return v.alert('Choose a file to share.');
    if (c.maxFileSize !== undefined && file.size > c.maxFileSize) return v.alert('The file is too large.');
    v.status('Encrypting…');
    const bytes = new Uint8Array(await file.arrayBuffer());
    const message = await pgp.encryptFile(bytes, file.name, key);
    if (c.maxFileSize !== undefined && message.length > c.maxFileSize) return v.alert('The file is too large.');
    result = await call('POST', '/create/file', {
      body: message,
      headers: {
        'Content-Type': 'application/octet-stream',
        'X-Lethe-Expiration': String(expiration),
        'X-Lethe-OneTime': oneTime ? 'true' : 'false',
      },
    });
  } else {
    const text = input.value;
    if (text === '') return v.alert('Enter a secret to share.');
    const message = await pgp.encryptText(text, key);
    if (c.maxLength !== undefined && lib.utf8Length(message) > c.maxLength) {
      return v.alert('The secret is too long for this server once encrypted. Shorten it and try again.');
    }
    result = await call('POST', '/create/secret', { json: { message, expiration, one_time: oneTime } });
  }
  if (!v.live) return;
  if (result.status !== 200 || !result.data || typeof result.data.message !== 'string') {
    return v.alert(serverMessage(result));
  }
  const id = result.data.message;
  v.clearMessages();
  const link = readonlyField('Secret link', lib.secretLink(app.base, kind, id, key));
  v.show(
    h(
      'section',
      { 'aria-labelledby': 'ready-heading' },
      h('h2', { id: 'ready-heading' }, 'Your link is ready'),
      h(
        'p',
        {},
        'The key after # in the link never reaches the server. Send the whole link, or send the link ' +
          'without key and the decryption key by different channels.',
      ),
      link.p,
      readonlyField('Link without key', lib.secretLink(app.base, kind, id, null)).p,
      readonlyField('Decryption key', key).p,
      h('p', {}, h('button', { type: 'button', onclick: () => copy(link.input.value, v, link.input) }, 'Copy link')),
    ),
  );
}

// 4.3 Open a secret or a file.
async function openView(route) {
  const { kind, id } = route;
  const v = newView('Loading…');
  const base = kind === 'file' ? `/file/${id}` : `/secret/${id}`;
  const status = await call('GET', `${base}/status`);
  if (!v.live) return;
  if (status.status === 404) return goneView(v);
  if (status.status !== 200 || !status.data || typeof status.data.oneTime !== 'boolean') {
    v.heading('Something went wrong');
    return v.alert(serverMessage(status));
  }
  const oneTime = status.data.oneTime;
  v.heading(kind === 'file' ? 'A file for you' : 'A secret for you');
  let ciphertext = null;
  let key = route.key;
  const keyInput = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const keyField = field('Decryption key', keyInput);
  const button = h('button', { type: 'submit' }, kind === 'file' ? 'Download file' : 'Reveal secret');
  const form = h(
    'form',
    { novalidate: true },
    h(
      'p',
      {},
      oneTime
        ? 'This secret can be viewed once. After that it is deleted from the server.'
        : 'This secret can be viewed until it expires.',
    ),
    key ? null : keyField,
    h('p', {}, button),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    button.disabled = true;
    reveal()
      .catch(() => v.live && v.alert('Something went wrong while decrypting.'))
      .finally(() => {
        button.disabled = false;
      });
  });
  v.show(form);

  async function reveal() {
    v.clearMessages();
    const tryKey = key || keyInput.value.trim();
    if (!tryKey) return v.alert('Enter the decryption key.');
    if (ciphertext === null) {
      const r = await call('GET', base, { binary: kind === 'file' });
      if (!v.live) return;
      if (r.status === 404) return goneView(v);
      if (r.status !== 200 || !r.data) return v.alert(serverMessage(r));
      ciphertext = kind === 'file' ? r.data : r.data.message;
      if (typeof ciphertext !== 'string' && kind !== 'file') {
        ciphertext = null;
        return v.alert('The server sent something that is not a secret.');
      }
    }
    let plain;
    try {
      plain = kind === 'file' ? await pgp.decryptFile(ciphertext, tryKey) : await pgp.decryptText(ciphertext, tryKey);
    } catch {
      // The ciphertext stays in memory: a one-time secret is already gone from the server.
      key = null;
      keyInput.value = '';
      if (!keyField.isConnected) form.insertBefore(keyField, button.parentNode);
      v.alert('Wrong decryption key. Check the key and try again.');
      keyInput.focus();
      return;
    }
    if (!v.live) return;
    if (kind === 'file') {
      const save = () => download(plain.data, plain.filename, 'application/octet-stream');
      save();
      v.show(
        h('p', {}, `Downloaded ${plain.filename}.`),
        h('p', {}, h('button', { type: 'button', onclick: save }, 'Save again')),
      );
    } else {
      const area = h('textarea', { readonly: true, rows: '8', spellcheck: 'false' });
      area.value = plain;
      v.show(
        field('Secret', area),
        h('p', {}, h('button', { type: 'button', onclick: () => copy(area.value, v, area) }, 'Copy secret')),
      );
    }
    // The view's one status region says it, so a page never holds two.
    if (oneTime) v.status('This secret has been deleted from the server.');
  }
}

function goneView(v) {
  v.heading('Secret not available');
  v.clearMessages();
  v.show(h('p', {}, 'It may have been viewed already, deleted, or it expired.'));
}

function download(bytes, filename, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const a = h('a', { href: url, download: filename, class: 'visually-hidden' });
  document.body.append(a);
  a.click();
  a.remove();
  // The click has handed the blob to the download manager; keep it a moment for slow starts.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// 4.4 Request a secret.
function requestView() {
  if (!app.config.secretRequests) return unavailable('Request a secret', NO_REQUESTS_TEXT);
  const v = newView('Request a secret');
  const label = h('input', { type: 'text', autocomplete: 'off' });
  const button = h('button', { type: 'submit' }, 'Create request');
  const form = h(
    'form',
    { novalidate: true },
    field(
      'Label',
      label,
      'Optional. The person you ask will see it, so it must not hold secrets (at most 100 bytes).',
    ),
    expiryFieldset('expiration'),
    h('p', {}, button),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    button.disabled = true;
    createRequest(v, label.value.trim(), chosenExpiration(form, 'expiration'))
      .catch(() => v.live && v.alert('Something went wrong while creating the request.'))
      .finally(() => {
        button.disabled = false;
      });
  });
  v.show(form);
}

async function createRequest(v, label, expiration) {
  v.clearMessages();
  if (lib.utf8Length(label) > lib.MAX_LABEL_BYTES) return v.alert('The label is too long: at most 100 bytes.');
  v.status('Generating a key pair…');
  const pair = await pgp.generateRequestKey(label);
  const body = { public_key: pair.publicKey, expiration };
  if (label) body.label = label;
  const r = await call('POST', '/request', { json: body });
  if (r.status !== 200 || !r.data || typeof r.data.id !== 'string' || typeof r.data.token !== 'string') {
    return v.alert(serverMessage(r));
  }
  const { id, token } = r.data;
  if (String(r.data.fingerprint).toLowerCase() !== pair.fingerprint) {
    await call('DELETE', `/request/${encodeURIComponent(id)}`, { headers: { [TOKEN_HEADER]: token } });
    return v.alert('The server reported a different key fingerprint. The request was revoked.');
  }
  const now = Math.floor(Date.now() / 1000);
  const expiresAt = Number.isSafeInteger(r.data.expires_at) ? r.data.expires_at : now + expiration;
  const entry = {
    id,
    token,
    label,
    privateKey: pair.privateKey,
    publicKey: pair.publicKey,
    fingerprint: pair.fingerprint,
    createdAt: now,
    expiresAt,
    state: 'pending',
  };
  const store = loadStore();
  saveStore({ ...store, requests: lib.upsert(store.requests, entry) });
  if (!v.live) return;
  v.clearMessages();
  const link = readonlyField('Request link', lib.requestLink(app.base, id, pair.fingerprint));
  v.show(
    h(
      'section',
      { 'aria-labelledby': 'created-heading' },
      h('h2', { id: 'created-heading' }, 'Request created'),
      h(
        'p',
        {},
        'The private key stays in this browser: only here can the secret be decrypted. Send the link to ' +
          'the person who has the secret.',
      ),
      link.p,
      h(
        'p',
        {},
        h('button', { type: 'button', onclick: () => copy(link.input.value, v, link.input) }, 'Copy link'),
        ' ',
        h('a', { href: '#/requests' }, 'Open Requests'),
      ),
    ),
  );
}

// 4.5 Respond to a request.
async function respondView(route) {
  if (!app.config.secretRequestResponses) return unavailable('Respond to a request', NO_REQUESTS_TEXT);
  const v = newView('Loading…');
  const failed = () => {
    v.heading('Key verification failed');
    v.show();
    v.alert(KEY_FAILED_TEXT);
  };
  if (!lib.isFp16(route.fp16)) return failed();
  const r = await call('GET', `/request/${route.id}`);
  if (!v.live) return;
  if (r.status === 404) {
    v.heading('Request not available');
    return v.show(h('p', {}, 'It may have been revoked, collected, or it expired.'));
  }
  if (r.status !== 200 || !r.data) {
    v.heading('Something went wrong');
    return v.alert(serverMessage(r));
  }
  if (r.data.state === 'fulfilled') {
    v.heading('Secret already provided');
    return v.show(h('p', {}, 'Someone has already sent a secret for this request.'));
  }
  const label = typeof r.data.label === 'string' ? r.data.label : '';
  let key;
  try {
    if (typeof r.data.public_key !== 'string') throw new Error('no key');
    key = await pgp.verifyRequestKey(r.data.public_key, route.fp16, label);
  } catch {
    if (v.live) failed();
    return;
  }
  if (!v.live) return;
  v.heading('Someone requests a secret');
  const area = h('textarea', { rows: '8', spellcheck: 'false', autocomplete: 'off' });
  const button = h('button', { type: 'submit' }, 'Encrypt and send');
  const form = h(
    'form',
    { novalidate: true },
    h('p', {}, `Label: ${label || '(none)'}`),
    h('p', {}, `Key fingerprint: ${route.fp16.toLowerCase()} (verified against this link)`),
    h('p', {}, 'The text is encrypted in this browser; only the person who asked can decrypt it.'),
    field('Secret', area),
    h('p', {}, button),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    button.disabled = true;
    send()
      .catch(() => v.live && v.alert('Something went wrong while encrypting. Nothing was sent.'))
      .finally(() => {
        button.disabled = false;
      });
  });
  v.show(form);

  async function send() {
    v.clearMessages();
    if (area.value === '') return v.alert('Enter the secret to send.');
    const message = await pgp.encryptToKey(area.value, key);
    if (app.config.maxLength !== undefined && lib.utf8Length(message) > app.config.maxLength) {
      return v.alert('The secret is too long for this server once encrypted. Shorten it and try again.');
    }
    const s = await call('POST', `/request/${route.id}/secret`, { json: { message } });
    if (!v.live) return;
    if (s.status === 200) {
      v.heading('Secret sent');
      return v.show(h('p', {}, 'Only the person who asked can decrypt it.'));
    }
    if (s.status === 409) {
      v.heading('Secret already provided');
      return v.show(h('p', {}, 'Someone has already sent a secret for this request.'));
    }
    if (s.status === 404) {
      v.heading('Request not available');
      return v.show(h('p', {}, 'It may have been revoked, collected, or it expired.'));
    }
    v.alert(serverMessage(s));
  }
}

// 4.6 Requests.

/// A modal confirmation; resolves true only on the action button. Cancel and Escape resolve false.
function confirmDialog(question, consequence, action) {
  return new Promise((resolve) => {
    const headingId = nextId('dlg');
    let confirmed = false;
    const dialog = h('dialog', { 'aria-labelledby': headingId });
    const ok = h('button', { type: 'button', onclick: () => ((confirmed = true), dialog.close()) }, action);
    const cancel = h('button', { type: 'button', autofocus: true, onclick: () => dialog.close() }, 'Cancel');
    dialog.append(h('h2', { id: headingId }, question), h('p', {}, consequence), h('p', { class: 'buttons' }, ok, ' ', cancel));
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(confirmed);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

function secretDialog(plain, armored) {
  const headingId = nextId('dlg');
  const dialog = h('dialog', { 'aria-labelledby': headingId });
  const status = h('div', { role: 'status', class: 'status' });
  const area = h('textarea', { readonly: true, rows: '8', spellcheck: 'false' });
  const parts = [h('h2', { id: headingId }, 'Secret')];
  if (plain !== null) {
    area.value = plain;
    const copyButton = h(
      'button',
      {
        type: 'button',
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(area.value);
            status.textContent = 'Copied';
          } catch {
            area.select();
            status.textContent = 'The text is selected: press Ctrl+C to copy it.';
          }
        },
      },
      'Copy secret',
    );
    parts.push(field('Secret', area), h('p', { class: 'buttons' }, copyButton, ' ', closeButton()));
  } else {
    area.value = armored;
    parts.push(
      h(
        'div',
        { role: 'alert', class: 'alert' },
        'The secret could not be decrypted with this browser’s key. Its encrypted form is below; keep it.',
      ),
      field('Encrypted secret', area),
      h('p', { class: 'buttons' }, closeButton()),
    );
  }
  parts.push(status);
  dialog.append(...parts);
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();

  function closeButton() {
    return h('button', { type: 'button', onclick: () => dialog.close() }, 'Close');
  }
}

function requestsView() {
  if (!app.config.secretRequests) return unavailable('Requests', NO_REQUESTS_TEXT);
  const fileInput = h('input', { type: 'file', accept: '.json,application/json', multiple: true, hidden: true });
  const top = h(
    'p',
    { class: 'buttons' },
    h('button', { type: 'button', onclick: () => fileInput.click() }, 'Import'),
    ' ',
    h('button', { type: 'button', onclick: () => run(clearCollected) }, 'Clear collected'),
    ' ',
    h('button', { type: 'button', onclick: () => run(purgeAll) }, 'Purge all'),
    fileInput,
  );
  const v = newView('Requests', top);
  fileInput.addEventListener('change', () => run(() => importFiles([...fileInput.files])));

  const onChange = () => {
    if (v.live) render();
    else window.removeEventListener('lethe-requests-changed', onChange);
  };
  window.addEventListener('lethe-requests-changed', onChange);
  render();
  refreshStates().catch(() => {});

  function run(action) {
    Promise.resolve()
      .then(action)
      .catch(() => v.live && v.alert('Something went wrong. Nothing was lost from this browser.'));
  }

  function render() {
    const { requests } = loadStore();
    if (requests.length === 0) return v.show(h('p', {}, 'No requests in this browser.'));
    v.show(h('ul', { class: 'requests' }, lib.sortNewestFirst(requests).map(item)));
  }

  function item(e) {
    const actions = [];
    const button = (text, fn) => h('button', { type: 'button', onclick: () => run(() => fn(e)) }, text);
    let linkField = null;
    if (e.state === 'pending') {
      const link = readonlyField('Request link', lib.requestLink(app.base, e.id, e.fingerprint));
      linkField = link.p;
      actions.push(
        h('button', { type: 'button', onclick: () => copy(link.input.value, v, link.input) }, 'Copy link'),
        button('Replace key pair', replaceKey),
        button('Revoke', revoke),
        button('Export', exportEntry),
      );
    } else if (e.state === 'fulfilled') {
      actions.push(button('View secret', viewSecret), button('Revoke', revoke), button('Export', exportEntry));
    } else {
      actions.push(button('Remove', remove));
    }
    const expires = new Date(e.expiresAt * 1000).toLocaleString();
    return h(
      'li',
      {},
      h('h2', {}, e.label || 'Untitled request'),
      h('p', {}, `State: ${lib.STATE_WORDS[e.state]}`),
      h('p', {}, `Expires ${expires}`),
      linkField,
      h('p', { class: 'buttons' }, actions.flatMap((a, i) => (i ? [' ', a] : [a]))),
    );
  }

  async function viewSecret(e) {
    const go = await confirmDialog(
      'View the secret now?',
      'The server deletes it when this browser fetches it; it will be shown once here.',
      'View secret',
    );
    if (!go) return;
    v.clearMessages();
    const r = await call('GET', `/request/${encodeURIComponent(e.id)}/secret`, { headers: { [TOKEN_HEADER]: e.token } });
    if (r.status === 200 && r.data && typeof r.data.message === 'string') {
      // The server has deleted it: record that before anything can fail.
      setState(e.id, 'collected');
      let plain = null;
      try {
        plain = await pgp.decryptWithPrivateKey(r.data.message, e.privateKey);
      } catch {
        plain = null;
      }
      secretDialog(plain, r.data.message);
    } else if (r.status === 404) {
      setState(e.id, 'revoked');
      v.alert('This request is no longer on the server: it was revoked, collected elsewhere, or it expired.');
    } else if (r.status === 409) {
      setState(e.id, 'pending');
      v.alert('No secret has been provided yet.');
    } else if (r.status === 401) {
      v.alert('This browser’s token is not valid for this request.');
    } else {
      v.alert(serverMessage(r));
    }
  }

  async function revoke(e) {
    const go = await confirmDialog(
      'Revoke this request?',
      'Its link stops working and any secret waiting for it is deleted.',
      'Revoke',
    );
    if (!go) return;
    v.clearMessages();
    const r = await call('DELETE', `/request/${encodeURIComponent(e.id)}`, { headers: { [TOKEN_HEADER]: e.token } });
    if (r.status === 204 || r.status === 404) {
      setState(e.id, 'revoked');
      v.status('Request revoked.');
    } else {
      v.alert(serverMessage(r));
    }
  }

  async function replaceKey(e) {
    const go = await confirmDialog(
      'Replace the key pair?',
      'The old link stops working; you will need to send the new link.',
      'Replace key pair',
    );
    if (!go) return;
    v.status('Generating a key pair…');
    const pair = await pgp.generateRequestKey(e.label);
    const r = await call('PUT', `/request/${encodeURIComponent(e.id)}/key`, {
      json: { public_key: pair.publicKey },
      headers: { [TOKEN_HEADER]: e.token },
    });
    if (r.status === 200) {
      updateEntry(e.id, (cur) => ({
        ...cur,
        privateKey: pair.privateKey,
        publicKey: pair.publicKey,
        fingerprint: pair.fingerprint,
      }));
      v.status('Key pair replaced. Send the new link.');
    } else if (r.status === 409) {
      v.alert('A secret was provided meanwhile; the key pair was not replaced.');
      refreshStates().catch(() => {});
    } else {
      v.alert(serverMessage(r));
    }
  }

  function exportEntry(e) {
    download(new TextEncoder().encode(lib.exportText(e)), lib.exportName(e), 'application/json');
    v.status('Exported. The file holds this request’s private key and token: treat it as a secret.');
  }

  function remove(e) {
    updateEntry(e.id, () => null);
  }

  function clearCollected() {
    const store = loadStore();
    saveStore({ ...store, requests: store.requests.filter((e) => e.state !== 'collected') });
    v.status('Collected requests were cleared.');
  }

  async function purgeAll() {
    const go = await confirmDialog(
      'Purge all requests?',
      'Every request in this browser is revoked on the server and removed from this browser.',
      'Purge all',
    );
    if (!go) return;
    v.clearMessages();
    const { requests } = loadStore();
    const removable = new Set();
    await Promise.all(
      requests.map(async (e) => {
        if (e.state !== 'pending' && e.state !== 'fulfilled') {
          removable.add(e.id);
          return;
        }
        const r = await call('DELETE', `/request/${encodeURIComponent(e.id)}`, { headers: { [TOKEN_HEADER]: e.token } });
        if (r.status === 204 || r.status === 404) removable.add(e.id);
      }),
    );
    const store = loadStore();
    const kept = store.requests.filter((e) => !removable.has(e.id));
    saveStore({ ...store, requests: kept });
    const failed = requests.filter((e) => !removable.has(e.id)).length;
    if (failed > 0) v.alert(`${failed} request(s) could not be revoked and were kept.`);
    else if (kept.length === 0) v.status('All requests were purged.');
  }

  async function importFiles(files) {
    fileInput.value = '';
    if (files.length === 0) return;
    v.clearMessages();
    const refused = [];
    const accepted = [];
    for (const file of files) {
      try {
        const parsed = lib.parseExport(await file.text());
        if (parsed.error) throw new Error(parsed.error);
        await pgp.checkEntryKeys(parsed.entry);
        accepted.push(parsed.entry);
      } catch {
        refused.push(file.name);
      }
    }
    const store = loadStore();
    let requests = store.requests;
    for (const entry of accepted) requests = lib.upsert(requests, entry);
    if (accepted.length) saveStore({ ...store, requests });
    const imported = `Imported ${accepted.length} request(s).`;
    if (refused.length) {
      v.both(`Not a lethe request export: ${refused.join(', ')}`, accepted.length ? imported : '');
    } else {
      v.status(imported);
    }
    if (accepted.length) await refreshStates();
  }
}

function notFoundView() {
  const v = newView('Page not found');
  v.show(h('p', {}, 'There is nothing at this address. ', h('a', { href: '#/' }, 'Go to the start page'), '.'));
}

// ---- router -------------------------------------------------------------------------------------

function render() {
  const route = lib.parseRoute(location.hash);
  switch (route.view) {
    case 'share':
      return shareView('text');
    case 'shareFile':
      return shareView('file');
    case 'open':
      return openView(route);
    case 'request':
      return requestView();
    case 'requests':
      return requestsView();
    case 'respond':
      return respondView(route);
    default:
      return notFoundView();
  }
}

function onRoute() {
  Promise.resolve()
    .then(render)
    .catch(() => {
      const v = newView('Something went wrong');
      v.alert('The page could not be shown. Reload to try again.');
    });
  updateBadge();
  if (app.config.secretRequests) refreshStates().catch(() => {});
}

async function start() {
  const r = await call('GET', '/config');
  if (r.status !== 200 || !r.data) {
    const v = newView('Something went wrong');
    v.alert(serverMessage(r, 'The server configuration could not be read.'));
    return;
  }
  app.config = lib.readConfig(r.data);
  app.base = lib.linkBase(r.data, location.origin);
  buildNav();
  window.addEventListener('hashchange', onRoute);
  window.addEventListener('lethe-requests-changed', updateBadge);
  window.addEventListener('storage', (event) => {
    if (event.key === lib.STORE_KEY || event.key === null) updateBadge();
  });
  onRoute();
  if (app.config.secretRequests) {
    setInterval(() => {
      refreshStates()
        .catch(() => {})
        .finally(updateBadge);
    }, 30_000);
  }
}

start().catch(() => {
  const v = newView('Something went wrong');
  v.alert('The page could not start. Reload to try again.');
});

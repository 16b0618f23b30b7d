// End-to-end tests of the web app in Debian's Chromium, headless, against a real lethe server.
//
// Run by `cargo test` (tests/browser.rs), which starts the server with a full listener (LETHE_URL)
// and a read-only mirror (LETHE_MIRROR, also the PUBLIC_URL every link points at). Elements are
// found the way a person finds them: by role and accessible name (web-ui.md's labels).
//
// Every browser context is guarded: a request to another origin, an uncaught error or a CSP /
// Trusted Types violation fails the test that caused it.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import * as openpgp from 'openpgp';
import { chromium } from 'playwright-core';

const BASE = process.env.LETHE_URL;
const MIRROR = process.env.LETHE_MIRROR;
const CHROMIUM = process.env.LETHE_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.LETHE_SCREENSHOTS;
const WAIT = 30_000;
assert.ok(BASE && MIRROR, 'LETHE_URL and LETHE_MIRROR name the server under test');

let browser;
const guards = [];

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
});

after(async () => {
  await browser?.close();
});

/// A fresh browser profile (its own localStorage), watched for foreign requests and errors.
async function context(options = {}) {
  const ctx = await browser.newContext({ acceptDownloads: true, ...options });
  // Violations are reported to the page as events too; make each one a console error the guard sees.
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) =>
      console.error(`Content Security Policy violation: ${e.violatedDirective}`),
    );
  });
  for (const origin of [BASE, MIRROR]) {
    await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
  }
  const problems = [];
  const requests = [];
  ctx.on('request', (r) => {
    const url = r.url();
    requests.push({ method: r.method(), url, request: r });
    if (!(url.startsWith(`${BASE}/`) || url.startsWith(`${MIRROR}/`) || url.startsWith('blob:'))) {
      problems.push(`request to another origin: ${url}`);
    }
  });
  ctx.on('weberror', (e) => problems.push(`uncaught: ${e.error().message}`));
  ctx.on('console', (m) => {
    const t = m.text();
    if (m.type() === 'error' && /Content Security Policy|Trusted ?Type|Uncaught/i.test(t)) problems.push(`console: ${t}`);
  });
  const page = await ctx.newPage();
  const guard = { ctx, page, requests, problems };
  guards.push(guard);
  return guard;
}

/// Closes the contexts a test opened and fails on anything they saw.
async function closeAll() {
  const all = guards.splice(0);
  for (const g of all) await g.ctx.close();
  const problems = all.flatMap((g) => g.problems);
  assert.deepEqual(problems, [], 'no foreign request, uncaught error or CSP violation');
}

const h1 = (page, name) => page.getByRole('heading', { level: 1, name, exact: true });

async function see(locator) {
  await locator.waitFor({ state: 'visible', timeout: WAIT });
  return locator;
}

async function value(page, label) {
  return (await see(page.getByLabel(label, { exact: true }))).inputValue();
}

async function alertWith(page, text) {
  return see(page.getByRole('alert').filter({ hasText: text }));
}

async function statusWith(page, text) {
  return see(page.getByRole('status').filter({ hasText: text }));
}

async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name), fullPage: true });
}

/// Shares a text through the page and returns the three result fields.
async function shareText(page, secret, { oneTime = true } = {}) {
  await page.goto(`${BASE}/#/`);
  // Already there (a link just made): the nav link starts the view afresh.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Share a secret' }).click();
  await see(h1(page, 'Share a secret'));
  await page.getByLabel('Secret', { exact: true }).fill(secret);
  if (!oneTime) await page.getByLabel('One-time: delete after the first view').uncheck();
  await page.getByRole('button', { name: 'Create link' }).click();
  await see(page.getByRole('heading', { level: 2, name: 'Your link is ready' }));
  return {
    link: await value(page, 'Secret link'),
    bare: await value(page, 'Link without key'),
    key: await value(page, 'Decryption key'),
  };
}

function gpg(args, input) {
  const home = mkdtempSync(path.join(tmpdir(), 'lethe-e2e-gpg-'));
  const out = spawnSync(
    'gpg',
    ['--homedir', home, '--batch', '--no-tty', '--quiet', '--pinentry-mode', 'loopback', ...args],
    { input },
  );
  assert.equal(out.status, 0, `gpg ${args.join(' ')}: ${out.stderr}`);
  return out.stdout;
}

async function api(method, urlPath, body, headers = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(`${BASE}${urlPath}`, init);
  const text = await r.text();
  return { status: r.status, data: text ? JSON.parse(text) : null };
}

test('a text secret is shared, opened once in another browser, and gone on reload', async () => {
  const a = await context();
  await a.page.goto(`${BASE}/#/`);
  await see(h1(a.page, 'Share a secret'));
  assert.equal(await a.page.title(), 'Share a secret · lethe');
  const nav = a.page.getByRole('navigation', { name: 'Main' });
  const names = await nav.getByRole('link').allInnerTexts();
  assert.deepEqual(names, ['Share a secret', 'Share a file', 'Request a secret', 'Requests']);
  assert.ok(await a.page.getByRole('radio', { name: '1 hour' }).isChecked(), 'DEFAULT_EXPIRY is checked');
  const radios = await a.page.getByRole('group', { name: 'Expires after' }).getByRole('radio').count();
  assert.equal(radios, 3);
  assert.ok(await a.page.getByLabel('One-time: delete after the first view').isChecked());
  await a.page.getByLabel('Secret', { exact: true }).fill('correct horse battery staple');
  await shot(a.page, 'share.png');

  const { link, bare, key } = await shareText(a.page, 'hunter2 — ünïcode ✓');
  assert.match(key, /^[A-Za-z0-9]{22}$/);
  const id = bare.split('/').pop();
  assert.equal(bare, `${MIRROR}/#/s/${id}`, 'links use PUBLIC_URL');
  assert.equal(link, `${bare}/${key}`);
  const post = a.requests.find((r) => r.method === 'POST' && r.url.endsWith('/create/secret'));
  const sent = post.request.postData();
  assert.ok(!sent.includes(key) && !sent.includes('hunter2'), 'only ciphertext leaves the browser');
  assert.ok(sent.includes('BEGIN PGP MESSAGE'));
  await a.page.getByRole('button', { name: 'Copy link' }).click();
  await statusWith(a.page, 'Copied');
  assert.equal(await a.page.evaluate(() => navigator.clipboard.readText()), link);
  const stored = await a.page.evaluate(() => JSON.stringify(localStorage) + location.href + history.state);
  assert.ok(!stored.includes(key), 'the key is kept nowhere');

  const b = await context();
  await b.page.goto(link);
  await see(h1(b.page, 'A secret for you'));
  await see(b.page.getByText('viewed once'));
  assert.equal(await b.page.getByLabel('Decryption key').count(), 0, 'the link carries the key');
  assert.equal(b.requests.filter((r) => r.url.endsWith(`/secret/${id}`)).length, 0, 'opening consumed nothing');
  await b.page.getByRole('button', { name: 'Reveal secret' }).click();
  assert.equal(await value(b.page, 'Secret'), 'hunter2 — ünïcode ✓');
  await statusWith(b.page, 'This secret has been deleted from the server.');
  assert.equal(await b.page.getByRole('status').count(), 1, 'one status region per view');
  assert.equal(await b.page.getByRole('alert').count(), 1, 'one alert region per view');
  await b.page.getByRole('button', { name: 'Copy secret' }).click();
  await statusWith(b.page, 'Copied');
  await b.page.reload();
  await see(h1(b.page, 'Secret not available'));
  await closeAll();
});

test('a link without its key asks for it, and a wrong key is retried without fetching again', async () => {
  const a = await context();
  const { bare, key } = await shareText(a.page, 'second try');
  const id = bare.split('/').pop();
  const b = await context();
  await b.page.goto(bare);
  await see(h1(b.page, 'A secret for you'));
  await b.page.getByLabel('Decryption key').fill('wrongwrongwrongwrong00');
  await b.page.getByRole('button', { name: 'Reveal secret' }).click();
  await alertWith(b.page, 'Wrong decryption key.');
  assert.equal(await value(b.page, 'Decryption key'), '', 'the field is emptied for the next try');
  await b.page.getByLabel('Decryption key').fill(key);
  await b.page.getByRole('button', { name: 'Reveal secret' }).click();
  assert.equal(await value(b.page, 'Secret'), 'second try');
  const reads = b.requests.filter((r) => r.method === 'GET' && r.url.endsWith(`/secret/${id}`));
  assert.equal(reads.length, 1, 'the kept ciphertext was decrypted the second time');
  await closeAll();
});

test('an empty or too long secret, or a too long label, is refused and nothing is sent', async () => {
  const a = await context();
  await a.page.goto(`${BASE}/#/`);
  await a.page.getByRole('button', { name: 'Create link' }).click();
  await see(a.page.getByRole('alert').filter({ hasText: /\S/ }));
  await a.page.getByLabel('Secret', { exact: true }).fill('x'.repeat(12_000));
  await a.page.getByRole('button', { name: 'Create link' }).click();
  await alertWith(a.page, 'too long');
  await a.page.goto(`${BASE}/#/request`);
  await a.page.getByLabel('Label').fill('é'.repeat(51));
  await a.page.getByRole('button', { name: 'Create request' }).click();
  await alertWith(a.page, 'too long');
  assert.equal(a.requests.filter((r) => r.method === 'POST').length, 0);
  await closeAll();
});

test('a file is shared and downloaded under its own name, which never leaves the browser in clear', async () => {
  const a = await context();
  await a.page.goto(`${BASE}/#/file`);
  await see(h1(a.page, 'Share a file'));
  const bytes = Buffer.from([0, 1, 2, 3, 250, 251, 252, 253, 10, 13]);
  await a.page.getByLabel('File').setInputFiles({ name: 'notes-2026.bin', mimeType: 'application/octet-stream', buffer: bytes });
  await a.page.getByRole('button', { name: 'Create link' }).click();
  const link = await value(a.page, 'Secret link');
  assert.match(link, new RegExp(`^${MIRROR}/#/f/[A-Za-z0-9_-]+/[A-Za-z0-9]{22}$`));
  const post = a.requests.find((r) => r.method === 'POST' && r.url.endsWith('/create/file'));
  const headers = await post.request.allHeaders();
  assert.equal(headers['content-type'], 'application/octet-stream');
  assert.equal(headers['x-lethe-expiration'], '3600');
  assert.equal(headers['x-lethe-onetime'], 'true');
  assert.ok(!JSON.stringify(headers).includes('notes-2026'), 'no header names the file');
  assert.ok(!post.request.postDataBuffer().includes(Buffer.from('notes-2026')), 'the name is inside the ciphertext');

  const b = await context();
  await b.page.goto(link);
  await see(h1(b.page, 'A file for you'));
  const [download] = await Promise.all([
    b.page.waitForEvent('download', { timeout: WAIT }),
    b.page.getByRole('button', { name: 'Download file' }).click(),
  ]);
  assert.equal(download.suggestedFilename(), 'notes-2026.bin');
  assert.deepEqual(readFileSync(await download.path()), bytes);
  await see(b.page.getByText('Downloaded notes-2026.bin.'));
  await see(b.page.getByRole('button', { name: 'Save again' }));
  await b.page.reload();
  await see(h1(b.page, 'Secret not available'));
  await closeAll();
});

test('gpg-made ciphertext opens in the page, and page-made ciphertext opens with gpg', async () => {
  const key = 'GpgMadeKey0123456789ab';
  const armored = gpg(['--passphrase', key, '--armor', '--symmetric'], 'made by gpg').toString();
  const made = await api('POST', '/create/secret', { message: armored, expiration: 3600 });
  assert.equal(made.status, 200);
  const a = await context();
  await a.page.goto(`${MIRROR}/#/s/${made.data.message}/${key}`);
  await a.page.getByRole('button', { name: 'Reveal secret' }).click();
  assert.equal(await value(a.page, 'Secret'), 'made by gpg');

  const { bare, key: pageKey } = await shareText(a.page, 'made by the page', { oneTime: false });
  const id = bare.split('/').pop();
  const fetched = await api('GET', `/secret/${id}`);
  assert.equal(fetched.data.one_time, false);
  const plain = gpg(['--passphrase', pageKey, '--decrypt'], fetched.data.message).toString();
  assert.equal(plain, 'made by the page');
  await closeAll();
});

/// Creates a request through the page; returns its link.
async function createRequest(page, label) {
  await page.goto(`${BASE}/#/request`);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Request a secret' }).click();
  await see(h1(page, 'Request a secret'));
  if (label) await page.getByLabel('Label').fill(label);
  await page.getByRole('button', { name: 'Create request' }).click();
  await see(page.getByRole('heading', { level: 2, name: 'Request created' }));
  return value(page, 'Request link');
}

async function respond(page, link, secret) {
  await page.goto(link);
  await see(h1(page, 'Someone requests a secret'));
  await page.getByLabel('Secret', { exact: true }).fill(secret);
  await page.getByRole('button', { name: 'Encrypt and send' }).click();
  await see(h1(page, 'Secret sent'));
}

const entry = (page, label) => page.getByRole('listitem').filter({ has: page.getByRole('heading', { name: label, exact: true }) });

async function collect(page, label) {
  const item = entry(page, label);
  await see(item.getByText('State: Secret provided'));
  await item.getByRole('button', { name: 'View secret' }).click();
  const confirm = page.getByRole('dialog');
  await see(confirm.getByRole('heading', { name: 'View the secret now?' }));
  await confirm.getByRole('button', { name: 'View secret' }).click();
  const dialog = page.getByRole('dialog').filter({ has: page.getByRole('heading', { name: 'Secret', exact: true }) });
  const text = await dialog.getByLabel('Secret', { exact: true }).inputValue({ timeout: WAIT });
  await dialog.getByRole('button', { name: 'Close' }).click();
  return text;
}

test('a request is answered in another browser and collected with the badge counting it', async () => {
  const a = await context();
  const link = await createRequest(a.page, 'Prod API key');
  const stored = await a.page.evaluate(() => JSON.parse(localStorage.getItem('lethe-requests')));
  assert.equal(stored.version, 1);
  const [e] = stored.requests;
  assert.equal(link, `${MIRROR}/#/r/${e.id}/${e.fingerprint.slice(-16)}`);
  assert.equal(e.label, 'Prod API key');
  assert.equal(e.state, 'pending');
  const create = a.requests.find((r) => r.method === 'POST' && r.url.endsWith('/request'));
  assert.ok(!create.request.postData().includes('PRIVATE KEY'), 'the private key stays in the browser');

  // A second tab of the same browser, open before the secret arrives, counts it from the first tab's
  // refresh (the storage event), without a route change of its own.
  const tab2 = await a.ctx.newPage();
  await tab2.goto(`${BASE}/#/`);
  await see(tab2.getByRole('link', { name: 'Requests', exact: true }));

  const b = await context();
  await b.page.goto(link);
  await see(h1(b.page, 'Someone requests a secret'));
  await see(b.page.getByText('Label: Prod API key'));
  await see(b.page.getByText(`Key fingerprint: ${e.fingerprint.slice(-16)} (verified against this link)`));
  await respond(b.page, link, 'the API key value');
  await b.page.reload();
  await see(h1(b.page, 'Secret already provided'));

  await a.page.goto(`${BASE}/#/requests`);
  await see(h1(a.page, 'Requests'));
  await see(a.page.getByRole('link', { name: 'Requests (1 waiting)', exact: true }));
  await see(tab2.getByRole('link', { name: 'Requests (1 waiting)', exact: true }));
  assert.equal(await tab2.getByRole('heading', { level: 1 }).textContent(), 'Share a secret');
  await tab2.close();
  await shot(a.page, 'requests.png');
  const item = entry(a.page, 'Prod API key');
  // Cancel does nothing.
  await item.getByRole('button', { name: 'Revoke' }).click();
  await a.page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
  await see(item.getByText('State: Secret provided'));
  assert.equal(await collect(a.page, 'Prod API key'), 'the API key value');
  await see(item.getByText('State: Collected'));
  await see(a.page.getByRole('link', { name: 'Requests', exact: true }));
  await item.getByRole('button', { name: 'Remove' }).click();
  await see(a.page.getByText('No requests in this browser.'));
  await b.page.reload();
  await see(h1(b.page, 'Request not available'));
  await closeAll();
});

test('a fingerprint or label that does not match the link is refused and nothing is sent', async () => {
  const a = await context();
  const link = await createRequest(a.page, 'For Alice');
  const b = await context();
  const wrongFp = link.replace(/[0-9a-f]{16}$/, (fp) => (fp[0] === '0' ? '1' : '0') + fp.slice(1));
  await b.page.goto(wrongFp);
  await see(h1(b.page, 'Key verification failed'));
  await alertWith(b.page, 'Nothing was encrypted or sent.');
  await b.page.goto(link.replace(/[0-9a-f]{16}$/, 'nothex'));
  await see(h1(b.page, 'Key verification failed'));

  // A server that lies about the label: the key's own user ID says something else.
  const { publicKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name: 'Send it to Mallory' }],
    format: 'armored',
  });
  const made = await api('POST', '/request', { public_key: publicKey, label: 'For Alice', expiration: 3600 });
  assert.equal(made.status, 200);
  await b.page.goto(`${MIRROR}/#/r/${made.data.id}/${made.data.fingerprint.slice(-16)}`);
  await see(h1(b.page, 'Key verification failed'));
  assert.equal(await b.page.getByLabel('Secret', { exact: true }).count(), 0, 'no form');
  assert.equal(b.requests.filter((r) => r.method !== 'GET').length, 0, 'nothing was posted');
  await closeAll();
});

test('an exported request is imported into a fresh browser and collected there', async () => {
  const a = await context();
  const link = await createRequest(a.page, 'Moving browsers');
  await a.page.goto(`${BASE}/#/requests`);
  const [download] = await Promise.all([
    a.page.waitForEvent('download', { timeout: WAIT }),
    entry(a.page, 'Moving browsers').getByRole('button', { name: 'Export' }).click(),
  ]);
  const id = link.split('/').at(-2);
  assert.equal(download.suggestedFilename(), `lethe-request-${id}.json`);
  const exported = readFileSync(await download.path(), 'utf8');
  const obj = JSON.parse(exported);
  assert.equal(obj.format, 'lethe-secret-request');
  assert.equal(obj.version, 1);
  assert.ok(obj.privateKey.includes('PRIVATE KEY') && obj.token);
  await statusWith(a.page, 'treat it as a secret');

  const b = await context();
  await respond(b.page, link, 'moved secret');

  const c = await context();
  await c.page.goto(`${BASE}/#/requests`);
  await see(c.page.getByText('No requests in this browser.'));
  const dir = mkdtempSync(path.join(tmpdir(), 'lethe-e2e-'));
  const good = path.join(dir, download.suggestedFilename());
  const bad = path.join(dir, 'yopass.json');
  writeFileSync(good, exported);
  writeFileSync(bad, JSON.stringify({ yopassSecretRequest: 1, ...obj, format: undefined }));
  const [chooser] = await Promise.all([
    c.page.waitForEvent('filechooser', { timeout: WAIT }),
    c.page.getByRole('button', { name: 'Import' }).click(),
  ]);
  await chooser.setFiles([bad]);
  await alertWith(c.page, 'Not a lethe request export: yopass.json');
  const [chooser2] = await Promise.all([
    c.page.waitForEvent('filechooser', { timeout: WAIT }),
    c.page.getByRole('button', { name: 'Import' }).click(),
  ]);
  await chooser2.setFiles([good]);
  await statusWith(c.page, 'Imported 1 request(s).');
  await see(c.page.getByRole('link', { name: 'Requests (1 waiting)', exact: true }));
  assert.equal(await collect(c.page, 'Moving browsers'), 'moved secret');
  await closeAll();
});

/// Runs the `lethe` command-line client (LETHE_BIN) in `dir`, with its request directory there and
/// the full listener as its server; `input` is its stdin.
function cli(dir, args, input = '') {
  const out = spawnSync(process.env.LETHE_BIN, args, {
    input,
    cwd: dir,
    env: { PATH: process.env.PATH, HOME: dir, LETHE_CLIENT__URL: BASE, LETHE_CLIENT__REQUESTS_DIR: path.join(dir, 'requests') },
  });
  assert.equal(out.status, 0, `lethe ${args.join(' ')}: ${out.stderr}`);
  return out.stdout.toString();
}

test('links and requests move between the command-line client and the browser', async () => {
  assert.ok(process.env.LETHE_BIN, 'LETHE_BIN names the lethe binary');
  const dir = mkdtempSync(path.join(tmpdir(), 'lethe-e2e-cli-'));

  // A link made in the terminal opens in the browser, and one made in the browser opens in the terminal.
  const sent = cli(dir, ['send'], 'from the terminal\nsecond line').trim();
  assert.match(sent, new RegExp(`^${MIRROR}/#/s/[A-Za-z0-9_-]+/[A-Za-z0-9]{22}$`));
  const a = await context();
  await a.page.goto(sent);
  await see(h1(a.page, 'A secret for you'));
  await a.page.getByRole('button', { name: 'Reveal secret' }).click();
  assert.equal(await value(a.page, 'Secret'), 'from the terminal\nsecond line');
  const { link } = await shareText(a.page, 'from the browser ✓');
  assert.equal(cli(dir, ['receive', link]), 'from the browser ✓');

  // A browser's export is collected in the terminal, answered by the terminal.
  const browserLink = await createRequest(a.page, 'Browser to terminal');
  await a.page.goto(`${BASE}/#/requests`);
  const [download] = await Promise.all([
    a.page.waitForEvent('download', { timeout: WAIT }),
    entry(a.page, 'Browser to terminal').getByRole('button', { name: 'Export' }).click(),
  ]);
  const exported = path.join(dir, download.suggestedFilename());
  writeFileSync(exported, readFileSync(await download.path()));
  cli(dir, ['request', 'import', exported]);
  cli(dir, ['request', 'respond', browserLink], 'answered in the terminal');
  const browserId = browserLink.split('/').at(-2);
  assert.equal(cli(dir, ['request', 'collect', browserId]), 'answered in the terminal');

  // A terminal's request is collected in the browser, answered by a browser.
  const cliLink = cli(dir, ['request', 'new', '--label', 'Terminal to browser']).trim();
  assert.match(cliLink, new RegExp(`^${MIRROR}/#/r/[A-Za-z0-9_-]+/[0-9a-f]{16}$`));
  const b = await context();
  await respond(b.page, cliLink, 'answered in a browser');
  const c = await context();
  await c.page.goto(`${BASE}/#/requests`);
  const [chooser] = await Promise.all([
    c.page.waitForEvent('filechooser', { timeout: WAIT }),
    c.page.getByRole('button', { name: 'Import' }).click(),
  ]);
  await chooser.setFiles([path.join(dir, 'requests', `lethe-request-${cliLink.split('/').at(-2)}.json`)]);
  await statusWith(c.page, 'Imported 1 request(s).');
  assert.equal(await collect(c.page, 'Terminal to browser'), 'answered in a browser');
  await closeAll();
});

test('replace key pair makes a new link and fails the old one; revoke and clear collected tidy up', async () => {
  const a = await context();
  const oldLink = await createRequest(a.page, 'Rotate me');
  await createRequest(a.page, '<i>Revoke</i> me');
  const revokeLink = await value(a.page, 'Request link');
  await a.page.goto(`${BASE}/#/requests`);
  const rotating = entry(a.page, 'Rotate me');
  assert.equal(await rotating.getByLabel('Request link').inputValue({ timeout: WAIT }), oldLink);
  // Escape cancels a confirmation, and focus returns to the button that opened it.
  const replace = rotating.getByRole('button', { name: 'Replace key pair' });
  await replace.click();
  await see(a.page.getByRole('dialog').getByRole('heading', { name: 'Replace the key pair?' }));
  await a.page.keyboard.press('Escape');
  await a.page.getByRole('dialog').waitFor({ state: 'detached', timeout: WAIT });
  assert.equal(await a.page.evaluate(() => document.activeElement.textContent), 'Replace key pair');
  assert.equal(await rotating.getByLabel('Request link').inputValue(), oldLink, 'nothing was replaced');
  await replace.click();
  await a.page.getByRole('dialog').getByRole('button', { name: 'Replace key pair' }).click();
  await statusWith(a.page, 'Key pair replaced. Send the new link.');
  const newLink = await rotating.getByLabel('Request link').inputValue();
  assert.notEqual(newLink, oldLink);
  assert.equal(newLink.split('/').at(-2), oldLink.split('/').at(-2), 'same request, new fingerprint');
  await rotating.getByRole('button', { name: 'Copy link' }).click();
  await statusWith(a.page, 'Copied');
  assert.equal(await a.page.evaluate(() => navigator.clipboard.readText()), newLink);

  const b = await context();
  await b.page.goto(oldLink);
  await see(h1(b.page, 'Key verification failed'));
  await respond(b.page, newLink, 'after rotation');

  const revoking = entry(a.page, '<i>Revoke</i> me');
  await revoking.getByRole('button', { name: 'Revoke' }).click();
  await a.page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
  await see(revoking.getByText('State: Revoked'));
  await b.page.goto(revokeLink);
  await see(h1(b.page, 'Request not available'));

  await a.page.reload();
  assert.equal(await collect(a.page, 'Rotate me'), 'after rotation', 'the new private key decrypts');
  await a.page.getByRole('button', { name: 'Clear collected' }).click();
  assert.equal(await entry(a.page, 'Rotate me').count(), 0);
  await see(entry(a.page, '<i>Revoke</i> me').getByRole('button', { name: 'Remove' }));
  await closeAll();
});

test('purge all keeps the request it could not revoke, with its key and token', async () => {
  const a = await context();
  await createRequest(a.page, 'Kept');
  const keptLink = await value(a.page, 'Request link');
  const keptId = keptLink.split('/').at(-2);
  await createRequest(a.page, 'Purged');
  await a.page.route(`${BASE}/request/${keptId}`, (route) =>
    route.request().method() === 'DELETE'
      ? route.fulfill({ status: 503, contentType: 'application/json', body: '{"message":"unavailable"}' })
      : route.continue(),
  );
  await a.page.goto(`${BASE}/#/requests`);
  await see(entry(a.page, 'Purged'));
  await a.page.getByRole('button', { name: 'Purge all' }).click();
  await a.page.getByRole('dialog').getByRole('button', { name: 'Purge all' }).click();
  await alertWith(a.page, '1 request(s) could not be revoked and were kept.');
  await see(entry(a.page, 'Kept'));
  assert.equal(await entry(a.page, 'Purged').count(), 0);
  const left = await a.page.evaluate(() => JSON.parse(localStorage.getItem('lethe-requests')).requests);
  assert.deepEqual(left.map((e) => e.id), [keptId]);
  assert.ok(left[0].token && left[0].privateKey.includes('PRIVATE KEY'));
  await a.page.unroute(`${BASE}/request/${keptId}`);
  await a.page.getByRole('button', { name: 'Purge all' }).click();
  await a.page.getByRole('dialog').getByRole('button', { name: 'Purge all' }).click();
  await statusWith(a.page, 'All requests were purged.');
  await see(a.page.getByText('No requests in this browser.'));
  const gone = await api('GET', `/request/${keptId}`);
  assert.equal(gone.status, 404, 'revoked on the server');
  await closeAll();
});

test('a read-only mirror opens links but offers no creation, and unknown routes say so', async () => {
  const a = await context();
  await a.page.goto(`${MIRROR}/#/`);
  await see(h1(a.page, 'Share a secret'));
  await see(a.page.getByText('This server only opens links; secrets are created elsewhere.'));
  assert.equal(await a.page.getByRole('navigation', { name: 'Main' }).getByRole('link').count(), 0);
  await a.page.goto(`${MIRROR}/#/requests`);
  await see(a.page.getByText('Secret requests are not available on this server.'));
  await a.page.goto(`${BASE}/#/no/such/view`);
  await see(h1(a.page, 'Page not found'));
  assert.equal(await a.page.title(), 'Page not found · lethe');

  // The shell's CSP is in force, and the guard every test relies on sees a violation of it.
  await assert.rejects(a.page.evaluate(() => { document.body.innerHTML = '<b>markup</b>'; }), /TrustedHTML/);
  const violation = () => a.problems.some((p) => /Trusted|Content Security Policy/.test(p));
  for (const deadline = Date.now() + WAIT; !violation() && Date.now() < deadline; ) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(violation(), `the guard saw: ${a.problems}`);
  a.problems.splice(0);
  await closeAll();
});

test('the share form works from the keyboard alone', async () => {
  const a = await context();
  await a.page.goto(`${BASE}/#/request`);
  await a.page.goto(`${BASE}/#/`);
  await see(h1(a.page, 'Share a secret'));
  assert.equal(await a.page.evaluate(() => document.activeElement.textContent), 'Share a secret', 'focus is on the h1');
  await a.page.keyboard.press('Tab');
  await a.page.keyboard.type('typed only');
  await a.page.keyboard.press('Tab'); // the checked radio
  await a.page.keyboard.press('ArrowRight'); // 1 day
  await a.page.keyboard.press('Tab'); // one-time
  await a.page.keyboard.press('Space');
  await a.page.keyboard.press('Tab'); // Create link
  await a.page.keyboard.press('Enter');
  await see(a.page.getByRole('heading', { level: 2, name: 'Your link is ready' }));
  const bare = await value(a.page, 'Link without key');
  const stored = await api('GET', `/secret/${bare.split('/').pop()}`);
  assert.equal(stored.data.expiration, 86400);
  assert.equal(stored.data.one_time, false);
  await closeAll();
});

test('the v1 recipient page reveals with JavaScript off', async () => {
  const r = await fetch(`${BASE}/api/v1/share`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'secret=no+script+needed',
  });
  const { secret_key: key } = await r.json();
  const a = await context({ javaScriptEnabled: false });
  await a.page.goto(`${BASE}/secret/${key}`);
  await see(h1(a.page, 'A secret for you'));
  await a.page.getByRole('button', { name: 'Reveal secret' }).click();
  assert.equal(await value(a.page, 'Secret'), 'no script needed');
  await closeAll();
});

// The app's pure parts: keys, duration labels, routes and links, /config reading, the request store.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as lib from '../src/lib.js';

test('a key is 22 characters of [A-Za-z0-9]', () => {
  for (let i = 0; i < 200; i++) assert.match(lib.randomKey(), /^[A-Za-z0-9]{22}$/);
});

test('bytes of 248 and above are dropped, so no character is favoured', () => {
  // A source that offers only rejected bytes, then a run of 0..61: the key must use the latter.
  let call = 0;
  const source = (a) => {
    call += 1;
    for (let i = 0; i < a.length; i++) a[i] = call === 1 ? 248 + (i % 8) : (i * 62 + 61) % 248;
    return a;
  };
  const key = lib.randomKey(source);
  assert.equal(key.length, 22);
  assert.equal(call, 2, 'the first, all-rejected batch gave nothing');
  // Byte 61 is the alphabet's last character.
  assert.equal(key[0], '9');
});

test('every character shows up with about the same frequency', () => {
  const counts = new Map();
  for (let i = 0; i < 3000; i++) for (const c of lib.randomKey()) counts.set(c, (counts.get(c) || 0) + 1);
  assert.equal(counts.size, 62);
  const expected = (3000 * 22) / 62;
  for (const [c, n] of counts) assert.ok(Math.abs(n - expected) < expected * 0.35, `${c}: ${n}`);
});

test('durations are labelled by the largest unit that divides them', () => {
  const cases = [
    [3600, '1 hour'],
    [86400, '1 day'],
    [604800, '1 week'],
    [1209600, '2 weeks'],
    [2592000, '30 days'],
    [7200, '2 hours'],
    [60, '1 minute'],
    [90, '90 seconds'],
    [1, '1 second'],
  ];
  for (const [s, label] of cases) assert.equal(lib.durationLabel(s), label, String(s));
});

test('routes follow the fragment shapes', () => {
  assert.deepEqual(lib.parseRoute(''), { view: 'share' });
  assert.deepEqual(lib.parseRoute('#/'), { view: 'share' });
  assert.deepEqual(lib.parseRoute('#/file'), { view: 'shareFile' });
  assert.deepEqual(lib.parseRoute('#/request'), { view: 'request' });
  assert.deepEqual(lib.parseRoute('#/requests'), { view: 'requests' });
  assert.deepEqual(lib.parseRoute('#/s/abc_-1/KEY'), { view: 'open', kind: 'text', id: 'abc_-1', key: 'KEY' });
  assert.deepEqual(lib.parseRoute('#/s/abc'), { view: 'open', kind: 'text', id: 'abc', key: null });
  assert.deepEqual(lib.parseRoute('#/s/abc/'), { view: 'open', kind: 'text', id: 'abc', key: null });
  assert.deepEqual(lib.parseRoute('#/f/abc/k'), { view: 'open', kind: 'file', id: 'abc', key: 'k' });
  assert.deepEqual(lib.parseRoute('#/r/abc/0123456789abcdef'), { view: 'respond', id: 'abc', fp16: '0123456789abcdef' });
  assert.deepEqual(lib.parseRoute('#/r/abc'), { view: 'respond', id: 'abc', fp16: null });
  for (const bad of ['#/nope', '#/s', '#/s/a.b/k', '#/s/a/k/extra', '#nope', '#/file/x', '#/r/../x']) {
    assert.deepEqual(lib.parseRoute(bad), { view: 'notFound' }, bad);
  }
});

test('fp16 is exactly 16 hex digits', () => {
  assert.ok(lib.isFp16('0123456789abcdef'));
  assert.ok(lib.isFp16('0123456789ABCDEF'));
  assert.ok(!lib.isFp16('0123456789abcde'));
  assert.ok(!lib.isFp16('0123456789abcdeg'));
  assert.ok(!lib.isFp16(null));
});

test('links use PUBLIC_URL without a trailing slash, else the origin', () => {
  assert.equal(lib.linkBase({ PUBLIC_URL: 'https://s.example/' }, 'http://x'), 'https://s.example');
  assert.equal(lib.linkBase({}, 'http://127.0.0.1:1'), 'http://127.0.0.1:1');
  assert.equal(lib.linkBase({ PUBLIC_URL: 7 }, 'http://o'), 'http://o');
  assert.equal(lib.secretLink('https://b', 'text', 'ID', 'KEY'), 'https://b/#/s/ID/KEY');
  assert.equal(lib.secretLink('https://b', 'file', 'ID', null), 'https://b/#/f/ID');
  const fp = '90669E1E07DC8E468FC577B7BC061E1C19E3716D';
  assert.equal(lib.requestLink('https://b', 'ID', fp), 'https://b/#/r/ID/bc061e1c19e3716d');
});

test('/config values of the wrong type read as absent', () => {
  const c = lib.readConfig({ READ_ONLY: 'yes', MAX_LENGTH: '10', EXPIRATIONS: [3600, 'x', -1, 86400], DEFAULT_EXPIRY: 86400 });
  assert.equal(c.readOnly, false);
  assert.equal(c.maxLength, undefined);
  assert.deepEqual(c.expirations, [3600, 86400]);
  assert.equal(lib.defaultExpiration(c), 86400);
  const d = lib.readConfig({ EXPIRATIONS: [60, 120], DEFAULT_EXPIRY: 3600 });
  assert.equal(lib.defaultExpiration(d), 60, 'a default that is not offered falls back to the first');
  assert.deepEqual(lib.readConfig(null).expirations, [3600, 86400, 604800]);
});

const entry = {
  id: 'HSgezvthONSK5kVuDxkTqAnp2d633DO2',
  token: 'tok',
  label: 'Prod API key',
  privateKey: '-----BEGIN PGP PRIVATE KEY BLOCK-----',
  publicKey: '-----BEGIN PGP PUBLIC KEY BLOCK-----',
  fingerprint: '90669e1e07dc8e468fc577b7bc061e1c19e3716d',
  createdAt: 1796131332,
  expiresAt: 1796134975,
  state: 'pending',
};

test('the store keeps valid entries, skips and preserves invalid ones, and survives garbage', () => {
  const raw = JSON.stringify({ version: 1, requests: [entry, { id: 5 }, { ...entry, id: 'b', state: 'weird' }] });
  const store = lib.parseStore(raw);
  assert.equal(store.requests.length, 1);
  assert.equal(store.invalid.length, 2);
  const again = JSON.parse(lib.serializeStore(store));
  assert.equal(again.version, 1);
  assert.equal(again.requests.length, 3, 'invalid entries are not deleted by a rewrite');
  for (const bad of [null, '', 'not json', '{"version":2,"requests":[]}', '{"version":1}', '[]']) {
    assert.deepEqual(lib.parseStore(bad).requests, [], String(bad));
  }
});

test('unknown fields survive, fingerprints and times are checked', () => {
  const store = lib.parseStore(JSON.stringify({ version: 1, requests: [{ ...entry, extra: { a: 1 } }] }));
  assert.deepEqual(store.requests[0].extra, { a: 1 });
  assert.match(lib.entryProblem({ ...entry, fingerprint: 'XYZ' }), /fingerprint/);
  assert.match(lib.entryProblem({ ...entry, createdAt: 1.5 }), /createdAt/);
  assert.match(lib.entryProblem({ ...entry, id: 'a/b' }), /id/);
  assert.equal(lib.entryProblem({ ...entry, fingerprint: 'a'.repeat(64) }), null, 'v6 fingerprints');
});

test('final states are never overwritten by a refresh', () => {
  for (const s of ['collected', 'revoked', 'expired']) assert.equal(lib.mergeState(s, 'pending'), s);
  assert.equal(lib.mergeState('pending', 'fulfilled'), 'fulfilled');
  assert.equal(lib.mergeState('fulfilled', 'pending'), 'pending');
});

test('entries are newest first and replaced by id', () => {
  const older = { ...entry, id: 'old', createdAt: 1 };
  const newer = { ...entry, id: 'new', createdAt: 2 };
  let list = lib.upsert([], older);
  list = lib.upsert(list, newer);
  assert.deepEqual(list.map((e) => e.id), ['new', 'old']);
  list = lib.upsert(list, { ...older, state: 'revoked' });
  assert.deepEqual(list.map((e) => [e.id, e.state]), [['new', 'pending'], ['old', 'revoked']]);
});

test('the badge counts fulfilled requests and names itself', () => {
  const list = [entry, { ...entry, state: 'fulfilled' }, { ...entry, state: 'fulfilled' }, { ...entry, state: 'collected' }];
  assert.equal(lib.waitingCount(list), 2);
  assert.equal(lib.badgeName(0), 'Requests');
  assert.equal(lib.badgeName(2), 'Requests (2 waiting)');
});

test('an export round-trips and a wrong file is refused with a reason', () => {
  const text = lib.exportText(entry);
  assert.equal(lib.exportName(entry), `lethe-request-${entry.id}.json`);
  const obj = JSON.parse(text);
  assert.equal(obj.format, 'lethe-secret-request');
  assert.equal(obj.version, 1);
  assert.deepEqual(lib.parseExport(text).entry, entry);
  const { state: _s, ...noState } = obj;
  assert.equal(lib.parseExport(JSON.stringify(noState)).entry.state, 'pending');
  assert.ok(lib.parseExport('nope').error);
  assert.ok(lib.parseExport(JSON.stringify({ ...obj, version: 2 })).error);
  assert.ok(lib.parseExport(JSON.stringify({ yopassSecretRequest: 1, ...entry })).error);
  assert.ok(lib.parseExport(JSON.stringify({ ...obj, token: 5 })).error);
});

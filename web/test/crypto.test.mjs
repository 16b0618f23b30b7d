// OpenPGP round trips with the same openpgp version the bundle carries.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as openpgp from 'openpgp';
import * as pgp from '../src/crypto.js';
import { randomKey } from '../src/lib.js';

test('a text secret is SKESK v4 + SEIPD v1 (GnuPG reads it) and opens only with its key', async () => {
  const key = randomKey();
  const armored = await pgp.encryptText('héllo', key);
  const message = await openpgp.readMessage({ armoredMessage: armored });
  const tags = [...message.packets].map((p) => p.constructor.tag);
  assert.deepEqual(tags, [openpgp.enums.packet.symEncryptedSessionKey, openpgp.enums.packet.symEncryptedIntegrityProtectedData]);
  assert.equal(message.packets[0].version, 4);
  assert.equal(message.packets[1].version, 1);
  assert.equal(await pgp.decryptText(armored, key), 'héllo');
  await assert.rejects(pgp.decryptText(armored, 'wrong'));
});

test('a file keeps its bytes and its name inside the ciphertext', async () => {
  const bytes = new Uint8Array([0, 1, 2, 255]);
  const message = await pgp.encryptFile(bytes, 'notes.bin', 'k');
  assert.ok(message instanceof Uint8Array);
  assert.ok(!Buffer.from(message).includes(Buffer.from('notes.bin')), 'the name is encrypted');
  const out = await pgp.decryptFile(message, 'k');
  assert.deepEqual([...out.data], [...bytes]);
  assert.equal(out.filename, 'notes.bin');
});

test('a request key is ed25519 + cv25519 with the label as its only user ID', async () => {
  const pair = await pgp.generateRequestKey('Prod API key');
  const key = await openpgp.readKey({ armoredKey: pair.publicKey });
  assert.equal(key.getAlgorithmInfo().algorithm, 'eddsaLegacy');
  assert.equal(key.keyPacket.version, 4);
  assert.deepEqual(key.getUserIDs(), ['Prod API key']);
  const enc = await key.getEncryptionKey();
  assert.equal(enc.getAlgorithmInfo().algorithm, 'ecdh');
  assert.equal(enc.getAlgorithmInfo().curve, 'curve25519Legacy');
  assert.equal(await key.getExpirationTime(), Infinity);
  assert.match(pair.fingerprint, /^[0-9a-f]{40}$/);
  const empty = await pgp.generateRequestKey('');
  assert.deepEqual((await openpgp.readKey({ armoredKey: empty.publicKey })).getUserIDs(), ['lethe secret request']);
});

test('the responder check needs the fingerprint and the label, and encrypts to the requester only', async () => {
  const pair = await pgp.generateRequestKey('label A');
  const fp16 = pair.fingerprint.slice(-16);
  const key = await pgp.verifyRequestKey(pair.publicKey, fp16.toUpperCase(), 'label A');
  await assert.rejects(pgp.verifyRequestKey(pair.publicKey, '0000000000000000', 'label A'), /fingerprint/);
  await assert.rejects(pgp.verifyRequestKey(pair.publicKey, fp16, 'label B'), /label/);
  await assert.rejects(pgp.verifyRequestKey(pair.publicKey, fp16, ''), /label/);
  await assert.rejects(pgp.verifyRequestKey(pair.privateKey, fp16, 'label A'), /public/);
  const message = await pgp.encryptToKey('the secret', key);
  assert.equal(await pgp.decryptWithPrivateKey(message, pair.privateKey), 'the secret');
  const other = await pgp.generateRequestKey('label A');
  await assert.rejects(pgp.decryptWithPrivateKey(message, other.privateKey));
});

test('an import must carry a matching private and public key', async () => {
  const a = await pgp.generateRequestKey('x');
  const b = await pgp.generateRequestKey('x');
  const entry = { privateKey: a.privateKey, publicKey: a.publicKey, fingerprint: a.fingerprint };
  await pgp.checkEntryKeys(entry);
  await assert.rejects(pgp.checkEntryKeys({ ...entry, publicKey: b.publicKey }));
  await assert.rejects(pgp.checkEntryKeys({ ...entry, privateKey: b.privateKey }));
  await assert.rejects(pgp.checkEntryKeys({ ...entry, publicKey: a.privateKey }));
  await assert.rejects(pgp.checkEntryKeys({ ...entry, privateKey: a.publicKey }));
  await assert.rejects(pgp.checkEntryKeys({ ...entry, fingerprint: b.fingerprint }));
});

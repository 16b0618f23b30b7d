// Every use of OpenPGP in the app, in one place: what is encrypted how (web-ui.md §6). The server
// never sees a key or a plaintext; this module is where they stop.

import * as openpgp from 'openpgp';
import { DEFAULT_REQUEST_LABEL } from './lib.js';

// SEIPD v1 (no AEAD) so that GnuPG, which reads no SEIPD v2, opens what the page makes.
const SYMMETRIC = { aeadProtect: false, preferredSymmetricAlgorithm: openpgp.enums.symmetric.aes256 };

export async function encryptText(text, key) {
  const message = await openpgp.createMessage({ text });
  return openpgp.encrypt({ message, passwords: [key], config: SYMMETRIC });
}

export async function encryptFile(bytes, filename, key) {
  const message = await openpgp.createMessage({ binary: bytes, filename, format: 'binary' });
  return openpgp.encrypt({ message, passwords: [key], format: 'binary', config: SYMMETRIC });
}

export async function decryptText(armored, key) {
  const message = await openpgp.readMessage({ armoredMessage: armored });
  const { data } = await openpgp.decrypt({ message, passwords: [key] });
  return data;
}

/// The file's bytes and the name from its literal packet.
export async function decryptFile(bytes, key) {
  const message = await openpgp.readMessage({ binaryMessage: bytes });
  const { data, filename } = await openpgp.decrypt({ message, passwords: [key], format: 'binary' });
  return { data, filename: filename || 'secret' };
}

/// A request key pair: v4, EdDSA ed25519 primary, ECDH cv25519 subkey, the label as its user ID.
export async function generateRequestKey(label) {
  const { privateKey, publicKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name: label || DEFAULT_REQUEST_LABEL }],
    format: 'armored',
  });
  const key = await openpgp.readKey({ armoredKey: publicKey });
  return { privateKey, publicKey, fingerprint: key.getFingerprint().toLowerCase() };
}

export async function fingerprintOf(armoredPublicKey) {
  const key = await openpgp.readKey({ armoredKey: armoredPublicKey });
  return key.getFingerprint().toLowerCase();
}

/// The responder's check (§4.5): the key must end in `fp16`, its self-signed user ID must be the
/// label the server sent, and it must have an encryption key. Returns the key, or throws.
export async function verifyRequestKey(armoredPublicKey, fp16, label) {
  const key = await openpgp.readKey({ armoredKey: armoredPublicKey });
  if (key.isPrivate()) throw new Error('not a public key');
  if (!key.getFingerprint().toLowerCase().endsWith(fp16.toLowerCase())) {
    throw new Error('fingerprint mismatch');
  }
  const { user } = await key.getPrimaryUser();
  const expected = label || DEFAULT_REQUEST_LABEL;
  const userID = user.userID;
  if (!userID || userID.userID !== expected) throw new Error('label mismatch');
  await key.getEncryptionKey();
  return key;
}

export async function encryptToKey(text, key) {
  const message = await openpgp.createMessage({ text });
  return openpgp.encrypt({ message, encryptionKeys: key });
}

export async function decryptWithPrivateKey(armored, armoredPrivateKey) {
  const privateKey = await openpgp.readPrivateKey({ armoredKey: armoredPrivateKey });
  const message = await openpgp.readMessage({ armoredMessage: armored });
  const { data } = await openpgp.decrypt({ message, decryptionKeys: privateKey });
  return data;
}

/// An import's keys: a private key and a public key, both exactly `fingerprint`. Throws the reason.
export async function checkEntryKeys(entry) {
  const priv = await openpgp.readPrivateKey({ armoredKey: entry.privateKey });
  const pub = await openpgp.readKey({ armoredKey: entry.publicKey });
  if (pub.isPrivate()) throw new Error('publicKey holds a private key');
  if (priv.getFingerprint().toLowerCase() !== entry.fingerprint) throw new Error('privateKey fingerprint');
  if (pub.getFingerprint().toLowerCase() !== entry.fingerprint) throw new Error('publicKey fingerprint');
}

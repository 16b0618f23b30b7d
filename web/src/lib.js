// The app's pure parts: keys, labels, routes, links and the request store's schema. Nothing here
// touches the DOM, the network or openpgp, so `node --test` checks all of it without a browser.

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
export const KEY_LENGTH = 22;
export const DEFAULT_REQUEST_LABEL = 'lethe secret request';
export const STORE_KEY = 'lethe-requests';
export const EXPORT_FORMAT = 'lethe-secret-request';
export const STATES = ['pending', 'fulfilled', 'collected', 'revoked', 'expired'];
export const FINAL_STATES = ['collected', 'revoked', 'expired'];
export const MAX_LABEL_BYTES = 100;

/// A 22-character key drawn uniformly from [A-Za-z0-9]. Bytes >= 248 are dropped: 248 is the
/// largest multiple of 62 below 256, so every kept byte maps to a character with equal chance.
export function randomKey(getRandomValues = (a) => crypto.getRandomValues(a)) {
  let out = '';
  while (out.length < KEY_LENGTH) {
    const bytes = getRandomValues(new Uint8Array(32));
    for (const b of bytes) {
      if (b < 248 && out.length < KEY_LENGTH) out += ALPHABET[b % 62];
    }
  }
  return out;
}

const UNITS = [
  [604800, 'week'],
  [86400, 'day'],
  [3600, 'hour'],
  [60, 'minute'],
];

/// "1 hour", "2 weeks", "30 days"; the largest unit that divides the value, else seconds.
export function durationLabel(seconds) {
  for (const [size, unit] of UNITS) {
    if (seconds > 0 && seconds % size === 0) {
      const k = seconds / size;
      return `${k} ${unit}${k === 1 ? '' : 's'}`;
    }
  }
  return `${seconds} second${seconds === 1 ? '' : 's'}`;
}

export function utf8Length(text) {
  return new TextEncoder().encode(text).length;
}

const ID = /^[A-Za-z0-9_-]{1,128}$/;

/// The view a fragment names. Unknown shapes are `notFound`; ids must be URL-safe as issued.
export function parseRoute(hash) {
  const path = (hash || '').replace(/^#/, '');
  if (path === '' || path === '/') return { view: 'share' };
  const parts = path.split('/');
  if (parts[0] !== '') return { view: 'notFound' };
  const [, head, id, extra, ...rest] = parts;
  if (rest.length > 0) return { view: 'notFound' };
  if (head === 'file' && id === undefined) return { view: 'shareFile' };
  if (head === 'request' && id === undefined) return { view: 'request' };
  if (head === 'requests' && id === undefined) return { view: 'requests' };
  if ((head === 's' || head === 'f') && id !== undefined && ID.test(id)) {
    const key = extra === undefined || extra === '' ? null : decodeURIComponent(extra);
    return { view: 'open', kind: head === 's' ? 'text' : 'file', id, key };
  }
  if (head === 'r' && id !== undefined && ID.test(id)) {
    return { view: 'respond', id, fp16: extra === undefined ? null : extra };
  }
  return { view: 'notFound' };
}

export function isFp16(s) {
  return typeof s === 'string' && /^[0-9a-fA-F]{16}$/.test(s);
}

/// `PUBLIC_URL` without a trailing slash, or the page's own origin.
export function linkBase(config, origin) {
  const url = config && typeof config.PUBLIC_URL === 'string' ? config.PUBLIC_URL : '';
  return (url || origin).replace(/\/+$/, '');
}

export function secretLink(base, kind, id, key) {
  const prefix = `${base}/#/${kind === 'file' ? 'f' : 's'}/${id}`;
  return key ? `${prefix}/${key}` : prefix;
}

export function requestLink(base, id, fingerprint) {
  return `${base}/#/r/${id}/${fingerprint.toLowerCase().slice(-16)}`;
}

/// `/config` as the UI reads it: a missing or wrongly typed value is absent.
export function readConfig(raw) {
  const c = raw && typeof raw === 'object' ? raw : {};
  const bool = (k) => (typeof c[k] === 'boolean' ? c[k] : undefined);
  const int = (k) => (Number.isSafeInteger(c[k]) && c[k] >= 0 ? c[k] : undefined);
  const expirations = Array.isArray(c.EXPIRATIONS)
    ? c.EXPIRATIONS.filter((v) => Number.isSafeInteger(v) && v > 0)
    : [];
  return {
    readOnly: bool('READ_ONLY') ?? false,
    disableUpload: bool('DISABLE_UPLOAD') ?? false,
    secretRequests: bool('SECRET_REQUESTS') ?? false,
    secretRequestResponses: bool('SECRET_REQUEST_RESPONSES') ?? false,
    maxLength: int('MAX_LENGTH'),
    maxFileSize: int('MAX_FILE_SIZE'),
    expirations: expirations.length ? expirations : [3600, 86400, 604800],
    defaultExpiry: int('DEFAULT_EXPIRY'),
    publicUrl: typeof c.PUBLIC_URL === 'string' && c.PUBLIC_URL ? c.PUBLIC_URL : undefined,
  };
}

/// The radio to check: the default when it is offered, else the first.
export function defaultExpiration(config) {
  return config.expirations.includes(config.defaultExpiry) ? config.defaultExpiry : config.expirations[0];
}

const HEX = /^[0-9a-f]+$/;
const isInt = (v) => Number.isSafeInteger(v);
const isStr = (v) => typeof v === 'string';

/// Why an entry is not a valid stored request, or null when it is.
export function entryProblem(e) {
  if (!e || typeof e !== 'object' || Array.isArray(e)) return 'not an object';
  for (const f of ['id', 'token', 'label', 'privateKey', 'publicKey', 'fingerprint']) {
    if (!isStr(e[f])) return `${f} is not a string`;
  }
  if (!ID.test(e.id)) return 'id is not an id';
  if (!HEX.test(e.fingerprint) || (e.fingerprint.length !== 40 && e.fingerprint.length !== 64)) {
    return 'fingerprint is not a fingerprint';
  }
  if (!isInt(e.createdAt)) return 'createdAt is not an integer';
  if (!isInt(e.expiresAt)) return 'expiresAt is not an integer';
  if (!STATES.includes(e.state)) return 'state is not a known state';
  return null;
}

/// Reads the stored value: an unreadable value is an empty list; invalid entries are skipped (and
/// kept in `raw` so that a rewrite does not delete them).
export function parseStore(text) {
  let parsed;
  try {
    parsed = JSON.parse(text ?? 'null');
  } catch {
    parsed = null;
  }
  if (!parsed || parsed.version !== 1 || !Array.isArray(parsed.requests)) {
    return { requests: [], invalid: [] };
  }
  const requests = [];
  const invalid = [];
  for (const e of parsed.requests) (entryProblem(e) === null ? requests : invalid).push(e);
  return { requests, invalid };
}

export function serializeStore({ requests, invalid = [] }) {
  const all = [...requests, ...invalid];
  return JSON.stringify({ version: 1, requests: all });
}

/// Adds or replaces an entry by id, newest first by creation time.
export function upsert(requests, entry) {
  const rest = requests.filter((e) => e.id !== entry.id);
  return sortNewestFirst([entry, ...rest]);
}

export function sortNewestFirst(requests) {
  return [...requests].sort((a, b) => b.createdAt - a.createdAt);
}

/// A refreshed state never overwrites a final one: a refresh that raced a local action loses.
export function mergeState(current, fresh) {
  if (FINAL_STATES.includes(current)) return current;
  return fresh;
}

export function waitingCount(requests) {
  return requests.filter((e) => e.state === 'fulfilled').length;
}

export function badgeName(n) {
  return n >= 1 ? `Requests (${n} waiting)` : 'Requests';
}

export const STATE_WORDS = {
  pending: 'Awaiting secret',
  fulfilled: 'Secret provided',
  collected: 'Collected',
  expired: 'Expired',
  revoked: 'Revoked',
};

export function exportName(entry) {
  return `lethe-request-${entry.id}.json`;
}

export function exportText(entry) {
  return `${JSON.stringify({ format: EXPORT_FORMAT, version: 1, ...entry }, null, 2)}\n`;
}

/// The structural half of an import check (the keys are checked by the crypto module): the entry
/// without the two marker fields, or a reason.
export function parseExport(text) {
  let obj;
  try {
    obj = JSON.parse(text);
  } catch {
    return { error: 'not JSON' };
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return { error: 'not an object' };
  if (obj.format !== EXPORT_FORMAT || obj.version !== 1) return { error: 'wrong format' };
  const { format: _f, version: _v, ...entry } = obj;
  if (entry.state === undefined) entry.state = 'pending';
  const problem = entryProblem(entry);
  return problem ? { error: problem } : { entry };
}

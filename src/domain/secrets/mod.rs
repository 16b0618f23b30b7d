//! One-time secrets: create, reveal once, burn, and the creator's metadata.
//!
//! A secret lives under the store key of its secret key in [`SECRET`]; its metadata lives
//! under the store key of the metadata key in [`METADATA`] for twice the secret's TTL. The
//! value is sealed with a key derived from the master key and the secret key, and the metadata keeps
//! the secret key sealed under the metadata key, so the database alone yields neither a value nor a
//! working link.
//!
//! Invariants:
//! - A reveal is one conditional batch: take the secret at the version that was read (and whose
//!   passphrase was checked), and move the metadata to `received`. Of concurrent reveals exactly one
//!   wins; the others find the secret gone.
//! - A secret is consumed only on the path that returns its value: decryption happens before the take,
//!   so an internal error leaves it in place.
//! - Metadata states only move forward: new → viewed → received | burned | expired | orphaned.
//! - A passphrase guess is paid for before bcrypt runs: one planned write reserves an attempt on the
//!   secret's [`Attempts`] record, refused once `passphrase.max_failures` are spent in the window, and
//!   the caller's own allowance ([`Guesses`]) is reserved too. So concurrent guesses cannot outrun the
//!   limit: however many arrive at once, at most `max_failures` are checked per secret and window. A
//!   right passphrase gives both back (the reveal or burn deletes the record). A request without a
//!   passphrase is not a guess: it is answered without bcrypt and counts nowhere.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::accounts::{Account, RECENT, account_index_key};
use super::outbox::MailDelivery;
use super::{CAS_RETRIES, ClientSecrets, Core, Outbox, Secrets};
use crate::config::PassphraseRules;
use crate::crypto::openpgp::{self, MessageError};
use crate::crypto::passphrase::{MAX_PASSPHRASE_BYTES, Passphrase, PassphraseError};
use crate::crypto::{CryptoError, Opener, Purpose, random_bytes};
use crate::store::{Batch, Keyspace, Lookup, Outcome, StoreError, Timestamp, codec};

mod client;
mod password;

use client::*;
pub use client::{ClientError, ClientOpened};
pub use password::generate_password;

/// One-time secrets of every kind, under the store key of the secret id (`MasterKey::store_key`).
/// These three keyspaces are grouped by the creation sequence leading their keys: a secret, its
/// metadata (made with the same sequence) and its attempts form one group.
pub const SECRET: Keyspace = Keyspace::point(1, "secret");
/// v1 metadata records, under the store key of the metadata key.
pub const METADATA: Keyspace = Keyspace::point(2, "metadata");
/// Passphrase attempts per secret, under the store key of the secret id.
pub const ATTEMPTS: Keyspace = Keyspace::point(5, "attempts");

/// The record under [`SECRET`]. One keyspace holds every kind of one-time secret so that an
/// id belongs to exactly one kind; variants are only ever appended (postcard encodes the index).
#[derive(Debug, Clone, Serialize, Deserialize)]
enum SecretRecord {
    V1(V1Secret),
    Client(ClientSecret),
}

/// What a client-encrypted secret carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// An armored PGP MESSAGE (`/create/secret`).
    Message,
    /// Raw OpenPGP bytes (`/create/file`).
    File,
}

#[derive(Clone, Serialize, Deserialize)]
struct V1Secret {
    /// Nonce ‖ AES-256-GCM ciphertext of the value, keyed by the master key and the secret key.
    sealed_value: Vec<u8>,
    passphrase_hash: Option<String>,
    metadata_hash: [u8; 32],
    expires_at: Timestamp,
}

impl fmt::Debug for V1Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V1Secret").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// Where a secret's metadata stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    New,
    Viewed,
    Received,
    Burned,
    Expired,
    Orphaned,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::New => "new",
            State::Viewed => "viewed",
            State::Received => "received",
            State::Burned => "burned",
            State::Expired => "expired",
            State::Orphaned => "orphaned",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, State::New | State::Viewed)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct MetadataRecord {
    custid: String,
    /// The secret key, sealed under the metadata key.
    sealed_secret_key: Vec<u8>,
    secret_hash: [u8; 32],
    ttl: u64,
    created: Timestamp,
    updated: Timestamp,
    state: State,
    received: Option<Timestamp>,
    recipients: Vec<String>,
    share_domain: String,
    passphrase_required: bool,
    secret_expires_at: Timestamp,
    expires_at: Timestamp,
}

/// Passphrase attempts on one secret, under [`ATTEMPTS`]: every check reserved in the
/// window (failed or still running; a right one deletes the record with the secret).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Attempts {
    count: u32,
    window_start: Timestamp,
    locked_until: Timestamp,
}

impl Attempts {
    /// The record as it stands at `now`: a window that ended (and no lock running) starts over.
    fn current(stored: Option<Attempts>, lock_seconds: u64, now: Timestamp) -> Attempts {
        match stored {
            Some(a) if now < a.window_start.saturating_add(lock_seconds) || a.locked_until > now => a,
            _ => Attempts { count: 0, window_start: now, locked_until: 0 },
        }
    }

    /// No further check may run: the lock is on, or every attempt of the window is spent (a lowered
    /// `max_failures` can leave a record there without a lock).
    fn locked(&self, max_failures: u32, now: Timestamp) -> bool {
        self.locked_until > now || self.count >= max_failures
    }
}

/// The caller's own allowance of passphrase checks, kept by the surface (a limit per client
/// address): one is reserved before a check runs and released unless the check ran and failed.
pub trait Guesses: Sync {
    /// Reserves one check; `false` when the caller has none left.
    fn reserve(&self) -> bool;
    /// Gives back a reservation whose check passed or never ran.
    fn release(&self);
}

/// Reserves one passphrase attempt on the secret at `secret_hash`, at `secret_version`: the batch
/// that counts it (locking the secret when it is the last one of the window), or `None` when the
/// secret is locked. Runs inside a plan, so concurrent reservations are decided one after another.
fn reserve_attempt(
    lookup: &mut dyn Lookup,
    secret_hash: [u8; 32],
    secret_version: u64,
    rules: &PassphraseRules,
    now: Timestamp,
) -> Result<Option<Batch>, StoreError> {
    let entry = lookup.get(ATTEMPTS, &secret_hash)?;
    let stored = match &entry {
        Some(e) => Some(codec::decode::<Attempts>(&e.value)?),
        None => None,
    };
    let mut attempts = Attempts::current(stored, rules.lock_seconds, now);
    if attempts.locked(rules.max_failures, now) {
        return Ok(None);
    }
    attempts.count += 1;
    if attempts.count >= rules.max_failures {
        // Locked from the reservation on: if this last check turns out right, the reveal or burn
        // deletes the record with the secret, so a right guess is never locked out by itself.
        attempts.locked_until = now.saturating_add(rules.lock_seconds);
    }
    let expires = attempts.window_start.saturating_add(rules.lock_seconds).max(attempts.locked_until);
    let batch = Batch::new().require_version(SECRET, secret_hash, secret_version);
    let batch = match &entry {
        Some(e) => batch.require_version(ATTEMPTS, secret_hash, e.version),
        None => batch.require_absent(ATTEMPTS, secret_hash),
    };
    Ok(Some(batch.put(ATTEMPTS, secret_hash, codec::encode(&attempts), Some(expires))))
}

/// What the creator may know about a secret. The surface decides which fields its dialect shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataView {
    pub custid: String,
    pub metadata_key: String,
    /// Known while the secret exists (states `new` and `viewed`).
    pub secret_key: Option<String>,
    pub ttl: u64,
    pub metadata_ttl: u64,
    /// Seconds left while the secret exists.
    pub secret_ttl: Option<u64>,
    pub state: State,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub received: Option<Timestamp>,
    pub recipients: Vec<String>,
    pub share_domain: String,
    pub passphrase_required: bool,
}

/// What a create asks for, already decoded from the wire.
#[derive(Debug, Default)]
pub struct ShareInput {
    /// `None` for `/generate`: the server makes the value.
    pub secret: Option<Vec<u8>>,
    pub passphrase: Option<Passphrase>,
    /// Requested TTL in seconds; `None` means the default. Clamped, never refused.
    pub ttl: Option<u64>,
    pub recipient: Option<String>,
    pub share_domain: Option<String>,
    /// Length of a generated value.
    pub generate_length: Option<usize>,
}

#[derive(Debug)]
pub struct Created {
    pub metadata: MetadataView,
    /// The generated value, for `/generate` only.
    pub value: Option<String>,
}

pub struct Revealed {
    pub value: Vec<u8>,
    pub share_domain: String,
}

impl fmt::Debug for Revealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revealed").field("share_domain", &self.share_domain).finish_non_exhaustive()
    }
}

/// What the recipient's page may know before the reveal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peek {
    pub passphrase_required: bool,
}

pub const GENERATE_DEFAULT_LENGTH: usize = 12;
pub const GENERATE_MIN_LENGTH: usize = 6;
pub const GENERATE_MAX_LENGTH: usize = 128;

#[derive(Debug)]
pub enum SecretError {
    /// Unknown, consumed, expired or burned.
    Unknown,
    /// A wrong passphrase on reveal. Surfaces answer it exactly like [`SecretError::Unknown`];
    /// it is distinct only so failures can be counted and audited.
    WrongPassphrase,
    /// A protected secret asked for without a passphrase: not a guess, so nothing was checked or
    /// counted. Surfaces answer it like [`SecretError::Unknown`].
    PassphraseRequired,
    /// The caller's own allowance of passphrase checks ([`Guesses`]) is spent; nothing was checked.
    GuessesExhausted,
    /// Too many failed passphrase attempts; the secret is locked for a while.
    Locked,
    /// Wrong passphrase on burn.
    IncorrectPassphrase,
    /// Empty `secret` on share.
    Empty,
    /// Over the size limit (the limit in bytes).
    TooLarge(usize),
    PassphraseTooLong,
    /// `recipient` from an anonymous caller.
    RecipientNeedsAccount,
    /// `recipient` that is not an email address.
    InvalidRecipient,
    /// `recipient` on a server that cannot send mail.
    MailUnavailable,
    /// `recipient` from an account whose `mail.per_account_per_hour` is spent; nothing was stored.
    MailLimited,
    /// `share_domain` not on the allow-list (the domain as given).
    UnknownDomain(String),
    /// `/generate` length outside 6–128.
    InvalidLength,
    /// A record kept changing under concurrent writers until the retries were spent
    /// (`CAS_RETRIES`); nothing was changed. Trying again later may succeed.
    Contention,
    /// A newly made id's store key was already taken. With 128 random bits that means the random
    /// source is broken; nothing was stored.
    Collision,
    Store(StoreError),
    Crypto(CryptoError),
    Passphrase(PassphraseError),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Unknown => f.write_str("unknown secret"),
            SecretError::WrongPassphrase => f.write_str("wrong passphrase"),
            SecretError::PassphraseRequired => f.write_str("passphrase required"),
            SecretError::GuessesExhausted => {
                f.write_str("too many failed passphrase checks from this client")
            }
            SecretError::Locked => f.write_str("secret locked after failed passphrase attempts"),
            SecretError::IncorrectPassphrase => f.write_str("incorrect passphrase"),
            SecretError::Empty => f.write_str("empty secret"),
            SecretError::TooLarge(limit) => write!(f, "secret over {limit} bytes"),
            SecretError::PassphraseTooLong => write!(f, "passphrase over {MAX_PASSPHRASE_BYTES} bytes"),
            SecretError::RecipientNeedsAccount => f.write_str("recipient without an account"),
            SecretError::InvalidRecipient => f.write_str("recipient is not an email address"),
            SecretError::MailUnavailable => f.write_str("no mailer configured"),
            SecretError::MailLimited => f.write_str("mail allowance of the account spent"),
            SecretError::UnknownDomain(_) => f.write_str("share domain not allowed"),
            SecretError::InvalidLength => f.write_str("generated length out of range"),
            SecretError::Contention => f.write_str("record changed concurrently too often"),
            SecretError::Collision => f.write_str("key collision"),
            SecretError::Store(err) => err.fmt(f),
            SecretError::Crypto(err) => err.fmt(f),
            SecretError::Passphrase(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for SecretError {}

impl From<StoreError> for SecretError {
    fn from(err: StoreError) -> SecretError {
        SecretError::Store(err)
    }
}

impl From<CryptoError> for SecretError {
    fn from(err: CryptoError) -> SecretError {
        SecretError::Crypto(err)
    }
}

impl From<PassphraseError> for SecretError {
    fn from(err: PassphraseError) -> SecretError {
        match err {
            PassphraseError::TooLong => SecretError::PassphraseTooLong,
            other => SecretError::Passphrase(other),
        }
    }
}

fn contention() -> SecretError {
    SecretError::Contention
}

/// The one-time step every kind of secret shares: delete the record if it is still at the version the
/// caller's plan read (and checked). A version condition holds only for a live entry at the batch's
/// time, so `Applied` means this caller won; the plan has the value already, so nothing is taken back.
fn consume(hash: [u8; 32], version: u64) -> Batch {
    Batch::new().require_version(SECRET, hash, version).delete(SECRET, hash)
}

/// Whether a reveal may check a passphrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guess {
    /// No passphrase came with the request.
    Absent,
    /// One came, but the caller's own allowance of checks is spent.
    Refused,
    /// One came, and the caller's allowance holds a reservation for its check.
    Allowed,
}

/// What a reveal's plan found (see [`plan_reveal`]).
enum Found {
    Unknown,
    /// The stored value does not open under the presented key; nothing was taken.
    Unreadable(CryptoError),
    /// Protected, and the request brought no passphrase; nothing was written.
    PassphraseRequired,
    /// Protected, and the caller may not guess now; nothing was written.
    OverAllowance,
    /// Protected and locked by failed attempts; nothing was written.
    Locked,
    /// Protected by a passphrase not yet verified for this version: the plan's batch reserves one
    /// attempt, and the check may run only if it applied.
    Reserved {
        passphrase_hash: String,
        version: u64,
    },
    /// Opened, and taken by the plan's batch if that applied.
    Opened {
        value: Vec<u8>,
        share_domain: String,
    },
}

/// Decides a v1 reveal from the secret and its metadata as they are: take the secret and mark the
/// metadata received, in one batch conditioned on both versions. It takes nothing it cannot open, nor
/// a protected secret unless `verified` names the version whose passphrase was checked; for a
/// protected one it reserves an attempt instead, when `guess` allows.
///
/// It runs where the store applies writes (redb's writer thread), so it only reads, decodes and opens
/// the value with a key derived beforehand; bcrypt and everything slow stay with the caller.
fn plan_reveal(
    lookup: &mut dyn Lookup,
    secret_hash: [u8; 32],
    opener: &Opener,
    verified: Option<u64>,
    guess: Guess,
    rules: &PassphraseRules,
    now: Timestamp,
) -> Result<(Option<Batch>, Found), StoreError> {
    let Some(entry) = lookup.get(SECRET, &secret_hash)? else {
        return Ok((None, Found::Unknown));
    };
    let SecretRecord::V1(secret) = codec::decode::<SecretRecord>(&entry.value)? else {
        return Ok((None, Found::Unknown));
    };
    if let Some(passphrase_hash) = &secret.passphrase_hash
        && verified != Some(entry.version)
    {
        return Ok(match guess {
            Guess::Absent => (None, Found::PassphraseRequired),
            Guess::Refused => (None, Found::OverAllowance),
            Guess::Allowed => match reserve_attempt(lookup, secret_hash, entry.version, rules, now)? {
                None => (None, Found::Locked),
                Some(batch) => {
                    let reserved =
                        Found::Reserved { passphrase_hash: passphrase_hash.clone(), version: entry.version };
                    (Some(batch), reserved)
                }
            },
        });
    }
    // Every read comes before the decryption: a backend that re-runs the plan once per read it has to
    // fetch (Redis) then decrypts once.
    let metadata = lookup.get(METADATA, &secret.metadata_hash)?;
    let value = match opener.open(&secret.sealed_value) {
        Ok(value) => value,
        Err(err) => return Ok((None, Found::Unreadable(err))),
    };
    let mut batch = consume(secret_hash, entry.version);
    // Only a passphrase can have attempts on record; deleting them gives back the right guess's.
    if secret.passphrase_hash.is_some() {
        batch = batch.delete(ATTEMPTS, secret_hash);
    }
    let mut share_domain = String::new();
    if let Some(entry) = metadata {
        let mut meta: MetadataRecord = codec::decode(&entry.value)?;
        share_domain = meta.share_domain.clone();
        if !meta.state.is_terminal() {
            meta.state = State::Received;
            meta.received = Some(now);
            meta.updated = now;
            batch = batch.require_version(METADATA, secret.metadata_hash, entry.version).put(
                METADATA,
                secret.metadata_hash,
                codec::encode(&meta),
                Some(meta.expires_at),
            );
        }
    }
    Ok((Some(batch), Found::Opened { value, share_domain }))
}

/// `to*****@e*****.com` style: enough to recognise an address, not to harvest it.
pub fn obscure_email(address: &str) -> String {
    let (local, domain) = address.split_once('@').unwrap_or((address, ""));
    let (host, tld) = domain.rsplit_once('.').unwrap_or((domain, ""));
    let keep = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    let tld = if tld.is_empty() { String::new() } else { format!(".{tld}") };
    format!("{}*****@{}*****{}", keep(local, 2), keep(host, 1), tld)
}

fn looks_like_email(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else { return false };
    !local.is_empty()
        && local.len() <= 64
        && domain.len() <= 253
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !address.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        && !domain.contains('@')
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// What both kinds of one-time secret share: reading a record, links, lifetimes.
impl Core {
    fn link_base(&self, share_domain: &str) -> String {
        if share_domain.is_empty() {
            self.settings.public_url.clone()
        } else {
            format!("https://{share_domain}")
        }
    }

    fn clamp_ttl(&self, requested: Option<u64>, account: Option<&Account>) -> u64 {
        let rules = &self.settings.ttl;
        let max = if account.is_some() { rules.max_account } else { rules.max_anonymous };
        requested.unwrap_or(rules.default).clamp(rules.min, max.max(rules.min))
    }

    async fn read_record(&self, secret_hash: [u8; 32]) -> Result<Option<(SecretRecord, u64)>, StoreError> {
        let Some(entry) = self.store.get(SECRET, secret_hash.to_vec(), self.now()).await? else {
            return Ok(None);
        };
        Ok(Some((codec::decode::<SecretRecord>(&entry.value)?, entry.version)))
    }

    async fn read_v1(&self, secret_hash: [u8; 32]) -> Result<Option<(V1Secret, u64)>, SecretError> {
        match self.read_record(secret_hash).await? {
            Some((SecretRecord::V1(secret), version)) => Ok(Some((secret, version))),
            Some((SecretRecord::Client(_), _)) | None => Ok(None),
        }
    }

    /// The client-encrypted secret under `id`, opened, if it carries `payload`.
    async fn read_client(
        &self,
        id: &str,
        payload: Payload,
    ) -> Result<Option<(ClientSecret, u64)>, ClientError> {
        let hash = self.keys.store_key(id);
        let Some(entry) = self.store.get(SECRET, hash.to_vec(), self.now()).await? else {
            return Ok(None);
        };
        let opener = self.keys.opener(Purpose::ClientSecret, id.as_bytes());
        Ok(open_client(&entry.value, &opener, payload)?.map(|secret| (secret, entry.version)))
    }

    /// A client-encrypted secret's record, sealed under its id: the database then holds none of the
    /// bytes the client sent, not even its ciphertext.
    fn seal_client(&self, id: &str, secret: ClientSecret) -> Vec<u8> {
        codec::encode_sealed(&SecretRecord::Client(secret), |plain| {
            self.keys.seal(Purpose::ClientSecret, id.as_bytes(), plain)
        })
    }
}

impl Secrets {
    fn outbox(&self) -> Outbox {
        Outbox { core: self.core.clone() }
    }

    /// The link a recipient opens.
    pub fn secret_link(&self, share_domain: &str, secret_key: &str) -> String {
        format!("{}/secret/{secret_key}", self.link_base(share_domain))
    }

    /// The link the creator keeps.
    pub fn private_link(&self, share_domain: &str, metadata_key: &str) -> String {
        format!("{}/private/{metadata_key}", self.link_base(share_domain))
    }

    /// Stores a secret (or a generated one) and returns the creator's view in state `new`.
    pub async fn share(&self, input: ShareInput, account: Option<&Account>) -> Result<Created, SecretError> {
        let (value, generated) = match input.secret {
            Some(secret) => {
                if secret.is_empty() {
                    return Err(SecretError::Empty);
                }
                (secret, None)
            }
            None => {
                let length = input.generate_length.unwrap_or(GENERATE_DEFAULT_LENGTH);
                if !(GENERATE_MIN_LENGTH..=GENERATE_MAX_LENGTH).contains(&length) {
                    return Err(SecretError::InvalidLength);
                }
                let value = generate_password(length);
                (value.clone().into_bytes(), Some(value))
            }
        };
        let limit = account.and_then(|a| a.max_secret_bytes).unwrap_or(self.settings.limits.max_secret_bytes);
        if value.len() > limit {
            return Err(SecretError::TooLarge(limit));
        }
        let passphrase = input.passphrase.filter(|p| !p.expose().is_empty());
        if passphrase.as_ref().is_some_and(|p| p.expose().len() > MAX_PASSPHRASE_BYTES) {
            return Err(SecretError::PassphraseTooLong);
        }
        let recipient = match input.recipient.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            None => None,
            Some(recipient) => {
                let Some(account) = account else { return Err(SecretError::RecipientNeedsAccount) };
                if !looks_like_email(recipient) || recipient.parse::<lettre::Address>().is_err() {
                    return Err(SecretError::InvalidRecipient);
                }
                // Without a mailer, refusing is better than reporting a delivery that never happens.
                if !self.outbox().mail_on() {
                    return Err(SecretError::MailUnavailable);
                }
                Some((account, recipient.to_owned()))
            }
        };
        let share_domain = match input.share_domain.map(|d| d.trim().to_ascii_lowercase()) {
            Some(d) if d.is_empty() => String::new(),
            Some(d) if self.settings.share_domains.contains(&d) => d,
            Some(d) => return Err(SecretError::UnknownDomain(d)),
            None => String::new(),
        };
        let passphrase_hash = match &passphrase {
            Some(p) => Some(self.hasher.hash(p).await?),
            None => None,
        };

        let now = self.now();
        // Taken last, after every refusal that has no cost, and given back if nothing is stored.
        let quota = self.settings.mail.per_account_per_hour;
        if let Some((account, _)) = &recipient
            && !self.mail_quota.reserve(&account.name, quota, now)
        {
            return Err(SecretError::MailLimited);
        }
        let ttl = self.clamp_ttl(input.ttl, account);
        // One creation sequence: the secret and its metadata are one group (see `MasterKey::new_key_pair`).
        let (secret_key, metadata_key) = self.keys.new_key_pair();
        let secret_hash = self.keys.store_key(&secret_key);
        let metadata_hash = self.keys.store_key(&metadata_key);
        let secret_expires_at = now + ttl;
        let metadata_expires_at = now + 2 * ttl;
        let custid = account.map_or_else(|| "anon".to_owned(), |a| a.name.clone());

        let secret = SecretRecord::V1(V1Secret {
            sealed_value: self.keys.seal(Purpose::SecretValue, secret_key.as_bytes(), &value),
            passphrase_hash,
            metadata_hash,
            expires_at: secret_expires_at,
        });
        let metadata = MetadataRecord {
            custid: custid.clone(),
            sealed_secret_key: self.keys.seal(
                Purpose::MetadataSecretKey,
                metadata_key.as_bytes(),
                secret_key.as_bytes(),
            ),
            secret_hash,
            ttl,
            created: now,
            updated: now,
            // The creator of a generated value has seen it already.
            state: if generated.is_some() { State::Viewed } else { State::New },
            received: None,
            // Obscured before it is stored: the metadata is not sealed, and the address is the
            // recipient's; the whole address lives only in the sealed outbox entry.
            recipients: recipient.iter().map(|(_, to)| obscure_email(to)).collect(),
            share_domain: share_domain.clone(),
            passphrase_required: passphrase.is_some(),
            secret_expires_at,
            expires_at: metadata_expires_at,
        };
        let mut batch = Batch::new()
            .require_absent(SECRET, secret_hash)
            .require_absent(METADATA, metadata_hash)
            .put(SECRET, secret_hash, codec::encode(&secret), Some(secret_expires_at))
            .put(METADATA, metadata_hash, codec::encode(&metadata), Some(metadata_expires_at));
        // The account's listing row is in the account's group, not the secret's: where a batch must
        // keep to one group it follows the create in a batch of its own, so a crash between the two
        // drops a listing row, never a secret.
        let mut recent_row = None;
        if let Some(account) = account {
            let mut index_key = account_index_key(&account.name).to_vec();
            index_key.extend_from_slice(&(u64::MAX - now).to_be_bytes());
            index_key.extend_from_slice(&metadata_hash);
            let sealed =
                self.keys.seal(Purpose::RecentMetadataKey, account.name.as_bytes(), metadata_key.as_bytes());
            if self.store.capabilities().one_group {
                recent_row = Some(Batch::new().require_absent(RECENT, index_key.clone()).put(
                    RECENT,
                    index_key,
                    sealed,
                    Some(metadata_expires_at),
                ));
            } else {
                batch = batch.put(RECENT, index_key, sealed, Some(metadata_expires_at));
            }
        }
        if let Some((account, to)) = &recipient {
            let mail = MailDelivery {
                to: to.to_owned(),
                sender: account.name.clone(),
                link: self.secret_link(&share_domain, &secret_key),
                secret_key: secret_key.clone(),
                expires_at: secret_expires_at,
            };
            batch = self.outbox().with_mail(batch, mail, &secret_hash);
        }
        let outcome = self.store.apply(batch, now).await;
        if let (Some((account, _)), false) = (&recipient, matches!(outcome, Ok(Outcome::Applied(_)))) {
            self.mail_quota.release(&account.name);
        }
        match outcome? {
            Outcome::Applied(_) => {}
            // Keys with 128 random bits do not collide; a conflict here means the random source is broken.
            Outcome::Conflict(_) => return Err(SecretError::Collision),
        }
        if let Some(row) = recent_row
            && let Err(err) = self.store.apply(row, now).await
        {
            // The secret is stored and its link is the caller's: failing the share now would only
            // make it share again. The listing misses this row, as after a crash here. (A conflict
            // means the row is there already.)
            tracing::warn!(error = %err, "an account's listing row for a new secret was not written");
        }
        let view = MetadataView {
            custid,
            metadata_key,
            secret_key: Some(secret_key),
            ttl,
            metadata_ttl: 2 * ttl,
            secret_ttl: Some(ttl),
            state: State::New,
            created: now,
            updated: now,
            received: None,
            recipients: metadata.recipients,
            share_domain,
            passphrase_required: passphrase.is_some(),
        };
        Ok(Created { metadata: view, value: generated })
    }

    /// Whether a secret exists and needs a passphrase; never consumes.
    pub async fn peek(&self, secret_key: &str) -> Result<Option<Peek>, SecretError> {
        let found = self.read_v1(self.keys.store_key(secret_key)).await?;
        Ok(found.map(|(s, _)| Peek { passphrase_required: s.passphrase_hash.is_some() }))
    }

    /// Reveals a secret once: returns its value and deletes it in one step. An unprotected secret
    /// costs one planned trip to the store. A protected one costs a reservation on `guesses` and on the
    /// secret's attempts before bcrypt runs; both are given back unless the check ran and failed.
    pub async fn reveal(
        &self,
        secret_key: &str,
        passphrase: Option<&Passphrase>,
        guesses: &dyn Guesses,
    ) -> Result<Revealed, SecretError> {
        // Reserved before the plan, so the plan can reserve the secret's attempt in the same step; an
        // unprotected secret releases it again at once.
        let guess = match passphrase {
            None => Guess::Absent,
            Some(_) if guesses.reserve() => Guess::Allowed,
            Some(_) => Guess::Refused,
        };
        let result = self.reveal_as(secret_key, passphrase, guess).await;
        if guess == Guess::Allowed && !matches!(result, Err(SecretError::WrongPassphrase)) {
            guesses.release();
        }
        result
    }

    async fn reveal_as(
        &self,
        secret_key: &str,
        passphrase: Option<&Passphrase>,
        guess: Guess,
    ) -> Result<Revealed, SecretError> {
        let secret_hash = self.keys.store_key(secret_key);
        let opener = Arc::new(self.keys.opener(Purpose::SecretValue, secret_key.as_bytes()));
        // The version whose passphrase was verified, so a retry after a metadata race skips bcrypt.
        let mut verified = None;
        for _ in 0..CAS_RETRIES {
            // bcrypt may have taken a while: the take is judged at the time it is committed.
            let now = self.now();
            let opener = Arc::clone(&opener);
            let rules = self.settings.passphrase.clone();
            let (found, outcome) = self
                .store
                .apply_planned(now, move |lookup| {
                    plan_reveal(lookup, secret_hash, &opener, verified, guess, &rules, now)
                })
                .await?;
            match found {
                Found::Unknown => return Err(SecretError::Unknown),
                Found::Unreadable(err) => return Err(err.into()),
                Found::PassphraseRequired => return Err(SecretError::PassphraseRequired),
                Found::OverAllowance => return Err(SecretError::GuessesExhausted),
                Found::Locked => return Err(SecretError::Locked),
                Found::Reserved { passphrase_hash, version } => {
                    // Not reserved (the attempts moved under the plan): read again and decide.
                    let Some(Outcome::Applied(_)) = outcome else { continue };
                    let Some(passphrase) = passphrase else { return Err(SecretError::PassphraseRequired) };
                    if !self.hasher.verify(passphrase, &passphrase_hash).await? {
                        return Err(SecretError::WrongPassphrase);
                    }
                    verified = Some(version);
                }
                Found::Opened { value, share_domain } => match outcome {
                    Some(Outcome::Applied(_)) => {
                        return Ok(Revealed {
                            value,
                            share_domain: origin(&self.link_base(&share_domain)).to_owned(),
                        });
                    }
                    // Another reveal won, or the metadata moved (new → viewed), between a read and a
                    // write the backend could not run as one step: read again and decide.
                    Some(Outcome::Conflict(_)) | None => continue,
                },
            }
        }
        Err(contention())
    }

    /// The creator's view. With `mark_viewed`, a first read moves `new` to `viewed` (the reply still
    /// shows `new`); a read that finds the secret gone settles the state as expired or orphaned.
    pub async fn metadata(&self, metadata_key: &str, mark_viewed: bool) -> Result<MetadataView, SecretError> {
        let metadata_hash = self.keys.store_key(metadata_key);
        for _ in 0..CAS_RETRIES {
            let now = self.now();
            let Some(entry) = self.store.get(METADATA, metadata_hash.to_vec(), now).await? else {
                return Err(SecretError::Unknown);
            };
            let mut meta: MetadataRecord = codec::decode(&entry.value)?;
            let shown_state = meta.state;
            let mut secret_exists = false;
            let mut changed = false;
            if !meta.state.is_terminal() {
                secret_exists = self.store.get(SECRET, meta.secret_hash.to_vec(), now).await?.is_some();
                if !secret_exists {
                    meta.state = if now >= meta.secret_expires_at { State::Expired } else { State::Orphaned };
                    meta.updated = now;
                    changed = true;
                } else if meta.state == State::New && mark_viewed {
                    meta.state = State::Viewed;
                    meta.updated = now;
                    changed = true;
                }
            }
            if changed {
                let batch = Batch::new().require_version(METADATA, metadata_hash, entry.version).put(
                    METADATA,
                    metadata_hash,
                    codec::encode(&meta),
                    Some(meta.expires_at),
                );
                if let Outcome::Conflict(_) = self.store.apply(batch, now).await? {
                    continue;
                }
            }
            let display_state = if secret_exists { shown_state } else { meta.state };
            return self.view(meta, metadata_key, display_state, secret_exists, now);
        }
        Err(contention())
    }

    fn view(
        &self,
        meta: MetadataRecord,
        metadata_key: &str,
        state: State,
        secret_exists: bool,
        now: Timestamp,
    ) -> Result<MetadataView, SecretError> {
        let secret_key = if secret_exists {
            let key = self.keys.open(
                Purpose::MetadataSecretKey,
                metadata_key.as_bytes(),
                &meta.sealed_secret_key,
            )?;
            Some(String::from_utf8(key).map_err(|_| SecretError::Crypto(CryptoError::Unseal))?)
        } else {
            None
        };
        Ok(MetadataView {
            custid: meta.custid,
            metadata_key: metadata_key.to_owned(),
            secret_key,
            ttl: meta.ttl,
            metadata_ttl: meta.expires_at.saturating_sub(now),
            secret_ttl: secret_exists.then(|| meta.secret_expires_at.saturating_sub(now)),
            state,
            created: meta.created,
            updated: meta.updated,
            received: meta.received,
            recipients: meta.recipients,
            share_domain: meta.share_domain,
            passphrase_required: meta.passphrase_required,
        })
    }

    /// Destroys a secret unread. Returns the burned view and the secret key (for its short form).
    ///
    /// A protected secret needs its passphrase, checked like a reveal's (an attempt reserved on the
    /// secret and on `guesses` first) — except while failed guesses lock it: then the metadata key
    /// alone is enough, so a stranger with the link cannot keep a secret alive against its creator.
    pub async fn burn(
        &self,
        metadata_key: &str,
        passphrase: Option<&Passphrase>,
        guesses: &dyn Guesses,
    ) -> Result<(MetadataView, String), SecretError> {
        let mut reserved = false;
        let result = self.burn_as(metadata_key, passphrase, guesses, &mut reserved).await;
        if reserved && !matches!(result, Err(SecretError::IncorrectPassphrase)) {
            guesses.release();
        }
        result
    }

    async fn burn_as(
        &self,
        metadata_key: &str,
        passphrase: Option<&Passphrase>,
        guesses: &dyn Guesses,
        reserved: &mut bool,
    ) -> Result<(MetadataView, String), SecretError> {
        let metadata_hash = self.keys.store_key(metadata_key);
        let mut verified_version = None;
        for _ in 0..CAS_RETRIES {
            let now = self.now();
            let Some(meta_entry) = self.store.get(METADATA, metadata_hash.to_vec(), now).await? else {
                return Err(SecretError::Unknown);
            };
            let mut meta: MetadataRecord = codec::decode(&meta_entry.value)?;
            if meta.state.is_terminal() {
                return Err(SecretError::Unknown);
            }
            let Some((secret, version)) = self.read_v1(meta.secret_hash).await? else {
                // Let a metadata read settle expired/orphaned; the burn itself finds nothing.
                self.metadata(metadata_key, false).await?;
                return Err(SecretError::Unknown);
            };
            // The attempts record whose lock lets this burn through without a passphrase; the batch
            // requires it unchanged, so a lock that ended meanwhile asks for the passphrase again.
            let mut lock = None;
            if let Some(hash) = &secret.passphrase_hash
                && verified_version != Some(version)
            {
                let rules = self.settings.passphrase.clone();
                if let Some(entry) = self.store.get(ATTEMPTS, meta.secret_hash.to_vec(), now).await? {
                    let attempts =
                        Attempts::current(Some(codec::decode(&entry.value)?), rules.lock_seconds, now);
                    if attempts.locked(rules.max_failures, now) {
                        lock = Some(entry.version);
                    }
                }
                if lock.is_none() {
                    // Asking without a passphrase is not a guess: nothing to check or count.
                    let Some(passphrase) = passphrase else { return Err(SecretError::IncorrectPassphrase) };
                    if !*reserved {
                        if !guesses.reserve() {
                            return Err(SecretError::GuessesExhausted);
                        }
                        *reserved = true;
                    }
                    let secret_hash = meta.secret_hash;
                    let (_, outcome) = self
                        .store
                        .apply_planned(now, move |lookup| {
                            Ok((reserve_attempt(lookup, secret_hash, version, &rules, now)?, ()))
                        })
                        .await?;
                    // Locked or raced meanwhile: read again (a lock now lets the burn through).
                    let Some(Outcome::Applied(_)) = outcome else { continue };
                    if !self.hasher.verify(passphrase, hash).await? {
                        return Err(SecretError::IncorrectPassphrase);
                    }
                    verified_version = Some(version);
                }
            }
            let secret_key = String::from_utf8(self.keys.open(
                Purpose::MetadataSecretKey,
                metadata_key.as_bytes(),
                &meta.sealed_secret_key,
            )?)
            .map_err(|_| SecretError::Crypto(CryptoError::Unseal))?;
            meta.state = State::Burned;
            meta.updated = now;
            let mut batch = Batch::new().require_version(SECRET, meta.secret_hash, version).require_version(
                METADATA,
                metadata_hash,
                meta_entry.version,
            );
            if let Some(lock_version) = lock {
                batch = batch.require_version(ATTEMPTS, meta.secret_hash, lock_version);
            }
            let batch = batch.delete(SECRET, meta.secret_hash).delete(ATTEMPTS, meta.secret_hash).put(
                METADATA,
                metadata_hash,
                codec::encode(&meta),
                Some(meta.expires_at),
            );
            match self.store.apply(batch, now).await? {
                Outcome::Applied(_) => {
                    let view = self.view(meta, metadata_key, State::Burned, false, now)?;
                    return Ok((view, secret_key));
                }
                Outcome::Conflict(_) => continue,
            }
        }
        Err(contention())
    }

    /// The account's metadata, newest first, without secret keys.
    pub async fn recent(&self, account: &Account) -> Result<Vec<MetadataView>, SecretError> {
        const MAX_RECENT: usize = 500;
        let now = self.now();
        let prefix = account_index_key(&account.name).to_vec();
        let rows = self.store.scan_prefix(RECENT, prefix, now, MAX_RECENT).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (_, entry) in rows {
            let metadata_key =
                self.keys.open(Purpose::RecentMetadataKey, account.name.as_bytes(), &entry.value)?;
            let metadata_key =
                String::from_utf8(metadata_key).map_err(|_| SecretError::Crypto(CryptoError::Unseal))?;
            match self.metadata(&metadata_key, false).await {
                Ok(view) => out.push(MetadataView { secret_key: None, ..view }),
                // Gone since the scan (its metadata expired): skip it.
                Err(SecretError::Unknown) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_obscured() {
        assert_eq!(obscure_email("tom@example.com"), "to*****@e*****.com");
        assert!(looks_like_email("tom@example.com"));
        assert!(!looks_like_email("tom@localhost"));
        assert!(!looks_like_email("not an email"));
    }

    #[test]
    fn origin_drops_the_path() {
        assert_eq!(origin("https://x.example:8443/base"), "https://x.example:8443");
        assert_eq!(origin("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
}

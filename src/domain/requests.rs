//! Secret requests: a requester registers a public key, a responder submits a message encrypted to it,
//! and the requester collects it once.
//!
//! States on the server: `pending` → `fulfilled`; collected, revoked and expired requests are gone.
//! A request lives under the store key of its id in [`REQUEST`], with the management token
//! stored only as a SHA-256 digest. Invariants:
//! - Fulfilment is a compare-and-set on the pending record's version: of concurrent submissions
//!   exactly one wins; the others find it fulfilled.
//! - Collection takes the record in one step: of concurrent collections exactly one gets the message.
//! - Token routes check existence, then the token, then the state, so a caller without the token
//!   learns nothing about the state.
//! - A record is sealed as a whole under a key derived from the master key and the request id, so the
//!   database holds none of the public key, label or submitted ciphertext a client sent. Records
//!   written in clear before that still decode.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{CAS_RETRIES, Outbox, Requests};
use crate::crypto::openpgp::{self, KeyError, MessageError, PublicKeyInfo};
use crate::crypto::{Purpose, digests_equal, new_request_token, sha256};
use crate::store::{Batch, Keyspace, Outcome, StoreError, Timestamp, codec};

/// Longest label, in bytes.
pub const MAX_LABEL_BYTES: usize = 100;

/// Secret requests, under the store key of the request id.
pub const REQUEST: Keyspace = Keyspace::point(6, "request");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestState {
    Pending,
    Fulfilled,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Fulfilled => "fulfilled",
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct RequestRecord {
    public_key: String,
    key: KeyFacts,
    label: Option<String>,
    token_hash: [u8; 32],
    created: Timestamp,
    expires_at: Timestamp,
    state: RequestState,
    /// The responder's armored message, present once fulfilled.
    message: Option<String>,
    account: Option<String>,
}

impl fmt::Debug for RequestRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestRecord")
            .field("state", &self.state)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What the server learned from validating the key, kept so a submission is checked without parsing
/// the key again.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyFacts {
    fingerprint: String,
    encryption_keys: Vec<([u8; 8], Vec<u8>)>,
}

impl KeyFacts {
    fn info(&self) -> PublicKeyInfo {
        PublicKeyInfo {
            fingerprint: self.fingerprint.clone(),
            expires_at: None,
            encryption_keys: self.encryption_keys.clone(),
        }
    }
}

/// What `POST /request` hands back, once.
#[derive(Debug)]
pub struct CreatedRequest {
    pub id: String,
    pub token: String,
    pub expires_at: Timestamp,
    pub fingerprint: String,
    pub link: String,
}

/// What anyone with the id may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    pub public_key: String,
    pub label: Option<String>,
    pub state: RequestState,
    pub expires_at: Timestamp,
    pub fingerprint: String,
    /// Whether the caller presented the request's management token: the requester polling its own
    /// request rather than a responder opening the link. The reply is the same either way.
    pub by_requester: bool,
}

#[derive(Debug)]
pub enum RequestError {
    /// The feature is turned off.
    Disabled,
    /// Not one of the allowed expirations.
    InvalidExpiration,
    LabelTooLong,
    /// The key failed validation; the reason is safe to show.
    InvalidKey(String),
    /// Not an armored, encrypted OpenPGP message.
    NotEncrypted,
    /// Over the size limit.
    TooLong,
    /// Not encrypted to the request key's encryption subkey (including anonymous recipients).
    WrongRecipient,
    /// Unknown, expired, revoked or collected.
    NotFound,
    /// Missing or wrong management token.
    BadToken,
    /// Submission to a request that already has a secret.
    AlreadyFulfilled,
    /// Collection before a secret was provided.
    NotYetFulfilled,
    /// A record kept changing under concurrent writers until the retries were spent
    /// (`CAS_RETRIES`); nothing was changed. Trying again later may succeed.
    Contention,
    /// A newly made id's store key was already taken. With 128 random bits that means the random
    /// source is broken; nothing was stored.
    Collision,
    Store(StoreError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Disabled => f.write_str("secret requests are disabled"),
            RequestError::InvalidExpiration => f.write_str("expiration not allowed"),
            RequestError::LabelTooLong => f.write_str("label too long"),
            RequestError::InvalidKey(reason) => write!(f, "invalid public key: {reason}"),
            RequestError::NotEncrypted => f.write_str("not an encrypted OpenPGP message"),
            RequestError::TooLong => f.write_str("message over the size limit"),
            RequestError::WrongRecipient => f.write_str("message not encrypted to the request key"),
            RequestError::NotFound => f.write_str("request not found"),
            RequestError::BadToken => f.write_str("invalid request token"),
            RequestError::AlreadyFulfilled => f.write_str("already fulfilled"),
            RequestError::NotYetFulfilled => f.write_str("not fulfilled yet"),
            RequestError::Contention => f.write_str("request changed concurrently too often"),
            RequestError::Collision => f.write_str("id collision"),
            RequestError::Store(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for RequestError {}

impl From<StoreError> for RequestError {
    fn from(err: StoreError) -> RequestError {
        RequestError::Store(err)
    }
}

fn contention() -> RequestError {
    RequestError::Contention
}

impl Requests {
    /// Where the request's webhook events are queued, in the batch of the change that causes them.
    fn outbox(&self) -> Outbox {
        Outbox { core: self.core.clone() }
    }

    /// The stored form of `record`, sealed under the request id.
    fn seal_request(&self, id: &str, record: &RequestRecord) -> Vec<u8> {
        codec::encode_sealed(record, |plain| self.keys.seal(Purpose::Request, id.as_bytes(), plain))
    }

    /// Writes `record` over the version the caller read; a concurrent change makes it a conflict.
    fn replace(&self, id: &str, version: u64, record: &RequestRecord) -> Batch {
        let hash = self.keys.store_key(id);
        Batch::new().require_version(REQUEST, hash, version).put(
            REQUEST,
            hash,
            self.seal_request(id, record),
            Some(record.expires_at),
        )
    }

    /// Validates a public key for a request that lives until `expires_at`.
    fn checked_key(&self, armored: &str, expires_at: Timestamp) -> Result<KeyFacts, RequestError> {
        let info = openpgp::validate_public_key(armored, self.now())
            .map_err(|e: KeyError| RequestError::InvalidKey(e.to_string()))?;
        if info.expires_at.is_some_and(|key_expiry| key_expiry < expires_at) {
            return Err(RequestError::InvalidKey("the key expires before the request would".into()));
        }
        Ok(KeyFacts { fingerprint: info.fingerprint, encryption_keys: info.encryption_keys })
    }

    /// The link a requester hands out: the key's fingerprint suffix rides in the fragment, which
    /// browsers never send, so the responder's page can detect a swapped key.
    pub fn link(&self, id: &str, fingerprint: &str) -> String {
        let fp16 = &fingerprint[fingerprint.len().saturating_sub(16)..];
        format!("{}/#/r/{id}/{fp16}", self.settings.public_url)
    }

    pub async fn create(
        &self,
        public_key: &str,
        label: Option<String>,
        expiration: u64,
        account: Option<String>,
    ) -> Result<CreatedRequest, RequestError> {
        if !self.settings.secret_requests {
            return Err(RequestError::Disabled);
        }
        if !self.settings.expirations.contains(&expiration) {
            return Err(RequestError::InvalidExpiration);
        }
        let label = label.filter(|l| !l.is_empty());
        if label.as_ref().is_some_and(|l| l.len() > MAX_LABEL_BYTES) {
            return Err(RequestError::LabelTooLong);
        }
        let now = self.now();
        let expires_at = now + expiration;
        let key = self.checked_key(public_key, expires_at)?;
        let id = self.keys.new_id();
        let token = new_request_token();
        let hash = self.keys.store_key(&id);
        let record = RequestRecord {
            public_key: public_key.to_owned(),
            key: key.clone(),
            label,
            token_hash: sha256(token.as_bytes()),
            created: now,
            expires_at,
            state: RequestState::Pending,
            message: None,
            account,
        };
        let batch = Batch::new().require_absent(REQUEST, hash).put(
            REQUEST,
            hash,
            self.seal_request(&id, &record),
            Some(expires_at),
        );
        let batch = self.outbox().with_expiry(batch, &id, record.label.as_deref(), expires_at);
        match self.store.apply(batch, now).await? {
            Outcome::Applied(_) => {}
            Outcome::Conflict(_) => return Err(RequestError::Collision),
        }
        let link = self.link(&id, &key.fingerprint);
        Ok(CreatedRequest { id, token, expires_at, fingerprint: key.fingerprint, link })
    }

    async fn read(&self, id: &str) -> Result<(RequestRecord, u64), RequestError> {
        let entry = self.store.get(REQUEST, self.keys.store_key(id).to_vec(), self.now()).await?;
        let entry = entry.ok_or(RequestError::NotFound)?;
        let opener = self.keys.opener(Purpose::Request, id.as_bytes());
        let open = |sealed: &[u8]| opener.open(sealed).map_err(|err| StoreError::Corrupt(err.to_string()));
        Ok((codec::decode_sealed(&entry.value, open)?, entry.version))
    }

    /// Reads a request and checks its token, in that order.
    async fn authorized(&self, id: &str, token: Option<&str>) -> Result<(RequestRecord, u64), RequestError> {
        let (record, version) = self.read(id).await?;
        let presented = sha256(token.unwrap_or_default().as_bytes());
        if token.is_none() || !digests_equal(&presented, &record.token_hash) {
            return Err(RequestError::BadToken);
        }
        Ok((record, version))
    }

    /// Checks a token route's preconditions in contract order — exists (404), token (401), pending
    /// (409) — without changing anything.
    pub async fn check_pending(&self, id: &str, token: Option<&str>) -> Result<(), RequestError> {
        let (record, _) = self.authorized(id, token).await?;
        match record.state {
            RequestState::Pending => Ok(()),
            RequestState::Fulfilled => Err(RequestError::AlreadyFulfilled),
        }
    }

    /// A request as its responder sees it. A `token`, when presented, is checked only to tell who is
    /// looking; a wrong one is not an error, since the view needs none.
    pub async fn view(&self, id: &str, token: Option<&str>) -> Result<RequestView, RequestError> {
        let (r, _) = self.read(id).await?;
        let by_requester = token.is_some_and(|token| digests_equal(&sha256(token.as_bytes()), &r.token_hash));
        Ok(RequestView {
            by_requester,
            public_key: r.public_key,
            label: r.label,
            state: r.state,
            expires_at: r.expires_at,
            fingerprint: r.key.fingerprint,
        })
    }

    /// The responder's side: store a message encrypted to the request's key, once.
    pub async fn submit(&self, id: &str, message: &str) -> Result<(), RequestError> {
        // Parsed once, on the first pass, after the request is known to exist (404 before 400).
        let mut info = None;
        for _ in 0..CAS_RETRIES {
            let (mut record, version) = self.read(id).await?;
            let info = match &info {
                Some(info) => info,
                None => info.insert(
                    match openpgp::inspect_message(message, self.settings.limits.max_message_bytes) {
                        Ok(info) => info,
                        Err(MessageError::TooLarge) => return Err(RequestError::TooLong),
                        Err(MessageError::NotEncrypted) => return Err(RequestError::NotEncrypted),
                    },
                ),
            };
            // An anonymous recipient could be anyone; the server cannot vouch for it, so it is refused.
            // Checked against the current key on every pass: it may have been rotated meanwhile.
            if info.anonymous_recipients > 0 || !info.is_encrypted_to(&record.key.info()) {
                return Err(RequestError::WrongRecipient);
            }
            if record.state != RequestState::Pending {
                return Err(RequestError::AlreadyFulfilled);
            }
            record.state = RequestState::Fulfilled;
            record.message = Some(message.to_owned());
            let batch = self.replace(id, version, &record);
            let batch = self.outbox().with_webhook(batch, "request.fulfilled", id, record.label.as_deref());
            match self.store.apply(batch, self.now()).await? {
                Outcome::Applied(_) => return Ok(()),
                Outcome::Conflict(_) => continue,
            }
        }
        Err(contention())
    }

    /// The requester collects the message; the request is deleted in the same step.
    pub async fn collect(&self, id: &str, token: Option<&str>) -> Result<String, RequestError> {
        let (record, version) = self.authorized(id, token).await?;
        let Some(message) = record.message.filter(|_| record.state == RequestState::Fulfilled) else {
            return Err(RequestError::NotYetFulfilled);
        };
        let hash = self.keys.store_key(id);
        let batch = Batch::new().require_version(REQUEST, hash, version).take(REQUEST, hash);
        let batch = self.outbox().with_webhook(batch, "request.collected", id, record.label.as_deref());
        let batch = self.outbox().without_expiry(batch, id, record.expires_at);
        match self.store.apply(batch, self.now()).await? {
            Outcome::Applied(taken) if matches!(taken.first(), Some(Some(_))) => Ok(message),
            // Another collection won; for this caller the request is gone.
            _ => Err(RequestError::NotFound),
        }
    }

    /// Revokes a request in any state; a provided secret goes with it.
    pub async fn revoke(&self, id: &str, token: Option<&str>) -> Result<(), RequestError> {
        let (record, version) = self.authorized(id, token).await?;
        let hash = self.keys.store_key(id);
        let batch = Batch::new().require_version(REQUEST, hash, version).delete(REQUEST, hash);
        let batch = self.outbox().with_webhook(batch, "request.revoked", id, record.label.as_deref());
        let batch = self.outbox().without_expiry(batch, id, record.expires_at);
        match self.store.apply(batch, self.now()).await? {
            Outcome::Applied(_) => Ok(()),
            Outcome::Conflict(_) => Err(RequestError::NotFound),
        }
    }

    /// Swaps the public key of a pending request; returns the new fingerprint.
    pub async fn rotate_key(
        &self,
        id: &str,
        token: Option<&str>,
        public_key: &str,
    ) -> Result<String, RequestError> {
        for _ in 0..CAS_RETRIES {
            let (mut record, version) = self.authorized(id, token).await?;
            if record.state != RequestState::Pending {
                return Err(RequestError::AlreadyFulfilled);
            }
            record.key = self.checked_key(public_key, record.expires_at)?;
            record.public_key = public_key.to_owned();
            match self.store.apply(self.replace(id, version, &record), self.now()).await? {
                Outcome::Applied(_) => return Ok(record.key.fingerprint),
                Outcome::Conflict(_) => continue,
            }
        }
        Err(contention())
    }
}

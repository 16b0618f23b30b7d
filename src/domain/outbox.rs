//! The outbox: deliveries to the outside world (webhooks, mails to v1 recipients) that a change
//! causes, written in the same conditional batch as the change, so a crash after the acknowledgement
//! never loses one and a change that did not commit never sends one.
//!
//! This module owns the [`OUTBOX`] records and their lifecycle: queued → sent (deleted), retried
//! with backoff, or given up (deleted). The sender side task (`delivery`) drives it. Each entry is
//! sealed under a key derived from the master key and its own store key, so the database file holds
//! no request id, label, link or address in clear. It also keeps each account's mail allowance
//! ([`MailQuota`]), since the entries it guards are written here.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::Outbox;
use crate::crypto::Purpose;
use crate::store::{Batch, Group, Keyspace, Outcome, StoreError, Timestamp, codec};

/// Queued deliveries. Those due at once sit under [`NOW`] and their creation time (so a scan finds the
/// oldest first); scheduled ones under [`LATER`] and their due time, so a bounded scan always reaches
/// the earliest, however many wait. Both then hold the group of the record the entry belongs to (the
/// first four bytes of its store key: a secret's, a request's), so an entry is written in one group
/// with its record, and the entry's own store key.
pub const OUTBOX: Keyspace = Keyspace::point(7, "outbox").grouped(Group::Bytes { start: 9, len: 4 });
const NOW: u8 = 0;
const LATER: u8 = 1;

/// An entry outlives its give-up time by this much before the store drops it unsent, so a sender that
/// was down for a while still sees it and records the failure.
const BACKSTOP_SECONDS: u64 = 7 * 86_400;

/// What is to be delivered.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// A secret-request event for `webhooks.url`.
    Webhook { event: String, request_id: String, label: Option<String>, occurred_at: Timestamp },
    /// A v1 secret's link for its recipient. Dropped unsent once the secret is gone.
    Mail(MailDelivery),
}

/// What a recipient's mail says; built into a message only when it is sent.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailDelivery {
    /// The recipient's address, as validated on the share.
    pub to: String,
    /// The account that shared the secret.
    pub sender: String,
    /// The link the recipient opens (a bearer secret).
    pub link: String,
    /// The secret's key: the sender checks the secret still exists before mailing its link.
    pub secret_key: String,
    pub expires_at: Timestamp,
}

impl fmt::Debug for Delivery {
    // Request ids are bearer ids and labels are client-chosen: neither goes to logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delivery::Webhook { event, occurred_at, .. } => f
                .debug_struct("Webhook")
                .field("event", event)
                .field("occurred_at", occurred_at)
                .finish_non_exhaustive(),
            Delivery::Mail(mail) => f.debug_tuple("Mail").field(mail).finish(),
        }
    }
}

impl fmt::Debug for MailDelivery {
    // The address and the link are the recipient's secrets; neither goes to logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailDelivery").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// Mails per account and hour, in memory (one process's count, like every rate limit here): a share
/// that would pass `mail.per_account_per_hour` is refused before anything is stored. The table holds
/// at most one window per account, and accounts are made by the operator.
#[derive(Debug, Default)]
pub struct MailQuota {
    windows: Mutex<HashMap<String, (Timestamp, u32)>>,
}

/// The span of one account's mail window.
const MAIL_WINDOW_SECONDS: u64 = 3600;

impl MailQuota {
    /// Takes one mail from `account`'s allowance of `limit` per hour; `false` when none is left.
    pub fn reserve(&self, account: &str, limit: u32, now: Timestamp) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = windows.entry(account.to_owned()).or_insert((now, 0));
        if now >= window.0.saturating_add(MAIL_WINDOW_SECONDS) {
            *window = (now, 0);
        }
        if window.1 >= limit {
            return false;
        }
        window.1 += 1;
        true
    }

    /// Gives back a reservation whose share was not stored.
    pub fn release(&self, account: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(window) = windows.get_mut(account) {
            window.1 = window.1.saturating_sub(1);
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OutboxRecord {
    delivery: Delivery,
    created: Timestamp,
    attempts: u32,
    next_attempt: Timestamp,
}

/// A queued entry as the sender sees it.
#[derive(Debug, Clone)]
pub struct Queued {
    key: Vec<u8>,
    version: u64,
    pub delivery: Delivery,
    pub created: Timestamp,
    pub attempts: u32,
}

/// The entries due now (at most the scan's limit) and the earliest later attempt among those seen.
#[derive(Debug, Default)]
pub struct Due {
    pub due: Vec<Queued>,
    pub next: Option<Timestamp>,
}

impl Outbox {
    /// Whether webhooks are configured; without them no webhook entry is written.
    pub fn webhooks_on(&self) -> bool {
        self.settings.webhooks.url.is_some()
    }

    /// Whether mail is configured; without it a share with a recipient is refused.
    pub fn mail_on(&self) -> bool {
        self.settings.mail.url.is_some()
    }

    /// `batch` with `mail` queued for sending now, in the group of the secret at `secret_hash`.
    pub(in crate::domain) fn with_mail(&self, batch: Batch, mail: MailDelivery, secret_hash: &[u8]) -> Batch {
        self.queue_now(batch, Delivery::Mail(mail), secret_hash)
    }

    /// `batch` with `delivery` queued for now, in the group of the record whose store key is `owner`.
    fn queue_now(&self, batch: Batch, delivery: Delivery, owner: &[u8]) -> Batch {
        let now = self.now();
        let mut key = vec![NOW];
        key.extend_from_slice(&now.to_be_bytes());
        key.extend_from_slice(&owner[..4.min(owner.len())]);
        key.extend_from_slice(&self.keys.store_key(&self.keys.new_id()));
        let record = OutboxRecord { delivery, created: now, attempts: 0, next_attempt: now };
        let value = self.seal(&key, &record);
        batch.put(OUTBOX, key, value, Some(self.backstop(now)))
    }

    /// `batch` with a webhook entry for `event` on request `id` added, when webhooks are on.
    pub(in crate::domain) fn with_webhook(
        &self,
        batch: Batch,
        event: &str,
        id: &str,
        label: Option<&str>,
    ) -> Batch {
        if !self.webhooks_on() {
            return batch;
        }
        let delivery = Delivery::Webhook {
            event: event.to_owned(),
            request_id: id.to_owned(),
            label: label.map(str::to_owned),
            occurred_at: self.now(),
        };
        self.queue_now(batch, delivery, &self.keys.store_key(id))
    }

    /// The key of request `id`'s scheduled `request.expired` entry: derived from the request's store
    /// key (whose first four bytes are its group), so collection and revocation can withdraw it
    /// without a lookup.
    fn expiry_key(&self, id: &str, expires_at: Timestamp) -> Vec<u8> {
        let mut key = vec![LATER];
        key.extend_from_slice(&expires_at.to_be_bytes());
        key.extend_from_slice(&self.keys.store_key(id));
        key
    }

    /// `batch` with request `id`'s `request.expired` event scheduled for `expires_at`, when webhooks
    /// are on. Collection and revocation withdraw it ([`Outbox::without_expiry`]); a request that
    /// simply runs out fires it, fulfilled or not.
    pub(in crate::domain) fn with_expiry(
        &self,
        batch: Batch,
        id: &str,
        label: Option<&str>,
        expires_at: Timestamp,
    ) -> Batch {
        if !self.webhooks_on() {
            return batch;
        }
        let delivery = Delivery::Webhook {
            event: "request.expired".to_owned(),
            request_id: id.to_owned(),
            label: label.map(str::to_owned),
            occurred_at: expires_at,
        };
        let key = self.expiry_key(id, expires_at);
        let record = OutboxRecord { delivery, created: expires_at, attempts: 0, next_attempt: expires_at };
        let value = self.seal(&key, &record);
        batch.put(OUTBOX, key, value, Some(self.backstop(expires_at)))
    }

    /// `batch` with request `id`'s scheduled `request.expired` event withdrawn (absent is fine).
    pub(in crate::domain) fn without_expiry(&self, batch: Batch, id: &str, expires_at: Timestamp) -> Batch {
        batch.delete(OUTBOX, self.expiry_key(id, expires_at))
    }

    fn backstop(&self, created: Timestamp) -> Timestamp {
        let give_up = self.settings.webhooks.give_up_seconds.max(self.settings.mail.give_up_seconds);
        created.saturating_add(give_up).saturating_add(BACKSTOP_SECONDS)
    }

    fn seal(&self, key: &[u8], record: &OutboxRecord) -> Vec<u8> {
        codec::encode_sealed(record, |plain| self.keys.seal(Purpose::Outbox, key, plain))
    }

    /// Scans up to `limit` entries of each kind (due at once, scheduled) and returns those due now. An entry that does not open (a foreign
    /// master key, a damaged record) is dropped, since no sender could ever deliver it.
    pub async fn due(&self, limit: usize) -> Result<Due, StoreError> {
        let now = self.now();
        let mut out = Due::default();
        let mut entries = self.store.scan_prefix(OUTBOX, vec![NOW], now, limit).await?;
        entries.extend(self.store.scan_prefix(OUTBOX, vec![LATER], now, limit).await?);
        for (key, entry) in entries {
            let opener = self.keys.opener(Purpose::Outbox, &key);
            let open =
                |sealed: &[u8]| opener.open(sealed).map_err(|err| StoreError::Corrupt(err.to_string()));
            let record: OutboxRecord = match codec::decode_sealed(&entry.value, open) {
                Ok(record) => record,
                Err(err) => {
                    tracing::warn!(error = %err, "an outbox entry does not open; dropping it");
                    self.store.apply(Batch::new().delete(OUTBOX, key), now).await?;
                    continue;
                }
            };
            if record.next_attempt <= now {
                out.due.push(Queued {
                    key,
                    version: entry.version,
                    delivery: record.delivery,
                    created: record.created,
                    attempts: record.attempts,
                });
            } else {
                out.next = Some(out.next.map_or(record.next_attempt, |n| n.min(record.next_attempt)));
            }
        }
        Ok(out)
    }

    /// Removes a delivered or abandoned entry; `false` if it had already changed or gone.
    pub async fn finish(&self, entry: &Queued) -> Result<bool, StoreError> {
        let batch = Batch::new()
            .require_version(OUTBOX, entry.key.clone(), entry.version)
            .delete(OUTBOX, entry.key.clone());
        Ok(matches!(self.store.apply(batch, self.now()).await?, Outcome::Applied(_)))
    }

    /// Records a failed attempt; the next one is due at `at`.
    pub async fn retry_at(&self, entry: &Queued, at: Timestamp) -> Result<(), StoreError> {
        let record = OutboxRecord {
            delivery: entry.delivery.clone(),
            created: entry.created,
            attempts: entry.attempts.saturating_add(1),
            next_attempt: at,
        };
        let batch = Batch::new().require_version(OUTBOX, entry.key.clone(), entry.version).put(
            OUTBOX,
            entry.key.clone(),
            self.seal(&entry.key, &record),
            Some(self.backstop(entry.created)),
        );
        self.store.apply(batch, self.now()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mail_allowance_counts_per_account_gives_back_and_starts_over_each_hour() {
        let quota = MailQuota::default();
        assert!(quota.reserve("alice", 2, 100));
        assert!(quota.reserve("alice", 2, 100));
        assert!(!quota.reserve("alice", 2, 101), "the third in the hour");
        assert!(quota.reserve("bob", 2, 101), "another account has its own");
        quota.release("alice");
        assert!(quota.reserve("alice", 2, 102), "a share that stored nothing gave its mail back");
        assert!(!quota.reserve("alice", 2, 100 + MAIL_WINDOW_SECONDS - 1));
        assert!(quota.reserve("alice", 2, 100 + MAIL_WINDOW_SECONDS), "a new hour");
    }
}

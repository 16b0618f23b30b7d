//! Accounts: a name and an API token, used by the v1 dialect's HTTP Basic auth.
//!
//! The token is shown once, when made, and stored only as its SHA-256; a presented token is hashed and
//! compared in constant time. Account names are not secret and are stored as they are.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Accounts, CAS_RETRIES};
use crate::crypto::{self, digests_equal, new_token, sha256};
use crate::store::{Batch, Group, Keyspace, Outcome, StoreError, Timestamp, codec};

/// Accounts, under the account name; one group, since they are listed whole.
pub const ACCOUNT: Keyspace = Keyspace::listed(3, "account");
/// Per-account index of recent metadata: account hash ‖ inverted creation time ‖ metadata hash.
/// Grouped by the account hash, so an account's listing reads its own group.
pub const RECENT: Keyspace = Keyspace::listed(4, "recent").grouped(Group::prefix(32));

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AccountRecord {
    name: String,
    token_hash: [u8; 32],
    created: Timestamp,
    /// A per-account v1 secret size limit (a larger plan); `None` uses `limits.max_secret_bytes`.
    max_secret_bytes: Option<usize>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub created: Timestamp,
    pub max_secret_bytes: Option<usize>,
}

#[derive(Debug)]
pub enum AccountError {
    /// `add` of a name that is taken.
    Exists,
    /// A name that does not exist.
    Unknown,
    /// Empty, too long, or with characters Basic auth cannot carry (`:`, control characters, spaces).
    InvalidName,
    /// Wrong name or token.
    BadCredentials,
    /// The account kept changing under concurrent writers until the retries were spent
    /// (`CAS_RETRIES`); nothing was changed.
    Contention,
    Store(StoreError),
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::Exists => f.write_str("an account with that name already exists"),
            AccountError::Unknown => f.write_str("no account with that name"),
            AccountError::InvalidName => {
                f.write_str("account names are 1 to 254 bytes with no spaces, colons or control characters")
            }
            AccountError::BadCredentials => f.write_str("bad credentials"),
            AccountError::Contention => f.write_str("account changed concurrently too often"),
            AccountError::Store(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for AccountError {}

impl From<StoreError> for AccountError {
    fn from(err: StoreError) -> AccountError {
        AccountError::Store(err)
    }
}

fn validate_name(name: &str) -> Result<(), AccountError> {
    let ok = !name.is_empty()
        && name.len() <= 254
        && !name.chars().any(|c| c == ':' || c.is_whitespace() || c.is_control());
    if ok { Ok(()) } else { Err(AccountError::InvalidName) }
}

impl Accounts {
    /// Creates an account and returns its token, the only time the token is ever available.
    pub async fn add(&self, name: &str) -> Result<String, AccountError> {
        validate_name(name)?;
        let token = new_token();
        let record = AccountRecord {
            name: name.to_owned(),
            token_hash: sha256(token.as_bytes()),
            created: self.now(),
            max_secret_bytes: None,
        };
        let batch = Batch::new().require_absent(ACCOUNT, name.as_bytes()).put(
            ACCOUNT,
            name.as_bytes(),
            codec::encode(&record),
            None,
        );
        match self.store.apply(batch, self.now()).await? {
            Outcome::Applied(_) => Ok(token),
            Outcome::Conflict(_) => Err(AccountError::Exists),
        }
    }

    /// Every account, ordered by name.
    pub async fn list(&self) -> Result<Vec<Account>, AccountError> {
        let rows = self.store.scan_prefix(ACCOUNT, Vec::new(), self.now(), usize::MAX).await?;
        rows.into_iter()
            .map(|(_, entry)| {
                let r: AccountRecord = codec::decode(&entry.value)?;
                Ok(Account { name: r.name, created: r.created, max_secret_bytes: r.max_secret_bytes })
            })
            .collect()
    }

    /// Replaces the token; the old one stops working with this commit.
    pub async fn rotate_token(&self, name: &str) -> Result<String, AccountError> {
        validate_name(name)?;
        for _ in 0..CAS_RETRIES {
            let now = self.now();
            let Some(entry) = self.store.get(ACCOUNT, name.as_bytes().to_vec(), now).await? else {
                return Err(AccountError::Unknown);
            };
            let mut record: AccountRecord = codec::decode(&entry.value)?;
            let token = new_token();
            record.token_hash = sha256(token.as_bytes());
            let batch = Batch::new().require_version(ACCOUNT, name.as_bytes(), entry.version).put(
                ACCOUNT,
                name.as_bytes(),
                codec::encode(&record),
                None,
            );
            if let Outcome::Applied(_) = self.store.apply(batch, now).await? {
                return Ok(token);
            }
        }
        Err(AccountError::Contention)
    }

    pub async fn remove(&self, name: &str) -> Result<(), AccountError> {
        validate_name(name)?;
        let batch = Batch::new().require_present(ACCOUNT, name.as_bytes()).delete(ACCOUNT, name.as_bytes());
        match self.store.apply(batch, self.now()).await? {
            Outcome::Applied(_) => Ok(()),
            Outcome::Conflict(_) => Err(AccountError::Unknown),
        }
    }

    /// Checks a name and token from HTTP Basic auth.
    pub async fn authenticate(&self, name: &str, token: &str) -> Result<Account, AccountError> {
        if validate_name(name).is_err() {
            return Err(AccountError::BadCredentials);
        }
        let presented = sha256(token.as_bytes());
        let entry = self.store.get(ACCOUNT, name.as_bytes().to_vec(), self.now()).await?;
        // Compare against a dummy digest when the account is missing, so timing does not tell which
        // names exist.
        let (stored, record) = match entry {
            Some(entry) => {
                let r: AccountRecord = codec::decode(&entry.value)?;
                (r.token_hash, Some(r))
            }
            None => (sha256(b"lethe/no-such-account"), None),
        };
        match record {
            Some(r) if digests_equal(&presented, &stored) => {
                Ok(Account { name: r.name, created: r.created, max_secret_bytes: r.max_secret_bytes })
            }
            _ => Err(AccountError::BadCredentials),
        }
    }
}

/// Store key of an account's private index entries (recent metadata): a hash, so the index does not
/// group records by a readable name.
pub(crate) fn account_index_key(name: &str) -> [u8; 32] {
    crypto::sha256(format!("lethe/account-index/{name}").as_bytes())
}

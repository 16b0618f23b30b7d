//! Team secrets (`api/team.md`): users registered with their OpenPGP keys, and — as the surface grows —
//! their login sessions, resources, permissions and per-user secrets.
//!
//! Every team record lives in the one listed keyspace [`TEAM`], its kind in the key's first byte, so
//! the whole lifecycle sits on the store's conditional batches and runs on every backend. Records are
//! sealed under the master key bound to their store key ([`Purpose::Team`]); index keys are hashes, so
//! the database file alone yields no username, fingerprint or key.
//!
//! The server key (the one private OpenPGP key the server holds) is loaded by the composition root
//! and only lent here, for the GPGAuth handshake.

pub mod resources;
pub mod sessions;
pub mod users;

use std::fmt;
use std::sync::Arc;

use crate::crypto::openpgp::KeyError;
use crate::crypto::server_key::ServerKey;
use crate::crypto::{Purpose, random_bytes, sha256};
use crate::store::{Keyspace, StoreError, codec};

use super::Core;

/// Every team record: users, their name and fingerprint indexes, and what later steps add.
pub const TEAM: Keyspace = Keyspace::listed(0, "team");

/// First byte of a team store key: what kind of record follows.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
enum Kind {
    /// A user, under its id.
    User = b'u',
    /// Username index: SHA-256 of the lower-cased name → user id.
    Username = b'n',
    /// Fingerprint index: SHA-256 of the upper-case primary fingerprint → user id.
    Fingerprint = b'f',
    /// A stage-1 login token: SHA-256 of the token → the user it was issued to; expires.
    LoginToken = b't',
    /// A session: SHA-256 of the cookie value → user and CSRF token; expires.
    Session = b's',
    /// A resource, under its id: metadata and permissions.
    Resource = b'r',
    /// A secret, under its resource id then its user id.
    Secret = b'c',
    /// Access index, under a user id then a resource id: what a listing reads.
    Access = b'a',
}

fn store_key(kind: Kind, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + rest.len());
    key.push(kind as u8);
    key.extend_from_slice(rest);
    key
}

fn hashed_key(kind: Kind, label: &str, value: &str) -> Vec<u8> {
    store_key(kind, &sha256(format!("lethe/team/{label}/{value}").as_bytes()))
}

/// The team lifecycle: a handle on the [`Core`] and the server key.
#[derive(Clone)]
pub struct Team {
    core: Core,
    server_key: Arc<ServerKey>,
}

impl fmt::Debug for Team {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Team").field("server_key", &self.server_key).finish_non_exhaustive()
    }
}

impl std::ops::Deref for Team {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

impl Team {
    pub(in crate::domain) fn new(core: Core, server_key: Arc<ServerKey>) -> Team {
        Team { core, server_key }
    }

    pub fn server_key(&self) -> &ServerKey {
        &self.server_key
    }

    fn seal<T: serde::Serialize>(&self, key: &[u8], record: &T) -> Vec<u8> {
        codec::encode_sealed(record, |plain| self.keys.seal(Purpose::Team, key, plain))
    }

    fn open<T: serde::de::DeserializeOwned>(&self, key: &[u8], value: &[u8]) -> Result<T, StoreError> {
        let opener = self.keys.opener(Purpose::Team, key);
        codec::decode_sealed(value, |sealed| {
            opener.open(sealed).map_err(|err| StoreError::Corrupt(err.to_string()))
        })
    }
}

/// Why a team step failed. `Display` is safe to show: no key material, token or secret.
#[derive(Debug)]
pub enum TeamError {
    /// A username that is empty, longer than 255 characters, or holds whitespace or control characters.
    InvalidName,
    /// The username is taken (case-insensitively).
    NameTaken,
    /// The key is already registered to a user.
    KeyTaken,
    /// The key breaks a key rule (`team.md` §4.2); the reason says which.
    Key(KeyError),
    /// A v6 key: the team clients read v4 keys only.
    KeyVersion,
    /// No user by that name or id.
    UnknownUser,
    /// The record kept changing under concurrent writers until the retries were spent; nothing changed.
    Contention,
    Store(StoreError),
}

impl fmt::Display for TeamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TeamError::InvalidName => {
                f.write_str("a username is 1 to 255 characters without whitespace or control characters")
            }
            TeamError::NameTaken => f.write_str("a user with that name already exists"),
            TeamError::KeyTaken => f.write_str("that key is already registered to a user"),
            TeamError::Key(err) => write!(f, "the key is refused: {err}"),
            TeamError::KeyVersion => f.write_str("the key is refused: only v4 keys are accepted"),
            TeamError::UnknownUser => f.write_str("no user with that name"),
            TeamError::Contention => f.write_str("the user changed concurrently too often"),
            TeamError::Store(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for TeamError {}

impl From<StoreError> for TeamError {
    fn from(err: StoreError) -> TeamError {
        TeamError::Store(err)
    }
}

/// A new id: a UUID v4, lower-case, from the OS CSPRNG.
pub fn new_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::crypto::hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Whether `s` is an id as the team clients send them (`team.md` §1): 8-4-4-4-12 hex in any case,
/// version nibble 0–5, variant nibble one of `0 8 9 a b` — CakePHP's rule, which Passbolt inherits.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 36 {
        return false;
    }
    let dashes = [8, 13, 18, 23];
    let shape = b
        .iter()
        .enumerate()
        .all(|(i, c)| if dashes.contains(&i) { *c == b'-' } else { c.is_ascii_hexdigit() });
    shape
        && (b'0'..=b'5').contains(&b[14])
        && matches!(b[19].to_ascii_lowercase(), b'0' | b'8' | b'9' | b'a' | b'b')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_lower_case_v4_uuids_that_pass_the_id_rule() {
        let id = new_uuid();
        assert!(is_uuid(&id), "{id}");
        assert_eq!(id, id.to_ascii_lowercase());
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, new_uuid());
    }

    #[test]
    fn the_id_rule_is_cakephps() {
        assert!(is_uuid("669F8C64-242A-59FB-92FC-81F660975FD3"));
        assert!(is_uuid("00000000-0000-0000-0000-000000000000"));
        assert!(!is_uuid("669f8c64-242a-69fb-92fc-81f660975fd3"), "version 6");
        assert!(!is_uuid("669f8c64-242a-59fb-c2fc-81f660975fd3"), "variant c");
        assert!(!is_uuid("669f8c64242a59fb92fc81f660975fd3"));
        assert!(!is_uuid("669f8c64-242a-59fb-92fc-81f660975fdg"));
    }
}

//! Team users: a username, a profile, a role and the OpenPGP key an administrator registered for them
//! (`team.md` §4). A disabled user keeps everything but can no longer log in or be named in a new
//! permission; enabling them restores it all.

use serde::{Deserialize, Serialize};

use super::{Kind, TEAM, Team, TeamError, hashed_key, new_uuid, store_key};
use crate::crypto::key_facts::{KeyFacts, key_facts};
use crate::crypto::openpgp::{KeyError, validate_public_key};
use crate::domain::CAS_RETRIES;
use crate::store::{Batch, Outcome, Timestamp};

/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 255;

/// A stored user. Everything in it is sealed at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub admin: bool,
    /// The key as registered, byte for byte.
    pub armored_key: String,
    /// Primary fingerprint, 40 upper-case hex.
    pub fingerprint: String,
    /// Key ids of the key's valid encryption keys (subkeys or primary): what a secret filed under
    /// this user must be encrypted to.
    pub encryption_key_ids: Vec<[u8; 8]>,
    /// Algorithm, size, first user id and creation time, as clients show them.
    pub key_facts: KeyFacts,
    /// When the key (or its last usable encryption key) expires; after that the user cannot log in.
    pub key_expires: Option<Timestamp>,
    pub created: Timestamp,
    pub modified: Timestamp,
    pub disabled: Option<Timestamp>,
    pub last_logged_in: Option<Timestamp>,
}

/// What registering a user takes.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub armored_key: &'a str,
    pub admin: bool,
    /// `None` means the username, as the CLI contract says.
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
}

/// A username is 1–255 characters with no whitespace or control characters.
pub fn validate_username(name: &str) -> Result<(), TeamError> {
    let count = name.chars().count();
    let ok = (1..=MAX_USERNAME_CHARS).contains(&count)
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(()) } else { Err(TeamError::InvalidName) }
}

fn name_key(name: &str) -> Vec<u8> {
    hashed_key(Kind::Username, "username", &name.to_lowercase())
}

fn fingerprint_key(fingerprint: &str) -> Vec<u8> {
    hashed_key(Kind::Fingerprint, "fingerprint", &fingerprint.to_ascii_uppercase())
}

pub(super) fn user_key(id: &str) -> Vec<u8> {
    store_key(Kind::User, id.to_ascii_lowercase().as_bytes())
}

impl Team {
    /// Registers a user under a fresh id, after the key rules (`team.md` §4.2); the name and the key
    /// are claimed in the same batch, so two concurrent registrations cannot both take one.
    pub async fn add_user(&self, new: NewUser<'_>) -> Result<User, TeamError> {
        validate_username(new.username)?;
        let now = self.now();
        let info = validate_public_key(new.armored_key, now).map_err(TeamError::Key)?;
        // A v4 fingerprint is 20 bytes; a v6 one is 32 and the clients cannot read such keys.
        if info.fingerprint.len() != 40 {
            return Err(TeamError::KeyVersion);
        }
        let fingerprint = info.fingerprint.to_ascii_uppercase();
        let facts = key_facts(new.armored_key)
            .ok_or_else(|| TeamError::Key(KeyError::Malformed("its algorithm cannot be read".into())))?;
        let user = User {
            id: new_uuid(),
            username: new.username.to_owned(),
            first_name: new.first_name.unwrap_or(new.username).to_owned(),
            last_name: new.last_name.unwrap_or("").to_owned(),
            admin: new.admin,
            armored_key: new.armored_key.to_owned(),
            encryption_key_ids: info.encryption_keys.iter().map(|(id, _)| *id).collect(),
            key_facts: facts,
            key_expires: info.expires_at,
            fingerprint,
            created: now,
            modified: now,
            disabled: None,
            last_logged_in: None,
        };
        let (uk, nk, fk) = (user_key(&user.id), name_key(&user.username), fingerprint_key(&user.fingerprint));
        let batch = Batch::new()
            .require_absent(TEAM, nk.clone())
            .require_absent(TEAM, fk.clone())
            .require_absent(TEAM, uk.clone())
            .put(TEAM, uk.clone(), self.seal(&uk, &user), None)
            .put(TEAM, nk.clone(), self.seal(&nk, &user.id), None)
            .put(TEAM, fk.clone(), self.seal(&fk, &user.id), None);
        match self.store.apply(batch, now).await? {
            Outcome::Applied(_) => Ok(user),
            Outcome::Conflict(_) => {
                if self.store.get(TEAM, nk, now).await?.is_some() {
                    Err(TeamError::NameTaken)
                } else {
                    Err(TeamError::KeyTaken)
                }
            }
        }
    }

    /// Every user, disabled ones included, ordered by username.
    pub async fn list_users(&self) -> Result<Vec<User>, TeamError> {
        let rows = self.store.scan_prefix(TEAM, vec![Kind::User as u8], self.now(), usize::MAX).await?;
        let mut users = rows
            .into_iter()
            .map(|(key, entry)| self.open::<User>(&key, &entry.value))
            .collect::<Result<Vec<_>, _>>()?;
        users.sort_by_key(|u| u.username.to_lowercase());
        Ok(users)
    }

    /// The user with this id (any case), with the version it was read at.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<(User, u64)>, TeamError> {
        let key = user_key(id);
        match self.store.get(TEAM, key.clone(), self.now()).await? {
            Some(entry) => Ok(Some((self.open(&key, &entry.value)?, entry.version))),
            None => Ok(None),
        }
    }

    async fn id_by_index(&self, key: Vec<u8>) -> Result<Option<String>, TeamError> {
        match self.store.get(TEAM, key.clone(), self.now()).await? {
            Some(entry) => Ok(Some(self.open(&key, &entry.value)?)),
            None => Ok(None),
        }
    }

    /// The user registered under this name (case-insensitively).
    pub async fn user_by_name(&self, name: &str) -> Result<Option<(User, u64)>, TeamError> {
        match self.id_by_index(name_key(name)).await? {
            Some(id) => self.user_by_id(&id).await,
            None => Ok(None),
        }
    }

    /// The user whose primary key has this fingerprint (any case).
    pub async fn user_by_fingerprint(&self, fingerprint: &str) -> Result<Option<(User, u64)>, TeamError> {
        match self.id_by_index(fingerprint_key(fingerprint)).await? {
            Some(id) => self.user_by_id(&id).await,
            None => Ok(None),
        }
    }

    /// Disables or re-enables a user by name. Disabling ends their sessions at once: a session is
    /// only honoured while its user is enabled.
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<User, TeamError> {
        self.change_user(name, |user, now| {
            user.disabled = match (disabled, user.disabled) {
                (true, Some(at)) => Some(at),
                (true, None) => Some(now),
                (false, _) => None,
            };
        })
        .await
    }

    /// Applies `change` to the named user with a compare-and-set, re-reading on a lost race.
    async fn change_user(
        &self,
        name: &str,
        change: impl Fn(&mut User, Timestamp),
    ) -> Result<User, TeamError> {
        validate_username(name).map_err(|_| TeamError::UnknownUser)?;
        for _ in 0..CAS_RETRIES {
            let Some((mut user, version)) = self.user_by_name(name).await? else {
                return Err(TeamError::UnknownUser);
            };
            let now = self.now();
            change(&mut user, now);
            user.modified = now;
            let key = user_key(&user.id);
            let batch = Batch::new().require_version(TEAM, key.clone(), version).put(
                TEAM,
                key.clone(),
                self.seal(&key, &user),
                None,
            );
            if let Outcome::Applied(_) = self.store.apply(batch, now).await? {
                return Ok(user);
            }
        }
        Err(TeamError::Contention)
    }
}

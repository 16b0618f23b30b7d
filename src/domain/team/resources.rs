//! Resources, their permissions and their per-user secrets (`team.md` §5–§7).
//!
//! A resource's record (`r` + id) holds its cleartext metadata *and* its permission list; each secret
//! is a record of its own (`c` + resource id + user id) and each permission has an access-index entry
//! (`a` + user id + resource id) so that a user's listing reads only what they can see. Every change
//! to a resource — metadata, secrets, permissions, deletion — is one conditional batch that requires
//! the resource record at the version it was read and rewrites it, so concurrent changes to one
//! resource are serialised by the store, and the invariant (users with a permission == users with a
//! secret, each encrypted to its user, at least one owner) is checked on what that batch writes.
//! A user's key never changes once registered, so a secret checked against it stays valid.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::users::User;
use super::{Kind, TEAM, Team, TeamError, new_uuid, store_key};
use crate::crypto::openpgp::inspect_message;
use crate::domain::CAS_RETRIES;
use crate::store::{Batch, Entry, Outcome, StoreError, Timestamp};

/// Passbolt's well-known resource type ids (`team.md` §5); the first is the default.
pub const RESOURCE_TYPE_IDS: [&str; 2] =
    ["669f8c64-242a-59fb-92fc-81f660975fd3", "a28a04cd-6f53-518a-967c-9963bf9cec51"];

/// Permission types: read, update, owner.
pub const READ: u8 = 1;
pub const UPDATE: u8 = 7;
pub const OWNER: u8 = 15;

/// Most permissions (hence secrets) one resource may carry: bounds the work of every change and of
/// every read of the resource record.
pub const MAX_PERMISSIONS: usize = 1000;

/// A user's direct permission on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    pub id: String,
    pub user_id: String,
    /// 1, 7 or 15.
    pub kind: u8,
    pub created: Timestamp,
    pub modified: Timestamp,
}

/// A resource: v4 cleartext metadata and who has access. Sealed at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub id: String,
    pub name: String,
    pub username: Option<String>,
    pub uri: Option<String>,
    pub description: Option<String>,
    pub resource_type_id: String,
    pub created: Timestamp,
    pub modified: Timestamp,
    pub created_by: String,
    pub modified_by: String,
    pub permissions: Vec<Permission>,
    /// A soft-deleted resource keeps only its id and times; it exists for no route.
    pub deleted: bool,
}

impl Resource {
    /// The permission type `user_id` holds, if any.
    pub fn access(&self, user_id: &str) -> Option<u8> {
        self.permissions.iter().find(|p| p.user_id == user_id).map(|p| p.kind)
    }

    fn users(&self) -> BTreeSet<&str> {
        self.permissions.iter().map(|p| p.user_id.as_str()).collect()
    }
}

/// One user's copy of a resource's secret: an OpenPGP message only that user's key opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub id: String,
    pub user_id: String,
    pub resource_id: String,
    /// Returned byte for byte as received.
    pub data: String,
    pub created: Timestamp,
    pub modified: Timestamp,
    pub created_by: String,
    pub modified_by: String,
}

/// Why a secret's `data` was refused: the contract's rule names (`team.md` §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFault {
    Empty,
    TooLong,
    NotMessage,
    NotToUser,
}

impl DataFault {
    pub fn rule(self) -> &'static str {
        match self {
            DataFault::Empty => "_empty",
            DataFault::TooLong => "maxLength",
            DataFault::NotMessage => "isValidOpenPGPMessage",
            DataFault::NotToUser => "isEncryptedToUser",
        }
    }
}

/// The strict check of a secret (`team.md` §6.2): an armored message of PKESKs and one integrity-
/// protected encrypted-data packet, at least one PKESK naming a valid encryption key of `user`, none
/// anonymous, no password (SKESK) that would open it too.
pub fn check_data(data: &str, user: &User, max_bytes: usize) -> Result<(), DataFault> {
    if data.is_empty() {
        return Err(DataFault::Empty);
    }
    if data.len() > max_bytes {
        return Err(DataFault::TooLong);
    }
    if !data.is_ascii() {
        return Err(DataFault::NotMessage);
    }
    let info = inspect_message(data, max_bytes).map_err(|_| DataFault::NotMessage)?;
    if info.password_encrypted || info.unprotected {
        return Err(DataFault::NotMessage);
    }
    if info.anonymous_recipients > 0 {
        return Err(DataFault::NotToUser);
    }
    let to_user = info.recipients.iter().any(|r| {
        // A v3 PKESK names the key by its id; a v6 one by its fingerprint, and a v4 key's id is the
        // last 8 bytes of its 20-byte fingerprint.
        let id = match r.len() {
            8 => r.as_slice(),
            20 => &r[12..],
            _ => return false,
        };
        user.encryption_key_ids.iter().any(|k| k.as_slice() == id)
    });
    if to_user { Ok(()) } else { Err(DataFault::NotToUser) }
}

/// A validation failure at a path of the request body, with the contract's rule name; the surface
/// renders these as its error tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub path: Vec<String>,
    pub rule: &'static str,
}

impl Fault {
    pub fn new(path: &[&str], rule: &'static str) -> Fault {
        Fault { path: path.iter().map(|s| (*s).to_owned()).collect(), rule }
    }
}

/// Why a resource operation did not happen.
#[derive(Debug)]
pub enum ResourceError {
    /// No such live resource, or the caller has no access to it: the same answer.
    NotFound,
    /// The caller's permission is below what the operation needs.
    Forbidden,
    /// The request breaks the contract's rules; nothing changed.
    Invalid(Vec<Fault>),
    Team(TeamError),
}

impl From<TeamError> for ResourceError {
    fn from(err: TeamError) -> ResourceError {
        ResourceError::Team(err)
    }
}

impl From<StoreError> for ResourceError {
    fn from(err: StoreError) -> ResourceError {
        ResourceError::Team(TeamError::Store(err))
    }
}

/// A secret as a request carries it: for whom, and the armored message. Its index in the request
/// names it in error paths.
#[derive(Debug, Clone)]
pub struct SecretIn {
    pub user_id: String,
    pub data: String,
}

/// The metadata of a new resource, already type-checked by the surface.
#[derive(Debug, Clone)]
pub struct NewResource {
    pub name: String,
    pub username: Option<String>,
    pub uri: Option<String>,
    pub description: Option<String>,
    pub resource_type_id: String,
    pub secret: SecretIn,
}

/// An update: `None` keeps a field; `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct ResourceChange {
    pub name: Option<String>,
    pub username: Option<Option<String>>,
    pub uri: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub resource_type_id: Option<String>,
    pub secrets: Option<Vec<SecretIn>>,
}

/// One change of a share, in request order (`team.md` §7.4).
#[derive(Debug, Clone)]
pub enum PermissionChange {
    Add { user_id: String, kind: u8 },
    Update { id: String, kind: u8 },
    Delete { id: String },
}

/// Who gains and who loses access through a share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareOutcome {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// A resource as a listing shows it, with the caller's secret when asked for.
#[derive(Debug, Clone)]
pub struct Listed {
    pub resource: Resource,
    pub secret: Option<Secret>,
}

fn resource_key(id: &str) -> Vec<u8> {
    store_key(Kind::Resource, id.to_ascii_lowercase().as_bytes())
}

fn secret_key(resource_id: &str, user_id: &str) -> Vec<u8> {
    store_key(Kind::Secret, format!("{}{}", resource_id.to_ascii_lowercase(), user_id).as_bytes())
}

fn access_prefix(user_id: &str) -> Vec<u8> {
    store_key(Kind::Access, user_id.as_bytes())
}

fn access_key(user_id: &str, resource_id: &str) -> Vec<u8> {
    let mut key = access_prefix(user_id);
    key.extend_from_slice(resource_id.as_bytes());
    key
}

/// The value of an access-index entry: its presence is the fact, the byte keeps it non-empty.
const PRESENT: u8 = 1;

impl Team {
    fn secret_faults(&self, secrets: &[SecretIn], users: &[User], faults: &mut Vec<Fault>) {
        let max = self.settings.limits.max_team_secret_bytes;
        for (i, secret) in secrets.iter().enumerate() {
            let Some(user) = users.iter().find(|u| u.id == secret.user_id) else { continue };
            if let Err(fault) = check_data(&secret.data, user, max) {
                faults.push(Fault::new(&["secrets", &i.to_string(), "data"], fault.rule()));
            }
        }
    }

    /// Creates a resource owned by `caller`, with the caller's one secret.
    pub async fn create_resource(&self, caller: &User, new: NewResource) -> Result<Resource, ResourceError> {
        let mut faults = Vec::new();
        if !RESOURCE_TYPE_IDS.iter().any(|t| t.eq_ignore_ascii_case(&new.resource_type_id)) {
            faults.push(Fault::new(&["resource_type_id"], "resource_type_exists"));
        }
        if new.secret.user_id != caller.id {
            faults.push(Fault::new(&["secrets", "0", "user_id"], "isOwner"));
        } else {
            self.secret_faults(std::slice::from_ref(&new.secret), std::slice::from_ref(caller), &mut faults);
        }
        if !faults.is_empty() {
            return Err(ResourceError::Invalid(faults));
        }
        let now = self.now();
        let resource = Resource {
            id: new_uuid(),
            name: new.name,
            username: new.username,
            uri: new.uri,
            description: new.description,
            resource_type_id: new.resource_type_id.to_ascii_lowercase(),
            created: now,
            modified: now,
            created_by: caller.id.clone(),
            modified_by: caller.id.clone(),
            permissions: vec![Permission {
                id: new_uuid(),
                user_id: caller.id.clone(),
                kind: OWNER,
                created: now,
                modified: now,
            }],
            deleted: false,
        };
        let secret = self.new_secret(&resource.id, caller, new.secret, now, None);
        let (rk, sk, ak) = (
            resource_key(&resource.id),
            secret_key(&resource.id, &caller.id),
            access_key(&caller.id, &resource.id),
        );
        let batch = Batch::new()
            .require_absent(TEAM, rk.clone())
            .put(TEAM, rk.clone(), self.seal(&rk, &resource), None)
            .put(TEAM, sk.clone(), self.seal(&sk, &secret), None)
            .put(TEAM, ak.clone(), self.seal(&ak, &PRESENT), None);
        match self.store.apply(batch, now).await? {
            Outcome::Applied(_) => Ok(resource),
            // A fresh random id already taken: never in practice.
            Outcome::Conflict(_) => Err(TeamError::Contention.into()),
        }
    }

    fn new_secret(
        &self,
        resource_id: &str,
        caller: &User,
        input: SecretIn,
        now: Timestamp,
        previous: Option<&Secret>,
    ) -> Secret {
        Secret {
            id: previous.map_or_else(new_uuid, |p| p.id.clone()),
            user_id: input.user_id,
            resource_id: resource_id.to_owned(),
            data: input.data,
            created: previous.map_or(now, |p| p.created),
            modified: now,
            created_by: previous.map_or_else(|| caller.id.clone(), |p| p.created_by.clone()),
            modified_by: caller.id.clone(),
        }
    }

    /// The live resource with this id and the version it was read at, whoever may see it.
    async fn resource_at(&self, id: &str) -> Result<Option<(Resource, u64)>, TeamError> {
        let key = resource_key(id);
        match self.store.get(TEAM, key.clone(), self.now()).await? {
            Some(entry) => {
                let resource: Resource = self.open(&key, &entry.value)?;
                Ok((!resource.deleted).then_some((resource, entry.version)))
            }
            None => Ok(None),
        }
    }

    /// The resource if `caller` has at least `level` on it: `NotFound` without access (so nothing
    /// tells that it exists), `Forbidden` with a lower one.
    pub async fn resource_for(
        &self,
        caller: &User,
        id: &str,
        level: u8,
    ) -> Result<(Resource, u64), ResourceError> {
        let Some((resource, version)) = self.resource_at(id).await? else {
            return Err(ResourceError::NotFound);
        };
        match resource.access(&caller.id) {
            None => Err(ResourceError::NotFound),
            Some(kind) if kind < level => Err(ResourceError::Forbidden),
            Some(_) => Ok((resource, version)),
        }
    }

    /// The caller's own secret of a resource they can see.
    pub async fn own_secret(&self, caller: &User, resource_id: &str) -> Result<Secret, ResourceError> {
        self.resource_for(caller, resource_id, READ).await?;
        let key = secret_key(resource_id, &caller.id);
        match self.store.get(TEAM, key.clone(), self.now()).await? {
            Some(entry) => Ok(self.open(&key, &entry.value)?),
            // The invariant says this cannot be; a resource deleted since the check reads the same.
            None => Err(ResourceError::NotFound),
        }
    }

    /// Every live resource `caller` has access to, ordered by name; with the caller's secret of each
    /// when `with_secret`. One trip to the store for the index, the records and the secrets.
    pub async fn list_resources(&self, caller: &User, with_secret: bool) -> Result<Vec<Listed>, TeamError> {
        let now = self.now();
        let prefix = access_prefix(&caller.id);
        let user_id = caller.id.clone();
        let rows = self
            .store
            .read(move |s| {
                let index = s.scan_prefix(TEAM, &prefix, now, usize::MAX)?;
                let mut rows: Vec<(String, Entry, Option<Entry>)> = Vec::with_capacity(index.len());
                for (key, _) in index {
                    let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                    let Some(entry) = s.get(TEAM, &resource_key(&id), now)? else { continue };
                    let secret =
                        if with_secret { s.get(TEAM, &secret_key(&id, &user_id), now)? } else { None };
                    rows.push((id, entry, secret));
                }
                Ok(rows)
            })
            .await?;
        let mut listed = Vec::with_capacity(rows.len());
        for (id, entry, secret) in rows {
            let resource: Resource = self.open(&resource_key(&id), &entry.value)?;
            if resource.deleted || resource.access(&caller.id).is_none() {
                continue;
            }
            let secret = match secret {
                Some(e) => Some(self.open::<Secret>(&secret_key(&id, &caller.id), &e.value)?),
                None => None,
            };
            listed.push(Listed { resource, secret });
        }
        listed.sort_by(|a, b| a.resource.name.cmp(&b.resource.name));
        Ok(listed)
    }

    /// Users by id, each once; unknown ids are left out.
    async fn users_by_ids<'a>(
        &self,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<Vec<(User, u64)>, TeamError> {
        let mut users: Vec<(User, u64)> = Vec::new();
        for id in ids {
            if users.iter().any(|(u, _)| u.id == id) || !super::is_uuid(id) {
                continue;
            }
            if let Some(found) = self.user_by_id(id).await? {
                users.push(found);
            }
        }
        Ok(users)
    }

    /// Updates metadata and, when given, every secret: exactly one for each user with access, each
    /// encrypted to its user. Needs update (7).
    pub async fn update_resource(
        &self,
        caller: &User,
        id: &str,
        change: ResourceChange,
    ) -> Result<Resource, ResourceError> {
        for _ in 0..CAS_RETRIES {
            let (mut resource, version) = self.resource_for(caller, id, UPDATE).await?;
            let mut faults = Vec::new();
            if let Some(t) = &change.resource_type_id {
                if !RESOURCE_TYPE_IDS.iter().any(|k| k.eq_ignore_ascii_case(t)) {
                    faults.push(Fault::new(&["resource_type_id"], "resource_type_exists"));
                } else if !t.eq_ignore_ascii_case(&resource.resource_type_id) && change.secrets.is_none() {
                    faults.push(Fault::new(&["resource_type_id"], "secretsRequired"));
                }
            }
            let mut users = Vec::new();
            if let Some(secrets) = &change.secrets {
                let given: Vec<&str> = secrets.iter().map(|s| s.user_id.as_str()).collect();
                let unique: BTreeSet<&str> = given.iter().copied().collect();
                if unique.len() != given.len() || unique != resource.users() {
                    faults.push(Fault::new(&["secrets"], "secrets_provided"));
                } else {
                    users = self.users_by_ids(given.into_iter()).await?;
                    let plain: Vec<User> = users.iter().map(|(u, _)| u.clone()).collect();
                    self.secret_faults(secrets, &plain, &mut faults);
                }
            }
            if !faults.is_empty() {
                return Err(ResourceError::Invalid(faults));
            }
            let now = self.now();
            let rk = resource_key(&resource.id);
            let mut batch = Batch::new().require_version(TEAM, rk.clone(), version);
            if let Some(secrets) = &change.secrets {
                // Keep each secret's id and creation: the message changes, the secret is the same.
                let keys: Vec<Vec<u8>> =
                    secrets.iter().map(|s| secret_key(&resource.id, &s.user_id)).collect();
                let previous = self
                    .store
                    .read(move |s| keys.iter().map(|k| s.get(TEAM, k, now)).collect::<Result<Vec<_>, _>>())
                    .await?;
                for (input, prev) in secrets.iter().zip(previous) {
                    let sk = secret_key(&resource.id, &input.user_id);
                    let prev: Option<Secret> = match prev {
                        Some(e) => Some(self.open(&sk, &e.value)?),
                        None => None,
                    };
                    let secret = self.new_secret(&resource.id, caller, input.clone(), now, prev.as_ref());
                    batch = batch.put(TEAM, sk.clone(), self.seal(&sk, &secret), None);
                }
                for (user, user_version) in &users {
                    batch = batch.require_version(TEAM, super::users::user_key(&user.id), *user_version);
                }
            }
            let c = change.clone();
            if let Some(name) = c.name {
                resource.name = name;
            }
            if let Some(v) = c.username {
                resource.username = v;
            }
            if let Some(v) = c.uri {
                resource.uri = v;
            }
            if let Some(v) = c.description {
                resource.description = v;
            }
            if let Some(v) = c.resource_type_id {
                resource.resource_type_id = v.to_ascii_lowercase();
            }
            resource.modified = now;
            resource.modified_by = caller.id.clone();
            batch = batch.put(TEAM, rk.clone(), self.seal(&rk, &resource), None);
            if let Outcome::Applied(_) = self.store.apply(batch, now).await? {
                return Ok(resource);
            }
        }
        Err(TeamError::Contention.into())
    }

    /// Soft delete: the record keeps only its id and times and exists for no route; permissions,
    /// index entries and secrets go in the same batch. Needs update (7).
    pub async fn delete_resource(&self, caller: &User, id: &str) -> Result<Resource, ResourceError> {
        for _ in 0..CAS_RETRIES {
            let (resource, version) = self.resource_for(caller, id, UPDATE).await?;
            let now = self.now();
            let rk = resource_key(&resource.id);
            let tombstone = Resource {
                name: String::new(),
                username: None,
                uri: None,
                description: None,
                permissions: Vec::new(),
                deleted: true,
                modified: now,
                modified_by: caller.id.clone(),
                ..resource.clone()
            };
            let mut batch = Batch::new().require_version(TEAM, rk.clone(), version).put(
                TEAM,
                rk.clone(),
                self.seal(&rk, &tombstone),
                None,
            );
            for p in &resource.permissions {
                batch = batch
                    .delete(TEAM, secret_key(&resource.id, &p.user_id))
                    .delete(TEAM, access_key(&p.user_id, &resource.id));
            }
            if let Outcome::Applied(_) = self.store.apply(batch, now).await? {
                return Ok(resource);
            }
        }
        Err(TeamError::Contention.into())
    }

    /// The users with access to a resource the caller can see (disabled ones included).
    pub async fn users_with_access(&self, caller: &User, id: &str) -> Result<Vec<User>, ResourceError> {
        let (resource, _) = self.resource_for(caller, id, READ).await?;
        let users = self.users_by_ids(resource.permissions.iter().map(|p| p.user_id.as_str())).await?;
        let mut users: Vec<User> = users.into_iter().map(|(u, _)| u).collect();
        users.sort_by_key(|u| u.username.to_lowercase());
        Ok(users)
    }

    /// Applies (or, with `dry_run`, only computes) a share: the permission changes in order, then the
    /// invariant — every user who gains access brings exactly one secret encrypted to them, users who
    /// lose access lose theirs, at least one owner remains. Needs owner (15).
    pub async fn share(
        &self,
        caller: &User,
        id: &str,
        changes: &[PermissionChange],
        secrets: &[SecretIn],
        dry_run: bool,
    ) -> Result<ShareOutcome, ResourceError> {
        for _ in 0..CAS_RETRIES {
            let (resource, version) = self.resource_for(caller, id, OWNER).await?;
            let before = resource.users().into_iter().map(str::to_owned).collect::<BTreeSet<String>>();
            let now = self.now();
            let mut permissions = resource.permissions.clone();
            let mut faults = Vec::new();
            let added_ids: Vec<&str> = changes
                .iter()
                .filter_map(|c| match c {
                    PermissionChange::Add { user_id, .. } => Some(user_id.as_str()),
                    _ => None,
                })
                .collect();
            let candidates = self.users_by_ids(added_ids.into_iter()).await?;
            for (i, change) in changes.iter().enumerate() {
                let at = i.to_string();
                match change {
                    PermissionChange::Add { user_id, kind } => {
                        let user = candidates.iter().find(|(u, _)| u.id == *user_id);
                        if user.is_none_or(|(u, _)| u.disabled.is_some()) {
                            faults.push(Fault::new(&["permissions", &at, "aro_foreign_key"], "aro_exists"));
                        } else if permissions.iter().any(|p| p.user_id == *user_id) {
                            faults.push(Fault::new(
                                &["permissions", &at, "aro_foreign_key"],
                                "permission_unique",
                            ));
                        } else {
                            permissions.push(Permission {
                                id: new_uuid(),
                                user_id: user_id.clone(),
                                kind: *kind,
                                created: now,
                                modified: now,
                            });
                        }
                    }
                    PermissionChange::Update { id, kind } => {
                        match permissions.iter_mut().find(|p| p.id.eq_ignore_ascii_case(id)) {
                            Some(p) => {
                                if p.kind != *kind {
                                    p.kind = *kind;
                                    p.modified = now;
                                }
                            }
                            None => faults.push(Fault::new(&["permissions", &at, "id"], "exists")),
                        }
                    }
                    PermissionChange::Delete { id } => {
                        match permissions.iter().position(|p| p.id.eq_ignore_ascii_case(id)) {
                            Some(pos) => {
                                permissions.remove(pos);
                            }
                            None => faults.push(Fault::new(&["permissions", &at, "id"], "exists")),
                        }
                    }
                }
            }
            if faults.is_empty() && !permissions.iter().any(|p| p.kind == OWNER) {
                faults.push(Fault::new(&["permissions"], "at_least_one_owner"));
            }
            if permissions.len() > MAX_PERMISSIONS {
                faults.push(Fault::new(&["permissions"], "hasAtMost"));
            }
            let after: BTreeSet<String> = permissions.iter().map(|p| p.user_id.clone()).collect();
            let outcome = ShareOutcome {
                added: after.difference(&before).cloned().collect(),
                removed: before.difference(&after).cloned().collect(),
            };
            if !faults.is_empty() {
                return Err(ResourceError::Invalid(faults));
            }
            if dry_run {
                return Ok(outcome);
            }
            let given: Vec<&str> = secrets.iter().map(|s| s.user_id.as_str()).collect();
            let unique: BTreeSet<&str> = given.iter().copied().collect();
            let wanted: BTreeSet<&str> = outcome.added.iter().map(String::as_str).collect();
            if unique.len() != given.len() || unique != wanted {
                return Err(ResourceError::Invalid(vec![Fault::new(&["secrets"], "secrets_provided")]));
            }
            let gaining: Vec<User> = candidates.iter().map(|(u, _)| u.clone()).collect();
            self.secret_faults(secrets, &gaining, &mut faults);
            if !faults.is_empty() {
                return Err(ResourceError::Invalid(faults));
            }
            let rk = resource_key(&resource.id);
            let mut batch = Batch::new().require_version(TEAM, rk.clone(), version);
            for (user, user_version) in candidates.iter().filter(|(u, _)| wanted.contains(u.id.as_str())) {
                // A user disabled meanwhile may not be named in a new permission.
                batch = batch.require_version(TEAM, super::users::user_key(&user.id), *user_version);
            }
            for input in secrets {
                let sk = secret_key(&resource.id, &input.user_id);
                let secret = self.new_secret(&resource.id, caller, input.clone(), now, None);
                let ak = access_key(&input.user_id, &resource.id);
                batch = batch.put(TEAM, sk.clone(), self.seal(&sk, &secret), None).put(
                    TEAM,
                    ak.clone(),
                    self.seal(&ak, &PRESENT),
                    None,
                );
            }
            for user_id in &outcome.removed {
                batch = batch
                    .delete(TEAM, secret_key(&resource.id, user_id))
                    .delete(TEAM, access_key(user_id, &resource.id));
            }
            let updated = Resource { permissions, modified: now, modified_by: caller.id.clone(), ..resource };
            batch = batch.put(TEAM, rk.clone(), self.seal(&rk, &updated), None);
            if let Outcome::Applied(_) = self.store.apply(batch, now).await? {
                return Ok(outcome);
            }
        }
        Err(TeamError::Contention.into())
    }
}

#[cfg(test)]
mod tests {
    use pgp::composed::{ArmorOptions, MessageBuilder, SignedPublicKey};
    use pgp::crypto::aead::{AeadAlgorithm, ChunkSize};
    use pgp::crypto::sym::SymmetricKeyAlgorithm;
    use pgp::types::KeyVersion;

    use super::*;
    use crate::crypto::key_facts::key_facts;
    use crate::crypto::openpgp::tests::rpgp_key;
    use crate::crypto::openpgp::validate_public_key;

    /// A v4 user as registration stores them, with an rPGP-made key.
    fn user() -> (User, SignedPublicKey) {
        let (armored, public) = rpgp_key(KeyVersion::V4);
        let info = validate_public_key(&armored, 0).unwrap();
        let user = User {
            id: new_uuid(),
            username: "rusty".into(),
            first_name: "rusty".into(),
            last_name: String::new(),
            admin: false,
            key_facts: key_facts(&armored).unwrap(),
            armored_key: armored,
            fingerprint: info.fingerprint.to_ascii_uppercase(),
            encryption_key_ids: info.encryption_keys.iter().map(|(id, _)| *id).collect(),
            key_expires: None,
            created: 0,
            modified: 0,
            disabled: None,
            last_logged_in: None,
        };
        (user, public)
    }

    fn message(to: &SignedPublicKey, v2: bool, anonymous: bool) -> String {
        let mut rng = rand::thread_rng();
        let subkey = &to.public_subkeys[0];
        if v2 {
            let mut builder = MessageBuilder::from_bytes("", &b"pw"[..]).seipd_v2(
                &mut rng,
                SymmetricKeyAlgorithm::AES128,
                AeadAlgorithm::Ocb,
                ChunkSize::default(),
            );
            if anonymous {
                builder.encrypt_to_key_anonymous(&mut rng, subkey).unwrap();
            } else {
                builder.encrypt_to_key(&mut rng, subkey).unwrap();
            }
            builder.to_armored_string(&mut rng, ArmorOptions::default()).unwrap()
        } else {
            let mut builder =
                MessageBuilder::from_bytes("", &b"pw"[..]).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
            builder.encrypt_to_key(&mut rng, subkey).unwrap();
            builder.to_armored_string(&mut rng, ArmorOptions::default()).unwrap()
        }
    }

    #[test]
    fn a_secret_is_for_its_user_by_key_id_or_by_fingerprint() {
        let (alice, alice_key) = user();
        let (_, bob_key) = user();
        assert_eq!(
            check_data(&message(&alice_key, false, false), &alice, 65_536),
            Ok(()),
            "v3 PKESK, SEIPD v1"
        );
        assert_eq!(
            check_data(&message(&alice_key, true, false), &alice, 65_536),
            Ok(()),
            "v6 PKESK, SEIPD v2"
        );
        assert_eq!(check_data(&message(&alice_key, true, true), &alice, 65_536), Err(DataFault::NotToUser));
        assert_eq!(check_data(&message(&bob_key, true, false), &alice, 65_536), Err(DataFault::NotToUser));
        assert_eq!(check_data(&message(&bob_key, false, false), &alice, 65_536), Err(DataFault::NotToUser));
        let long = message(&alice_key, false, false);
        assert_eq!(check_data(&long, &alice, long.len() - 1), Err(DataFault::TooLong));
        assert_eq!(check_data("", &alice, 65_536), Err(DataFault::Empty));
        assert_eq!(check_data("-----BEGIN PGP MESSAGE-----", &alice, 65_536), Err(DataFault::NotMessage));
    }
}

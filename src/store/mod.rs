//! The store: keyspaces of byte keys to byte values with an expiry time, and one write primitive,
//! the all-or-nothing conditional [`Batch`].
//!
//! This module owns the [`Store`] trait, the concrete [`StoreHandle`] the rest of the server holds,
//! the record codec, and the backends (`memory`, `redb`). It knows nothing of secrets, HTTP or ids:
//! keyspaces are declared by the modules that own their records and handed over at open, keys
//! arrive already hashed by the domain layer, values are opaque bytes, and time is passed in.
//!
//! Guarantees every backend keeps (the conformance suite in `conformance` checks them):
//! - An entry whose `expires_at <= now` does not exist for any read, condition or take, whether or not
//!   the reaper has removed it yet.
//! - [`Store::apply`] is atomic: either every condition holds and every mutation is applied, or nothing
//!   changes. Concurrent batches are serialised; of N batches conditioned on the same version exactly
//!   one wins.
//! - An `Ok` from [`Store::apply`] on a durable backend means the batch is committed to disk.
//! - [`Store::apply_planned`] (a read-then-write request as one step, where the backend can) writes
//!   only through the batch its plan returns, so everything above holds for it too.

pub mod codec;
#[cfg(test)]
mod conformance;
mod memory;
mod redb;
mod redis;

use std::any::Any;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use self::redb::{DEFAULT_CACHE_BYTES, RedbStore, WRITER_THREAD, WriterStats};
pub use self::redis::{RedisOptions, RedisStore};
pub use memory::MemoryStore;

pub use crate::clock::Timestamp;
use crate::histogram::Histogram;

/// A namespace of keys, declared by the module that owns its records (`domain::secrets::SECRET`,
/// `domain::accounts::ACCOUNT`, …) and handed to a backend at open in one list; the store never names
/// a domain's kinds. A backend keeps one table per listed keyspace and may store the others together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Keyspace {
    tag: u8,
    name: &'static str,
    listed: bool,
    group: Group,
}

/// Which of a keyspace's keys belong together: a batch touches one group only, on a backend that
/// spreads groups apart (Redis Cluster puts a group in one hash slot), and a prefix listing that
/// names its group reads that group alone. Keys of different keyspaces grouped by bytes are in one
/// group when their group bytes are equal; a keyspace that is one group shares it with no other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// Bytes `start..start + len` of the key (as many as it has) name its group.
    Bytes { start: u8, len: u8 },
    /// The whole keyspace is one group.
    Whole,
}

impl Group {
    /// The first `len` bytes of a key: a key led by a creation sequence ([`Keyspace::point`]).
    pub const fn prefix(len: u8) -> Group {
        Group::Bytes { start: 0, len }
    }
}

impl Keyspace {
    /// Tags are below this (redb keeps a count per tag in a fixed row).
    pub const MAX_TAGS: usize = 8;

    /// A keyspace only ever read by key. Its keys should lead with a creation sequence, so a backend
    /// may store it beside the others: a v1 secret and its metadata, made at once, then sit side by
    /// side.
    pub const fn point(tag: u8, name: &'static str) -> Keyspace {
        Keyspace { tag, name, listed: false, group: Group::prefix(4) }
    }

    /// A keyspace its owner lists by prefix (accounts; an account's recent secrets).
    pub const fn listed(tag: u8, name: &'static str) -> Keyspace {
        Keyspace { tag, name, listed: true, group: Group::Whole }
    }

    /// This keyspace with its keys grouped by `group` instead: a point keyspace's default is the
    /// 4-byte creation sequence leading its keys, a listed one's the whole keyspace.
    pub const fn grouped(self, group: Group) -> Keyspace {
        Keyspace { group, ..self }
    }

    /// How this keyspace's keys are grouped.
    pub fn group(self) -> Group {
        self.group
    }

    /// The bytes naming `key`'s group, `None` for a keyspace that is one group.
    pub fn group_of(self, key: &[u8]) -> Option<&[u8]> {
        match self.group {
            Group::Bytes { start, len } => {
                let start = usize::from(start).min(key.len());
                let end = (start + usize::from(len)).min(key.len());
                Some(&key[start..end])
            }
            Group::Whole => None,
        }
    }

    /// Whether every key under `prefix` is in one group (so a listing of it reads that group alone).
    pub fn prefix_names_group(self, prefix: &[u8]) -> bool {
        match self.group {
            Group::Bytes { start, len } => prefix.len() >= usize::from(start) + usize::from(len),
            Group::Whole => true,
        }
    }

    /// Stable on-disk tag, written into the expiry index; never renumber or reuse one.
    pub fn tag(self) -> u8 {
        self.tag
    }

    /// Whether the owner lists this keyspace by prefix. Every keyspace still supports every
    /// operation; this is a hint about cost, not a contract.
    pub fn is_listed(self) -> bool {
        self.listed
    }

    /// Stable name (a redb table's, for listed keyspaces); never rename.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// The keyspace of `tag` in `keyspaces`.
    pub fn find(keyspaces: &[Keyspace], tag: u8) -> Option<Keyspace> {
        keyspaces.iter().copied().find(|ks| ks.tag == tag)
    }

    /// Checks a list handed to a backend: tags unique and below [`Keyspace::MAX_TAGS`], names unique.
    pub fn check_all(keyspaces: &[Keyspace]) -> Result<(), StoreError> {
        for (i, ks) in keyspaces.iter().enumerate() {
            let clash = keyspaces[..i].iter().any(|other| other.tag == ks.tag || other.name == ks.name);
            if usize::from(ks.tag) >= Keyspace::MAX_TAGS || clash {
                return Err(StoreError::Io(format!("keyspace {} has a tag or name another has", ks.name)));
            }
        }
        Ok(())
    }
}

/// Keyspaces for the store's own tests, shaped like the domain's (same tags, names and listing) but
/// all of one group: the suite's batches mix any keys of any keyspaces, so on Redis Cluster it runs
/// in one hash slot; the cluster's own tests check groups apart.
#[cfg(test)]
pub(crate) mod test_keyspaces {
    use super::{Group, Keyspace};

    const ONE: Group = Group::prefix(0);
    pub const SECRET: Keyspace = Keyspace::point(1, "secret").grouped(ONE);
    pub const METADATA: Keyspace = Keyspace::point(2, "metadata").grouped(ONE);
    pub const ACCOUNT: Keyspace = Keyspace::listed(3, "account").grouped(ONE);
    pub const RECENT: Keyspace = Keyspace::listed(4, "recent").grouped(ONE);
    pub const ATTEMPTS: Keyspace = Keyspace::point(5, "attempts").grouped(ONE);
    pub const REQUEST: Keyspace = Keyspace::point(6, "request").grouped(ONE);
    pub const ALL: &[Keyspace] = &[SECRET, METADATA, ACCOUNT, RECENT, ATTEMPTS, REQUEST];
}

/// A live entry as read from the store.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    /// Starts at 1 on the first put of a key and grows by one on every put; a key that is deleted and
    /// put again starts over at 1, so conditions must also check presence, which `Version` does.
    pub version: u64,
    /// `None` means the entry never expires.
    pub expires_at: Option<Timestamp>,
}

impl fmt::Debug for Entry {
    // Values hold ciphertext and hashes; keep them out of logs and test failure output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .field("version", &self.version)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A precondition of a [`Batch`]. Expired entries count as absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Absent {
        ks: Keyspace,
        key: Vec<u8>,
    },
    Present {
        ks: Keyspace,
        key: Vec<u8>,
    },
    /// Present with exactly this version.
    Version {
        ks: Keyspace,
        key: Vec<u8>,
        version: u64,
    },
}

/// A change in a [`Batch`], applied in order after every condition held.
#[derive(Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Insert or replace; the version becomes the old live version + 1, or 1.
    Put { ks: Keyspace, key: Vec<u8>, value: Vec<u8>, expires_at: Option<Timestamp> },
    /// Remove if present; removing an absent key is not an error.
    Delete { ks: Keyspace, key: Vec<u8> },
    /// Remove and return the old live entry (`None` if absent or expired).
    Take { ks: Keyspace, key: Vec<u8> },
}

impl fmt::Debug for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mutation::Put { ks, value, expires_at, .. } => f
                .debug_struct("Put")
                .field("ks", ks)
                .field("value", &format_args!("<{} bytes>", value.len()))
                .field("expires_at", expires_at)
                .finish_non_exhaustive(),
            Mutation::Delete { ks, .. } => f.debug_struct("Delete").field("ks", ks).finish_non_exhaustive(),
            Mutation::Take { ks, .. } => f.debug_struct("Take").field("ks", ks).finish_non_exhaustive(),
        }
    }
}

/// An all-or-nothing unit of writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub conditions: Vec<Condition>,
    pub mutations: Vec<Mutation>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn require_absent(mut self, ks: Keyspace, key: impl Into<Vec<u8>>) -> Batch {
        self.conditions.push(Condition::Absent { ks, key: key.into() });
        self
    }

    pub fn require_present(mut self, ks: Keyspace, key: impl Into<Vec<u8>>) -> Batch {
        self.conditions.push(Condition::Present { ks, key: key.into() });
        self
    }

    pub fn require_version(mut self, ks: Keyspace, key: impl Into<Vec<u8>>, version: u64) -> Batch {
        self.conditions.push(Condition::Version { ks, key: key.into(), version });
        self
    }

    pub fn put(
        mut self,
        ks: Keyspace,
        key: impl Into<Vec<u8>>,
        value: Vec<u8>,
        expires_at: Option<Timestamp>,
    ) -> Batch {
        self.mutations.push(Mutation::Put { ks, key: key.into(), value, expires_at });
        self
    }

    pub fn delete(mut self, ks: Keyspace, key: impl Into<Vec<u8>>) -> Batch {
        self.mutations.push(Mutation::Delete { ks, key: key.into() });
        self
    }

    pub fn take(mut self, ks: Keyspace, key: impl Into<Vec<u8>>) -> Batch {
        self.mutations.push(Mutation::Take { ks, key: key.into() });
        self
    }
}

/// What [`Store::apply`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every condition held; one slot per mutation, `Some(entry)` only for a `Take` that found a live
    /// entry, `None` for every other mutation.
    Applied(Vec<Option<Entry>>),
    /// The condition at this index did not hold; nothing was changed.
    Conflict(usize),
}

/// Errors of the storage layer. None of them carries a key or value.
#[derive(Debug)]
pub enum StoreError {
    /// The backend failed to read or write (disk full, I/O error, corrupted file).
    Io(String),
    /// The database is held by another process (a second daemon on the same data directory).
    Locked,
    /// A stored record could not be decoded: a newer format, or corruption.
    Corrupt(String),
    /// The store is shutting down or its writer has stopped.
    Closed,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(msg) => write!(f, "storage I/O error: {msg}"),
            StoreError::Locked => f.write_str("the database is in use by another process"),
            StoreError::Corrupt(msg) => write!(f, "stored record is unreadable: {msg}"),
            StoreError::Closed => f.write_str("the store is closed"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Where [`Store::apply_then`] sends its result.
pub type Reply<T> = Box<dyn FnOnce(Result<T, StoreError>) + Send>;

/// Point reads for a [`Plan`], at the `now` of the write it plans.
pub trait Lookup {
    /// The live entry under `key`, as [`Store::get`] would return it at that moment.
    fn get(&mut self, ks: Keyspace, key: &[u8]) -> Result<Option<Entry>, StoreError>;
}

/// A write decided from what the store holds: it reads what it needs and returns the batch to apply
/// (`None` to write nothing), plus whatever the caller wants to know about what it read.
///
/// A backend may run it apart from the write (see [`Store::apply_planned`]), so the batch must carry
/// conditions on every entry the decision rests on; then a plan that raced another write ends in
/// [`Outcome::Conflict`], never in a write the plan would not have made.
///
/// A backend whose reads are network calls may also run it more than once, each time with more of its
/// reads answered, so that no thread waits for a read (see the Redis backend): a plan decides from
/// its reads alone and has no effect but its result.
pub type Plan =
    Box<dyn FnMut(&mut dyn Lookup) -> Result<(Option<Batch>, Box<dyn Any + Send>), StoreError> + Send>;

/// What [`Store::apply_planned`] did: the plan's own report, and the outcome of its batch if it
/// returned one.
pub struct Planned {
    pub report: Box<dyn Any + Send>,
    pub outcome: Option<Outcome>,
}

impl fmt::Debug for Planned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Planned").field("outcome", &self.outcome).finish_non_exhaustive()
    }
}

/// The storage contract. Methods may block; async callers go through [`StoreHandle`], which runs
/// blocking ones on the blocking pool and waits for writes without holding a thread.
pub trait Store: Send + Sync + 'static {
    /// The live entry under `key`, or `None` if absent or expired at `now`.
    fn get(&self, ks: Keyspace, key: &[u8], now: Timestamp) -> Result<Option<Entry>, StoreError>;

    /// Live entries whose key starts with `prefix`, in ascending key order, at most `limit`.
    fn scan_prefix(
        &self,
        ks: Keyspace,
        prefix: &[u8],
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Entry)>, StoreError>;

    /// Checks every condition at `now`, then applies every mutation, atomically and (for durable
    /// backends) durably before returning.
    fn apply(&self, batch: Batch, now: Timestamp) -> Result<Outcome, StoreError>;

    /// [`Store::apply`] without waiting: `done` is called exactly once with what `apply` would have
    /// returned, on whichever thread finishes the batch (for redb, the writer thread after the commit).
    /// It must not block on I/O itself, because async callers call it on the runtime.
    fn apply_then(&self, batch: Batch, now: Timestamp, done: Reply<Outcome>);

    /// [`Store::get`] without waiting: `done` is called exactly once with what `get` would have
    /// returned. A backend whose reads are network calls ([`ReadPath::Callback`]) sends the request
    /// and answers from whatever completes it, so no thread waits on the socket; the default answers
    /// in place.
    fn get_then(&self, ks: Keyspace, key: &[u8], now: Timestamp, done: Reply<Option<Entry>>) {
        done(self.get(ks, key, now));
    }

    /// What the backend can do and how its calls should be made, asked once by [`StoreHandle::new`].
    /// One value rather than a hint method each, so a wrapper forwards it in one line.
    fn capabilities(&self) -> Capabilities;

    /// Runs `plan` against the store at `now` and applies the batch it returns; `done` is called
    /// exactly once with the result.
    ///
    /// This default reads, then applies, in two steps (the plan's conditions make that safe) and may
    /// block on both. A backend that can run the plan where it applies writes (redb's writer, inside
    /// the group's transaction) overrides it: a read-then-write request then makes one trip instead
    /// of two, and its conditions cannot fail, because nothing can change between its reads and its
    /// batch.
    fn apply_planned(&self, mut plan: Plan, now: Timestamp, done: Reply<Planned>) {
        struct Reads<'a, S: ?Sized> {
            store: &'a S,
            now: Timestamp,
        }
        impl<S: Store + ?Sized> Lookup for Reads<'_, S> {
            fn get(&mut self, ks: Keyspace, key: &[u8]) -> Result<Option<Entry>, StoreError> {
                self.store.get(ks, key, self.now)
            }
        }
        done(plan(&mut Reads { store: self, now }).and_then(|(batch, report)| {
            let outcome = batch.map(|batch| self.apply(batch, now)).transpose()?;
            Ok(Planned { report, outcome })
        }));
    }

    /// Removes up to `limit` entries with `expires_at <= now`; returns how many were removed. It also
    /// clears whatever the backend kept of entries already removed whose time has come (redb's index
    /// rows); those do not count.
    fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<usize, StoreError>;

    /// A time at or before the earliest expiry of any stored entry, live or not yet purged; `None` when
    /// nothing is due ever. It may be the expiry of an entry already removed, until a purge passes that
    /// time (redb leaves a removed entry's index row for the purge); a purge at `t` leaves nothing due
    /// at or before `t`.
    fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError>;

    /// Number of live-or-unpurged entries in a keyspace (for metrics and `lethe bench`).
    fn count(&self, ks: Keyspace) -> Result<u64, StoreError>;

    /// A cheap check that the store can serve reads (for `/ready`).
    fn check(&self) -> Result<(), StoreError>;

    /// Whether the store can commit writes, as far as it knows without trying: false while a backend
    /// is recovering from a failed write (redb reopening its file after an I/O error), so `/ready`
    /// can send traffic elsewhere until it can. Backends that cannot get stuck keep the default.
    fn healthy(&self) -> bool {
        true
    }

    /// Calls `visit` for every live entry of every keyspace, all from one consistent view of the
    /// store (for backups). An error from `visit` stops the walk and is returned.
    fn visit_all(&self, now: Timestamp, visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        let _ = (now, visit);
        Err(StoreError::Io("this backend cannot take a consistent snapshot".into()))
    }
}

/// How [`StoreHandle`] makes a backend's point reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPath {
    /// Reads never wait on I/O (memory): called in place on the runtime.
    InPlace,
    /// Reads may wait on a disk (redb): called on the blocking pool.
    Blocking,
    /// Reads are requests to another process (a networked engine): point reads go through
    /// [`Store::get_then`] and the task awaits the answer, holding no thread. Closures given to
    /// [`StoreHandle::read`] still run on the blocking pool, since they call the blocking methods.
    Callback,
}

/// What a backend tells [`StoreHandle`] about itself.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub reads: ReadPath,
    /// Whether [`Store::apply_planned`] may block the calling thread; [`StoreHandle`] calls it on the
    /// blocking pool if so. True for the trait's two-step default.
    pub plans_block: bool,
    /// Group-commit observations, for backends that commit durably.
    pub commit_metrics: Option<Arc<CommitMetrics>>,
    /// Whether a batch must keep to one [`Group`] (Redis Cluster): the backend refuses one that does
    /// not, and the domain writes what spans groups as separate batches.
    pub one_group: bool,
}

impl Default for Capabilities {
    /// The cautious answer: every call may block, nothing is measured.
    fn default() -> Capabilities {
        Capabilities { reads: ReadPath::Blocking, plans_block: true, commit_metrics: None, one_group: false }
    }
}

/// Group-commit sizes, in batches per transaction.
pub const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
/// Durable commit latency buckets, in seconds.
pub const COMMIT_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];

/// Group-commit observations of a durable store.
#[derive(Debug)]
pub struct CommitMetrics {
    pub group_size: Histogram,
    pub commit_seconds: Histogram,
}

impl Default for CommitMetrics {
    fn default() -> CommitMetrics {
        CommitMetrics {
            group_size: Histogram::new(GROUP_BUCKETS),
            commit_seconds: Histogram::new(COMMIT_BUCKETS),
        }
    }
}

/// The callback of [`Store::visit_all`].
pub type Visitor<'a> = dyn FnMut(Keyspace, &[u8], &Entry) -> Result<(), StoreError> + 'a;

/// Entries per write transaction while copying a backup.
const BACKUP_CHUNK: usize = 1000;

/// Writes a consistent copy of every live entry of `source` to a new redb file at `out`, which must
/// not exist yet; returns its size in bytes. Versions start over at 1 in the copy, which no stored
/// record depends on.
///
/// The copy is written to a temporary file beside `out`, under a random name, created 0600 with
/// `O_CREAT | O_EXCL` (which refuses any existing name, a symbolic link included, dangling or not, and
/// so never follows one), and written through that handle only. It is linked to `out` when complete,
/// which fails rather than replace anything already there, a planted link included; so a failed backup
/// never leaves a half-written file under that name and a backup never writes where a link points.
pub fn backup(
    source: &dyn Store,
    keyspaces: &'static [Keyspace],
    out: &Path,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let io = |err: std::io::Error| StoreError::Io(err.to_string());
    let exists = || StoreError::Io(format!("{} already exists", out.display()));
    // `symlink_metadata`: a link at `out` is an existing name, wherever it points.
    if out.symlink_metadata().is_ok() {
        return Err(exists());
    }
    let file_name =
        out.file_name().ok_or_else(|| StoreError::Io("the backup path has no file name".into()))?;
    let (partial, file) = create_partial(out, file_name)?;
    let result = (|| {
        let target = RedbStore::open_file(file, keyspaces)?;
        let mut batch = Batch::new();
        source.visit_all(now, &mut |ks, key, entry| {
            batch.mutations.push(Mutation::Put {
                ks,
                key: key.to_vec(),
                value: entry.value.clone(),
                expires_at: entry.expires_at,
            });
            if batch.mutations.len() >= BACKUP_CHUNK {
                target.apply(std::mem::take(&mut batch), now)?;
            }
            Ok(())
        })?;
        if !batch.mutations.is_empty() {
            target.apply(batch, now)?;
        }
        // Dropping the store joins its writer and closes the file before it is linked into place.
        drop(target);
        match std::fs::hard_link(&partial, out) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists()),
            // A file system without hard links: rename, which replaces, so look once more first.
            Err(_) if out.symlink_metadata().is_err() => std::fs::rename(&partial, out).map_err(io)?,
            Err(_) => return Err(exists()),
        }
        Ok(std::fs::metadata(out).map_err(io)?.len())
    })();
    let _ = std::fs::remove_file(&partial);
    result
}

/// Creates the temporary file of a backup to `out`: in the same directory (so linking it into place
/// never crosses file systems), named `.<file name>.<128 random bits>.partial`, mode 0600.
fn create_partial(
    out: &Path,
    file_name: &std::ffi::OsStr,
) -> Result<(std::path::PathBuf, std::fs::File), StoreError> {
    use ring::rand::SecureRandom;
    use std::os::unix::fs::OpenOptionsExt;
    let mut random = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| StoreError::Io("the operating system's random number generator failed".into()))?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut name = std::ffi::OsString::from(".");
    name.push(file_name);
    name.push(format!(".{suffix}.partial"));
    let partial = out.with_file_name(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|err| StoreError::Io(format!("{}: {err}", partial.display())))?;
    Ok((partial, file))
}

/// Which backend to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Redb,
    Memory,
    Redis,
}

impl Engine {
    pub const NAMES: &'static str = "redb, memory or redis";
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Engine, String> {
        match s {
            "redb" => Ok(Engine::Redb),
            "memory" => Ok(Engine::Memory),
            "redis" => Ok(Engine::Redis),
            other => Err(format!("unknown engine {other:?}; expected {}", Engine::NAMES)),
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Engine::Redb => "redb",
            Engine::Memory => "memory",
            Engine::Redis => "redis",
        })
    }
}

/// File name of the redb database inside the data directory.
pub const REDB_FILE: &str = "lethe.redb";

/// Opens the chosen backend for `keyspaces`; `redb` keeps its file in `data_dir`. `redis` needs its
/// options: open it with [`open_engine`].
pub fn open(
    engine: Engine,
    data_dir: &Path,
    keyspaces: &'static [Keyspace],
) -> Result<StoreHandle, StoreError> {
    open_engine(engine, data_dir, None, keyspaces).map(|(handle, _)| handle)
}

/// [`open`], also handing back the redb backend itself when that is the engine, for what reads its
/// writer's figures (`lethe bench`).
pub fn open_engine(
    engine: Engine,
    data_dir: &Path,
    redis: Option<&RedisOptions>,
    keyspaces: &'static [Keyspace],
) -> Result<(StoreHandle, Option<Arc<RedbStore>>), StoreError> {
    match engine {
        Engine::Redis => {
            let options =
                redis.ok_or_else(|| StoreError::Io("the redis engine needs its [redis] settings".into()))?;
            Ok((StoreHandle::new(Arc::new(RedisStore::open(options, keyspaces)?)), None))
        }
        Engine::Memory => Ok((StoreHandle::new(Arc::new(MemoryStore::new())), None)),
        Engine::Redb => {
            let redb = Arc::new(RedbStore::open(&data_dir.join(REDB_FILE), keyspaces)?);
            Ok((StoreHandle::new(Arc::clone(&redb) as Arc<dyn Store>), Some(redb)))
        }
    }
}

/// The concrete handle the server holds: cheap to clone, async methods that never block the runtime.
#[derive(Clone)]
pub struct StoreHandle {
    inner: Arc<dyn Store>,
    /// The backend's answer to [`Store::capabilities`], asked once: it cannot change while it runs.
    caps: Arc<Capabilities>,
}

impl fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreHandle")
    }
}

impl StoreHandle {
    pub fn new(store: Arc<dyn Store>) -> StoreHandle {
        let caps = Arc::new(store.capabilities());
        StoreHandle { inner: store, caps }
    }

    /// See [`Store::capabilities`].
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The blocking interface, for callers already off the runtime (CLI, reaper passes, benches).
    pub fn blocking(&self) -> &dyn Store {
        &*self.inner
    }

    /// Runs reads against the store: on the blocking pool when the backend's reads may wait on I/O,
    /// in place when they cannot. Several reads in one closure cost one trip to the pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        match self.caps.reads {
            ReadPath::InPlace => f(&*self.inner),
            ReadPath::Blocking | ReadPath::Callback => self.run(f).await,
        }
    }

    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || f(&*store)).await {
            Ok(result) => result,
            // A panic inside a backend is a bug; re-raise it rather than turning it into a 5xx that
            // hides the cause.
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => Err(StoreError::Closed),
        }
    }

    pub async fn get(&self, ks: Keyspace, key: Vec<u8>, now: Timestamp) -> Result<Option<Entry>, StoreError> {
        if self.caps.reads != ReadPath::Callback {
            return self.read(move |s| s.get(ks, &key, now)).await;
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner.get_then(
            ks,
            &key,
            now,
            Box::new(move |result| {
                let _ = reply.send(result);
            }),
        );
        answer.await.unwrap_or(Err(StoreError::Closed))
    }

    pub async fn scan_prefix(
        &self,
        ks: Keyspace,
        prefix: Vec<u8>,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        self.read(move |s| s.scan_prefix(ks, &prefix, now, limit)).await
    }

    /// Applies a batch; the task waits for the commit, no thread does.
    pub async fn apply(&self, batch: Batch, now: Timestamp) -> Result<Outcome, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner.apply_then(
            batch,
            now,
            Box::new(move |result| {
                // A caller that stopped waiting has nothing to be told.
                let _ = reply.send(result);
            }),
        );
        answer.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Reads and writes in one step where the backend can (see [`Store::apply_planned`]): `plan` reads
    /// through the [`Lookup`] and returns the batch to apply, if any, with a report of type `T` for
    /// the caller. The outcome is `None` when the plan wrote nothing.
    pub async fn apply_planned<T, F>(
        &self,
        now: Timestamp,
        mut plan: F,
    ) -> Result<(T, Option<Outcome>), StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut dyn Lookup) -> Result<(Option<Batch>, T), StoreError> + Send + 'static,
    {
        let plan: Plan = Box::new(move |lookup| {
            plan(lookup).map(|(batch, report)| (batch, Box::new(report) as Box<dyn Any + Send>))
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        let done: Reply<Planned> = Box::new(move |result| {
            let _ = reply.send(result);
        });
        if self.caps.plans_block {
            let store = Arc::clone(&self.inner);
            let ran = tokio::task::spawn_blocking(move || store.apply_planned(plan, now, done)).await;
            if let Err(err) = ran
                && err.is_panic()
            {
                std::panic::resume_unwind(err.into_panic());
            }
        } else {
            self.inner.apply_planned(plan, now, done);
        }
        let planned = answer.await.unwrap_or(Err(StoreError::Closed))?;
        match planned.report.downcast::<T>() {
            Ok(report) => Ok((*report, planned.outcome)),
            // Only this function boxes reports, always as `T`.
            Err(_) => Err(StoreError::Io("a plan's report came back as another type".into())),
        }
    }

    pub async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<usize, StoreError> {
        self.run(move |s| s.purge_expired(now, limit)).await
    }

    pub async fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        self.run(|s| s.next_expiry()).await
    }

    pub async fn count(&self, ks: Keyspace) -> Result<u64, StoreError> {
        self.run(move |s| s.count(ks)).await
    }

    pub async fn check(&self) -> Result<(), StoreError> {
        self.run(|s| s.check()).await
    }

    /// See [`Store::healthy`]; never blocks.
    pub fn healthy(&self) -> bool {
        self.inner.healthy()
    }
}

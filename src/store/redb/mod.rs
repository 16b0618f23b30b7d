//! The redb backend: one file, one table for the keyspaces read by key and one per listed keyspace, an
//! expiry index, and a single writer thread that group-commits every write.
//!
//! Layout. Keyspaces read only by key ([`Keyspace::is_listed`] false: secrets, metadata, attempts,
//! requests) share one table, `records`, keyed `key ‖ keyspace tag`. Their keys lead with a creation
//! sequence, so a v1 secret and its metadata, made together, sit in one B-tree leaf, and a reveal,
//! which takes the one and updates the other, rewrites one leaf rather than one in each of two
//! tables; in A/B runs of `lethe bench` that gave 11–28 % more reveals a second. Listed keyspaces (accounts, an
//! account's recent secrets) keep a table each, named [`Keyspace::name`], so a prefix scan is a range
//! scan. Every row's value is a [`HEADER_LEN`]-byte header (`expires_at` as big-endian u64 with 0
//! meaning never, then `version` as big-endian u64) followed by the value. The `meta` table holds
//! the layout version and the number of entries per keyspace, which the writer updates in every
//! transaction that changes it (one table cannot count two keyspaces for us).
//!
//! The `expiry` table holds one empty-valued row per expiring entry, keyed
//! `expires_at (BE u64) ‖ keyspace tag ‖ key`, so the oldest expiry is the table's first row and a
//! purge is a range scan. An overwrite that changes an entry's expiry moves its index row in the same
//! transaction. A removal (take, delete) leaves the row behind: on a reveal that is one scattered
//! B-tree write fewer per commit, which measured about a fifth more reveals a second. The purge clears
//! such rows when their time comes, and before it removes anything it checks that the entry still
//! expires at the row's time, so a row never removes another generation of its key. Until then
//! [`Store::next_expiry`] may name the time of an entry already gone, which the trait allows.
//!
//! Writes. A durable commit costs about a millisecond, so [`Store::apply`], [`Store::apply_then`] and
//! [`Store::purge_expired`] do not commit themselves: they send a job to the writer thread, and the
//! job's reply is called once its commit is done (`apply_then` returns at once; the others wait). The
//! writer takes every job already waiting, and every job that arrives while those run (up to
//! [`MAX_GROUP`]), runs them in arrival order in one write transaction — each batch checks its
//! conditions against the transaction's current state, so it sees the batches before it — commits
//! once with [`Durability::Immediate`], and only then answers. If any I/O fails, the whole
//! transaction is aborted and every job in it gets the error; none was acknowledged.
//!
//! [`Store::apply_planned`] sends the plan itself as a job: it reads through the group's transaction
//! and its batch is applied at once, so a reveal (read the secret and its metadata, then take the one
//! and update the other) is one trip to the writer rather than a trip to the blocking pool and then
//! one to the writer. A plan that fails or panics fails its own job only, since it has written
//! nothing yet. A plan that writes nothing, run before anything in its group wrote, read committed
//! state only and is answered at once; a group in which nothing wrote is aborted instead of committed,
//! so it costs no flush.
//!
//! Reads use their own read transactions and never wait for the writer.
//!
//! Failures. After an I/O error in a commit (a full disk, say) redb often refuses every later read and
//! write of that handle ("Previous I/O error occurred"), however soon the disk has room again. So after
//! a group fails on I/O the writer stops taking work until a probe commit succeeds: on the same handle
//! if redb did not latch the error, otherwise on the file opened again (taken from readers first,
//! once they let go of it), which rolls it back to its last commit, so nothing acknowledged is lost.
//! It retries with backoff and fails jobs that arrive meanwhile at once rather than hold them.
//! [`Store::healthy`] is false from the failure until the probe succeeds.
//!
//! Files. The database file is created 0600, and tightened to 0600 if an older build left it looser.
//!
//! Memory. redb keeps a page cache (1 GiB by default) that would let a large database grow the
//! process to that size; [`RedbStore::open`] bounds it to [`DEFAULT_CACHE_BYTES`], so resident memory
//! stays small however many secrets are stored (pages not cached are read from the file, which the
//! kernel's page cache serves). [`WriterStats`] counts commits and batches for benches and metrics.
//!
//! A put whose `expires_at` is already `<= now` is applied as a delete, as in the memory backend (which
//! also keeps a 0 expiry from being mistaken for "never" in the header).

use std::borrow::Cow;
use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};

use super::*;

mod writer;
use writer::*;
mod tables;
use tables::*;
#[cfg(test)]
mod tests;

/// Bytes before the value in every stored entry.
const HEADER_LEN: usize = 16;

/// How many index rows one purge pass may clear per entry it may remove: rows left by removals are
/// cleared along the way without counting as removed entries.
const STALE_ROWS_PER_ENTRY: usize = 16;

/// Most jobs in one write transaction, so one commit's latency stays bounded under a flood.
const MAX_GROUP: usize = 1024;

/// First and longest wait between attempts to reopen the database after an I/O error: short enough
/// that an operator who frees space sees the store back within seconds, long enough not to spin.
const REOPEN_FIRST_WAIT: Duration = Duration::from_millis(50);
const REOPEN_MAX_WAIT: Duration = Duration::from_secs(2);

/// How often the writer looks again whether readers have let go of a failed database handle.
const READERS_POLL: Duration = Duration::from_millis(2);

/// The writer thread's name (Linux shows the first 15 bytes of it in `/proc`).
pub const WRITER_THREAD: &str = "lethe-store-writer";

/// redb's page cache, in bytes, unless [`RedbStore::open_with_cache`] says otherwise. Small enough that
/// a million live secrets fit in well under 64 MiB of resident memory; large enough to hold the upper
/// levels of every table's B-tree, which is what lookups touch on every request.
pub const DEFAULT_CACHE_BYTES: usize = 16 * 1024 * 1024;

const EXPIRY: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("expiry");

/// Every keyspace that is not listed, under `key ‖ tag`.
const RECORDS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("records");

/// The layout version (row [`LAYOUT_ROW`]) and entry counts (row [`COUNTS_ROW`]).
const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
const LAYOUT_ROW: &str = "layout";
const COUNTS_ROW: &str = "counts";
/// Written and removed again by [`probe`].
const PROBE_ROW: &str = "probe";
const PROBE_BYTES: usize = 64 * 1024;

/// Bumped whenever stored rows change shape, so that a build never misreads another's file. Version 1
/// (one table per keyspace) had no `meta` table.
const LAYOUT: u8 = 2;

/// Entry counts are kept per keyspace tag; tags are small (see [`Keyspace::tag`]).
const TAGS: usize = 8;

/// The table of a listed keyspace.
fn listed_table(ks: Keyspace) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(ks.name())
}

/// The row key in `records` of an entry of an unlisted keyspace.
fn record_key(ks: Keyspace, key: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(key.len() + 1);
    row.extend_from_slice(key);
    row.push(ks.tag());
    row
}

/// The keyspace and key of a `records` row; `None` for an empty row or an unknown tag.
fn parse_record_key<'a>(row: &'a [u8], keyspaces: &[Keyspace]) -> Option<(Keyspace, &'a [u8])> {
    let (tag, key) = row.split_last()?;
    Some((Keyspace::find(keyspaces, *tag)?, key))
}

/// Entry counts by keyspace tag, as stored in the `counts` row: big-endian u64s, a missing tail
/// meaning zero.
fn decode_counts(bytes: &[u8]) -> [u64; TAGS] {
    let mut counts = [0; TAGS];
    for (count, chunk) in counts.iter_mut().zip(bytes.chunks_exact(8)) {
        *count = u64::from_be_bytes(chunk.try_into().unwrap_or_default());
    }
    counts
}

fn encode_counts(counts: &[u64; TAGS]) -> Vec<u8> {
    counts.iter().flat_map(|c| c.to_be_bytes()).collect()
}

/// Every redb error becomes one of ours here. redb's messages name tables and sizes, never keys.
fn io_error(err: impl Into<::redb::Error>) -> StoreError {
    match err.into() {
        ::redb::Error::DatabaseAlreadyOpen => StoreError::Locked,
        ::redb::Error::Corrupted(msg) => StoreError::Corrupt(msg),
        other => StoreError::Io(other.to_string()),
    }
}

/// The fixed part of a stored entry, read without copying the value: conditions and version bumps
/// need only this.
#[derive(Clone, Copy)]
struct Header {
    version: u64,
    expires_at: Option<Timestamp>,
}

impl Header {
    fn decode(bytes: &[u8]) -> Result<Header, StoreError> {
        let Some((expires, rest)) = bytes.split_first_chunk::<8>() else {
            return Err(StoreError::Corrupt(format!("entry header is {} bytes", bytes.len())));
        };
        let Some((version, _)) = rest.split_first_chunk::<8>() else {
            return Err(StoreError::Corrupt(format!("entry header is {} bytes", bytes.len())));
        };
        let expires_at = match u64::from_be_bytes(*expires) {
            0 => None,
            at => Some(at),
        };
        Ok(Header { version: u64::from_be_bytes(*version), expires_at })
    }

    fn is_live(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }

    /// The stored bytes of an entry with this header and `value`.
    fn encode(&self, value: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + value.len());
        bytes.extend_from_slice(&self.expires_at.unwrap_or(0).to_be_bytes());
        bytes.extend_from_slice(&self.version.to_be_bytes());
        bytes.extend_from_slice(value);
        bytes
    }
}

/// An entry as stored: the decoded header and the value.
struct Stored {
    header: Header,
    value: Vec<u8>,
}

impl Stored {
    fn decode(bytes: &[u8]) -> Result<Stored, StoreError> {
        let header = Header::decode(bytes)?;
        Ok(Stored { header, value: bytes.get(HEADER_LEN..).unwrap_or_default().to_vec() })
    }

    fn is_live(&self, now: Timestamp) -> bool {
        self.header.is_live(now)
    }

    fn into_entry(self) -> Entry {
        Entry { value: self.value, version: self.header.version, expires_at: self.header.expires_at }
    }
}

fn index_key(at: Timestamp, ks: Keyspace, key: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(9 + key.len());
    row.extend_from_slice(&at.to_be_bytes());
    row.push(ks.tag());
    row.extend_from_slice(key);
    row
}

/// Splits an index row into its parts; `None` for a row too short to be one.
fn parse_index_key(row: &[u8]) -> Option<(Timestamp, u8, &[u8])> {
    let (at, rest) = row.split_first_chunk::<8>()?;
    let (tag, key) = rest.split_first()?;
    Some((u64::from_be_bytes(*at), *tag, key))
}

/// A unit of work for the writer thread, with the channel its caller waits on.
enum Job {
    Apply {
        batch: Batch,
        now: Timestamp,
        reply: Reply<Outcome>,
    },
    /// The plan is taken out when it runs, and the reply when it is answered before the commit.
    Plan {
        plan: Option<Plan>,
        now: Timestamp,
        reply: Option<Reply<Planned>>,
    },
    Purge {
        now: Timestamp,
        limit: usize,
        reply: Reply<usize>,
    },
}

/// What a job produced inside the transaction, held until the commit decides whether it stands.
enum Done {
    Apply(Outcome),
    /// A plan that failed before its batch changed anything fails alone; the group goes on.
    Plan(Result<Planned, StoreError>),
    /// A plan already answered (see [`run_jobs`]).
    Answered,
    Purge(usize),
}

/// Where the database comes from, so the writer can open it again after an I/O error.
enum Source {
    File {
        path: PathBuf,
        cache_bytes: usize,
    },
    /// redb's in-memory backend, or a file handed over open: there is nothing to reopen by name.
    Fixed,
}

impl Source {
    fn open(&self) -> Result<Database, StoreError> {
        match self {
            Source::File { path, cache_bytes } => {
                let file = open_private(path)?;
                let backend = ::redb::backends::FileBackend::new(file).map_err(io_error)?;
                Database::builder()
                    .set_cache_size(*cache_bytes)
                    .create_with_backend(backend)
                    .map_err(io_error)
            }
            Source::Fixed => Err(StoreError::Io("this database cannot be reopened".into())),
        }
    }
}

/// Opens (or creates) the database file readable by its owner only. A file an older build left
/// readable by others is tightened: it holds sealed values, but not even its size and growth are
/// anyone else's business.
fn open_private(path: &Path) -> Result<std::fs::File, StoreError> {
    let io = |err: std::io::Error| StoreError::Io(format!("{}: {err}", path.display()));
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path);
    let file = file.map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(mode & 0o700)).map_err(io)?;
    }
    Ok(file)
}

/// The database as readers and the writer share it.
struct Shared {
    /// `None` while the writer reopens the file after an I/O error; readers then fail at once.
    db: RwLock<Option<Arc<Database>>>,
    /// False from a failed write transaction that left redb refusing writes, until the file is
    /// reopened and takes a commit again.
    healthy: AtomicBool,
    /// The keyspaces this store serves, as its owners declared them.
    keyspaces: &'static [Keyspace],
}

impl Shared {
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        match &*self.db.read().unwrap_or_else(PoisonError::into_inner) {
            Some(db) => Ok(Arc::clone(db)),
            None => Err(unavailable()),
        }
    }

    fn set(&self, db: Option<Arc<Database>>) -> Option<Arc<Database>> {
        std::mem::replace(&mut *self.db.write().unwrap_or_else(PoisonError::into_inner), db)
    }
}

/// What callers get while the database is being reopened.
fn unavailable() -> StoreError {
    StoreError::Io("the database is being reopened after an I/O error".into())
}

/// The redb store. Dropping it closes the job channel and joins the writer thread, which finishes the
/// jobs already sent first.
pub struct RedbStore {
    shared: Arc<Shared>,
    /// The only way to write; `None` only while dropping.
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    /// Written by the writer thread only; read by anyone (relaxed counters, no ordering implied).
    stats: Arc<Counters>,
}

/// The writer's running totals. Each counter is updated independently, so a snapshot taken while the
/// writer runs may be one commit out of step between fields.
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    jobs: AtomicU64,
    failed_commits: AtomicU64,
    largest_group: AtomicU64,
    commit_nanos: AtomicU64,
    max_commit_nanos: AtomicU64,
    /// The same commits as histograms, for `/metrics`.
    histograms: Arc<CommitMetrics>,
}

/// A snapshot of the group-commit writer's work since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Write transactions committed (each one durable commit).
    pub commits: u64,
    /// Batches and purges answered through those commits.
    pub jobs: u64,
    /// Transactions that failed and were rolled back; their jobs got the error.
    pub failed_commits: u64,
    /// Most jobs that shared one commit.
    pub largest_group: u64,
    /// Time spent in `commit()` (the durable flush), summed over every commit.
    pub commit_time: Duration,
    /// Slowest single commit.
    pub max_commit_time: Duration,
}

impl WriterStats {
    /// Mean jobs per commit: how much group commit is sharing the cost of a flush.
    pub fn jobs_per_commit(&self) -> f64 {
        if self.commits == 0 { 0.0 } else { self.jobs as f64 / self.commits as f64 }
    }

    /// Mean time of one durable commit.
    pub fn mean_commit_time(&self) -> Duration {
        match u32::try_from(self.commits) {
            Ok(n) if n > 0 => self.commit_time / n,
            _ => Duration::ZERO,
        }
    }

    /// The work done between an earlier snapshot and this one (the maxima are kept as they are).
    pub fn since(&self, earlier: &WriterStats) -> WriterStats {
        WriterStats {
            commits: self.commits.saturating_sub(earlier.commits),
            jobs: self.jobs.saturating_sub(earlier.jobs),
            failed_commits: self.failed_commits.saturating_sub(earlier.failed_commits),
            largest_group: self.largest_group,
            commit_time: self.commit_time.saturating_sub(earlier.commit_time),
            max_commit_time: self.max_commit_time,
        }
    }
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens or creates the database at `path`, creates every table, and starts the writer thread.
    /// Fails with [`StoreError::Locked`] if another process (or another store in this one) has it open.
    pub fn open(path: &Path, keyspaces: &'static [Keyspace]) -> Result<RedbStore, StoreError> {
        RedbStore::open_with_cache(path, DEFAULT_CACHE_BYTES, keyspaces)
    }

    /// [`RedbStore::open`] with redb's page cache bounded to `cache_bytes`.
    pub fn open_with_cache(
        path: &Path,
        cache_bytes: usize,
        keyspaces: &'static [Keyspace],
    ) -> Result<RedbStore, StoreError> {
        let source = Source::File { path: path.to_owned(), cache_bytes };
        RedbStore::start(source.open()?, source, keyspaces)
    }

    /// A new database in `file`, which must be empty, written through that handle only (a backup's
    /// temporary file: nothing reopens it by name). It cannot recover from an I/O error.
    pub fn open_file(file: std::fs::File, keyspaces: &'static [Keyspace]) -> Result<RedbStore, StoreError> {
        let backend = ::redb::backends::FileBackend::new(file).map_err(io_error)?;
        let db = Database::builder().set_cache_size(DEFAULT_CACHE_BYTES).create_with_backend(backend);
        RedbStore::start(db.map_err(io_error)?, Source::Fixed, keyspaces)
    }

    /// The same engine, layout and writer over redb's in-memory backend: nothing survives the store.
    /// For the differential fuzzer, which opens a store per input and compares it with the memory
    /// backend.
    pub fn open_in_memory(keyspaces: &'static [Keyspace]) -> Result<RedbStore, StoreError> {
        let backend = ::redb::backends::InMemoryBackend::new();
        let db = Database::builder().create_with_backend(backend).map_err(io_error)?;
        RedbStore::start(db, Source::Fixed, keyspaces)
    }

    /// Checks the layout, creates every table, and starts the writer thread.
    fn start(db: Database, source: Source, keyspaces: &'static [Keyspace]) -> Result<RedbStore, StoreError> {
        Keyspace::check_all(keyspaces)?;
        RedbStore::prepare(&db, keyspaces)?;
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            healthy: AtomicBool::new(true),
            keyspaces,
        });
        let (jobs, receiver) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let stats = Arc::new(Counters::default());
        let writer_stats = Arc::clone(&stats);
        let writer = std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || writer_loop(&writer_shared, &source, &receiver, &writer_stats))
            .map_err(|err| StoreError::Io(format!("cannot start the writer thread: {err}")))?;
        Ok(RedbStore { shared, jobs: Some(jobs), writer: Some(writer), stats })
    }

    /// Checks the layout of a freshly opened database and creates every table.
    fn prepare(db: &Database, keyspaces: &[Keyspace]) -> Result<(), StoreError> {
        let mut txn = db.begin_write().map_err(io_error)?;
        txn.set_durability(Durability::Immediate).map_err(io_error)?;
        let existing = txn.list_tables().map_err(io_error)?.count();
        {
            let mut meta = txn.open_table(META).map_err(io_error)?;
            let layout = meta.get(LAYOUT_ROW).map_err(io_error)?.map(|v| v.value().to_vec());
            match layout.as_deref() {
                Some([LAYOUT]) => {}
                None if existing == 0 => {
                    meta.insert(LAYOUT_ROW, [LAYOUT].as_slice()).map_err(io_error)?;
                }
                // Opening it as empty would hide every secret in it, and writing would mix two layouts.
                _ => {
                    return Err(StoreError::Corrupt(
                        "the database file was written by another lethe build, in a layout this one cannot read"
                            .into(),
                    ));
                }
            }
        }
        for ks in keyspaces.iter().copied().filter(|ks| ks.is_listed()) {
            txn.open_table(listed_table(ks)).map_err(io_error)?;
        }
        txn.open_table(RECORDS).map_err(io_error)?;
        txn.open_table(EXPIRY).map_err(io_error)?;
        txn.commit().map_err(io_error)
    }

    /// What the group-commit writer has done so far.
    pub fn writer_stats(&self) -> WriterStats {
        let c = &self.stats;
        WriterStats {
            commits: c.commits.load(Ordering::Relaxed),
            jobs: c.jobs.load(Ordering::Relaxed),
            failed_commits: c.failed_commits.load(Ordering::Relaxed),
            largest_group: c.largest_group.load(Ordering::Relaxed),
            commit_time: Duration::from_nanos(c.commit_nanos.load(Ordering::Relaxed)),
            max_commit_time: Duration::from_nanos(c.max_commit_nanos.load(Ordering::Relaxed)),
        }
    }

    /// Bytes of the file in pages that are in use (tables, the expiry index, redb's own bookkeeping).
    /// The file's length says less: redb grows it ahead of use, doubling it until it reaches 4 GiB, so
    /// its growth over a short run is a step, not a rate.
    ///
    /// It walks every table, so it reads the whole database, and it holds the write lock while it does
    /// (commits wait): for benches between phases, not for a serving path.
    pub fn allocated_bytes(&self) -> Result<u64, StoreError> {
        let db = self.shared.db()?;
        let txn = db.begin_write().map_err(io_error)?;
        let stats = txn.stats().map_err(io_error)?;
        txn.abort().map_err(io_error)?;
        let page = u64::try_from(stats.page_size()).unwrap_or(u64::MAX);
        Ok(stats.allocated_pages().saturating_mul(page))
    }

    /// Hands a job to the writer, or answers it with [`StoreError::Closed`] if the writer is gone.
    fn send(&self, job: Job) {
        match &self.jobs {
            Some(jobs) => {
                if let Err(mpsc::SendError(job)) = jobs.send(job) {
                    fail(job, &StoreError::Closed);
                }
            }
            None => fail(job, &StoreError::Closed),
        }
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the store writer thread panicked");
        }
    }
}

fn read_entry(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<Stored>, StoreError> {
    match table.get(key).map_err(io_error)? {
        Some(bytes) => Stored::decode(bytes.value()).map(Some),
        None => Ok(None),
    }
}

impl Store for RedbStore {
    fn get(&self, ks: Keyspace, key: &[u8], now: Timestamp) -> Result<Option<Entry>, StoreError> {
        let db = self.shared.db()?;
        let txn = db.begin_read().map_err(io_error)?;
        let stored = if ks.is_listed() {
            read_entry(&txn.open_table(listed_table(ks)).map_err(io_error)?, key)?
        } else {
            read_entry(&txn.open_table(RECORDS).map_err(io_error)?, &record_key(ks, key))?
        };
        Ok(stored.filter(|s| s.is_live(now)).map(Stored::into_entry))
    }

    fn scan_prefix(
        &self,
        ks: Keyspace,
        prefix: &[u8],
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        let db = self.shared.db()?;
        let txn = db.begin_read().map_err(io_error)?;
        if !ks.is_listed() {
            // Rows of other keyspaces interleave, and `key ‖ tag` does not sort like `key` when one key
            // is a prefix of another, so collect everything under the prefix and sort. Nothing on a
            // request path scans these keyspaces.
            let records = txn.open_table(RECORDS).map_err(io_error)?;
            for row in records.range::<&[u8]>(prefix..).map_err(io_error)? {
                let (row, bytes) = row.map_err(io_error)?;
                if !row.value().starts_with(prefix) {
                    break;
                }
                match parse_record_key(row.value(), self.shared.keyspaces) {
                    Some((row_ks, key)) if row_ks == ks && key.starts_with(prefix) => {
                        let stored = Stored::decode(bytes.value())?;
                        if stored.is_live(now) {
                            found.push((key.to_vec(), stored.into_entry()));
                        }
                    }
                    _ => {}
                }
            }
            found.sort_by(|a, b| a.0.cmp(&b.0));
            found.truncate(limit);
            return Ok(found);
        }
        let table = txn.open_table(listed_table(ks)).map_err(io_error)?;
        for row in table.range::<&[u8]>(prefix..).map_err(io_error)? {
            let (key, bytes) = row.map_err(io_error)?;
            if !key.value().starts_with(prefix) {
                break;
            }
            let stored = Stored::decode(bytes.value())?;
            if stored.is_live(now) {
                found.push((key.value().to_vec(), stored.into_entry()));
                if found.len() >= limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    fn apply(&self, batch: Batch, now: Timestamp) -> Result<Outcome, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.apply_then(
            batch,
            now,
            Box::new(move |result| {
                let _ = reply.send(result);
            }),
        );
        answer.recv().map_err(|_| StoreError::Closed)?
    }

    // Sending on the job channel never blocks, so this is safe on the runtime: the caller's task
    // waits for `reply`, and no thread waits for the commit.
    fn apply_then(&self, batch: Batch, now: Timestamp, reply: Reply<Outcome>) {
        self.send(Job::Apply { batch, now, reply });
    }

    // The plan runs on the writer thread inside the group's transaction, so its reads see every
    // batch before it and nothing can come between them and its batch.
    fn apply_planned(&self, plan: Plan, now: Timestamp, reply: Reply<Planned>) {
        self.send(Job::Plan { plan: Some(plan), now, reply: Some(reply) });
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            reads: ReadPath::Blocking,
            plans_block: false,
            commit_metrics: Some(Arc::clone(&self.stats.histograms)),
            one_group: false,
        }
    }

    fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<usize, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let reply: Reply<usize> = Box::new(move |result| {
            let _ = reply.send(result);
        });
        self.send(Job::Purge { now, limit, reply });
        answer.recv().map_err(|_| StoreError::Closed)?
    }

    fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        let db = self.shared.db()?;
        let txn = db.begin_read().map_err(io_error)?;
        let index = txn.open_table(EXPIRY).map_err(io_error)?;
        match index.first().map_err(io_error)? {
            Some((row, _)) => parse_index_key(row.value())
                .map(|(at, _, _)| Some(at))
                .ok_or_else(|| StoreError::Corrupt("short expiry index row".into())),
            None => Ok(None),
        }
    }

    fn count(&self, ks: Keyspace) -> Result<u64, StoreError> {
        let db = self.shared.db()?;
        let txn = db.begin_read().map_err(io_error)?;
        if ks.is_listed() {
            return txn.open_table(listed_table(ks)).map_err(io_error)?.len().map_err(io_error);
        }
        let meta = txn.open_table(META).map_err(io_error)?;
        let counts = meta.get(COUNTS_ROW).map_err(io_error)?.map(|v| decode_counts(v.value()));
        Ok(counts.and_then(|c| c.get(usize::from(ks.tag())).copied()).unwrap_or(0))
    }

    fn healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), StoreError> {
        let db = self.shared.db()?;
        let txn = db.begin_read().map_err(io_error)?;
        txn.open_table(RECORDS).map_err(io_error)?;
        txn.open_table(EXPIRY).map_err(io_error)?;
        Ok(())
    }

    fn visit_all(&self, now: Timestamp, visit: &mut super::Visitor<'_>) -> Result<(), StoreError> {
        // One read transaction for every table: the visit sees a single committed state, while
        // writers go on committing newer ones.
        let db = self.shared.db()?;
        let txn = db.begin_read().map_err(io_error)?;
        for ks in self.shared.keyspaces.iter().copied().filter(|ks| ks.is_listed()) {
            let table = txn.open_table(listed_table(ks)).map_err(io_error)?;
            for row in table.iter().map_err(io_error)? {
                let (key, bytes) = row.map_err(io_error)?;
                let stored = Stored::decode(bytes.value())?;
                if stored.is_live(now) {
                    visit(ks, key.value(), &stored.into_entry())?;
                }
            }
        }
        let records = txn.open_table(RECORDS).map_err(io_error)?;
        for row in records.iter().map_err(io_error)? {
            let (row, bytes) = row.map_err(io_error)?;
            let Some((ks, key)) = parse_record_key(row.value(), self.shared.keyspaces) else {
                return Err(StoreError::Corrupt("a record row has no keyspace tag".into()));
            };
            let stored = Stored::decode(bytes.value())?;
            if stored.is_live(now) {
                visit(ks, key, &stored.into_entry())?;
            }
        }
        Ok(())
    }
}

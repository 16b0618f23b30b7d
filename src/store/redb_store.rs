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

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};

use super::*;

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
fn parse_record_key(row: &[u8]) -> Option<(Keyspace, &[u8])> {
    let (tag, key) = row.split_last()?;
    Some((Keyspace::from_tag(*tag)?, key))
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
fn io_error(err: impl Into<redb::Error>) -> StoreError {
    match err.into() {
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked,
        redb::Error::Corrupted(msg) => StoreError::Corrupt(msg),
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
                let backend = redb::backends::FileBackend::new(file).map_err(io_error)?;
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
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        RedbStore::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`RedbStore::open`] with redb's page cache bounded to `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<RedbStore, StoreError> {
        let source = Source::File { path: path.to_owned(), cache_bytes };
        RedbStore::start(source.open()?, source)
    }

    /// A new database in `file`, which must be empty, written through that handle only (a backup's
    /// temporary file: nothing reopens it by name). It cannot recover from an I/O error.
    pub fn open_file(file: std::fs::File) -> Result<RedbStore, StoreError> {
        let backend = redb::backends::FileBackend::new(file).map_err(io_error)?;
        let db = Database::builder().set_cache_size(DEFAULT_CACHE_BYTES).create_with_backend(backend);
        RedbStore::start(db.map_err(io_error)?, Source::Fixed)
    }

    /// The same engine, layout and writer over redb's in-memory backend: nothing survives the store.
    /// For the differential fuzzer, which opens a store per input and compares it with the memory
    /// backend.
    pub fn open_in_memory() -> Result<RedbStore, StoreError> {
        let backend = redb::backends::InMemoryBackend::new();
        RedbStore::start(Database::builder().create_with_backend(backend).map_err(io_error)?, Source::Fixed)
    }

    /// Checks the layout, creates every table, and starts the writer thread.
    fn start(db: Database, source: Source) -> Result<RedbStore, StoreError> {
        RedbStore::prepare(&db)?;
        let shared = Arc::new(Shared { db: RwLock::new(Some(Arc::new(db))), healthy: AtomicBool::new(true) });
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
    fn prepare(db: &Database) -> Result<(), StoreError> {
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
        for ks in Keyspace::ALL.into_iter().filter(|ks| ks.is_listed()) {
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
                match parse_record_key(row.value()) {
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
        for ks in Keyspace::ALL.into_iter().filter(|ks| ks.is_listed()) {
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
            let Some((ks, key)) = parse_record_key(row.value()) else {
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

/// What became of a group: its jobs, with what each produced or the error that failed them all.
enum Answer {
    Committed(Vec<Job>, Vec<Done>),
    Failed(Vec<Job>, StoreError),
}

impl Answer {
    /// Calls every job's reply.
    fn deliver(self) {
        match self {
            Answer::Committed(group, done) => {
                for (job, done) in group.into_iter().zip(done) {
                    match (job, done) {
                        (Job::Apply { reply, .. }, Done::Apply(outcome)) => reply(Ok(outcome)),
                        (Job::Plan { reply: Some(reply), .. }, Done::Plan(planned)) => reply(planned),
                        (Job::Plan { reply: None, .. }, Done::Answered) => {}
                        (Job::Purge { reply, .. }, Done::Purge(removed)) => reply(Ok(removed)),
                        (job, _) => fail(job, &StoreError::Io("writer result out of step".into())),
                    }
                }
            }
            Answer::Failed(group, err) => {
                for job in group {
                    fail(job, &err);
                }
            }
        }
    }
}

/// The writer thread: runs until every sender is gone, which happens when the store is dropped.
///
/// Replies are delivered by a second thread. Waking fifty callers takes a fifth of a millisecond,
/// which the writer spends instead on the next group, so a commit's answers and the next group's
/// work overlap on two cores.
fn writer_loop(shared: &Shared, source: &Source, jobs: &mpsc::Receiver<Job>, stats: &Counters) {
    let (answers, delivered) = mpsc::channel::<Answer>();
    std::thread::scope(|scope| {
        let replier = std::thread::Builder::new()
            .name("lethe-store-reply".into())
            .spawn_scoped(scope, move || delivered.into_iter().for_each(Answer::deliver));
        let deliver = |answer: Answer| {
            // Without the reply thread (it could not start, or it died), answer in place.
            if let Err(mpsc::SendError(answer)) = answers.send(answer) {
                answer.deliver();
            }
        };
        if replier.is_err() {
            tracing::warn!("cannot start the store reply thread; the writer answers callers itself");
        }
        while let Ok(first) = jobs.recv() {
            let mut group = vec![first];
            join_waiting(jobs, &mut group);
            // Only this thread takes the database away, and it always puts one back before it gets
            // here; the error is for form's sake.
            let db = match shared.db() {
                Ok(db) => db,
                Err(err) => {
                    deliver(Answer::Failed(group, err));
                    continue;
                }
            };
            match run_group(&db, &mut group, Some(jobs), stats) {
                Ok(done) => deliver(Answer::Committed(group, done)),
                Err(err) => {
                    tracing::warn!(error = %err, jobs = group.len(), "store write transaction failed");
                    // A full or failing disk, as opposed to a record that would not decode. Marked
                    // before the answers go out, so a caller told of the failure finds the store
                    // unhealthy already.
                    let io = matches!(err, StoreError::Io(_)) || refuses_writes(&db);
                    if io {
                        shared.healthy.store(false, Ordering::SeqCst);
                    }
                    deliver(Answer::Failed(group, err));
                    drop(db);
                    if io && !recover(shared, source, jobs) {
                        break;
                    }
                }
            }
        }
        // Closing the channel lets the reply thread finish what is queued; the scope joins it.
        drop(answers);
    });
}

/// Whether redb has latched an I/O error on this handle and refuses every write until it is reopened.
fn refuses_writes(db: &Database) -> bool {
    match db.begin_write() {
        Ok(txn) => {
            let _ = txn.abort();
            false
        }
        Err(_) => true,
    }
}

/// Brings the store back after a write transaction failed on I/O, retrying with backoff; jobs that
/// arrive meanwhile fail at once rather than wait. Returns false if the store was dropped first.
///
/// A handle that still takes writes only has to take a probe commit. One on which redb latched the
/// error is taken from readers and the file opened again, which clears the latch and rolls the file
/// back to its last commit: that holds everything ever acknowledged, since a failed group answered
/// none of its jobs.
fn recover(shared: &Shared, source: &Source, jobs: &mpsc::Receiver<Job>) -> bool {
    let mut wait = REOPEN_FIRST_WAIT * 2;
    let mut attempts = 0u32;
    // A latched handle taken from readers, until the last of them lets go: redb keeps the file (and
    // its lock) open as long as any handle is.
    let mut latched: Option<Arc<Database>> = None;
    // A disk that was full a moment ago rarely has room now: the first attempt waits too.
    if !fail_arrivals(jobs, REOPEN_FIRST_WAIT) {
        return false;
    }
    loop {
        let attempt = match (latched.take(), shared.db()) {
            (Some(db), _) => match Arc::try_unwrap(db) {
                Err(db) => {
                    latched = Some(db);
                    None
                }
                Ok(db) => {
                    drop(db);
                    Some(reopened(source).map(|db| shared.set(Some(Arc::new(db)))).map(drop))
                }
            },
            (None, Ok(db)) if refuses_writes(&db) => {
                latched = shared.set(None);
                continue;
            }
            (None, Ok(db)) => Some(probe(&db)),
            // A reopen failed before: the file is not open at all.
            (None, Err(_)) => Some(reopened(source).map(|db| shared.set(Some(Arc::new(db)))).map(drop)),
        };
        let pause = match attempt {
            None => READERS_POLL,
            Some(Ok(())) => {
                shared.healthy.store(true, Ordering::SeqCst);
                tracing::info!(attempts = attempts + 1, "the store takes writes again");
                return true;
            }
            Some(Err(err)) => {
                attempts += 1;
                // Once per attempt, and attempts back off to seconds: a long outage logs a line every
                // few seconds, not hundreds.
                tracing::warn!(error = %err, attempts, retry_in = ?wait, "the store cannot take writes yet");
                let pause = wait;
                wait = (wait * 2).min(REOPEN_MAX_WAIT);
                pause
            }
        };
        if !fail_arrivals(jobs, pause) {
            return false;
        }
    }
}

/// Fails every job that arrives for `pause`; false if the store was dropped meanwhile.
fn fail_arrivals(jobs: &mpsc::Receiver<Job>, pause: Duration) -> bool {
    let until = Instant::now() + pause;
    loop {
        match jobs.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(job) => fail(job, &unavailable()),
            Err(mpsc::RecvTimeoutError::Timeout) => return true,
            Err(mpsc::RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// The database opened again from `source`, checked, and known to take a commit.
fn reopened(source: &Source) -> Result<Database, StoreError> {
    let db = source.open()?;
    RedbStore::prepare(&db)?;
    probe(&db)?;
    Ok(db)
}

/// Durable commits that write a row of [`PROBE_BYTES`] and remove it again, so a database is known
/// to take a write as large as a big secret: a commit of a few bytes can still fit in the pages of a
/// file whose disk is full.
fn probe(db: &Database) -> Result<(), StoreError> {
    for value in [Some(vec![0; PROBE_BYTES]), None] {
        let mut txn = db.begin_write().map_err(io_error)?;
        txn.set_durability(Durability::Immediate).map_err(io_error)?;
        {
            let mut meta = txn.open_table(META).map_err(io_error)?;
            match &value {
                Some(value) => meta.insert(PROBE_ROW, value.as_slice()).map(drop),
                None => meta.remove(PROBE_ROW).map(drop),
            }
            .map_err(io_error)?;
        }
        txn.commit().map_err(io_error)?;
    }
    Ok(())
}

fn fail(job: Job, err: &StoreError) {
    let copy = || match err {
        StoreError::Io(msg) => StoreError::Io(msg.clone()),
        StoreError::Corrupt(msg) => StoreError::Corrupt(msg.clone()),
        StoreError::Locked => StoreError::Locked,
        StoreError::Closed => StoreError::Closed,
    };
    match job {
        Job::Apply { reply, .. } => reply(Err(copy())),
        Job::Plan { reply: Some(reply), .. } => reply(Err(copy())),
        // Answered before the commit, from committed state alone: that answer stands.
        Job::Plan { reply: None, .. } => {}
        Job::Purge { reply, .. } => reply(Err(copy())),
    }
}

/// Runs every job of a group in one transaction and commits it, unless none of them wrote; on any error
/// nothing is committed.
///
/// Jobs that arrive on `late` while the group runs join it before the commit: otherwise they would
/// wait for this commit and then their own, and the group would be smaller for it.
fn run_group(
    db: &Database,
    group: &mut Vec<Job>,
    late: Option<&mpsc::Receiver<Job>>,
    stats: &Counters,
) -> Result<Vec<Done>, StoreError> {
    let mut txn = db.begin_write().map_err(io_error)?;
    txn.set_durability(Durability::Immediate).map_err(io_error)?;
    let done = match run_jobs(&txn, group, late) {
        Ok((done, true)) => done,
        // Only plans that read and wrote nothing: no commit, so no flush. Their reads saw nothing
        // uncommitted, since no job in the group wrote.
        Ok((done, false)) => {
            txn.abort().map_err(io_error)?;
            return Ok(done);
        }
        Err(err) => {
            // Dropping would abort too; aborting explicitly surfaces nothing new but says what happens.
            let _ = txn.abort();
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            return Err(err);
        }
    };
    let started = Instant::now();
    if let Err(err) = txn.commit() {
        stats.failed_commits.fetch_add(1, Ordering::Relaxed);
        return Err(io_error(err));
    }
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let jobs = group.len() as u64;
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.jobs.fetch_add(jobs, Ordering::Relaxed);
    stats.largest_group.fetch_max(jobs, Ordering::Relaxed);
    stats.commit_nanos.fetch_add(nanos, Ordering::Relaxed);
    stats.max_commit_nanos.fetch_max(nanos, Ordering::Relaxed);
    stats.histograms.group_size.observe(jobs as f64);
    stats.histograms.commit_seconds.observe(nanos as f64 / 1e9);
    Ok(done)
}

/// Runs the group's jobs (and late ones); returns what each produced and whether any of them wrote.
fn run_jobs(
    txn: &WriteTransaction,
    group: &mut Vec<Job>,
    late: Option<&mpsc::Receiver<Job>>,
) -> Result<(Vec<Done>, bool), StoreError> {
    let mut tables = Tables::open(txn)?;
    let mut done = Vec::with_capacity(group.len());
    loop {
        let start = done.len();
        for job in &mut group[start..] {
            done.push(match job {
                Job::Apply { batch, now, .. } => Done::Apply(tables.apply(batch, *now)?),
                Job::Plan { plan, now, reply } => {
                    let planned = tables.plan(plan.take(), *now)?;
                    if tables.wrote {
                        Done::Plan(planned)
                    } else {
                        // Nothing in the transaction is written yet, this plan's batch included, so the
                        // plan read committed state only and changed nothing: its answer needs no
                        // commit. A read-only request (a reusable secret's read, an unknown key) then
                        // waits for no flush, unless a write came before it in its group.
                        if let Some(reply) = reply.take() {
                            reply(planned);
                        }
                        Done::Answered
                    }
                }
                Job::Purge { now, limit, .. } => Done::Purge(tables.purge(*now, *limit)?),
            });
        }
        let before = group.len();
        if let Some(late) = late {
            join_waiting(late, group);
        }
        if group.len() == before {
            tables.finish()?;
            return Ok((done, tables.wrote));
        }
    }
}

/// Adds every job already waiting on `jobs` to `group`, up to [`MAX_GROUP`].
fn join_waiting(jobs: &mpsc::Receiver<Job>, group: &mut Vec<Job>) {
    while group.len() < MAX_GROUP {
        match jobs.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
}

/// The entry a condition is about.
fn target(condition: &Condition) -> (Keyspace, &[u8]) {
    match condition {
        Condition::Absent { ks, key }
        | Condition::Present { ks, key }
        | Condition::Version { ks, key, .. } => (*ks, key),
    }
}

/// Whether `condition` holds for an entry whose header (live or not) is `header`.
fn holds(condition: &Condition, header: Option<Header>, now: Timestamp) -> bool {
    let live = header.filter(|h| h.is_live(now));
    match condition {
        Condition::Absent { .. } => live.is_none(),
        Condition::Present { .. } => live.is_some(),
        Condition::Version { version, .. } => live.is_some_and(|h| h.version == *version),
    }
}

type BytesTable<'txn> = Table<'txn, &'static [u8], &'static [u8]>;

/// The header (`None`: no row) of an entry read in the current transaction.
type Known = (Keyspace, Vec<u8>, Option<Header>);

/// Every table of one write transaction, opened once per group.
struct Tables<'txn> {
    records: BytesTable<'txn>,
    /// The listed keyspaces' tables, in [`Keyspace::ALL`] order.
    listed: Vec<(Keyspace, BytesTable<'txn>)>,
    expiry: BytesTable<'txn>,
    meta: Table<'txn, &'static str, &'static [u8]>,
    /// Entries added minus entries removed in this transaction, by keyspace tag.
    added: [i64; TAGS],
    /// Whether anything was changed: a group of plans that only read has nothing to commit.
    wrote: bool,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Tables<'txn>, StoreError> {
        let mut listed = Vec::new();
        for ks in Keyspace::ALL.into_iter().filter(|ks| ks.is_listed()) {
            listed.push((ks, txn.open_table(listed_table(ks)).map_err(io_error)?));
        }
        Ok(Tables {
            records: txn.open_table(RECORDS).map_err(io_error)?,
            listed,
            expiry: txn.open_table(EXPIRY).map_err(io_error)?,
            meta: txn.open_table(META).map_err(io_error)?,
            added: [0; TAGS],
            wrote: false,
        })
    }

    /// The table an entry of `ks` lives in, and its row key there.
    fn place<'k>(
        &mut self,
        ks: Keyspace,
        key: &'k [u8],
    ) -> Result<(&mut BytesTable<'txn>, Cow<'k, [u8]>), StoreError> {
        if !ks.is_listed() {
            return Ok((&mut self.records, Cow::Owned(record_key(ks, key))));
        }
        self.listed
            .iter_mut()
            .find(|(k, _)| *k == ks)
            .map(|(_, table)| (table, Cow::Borrowed(key)))
            .ok_or_else(|| StoreError::Io(format!("table {} is not open", ks.name())))
    }

    fn counted(&mut self, ks: Keyspace, delta: i64) {
        if let Some(added) = self.added.get_mut(usize::from(ks.tag())) {
            *added += delta;
        }
    }

    /// Writes this transaction's changes to the entry counts, if any.
    fn finish(&mut self) -> Result<(), StoreError> {
        if self.added.iter().all(|&d| d == 0) {
            return Ok(());
        }
        let stored = self.meta.get(COUNTS_ROW).map_err(io_error)?.map(|v| decode_counts(v.value()));
        let mut counts = stored.unwrap_or_default();
        for (count, added) in counts.iter_mut().zip(self.added) {
            *count = count.saturating_add_signed(added);
        }
        self.meta.insert(COUNTS_ROW, encode_counts(&counts).as_slice()).map_err(io_error)?;
        self.added = [0; TAGS];
        Ok(())
    }

    /// The header of the entry under `key`, live or not.
    fn header(&mut self, ks: Keyspace, key: &[u8]) -> Result<Option<Header>, StoreError> {
        let (table, row) = self.place(ks, key)?;
        match table.get(row.as_ref()).map_err(io_error)? {
            Some(bytes) => Header::decode(bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Removes the entry, and returns what `read` makes of its stored bytes if there was one. Its index
    /// row stays for the purge (see the module docs).
    fn remove_with<T>(
        &mut self,
        ks: Keyspace,
        key: &[u8],
        read: impl FnOnce(&[u8]) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let (table, row) = self.place(ks, key)?;
        let old = match table.remove(row.as_ref()).map_err(io_error)? {
            Some(bytes) => Some(read(bytes.value())?),
            None => None,
        };
        if old.is_some() {
            self.counted(ks, -1);
            self.wrote = true;
        }
        Ok(old)
    }

    /// Removes the entry without decoding it.
    fn remove(&mut self, ks: Keyspace, key: &[u8]) -> Result<(), StoreError> {
        self.remove_with(ks, key, |_| Ok(())).map(drop)
    }

    /// Removes the entry and returns what was stored, live or not.
    fn take(&mut self, ks: Keyspace, key: &[u8]) -> Result<Option<Stored>, StoreError> {
        self.remove_with(ks, key, Stored::decode)
    }

    /// Stores `value` under `header`, replacing an entry whose expiry was `old_expiry`.
    fn insert(
        &mut self,
        ks: Keyspace,
        key: &[u8],
        header: Header,
        value: &[u8],
        old_expiry: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        self.wrote = true;
        let (table, row) = self.place(ks, key)?;
        let replaced =
            table.insert(row.as_ref(), header.encode(value).as_slice()).map_err(io_error)?.is_some();
        if !replaced {
            self.counted(ks, 1);
        }
        // An overwrite that keeps its expiry (a metadata state change, say) keeps its index row:
        // two B-tree writes fewer per commit on the hot path.
        if old_expiry != header.expires_at {
            if let Some(at) = old_expiry {
                self.expiry.remove(index_key(at, ks, key).as_slice()).map_err(io_error)?;
            }
            if let Some(at) = header.expires_at {
                self.expiry.insert(index_key(at, ks, key).as_slice(), [].as_slice()).map_err(io_error)?;
            }
        }
        Ok(())
    }

    fn apply(&mut self, batch: &Batch, now: Timestamp) -> Result<Outcome, StoreError> {
        self.apply_knowing(batch, now, &[])
    }

    /// [`Tables::apply`], given the headers of entries read in this transaction since the last write:
    /// a plan's conditions are on what it has just read, and need not look again.
    fn apply_knowing(
        &mut self,
        batch: &Batch,
        now: Timestamp,
        known: &[Known],
    ) -> Result<Outcome, StoreError> {
        // Headers the conditions read, until a mutation changes their key: a put after a condition on
        // its key (every create) then needs no second lookup for its version.
        let mut seen: Vec<(Keyspace, &[u8], Option<Header>)> = Vec::with_capacity(batch.conditions.len());
        for (i, condition) in batch.conditions.iter().enumerate() {
            let (ks, key) = target(condition);
            let header = match known.iter().find(|(k, s, _)| *k == ks && s.as_slice() == key) {
                Some((_, _, header)) => *header,
                None => self.header(ks, key)?,
            };
            seen.push((ks, key, header));
            if !holds(condition, header, now) {
                return Ok(Outcome::Conflict(i));
            }
        }
        let mut taken = Vec::with_capacity(batch.mutations.len());
        for mutation in &batch.mutations {
            taken.push(self.mutate(mutation, now, &mut seen)?);
        }
        Ok(Outcome::Applied(taken))
    }

    fn mutate(
        &mut self,
        mutation: &Mutation,
        now: Timestamp,
        seen: &mut Vec<(Keyspace, &[u8], Option<Header>)>,
    ) -> Result<Option<Entry>, StoreError> {
        // The header a condition saw for this entry, which no longer holds once it is mutated.
        let mut forget = |ks: Keyspace, key: &[u8]| {
            let header = seen.iter().find(|(k, s, _)| *k == ks && *s == key).map(|(_, _, h)| *h);
            seen.retain(|(k, s, _)| !(*k == ks && *s == key));
            header
        };
        match mutation {
            Mutation::Put { ks, key, value, expires_at } => {
                let old = match forget(*ks, key) {
                    Some(header) => header,
                    None => self.header(*ks, key)?,
                };
                let version = old.filter(|h| h.is_live(now)).map_or(1, |h| h.version.saturating_add(1));
                let header = Header { version, expires_at: *expires_at };
                if header.is_live(now) {
                    self.insert(*ks, key, header, value, old.and_then(|h| h.expires_at))?;
                } else {
                    self.remove(*ks, key)?;
                }
                Ok(None)
            }
            Mutation::Delete { ks, key } => {
                forget(*ks, key);
                self.remove(*ks, key)?;
                Ok(None)
            }
            Mutation::Take { ks, key } => {
                forget(*ks, key);
                Ok(self.take(*ks, key)?.filter(|old| old.is_live(now)).map(Stored::into_entry))
            }
        }
    }

    /// Runs a plan and applies its batch. The outer error is the group's (its batch failed part-way);
    /// the inner one is the plan's alone (it failed or panicked before writing anything).
    fn plan(
        &mut self,
        plan: Option<Plan>,
        now: Timestamp,
    ) -> Result<Result<Planned, StoreError>, StoreError> {
        struct Reads<'a, 'txn> {
            tables: &'a mut Tables<'txn>,
            now: Timestamp,
            known: Vec<Known>,
        }
        impl Lookup for Reads<'_, '_> {
            fn get(&mut self, ks: Keyspace, key: &[u8]) -> Result<Option<Entry>, StoreError> {
                let (table, row) = self.tables.place(ks, key)?;
                let stored = read_entry(table, &row)?;
                self.known.push((ks, key.to_vec(), stored.as_ref().map(|s| s.header)));
                Ok(stored.filter(|s| s.is_live(self.now)).map(Stored::into_entry))
            }
        }
        let Some(plan) = plan else {
            return Ok(Err(StoreError::Io("a plan was run twice".into())));
        };
        // The plan is the caller's code on the one thread every write needs: a panic in it must not
        // take the writer down.
        let mut reads = Reads { tables: self, now, known: Vec::new() };
        let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan(&mut reads)));
        let known = reads.known;
        let (batch, report) = match planned {
            Ok(Ok(planned)) => planned,
            Ok(Err(err)) => return Ok(Err(err)),
            Err(_) => return Ok(Err(StoreError::Io("a write plan panicked".into()))),
        };
        let outcome = batch.map(|batch| self.apply_knowing(&batch, now, &known)).transpose()?;
        Ok(Ok(Planned { report, outcome }))
    }

    /// Removes up to `limit` entries due at `now`, oldest expiry first.
    fn purge(&mut self, now: Timestamp, limit: usize) -> Result<usize, StoreError> {
        // Rows of entries already removed do not count against `limit`, but they bound the pass too,
        // so one transaction stays short however many of them are due.
        let max_rows = limit.saturating_mul(STALE_ROWS_PER_ENTRY);
        let mut due = Vec::new();
        for row in self.expiry.iter().map_err(io_error)? {
            if due.len() >= max_rows {
                break;
            }
            let (row, _) = row.map_err(io_error)?;
            let row = row.value().to_vec();
            match parse_index_key(&row) {
                Some((at, _, _)) if at > now => break,
                _ => due.push(row),
            }
        }
        let mut removed = 0;
        for row in due {
            if removed >= limit {
                break;
            }
            if let Some((at, tag, key)) = parse_index_key(&row)
                && let Some(ks) = Keyspace::from_tag(tag)
                && self.header(ks, key)?.is_some_and(|h| h.expires_at == Some(at))
            {
                self.remove(ks, key)?;
                removed += 1;
            }
            // The entry's own row, or a row whose entry is gone or expires at another time now.
            self.expiry.remove(row.as_slice()).map_err(io_error)?;
            self.wrote = true;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    //! Group commit, driven directly: these build a group by hand so that the batches are known to
    //! share one transaction, which racing threads cannot guarantee.

    use super::*;

    const S: Keyspace = Keyspace::Secret;

    fn job(batch: Batch) -> Job {
        Job::Apply { batch, now: 100, reply: Box::new(|_| {}) }
    }

    fn outcomes(done: Vec<Done>) -> Vec<Outcome> {
        done.into_iter()
            .map(|d| match d {
                Done::Apply(outcome) => outcome,
                Done::Plan(_) | Done::Answered | Done::Purge(_) => panic!("only batches were sent"),
            })
            .collect()
    }

    #[test]
    fn a_conflicting_batch_in_a_group_does_not_affect_its_neighbours() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = RedbStore::open(&dir.path().join(REDB_FILE)).expect("open");
        let a = job(Batch::new().require_absent(S, b"a").put(S, b"a", b"1".to_vec(), Some(500)));
        let b = job(Batch::new().put(S, b"b", b"2".to_vec(), Some(400)).require_present(S, b"missing"));
        let c = job(Batch::new().put(S, b"c", b"3".to_vec(), None));
        let done = run_group(&store.shared.db().expect("open"), &mut vec![a, b, c], None, &store.stats)
            .expect("group");
        assert_eq!(
            outcomes(done),
            vec![Outcome::Applied(vec![None]), Outcome::Conflict(0), Outcome::Applied(vec![None])]
        );
        assert!(store.get(S, b"a", 100).expect("get").is_some());
        assert!(store.get(S, b"b", 100).expect("get").is_none());
        assert!(store.get(S, b"c", 100).expect("get").is_some());
        assert_eq!(store.next_expiry().expect("next expiry"), Some(500));
    }

    #[test]
    fn jobs_that_arrive_while_a_group_runs_share_its_commit() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = RedbStore::open(&dir.path().join(REDB_FILE)).expect("open");
        let create =
            |key: &'static [u8]| job(Batch::new().require_absent(S, key).put(S, key, b"v".to_vec(), None));
        let (late, arrivals) = mpsc::channel();
        late.send(create(b"late-1")).expect("send");
        late.send(create(b"late-2")).expect("send");
        let before = store.writer_stats();
        let mut group = vec![create(b"first")];
        let done = outcomes(
            run_group(&store.shared.db().expect("open"), &mut group, Some(&arrivals), &store.stats)
                .expect("group"),
        );
        assert_eq!(done, vec![Outcome::Applied(vec![None]); 3]);
        assert_eq!(group.len(), 3);
        let stats = store.writer_stats().since(&before);
        assert_eq!((stats.commits, stats.jobs), (1, 3));
        assert_eq!(store.count(S).expect("count"), 3);
    }

    #[test]
    fn later_batches_in_a_group_see_the_earlier_ones() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = RedbStore::open(&dir.path().join(REDB_FILE)).expect("open");
        let create = || Batch::new().require_absent(S, b"k").put(S, b"k", b"v".to_vec(), None);
        let first = job(create());
        let second = job(create());
        let take = job(Batch::new().require_version(S, b"k", 1).take(S, b"k"));
        let again = job(Batch::new().require_version(S, b"k", 1).take(S, b"k"));
        let done = outcomes(
            run_group(
                &store.shared.db().expect("open"),
                &mut vec![first, second, take, again],
                None,
                &store.stats,
            )
            .expect("group"),
        );
        assert_eq!(done[0], Outcome::Applied(vec![None]));
        assert_eq!(done[1], Outcome::Conflict(0));
        assert!(matches!(&done[2], Outcome::Applied(slots) if slots[0].is_some()));
        assert_eq!(done[3], Outcome::Conflict(0));
        assert!(store.get(S, b"k", 100).expect("get").is_none());
    }

    fn plan_job(
        plan: impl FnOnce(&mut dyn Lookup) -> Result<Option<Batch>, StoreError> + Send + 'static,
    ) -> Job {
        plan_job_answering(plan, Box::new(|_| {}))
    }

    fn plan_job_answering(
        plan: impl FnOnce(&mut dyn Lookup) -> Result<Option<Batch>, StoreError> + Send + 'static,
        reply: Reply<Planned>,
    ) -> Job {
        let plan: Plan = Box::new(move |lookup| {
            plan(lookup).map(|batch| (batch, Box::new(()) as Box<dyn std::any::Any + Send>))
        });
        Job::Plan { plan: Some(plan), now: 100, reply: Some(reply) }
    }

    #[test]
    fn a_plan_that_fails_or_panics_fails_alone_and_later_plans_see_earlier_batches() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = RedbStore::open(&dir.path().join(REDB_FILE)).expect("open");
        let create = job(Batch::new().put(S, b"a", b"1".to_vec(), None));
        let panics = plan_job(|_| panic!("a plan's bug"));
        let fails = plan_job(|_| Err(StoreError::Corrupt("unreadable".into())));
        // Reads `a`, written by the first job of its own, not yet committed, group.
        let copies = plan_job(|lookup| {
            let entry = lookup.get(S, b"a")?.expect("the earlier batch's entry");
            Ok(Some(Batch::new().put(S, b"b", entry.value, None)))
        });
        let done = run_group(
            &store.shared.db().expect("open"),
            &mut vec![create, panics, fails, copies],
            None,
            &store.stats,
        )
        .expect("the group commits");
        let results: Vec<String> = done
            .iter()
            .map(|d| match d {
                Done::Apply(outcome) | Done::Plan(Ok(Planned { outcome: Some(outcome), .. })) => {
                    format!("{outcome:?}")
                }
                Done::Plan(Err(err)) => err.to_string(),
                Done::Plan(Ok(_)) | Done::Answered | Done::Purge(_) => "unexpected".into(),
            })
            .collect();
        assert_eq!(
            results,
            [
                "Applied([None])",
                "storage I/O error: a write plan panicked",
                "stored record is unreadable: unreadable",
                "Applied([None])",
            ]
        );
        assert_eq!(store.get(S, b"b", 100).expect("get").map(|e| e.value), Some(b"1".to_vec()));
    }

    #[test]
    fn a_plan_that_only_read_committed_state_is_answered_before_the_commit() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = RedbStore::open(&dir.path().join(REDB_FILE)).expect("open");
        let answered = Arc::new(AtomicU64::new(0));
        let counted = |bit: u64| {
            let answered = Arc::clone(&answered);
            plan_job_answering(
                |lookup| lookup.get(S, b"k").map(|_| None),
                Box::new(move |_| {
                    answered.fetch_or(bit, Ordering::SeqCst);
                }),
            )
        };
        let write = job(Batch::new().put(S, b"k", b"v".to_vec(), None));
        // The replies of a group are sent by the writer loop after the commit, which this test never
        // runs: a reply seen here was sent before the commit.
        let done = run_group(
            &store.shared.db().expect("open"),
            &mut vec![counted(1), write, counted(2)],
            None,
            &store.stats,
        )
        .expect("group");
        assert_eq!(answered.load(Ordering::SeqCst), 1, "only the plan before the write is answered");
        assert!(matches!(done[0], Done::Answered));
        assert!(matches!(done[2], Done::Plan(Ok(_))));
    }

    #[test]
    fn a_group_of_plans_that_only_read_is_not_committed() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = RedbStore::open(&dir.path().join(REDB_FILE)).expect("open");
        store.apply(Batch::new().put(S, b"k", b"v".to_vec(), None), 100).expect("apply");
        let before = store.writer_stats();
        let reads = || plan_job(|lookup| lookup.get(S, b"k").map(|_| None));
        // A batch whose condition fails writes nothing either.
        let refused = job(Batch::new().require_absent(S, b"k").put(S, b"k", b"w".to_vec(), None));
        let done = run_group(
            &store.shared.db().expect("open"),
            &mut vec![reads(), refused, reads()],
            None,
            &store.stats,
        )
        .expect("group");
        assert_eq!(done.len(), 3);
        assert_eq!(store.writer_stats().since(&before).commits, 0);
        let written = plan_job(|_| Ok(Some(Batch::new().put(S, b"n", b"v".to_vec(), None))));
        run_group(&store.shared.db().expect("open"), &mut vec![reads(), written], None, &store.stats)
            .expect("group");
        assert_eq!(store.writer_stats().since(&before).commits, 1);
    }

    #[test]
    fn writer_stats_count_every_commit_and_the_batches_it_answered() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = RedbStore::open_with_cache(&dir.path().join(REDB_FILE), 1 << 20).expect("open");
        let before = store.writer_stats();
        assert_eq!(before.commits, 0);
        std::thread::scope(|scope| {
            for t in 0..8u8 {
                let store = &store;
                scope.spawn(move || {
                    for i in 0..10u8 {
                        let key = [t, i];
                        let batch = Batch::new().require_absent(S, key).put(S, key, b"v".to_vec(), None);
                        assert_eq!(store.apply(batch, 100).expect("apply"), Outcome::Applied(vec![None]));
                    }
                });
            }
        });
        let stats = store.writer_stats().since(&before);
        assert_eq!(stats.jobs, 80);
        assert!(stats.commits >= 1 && stats.commits <= 80, "{stats:?}");
        assert!(stats.largest_group >= 1 && stats.jobs_per_commit() >= 1.0);
        assert_eq!(stats.failed_commits, 0);
        assert!(stats.max_commit_time <= stats.commit_time);
        assert_eq!(store.count(S).expect("count"), 80);
    }

    #[test]
    fn allocated_bytes_follow_the_data_while_the_file_only_grows() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(REDB_FILE);
        let store = RedbStore::open_with_cache(&path, 1 << 20).expect("open");
        let empty = store.allocated_bytes().expect("allocated");
        let keys: Vec<[u8; 4]> = (0..2000u32).map(u32::to_be_bytes).collect();
        for chunk in keys.chunks(100) {
            let batch = chunk.iter().fold(Batch::new(), |b, k| b.put(S, *k, vec![7; 400], Some(1000)));
            assert!(matches!(store.apply(batch, 100).expect("apply"), Outcome::Applied(_)));
        }
        let full = store.allocated_bytes().expect("allocated");
        let file = std::fs::metadata(&path).expect("file").len();
        // 2000 values of 400 bytes, plus keys, headers, index rows and page slack.
        assert!(full - empty >= 2000 * 400 && full - empty < 2000 * 1200, "{empty} -> {full}");
        assert!(full <= file, "{full} > {file}");
        for chunk in keys.chunks(100) {
            let batch = chunk.iter().fold(Batch::new(), |b, k| b.delete(S, *k));
            assert!(matches!(store.apply(batch, 100).expect("apply"), Outcome::Applied(_)));
        }
        assert_eq!(store.purge_expired(2000, 10_000).expect("purge"), 0);
        let emptied = store.allocated_bytes().expect("allocated");
        assert!(emptied < empty + (full - empty) / 4, "{empty} -> {full} -> {emptied}");
        assert_eq!(std::fs::metadata(&path).expect("file").len(), file);
        // The write lock it took is released: writes go on.
        let batch = Batch::new().put(S, b"after", b"v".to_vec(), None);
        assert_eq!(store.apply(batch, 100).expect("apply"), Outcome::Applied(vec![None]));
    }

    /// Set in the child that [`a_full_disk_is_an_episode_the_store_recovers_from_without_losing_writes`]
    /// starts in a user and mount namespace when it cannot mount a file system where it runs.
    const IN_NAMESPACE: &str = "LETHE_TEST_IN_MOUNT_NAMESPACE";

    /// Unmounts the small file system when the test ends, however it ends.
    struct Mounted(PathBuf);

    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }

    /// A real full disk: a 4 MiB tmpfs, filled by another file until writes get ENOSPC. redb then
    /// latches the error and refuses every later write of that handle; the store must reopen the file
    /// by itself once space returns, with every acknowledged write still there.
    #[test]
    fn a_full_disk_is_an_episode_the_store_recovers_from_without_losing_writes() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let disk = dir.path().join("disk");
        std::fs::create_dir(&disk).expect("mount point");
        let mount = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "lethe-full-disk-test"])
            .arg(&disk)
            .stderr(std::process::Stdio::null())
            .status();
        if !mount.is_ok_and(|status| status.success()) {
            assert!(
                std::env::var_os(IN_NAMESPACE).is_none(),
                "cannot mount a tmpfs even as root of a new user and mount namespace"
            );
            // Not allowed to mount here: run this same test again as root of a new user and mount
            // namespace, where mounting a tmpfs needs no privilege on the host.
            let name = concat!(
                module_path!(),
                "::a_full_disk_is_an_episode_the_store_recovers_from_without_losing_writes"
            );
            let name = name.split_once("::").map_or(name, |(_, rest)| rest);
            let exe = std::env::current_exe().expect("the test binary");
            let status = std::process::Command::new("unshare")
                .args(["--user", "--map-root-user", "--mount", "--"])
                .arg(exe)
                .args(["--exact", name, "--test-threads=1"])
                .env(IN_NAMESPACE, "1")
                .status()
                .expect("unshare(1) runs (util-linux), to mount a small file system without privilege");
            assert!(status.success(), "the test failed in its own mount namespace: {status}");
            return;
        }
        let _mounted = Mounted(disk.clone());
        let store = RedbStore::open_with_cache(&disk.join(REDB_FILE), 1 << 20).expect("open");
        let create = |i: u32, len: usize| {
            Batch::new().require_absent(S, i.to_be_bytes()).put(S, i.to_be_bytes(), vec![7; len], None)
        };
        let mut acknowledged = Vec::new();
        for i in 0..20 {
            assert!(matches!(store.apply(create(i, 1000), 100), Ok(Outcome::Applied(_))));
            acknowledged.push(i);
        }
        // Another process takes every byte left, and again whenever a failed commit frees some.
        let filler = disk.join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let fill = |file: &mut std::fs::File| while std::io::Write::write_all(file, &[0; 4096]).is_ok() {};
        fill(&mut file);
        let mut failed = false;
        for i in 1000..1500 {
            fill(&mut file);
            match store.apply(create(i, 16 * 1024), 100) {
                Ok(Outcome::Applied(_)) => acknowledged.push(i),
                Ok(Outcome::Conflict(_)) => panic!("a fresh key conflicted"),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "no commit failed on a full disk");
        assert!(!store.healthy(), "a store whose commit failed for lack of space reports it");
        assert!(store.writer_stats().failed_commits >= 1);

        // Space returns; the store must take writes again without being reopened by anyone.
        drop(file);
        std::fs::remove_file(&filler).expect("free the space");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut next = 2000;
        loop {
            match store.apply(create(next, 1000), 100) {
                Ok(Outcome::Applied(_)) => break,
                result => {
                    assert!(Instant::now() < deadline, "the store never recovered: {result:?}");
                    next += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        acknowledged.push(next);
        assert!(store.healthy());
        // A reveal (a take) and a create both work, and every acknowledged write is there.
        let taken = store.apply(Batch::new().take(S, 0u32.to_be_bytes()), 100).expect("take");
        assert!(
            matches!(&taken, Outcome::Applied(slots) if slots[0].as_ref().is_some_and(|e| e.value.len() == 1000))
        );
        acknowledged.retain(|&i| i != 0);
        assert!(matches!(store.apply(create(9999, 10), 100), Ok(Outcome::Applied(_))));
        acknowledged.push(9999);
        drop(store);
        // And durably: a fresh open finds them all.
        let store = RedbStore::open(&disk.join(REDB_FILE)).expect("reopen");
        for i in &acknowledged {
            assert!(
                store.get(S, &i.to_be_bytes(), 100).expect("get").is_some(),
                "acknowledged write {i} was lost"
            );
        }
        assert!(store.get(S, &0u32.to_be_bytes(), 100).expect("get").is_none(), "the take was lost");
        assert_eq!(store.count(S).expect("count"), acknowledged.len() as u64);
    }

    #[test]
    fn the_database_file_is_private_and_a_loose_one_is_tightened() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(REDB_FILE);
        drop(RedbStore::open(&path).expect("open"));
        let mode = || std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode(), 0o600);
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).expect("loosen");
        drop(RedbStore::open(&path).expect("open"));
        assert_eq!(mode(), 0o600);
    }

    #[test]
    fn a_short_entry_header_is_reported_as_corrupt() {
        assert!(matches!(Stored::decode(&[0; HEADER_LEN - 1]), Err(StoreError::Corrupt(_))));
        let header = Header { version: 7, expires_at: Some(9) };
        let decoded = Stored::decode(&header.encode(b"v")).expect("decode").into_entry();
        assert_eq!((decoded.value, decoded.version, decoded.expires_at), (b"v".to_vec(), 7, Some(9)));
        assert_eq!(parse_index_key(&index_key(5, S, b"key")), Some((5, S.tag(), &b"key"[..])));
        assert_eq!(parse_index_key(&[0; 8]), None);
    }
}

//! The writer thread: takes every waiting job, runs the group in one write transaction, commits once,
//! answers every caller; and after an I/O error, recovers the file before it takes work again.

use super::*;

/// What became of a group: its jobs, with what each produced or the error that failed them all.
pub(super) enum Answer {
    Committed(Vec<Job>, Vec<Done>),
    Failed(Vec<Job>, StoreError),
}

impl Answer {
    /// Calls every job's reply.
    pub(super) fn deliver(self) {
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
pub(super) fn writer_loop(shared: &Shared, source: &Source, jobs: &mpsc::Receiver<Job>, stats: &Counters) {
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
            match run_group(&db, shared.keyspaces, &mut group, Some(jobs), stats) {
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
pub(super) fn refuses_writes(db: &Database) -> bool {
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
pub(super) fn recover(shared: &Shared, source: &Source, jobs: &mpsc::Receiver<Job>) -> bool {
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
                    Some(
                        reopened(source, shared.keyspaces).map(|db| shared.set(Some(Arc::new(db)))).map(drop),
                    )
                }
            },
            (None, Ok(db)) if refuses_writes(&db) => {
                latched = shared.set(None);
                continue;
            }
            (None, Ok(db)) => Some(probe(&db)),
            // A reopen failed before: the file is not open at all.
            (None, Err(_)) => {
                Some(reopened(source, shared.keyspaces).map(|db| shared.set(Some(Arc::new(db)))).map(drop))
            }
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
pub(super) fn fail_arrivals(jobs: &mpsc::Receiver<Job>, pause: Duration) -> bool {
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
pub(super) fn reopened(source: &Source, keyspaces: &[Keyspace]) -> Result<Database, StoreError> {
    let db = source.open()?;
    RedbStore::prepare(&db, keyspaces)?;
    probe(&db)?;
    Ok(db)
}

/// Durable commits that write a row of [`PROBE_BYTES`] and remove it again, so a database is known
/// to take a write as large as a big secret: a commit of a few bytes can still fit in the pages of a
/// file whose disk is full.
pub(super) fn probe(db: &Database) -> Result<(), StoreError> {
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

pub(super) fn fail(job: Job, err: &StoreError) {
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
pub(super) fn run_group(
    db: &Database,
    keyspaces: &[Keyspace],
    group: &mut Vec<Job>,
    late: Option<&mpsc::Receiver<Job>>,
    stats: &Counters,
) -> Result<Vec<Done>, StoreError> {
    let mut txn = db.begin_write().map_err(io_error)?;
    txn.set_durability(Durability::Immediate).map_err(io_error)?;
    let done = match run_jobs(&txn, keyspaces, group, late) {
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
pub(super) fn run_jobs(
    txn: &WriteTransaction,
    keyspaces: &[Keyspace],
    group: &mut Vec<Job>,
    late: Option<&mpsc::Receiver<Job>>,
) -> Result<(Vec<Done>, bool), StoreError> {
    let mut tables = Tables::open(txn, keyspaces)?;
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
pub(super) fn join_waiting(jobs: &mpsc::Receiver<Job>, group: &mut Vec<Job>) {
    while group.len() < MAX_GROUP {
        match jobs.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
}

/// The entry a condition is about.
pub(super) fn target(condition: &Condition) -> (Keyspace, &[u8]) {
    match condition {
        Condition::Absent { ks, key }
        | Condition::Present { ks, key }
        | Condition::Version { ks, key, .. } => (*ks, key),
    }
}

/// Whether `condition` holds for an entry whose header (live or not) is `header`.
pub(super) fn holds(condition: &Condition, header: Option<Header>, now: Timestamp) -> bool {
    let live = header.filter(|h| h.is_live(now));
    match condition {
        Condition::Absent { .. } => live.is_none(),
        Condition::Present { .. } => live.is_some(),
        Condition::Version { version, .. } => live.is_some_and(|h| h.version == *version),
    }
}

//! Group commit, driven directly: these build a group by hand so that the batches are known to
//! share one transaction, which racing threads cannot guarantee.

use super::*;

const S: Keyspace = test_keyspaces::SECRET;

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
    let store = RedbStore::open(&dir.path().join(REDB_FILE), test_keyspaces::ALL).expect("open");
    let a = job(Batch::new().require_absent(S, b"a").put(S, b"a", b"1".to_vec(), Some(500)));
    let b = job(Batch::new().put(S, b"b", b"2".to_vec(), Some(400)).require_present(S, b"missing"));
    let c = job(Batch::new().put(S, b"c", b"3".to_vec(), None));
    let done = run_group(
        &store.shared.db().expect("open"),
        store.shared.keyspaces,
        &mut vec![a, b, c],
        None,
        &store.stats,
    )
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
    let store = RedbStore::open(&dir.path().join(REDB_FILE), test_keyspaces::ALL).expect("open");
    let create =
        |key: &'static [u8]| job(Batch::new().require_absent(S, key).put(S, key, b"v".to_vec(), None));
    let (late, arrivals) = mpsc::channel();
    late.send(create(b"late-1")).expect("send");
    late.send(create(b"late-2")).expect("send");
    let before = store.writer_stats();
    let mut group = vec![create(b"first")];
    let done = outcomes(
        run_group(
            &store.shared.db().expect("open"),
            store.shared.keyspaces,
            &mut group,
            Some(&arrivals),
            &store.stats,
        )
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
    let store = RedbStore::open(&dir.path().join(REDB_FILE), test_keyspaces::ALL).expect("open");
    let create = || Batch::new().require_absent(S, b"k").put(S, b"k", b"v".to_vec(), None);
    let first = job(create());
    let second = job(create());
    let take = job(Batch::new().require_version(S, b"k", 1).take(S, b"k"));
    let again = job(Batch::new().require_version(S, b"k", 1).take(S, b"k"));
    let done = outcomes(
        run_group(
            &store.shared.db().expect("open"),
            store.shared.keyspaces,
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

fn plan_job(plan: impl FnMut(&mut dyn Lookup) -> Result<Option<Batch>, StoreError> + Send + 'static) -> Job {
    plan_job_answering(plan, Box::new(|_| {}))
}

fn plan_job_answering(
    mut plan: impl FnMut(&mut dyn Lookup) -> Result<Option<Batch>, StoreError> + Send + 'static,
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
    let store = RedbStore::open(&dir.path().join(REDB_FILE), test_keyspaces::ALL).expect("open");
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
        store.shared.keyspaces,
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
    let store = RedbStore::open(&dir.path().join(REDB_FILE), test_keyspaces::ALL).expect("open");
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
        store.shared.keyspaces,
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
    let store = RedbStore::open(&dir.path().join(REDB_FILE), test_keyspaces::ALL).expect("open");
    store.apply(Batch::new().put(S, b"k", b"v".to_vec(), None), 100).expect("apply");
    let before = store.writer_stats();
    let reads = || plan_job(|lookup| lookup.get(S, b"k").map(|_| None));
    // A batch whose condition fails writes nothing either.
    let refused = job(Batch::new().require_absent(S, b"k").put(S, b"k", b"w".to_vec(), None));
    let done = run_group(
        &store.shared.db().expect("open"),
        store.shared.keyspaces,
        &mut vec![reads(), refused, reads()],
        None,
        &store.stats,
    )
    .expect("group");
    assert_eq!(done.len(), 3);
    assert_eq!(store.writer_stats().since(&before).commits, 0);
    let written = plan_job(|_| Ok(Some(Batch::new().put(S, b"n", b"v".to_vec(), None))));
    run_group(
        &store.shared.db().expect("open"),
        store.shared.keyspaces,
        &mut vec![reads(), written],
        None,
        &store.stats,
    )
    .expect("group");
    assert_eq!(store.writer_stats().since(&before).commits, 1);
}

#[test]
fn writer_stats_count_every_commit_and_the_batches_it_answered() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store =
        RedbStore::open_with_cache(&dir.path().join(REDB_FILE), 1 << 20, test_keyspaces::ALL).expect("open");
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
    let store = RedbStore::open_with_cache(&path, 1 << 20, test_keyspaces::ALL).expect("open");
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
    let store =
        RedbStore::open_with_cache(&disk.join(REDB_FILE), 1 << 20, test_keyspaces::ALL).expect("open");
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
    let store = RedbStore::open(&disk.join(REDB_FILE), test_keyspaces::ALL).expect("reopen");
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
    drop(RedbStore::open(&path, test_keyspaces::ALL).expect("open"));
    let mode = || std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
    assert_eq!(mode(), 0o600);
    std::fs::set_permissions(&path, Permissions::from_mode(0o644)).expect("loosen");
    drop(RedbStore::open(&path, test_keyspaces::ALL).expect("open"));
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

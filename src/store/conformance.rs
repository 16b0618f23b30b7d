//! The conformance suite: every guarantee of the [`Store`] contract, checked against every backend.
//!
//! Each test is a plain function of a store; the `conformance!` macro instantiates it once per backend,
//! so a new backend gets the whole suite by adding one line to the macro (and one to `plans!`, which
//! also runs the plan tests through the trait's two-step default). Backend-specific behaviour
//! (reopening a file, locking) has its own tests at the end.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use super::*;

const S: Keyspace = test_keyspaces::SECRET;
const M: Keyspace = test_keyspaces::METADATA;
const NOW: Timestamp = 1_000;

/// A store under test and whatever must outlive it (the temporary directory of a file backend).
struct Fixture {
    // Declared first so it is dropped (and the redb writer joined) before the directory goes.
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    /// The `redis-server` of a Redis fixture, killed when the fixture goes.
    _redis: Option<redis_server::RedisServer>,
    /// The three masters of a Redis Cluster fixture, killed when the fixture goes.
    _cluster: Option<redis_server::RedisCluster>,
}

#[path = "../../tests/support/redis.rs"]
mod redis_server;

fn memory() -> Fixture {
    Fixture { store: Arc::new(MemoryStore::new()), _dir: None, _redis: None, _cluster: None }
}

fn redb() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = RedbStore::open(&dir.path().join(REDB_FILE), test_keyspaces::ALL).expect("open redb");
    Fixture { store: Arc::new(store), _dir: Some(dir), _redis: None, _cluster: None }
}

fn redis() -> Fixture {
    let server = redis_server::RedisServer::start();
    let options = RedisOptions {
        urls: vec![server.url()],
        cluster: false,
        key_prefix: "lethe-test:".into(),
        password: None,
        accept_weaker_durability: false,
        key_check: None,
        team_key_check: None,
        ca_certs: None,
    };
    let store = RedisStore::open(&options, test_keyspaces::ALL).expect("open redis");
    Fixture { store: Arc::new(store), _dir: None, _redis: Some(server), _cluster: None }
}

/// A store on a fresh local three-master Redis Cluster.
fn redis_cluster() -> Fixture {
    let cluster = redis_server::RedisCluster::start();
    let store = RedisStore::open(&cluster_options(&cluster), test_keyspaces::ALL).expect("open the cluster");
    Fixture { store: Arc::new(store), _dir: None, _redis: None, _cluster: Some(cluster) }
}

fn cluster_options(cluster: &redis_server::RedisCluster) -> RedisOptions {
    RedisOptions {
        urls: cluster.urls(),
        cluster: true,
        key_prefix: "lethe-test:".into(),
        password: None,
        accept_weaker_durability: false,
        key_check: Some("check".into()),
        team_key_check: None,
        ca_certs: None,
    }
}

/// A module of tests, each a suite function run on a fresh store from `$fixture`.
macro_rules! suite {
    ($module:ident = $fixture:ident; $($name:ident),* $(,)?) => {
        mod $module {
            $(#[test] fn $name() { super::$name(&super::$fixture().store) })*
        }
    };
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        suite!(memory_backend = memory; $($name),*);
        suite!(redb_backend = redb; $($name),*);
        suite!(redis_backend = redis; $($name),*);
        suite!(redis_cluster_backend = redis_cluster; $($name),*);
    };
}

conformance!(
    put_then_get_returns_the_value_at_version_one,
    each_put_of_a_live_key_increments_its_version,
    a_key_deleted_and_put_again_starts_over_at_version_one,
    a_key_put_again_after_it_expired_starts_over_at_version_one,
    an_expired_entry_is_absent_to_get_and_scan_before_any_purge,
    an_expired_entry_satisfies_absent_and_fails_present_and_version,
    take_of_an_expired_entry_returns_none_and_removes_it,
    a_put_that_is_already_expired_stores_nothing,
    a_failing_condition_in_the_middle_changes_nothing,
    conflict_reports_the_index_of_the_first_failing_condition,
    take_returns_the_old_entry_and_then_the_key_is_gone,
    deleting_an_absent_key_is_not_an_error,
    the_outcome_has_one_slot_per_mutation,
    mutations_of_one_batch_apply_in_order,
    puts_after_conditions_on_their_key_count_versions_from_each_other,
    keyspaces_do_not_share_keys,
    prefix_scan_is_ordered_limited_and_stops_at_the_prefix_boundary,
    prefix_scan_skips_expired_entries_without_counting_them_against_the_limit,
    an_empty_prefix_scans_the_whole_keyspace,
    prefix_scan_sees_only_its_own_keyspace,
    concurrent_version_conditioned_takes_of_one_key_have_exactly_one_winner,
    concurrent_creates_of_one_key_have_exactly_one_winner,
    check_succeeds_on_an_open_store,
    many_concurrent_batches_from_several_threads_are_all_applied,
    concurrent_conflicting_batches_do_not_affect_their_neighbours,
);

/// What only backends that keep their own expiry index and can copy themselves consistently do: purge
/// in bounded passes and take a snapshot. Redis expires entries itself and is backed up by its own
/// persistence; `redis_has_nothing_to_purge_and_refuses_a_snapshot` pins what it does instead.
macro_rules! embedded {
    ($($name:ident),* $(,)?) => {
        suite!(memory_embedded = memory; $($name),*);
        suite!(redb_embedded = redb; $($name),*);
    };
}

embedded!(
    count_counts_unpurged_entries_per_keyspace,
    purge_removes_exactly_the_expired_entries_after_overwrites_deletes_and_takes,
    next_expiry_is_never_late_and_exact_after_a_purge,
    a_key_re_put_with_a_later_expiry_is_not_purged_at_its_old_expiry,
    purge_removes_at_most_limit_entries_and_repeated_passes_remove_all,
    removed_entries_do_not_use_up_a_purge_pass,
    visit_all_sees_every_live_entry_of_every_keyspace_once,
);

/// Plans run natively in each backend, and once more through the trait's two-step default.
macro_rules! plans {
    ($($name:ident),* $(,)?) => {
        suite!(memory_plans = memory; $($name),*);
        suite!(redb_plans = redb; $($name),*);
        suite!(redis_plans = redis; $($name),*);
        suite!(redis_cluster_plans = redis_cluster; $($name),*);
        suite!(two_step_plans = two_step; $($name),*);
    };
}

plans!(
    a_plan_reads_the_store_and_applies_its_batch,
    a_plan_that_returns_no_batch_changes_nothing,
    a_plan_sees_expired_entries_as_absent,
    a_failing_plan_changes_nothing_and_reports_its_error,
    concurrent_plans_taking_one_key_have_exactly_one_winner,
);

/// Any backend with [`Store::apply_planned`] left at the trait's two-step default and point reads
/// answered on another thread through [`Store::get_then`]: the path a backend without a single writer
/// whose reads are network calls (a networked engine) would take.
struct TwoStep(Arc<dyn Store>);

impl Store for TwoStep {
    fn get(&self, ks: Keyspace, key: &[u8], now: Timestamp) -> Result<Option<Entry>, StoreError> {
        self.0.get(ks, key, now)
    }

    fn scan_prefix(
        &self,
        ks: Keyspace,
        prefix: &[u8],
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        self.0.scan_prefix(ks, prefix, now, limit)
    }

    fn apply(&self, batch: Batch, now: Timestamp) -> Result<Outcome, StoreError> {
        self.0.apply(batch, now)
    }

    fn apply_then(&self, batch: Batch, now: Timestamp, done: Reply<Outcome>) {
        self.0.apply_then(batch, now, done);
    }

    fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<usize, StoreError> {
        self.0.purge_expired(now, limit)
    }

    fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        self.0.next_expiry()
    }

    fn count(&self, ks: Keyspace) -> Result<u64, StoreError> {
        self.0.count(ks)
    }

    fn check(&self) -> Result<(), StoreError> {
        self.0.check()
    }

    // As a network reply would: the answer comes from a thread the caller does not wait on.
    fn get_then(&self, ks: Keyspace, key: &[u8], now: Timestamp, done: Reply<Option<Entry>>) {
        let (store, key) = (Arc::clone(&self.0), key.to_vec());
        std::thread::spawn(move || done(store.get(ks, &key, now)));
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { reads: ReadPath::Callback, plans_block: true, commit_metrics: None, one_group: false }
    }
}

/// A [`ReadPath::Callback`] backend's point read holds no thread while it waits: it completes while
/// the blocking pool is full.
#[test]
fn a_callback_backends_reads_complete_with_the_blocking_pool_full() {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_time().max_blocking_threads(1).build().unwrap();
    rt.block_on(async {
        let handle = StoreHandle::new(Arc::new(TwoStep(memory().store)));
        let mut batch = Batch::new();
        batch.mutations.push(Mutation::Put {
            ks: test_keyspaces::SECRET,
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            expires_at: None,
        });
        assert!(matches!(handle.apply(batch, 1).await.unwrap(), Outcome::Applied(_)));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let occupant = tokio::task::spawn_blocking(move || {
            let _ = started_tx.send(());
            let _ = held.recv();
        });
        started.await.unwrap();
        let read = tokio::time::timeout(
            Duration::from_secs(30),
            handle.get(test_keyspaces::SECRET, b"k".to_vec(), 1),
        )
        .await;
        let _ = release.send(());
        occupant.await.unwrap();
        let entry = read.expect("the read waited for a blocking thread").unwrap().unwrap();
        assert_eq!(entry.value, b"v");
    });
}

/// A backend is opened with its owners' keyspaces; a list in which two share a tag or a name would
/// mix their records, so it is refused.
#[test]
fn a_keyspace_list_with_a_shared_tag_or_name_is_refused() {
    const CLASH_TAG: &[Keyspace] = &[Keyspace::point(1, "one"), Keyspace::listed(1, "two")];
    const CLASH_NAME: &[Keyspace] = &[Keyspace::point(1, "one"), Keyspace::point(2, "one")];
    const TOO_HIGH: &[Keyspace] = &[Keyspace::point(8, "eight")];
    for list in [CLASH_TAG, CLASH_NAME, TOO_HIGH] {
        assert!(RedbStore::open_in_memory(list).is_err(), "{list:?}");
    }
    assert!(RedbStore::open_in_memory(test_keyspaces::ALL).is_ok());
}

/// The memory backend behind [`TwoStep`].
fn two_step() -> Fixture {
    Fixture { store: Arc::new(TwoStep(memory().store)), _dir: None, _redis: None, _cluster: None }
}

/// Runs `plan` through [`Store::apply_planned`] and waits for its answer; the report is what the plan
/// read under `key`.
fn planned(
    store: &Arc<dyn Store>,
    now: Timestamp,
    mut plan: impl FnMut(&mut dyn Lookup) -> Result<Option<Batch>, StoreError> + Send + 'static,
    key: &'static [u8],
) -> Result<(Option<Entry>, Option<Outcome>), StoreError> {
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    let plan: Plan = Box::new(move |lookup| {
        let read = lookup.get(S, key)?;
        let batch = plan(lookup)?;
        Ok((batch, Box::new(read) as Box<dyn std::any::Any + Send>))
    });
    store.apply_planned(
        plan,
        now,
        Box::new(move |result| {
            let _ = reply.send(result);
        }),
    );
    let planned = answer.recv().expect("the plan was answered")?;
    let read = *planned.report.downcast::<Option<Entry>>().expect("the report the plan made");
    Ok((read, planned.outcome))
}

fn a_plan_reads_the_store_and_applies_its_batch(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"from k", Some(NOW + 60));
    let (read, outcome) = planned(
        store,
        NOW,
        |lookup| {
            let Some(entry) = lookup.get(S, b"k")? else { return Ok(None) };
            Ok(Some(Batch::new().require_version(S, b"k", entry.version).take(S, b"k").put(
                M,
                b"copy",
                entry.value,
                None,
            )))
        },
        b"k",
    )
    .expect("planned");
    assert_eq!(read.map(|e| e.value), Some(b"from k".to_vec()));
    let Some(Outcome::Applied(slots)) = outcome else { panic!("applied: {outcome:?}") };
    assert_eq!(slots[0].as_ref().map(|e| e.value.as_slice()), Some(&b"from k"[..]));
    assert_eq!(get(store, S, b"k", NOW), None);
    assert_eq!(get(store, M, b"copy", NOW).map(|e| e.value), Some(b"from k".to_vec()));
}

fn a_plan_that_returns_no_batch_changes_nothing(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"v", None);
    let (read, outcome) = planned(store, NOW, |_| Ok(None), b"k").expect("planned");
    assert_eq!(read.map(|e| e.version), Some(1));
    assert_eq!(outcome, None);
    assert_eq!(get(store, S, b"k", NOW).map(|e| e.version), Some(1));
}

fn a_plan_sees_expired_entries_as_absent(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"v", Some(NOW + 10));
    let (read, _) = planned(store, NOW + 10, |_| Ok(None), b"k").expect("planned");
    assert_eq!(read, None);
    let (read, _) = planned(store, NOW + 9, |_| Ok(None), b"k").expect("planned");
    assert!(read.is_some());
}

fn a_failing_plan_changes_nothing_and_reports_its_error(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"v", None);
    let result = planned(store, NOW, |_| Err(StoreError::Corrupt("the plan's own failure".into())), b"k");
    assert!(matches!(result, Err(StoreError::Corrupt(msg)) if msg == "the plan's own failure"));
    assert_eq!(get(store, S, b"k", NOW).map(|e| e.version), Some(1));
    // The store goes on serving writes.
    put(store, S, b"after", b"v", None);
}

fn concurrent_plans_taking_one_key_have_exactly_one_winner(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"once", Some(NOW + 60));
    let start = Barrier::new(CONTENDERS);
    let outcomes: Vec<_> = thread::scope(|scope| {
        let handles: Vec<_> = (0..CONTENDERS)
            .map(|_| {
                let (start, store) = (&start, Arc::clone(store));
                scope.spawn(move || {
                    start.wait();
                    let take = |lookup: &mut dyn Lookup| {
                        let entry = lookup.get(S, b"k")?;
                        Ok(entry.map(|e| Batch::new().require_version(S, b"k", e.version).take(S, b"k")))
                    };
                    planned(&store, NOW, take, b"k").expect("planned").1
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("contender")).collect()
    });
    let winners =
        outcomes.iter().filter(|o| matches!(o, Some(Outcome::Applied(slots)) if slots[0].is_some())).count();
    assert_eq!(winners, 1, "{outcomes:?}");
    // The others found the key gone, or (two steps) lost the race on its version.
    assert!(outcomes.iter().all(|o| matches!(o, Some(Outcome::Applied(_) | Outcome::Conflict(0)) | None)));
    assert_eq!(get(store, S, b"k", NOW), None);
}

fn visit_all_sees_every_live_entry_of_every_keyspace_once(store: &Arc<dyn Store>) {
    put(store, test_keyspaces::SECRET, b"s1", b"one", Some(NOW + 10));
    put(store, test_keyspaces::SECRET, b"s2", b"expired", Some(NOW + 1));
    put(store, test_keyspaces::METADATA, b"m1", b"meta", None);
    put(store, test_keyspaces::ACCOUNT, b"a1", b"acct", None);
    let mut seen = Vec::new();
    store
        .visit_all(NOW + 1, &mut |ks, key, entry| {
            seen.push((ks, key.to_vec(), entry.value.clone(), entry.expires_at));
            Ok(())
        })
        .expect("visit");
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (test_keyspaces::SECRET, b"s1".to_vec(), b"one".to_vec(), Some(NOW + 10)),
            (test_keyspaces::METADATA, b"m1".to_vec(), b"meta".to_vec(), None),
            (test_keyspaces::ACCOUNT, b"a1".to_vec(), b"acct".to_vec(), None),
        ]
    );
    // An error from the visitor stops the walk and comes back.
    let mut calls = 0;
    let stopped = store.visit_all(NOW, &mut |_, _, _| {
        calls += 1;
        Err(StoreError::Io("stop".into()))
    });
    assert!(matches!(stopped, Err(StoreError::Io(_))));
    assert_eq!(calls, 1);
}

fn put(store: &Arc<dyn Store>, ks: Keyspace, key: &[u8], value: &[u8], expires_at: Option<Timestamp>) {
    let outcome = store.apply(Batch::new().put(ks, key, value.to_vec(), expires_at), NOW).expect("apply");
    assert_eq!(outcome, Outcome::Applied(vec![None]));
}

fn apply(store: &Arc<dyn Store>, batch: Batch, now: Timestamp) -> Outcome {
    store.apply(batch, now).expect("apply")
}

fn get(store: &Arc<dyn Store>, ks: Keyspace, key: &[u8], now: Timestamp) -> Option<Entry> {
    store.get(ks, key, now).expect("get")
}

fn keys(found: &[(Vec<u8>, Entry)]) -> Vec<Vec<u8>> {
    found.iter().map(|(key, _)| key.clone()).collect()
}

fn put_then_get_returns_the_value_at_version_one(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"value", Some(NOW + 60));
    let entry = get(store, S, b"k", NOW).expect("present");
    assert_eq!(entry, Entry { value: b"value".to_vec(), version: 1, expires_at: Some(NOW + 60) });
    assert_eq!(get(store, S, b"other", NOW), None);
}

fn each_put_of_a_live_key_increments_its_version(store: &Arc<dyn Store>) {
    for expected in 1..=3 {
        put(store, S, b"k", format!("v{expected}").as_bytes(), None);
        let entry = get(store, S, b"k", NOW).expect("present");
        assert_eq!(entry.version, expected);
        assert_eq!(entry.value, format!("v{expected}").into_bytes());
        assert_eq!(entry.expires_at, None);
    }
}

fn a_key_deleted_and_put_again_starts_over_at_version_one(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"a", None);
    put(store, S, b"k", b"b", None);
    assert_eq!(apply(store, Batch::new().delete(S, b"k"), NOW), Outcome::Applied(vec![None]));
    put(store, S, b"k", b"c", None);
    assert_eq!(get(store, S, b"k", NOW).expect("present").version, 1);
}

fn a_key_put_again_after_it_expired_starts_over_at_version_one(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"a", Some(NOW + 10));
    put(store, S, b"k", b"b", Some(NOW + 10));
    let later = NOW + 10;
    apply(store, Batch::new().put(S, b"k", b"c".to_vec(), None), later);
    assert_eq!(get(store, S, b"k", later).expect("present").version, 1);
}

fn an_expired_entry_is_absent_to_get_and_scan_before_any_purge(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"v", Some(NOW + 10));
    assert!(get(store, S, b"k", NOW + 9).is_some());
    // Expiry is inclusive: at `expires_at` the entry is gone.
    assert_eq!(get(store, S, b"k", NOW + 10), None);
    assert_eq!(get(store, S, b"k", NOW + 1_000), None);
    assert!(store.scan_prefix(S, b"k", NOW + 10, 10).expect("scan").is_empty());
    assert_eq!(store.scan_prefix(S, b"k", NOW + 9, 10).expect("scan").len(), 1);
}

fn an_expired_entry_satisfies_absent_and_fails_present_and_version(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"v", Some(NOW + 10));
    let later = NOW + 10;
    assert_eq!(apply(store, Batch::new().require_present(S, b"k"), later), Outcome::Conflict(0));
    assert_eq!(apply(store, Batch::new().require_version(S, b"k", 1), later), Outcome::Conflict(0));
    assert_eq!(apply(store, Batch::new().require_absent(S, b"k"), later), Outcome::Applied(vec![]));
    // Before expiry the same conditions go the other way.
    assert_eq!(apply(store, Batch::new().require_absent(S, b"k"), NOW), Outcome::Conflict(0));
    assert_eq!(apply(store, Batch::new().require_version(S, b"k", 1), NOW), Outcome::Applied(vec![]));
}

fn take_of_an_expired_entry_returns_none_and_removes_it(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"v", Some(NOW + 10));
    assert_eq!(apply(store, Batch::new().take(S, b"k"), NOW + 10), Outcome::Applied(vec![None]));
    // Gone even for a reader whose clock is behind.
    assert_eq!(get(store, S, b"k", NOW), None);
    assert_eq!(store.count(S).expect("count"), 0);
    // A backend may still name its expiry until a purge passes it; nothing is left to remove.
    assert!(store.next_expiry().expect("next expiry").is_none_or(|at| at <= NOW + 10));
    assert_eq!(store.purge_expired(NOW + 10, 10).expect("purge"), 0);
    assert_eq!(store.next_expiry().expect("next expiry"), None);
}

fn a_put_that_is_already_expired_stores_nothing(store: &Arc<dyn Store>) {
    put(store, S, b"old", b"v", None);
    apply(store, Batch::new().put(S, b"old", b"w".to_vec(), Some(NOW)), NOW);
    apply(store, Batch::new().put(S, b"new", b"w".to_vec(), Some(0)), NOW);
    assert_eq!(get(store, S, b"old", 0), None);
    assert_eq!(get(store, S, b"new", 0), None);
    assert_eq!(store.count(S).expect("count"), 0);
    assert_eq!(store.next_expiry().expect("next expiry"), None);
}

fn a_failing_condition_in_the_middle_changes_nothing(store: &Arc<dyn Store>) {
    put(store, S, b"present", b"v", None);
    let batch = Batch::new()
        .require_present(S, b"present")
        .require_absent(S, b"present")
        .require_absent(S, b"missing")
        .put(S, b"a", b"1".to_vec(), None)
        .put(S, b"present", b"2".to_vec(), None)
        .take(S, b"present")
        .delete(S, b"present");
    assert_eq!(apply(store, batch, NOW), Outcome::Conflict(1));
    assert_eq!(get(store, S, b"a", NOW), None);
    let entry = get(store, S, b"present", NOW).expect("still present");
    assert_eq!((entry.value.as_slice(), entry.version), (&b"v"[..], 1));
    assert_eq!(store.count(S).expect("count"), 1);
}

fn conflict_reports_the_index_of_the_first_failing_condition(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"v", None);
    let base = || Batch::new().require_present(S, b"k").require_version(S, b"k", 1);
    assert_eq!(apply(store, base().require_version(S, b"k", 2), NOW), Outcome::Conflict(2));
    assert_eq!(
        apply(store, base().require_present(S, b"x").require_absent(S, b"k"), NOW),
        Outcome::Conflict(2)
    );
    assert_eq!(
        apply(store, Batch::new().require_absent(S, b"k").require_absent(S, b"x"), NOW),
        Outcome::Conflict(0)
    );
    assert_eq!(apply(store, base().require_absent(M, b"k"), NOW), Outcome::Applied(vec![]));
}

fn take_returns_the_old_entry_and_then_the_key_is_gone(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"secret", Some(NOW + 60));
    let outcome = apply(store, Batch::new().require_version(S, b"k", 1).take(S, b"k"), NOW);
    let expected = Entry { value: b"secret".to_vec(), version: 1, expires_at: Some(NOW + 60) };
    assert_eq!(outcome, Outcome::Applied(vec![Some(expected)]));
    assert_eq!(get(store, S, b"k", NOW), None);
    assert_eq!(apply(store, Batch::new().take(S, b"k"), NOW), Outcome::Applied(vec![None]));
    assert_eq!(apply(store, Batch::new().require_present(S, b"k").take(S, b"k"), NOW), Outcome::Conflict(0));
}

fn deleting_an_absent_key_is_not_an_error(store: &Arc<dyn Store>) {
    assert_eq!(apply(store, Batch::new().delete(S, b"nothing"), NOW), Outcome::Applied(vec![None]));
    assert_eq!(store.count(S).expect("count"), 0);
}

fn the_outcome_has_one_slot_per_mutation(store: &Arc<dyn Store>) {
    put(store, S, b"t", b"v", None);
    let batch = Batch::new()
        .put(S, b"a", b"1".to_vec(), None)
        .delete(S, b"b")
        .take(S, b"t")
        .take(S, b"missing")
        .put(M, b"c", b"2".to_vec(), Some(NOW + 1));
    let Outcome::Applied(slots) = apply(store, batch, NOW) else { panic!("expected Applied") };
    assert_eq!(slots.len(), 5);
    assert_eq!(slots.iter().filter(|slot| slot.is_some()).count(), 1);
    assert_eq!(slots[2].as_ref().map(|e| e.value.clone()), Some(b"v".to_vec()));
    assert_eq!(apply(store, Batch::new(), NOW), Outcome::Applied(vec![]));
}

fn mutations_of_one_batch_apply_in_order(store: &Arc<dyn Store>) {
    let batch = Batch::new()
        .put(S, b"k", b"1".to_vec(), None)
        .put(S, b"k", b"2".to_vec(), Some(NOW + 5))
        .take(S, b"k")
        .put(S, b"k", b"3".to_vec(), None);
    let Outcome::Applied(slots) = apply(store, batch, NOW) else { panic!("expected Applied") };
    let taken = slots[2].clone().expect("take saw the second put");
    assert_eq!((taken.value, taken.version, taken.expires_at), (b"2".to_vec(), 2, Some(NOW + 5)));
    let entry = get(store, S, b"k", NOW).expect("present");
    assert_eq!((entry.value, entry.version), (b"3".to_vec(), 1));
    // The taken generation's expiry may linger until a purge passes it, which keeps the new one.
    assert!(store.next_expiry().expect("next expiry").is_none_or(|at| at <= NOW + 5));
    assert_eq!(store.purge_expired(NOW + 5, 10).expect("purge"), 0);
    assert_eq!(store.next_expiry().expect("next expiry"), None);
    assert_eq!(get(store, S, b"k", NOW + 5).expect("still present").value, b"3");
}

fn puts_after_conditions_on_their_key_count_versions_from_each_other(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"a", None);
    let batch = Batch::new()
        .require_version(S, b"k", 1)
        .require_present(S, b"k")
        .put(S, b"k", b"b".to_vec(), None)
        .put(S, b"k", b"c".to_vec(), None);
    assert_eq!(apply(store, batch, NOW), Outcome::Applied(vec![None, None]));
    assert_eq!(get(store, S, b"k", NOW).map(|e| (e.value, e.version)), Some((b"c".to_vec(), 3)));
    let batch = Batch::new()
        .require_absent(S, b"n")
        .require_absent(S, b"n")
        .put(S, b"n", b"1".to_vec(), None)
        .take(S, b"n")
        .put(S, b"n", b"2".to_vec(), None)
        .put(S, b"n", b"3".to_vec(), None);
    apply(store, batch, NOW);
    assert_eq!(get(store, S, b"n", NOW).map(|e| (e.value, e.version)), Some((b"3".to_vec(), 2)));
}

fn keyspaces_do_not_share_keys(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"secret", None);
    assert_eq!(get(store, M, b"k", NOW), None);
    assert_eq!(apply(store, Batch::new().require_absent(M, b"k"), NOW), Outcome::Applied(vec![]));
    put(store, M, b"k", b"meta", None);
    apply(store, Batch::new().delete(S, b"k"), NOW);
    assert_eq!(get(store, M, b"k", NOW).expect("present").value, b"meta");
    assert_eq!(store.count(M).expect("count"), 1);
    assert_eq!(store.count(S).expect("count"), 0);
}

fn prefix_scan_is_ordered_limited_and_stops_at_the_prefix_boundary(store: &Arc<dyn Store>) {
    let all: [&[u8]; 8] = [&[1], &[1, 0], &[1, 255], &[1, 255, 0], &[1, 255, 255, 7], &[2], &[2, 0], &[0, 9]];
    // Inserted out of order, so order must come from the store.
    for key in all.iter().rev() {
        put(store, S, key, key, None);
    }
    let scan = |prefix: &[u8], limit| keys(&store.scan_prefix(S, prefix, NOW, limit).expect("scan"));
    assert_eq!(
        scan(&[1], 100),
        vec![vec![1], vec![1, 0], vec![1, 255], vec![1, 255, 0], vec![1, 255, 255, 7]]
    );
    assert_eq!(scan(&[1, 255], 100), vec![vec![1, 255], vec![1, 255, 0], vec![1, 255, 255, 7]]);
    assert_eq!(scan(&[1, 255, 0], 100), vec![vec![1, 255, 0]]);
    assert_eq!(scan(&[1, 255, 255], 100), vec![vec![1, 255, 255, 7]]);
    assert_eq!(scan(&[2], 100), vec![vec![2], vec![2, 0]]);
    assert_eq!(scan(&[3], 100), Vec::<Vec<u8>>::new());
    assert_eq!(scan(&[1], 2), vec![vec![1], vec![1, 0]]);
    assert_eq!(scan(&[1], 0), Vec::<Vec<u8>>::new());
    let found = store.scan_prefix(S, &[2, 0], NOW, 10).expect("scan");
    assert_eq!(found[0].1, Entry { value: vec![2, 0], version: 1, expires_at: None });
    assert!(store.scan_prefix(M, &[1], NOW, 10).expect("scan").is_empty());
}

fn prefix_scan_skips_expired_entries_without_counting_them_against_the_limit(store: &Arc<dyn Store>) {
    put(store, S, b"p1", b"", Some(NOW + 5));
    put(store, S, b"p2", b"", None);
    put(store, S, b"p3", b"", Some(NOW + 5));
    put(store, S, b"p4", b"", Some(NOW + 50));
    put(store, S, b"p5", b"", None);
    let found = store.scan_prefix(S, b"p", NOW + 5, 2).expect("scan");
    assert_eq!(keys(&found), vec![b"p2".to_vec(), b"p4".to_vec()]);
}

fn an_empty_prefix_scans_the_whole_keyspace(store: &Arc<dyn Store>) {
    for key in [&b"b"[..], b"", b"a", b"\xff"] {
        put(store, S, key, b"v", None);
    }
    put(store, M, b"other", b"v", None);
    let found = store.scan_prefix(S, b"", NOW, 10).expect("scan");
    assert_eq!(keys(&found), vec![b"".to_vec(), b"a".to_vec(), b"b".to_vec(), b"\xff".to_vec()]);
}

const CONTENDERS: usize = 32;

/// Runs `batch(i)` from `CONTENDERS` threads released at the same moment.
fn race(store: &Arc<dyn Store>, batch: impl Fn(usize) -> Batch + Sync) -> Vec<Outcome> {
    let start = Barrier::new(CONTENDERS);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..CONTENDERS)
            .map(|i| {
                let (start, store, batch) = (&start, Arc::clone(store), &batch);
                scope.spawn(move || {
                    let batch = batch(i);
                    start.wait();
                    store.apply(batch, NOW).expect("apply")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("contender")).collect()
    })
}

fn concurrent_version_conditioned_takes_of_one_key_have_exactly_one_winner(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"once", Some(NOW + 60));
    let outcomes = race(store, |_| Batch::new().require_version(S, b"k", 1).take(S, b"k"));
    let winners: Vec<_> = outcomes.iter().filter(|o| matches!(o, Outcome::Applied(_))).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let Outcome::Applied(slots) = winners[0] else { unreachable!() };
    assert_eq!(slots[0].as_ref().map(|e| e.value.as_slice()), Some(&b"once"[..]));
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Applied(_) | Outcome::Conflict(0))));
    assert_eq!(get(store, S, b"k", NOW), None);
}

fn concurrent_creates_of_one_key_have_exactly_one_winner(store: &Arc<dyn Store>) {
    let outcomes =
        race(store, |i| Batch::new().require_absent(S, b"k").put(S, b"k", i.to_string().into_bytes(), None));
    let winners: Vec<usize> =
        (0..CONTENDERS).filter(|&i| matches!(outcomes[i], Outcome::Applied(_))).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let entry = get(store, S, b"k", NOW).expect("present");
    assert_eq!((entry.value, entry.version), (winners[0].to_string().into_bytes(), 1));
}

fn purge_removes_exactly_the_expired_entries_after_overwrites_deletes_and_takes(store: &Arc<dyn Store>) {
    put(store, S, b"expires", b"", Some(NOW + 10));
    put(store, S, b"extended", b"", Some(NOW + 10));
    put(store, S, b"extended", b"", Some(NOW + 100));
    put(store, S, b"shortened", b"", Some(NOW + 100));
    put(store, S, b"shortened", b"", Some(NOW + 5));
    put(store, S, b"made-permanent", b"", Some(NOW + 5));
    put(store, S, b"made-permanent", b"", None);
    put(store, S, b"deleted", b"", Some(NOW + 5));
    put(store, S, b"taken", b"", Some(NOW + 5));
    put(store, M, b"expires", b"", Some(NOW + 10));
    put(store, M, b"permanent", b"", None);
    apply(store, Batch::new().delete(S, b"deleted").take(S, b"taken"), NOW);

    assert_eq!(store.purge_expired(NOW + 4, 100).expect("purge"), 0);
    assert_eq!(store.purge_expired(NOW + 10, 100).expect("purge"), 3);
    assert_eq!(store.purge_expired(NOW + 10, 100).expect("purge"), 0);
    let left = |ks| keys(&store.scan_prefix(ks, b"", 0, 100).expect("scan"));
    assert_eq!(left(S), vec![b"extended".to_vec(), b"made-permanent".to_vec()]);
    assert_eq!(left(M), vec![b"permanent".to_vec()]);
    assert_eq!(store.next_expiry().expect("next expiry"), Some(NOW + 100));
    assert_eq!(store.purge_expired(NOW + 100, 100).expect("purge"), 1);
    assert_eq!(store.next_expiry().expect("next expiry"), None);
    assert_eq!(store.count(S).expect("count") + store.count(M).expect("count"), 2);
}

fn next_expiry_is_never_late_and_exact_after_a_purge(store: &Arc<dyn Store>) {
    assert_eq!(store.next_expiry().expect("next expiry"), None);
    put(store, S, b"a", b"", Some(NOW + 30));
    put(store, M, b"b", b"", Some(NOW + 20));
    put(store, S, b"c", b"", None);
    assert_eq!(store.next_expiry().expect("next expiry"), Some(NOW + 20));
    put(store, M, b"b", b"", Some(NOW + 40));
    assert_eq!(store.next_expiry().expect("next expiry"), Some(NOW + 30));
    put(store, S, b"c", b"", Some(NOW + 10));
    assert_eq!(store.next_expiry().expect("next expiry"), Some(NOW + 10));
    apply(store, Batch::new().delete(S, b"c").take(S, b"a"), NOW);
    // Removed entries may still be named (never a time after the earliest live one); a purge that
    // passes their times, removing nothing, leaves the true minimum.
    assert!(store.next_expiry().expect("next expiry").is_some_and(|at| at <= NOW + 40));
    assert_eq!(store.purge_expired(NOW + 39, 10).expect("purge"), 0);
    assert_eq!(store.next_expiry().expect("next expiry"), Some(NOW + 40));
    // Unpurged expired entries still count: the reaper needs to know they are due.
    assert_eq!(get(store, M, b"b", NOW + 50), None);
    assert_eq!(store.next_expiry().expect("next expiry"), Some(NOW + 40));
}

fn a_key_re_put_with_a_later_expiry_is_not_purged_at_its_old_expiry(store: &Arc<dyn Store>) {
    put(store, S, b"k", b"first", Some(NOW + 10));
    put(store, S, b"k", b"second", Some(NOW + 100));
    assert_eq!(store.purge_expired(NOW + 50, 10).expect("purge"), 0);
    assert_eq!(get(store, S, b"k", NOW + 50).expect("present").value, b"second");
    // The same after the first generation expired and the key was created afresh.
    put(store, S, b"j", b"first", Some(NOW + 10));
    let later = NOW + 10;
    apply(
        store,
        Batch::new().require_absent(S, b"j").put(S, b"j", b"second".to_vec(), Some(NOW + 100)),
        later,
    );
    assert_eq!(store.purge_expired(NOW + 50, 10).expect("purge"), 0);
    assert_eq!(get(store, S, b"j", NOW + 50).expect("present").version, 1);
}

fn purge_removes_at_most_limit_entries_and_repeated_passes_remove_all(store: &Arc<dyn Store>) {
    for i in 0..25u8 {
        put(store, S, &[i], b"", Some(NOW + 1 + u64::from(i % 3)));
    }
    put(store, S, b"live", b"", Some(NOW + 500));
    let now = NOW + 10;
    assert_eq!(store.purge_expired(now, 10).expect("purge"), 10);
    assert_eq!(store.count(S).expect("count"), 16);
    assert_eq!(store.purge_expired(now, 0).expect("purge"), 0);
    let mut passes = 1;
    while store.purge_expired(now, 10).expect("purge") > 0 {
        passes += 1;
    }
    assert_eq!(passes, 3);
    assert_eq!(store.count(S).expect("count"), 1);
    assert!(get(store, S, b"live", now).is_some());
}

fn removed_entries_do_not_use_up_a_purge_pass(store: &Arc<dyn Store>) {
    let mut removals = Batch::new();
    for i in 0..30u8 {
        put(store, S, &[b'a', i], b"", Some(NOW + 1));
        removals = if i % 2 == 0 { removals.take(S, [b'a', i]) } else { removals.delete(S, [b'a', i]) };
    }
    for i in 0..5u8 {
        put(store, S, &[b'z', i], b"", Some(NOW + 1));
    }
    apply(store, removals, NOW);
    assert_eq!(store.purge_expired(NOW + 1, 5).expect("purge"), 5);
    assert_eq!(store.count(S).expect("count"), 0);
    assert_eq!(store.next_expiry().expect("next expiry"), None);
}

fn count_counts_unpurged_entries_per_keyspace(store: &Arc<dyn Store>) {
    for &ks in test_keyspaces::ALL {
        assert_eq!(store.count(ks).expect("count"), 0);
    }
    put(store, S, b"a", b"", None);
    put(store, S, b"b", b"", Some(NOW + 1));
    put(store, S, b"b", b"", Some(NOW + 2));
    put(store, test_keyspaces::REQUEST, b"a", b"", None);
    assert_eq!(store.count(S).expect("count"), 2);
    assert_eq!(store.count(test_keyspaces::REQUEST).expect("count"), 1);
    assert_eq!(store.count(M).expect("count"), 0);
    store.purge_expired(NOW + 2, 10).expect("purge");
    assert_eq!(store.count(S).expect("count"), 1);

    // Same key in keyspaces that a backend may store together; every removal counts once, in its own.
    put(store, test_keyspaces::ATTEMPTS, b"a", b"", None);
    put(store, M, b"m", b"", None);
    put(store, M, b"n", b"", None);
    let counts = || test_keyspaces::ALL.iter().map(|&ks| store.count(ks).expect("count")).collect::<Vec<_>>();
    assert_eq!(counts(), [1, 2, 0, 0, 1, 1]);
    apply(store, Batch::new().take(S, b"a").take(S, b"a").delete(M, b"m").delete(M, b"gone"), NOW);
    assert_eq!(counts(), [0, 1, 0, 0, 1, 1]);
    // A put that is already expired removes the entry it replaces.
    apply(store, Batch::new().put(M, b"n", Vec::new(), Some(NOW)), NOW);
    assert_eq!(counts(), [0, 0, 0, 0, 1, 1]);
}

fn prefix_scan_sees_only_its_own_keyspace(store: &Arc<dyn Store>) {
    for (ks, value) in [(S, b"s"), (test_keyspaces::ATTEMPTS, b"a"), (M, b"m")] {
        for key in [&[1][..], &[1, 0], &[1, 1], &[1, 2, 3]] {
            put(store, ks, key, value, None);
        }
    }
    let found = store.scan_prefix(test_keyspaces::ATTEMPTS, &[1], NOW, 3).expect("scan");
    assert_eq!(keys(&found), vec![vec![1], vec![1, 0], vec![1, 1]]);
    assert!(found.iter().all(|(_, entry)| entry.value == b"a"));
    let found = store.scan_prefix(S, &[1, 1], NOW, 10).expect("scan");
    assert_eq!(keys(&found), vec![vec![1, 1]]);
}

fn check_succeeds_on_an_open_store(store: &Arc<dyn Store>) {
    store.check().expect("check");
}

fn many_concurrent_batches_from_several_threads_are_all_applied(store: &Arc<dyn Store>) {
    const THREADS: usize = 8;
    const EACH: usize = 40;
    thread::scope(|scope| {
        for t in 0..THREADS {
            let store = Arc::clone(store);
            scope.spawn(move || {
                for i in 0..EACH {
                    let key = format!("{t}/{i:03}");
                    let batch = Batch::new().require_absent(S, key.as_str()).put(
                        S,
                        key.as_str(),
                        key.clone().into_bytes(),
                        None,
                    );
                    assert_eq!(store.apply(batch, NOW).expect("apply"), Outcome::Applied(vec![None]));
                }
            });
        }
    });
    assert_eq!(store.count(S).expect("count"), (THREADS * EACH) as u64);
    for t in 0..THREADS {
        let found = store.scan_prefix(S, format!("{t}/").as_bytes(), NOW, 1_000).expect("scan");
        assert_eq!(found.len(), EACH);
        assert!(found.iter().all(|(key, entry)| *key == entry.value));
    }
}

fn concurrent_conflicting_batches_do_not_affect_their_neighbours(store: &Arc<dyn Store>) {
    // Odd contenders carry a condition that cannot hold, plus a write that must not happen.
    let outcomes = race(store, |i| {
        let key = format!("k{i:02}");
        let batch = Batch::new().put(S, key.as_str(), vec![1], None);
        if i % 2 == 1 { batch.require_present(S, b"never").put(S, b"poison", vec![], None) } else { batch }
    });
    for (i, outcome) in outcomes.iter().enumerate() {
        let expected = if i % 2 == 1 { Outcome::Conflict(0) } else { Outcome::Applied(vec![None]) };
        assert_eq!(*outcome, expected, "contender {i}");
        assert_eq!(get(store, S, format!("k{i:02}").as_bytes(), NOW).is_some(), i % 2 == 0);
    }
    assert_eq!(get(store, S, b"poison", NOW), None);
    assert_eq!(store.count(S).expect("count"), (CONTENDERS / 2) as u64);
}

// Backend-specific behaviour.

#[test]
fn redb_data_and_expiry_index_survive_close_and_reopen() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join(REDB_FILE);
    {
        let store = RedbStore::open(&path, test_keyspaces::ALL).expect("open");
        let batch = Batch::new()
            .put(S, b"kept", b"value".to_vec(), None)
            .put(S, b"kept", b"value2".to_vec(), None)
            .put(M, b"expiring", b"m".to_vec(), Some(NOW + 10));
        store.apply(batch, NOW).expect("apply");
    }
    let store = RedbStore::open(&path, test_keyspaces::ALL).expect("reopen");
    let entry = store.get(S, b"kept", NOW).expect("get").expect("present");
    assert_eq!((entry.value.as_slice(), entry.version), (&b"value2"[..], 2));
    assert_eq!((store.count(S).expect("count"), store.count(M).expect("count")), (1, 1));
    assert_eq!(store.next_expiry().expect("next expiry"), Some(NOW + 10));
    assert_eq!(store.purge_expired(NOW + 10, 10).expect("purge"), 1);
    assert_eq!(store.count(M).expect("count"), 0);
}

#[test]
fn redb_refuses_a_file_in_another_layout() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join(REDB_FILE);
    {
        // What the first layout (one table per keyspace, no `meta` table) left behind.
        let db = ::redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("begin");
        let table: ::redb::TableDefinition<&[u8], &[u8]> = ::redb::TableDefinition::new("secret");
        txn.open_table(table).expect("table").insert(&b"k"[..], &b"v"[..]).expect("insert");
        txn.commit().expect("commit");
    }
    assert!(matches!(RedbStore::open(&path, test_keyspaces::ALL), Err(StoreError::Corrupt(_))));
}

#[test]
fn redb_second_open_of_the_same_file_is_locked() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join(REDB_FILE);
    let first = RedbStore::open(&path, test_keyspaces::ALL).expect("open");
    first.apply(Batch::new().put(S, b"k", b"v".to_vec(), None), NOW).expect("apply");
    assert!(matches!(RedbStore::open(&path, test_keyspaces::ALL), Err(StoreError::Locked)));
    // The failed open leaves the first store working.
    assert!(first.get(S, b"k", NOW).expect("get").is_some());
    drop(first);
    RedbStore::open(&path, test_keyspaces::ALL).expect("open once the first store is closed");
}

#[test]
fn redb_open_of_an_unusable_path_is_an_io_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("missing-dir").join(REDB_FILE);
    assert!(matches!(RedbStore::open(&path, test_keyspaces::ALL), Err(StoreError::Io(_))));
}

#[test]
fn the_memory_store_debug_output_shows_no_keys_or_values() {
    let memory = MemoryStore::new();
    memory.apply(Batch::new().put(S, b"key-material", b"plaintext".to_vec(), None), NOW).expect("apply");
    let shown = format!("{memory:?}");
    assert!(!shown.contains("key-material") && !shown.contains("plaintext"), "{shown}");
}

/// Redis reclaims expired entries itself, so the reaper's calls find nothing to do, and lethe refuses
/// a snapshot it could not make consistent, pointing at Redis's own persistence.
#[test]
fn redis_has_nothing_to_purge_and_refuses_a_snapshot() {
    let fixture = redis();
    let store = &fixture.store;
    put(store, S, b"old", b"v", Some(NOW + 1));
    assert_eq!(store.purge_expired(NOW + 10, 100).expect("purge"), 0);
    assert_eq!(store.next_expiry().expect("next expiry"), None);
    assert_eq!(get(store, S, b"old", NOW + 10), None, "expired by the passed-in clock");
    let err = store.visit_all(NOW, &mut |_, _, _| Ok(())).expect_err("no snapshot of Redis");
    assert!(err.to_string().contains("back up Redis itself"), "{err}");
}

/// Each entry carries Redis's own expiry, so Redis removes it at its time with no sweep by lethe.
#[test]
fn redis_removes_an_expired_entry_by_itself() {
    let fixture = redis();
    let server = fixture._redis.as_ref().expect("redis fixture");
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    put_at(&fixture.store, S, b"soon", b"v", Some(now + 1), now);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.cli(&["DBSIZE"]) != "0" {
        assert!(std::time::Instant::now() < deadline, "Redis never expired the entry");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Without `appendfsync always` lethe refuses to open a Redis, naming what it found, unless the
/// operator accepts the weaker guarantee.
#[test]
fn redis_with_weaker_persistence_is_refused_unless_accepted() {
    let server = redis_server::RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "everysec"]);
    let mut options = RedisOptions {
        urls: vec![server.url()],
        cluster: false,
        key_prefix: "lethe-test:".into(),
        password: None,
        accept_weaker_durability: false,
        key_check: None,
        team_key_check: None,
        ca_certs: None,
    };
    let err = RedisStore::open(&options, test_keyspaces::ALL).expect_err("refused");
    assert!(err.to_string().contains("appendfsync everysec"), "{err}");
    assert!(err.to_string().contains("redis.accept_weaker_durability"), "{err}");
    options.accept_weaker_durability = true;
    assert!(RedisStore::open(&options, test_keyspaces::ALL).is_ok());
}

/// With Redis gone the store reports itself unavailable instead of hanging or panicking, and once
/// Redis is back the same store works again without being reopened.
#[test]
fn redis_loss_is_an_error_and_the_store_reconnects() {
    let mut fixture = redis();
    put(&fixture.store, S, b"k", b"v", None);
    let port = fixture._redis.as_ref().expect("redis fixture").port;
    let mut server = fixture._redis.take().expect("redis fixture");
    server.kill();
    assert!(fixture.store.get(S, b"k", NOW).is_err());
    assert!(fixture.store.apply(Batch::new().take(S, b"k"), NOW).is_err());
    let dir = tempfile::tempdir().expect("temporary directory");
    let again = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--dir", dir.path().to_str().expect("utf-8"), "--appendonly", "yes"])
        .stdout(std::process::Stdio::null())
        .spawn();
    let mut again = again.expect("redis-server restarts");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let result = loop {
        match fixture.store.check() {
            Ok(()) => break Ok(()),
            Err(err) if std::time::Instant::now() > deadline => break Err(err),
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    };
    let _ = again.kill();
    let _ = again.wait();
    result.expect("the store reconnected");
}

fn put_at(
    store: &Arc<dyn Store>,
    ks: Keyspace,
    key: &[u8],
    value: &[u8],
    at: Option<Timestamp>,
    now: Timestamp,
) {
    let outcome = store.apply(Batch::new().put(ks, key, value.to_vec(), at), now).expect("apply");
    assert_eq!(outcome, Outcome::Applied(vec![None]));
}

// Redis Cluster: groups apart. The suite above runs there in one group; these keyspaces are grouped
// as the domain's are.
const GROUPED: Keyspace = Keyspace::point(1, "secret");
const GROUPED_OTHER: Keyspace = Keyspace::point(2, "metadata");
const LISTED_BY_FIRST_BYTE: Keyspace = Keyspace::listed(3, "account").grouped(Group::prefix(1));
const LISTED_WHOLE: Keyspace = Keyspace::listed(0, "team");
const GROUPED_ALL: &[Keyspace] = &[GROUPED, GROUPED_OTHER, LISTED_BY_FIRST_BYTE, LISTED_WHOLE];

fn grouped_cluster() -> (redis_server::RedisCluster, RedisStore) {
    let cluster = redis_server::RedisCluster::start();
    let store = RedisStore::open(&cluster_options(&cluster), GROUPED_ALL).expect("open the cluster");
    (cluster, store)
}

/// A key of `GROUPED` in group `group` (its first four bytes).
fn in_group(group: u32, rest: &[u8]) -> Vec<u8> {
    [group.to_be_bytes().as_slice(), rest].concat()
}

#[test]
fn redis_cluster_spreads_groups_over_every_master_and_lists_and_counts_them_all() {
    let (cluster, store) = grouped_cluster();
    let mut expected = Vec::new();
    for group in 0..60u32 {
        let key = in_group(group, b"k");
        store.apply(Batch::new().put(GROUPED, key.clone(), b"v".to_vec(), None), NOW).expect("apply");
        expected.push(key);
    }
    let per_node = cluster.keys_per_node();
    assert!(per_node.iter().all(|&n| n > 0), "every master holds some groups: {per_node:?}");
    let all = store.scan_prefix(GROUPED, &[], NOW, usize::MAX).expect("walk");
    assert_eq!(
        all.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        expected,
        "in key order, from every master"
    );
    let some = store.scan_prefix(GROUPED, &[0, 0, 0], NOW, 5).expect("walk");
    assert_eq!(some.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), expected[..5]);
    assert_eq!(store.count(GROUPED).expect("count"), 60);

    // A listed keyspace: a prefix naming a group reads its index, a shorter one walks every master.
    for key in [&b"a2"[..], b"b1", b"a1", b"c1"] {
        store
            .apply(Batch::new().put(LISTED_BY_FIRST_BYTE, key.to_vec(), key.to_vec(), None), NOW)
            .expect("apply");
    }
    store
        .apply(Batch::new().put(LISTED_BY_FIRST_BYTE, b"a3".to_vec(), b"x".to_vec(), Some(NOW + 1)), NOW)
        .expect("apply");
    let keys = |rows: Vec<(Vec<u8>, Entry)>| rows.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    let a = keys(store.scan_prefix(LISTED_BY_FIRST_BYTE, b"a", NOW + 1, 10).expect("index"));
    assert_eq!(a, [b"a1".to_vec(), b"a2".to_vec()], "a3 has expired");
    let everything = keys(store.scan_prefix(LISTED_BY_FIRST_BYTE, b"", NOW + 1, 10).expect("walk"));
    assert_eq!(everything, [&b"a1"[..], b"a2", b"b1", b"c1"].map(<[u8]>::to_vec));
    store.apply(Batch::new().delete(LISTED_BY_FIRST_BYTE, b"a1".to_vec()), NOW).expect("apply");
    let a = keys(store.scan_prefix(LISTED_BY_FIRST_BYTE, b"a", NOW, 10).expect("index"));
    assert_eq!(a, [b"a2".to_vec(), b"a3".to_vec()]);

    // A keyspace that is one group: any of its keys in one batch, any prefix read from its index.
    let batch = Batch::new()
        .require_absent(LISTED_WHOLE, b"user/1".to_vec())
        .put(LISTED_WHOLE, b"user/1".to_vec(), b"u".to_vec(), None)
        .put(LISTED_WHOLE, b"index/x".to_vec(), b"i".to_vec(), None)
        .put(LISTED_WHOLE, b"user/0".to_vec(), b"u".to_vec(), None);
    assert!(matches!(store.apply(batch, NOW).expect("apply"), Outcome::Applied(_)));
    let users = keys(store.scan_prefix(LISTED_WHOLE, b"user/", NOW, 10).expect("index"));
    assert_eq!(users, [b"user/0".to_vec(), b"user/1".to_vec()]);
    assert_eq!(keys(store.scan_prefix(LISTED_WHOLE, b"", NOW, 10).expect("index")).len(), 3);
}

#[test]
fn redis_cluster_refuses_a_batch_across_groups_before_sending_it_and_applies_one_within_a_group() {
    let (_cluster, store) = grouped_cluster();
    let (one, two) = (in_group(1, b"secret"), in_group(2, b"metadata"));
    let across = Batch::new()
        .require_absent(GROUPED, one.clone())
        .put(GROUPED, one.clone(), b"v".to_vec(), None)
        .put(GROUPED_OTHER, two.clone(), b"m".to_vec(), None);
    let err = store.apply(across, NOW).expect_err("two groups").to_string();
    assert!(err.contains("spans two groups of keys (secret and metadata)"), "{err}");
    assert_eq!(store.get(GROUPED, &one, NOW).expect("get"), None, "nothing of it applied");
    assert_eq!(store.get(GROUPED_OTHER, &two, NOW).expect("get"), None);

    // The same records made in one group: a secret and its metadata sharing a creation sequence.
    let together = in_group(1, b"metadata");
    let batch = Batch::new()
        .require_absent(GROUPED, one.clone())
        .require_absent(GROUPED_OTHER, together.clone())
        .put(GROUPED, one.clone(), b"v".to_vec(), None)
        .put(GROUPED_OTHER, together.clone(), b"m".to_vec(), None);
    assert!(matches!(store.apply(batch, NOW).expect("apply"), Outcome::Applied(_)));
    let take = Batch::new().require_version(GROUPED_OTHER, together.clone(), 1).take(GROUPED, one.clone());
    let Outcome::Applied(taken) = store.apply(take, NOW).expect("apply") else { panic!("conflict") };
    assert_eq!(taken[0].as_ref().map(|e| e.value.clone()), Some(b"v".to_vec()));
    assert_eq!(store.get(GROUPED, &one, NOW).expect("get"), None);
}

#[test]
fn redis_cluster_nodes_check_persistence_on_every_master_and_share_the_key_check() {
    let cluster = redis_server::RedisCluster::start();
    cluster.nodes[2].cli(&["CONFIG", "SET", "appendfsync", "everysec"]);
    let err = RedisStore::open(&cluster_options(&cluster), GROUPED_ALL).expect_err("one master is weaker");
    assert!(err.to_string().contains("appendfsync everysec"), "{err}");
    cluster.nodes[2].cli(&["CONFIG", "SET", "appendfsync", "always"]);
    RedisStore::open(&cluster_options(&cluster), GROUPED_ALL).expect("every master keeps every write");
    let other = RedisOptions { key_check: Some("another key".into()), ..cluster_options(&cluster) };
    let err = RedisStore::open(&other, GROUPED_ALL).expect_err("another master key");
    assert!(err.to_string().contains("master key"), "{err}");
}

/// A master gone: its groups are unavailable (an error, not a hang), the others' still served; back
/// on its port with its append-only file, it serves its groups again to the same store, which
/// reconnects by itself.
#[test]
fn redis_cluster_loss_of_a_master_fails_its_groups_only_and_the_store_reconnects() {
    let (mut cluster, store) = grouped_cluster();
    for group in 0..30u32 {
        store
            .apply(Batch::new().put(GROUPED, in_group(group, b"k"), b"v".to_vec(), None), NOW)
            .expect("apply");
    }
    // Which groups the first master holds, by the slot of each group's hash tag.
    let first = &cluster.nodes[0];
    let on_first = |group: u32| {
        let slot = first.cli(&["CLUSTER", "KEYSLOT", &format!("{{g{group:08x}}}")]);
        first.cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot]) != "0"
    };
    let lost = (0..30).find(|&g| on_first(g)).expect("a group on the first master");
    let kept = (0..30).find(|&g| !on_first(g)).expect("a group elsewhere");
    cluster.nodes[0].kill();
    assert!(store.get(GROUPED, &in_group(lost, b"k"), NOW).is_err(), "its master is gone");
    assert!(store.apply(Batch::new().take(GROUPED, in_group(lost, b"k")), NOW).is_err());
    assert!(store.get(GROUPED, &in_group(kept, b"k"), NOW).expect("another master").is_some());
    cluster.nodes[0].restart_as_started();
    cluster.wait_ok();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match store.get(GROUPED, &in_group(lost, b"k"), NOW) {
            Ok(entry) => {
                assert_eq!(entry.map(|e| e.value), Some(b"v".to_vec()), "kept by its append-only file");
                break;
            }
            Err(err) => assert!(std::time::Instant::now() < deadline, "the store never reconnected: {err}"),
        }
        thread::sleep(Duration::from_millis(50));
    }
}

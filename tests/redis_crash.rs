//! Crash consistency on Redis, with the checks of the redb crash test (`crash.rs`): a `lethe serve`
//! SIGKILLed under load loses nothing it acknowledged, seen from a second node that stays up; and a
//! `redis-server` SIGKILLed under load and started again on its append-only file (`appendfsync
//! always`) loses nothing either, while in its absence requests fail in the v1 dialect's way (404 on
//! the wire, intended 500, "An unexpected error occurred") without consuming anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::crash::{LOAD_THREADS, Rng, Seen, UNLIMITED, load, reveal, share, store_failed, verify};
use crate::redis_nodes::Deployment;

/// Kill-and-restart cycles: a few, so the test stays a matter of seconds.
const CYCLES: usize = 3;
/// How long a node may take to reach Redis again once it is back.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);

fn seed() -> Rng {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("Redis crash test seed {seed:#x}");
    Rng(seed | 1)
}

/// Load on `addr` from [`LOAD_THREADS`] threads until `crash` has run at a random moment.
fn load_then(addr: &str, cycle: usize, rng: &mut Rng, lenient: bool, crash: impl FnOnce()) -> Vec<Seen> {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..LOAD_THREADS)
        .map(|t| {
            let (addr, stop, seed) = (addr.to_owned(), Arc::clone(&stop), rng.next());
            std::thread::spawn(move || load(addr, cycle, t, seed, stop, lenient))
        })
        .collect();
    // The crash moment is the point of the test: a random delay, not a wait for a condition.
    std::thread::sleep(Duration::from_millis(50 + rng.below(351)));
    crash();
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().map(|t| t.join().expect("load thread")).collect()
}

#[test]
fn sigkill_of_a_node_under_load_on_redis_loses_nothing_acknowledged_as_another_node_sees() {
    let mut rng = seed();
    let deployment = Deployment::new();
    let witness = deployment.node(&[], UNLIMITED);
    let witness_addr = witness.base.trim_start_matches("http://").to_owned();
    let mut checked = 0;
    for cycle in 0..CYCLES {
        let victim = deployment.node(&[], UNLIMITED);
        let addr = victim.base.trim_start_matches("http://").to_owned();
        let seen = load_then(&addr, cycle, &mut rng, false, || victim.kill());
        for s in &seen {
            checked += s.acked.len() + s.revealed.len() + s.uncertain.len();
            verify(&witness_addr, s);
        }
    }
    witness.stop();
    assert!(checked > 0, "the load never got a share acknowledged");
}

#[test]
fn a_restart_of_redis_under_load_loses_nothing_acknowledged_and_its_absence_consumes_nothing() {
    let mut rng = seed();
    let mut deployment = Deployment::new();
    let node = deployment.node(&[], UNLIMITED);
    let addr = node.base.trim_start_matches("http://").to_owned();
    let (mut checked, mut refused) = (0, 0);
    for cycle in 0..CYCLES {
        let redis = &mut deployment.redis;
        let mut seen = load_then(&addr, cycle, &mut rng, true, || redis.kill());

        // Redis is gone: reveals of acknowledged secrets fail in the v1 dialect's way and take nothing.
        let (status, body) = share(&addr, "while-redis-is-down").expect("the node answers");
        assert!(status == 404 && store_failed(&body), "share without Redis: {status} {body}");
        for s in &mut seen {
            for (key, _) in s.acked.iter().take(3) {
                let (status, body) = reveal(&addr, key).expect("the node answers");
                assert!(status == 404 && store_failed(&body), "a reveal without Redis: {status} {body}");
                refused += 1;
            }
        }
        let ready = crate::redis_nodes::status_of(&node.base, "/ready");
        assert_eq!(ready, 503, "/ready sends traffic elsewhere while Redis is down");

        deployment.redis.restart();
        let deadline = Instant::now() + RECOVERY_DEADLINE;
        while crate::redis_nodes::status_of(&node.base, "/ready") != 200 {
            assert!(Instant::now() < deadline, "the node did not reach Redis again after its restart");
            std::thread::sleep(Duration::from_millis(50));
        }
        for s in &seen {
            checked += s.acked.len() + s.revealed.len() + s.uncertain.len();
            verify(&addr, s);
        }
    }
    node.stop();
    eprintln!("Redis restart test: {CYCLES} cycles, {checked} secrets checked, {refused} reveals refused");
    assert!(checked > 0 && refused > 0, "the load never got a share acknowledged");
}

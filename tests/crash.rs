//! Crash consistency of the real binary: `lethe serve` on redb is SIGKILLed at a random moment under a
//! mixed load of v1 shares and reveals, restarted on the same data directory, and checked: every share
//! whose 200 reached the client is still revealable exactly once, and no secret whose reveal returned
//! 200 is ever served again. Requests whose response was lost in the crash may have gone either way.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::daemon::Daemon;

/// Most kill-and-restart cycles, and the time after which no new cycle starts.
const CYCLES: usize = 20;
const TIME_BUDGET: Duration = Duration::from_secs(30);
pub(crate) const LOAD_THREADS: usize = 8;
/// Per thread and cycle, so a load loop ends even if the kill never comes.
const MAX_OPS_PER_THREAD: usize = 5_000;

/// One HTTP/1.1 POST with a form body over a fresh connection; `Err` when the server is gone.
pub(crate) fn post(addr: &str, path: &str, form: &str) -> std::io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status line"))?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json = serde_json::from_str(body).map_err(|_| std::io::Error::other("truncated body"))?;
    Ok((status, json))
}

/// The v1 dialect's answer when the server cannot reach its store: 404 on the wire like every v1
/// error, intended 500, and this message.
pub(crate) fn store_failed(body: &Value) -> bool {
    body["message"] == "An unexpected error occurred"
}

pub(crate) fn share(addr: &str, value: &str) -> std::io::Result<(u16, Value)> {
    post(addr, "/api/v1/share", &format!("secret={value}&ttl=3600"))
}

pub(crate) fn reveal(addr: &str, key: &str) -> std::io::Result<(u16, Value)> {
    post(addr, &format!("/api/v1/secret/{key}"), "")
}

/// A small xorshift generator: the test needs varied timing, not cryptographic randomness.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What one load thread knows when the server dies.
#[derive(Default)]
pub(crate) struct Seen {
    /// Shares acknowledged with 200 and not revealed since: (secret key, value).
    pub(crate) acked: Vec<(String, String)>,
    /// Reveals answered with 200.
    pub(crate) revealed: Vec<String>,
    /// Reveals of acknowledged shares whose answer was lost: either outcome is allowed.
    pub(crate) uncertain: Vec<(String, String)>,
    pub(crate) ops: usize,
}

/// With `lenient`, the store's failure (it went away under the server) ends the thread as a lost
/// connection does; otherwise any answer but 200 fails the test.
pub(crate) fn load(
    addr: String,
    cycle: usize,
    thread: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    lenient: bool,
) -> Seen {
    let mut rng = Rng(seed | 1);
    let mut seen = Seen::default();
    for i in 0..MAX_OPS_PER_THREAD {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if !seen.acked.is_empty() && rng.below(2) == 0 {
            let (key, value) = seen.acked.swap_remove(rng.below(seen.acked.len() as u64) as usize);
            match reveal(&addr, &key) {
                Ok((200, body)) => {
                    assert_eq!(body["value"].as_str(), Some(value.as_str()), "a reveal served another value");
                    seen.revealed.push(key);
                }
                Ok((status, body)) if !(lenient && store_failed(&body)) => {
                    panic!("reveal of an acknowledged share answered {status}: {body}")
                }
                Ok(_) | Err(_) => {
                    seen.uncertain.push((key, value));
                    break;
                }
            }
        } else {
            let value = format!("crash-{cycle}-{thread}-{i}-{:x}", rng.next());
            match share(&addr, &value) {
                Ok((200, body)) => {
                    let key = body["secret_key"].as_str().expect("secret_key in the share reply").to_owned();
                    seen.acked.push((key, value));
                }
                Ok((status, body)) if !(lenient && store_failed(&body)) => {
                    panic!("share answered {status}: {body}")
                }
                // The server or its store is gone; whether this share was stored is unknowable and
                // unchecked.
                Ok(_) | Err(_) => break,
            }
        }
        seen.ops += 1;
    }
    seen
}

/// After a restart: the checks of everything the load threads saw. Returns the requests made.
pub(crate) fn verify(addr: &str, seen: &Seen) -> usize {
    let mut requests = 0;
    for (key, value) in &seen.acked {
        let (status, body) = reveal(addr, key).expect("reveal after restart");
        assert_eq!(status, 200, "an acknowledged share was lost in the crash: {body}");
        assert_eq!(body["value"].as_str(), Some(value.as_str()));
        let (status, body) = reveal(addr, key).expect("second reveal");
        assert_eq!((status, body["message"].as_str()), (404, Some("Unknown secret")), "served twice");
        requests += 2;
    }
    for key in &seen.revealed {
        let (status, body) = reveal(addr, key).expect("reveal of a revealed secret");
        assert_eq!(
            (status, body["message"].as_str()),
            (404, Some("Unknown secret")),
            "a secret revealed before the crash was served again"
        );
        requests += 1;
    }
    for (key, value) in &seen.uncertain {
        let (status, body) = reveal(addr, key).expect("reveal of an uncertain secret");
        if status == 200 {
            assert_eq!(body["value"].as_str(), Some(value.as_str()));
        } else {
            assert_eq!((status, body["message"].as_str()), (404, Some("Unknown secret")));
        }
        let (status, _) = reveal(addr, key).expect("second reveal");
        assert_eq!(status, 404, "an uncertain secret was served twice");
        requests += 2;
    }
    requests
}

/// All the load comes from 127.0.0.1, and the per-client limits would end the test long before the
/// crashes do: this test is about durability, so it turns them off.
pub(crate) const UNLIMITED: &[(&str, &str)] = &[("LETHE_RATE_LIMIT__ENABLED", "false")];

#[test]
fn sigkill_under_load_never_loses_an_acknowledged_share_nor_serves_a_revealed_one_twice() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("crash test seed {seed:#x}");
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let (mut daemon, mut addr) = Daemon::start_with(dir.path(), UNLIMITED);
    let (mut cycles, mut load_ops, mut checked, mut verify_requests) = (0, 0, 0, 0);
    while cycles < CYCLES && (cycles == 0 || started.elapsed() < TIME_BUDGET) {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..LOAD_THREADS)
            .map(|t| {
                let (addr, stop, seed) = (addr.clone(), Arc::clone(&stop), rng.next());
                std::thread::spawn(move || load(addr, cycles, t, seed, stop, false))
            })
            .collect();
        // The crash moment is the point of the test: a random delay, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(50 + rng.below(351)));
        daemon.kill();
        stop.store(true, Ordering::Relaxed);
        let seen: Vec<Seen> = threads.into_iter().map(|t| t.join().expect("load thread")).collect();

        (daemon, addr) = Daemon::start_with(dir.path(), UNLIMITED);
        for s in &seen {
            load_ops += s.ops;
            checked += s.acked.len() + s.revealed.len() + s.uncertain.len();
            verify_requests += verify(&addr, s);
        }
        cycles += 1;
    }
    assert!(daemon.terminate().success(), "graceful stop exits 0");
    eprintln!(
        "crash test: {cycles} SIGKILL cycles, {load_ops} operations under load, {checked} secrets checked \
         after restart with {verify_requests} reveals, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(checked > 0, "the load never got a share acknowledged");
}

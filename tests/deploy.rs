//! Running under systemd: the unit file passes `systemd-analyze`, and the daemon speaks the notify
//! protocol (READY after binding, watchdog pings, STOPPING on SIGTERM).

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_lethe");
const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/lethe.service");

/// The unit with `ExecStart` pointing at the binary under test, so `verify` can check it exists.
fn unit_for_test(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(UNIT).unwrap();
    let text = text.replace("/usr/local/bin/lethe", BIN);
    let path = dir.join("lethe.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_unit_file_verifies_and_is_well_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let verify = Command::new("systemd-analyze").arg("verify").arg(&unit).output().expect("systemd-analyze");
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    assert!(verify.stderr.is_empty(), "{}", String::from_utf8_lossy(&verify.stderr));

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&unit)
        .output()
        .expect("security");
    let text = String::from_utf8_lossy(&security.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for lethe.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in {text}"));
    assert!(score < 2.0, "exposure {score}");
}

#[test]
fn the_daemon_notifies_ready_pings_the_watchdog_and_says_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log =
        std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());

    let mut buf = [0u8; 256];
    let mut receive = || {
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = receive();
    assert!(first.starts_with("READY=1"), "{first}");
    assert!(data.join("lethe.redb").exists(), "ready only after the store is open");
    assert_eq!(receive(), "WATCHDOG=1");
    assert_eq!(receive(), "WATCHDOG=1");

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let mut last = receive();
    while last == "WATCHDOG=1" {
        last = receive();
    }
    assert_eq!(last, "STOPPING=1");
    assert!(child.wait().unwrap().success());
    let log = log.join().unwrap();
    assert!(log.iter().any(|l| l.contains("stopped")), "{log:?}");
}

#[test]
fn metrics_can_live_on_their_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()])
        .env("LETHE_METRICS__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
    let addr_of =
        |line: &str| line.split("\"addr\":\"").nth(1).and_then(|r| r.split('"').next()).map(str::to_owned);
    let (mut api, mut metrics) = (None, None);
    for line in lines.by_ref() {
        if line.contains("metrics listening") {
            metrics = addr_of(&line);
        } else if line.contains("\"listening\"") || line.contains("message\":\"listening") {
            api = addr_of(&line);
        }
        if line.contains("lethe ready") {
            break;
        }
    }
    let (api, metrics) = (api.expect("api address"), metrics.expect("metrics address"));
    let get = |addr: &str, path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let scraped = get(&metrics, "/metrics");
    assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
    assert!(scraped.contains("lethe_bcrypt_queue_depth"));
    assert!(get(&metrics, "/health").starts_with("HTTP/1.1 404"));
    assert!(get(&api, "/metrics").starts_with("HTTP/1.1 404"), "not on the API face when separate");
    assert!(get(&api, "/health").starts_with("HTTP/1.1 200"));
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
}

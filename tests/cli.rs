//! The `lethe` binary: account commands with and without a running daemon, configuration errors,
//! `lethe config`, `--help`, and a graceful stop on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::daemon::{BIN, Daemon};

/// Runs `lethe` with a clean `LETHE_*` environment, so the developer's shell cannot leak in.
fn lethe(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("LETHE_") || k == "STATE_DIRECTORY" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run lethe")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn is_token(line: &str) -> bool {
    line.len() == 40 && line.bytes().all(|b| b.is_ascii_hexdigit())
}

fn account_cycle(dir: &Path) {
    let d = dir.to_str().unwrap();
    let add = lethe(&["account", "add", "alice@example.com", "--data-dir", d], &[]);
    assert!(add.status.success(), "{}", stderr(&add));
    let token = stdout(&add);
    assert!(token.ends_with('\n') && token.lines().count() == 1, "{token:?}");
    assert!(is_token(token.trim_end()), "{token:?}");

    let again = lethe(&["account", "add", "alice@example.com", "--data-dir", d], &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already exists"));
    assert!(stdout(&again).is_empty());

    lethe(&["account", "add", "bob@example.com", "--data-dir", d], &[]);
    let list = lethe(&["account", "list", "--data-dir", d], &[]);
    assert!(list.status.success());
    let lines: Vec<String> = stdout(&list).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("alice@example.com\t20") && lines[0].ends_with('Z'), "{lines:?}");
    assert!(!stdout(&list).contains(token.trim_end()), "list never shows a token");

    let rotated = lethe(&["account", "rotate-token", "alice@example.com", "--data-dir", d], &[]);
    assert!(rotated.status.success());
    assert!(is_token(stdout(&rotated).trim_end()));
    assert_ne!(stdout(&rotated), token);
    let unknown = lethe(&["account", "rotate-token", "nobody", "--data-dir", d], &[]);
    assert_eq!(unknown.status.code(), Some(1));

    let removed = lethe(&["account", "remove", "bob@example.com", "--data-dir", d], &[]);
    assert!(removed.status.success());
    assert!(stdout(&removed).is_empty());
    let again = lethe(&["account", "remove", "bob@example.com", "--data-dir", d], &[]);
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn account_commands_work_on_the_store_when_no_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    account_cycle(dir.path());
}

/// One HTTP/1.1 request over a plain socket; returns the status line and the body.
fn http(addr: &str, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[test]
fn account_commands_reach_a_running_daemon_which_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = Daemon::start(dir.path());
    let socket = dir.path().join("admin.sock");
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);

    // The daemon holds the database; these go through its admin socket.
    account_cycle(dir.path());
    let rotated = lethe(
        &["account", "rotate-token", "alice@example.com", "--data-dir", dir.path().to_str().unwrap()],
        &[],
    );
    let token = stdout(&rotated).trim_end().to_owned();

    let auth = lethe_auth("alice@example.com", &token);
    let (status, body) = http(
        &addr,
        &format!(
            "GET /api/v1/authcheck HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(status.contains("200"), "{status} {body}");
    assert!(body.contains("nominal"));

    let (status, _) = http(&addr, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(status.contains("200"));

    let exit = daemon.terminate();
    assert!(exit.success(), "graceful stop exits 0: {exit:?}");
    assert!(!socket.exists(), "the admin socket is removed on stop");

    // And with the daemon gone, the same data directory still holds the account.
    let list = lethe(&["account", "list", "--data-dir", dir.path().to_str().unwrap()], &[]);
    assert!(stdout(&list).contains("alice@example.com"));
}

fn lethe_auth(user: &str, token: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}")))
}

#[test]
fn invalid_configuration_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = lethe(&["serve", "--data-dir", d], &[("LETHE_STORAGE", "foo")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("storage: unknown engine \"foo\"; expected redb, memory or redis"),
        "{}",
        stderr(&o)
    );

    let o = lethe(&["serve", "--data-dir", d, "--listen", "not-an-address"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("listeners[0].addr"), "{}", stderr(&o));

    let o = lethe(&["serve", "--data-dir", d], &[("LETHE_TTL__MIN", "0")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("ttl.min"), "{}", stderr(&o));

    let o = lethe(&["config", "--config", "/nonexistent/lethe.toml"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("config: file /nonexistent/lethe.toml not found"), "{}", stderr(&o));
}

#[test]
fn environment_variables_that_name_no_key_are_ignored_with_a_warning() {
    // What an orchestrator injects into every pod of a namespace with a Service named `lethe`.
    let injected = [("LETHE_PORT", "tcp://10.0.0.7:8080"), ("LETHE_SERVICE_HOST", "10.0.0.7")];
    let o = lethe(&["config"], &injected);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("ignoring LETHE_PORT") && err.contains("ignoring LETHE_SERVICE_HOST"), "{err}");
    assert!(!err.contains("10.0.0.7"), "values are not echoed: {err}");

    let dir = tempfile::tempdir().unwrap();
    let (daemon, addr) = Daemon::start_with(dir.path(), &injected);
    let (status, _) = http(&addr, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(status.contains("200"), "{status}");
    daemon.kill();
}

#[test]
fn an_unknown_key_in_the_file_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lethe.toml");
    std::fs::write(&file, "[http]\nmax_conections = 10\n").unwrap();
    let o = lethe(&["serve", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("max_conections") && err.contains(file.to_str().unwrap()), "{err}");

    let o = lethe(&["config"], &[("LETHE_HTTP__MAX_CONNECTIONS", "lots")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("environment variable LETHE_HTTP__MAX_CONNECTIONS"), "{}", stderr(&o));
}

#[test]
fn a_master_key_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    std::fs::write(&key, [0u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = lethe(&["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
}

#[test]
fn config_prints_the_resolved_layers_as_toml() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/lethe.toml");
    let o = lethe(
        &["config", "--config", example, "--storage", "memory", "--public-url", "https://s.example/"],
        &[("LETHE_TTL__MAX_ANONYMOUS", "3600")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("storage = \"memory\""), "{out}");
    assert!(out.contains("public_url = \"https://s.example\""), "{out}");
    assert!(out.contains("max_anonymous = 3600"), "{out}");
    assert!(out.contains("[[listeners]]"), "{out}");
}

#[test]
fn every_command_explains_its_flags() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["account", "--help"],
        &["account", "add", "--help"],
        &["account", "list", "--help"],
        &["account", "remove", "--help"],
        &["account", "rotate-token", "--help"],
        &["config", "--help"],
    ] {
        let o = lethe(args, &[]);
        assert!(o.status.success(), "{args:?}");
        let out = stdout(&o);
        assert!(out.contains("--config") && out.contains("--data-dir"), "{args:?}: {out}");
    }
    let serve = stdout(&lethe(&["serve", "--help"], &[]));
    for flag in ["--listen", "--storage", "--public-url", "--read-only"] {
        assert!(serve.contains(flag), "{flag}");
    }
}

#[test]
fn the_admin_socket_drops_a_silent_client_and_backups_resolve_paths_for_the_caller() {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (daemon, _addr) = Daemon::start(dir.path());
    let socket = dir.path().join("admin.sock");

    // A client that connects and sends nothing is closed by the daemon (bounded wait, well past the
    // daemon's request deadline).
    let mut silent = UnixStream::connect(&socket).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    let read = silent.read_to_end(&mut buf);
    assert!(matches!(read, Ok(0)), "the daemon kept a silent client: {read:?}");

    // A relative path sent straight to the socket is refused, not resolved against the daemon's cwd.
    let mut raw = UnixStream::connect(&socket).unwrap();
    raw.write_all(b"{\"op\":\"backup\",\"out\":\"relative.redb\"}\n").unwrap();
    let mut reply = String::new();
    raw.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("not absolute"), "{reply}");

    // The CLI resolves a relative --out against its own working directory.
    let caller_cwd = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args(["backup", "--out", "mine.redb", "--data-dir", d])
        .current_dir(caller_cwd.path())
        .env_remove("LETHE_CONFIG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(caller_cwd.path().join("mine.redb").is_file());
    assert!(daemon.terminate().success());
}

#[test]
fn backup_reaches_a_running_daemon_and_the_copy_is_usable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (daemon, _addr) = Daemon::start(dir.path());
    lethe(&["account", "add", "grace@example.com", "--data-dir", d], &[]);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("snapshot.redb");
    let o = lethe(&["backup", "--out", out.to_str().unwrap(), "--data-dir", d], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = stdout(&o);
    let size = std::fs::metadata(&out).unwrap().len();
    assert_eq!(printed, format!("{}\t{size} bytes\n", out.display()));
    let again = lethe(&["backup", "--out", out.to_str().unwrap(), "--data-dir", d], &[]);
    assert_eq!(again.status.code(), Some(1), "an existing file is never overwritten");
    assert!(daemon.terminate().success());

    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&out, restored.path().join("lethe.redb")).unwrap();
    std::fs::copy(dir.path().join("master.key"), restored.path().join("master.key")).unwrap();
    let list = lethe(&["account", "list", "--data-dir", restored.path().to_str().unwrap()], &[]);
    assert!(stdout(&list).contains("grace@example.com"), "{}", stderr(&list));
}

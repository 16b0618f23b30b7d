//! The team commands of the `lethe` binary (`team.md` §3.1, §4.1): the server key made 0600 on first
//! use, readable by GnuPG and refused when others may read it; users added, listed, disabled and
//! enabled, with and without a running daemon.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::support::daemon::{BIN, Daemon};
use crate::support::gpg::Gpg;

fn lethe(args: &[&str]) -> Output {
    lethe_with(args, &[])
}

fn lethe_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("LETHE_") || k == "STATE_DIRECTORY" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied()).output().expect("run lethe")
}

/// Where the user cycle's commands (and a daemon beside them) write the audit trail.
fn audit_file(dir: &Path) -> String {
    dir.join("audit.log").to_str().unwrap().to_owned()
}

/// The `(event, outcome)` of every team user line in the trail, each checked to name no user, id or
/// fingerprint and to come from the operator.
fn user_lines(dir: &Path, never: &[&str]) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(audit_file(dir)).unwrap_or_default();
    for needle in never {
        assert!(!text.contains(needle), "{needle} is in the audit trail");
    }
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .filter(|l| l["event"].as_str().is_some_and(|e| e.starts_with("team.user.")))
        .map(|l| {
            assert_eq!(l["client_ip"], "admin", "{l}");
            (l["event"].as_str().unwrap().to_owned(), l["outcome"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Adds, lists, disables and enables users in `dir`, whichever way the commands reach the store.
fn user_cycle(dir: &Path, gpg: &Gpg) {
    let d = dir.to_str().unwrap();
    let audit = audit_file(dir);
    let lethe = |args: &[&str]| lethe_with(args, &[("LETHE_AUDIT__FILE", &audit)]);
    let alice = gpg.gen_key("Alice <alice@example.com>", "future-default", "never");
    let bob = gpg.gen_key("Bob <bob@example.com>", "rsa3072", "never");
    let alice_key = dir.join("alice.asc");
    let bob_key = dir.join("bob.asc");
    std::fs::write(&alice_key, gpg.export_public(&alice)).unwrap();
    std::fs::write(&bob_key, gpg.export_public(&bob)).unwrap();

    let add = lethe(&[
        "team",
        "user",
        "add",
        "alice@example.com",
        "--key",
        alice_key.to_str().unwrap(),
        "--admin",
        "--data-dir",
        d,
    ]);
    assert!(add.status.success(), "{}", err(&add));
    let id = out(&add);
    assert_eq!(id.lines().count(), 1, "{id:?}");
    let id = id.trim_end();
    assert!(lethe::domain::team::is_uuid(id) && id == id.to_ascii_lowercase() && &id[14..15] == "4", "{id}");

    let taken = lethe(&[
        "team",
        "user",
        "add",
        "ALICE@example.com",
        "--key",
        bob_key.to_str().unwrap(),
        "--data-dir",
        d,
    ]);
    assert_eq!(taken.status.code(), Some(1));
    assert!(err(&taken).contains("already exists"), "{}", err(&taken));
    let same_key =
        lethe(&["team", "user", "add", "carol", "--key", alice_key.to_str().unwrap(), "--data-dir", d]);
    assert_eq!(same_key.status.code(), Some(1));
    assert!(err(&same_key).contains("already registered"), "{}", err(&same_key));
    let bad_name =
        lethe(&["team", "user", "add", "has space", "--key", bob_key.to_str().unwrap(), "--data-dir", d]);
    assert_eq!(bad_name.status.code(), Some(1));
    // A private key where the public one belongs is refused with the reason, and its text never echoed.
    let secret_file = dir.join("secret.asc");
    std::fs::write(&secret_file, gpg.export_secret(&bob)).unwrap();
    let secret =
        lethe(&["team", "user", "add", "bob", "--key", secret_file.to_str().unwrap(), "--data-dir", d]);
    assert_eq!(secret.status.code(), Some(1));
    assert!(err(&secret).contains("secret key material"), "{}", err(&secret));
    assert!(!err(&secret).contains("BEGIN PGP"), "{}", err(&secret));

    let add_bob = lethe(&["team", "user", "add", "bob", "--key", bob_key.to_str().unwrap(), "--data-dir", d]);
    assert!(add_bob.status.success(), "{}", err(&add_bob));

    let list = lethe(&["team", "user", "list", "--data-dir", d]);
    assert!(list.status.success(), "{}", err(&list));
    let lines: Vec<String> = out(&list).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        vec![
            format!("{id}\talice@example.com\tadmin\t{alice}\tactive"),
            format!("{}\tbob\tuser\t{bob}\tactive", out(&add_bob).trim_end()),
        ]
    );
    assert!(!out(&list).contains("BEGIN PGP"));

    let disable = lethe(&["team", "user", "disable", "Bob", "--data-dir", d]);
    assert!(disable.status.success(), "{}", err(&disable));
    assert!(out(&disable).is_empty());
    let list = out(&lethe(&["team", "user", "list", "--data-dir", d]));
    assert!(list.lines().nth(1).unwrap().ends_with("\tdisabled"), "{list}");
    let enable = lethe(&["team", "user", "enable", "bob", "--data-dir", d]);
    assert!(enable.status.success(), "{}", err(&enable));
    let list = out(&lethe(&["team", "user", "list", "--data-dir", d]));
    assert!(list.lines().nth(1).unwrap().ends_with("\tactive"), "{list}");
    let unknown = lethe(&["team", "user", "disable", "nobody", "--data-dir", d]);
    assert_eq!(unknown.status.code(), Some(1));
}

/// What the user cycle leaves in the trail.
fn cycle_audited(dir: &Path) {
    let ids = std::fs::read_to_string(dir.join("audit.log")).unwrap();
    let pair = |e: &str, o: &str| (format!("team.user.{e}"), o.to_owned());
    assert_eq!(
        user_lines(dir, &["alice", "ALICE", "bob", "Bob", "nobody", "carol"]),
        [
            pair("created", "success"),
            pair("created", "failure"),
            pair("created", "failure"),
            pair("created", "failure"),
            pair("created", "failure"),
            pair("created", "success"),
            pair("disabled", "success"),
            pair("enabled", "success"),
            pair("disabled", "failure"),
        ],
        "{ids}"
    );
}

#[test]
fn team_user_commands_work_on_the_store_when_no_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    user_cycle(dir.path(), &Gpg::new());
    cycle_audited(dir.path());
}

#[test]
fn team_user_commands_reach_a_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let audit = audit_file(dir.path());
    let (daemon, _addr) = Daemon::start_with(dir.path(), &[("LETHE_AUDIT__FILE", &audit)]);
    let key_file = dir.path().join("team-server-key.asc");
    let made_by_daemon = std::fs::read(&key_file).expect("the daemon made the server key at start");
    user_cycle(dir.path(), &Gpg::new());
    let fpr = lethe(&["team", "server-key", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(fpr.status.success(), "{}", err(&fpr));
    assert_eq!(fpr.stdout.len(), 41);
    assert_eq!(std::fs::read(&key_file).unwrap(), made_by_daemon);
    assert!(daemon.terminate().success());
    cycle_audited(dir.path());
}

#[test]
fn the_server_key_is_made_0600_gnupg_reads_it_and_a_readable_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let first = lethe(&["team", "server-key", "--data-dir", d]);
    assert!(first.status.success(), "{}", err(&first));
    let fpr = out(&first);
    assert_eq!(fpr.len(), 41, "{fpr:?}");
    let fpr = fpr.trim_end();
    assert!(fpr.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)), "{fpr}");
    let key_file = dir.path().join("team-server-key.asc");
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(out(&lethe(&["team", "server-key", "--data-dir", d])).trim_end(), fpr, "made once, then kept");

    // GnuPG imports the secret key as written and names the same fingerprint: v4, ed25519 + cv25519.
    let gpg = Gpg::new();
    gpg.run(&["--import"], &std::fs::read(&key_file).unwrap());
    let listing = String::from_utf8(gpg.run(&["--with-colons", "--list-secret-keys"], b"")).unwrap();
    assert!(listing.lines().any(|l| l == format!("fpr:::::::::{fpr}:")), "{listing}");
    assert!(listing.lines().any(|l| l.starts_with("sec:") && l.split(':').nth(3) == Some("22")), "{listing}");
    assert!(listing.lines().any(|l| l.starts_with("ssb:") && l.split(':').nth(3) == Some("18")), "{listing}");

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let refused = lethe(&["team", "server-key", "--data-dir", d]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(err(&refused).contains("readable by group or others"), "{}", err(&refused));
    let serve = lethe(&["serve", "--listen", "127.0.0.1:0", "--data-dir", d]);
    assert_eq!(serve.status.code(), Some(1), "the daemon refuses to start too");
    assert!(err(&serve).contains("team server key file"), "{}", err(&serve));
}

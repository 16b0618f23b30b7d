//! The PyPI team clients, unmodified, against the real server (`team.md` §12): installed pinned from
//! PyPI into a venv under the target directory, made on first use and reused after.
//!
//! `requests-gpgauthlib` 0.1.2 checks the server key, runs stages 0–2 with its strict header checks,
//! then reads `/users/me.json` on the session and reuses that session through `checkSession`.
//! `passbolt-python-api` 0.3.9 logs in (undoing the challenge's quotemeta encoding), fetches its CSRF
//! cookie from `/users/me.json` and builds its user tuples from `/users.json`. `py-passbolt` 0.0.19
//! (PGPy) logs in through the `data` wrapper, regex-reads the CSRF cookie from `/users/me.json`'s own
//! reply, loads the resource types, and finds no groups.

use std::path::PathBuf;
use std::process::Command;

use crate::support::TestServer;
use crate::support::gpg::Gpg;

const CLIENTS: &[&str] = &["requests-gpgauthlib==0.1.2", "passbolt-python-api==0.3.9", "py-passbolt==0.0.19"];

/// The venv with the pinned clients; made once (under a lock, tests run in parallel).
fn venv() -> PathBuf {
    static MADE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = MADE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("team-clients-venv");
    let python = dir.join("bin/python");
    let stamp = dir.join(format!("installed-{}", CLIENTS.join("-")));
    if stamp.exists() {
        return python;
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .output()
        .expect("run python3 (Debian: python3)");
    assert!(
        made.status.success(),
        "python3 -m venv failed (Debian package python3-venv): {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let pip = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(CLIENTS)
        .output()
        .expect("run pip");
    assert!(pip.status.success(), "pip install {CLIENTS:?} failed: {}", String::from_utf8_lossy(&pip.stderr));
    std::fs::write(&stamp, b"").unwrap();
    python
}

const GPGAUTHLIB: &str = r#"
import sys, gnupg
from requests_gpgauthlib import GPGAuthSession
base, home, fpr = sys.argv[1:4]
gpg = gnupg.GPG(gnupghome=home)
session = GPGAuthSession(gpg=gpg, server_url=base, user_fingerprint=fpr)
assert session.gpgauth_version_is_supported
assert session.server_fingerprint
assert session.authenticate() is True
me = session.get(base + '/users/me.json')
assert me.status_code == 200, me.text
body = me.json()['body']
assert body['gpgkey']['fingerprint'] == fpr, body
# A second session object loads the saved cookies and finds the session still valid.
again = GPGAuthSession(gpg=gpg, server_url=base, user_fingerprint=fpr)
from requests_gpgauthlib.gpgauth_api import check_session_is_valid
assert check_session_is_valid(again)
print(body['id'])
"#;

/// Runs a client script with the venv's python (set up by `args`) off the runtime, requires it to
/// succeed, and returns what it printed, trimmed.
async fn run_client(client: &'static str, args: impl FnOnce(&mut Command) + Send + 'static) -> String {
    let out = tokio::task::spawn_blocking(move || {
        let mut python = Command::new(venv());
        args(&mut python);
        python.output().expect("run python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{client} failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.trim().to_owned()
}

/// Registers a user (not an admin) with its armored public key, as `lethe team user add` does.
async fn register(s: &TestServer, username: &str, armored_key: &str) -> lethe::domain::team::users::User {
    let new = lethe::domain::team::users::NewUser {
        username,
        armored_key,
        admin: false,
        first_name: None,
        last_name: None,
    };
    s.app.domain.team.add_user(new).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_gpgauthlib_logs_in_and_reads_users_me() {
    let s = TestServer::start(lethe::store::Engine::Redb).await;
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("alice <alice@example.com>", "future-default", "never");
    let user = register(&s, "alice", &gpg.export_public(&fpr)).await;
    let home = tempfile::tempdir().unwrap();
    let (base, gnupghome, fpr2) = (s.base.clone(), gpg.home().to_owned(), fpr.clone());
    let out = run_client("requests-gpgauthlib", move |python| {
        python
            .args(["-c", GPGAUTHLIB, &base])
            .arg(&gnupghome)
            .arg(&fpr2)
            // The client keeps its cookie jar under $HOME/.config; keep it in the test's own directory.
            .env("HOME", home.path());
    })
    .await;
    assert_eq!(out, user.id);
    s.stop().await;
}

const PASSBOLT_PYTHON_API: &str = r#"
import sys, passboltapi
base, fpr = sys.argv[1:3]
api = passboltapi.PassboltAPI(config={"PASSBOLT": {"SERVER": base, "USER_FINGERPRINT": fpr}})
users = api.list_users()
print(",".join(sorted(u.username + ":" + u.gpgkey.fingerprint for u in users)))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passbolt_python_api_logs_in_and_lists_users() {
    let s = TestServer::start(lethe::store::Engine::Memory).await;
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("alice <alice@example.com>", "future-default", "never");
    let bob_gpg = Gpg::new();
    let bob = bob_gpg.gen_key("bob <bob@example.com>", "rsa3072", "never");
    for (name, key) in [("alice", gpg.export_public(&fpr)), ("bob", bob_gpg.export_public(&bob))] {
        register(&s, name, &key).await;
    }
    let (base, gnupghome, fpr2) = (s.base.clone(), gpg.home().to_owned(), fpr.clone());
    let out = run_client("passbolt-python-api", move |python| {
        // The client uses gpg's default home.
        python.args(["-c", PASSBOLT_PYTHON_API, &base, &fpr2]).env("GNUPGHOME", &gnupghome);
    })
    .await;
    assert_eq!(out, format!("alice:{fpr},bob:{bob}"));
    s.stop().await;
}

const PY_PASSBOLT: &str = r#"
import sys, warnings, passbolt
warnings.simplefilter("ignore")
base, keyfile = sys.argv[1:3]
api = passbolt.PassboltAPI(dict_config={"base_url": base, "private_key": open(keyfile).read(), "passphrase": ""})
assert api.authenticated
assert api.token, "the csrfToken cookie came with /users/me.json"
assert api.resource_types == {"password-string": "669f8c64-242a-59fb-92fc-81f660975fd3", "password-and-description": "a28a04cd-6f53-518a-967c-9963bf9cec51"}, api.resource_types
assert api.get_groups() == []
assert [u["username"] for u in api.get_users()] == ["carol"]
print(api.user_id)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_passbolt_logs_in_with_pgpy_and_reads_types_users_and_groups() {
    let s = TestServer::start(lethe::store::Engine::Memory).await;
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("carol <carol@example.com>", "rsa3072", "never");
    let user = register(&s, "carol", &gpg.export_public(&fpr)).await;
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("carol.key");
    std::fs::write(&keyfile, gpg.export_secret(&fpr)).unwrap();
    let base = s.base.clone();
    let out = run_client("py-passbolt", move |python| {
        python.args(["-c", PY_PASSBOLT, &base]).arg(&keyfile);
    })
    .await;
    assert_eq!(out, user.id);
    s.stop().await;
}

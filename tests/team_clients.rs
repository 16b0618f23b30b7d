//! The PyPI team clients, unmodified, against the real server (`team.md` §12): installed pinned from
//! PyPI into a venv under the target directory, made on first use and reused after.
//!
//! `requests-gpgauthlib` 0.1.2 checks the server key, runs stages 0–2 with its strict header checks,
//! then reads `/users/me.json` on the session and reuses that session through `checkSession`.
//! `passbolt-python-api` 0.3.9 logs in (undoing the challenge's quotemeta encoding), fetches its CSRF
//! cookie from `/users/me.json` and builds its user tuples from `/users.json`. `py-passbolt` 0.0.19
//! (PGPy) logs in through the `data` wrapper, regex-reads the CSRF cookie from `/users/me.json`'s own
//! reply, loads the resource types, and finds no groups.
//!
//! End to end, passbolt-python-api (GnuPG) creates a resource, reads and decrypts it, shares it with a
//! second user through its own `post`/`put` after the dry run, and updates it re-encrypted for everyone
//! with access; py-passbolt (PGPy) then finds it as that second user, decrypts the new secret, and
//! creates a resource of its own with a signed-and-encrypted secret that the strict check accepts.

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

const ALICE_SHARES: &str = r#"
import sys, passboltapi
base, fpr, bob_id = sys.argv[1:4]
api = passboltapi.PassboltAPI(config={"PASSBOLT": {"SERVER": base, "USER_FINGERPRINT": fpr}})
resource = api.create_resource(name="db", password="pw1", username="root", uri="https://db.example.com")
assert api.get_password(resource.id) == "pw1"
assert [r["id"] for r in api.iterate_resources()] == [resource.id]
# Share through the client's own post/put, encrypting for the dry run's `added` users.
api.import_public_keys()
permissions = [{"is_new": True, "aro": "User", "aro_foreign_key": bob_id, "type": 1}]
simulated = api.post(f"/share/simulate/resource/{resource.id}.json", {"permissions": permissions})
added = [a["User"]["id"] for a in simulated["body"]["changes"]["added"]]
assert added == [bob_id], added
recipients = [u for u in api.list_users() if u.id in added]
api.put(f"/share/resource/{resource.id}.json", {"permissions": permissions, "secrets": api._encrypt_secrets("pw1", recipients)})
# update_resource re-encrypts for every user with access (filter[has-access]).
api.update_resource(resource.id, password="pw2", description="rotated")
assert api.get_password(resource.id) == "pw2"
assert api.read_resource(resource.id).description == "rotated"
print(resource.id)
"#;

const BOB_READS: &str = r#"
import sys, warnings, passbolt
warnings.simplefilter("ignore")
base, keyfile, resource_id = sys.argv[1:4]
api = passbolt.PassboltAPI(dict_config={"base_url": base, "private_key": open(keyfile).read(), "passphrase": ""})
assert [r["id"] for r in api.get_resources()] == [resource_id]
assert api.get_resource_per_uuid(resource_id)["name"] == "db"
plain = api.decrypt(api.get_resource_secret(resource_id))
assert bytes(plain) == b"pw2" if not isinstance(plain, str) else plain == "pw2", plain
# A PGPy-signed-and-encrypted secret passes the server's strict check.
me = api.get_user_public_key(api.user_id)
r = api.create_resource({"name": "bob's", "secrets": [{"data": api.encrypt("pw3", me)}]})
assert r.status_code == 200, r.text
own = r.json()["body"]["id"]
plain = api.decrypt(api.get_resource_secret(own))
assert (plain if isinstance(plain, str) else bytes(plain).decode()) == "pw3", plain
print(own)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_create_share_decrypt_and_reencrypt_a_resource_between_them() {
    let s = TestServer::start(lethe::store::Engine::Redb).await;
    let alice_gpg = Gpg::new();
    let alice_fpr = alice_gpg.gen_key("alice <alice@example.com>", "future-default", "never");
    register(&s, "alice", &alice_gpg.export_public(&alice_fpr)).await;
    let bob_gpg = Gpg::new();
    let bob_fpr = bob_gpg.gen_key("bob <bob@example.com>", "rsa3072", "never");
    let bob = register(&s, "bob", &bob_gpg.export_public(&bob_fpr)).await;

    // alice with passbolt-python-api (GnuPG): create, read, share with bob, update for both.
    let (base, gnupghome, fpr, bob_id) =
        (s.base.clone(), alice_gpg.home().to_owned(), alice_fpr.clone(), bob.id.clone());
    let resource = run_client("passbolt-python-api", move |python| {
        python.args(["-c", ALICE_SHARES, &base, &fpr, &bob_id]).env("GNUPGHOME", &gnupghome);
    })
    .await;
    assert!(lethe::domain::team::is_uuid(&resource), "{resource}");

    // bob with py-passbolt (PGPy): finds it, decrypts the re-encrypted secret, adds his own.
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("bob.key");
    std::fs::write(&keyfile, bob_gpg.export_secret(&bob_fpr)).unwrap();
    let (base, id) = (s.base.clone(), resource.clone());
    let own = run_client("py-passbolt", move |python| {
        python.args(["-c", BOB_READS, &base]).arg(&keyfile).arg(&id);
    })
    .await;
    assert!(lethe::domain::team::is_uuid(&own) && own != resource, "{own}");
    s.stop().await;
}

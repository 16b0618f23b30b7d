//! Backups: a consistent snapshot of the live database, taken while the server takes writes, that
//! `lethe serve` runs on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hyper::StatusCode;
use lethe::clock::Clock;
use lethe::store::Engine;
use serde_json::Value;

use crate::support::{TestServer, key};

async fn a_backup_taken_under_write_load_restores(engine: Engine) {
    let s = Arc::new(TestServer::start(engine).await);
    // Shares acknowledged before the backup starts must all be in it.
    let mut before = Vec::new();
    for i in 0..50 {
        before.push(s.share(&format!("secret=before-{i}")).await);
    }
    let revealed = before.pop().unwrap();
    s.post_form(&format!("/api/v1/secret/{}", key(&revealed, "secret_key")), "").await;

    // Keep writing while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut made = 0;
            while !stop.load(Ordering::SeqCst) && made < 2000 {
                assert_eq!(s.post_form("/api/v1/share", "secret=during").await.status, StatusCode::OK);
                made += 1;
            }
            made
        })
    };
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("lethe.redb");
    let store = s.app.domain.store().clone();
    let now = s.clock.now();
    let path = out.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        lethe::store::backup(store.blocking(), lethe::domain::KEYSPACES, &path, now)
    })
    .await
    .unwrap()
    .expect("backup");
    stop.store(true, Ordering::SeqCst);
    let made_during = load.await.unwrap();
    assert!(bytes > 0 && std::fs::metadata(&out).unwrap().len() == bytes);
    assert!(!out.with_file_name("lethe.redb.partial").exists());
    // Never overwrites.
    let again = lethe::store::backup(s.app.domain.store().blocking(), lethe::domain::KEYSPACES, &out, now);
    assert!(again.is_err());

    // Serve the backup with the same master key, as an operator restoring would.
    let restore_dir = tempfile::tempdir().unwrap();
    std::fs::copy(&out, restore_dir.path().join(lethe::store::REDB_FILE)).unwrap();
    let key_file = s.app.domain.settings.master_key_file.clone();
    std::fs::copy(&key_file, restore_dir.path().join("master.key")).unwrap();
    let s = Arc::try_unwrap(s).ok().expect("sole owner");
    s.stop().await;
    let restored = TestServer::start_on(Engine::Redb, restore_dir.path()).await;
    // Writes made during the backup are either wholly in it or wholly absent: every metadata record
    // in the copy has its secret (one metadata record belongs to the secret revealed before).
    let secrets = restored.app.domain.store().count(lethe::domain::secrets::SECRET).await.unwrap();
    let metadata = restored.app.domain.store().count(lethe::domain::secrets::METADATA).await.unwrap();
    assert_eq!(metadata, secrets + 1);
    assert!(secrets >= before.len() as u64 && secrets <= before.len() as u64 + made_during);
    for m in &before {
        let r = restored.post_form(&format!("/api/v1/secret/{}", key(m, "secret_key")), "").await;
        assert!(r.json()["value"].as_str().unwrap().starts_with("before-"), "{}", r.text());
    }
    let gone = restored.post_form(&format!("/api/v1/secret/{}", key(&revealed, "secret_key")), "").await;
    assert_eq!(gone.json()["message"], "Unknown secret");
    let meta: Value =
        restored.get(&format!("/api/v1/private/{}", key(&revealed, "metadata_key"))).await.json();
    assert_eq!(meta["state"], "received");
    eprintln!("backup: {bytes} bytes, {secrets} secrets, {made_during} shares made while it ran");
    restored.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redb_backup_taken_under_write_load_restores() {
    a_backup_taken_under_write_load_restores(Engine::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_backup_taken_under_write_load_restores() {
    a_backup_taken_under_write_load_restores(Engine::Memory).await;
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

/// Names in `dir`, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A backup is written where it was asked to be and nowhere else: a symbolic link planted at the
/// temporary name older builds used (`<out>.partial`), or at the final name itself, dangling or not,
/// redirects nothing, and the copy and its temporary file are the owner's alone.
async fn planted_links_cannot_redirect_a_backup(engine: Engine) {
    let s = TestServer::start(engine).await;
    s.share("secret=backed+up").await;
    let store = s.app.domain.store().clone();
    let now = s.clock.now();
    let backup = move |out: std::path::PathBuf| {
        let store = store.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                lethe::store::backup(store.blocking(), lethe::domain::KEYSPACES, &out, now)
            })
            .await
            .unwrap()
        }
    };
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("victim");
    std::fs::write(&victim, b"not yours to overwrite").unwrap();
    let out_dir = tempfile::tempdir().unwrap();

    // At the old temporary name: the backup neither follows nor needs it.
    let out = out_dir.path().join("copy.redb");
    std::os::unix::fs::symlink(&victim, out_dir.path().join("copy.redb.partial")).unwrap();
    let bytes = backup(out.clone()).await.expect("backup");
    assert_eq!(std::fs::read(&victim).unwrap(), b"not yours to overwrite");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), bytes);
    assert_eq!(mode(&out), 0o600, "the copy is the owner's alone");
    assert_eq!(names(out_dir.path()), ["copy.redb", "copy.redb.partial"], "no temporary file is left");

    // At the final name, pointing at a file or at nothing: refused, nothing written through it.
    for (name, target) in [("to-file.redb", victim.clone()), ("dangling.redb", elsewhere.path().join("new"))]
    {
        let out = out_dir.path().join(name);
        std::os::unix::fs::symlink(&target, &out).unwrap();
        let refused = backup(out.clone()).await;
        assert!(refused.is_err_and(|e| e.to_string().contains("already exists")), "{name}");
        assert_eq!(std::fs::read_link(&out).unwrap(), target, "the link is left as it was");
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"not yours to overwrite");
    assert!(!elsewhere.path().join("new").exists(), "nothing was created through a dangling link");
    assert_eq!(names(elsewhere.path()), ["victim"]);
    assert_eq!(names(out_dir.path()), ["copy.redb", "copy.redb.partial", "dangling.redb", "to-file.redb"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_links_cannot_redirect_a_redb_backup() {
    planted_links_cannot_redirect_a_backup(Engine::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_links_cannot_redirect_a_memory_backup() {
    planted_links_cannot_redirect_a_backup(Engine::Memory).await;
}

//! The web app in a real browser: Debian's Chromium, headless, driven by `playwright-core` (npm, with
//! the system browser: nothing downloads a browser) through `web/e2e/browser.test.mjs`, against this
//! real server with a full listener and a read-only mirror that every link points at.
//!
//! What it needs is checked first and named when missing, so the test fails with the fix in its
//! message instead of being skipped: `node` 20 or later and `npm` (`nodejs`, `npm`), `chromium` (Debian
//! `chromium`), and `web/node_modules`, installed here with `npm ci --ignore-scripts` from the
//! committed lockfile when absent.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lethe::store::Engine;

use crate::support::TestServer;

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

fn require(program: &str, debian_package: &str) {
    let found = Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        found,
        "the browser tests need `{program}`, which is missing: install it with \
         `apt-get install -y {debian_package}` (.ci/run does)"
    );
}

/// playwright-core and the test runner's reporters need Node 20 or later.
fn require_node_20() {
    require("node", "nodejs");
    let out = run(Command::new("node").arg("--version"));
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let major: u32 =
        version.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    assert!(
        major >= 20,
        "the browser tests need Node 20 or later (playwright-core requires it); found {version}: install a \
         newer `nodejs` package"
    );
}

fn chromium() -> String {
    let path = std::env::var("LETHE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&path).exists(),
        "the browser tests need Chromium at {path}, which is missing: install it with \
         `apt-get install -y chromium` (.ci/run does), or point LETHE_CHROMIUM at a Chromium binary"
    );
    path
}

/// `web/node_modules` from the committed lockfile; install scripts stay off (esbuild's binary comes
/// in its platform package, playwright-core has none, and none may download a browser).
fn node_modules(web: &Path) {
    // Both tests here may find it missing at once; one `npm ci` at a time in one directory.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if web.join("node_modules/playwright-core").exists() && web.join("node_modules/openpgp").exists() {
        return;
    }
    let out =
        run(Command::new("npm").args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"]).current_dir(web));
    assert!(
        out.status.success(),
        "`npm ci --ignore-scripts` in web/ failed (it needs the npm registry once):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The app's pure parts and its OpenPGP round trips (`web/test/`), under the same openpgp version the
/// bundle carries; here so that `cargo test` runs them too.
#[test]
fn the_web_apps_unit_tests_pass() {
    let web = web_dir();
    require("node", "nodejs");
    require("npm", "npm");
    node_modules(&web);
    let out = run(Command::new("node").args(["--test", "--test-reporter=spec", "test/"]).current_dir(&web));
    let report =
        format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "web unit tests failed:\n{report}");
    assert!(report.contains("ℹ fail 0") && !report.contains("ℹ pass 0"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_web_flow_works_in_chromium() {
    let web = web_dir();
    require_node_20();
    require("npm", "npm");
    let chromium = chromium();
    node_modules(&web);
    let s = TestServer::start_with_mirror(Engine::Redb, &|_| {}).await;
    // The browser compares the server's `expires_at` with its own clock (a request past it shows as
    // expired), so the server's clock must read the real time here, not the suite's fixed start.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
    s.clock.set(now.as_secs());
    let (base, mirror) = (s.base.clone(), s.mirror.clone().expect("a mirror"));
    // Screenshots for the README: target/screenshots unless LETHE_SCREENSHOTS names another place
    // (docs/screenshots to refresh the committed ones).
    let shots = std::env::var("LETHE_SCREENSHOTS").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots").to_string_lossy().into_owned()
    });
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new("node")
            .args(["--test", "--test-reporter=spec", "e2e/browser.test.mjs"])
            .current_dir(&web)
            .env("LETHE_URL", base)
            .env("LETHE_MIRROR", mirror)
            .env("LETHE_CHROMIUM", chromium)
            // The command-line client, for the tests of links and requests moving to and from it.
            .env("LETHE_BIN", env!("CARGO_BIN_EXE_lethe"))
            .env("LETHE_SCREENSHOTS", shots))
    })
    .await
    .expect("the node runner");
    let report =
        format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser tests failed:\n{report}");
    // node --test exits 0 when it found no test at all; a run must have passed some and failed none.
    assert!(report.contains("ℹ fail 0") && !report.contains("ℹ pass 0"), "{report}");
    s.stop().await;
}

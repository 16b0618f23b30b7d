//! A real `lethe serve` child process, its stderr watched for log lines: for the command-line, crash
//! and deployment tests that need the binary rather than the in-process server.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_lethe");

pub struct Daemon {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    /// Starts `lethe serve` on `127.0.0.1:0` in `dir`; returns once it is ready, with its address.
    pub fn start(dir: &Path) -> (Daemon, String) {
        Daemon::start_with(dir, &[])
    }

    /// [`Daemon::start`] with extra environment (configuration overrides such as
    /// `LETHE_RATE_LIMIT__ENABLED`).
    pub fn start_with(dir: &Path, env: &[(&str, &str)]) -> (Daemon, String) {
        Daemon::start_args(dir, &[], env)
    }

    /// [`Daemon::start_with`] with extra `lethe serve` flags (`--read-only`, say).
    pub fn start_args(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Daemon, String) {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.to_str().expect("UTF-8 path")])
            .args(args)
            .env_remove("LETHE_STORAGE")
            .env_remove("LETHE_CONFIG")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lethe serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut daemon = Daemon { child, lines };
        let addr_line = daemon.wait_for("listening");
        let addr = addr_line
            .split("\"addr\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no address in {addr_line}"))
            .to_owned();
        daemon.wait_for("lethe ready");
        (daemon, addr)
    }

    /// The next log line containing `needle`; fails after 20 s.
    pub fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(err) => panic!("lethe serve never logged {needle:?}: {err}"),
            }
        }
    }

    /// SIGKILL: the crash case.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL lethe serve");
        self.child.wait().expect("reap lethe serve");
    }

    /// SIGTERM, then waits for the graceful stop and the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(killed.success());
        self.wait_for("stopped");
        self.child.wait().expect("wait")
    }
}

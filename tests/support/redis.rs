//! A real `redis-server` for one test: started on a free loopback port in its own temporary directory,
//! with the persistence lethe requires (`appendonly yes`, `appendfsync always`), and killed on drop.
//!
//! Shared by the integration tests and the store's own unit tests (which include this file by path),
//! so both run against the same server setup.

// Each of the two crates that include this file uses only part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server may take to answer its first PING.
const READY_DEADLINE: Duration = Duration::from_secs(10);

pub struct RedisServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
    /// The `extra` arguments it was started with, for [`RedisServer::restart_as_started`].
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server with lethe's required persistence.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// Starts a server with these extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        RedisServer::start_from(None, extra)
    }

    /// Starts a server from a configuration file (its settings first, then port, directory and
    /// `extra` over them).
    pub fn start_from(config: Option<&str>, extra: &[&str]) -> RedisServer {
        // A port picked from the kernel can be taken again before redis binds it; try a few.
        for _ in 0..5 {
            let port = free_port();
            let dir = tempfile::tempdir().expect("temporary directory for redis-server");
            let child = spawn(config, port, dir.path(), extra);
            let extra = extra.iter().map(|a| (*a).to_owned()).collect();
            let mut server = RedisServer { child, port, _dir: dir, extra };
            if server.wait_ready() {
                return server;
            }
        }
        panic!("redis-server did not start on a free loopback port in five attempts");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (Debian package redis-tools) runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Whether the server answers PING.
    pub fn answers(&self) -> bool {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "PING"])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "PONG")
            .unwrap_or(false)
    }

    /// Polls until the server answers, or it exits, or the deadline passes.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + READY_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.answers() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Starts the server again on the same port and directory, after [`RedisServer::kill`]: it reloads
    /// its append-only file, as a restarted Redis does.
    pub fn restart(&mut self) {
        self.respawn(&["--appendonly", "yes", "--appendfsync", "always"]);
    }

    /// Starts the server again on the same port and directory with the arguments it was first started
    /// with (a cluster node's: it reads its `nodes.conf` and rejoins with its slots).
    pub fn restart_as_started(&mut self) {
        let extra = self.extra.clone();
        self.respawn(&extra);
    }

    fn respawn<S: AsRef<std::ffi::OsStr>>(&mut self, extra: &[S]) {
        self.kill();
        self.child = spawn(None, self.port, self._dir.path(), extra);
        assert!(self.wait_ready(), "redis-server did not come back on its port");
    }

    /// Stops the server at once, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server` on `port` in `dir`: `config`'s settings first, then `extra` over them.
fn spawn<S: AsRef<std::ffi::OsStr>>(
    config: Option<&str>,
    port: u16,
    dir: &std::path::Path,
    extra: &[S],
) -> Child {
    Command::new("redis-server")
        .args(config)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--dir", dir.to_str().expect("utf-8 temporary path")])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("cannot run redis-server ({err}); install the Debian package redis-server")
        })
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long a new cluster may take until every node reports `cluster_state:ok`.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);

/// A local Redis Cluster of three masters (no replicas), each a [`RedisServer`] with lethe's required
/// persistence and its own bus port; killed on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli (Debian package redis-tools) runs");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    /// The seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("redis://127.0.0.1:{}", n.port)).collect()
    }

    /// Polls until every node reports `cluster_state:ok`.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        while !self.nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
            assert!(Instant::now() < deadline, "the cluster did not reach cluster_state:ok");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many keys each master holds.
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.cli(&["DBSIZE"]).parse().expect("DBSIZE answers a number")).collect()
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("local address")
        .port()
}

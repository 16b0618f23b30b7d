//! The server `lethe bench` (and the HTTP benches) start in this process, built through the
//! composition root (`server::Parts`) like the daemon, in a temporary data directory.

use super::*;

/// A server started by `lethe bench` (and the HTTP benches) in this process, on `127.0.0.1:0`, in a
/// temporary data directory it removes when stopped.
#[derive(Debug)]
pub struct LocalServer {
    pub(super) base: String,
    pub(super) stop: watch::Sender<bool>,
    pub(super) task: tokio::task::JoinHandle<()>,
    pub(super) app: Arc<App>,
    /// The same store the server writes through, kept to read its writer statistics.
    pub(super) redb: Option<Arc<RedbStore>>,
    pub(super) db_file: PathBuf,
    pub(super) dir: TempDir,
    /// On the redis engine, its URL and the run's key prefix, whose keys are removed at stop.
    pub(super) redis: Option<(String, String)>,
}

impl LocalServer {
    /// Starts a full-mode server with rate limits off (the load comes from one address) and room for
    /// `concurrency` connections.
    pub async fn start(engine: Engine, bcrypt_cost: u32, concurrency: usize) -> Result<LocalServer, String> {
        LocalServer::start_on(engine, bcrypt_cost, concurrency, None).await
    }

    /// [`LocalServer::start`], on the redis engine against `redis_url` (default: the configuration's
    /// default URL), under a key prefix of its own: the run's master key is new, and a prefix shared
    /// with a deployment would refuse it (or mix the run's records into the deployment's).
    pub async fn start_on(
        engine: Engine,
        bcrypt_cost: u32,
        concurrency: usize,
        redis_url: Option<&str>,
    ) -> Result<LocalServer, String> {
        let dir = TempDir::new()?;
        let listener =
            TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
        let addr = listener.local_addr().map_err(|e| format!("listener address: {e}"))?;
        let base = format!("http://{addr}");
        // Every connection comes from this one address, so the per-client cap is the listener's.
        let connections = concurrency.max(1024) + 16;
        let raw = RawConfig {
            data_dir: Some(dir.path().to_owned()),
            storage: engine.to_string(),
            public_url: Some(base.clone()),
            listeners: vec![RawListener { addr: addr.to_string(), mode: "full".into() }],
            passphrase: PassphraseRules { bcrypt_cost, ..PassphraseRules::default() },
            // The load comes from one address; a limiter would measure itself.
            rate_limit: RateLimit { enabled: false, ..RateLimit::default() },
            http: Http {
                max_connections: connections,
                max_connections_per_client: connections,
                ..Http::default()
            },
            ..RawConfig::default()
        };
        let mut raw = raw;
        if let Some(url) = redis_url {
            raw.redis.urls = vec![url.to_owned()];
        }
        raw.redis.key_prefix = format!("lethe-bench-{}:", dir.name());
        let settings = Arc::new(raw.validate(None).map_err(|e| format!("configuration: {e}"))?);
        let redis = (engine == Engine::Redis)
            .then(|| {
                settings
                    .raw
                    .redis
                    .urls
                    .first()
                    .map(|url| (url.clone(), settings.raw.redis.key_prefix.clone()))
            })
            .flatten();
        let db_file = dir.path().join(store::REDB_FILE);
        let parts = Parts::open(settings, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
        let redb = parts.redb.clone();
        let app = Arc::new(parts.app(crate::audit::AuditSink::disabled()));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(crate::server::run(Arc::clone(&app), vec![(listener, Mode::Full)], stop_rx));
        Ok(LocalServer { base, stop, task, app, redb, db_file, dir, redis })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Size of the redb file; `None` on the memory store.
    pub fn file_size(&self) -> Option<u64> {
        self.redb.as_ref()?;
        std::fs::metadata(&self.db_file).ok().map(|m| m.len())
    }

    /// Bytes in pages the redb file has in use ([`RedbStore::allocated_bytes`]); `None` on the memory
    /// store, or if the store cannot say. It holds the write lock while it walks the tables, so call it
    /// between phases.
    pub async fn allocated_bytes(&self) -> Option<u64> {
        let redb = Arc::clone(self.redb.as_ref()?);
        tokio::task::spawn_blocking(move || redb.allocated_bytes().ok()).await.ok().flatten()
    }

    /// [`Flush`] of the data directory's disk; `None` on the memory store, which never flushes.
    pub async fn probe_flush(&self) -> Option<Result<Flush, String>> {
        self.redb.as_ref()?;
        let dir = self.dir.path().to_owned();
        let probed = tokio::task::spawn_blocking(move || probe_flush(&dir)).await;
        Some(match probed {
            Ok(result) => result.map_err(|err| err.to_string()),
            Err(err) => Err(format!("the probe stopped: {err}")),
        })
    }

    /// The group-commit writer's totals; `None` on the memory store.
    pub fn writer_stats(&self) -> Option<WriterStats> {
        self.redb.as_ref().map(|r| r.writer_stats())
    }

    /// Stops gracefully, closes the store and removes the data directory.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        // The store (and its writer thread) closes when the last handle goes; then the directory can go.
        drop(self.app);
        drop(self.redb);
        drop(self.dir);
        if let Some((url, prefix)) = &self.redis {
            // Best effort: what stays behind (on an error here) is under the run's own prefix, and
            // all of it but the master key's check value expires within the hour.
            let _ = remove_keys(url, prefix).await;
        }
    }
}

/// Removes every key under `prefix` (letters, digits, `-` and `:`, so no glob character) from the
/// Redis at `url`.
async fn remove_keys(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(keys).query_async::<()>(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// A directory under the system's temporary directory, mode 0700, removed on drop.
#[derive(Debug)]
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new() -> Result<TempDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("lethe-bench-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }

    /// The directory's own name (`lethe-bench-<pid>-<nanos>`) without the leading `lethe-bench-`.
    pub(super) fn name(&self) -> String {
        let name = self.0.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        name.trim_start_matches("lethe-bench-").to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

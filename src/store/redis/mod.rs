//! The Redis/Valkey backend: the store's keyspaces kept in a Redis server that several lethe nodes
//! share, so a secret made on one node is revealed, exactly once, on any.
//!
//! This module owns the key layout in Redis, the Lua scripts that make a [`Batch`] atomic, the
//! connection (one multiplexed connection that reconnects by itself) and the runtime that drives it,
//! and the durability check made at open. It knows nothing of the domain, like every backend.
//!
//! Layout, under the operator's `key_prefix` (`lethe:`): an entry is a hash at
//! `<prefix>d<tag>:<key>` with fields `v` (value), `n` (version) and `e` (expiry, Unix seconds, empty
//! for never); a listed keyspace also keeps a sorted set `<prefix>i<tag>` of its keys, all at score 0,
//! so prefix scans are ordered range reads (`ZRANGEBYLEX`) instead of walks over the whole keyspace.
//!
//! Why Lua for the batch and not `MULTI` under `WATCH`: a script checks every condition and applies
//! every mutation in one round trip, and Redis runs it with nothing interleaved, so of 50 racing
//! reveals one applies and 49 see the conflict at once; under `WATCH` the losers would abort and
//! retry, each retry another round trip, and the conditions would still have to be read first.
//!
//! Expiry is Redis's own (`EXPIRE`, set to the entry's remaining life by the caller's clock, so a
//! test clock and Redis's agree on what is due), and every read, condition and take also checks `e`
//! against the passed-in `now`: an entry is gone at its time whether or not Redis has removed it.
//! Redis reclaims the space itself, so there is nothing for the reaper to sweep: `purge_expired`
//! removes nothing and `next_expiry` names nothing due.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::Value;
use ::redis::aio::ConnectionManager;

use super::*;

/// How long one command may wait for Redis before the store reports itself unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys fetched per `SCAN` step when a keyspace without an index is walked.
const SCAN_COUNT: usize = 1000;

/// What [`RedisStore::open`] needs; built from the `[redis]` settings.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://` or `rediss://` URLs; the first is used (several name cluster seeds).
    pub urls: Vec<String>,
    /// Prefix of every key lethe writes, so one Redis can hold other data too.
    pub key_prefix: String,
    /// Password read from `redis.password_file`, kept out of URLs and logs.
    pub password: Option<String>,
    /// Start even when Redis does not fsync every write (`appendonly yes`, `appendfsync always`).
    pub accept_weaker_durability: bool,
    /// A check value of this node's master key (a keyed hash, never the key): the first node records
    /// it in Redis, and a node whose value differs is refused, since it could open nothing the others
    /// made.
    pub key_check: Option<String>,
}

impl fmt::Debug for RedisOptions {
    // URLs may carry credentials; a password always is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("urls", &self.urls.len())
            .field("key_prefix", &self.key_prefix)
            .field("accept_weaker_durability", &self.accept_weaker_durability)
            .finish_non_exhaustive()
    }
}

/// The Redis store.
pub struct RedisStore {
    /// Drives the connection and every command; owned here so that the blocking methods work from
    /// threads without a runtime (the CLI) and the async paths never wait on the caller's runtime.
    /// An `Option` only so `Drop` can shut it down without blocking the thread that drops it.
    runtime: Option<tokio::runtime::Runtime>,
    client: Client,
    scan: Arc<::redis::Script>,
}

/// What a read or a batch needs, cheap to clone into a task: the connection and the key layout.
#[derive(Clone)]
struct Client {
    conn: ConnectionManager,
    prefix: Vec<u8>,
    /// Tags of the listed keyspaces, which keep a key index.
    listed: [bool; Keyspace::MAX_TAGS],
    batch: Arc<::redis::Script>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

fn unavailable(err: ::redis::RedisError) -> StoreError {
    // The error's text names the failure (refused, timed out, authentication); never a key or value,
    // which it does not hold.
    StoreError::Io(format!("Redis is unavailable: {err}"))
}

/// Conditions and mutations of a batch in one script: checked in order, then applied in order, with
/// nothing of any other client in between (Redis runs a script alone).
const BATCH_SCRIPT: &str = r#"
local now = tonumber(ARGV[1])
local ncond = tonumber(ARGV[2])
local nmut = tonumber(ARGV[3])
local function live(k)
  local r = redis.call('HMGET', k, 'n', 'e', 'v')
  if not r[1] then return nil end
  if r[2] ~= '' and tonumber(r[2]) <= now then return nil end
  return r
end
local a = 4
for i = 1, ncond do
  local kind, k, ver = ARGV[a], KEYS[tonumber(ARGV[a + 1])], ARGV[a + 2]
  a = a + 3
  local e = live(k)
  local ok
  if kind == 'a' then ok = (e == nil)
  elseif kind == 'p' then ok = (e ~= nil)
  else ok = (e ~= nil and e[1] == ver) end
  if not ok then return {0, i - 1} end
end
local out = {1}
for i = 1, nmut do
  local kind, k, idx, member, value, exp =
    ARGV[a], KEYS[tonumber(ARGV[a + 1])], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  a = a + 6
  local old = live(k)
  redis.call('DEL', k)
  local kept = false
  if kind == 'P' and (exp == '' or tonumber(exp) > now) then
    local ver = 1
    if old then ver = tonumber(old[1]) + 1 end
    redis.call('HSET', k, 'v', value, 'n', string.format('%d', ver), 'e', exp)
    if exp ~= '' then redis.call('EXPIRE', k, tonumber(exp) - now) end
    kept = true
  end
  if idx ~= '' then
    local ik = KEYS[tonumber(idx)]
    if kept then redis.call('ZADD', ik, 0, member) else redis.call('ZREM', ik, member) end
  end
  if kind == 'T' and old then out[#out + 1] = {old[1], old[2], old[3]} else out[#out + 1] = 0 end
end
return out
"#;

/// A prefix scan of a listed keyspace through its index, skipping (and unindexing) entries Redis has
/// already expired; returns up to `limit` live entries as flat `key, n, e, v` quadruples.
const SCAN_SCRIPT: &str = r#"
local idx, base, prefix = KEYS[1], ARGV[1], ARGV[2]
local now, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local out, found, offset = {}, 0, 0
while found < limit do
  local members = redis.call('ZRANGEBYLEX', idx, '[' .. prefix, '+', 'LIMIT', offset, 256)
  if #members == 0 then break end
  for _, m in ipairs(members) do
    if string.sub(m, 1, #prefix) ~= prefix then return out end
    local r = redis.call('HMGET', base .. m, 'n', 'e', 'v')
    if not r[1] then
      redis.call('ZREM', idx, m)
      offset = offset - 1
    elseif r[2] == '' or tonumber(r[2]) > now then
      out[#out + 1] = m
      out[#out + 1] = r[1]
      out[#out + 1] = r[2]
      out[#out + 1] = r[3]
      found = found + 1
      if found >= limit then return out end
    end
  end
  offset = offset + #members
end
return out
"#;

impl RedisStore {
    /// Connects, checks Redis's persistence, and returns the store. Blocks while it connects.
    pub fn open(options: &RedisOptions, keyspaces: &'static [Keyspace]) -> Result<RedisStore, StoreError> {
        Keyspace::check_all(keyspaces)?;
        let url =
            options.urls.first().ok_or_else(|| StoreError::Io("redis.urls names no Redis server".into()))?;
        let mut info = ::redis::IntoConnectionInfo::into_connection_info(url.as_str())
            .map_err(|err| StoreError::Io(format!("redis.urls: not a Redis URL ({:?})", err.kind())))?;
        if let Some(password) = &options.password {
            info.redis.password = Some(password.clone());
        }
        let client = ::redis::Client::open(info).map_err(unavailable)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lethe-redis")
            .enable_all()
            .build()
            .map_err(|err| StoreError::Io(format!("cannot start the Redis runtime: {err}")))?;
        // Every request made while Redis is away waits for the reconnection under way, and the crate
        // backs off from one second per retry (its default multiplies that by 100): with any retry a
        // request would wait seconds to learn that Redis is gone. One attempt each: a request then
        // fails at once (503, or the v1 dialect's error) and the next one tries again, so the node
        // is back within a request of Redis's return.
        let config = ::redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(RESPONSE_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT);
        let conn = wait_on(runtime.handle(), async move {
            ConnectionManager::new_with_config(client, config).await.map_err(unavailable)
        })?;
        let mut listed = [false; Keyspace::MAX_TAGS];
        for ks in keyspaces {
            listed[usize::from(ks.tag())] = ks.is_listed();
        }
        let store = RedisStore {
            runtime: Some(runtime),
            client: Client {
                conn,
                prefix: options.key_prefix.as_bytes().to_vec(),
                listed,
                batch: Arc::new(::redis::Script::new(BATCH_SCRIPT)),
            },
            scan: Arc::new(::redis::Script::new(SCAN_SCRIPT)),
        };
        store.check_durability(options.accept_weaker_durability)?;
        if let Some(check) = &options.key_check {
            store.claim_key_check(check)?;
        }
        Ok(store)
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        // Present from open until drop.
        self.runtime.as_ref().map(tokio::runtime::Runtime::handle).expect("runtime present until drop")
    }

    /// Runs `fut` on the store's runtime and waits for it on this thread.
    fn wait<T, F>(&self, fut: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        wait_on(self.handle(), fut)
    }

    /// Runs `fut` on the store's runtime and hands its result to `done` there; nothing waits.
    fn then<T, F>(&self, fut: F, done: Reply<T>)
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.handle().spawn(async move { done(fut.await) });
    }

    /// Records `check` if no node has yet, else refuses a value other than the one recorded.
    fn claim_key_check(&self, check: &str) -> Result<(), StoreError> {
        let mut full = self.client.prefix.clone();
        full.extend_from_slice(b"master-key-check");
        let mut conn = self.client.conn.clone();
        let check_owned = check.to_owned();
        let recorded: String = self.wait(async move {
            let mut set = ::redis::cmd("SET");
            set.arg(full.as_slice()).arg(check_owned).arg("NX");
            let _: Option<String> = set.query_async(&mut conn).await.map_err(unavailable)?;
            let mut get = ::redis::cmd("GET");
            get.arg(full.as_slice());
            get.query_async(&mut conn).await.map_err(unavailable)
        })?;
        if recorded == check {
            return Ok(());
        }
        Err(StoreError::Io(
            "this node's master key is not the one the other nodes on this Redis use (the check value \
             recorded in Redis differs); copy master_key_file from a node already running here"
                .into(),
        ))
    }

    /// Refuses a Redis that may lose an acknowledged write, unless the operator accepted that.
    fn check_durability(&self, accept_weaker: bool) -> Result<(), StoreError> {
        let mut conn = self.client.conn.clone();
        let found = self.wait(async move {
            let mut cmd = ::redis::cmd("CONFIG");
            cmd.arg("GET").arg("append*");
            let pairs: Result<Vec<String>, _> = cmd.query_async(&mut conn).await;
            Ok(pairs)
        })?;
        let verdict = match found {
            Ok(pairs) => {
                let setting = |name: &str| {
                    pairs
                        .chunks(2)
                        .find(|pair| pair[0] == name)
                        .and_then(|pair| pair.get(1).cloned())
                        .unwrap_or_else(|| "unset".into())
                };
                let (appendonly, appendfsync) = (setting("appendonly"), setting("appendfsync"));
                if appendonly == "yes" && appendfsync == "always" {
                    return Ok(());
                }
                format!(
                    "Redis has appendonly {appendonly} and appendfsync {appendfsync}, so an acknowledged \
                     write can be lost in a crash of Redis; set appendonly yes and appendfsync always \
                     (see config/redis.conf)"
                )
            }
            Err(err) => format!(
                "lethe cannot read Redis's persistence settings (CONFIG GET is not permitted: {}), so \
                 it cannot tell whether an acknowledged write survives a crash of Redis",
                err.code().unwrap_or("refused")
            ),
        };
        if accept_weaker {
            tracing::warn!(
                "{verdict}; starting anyway because redis.accept_weaker_durability = true: \
                 acknowledged creates and reveals are only as durable as Redis is configured"
            );
            Ok(())
        } else {
            Err(StoreError::Io(format!(
                "{verdict}; or set redis.accept_weaker_durability = true to start with that guarantee"
            )))
        }
    }
}

/// The most reads one plan may make: the domain's plans make three at most.
const MAX_PLAN_READS: usize = 16;

/// A plan's reads, answered from what earlier runs of the plan fetched; the first read it cannot
/// answer is noted and ends the run.
struct Replay<'a> {
    fetched: &'a [(Keyspace, Vec<u8>, Option<Entry>)],
    missing: Option<(Keyspace, Vec<u8>)>,
}

impl Lookup for Replay<'_> {
    fn get(&mut self, ks: Keyspace, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        if let Some((_, _, entry)) = self.fetched.iter().find(|(k, fetched, _)| *k == ks && fetched == key) {
            return Ok(entry.clone());
        }
        if self.missing.is_none() {
            self.missing = Some((ks, key.to_vec()));
        }
        // Whatever the plan makes of this error, the run is discarded (`missing` is set).
        Err(StoreError::Io("a plan's read is still on its way".into()))
    }
}

impl Client {
    /// Runs `plan` with no thread waiting on a read: each run is answered from what earlier runs
    /// fetched and stops at the first read it cannot answer, which is fetched before the next run.
    /// The batch then carries the plan's conditions on what it read, as on any backend that plans
    /// apart from the write.
    async fn planned(&self, mut plan: Plan, now: Timestamp) -> Result<Planned, StoreError> {
        let mut fetched: Vec<(Keyspace, Vec<u8>, Option<Entry>)> = Vec::new();
        while fetched.len() <= MAX_PLAN_READS {
            let mut reads = Replay { fetched: &fetched, missing: None };
            let result = plan(&mut reads);
            let Some((ks, key)) = reads.missing else {
                let (batch, report) = result?;
                let outcome = match batch {
                    Some(batch) => Some(self.apply_future(batch, now).await?),
                    None => None,
                };
                return Ok(Planned { report, outcome });
            };
            let entry = self.get_future(ks, &key, now).await?;
            fetched.push((ks, key, entry));
        }
        Err(StoreError::Io(format!("a plan read more than {MAX_PLAN_READS} entries")))
    }

    fn base(&self, ks: Keyspace) -> Vec<u8> {
        let mut base = self.prefix.clone();
        base.extend_from_slice(format!("d{}:", ks.tag()).as_bytes());
        base
    }

    fn data_key(&self, ks: Keyspace, key: &[u8]) -> Vec<u8> {
        let mut full = self.base(ks);
        full.extend_from_slice(key);
        full
    }

    fn index_key(&self, ks: Keyspace) -> Option<Vec<u8>> {
        self.listed[usize::from(ks.tag())].then(|| {
            let mut full = self.prefix.clone();
            full.extend_from_slice(format!("i{}", ks.tag()).as_bytes());
            full
        })
    }

    fn get_future(
        &self,
        ks: Keyspace,
        key: &[u8],
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Entry>, StoreError>> + Send + 'static {
        let full = self.data_key(ks, key);
        let mut conn = self.conn.clone();
        async move {
            let mut cmd = ::redis::cmd("HMGET");
            cmd.arg(full).arg("n").arg("e").arg("v");
            let fields: Vec<Option<Vec<u8>>> = cmd.query_async(&mut conn).await.map_err(unavailable)?;
            match fields.as_slice() {
                [Some(n), Some(e), Some(v)] => Ok(live_entry(n, e, v.clone(), now)?),
                _ => Ok(None),
            }
        }
    }

    fn apply_future(
        &self,
        batch: Batch,
        now: Timestamp,
    ) -> impl Future<Output = Result<Outcome, StoreError>> + Send + 'static {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut key_index = |full: Vec<u8>| {
            let at = keys.iter().position(|k| *k == full).unwrap_or_else(|| {
                keys.push(full);
                keys.len() - 1
            });
            (at + 1).to_string()
        };
        let mut args: Vec<Vec<u8>> = vec![
            now.to_string().into_bytes(),
            batch.conditions.len().to_string().into_bytes(),
            batch.mutations.len().to_string().into_bytes(),
        ];
        for condition in &batch.conditions {
            let (kind, ks, key, version) = match condition {
                Condition::Absent { ks, key } => ("a", ks, key, String::new()),
                Condition::Present { ks, key } => ("p", ks, key, String::new()),
                Condition::Version { ks, key, version } => ("v", ks, key, version.to_string()),
            };
            args.push(kind.into());
            args.push(key_index(self.data_key(*ks, key)).into_bytes());
            args.push(version.into_bytes());
        }
        let takes = batch.mutations.iter().map(|m| matches!(m, Mutation::Take { .. })).collect::<Vec<_>>();
        for mutation in batch.mutations {
            let (kind, ks, key, value, expires_at) = match mutation {
                Mutation::Put { ks, key, value, expires_at } => ("P", ks, key, value, expires_at),
                Mutation::Delete { ks, key } => ("D", ks, key, Vec::new(), None),
                Mutation::Take { ks, key } => ("T", ks, key, Vec::new(), None),
            };
            args.push(kind.into());
            args.push(key_index(self.data_key(ks, &key)).into_bytes());
            args.push(self.index_key(ks).map(|ik| key_index(ik).into_bytes()).unwrap_or_default());
            args.push(key);
            args.push(value);
            args.push(expires_at.map(|at| at.to_string().into_bytes()).unwrap_or_default());
        }
        let script = Arc::clone(&self.batch);
        let mut conn = self.conn.clone();
        async move {
            let mut invocation = script.prepare_invoke();
            for key in &keys {
                invocation.key(key.as_slice());
            }
            for arg in &args {
                invocation.arg(arg.as_slice());
            }
            let reply: Value = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
            parse_outcome(reply, &takes)
        }
    }
}

/// Waits on this thread for `fut`, run on `handle`'s runtime. Safe from any thread that is not one of
/// that runtime's own workers, including another runtime's blocking pool.
fn wait_on<T, F>(handle: &tokio::runtime::Handle, fut: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or(Err(StoreError::Closed))
}

fn number(field: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::Corrupt("a Redis entry has a malformed version or expiry".into()))
}

/// The entry from its stored fields, or `None` if it is expired at `now`.
fn live_entry(n: &[u8], e: &[u8], value: Vec<u8>, now: Timestamp) -> Result<Option<Entry>, StoreError> {
    let expires_at = if e.is_empty() { None } else { Some(number(e)?) };
    if expires_at.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    Ok(Some(Entry { value, version: number(n)?, expires_at }))
}

fn bytes(value: &Value) -> Result<Vec<u8>, StoreError> {
    match value {
        Value::BulkString(b) => Ok(b.clone()),
        Value::SimpleString(s) => Ok(s.clone().into_bytes()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        _ => Err(StoreError::Corrupt("Redis answered a script with an unexpected shape".into())),
    }
}

fn parse_outcome(reply: Value, takes: &[bool]) -> Result<Outcome, StoreError> {
    let shape = || StoreError::Corrupt("Redis answered a batch with an unexpected shape".into());
    let Value::Array(items) = reply else { return Err(shape()) };
    match items.first() {
        Some(Value::Int(0)) => match items.get(1) {
            Some(Value::Int(at)) => Ok(Outcome::Conflict(usize::try_from(*at).map_err(|_| shape())?)),
            _ => Err(shape()),
        },
        Some(Value::Int(1)) if items.len() == takes.len() + 1 => items[1..]
            .iter()
            .zip(takes)
            .map(|(item, take)| match item {
                Value::Array(fields) if *take && fields.len() == 3 => {
                    let (n, e, v) = (bytes(&fields[0])?, bytes(&fields[1])?, bytes(&fields[2])?);
                    // The script took it only if it was live; `now` 0 keeps that verdict.
                    live_entry(&n, &e, v, 0)
                }
                Value::Int(0) => Ok(None),
                _ => Err(shape()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Outcome::Applied),
        _ => Err(shape()),
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which panics on an async thread (a server dropping
        // its last handle); in-flight replies are abandoned, which their callers see as Closed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Store for RedisStore {
    fn get(&self, ks: Keyspace, key: &[u8], now: Timestamp) -> Result<Option<Entry>, StoreError> {
        self.wait(self.client.get_future(ks, key, now))
    }

    fn get_then(&self, ks: Keyspace, key: &[u8], now: Timestamp, done: Reply<Option<Entry>>) {
        self.then(self.client.get_future(ks, key, now), done);
    }

    fn scan_prefix(
        &self,
        ks: Keyspace,
        prefix: &[u8],
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let base = self.client.base(ks);
        let mut conn = self.client.conn.clone();
        let prefix = prefix.to_vec();
        let Some(index) = self.client.index_key(ks) else {
            // A point keyspace keeps no index (its owner never lists it); walk its keys instead.
            return self.wait(async move {
                let mut pattern = base.clone();
                for &b in &prefix {
                    if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                        pattern.push(b'\\');
                    }
                    pattern.push(b);
                }
                pattern.push(b'*');
                let mut found: Vec<Vec<u8>> = Vec::new();
                let mut cursor = 0u64;
                loop {
                    let mut cmd = ::redis::cmd("SCAN");
                    cmd.arg(cursor).arg("MATCH").arg(pattern.as_slice()).arg("COUNT").arg(SCAN_COUNT);
                    let (next, keys): (u64, Vec<Vec<u8>>) =
                        cmd.query_async(&mut conn).await.map_err(unavailable)?;
                    found.extend(keys);
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                found.sort();
                found.dedup();
                let mut out = Vec::new();
                for full in found {
                    let mut cmd = ::redis::cmd("HMGET");
                    cmd.arg(full.as_slice()).arg("n").arg("e").arg("v");
                    let fields: Vec<Option<Vec<u8>>> =
                        cmd.query_async(&mut conn).await.map_err(unavailable)?;
                    if let [Some(n), Some(e), Some(v)] = fields.as_slice()
                        && let Some(entry) = live_entry(n, e, v.clone(), now)?
                    {
                        out.push((full[base.len()..].to_vec(), entry));
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
                Ok(out)
            });
        };
        let script = Arc::clone(&self.scan);
        self.wait(async move {
            let mut invocation = script.prepare_invoke();
            invocation.key(index.as_slice()).arg(base.as_slice()).arg(prefix.as_slice()).arg(now).arg(limit);
            let reply: Value = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
            let Value::Array(flat) = reply else {
                return Err(StoreError::Corrupt("Redis answered a scan with an unexpected shape".into()));
            };
            let mut out = Vec::new();
            for quad in flat.chunks(4) {
                let [k, n, e, v] = quad else {
                    return Err(StoreError::Corrupt("Redis answered a scan with an unexpected shape".into()));
                };
                if let Some(entry) = live_entry(&bytes(n)?, &bytes(e)?, bytes(v)?, now)? {
                    out.push((bytes(k)?, entry));
                }
            }
            Ok(out)
        })
    }

    fn apply(&self, batch: Batch, now: Timestamp) -> Result<Outcome, StoreError> {
        self.wait(self.client.apply_future(batch, now))
    }

    fn apply_then(&self, batch: Batch, now: Timestamp, done: Reply<Outcome>) {
        self.then(self.client.apply_future(batch, now), done);
    }

    fn apply_planned(&self, plan: Plan, now: Timestamp, done: Reply<Planned>) {
        let client = self.client.clone();
        self.handle().spawn(async move { done(client.planned(plan, now).await) });
    }

    fn capabilities(&self) -> Capabilities {
        // Point reads and plans hold no thread while Redis answers (see `Client::planned`).
        Capabilities { reads: ReadPath::Callback, plans_block: false, commit_metrics: None }
    }

    fn purge_expired(&self, _now: Timestamp, _limit: usize) -> Result<usize, StoreError> {
        // Redis removes expired entries itself (each carries its own EXPIRE).
        Ok(0)
    }

    fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(None)
    }

    fn count(&self, ks: Keyspace) -> Result<u64, StoreError> {
        let mut pattern = self.client.base(ks);
        pattern.push(b'*');
        let mut conn = self.client.conn.clone();
        self.wait(async move {
            let (mut cursor, mut count) = (0u64, 0u64);
            loop {
                let mut cmd = ::redis::cmd("SCAN");
                cmd.arg(cursor).arg("MATCH").arg(pattern.as_slice()).arg("COUNT").arg(SCAN_COUNT);
                let (next, keys): (u64, Vec<Vec<u8>>) =
                    cmd.query_async(&mut conn).await.map_err(unavailable)?;
                count += keys.len() as u64;
                if next == 0 {
                    return Ok(count);
                }
                cursor = next;
            }
        })
    }

    fn check(&self) -> Result<(), StoreError> {
        let mut conn = self.client.conn.clone();
        self.wait(async move {
            ::redis::cmd("PING").query_async::<String>(&mut conn).await.map(drop).map_err(unavailable)
        })
    }

    fn visit_all(&self, _now: Timestamp, _visit: &mut Visitor<'_>) -> Result<(), StoreError> {
        Err(StoreError::Io(
            "lethe cannot take a consistent copy of a Redis store; back up Redis itself (its \
             append-only file and snapshots, e.g. after BGSAVE), together with the master key"
                .into(),
        ))
    }
}

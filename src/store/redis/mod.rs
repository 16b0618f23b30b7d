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
//! In Redis Cluster mode (`redis.cluster`) each key also carries its [`Group`] as a hash tag:
//! `<prefix>d<tag>:{g<group in hex>}<key>` (`{w<tag>}` for a keyspace that is one group), and a listed
//! keyspace keeps one index per group, `<prefix>i<tag>:{…}`. A batch's keys then share one hash slot,
//! which a script needs; a batch spanning two groups is refused before anything is sent, so it is never
//! half-applied. A listing whose prefix names its group reads that group's index; any other walks
//! every master with `SCAN`. The single-server layout has no tags, so existing data keeps working.
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

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{Cmd, Pipeline, RedisFuture, Value};

use super::*;

/// How long one command may wait for Redis before the store reports itself unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Keys fetched per `SCAN` step when a keyspace without an index is walked.
const SCAN_COUNT: usize = 1000;

/// What [`RedisStore::open`] needs; built from the `[redis]` settings.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://` or `rediss://` URLs: one server, or a cluster's seeds.
    pub urls: Vec<String>,
    /// Redis Cluster mode: keys carry their group as a hash tag (see the module's documentation).
    pub cluster: bool,
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
    /// The same for the team server key (a keyed hash of its fingerprint).
    pub team_key_check: Option<String>,
    /// PEM CA certificates for `rediss://` servers from `redis.ca_file`, instead of the built-in roots.
    pub ca_certs: Option<Vec<u8>>,
}

impl fmt::Debug for RedisOptions {
    // URLs may carry credentials; a password always is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("urls", &self.urls.len())
            .field("cluster", &self.cluster)
            .field("key_prefix", &self.key_prefix)
            .field("accept_weaker_durability", &self.accept_weaker_durability)
            .finish_non_exhaustive()
    }
}

/// Why a node whose master key differs from the first node's is refused.
const MASTER_KEY_DIFFERS: &str = "this node's master key is not the one the other nodes on this Redis use (the \
     check value recorded in Redis differs); copy master_key_file from a node already running here";
/// Why a node whose team server key differs is refused: a team client pins one server key, and a login
/// begun on one node must finish on another.
const TEAM_KEY_DIFFERS: &str = "this node's team server key is not the one the other nodes on this Redis use \
     (the check value recorded in Redis differs); copy team.server_key_file from a node already running here";

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
    conn: Conn,
    layout: Layout,
    batch: Arc<::redis::Script>,
}

/// Where each entry lives in Redis (see the module's documentation).
#[derive(Clone)]
struct Layout {
    prefix: Vec<u8>,
    /// Tags of the listed keyspaces, which keep a key index.
    listed: [bool; Keyspace::MAX_TAGS],
    /// Keys carry their group's hash tag (Redis Cluster).
    cluster: bool,
}

/// One server's connection or a cluster's; both reconnect by themselves.
#[derive(Clone)]
enum Conn {
    /// Boxed: a manager is many times the size of a cluster connection's handle.
    Single(Box<ConnectionManager>),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

impl Conn {
    /// Runs `cmd` on every server that holds data (the one server, or each master of the cluster)
    /// and returns each one's answer; keyless commands like `SCAN` and `CONFIG GET` see only the
    /// server they reach.
    async fn on_each_server<T: ::redis::FromRedisValue>(
        &mut self,
        cmd: &Cmd,
    ) -> Result<Vec<T>, ::redis::RedisError> {
        match self {
            Conn::Single(conn) => Ok(vec![cmd.query_async(&mut **conn).await?]),
            Conn::Cluster(conn) => {
                let mut out = Vec::new();
                for (host, port) in masters(conn).await? {
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    let value = conn.route_command(cmd, routing).await?;
                    out.push(::redis::from_owned_redis_value(value)?);
                }
                Ok(out)
            }
        }
    }

    /// Every key matching `pattern` on every server, found by `SCAN` (a key may be named twice).
    async fn scan_all(&mut self, pattern: &[u8]) -> Result<Vec<Vec<u8>>, ::redis::RedisError> {
        let servers = match self {
            Conn::Single(_) => vec![None],
            Conn::Cluster(conn) => masters(conn).await?.into_iter().map(Some).collect(),
        };
        let mut found = Vec::new();
        for server in servers {
            let mut cursor = 0u64;
            loop {
                let mut cmd = ::redis::cmd("SCAN");
                cmd.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(SCAN_COUNT);
                let (next, keys): (u64, Vec<Vec<u8>>) = match (&mut *self, &server) {
                    (Conn::Cluster(conn), Some((host, port))) => {
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port: *port,
                        });
                        ::redis::from_owned_redis_value(conn.route_command(&cmd, routing).await?)?
                    }
                    (conn, _) => cmd.query_async(conn).await?,
                };
                found.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(found)
    }
}

/// The cluster's masters that are up, from `CLUSTER NODES`.
async fn masters(conn: &mut ClusterConnection) -> Result<Vec<(String, u16)>, ::redis::RedisError> {
    let nodes: String = ::redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
    let mut out = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(address), Some(flags)) = (fields.get(1), fields.get(2)) else { continue };
        let flags: Vec<&str> = flags.split(',').collect();
        if !flags.contains(&"master") || flags.iter().any(|f| f.starts_with("fail")) {
            continue;
        }
        // `host:port@cport[,hostname]`
        let address = address.split(['@', ',']).next().unwrap_or_default();
        if let Some((host, port)) = address.rsplit_once(':')
            && let Ok(port) = port.parse()
        {
            out.push((host.to_owned(), port));
        }
    }
    if out.is_empty() {
        return Err(::redis::RedisError::from((
            ::redis::ErrorKind::ClusterDown,
            "CLUSTER NODES names no master that is up",
        )));
    }
    Ok(out)
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
        if options.urls.is_empty() {
            return Err(StoreError::Io("redis.urls names no Redis server".into()));
        }
        if options.urls.len() > 1 && !options.cluster {
            return Err(StoreError::Io(
                "redis.urls names several servers, which only Redis Cluster mode uses as seeds; set \
                 redis.cluster = true or name one server"
                    .into(),
            ));
        }
        let mut infos = Vec::new();
        for url in &options.urls {
            let mut info = ::redis::IntoConnectionInfo::into_connection_info(url.as_str())
                .map_err(|err| StoreError::Io(format!("redis.urls: not a Redis URL ({:?})", err.kind())))?;
            if let Some(password) = &options.password {
                info.redis.password = Some(password.clone());
            }
            infos.push(info);
        }
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
        let connected = (|| -> Result<Conn, StoreError> {
            Ok(if options.cluster {
                // One retry: a redirection (`MOVED`, after a resharding) is answered by a retry to the
                // slot's new master; a lost node still fails the request within a second or two.
                let mut builder = ::redis::cluster::ClusterClientBuilder::new(infos)
                    .retries(1)
                    .connection_timeout(RESPONSE_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT);
                if let Some(password) = &options.password {
                    builder = builder.password(password.clone());
                }
                if let Some(pem) = &options.ca_certs {
                    builder = builder
                        .certs(::redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) });
                }
                let client = builder.build().map_err(unavailable)?;
                wait_on(runtime.handle(), async move {
                    client.get_async_connection().await.map(Conn::Cluster).map_err(unavailable)
                })?
            } else {
                let info = infos.remove(0);
                let client = match &options.ca_certs {
                    Some(pem) => ::redis::Client::build_with_tls(
                        info,
                        ::redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) },
                    ),
                    None => ::redis::Client::open(info),
                }
                .map_err(unavailable)?;
                let config = ::redis::aio::ConnectionManagerConfig::new()
                    .set_number_of_retries(0)
                    .set_connection_timeout(RESPONSE_TIMEOUT)
                    .set_response_timeout(RESPONSE_TIMEOUT);
                wait_on(runtime.handle(), async move {
                    ConnectionManager::new_with_config(client, config)
                        .await
                        .map(|conn| Conn::Single(Box::new(conn)))
                        .map_err(unavailable)
                })?
            })
        })();
        let conn = match connected {
            Ok(conn) => conn,
            Err(err) => {
                // Dropping a runtime waits for its threads, which panics on an async thread (a node
                // that starts inside one): it is let go in the background instead, as `Drop` does.
                runtime.shutdown_background();
                return Err(err);
            }
        };
        let mut listed = [false; Keyspace::MAX_TAGS];
        for ks in keyspaces {
            listed[usize::from(ks.tag())] = ks.is_listed();
        }
        let store = RedisStore {
            runtime: Some(runtime),
            client: Client {
                conn,
                layout: Layout {
                    prefix: options.key_prefix.as_bytes().to_vec(),
                    listed,
                    cluster: options.cluster,
                },
                batch: Arc::new(::redis::Script::new(BATCH_SCRIPT)),
            },
            scan: Arc::new(::redis::Script::new(SCAN_SCRIPT)),
        };
        store.check_durability(options.accept_weaker_durability)?;
        if let Some(check) = &options.key_check {
            store.claim_check(b"master-key-check", check, MASTER_KEY_DIFFERS)?;
        }
        if let Some(check) = &options.team_key_check {
            store.claim_check(b"team-key-check", check, TEAM_KEY_DIFFERS)?;
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
    fn claim_check(&self, name: &[u8], check: &str, differs: &str) -> Result<(), StoreError> {
        let mut full = self.client.layout.prefix.clone();
        full.extend_from_slice(name);
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
        Err(StoreError::Io(differs.into()))
    }

    /// Refuses a Redis that may lose an acknowledged write, unless the operator accepted that.
    fn check_durability(&self, accept_weaker: bool) -> Result<(), StoreError> {
        let mut conn = self.client.conn.clone();
        let found = self.wait(async move {
            let mut cmd = ::redis::cmd("CONFIG");
            cmd.arg("GET").arg("append*");
            let each: Result<Vec<Vec<String>>, _> = conn.on_each_server(&cmd).await;
            Ok(each)
        })?;
        // Every server of a cluster must keep every write: the verdict is the first one's that does not.
        let found = found.map(|each| {
            let keeps = |pairs: &Vec<String>| {
                let has = |name: &str, want: &str| {
                    pairs.chunks(2).any(|pair| pair[0] == name && pair.get(1).is_some_and(|v| v == want))
                };
                has("appendonly", "yes") && has("appendfsync", "always")
            };
            each.iter().find(|pairs| !keeps(pairs)).or(each.first()).cloned().unwrap_or_default()
        });
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

impl Layout {
    fn base(&self, ks: Keyspace) -> Vec<u8> {
        let mut base = self.prefix.clone();
        base.extend_from_slice(format!("d{}:", ks.tag()).as_bytes());
        base
    }

    /// The hash tag of `key`'s group in cluster mode (empty otherwise). Never empty in cluster mode:
    /// Redis hashes a whole key whose braces hold nothing.
    fn hash_tag(&self, ks: Keyspace, key: &[u8]) -> Vec<u8> {
        if !self.cluster {
            return Vec::new();
        }
        match ks.group_of(key) {
            Some(group) => {
                let hex: String = group.iter().map(|b| format!("{b:02x}")).collect();
                format!("{{g{hex}}}").into_bytes()
            }
            None => format!("{{w{}}}", ks.tag()).into_bytes(),
        }
    }

    /// Where the entries of `key`'s group start: the keyspace's base and, in cluster mode, the tag.
    fn group_base(&self, ks: Keyspace, key: &[u8]) -> Vec<u8> {
        let mut base = self.base(ks);
        base.extend_from_slice(&self.hash_tag(ks, key));
        base
    }

    fn data_key(&self, ks: Keyspace, key: &[u8]) -> Vec<u8> {
        let mut full = self.group_base(ks, key);
        full.extend_from_slice(key);
        full
    }

    /// The index of `key`'s group, for a listed keyspace.
    fn index_key(&self, ks: Keyspace, key: &[u8]) -> Option<Vec<u8>> {
        self.listed[usize::from(ks.tag())].then(|| {
            let mut full = self.prefix.clone();
            full.extend_from_slice(format!("i{}", ks.tag()).as_bytes());
            if self.cluster {
                full.push(b':');
                full.extend_from_slice(&self.hash_tag(ks, key));
            }
            full
        })
    }

    /// Refuses, in cluster mode, a batch whose keys are not all in one group: a script's keys must
    /// share a hash slot, and Redis would refuse it only after it was sent.
    fn check_one_group(&self, batch: &Batch) -> Result<(), StoreError> {
        if !self.cluster {
            return Ok(());
        }
        let conditions = batch.conditions.iter().map(|c| match c {
            Condition::Absent { ks, key }
            | Condition::Present { ks, key }
            | Condition::Version { ks, key, .. } => (*ks, key),
        });
        let mutations = batch.mutations.iter().map(|m| match m {
            Mutation::Put { ks, key, .. } | Mutation::Delete { ks, key } | Mutation::Take { ks, key } => {
                (*ks, key)
            }
        });
        let mut first: Option<(Keyspace, Vec<u8>)> = None;
        for (ks, key) in conditions.chain(mutations) {
            let tag = self.hash_tag(ks, key);
            match &first {
                None => first = Some((ks, tag)),
                Some((_, t)) if *t == tag => {}
                Some((other, _)) => {
                    return Err(StoreError::Io(format!(
                        "a batch spans two groups of keys ({} and {}), which Redis Cluster keeps in \
                         different hash slots; it was refused and nothing of it applied",
                        other.name(),
                        ks.name()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The keyspace's key of `full`, a data key found by a walk; `None` if it is not one of its.
    fn key_of<'a>(&self, base: &[u8], full: &'a [u8]) -> Option<&'a [u8]> {
        let rest = full.strip_prefix(base)?;
        if !self.cluster {
            return Some(rest);
        }
        let rest = rest.strip_prefix(b"{")?;
        let close = rest.iter().position(|&b| b == b'}')?;
        Some(&rest[close + 1..])
    }

    /// The `SCAN` pattern of the data keys of `ks` under `prefix`, in every group.
    fn walk_pattern(&self, ks: Keyspace, prefix: &[u8]) -> Vec<u8> {
        let mut pattern = self.base(ks);
        if self.cluster {
            pattern.extend_from_slice(b"{*}");
        }
        for &b in prefix {
            if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                pattern.push(b'\\');
            }
            pattern.push(b);
        }
        pattern.push(b'*');
        pattern
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

    /// A prefix scan by walking every server's keys: for keyspaces without an index, and for
    /// listings of a cluster that span groups.
    fn walk_future(
        &self,
        ks: Keyspace,
        prefix: Vec<u8>,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(Vec<u8>, Entry)>, StoreError>> + Send + 'static {
        let client = self.clone();
        async move {
            let base = client.layout.base(ks);
            let mut conn = client.conn.clone();
            let found = conn.scan_all(&client.layout.walk_pattern(ks, &prefix)).await.map_err(unavailable)?;
            let mut keys: Vec<(Vec<u8>, Vec<u8>)> = found
                .into_iter()
                .filter_map(|full| {
                    let key = client.layout.key_of(&base, &full)?.to_vec();
                    key.starts_with(&prefix).then_some((key, full))
                })
                .collect();
            keys.sort();
            keys.dedup();
            let mut out = Vec::new();
            for (key, full) in keys {
                let mut cmd = ::redis::cmd("HMGET");
                cmd.arg(full.as_slice()).arg("n").arg("e").arg("v");
                let fields: Vec<Option<Vec<u8>>> = cmd.query_async(&mut conn).await.map_err(unavailable)?;
                if let [Some(n), Some(e), Some(v)] = fields.as_slice()
                    && let Some(entry) = live_entry(n, e, v.clone(), now)?
                {
                    out.push((key, entry));
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        }
    }

    fn get_future(
        &self,
        ks: Keyspace,
        key: &[u8],
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Entry>, StoreError>> + Send + 'static {
        let full = self.layout.data_key(ks, key);
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
        let checked = self.layout.check_one_group(&batch);
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
            args.push(key_index(self.layout.data_key(*ks, key)).into_bytes());
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
            args.push(key_index(self.layout.data_key(ks, &key)).into_bytes());
            args.push(
                self.layout.index_key(ks, &key).map(|ik| key_index(ik).into_bytes()).unwrap_or_default(),
            );
            args.push(key);
            args.push(value);
            args.push(expires_at.map(|at| at.to_string().into_bytes()).unwrap_or_default());
        }
        let script = Arc::clone(&self.batch);
        let mut conn = self.conn.clone();
        async move {
            checked?;
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
        let prefix = prefix.to_vec();
        let index = self
            .client
            .layout
            .index_key(ks, &prefix)
            .filter(|_| !self.client.layout.cluster || ks.prefix_names_group(&prefix));
        let Some(index) = index else {
            // A point keyspace keeps no index (its owner never lists it), and a cluster keeps one per
            // group: walk the keys instead.
            return self.wait(self.client.walk_future(ks, prefix, now, limit));
        };
        let base = self.client.layout.group_base(ks, &prefix);
        let mut conn = self.client.conn.clone();
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
        Capabilities {
            reads: ReadPath::Callback,
            plans_block: false,
            commit_metrics: None,
            one_group: self.client.layout.cluster,
        }
    }

    fn purge_expired(&self, _now: Timestamp, _limit: usize) -> Result<usize, StoreError> {
        // Redis removes expired entries itself (each carries its own EXPIRE).
        Ok(0)
    }

    fn next_expiry(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(None)
    }

    fn count(&self, ks: Keyspace) -> Result<u64, StoreError> {
        let mut pattern = self.client.layout.base(ks);
        pattern.push(b'*');
        let mut conn = self.client.conn.clone();
        self.wait(async move {
            let mut keys = conn.scan_all(&pattern).await.map_err(unavailable)?;
            // SCAN may name a key twice when the keyspace is resized meanwhile.
            keys.sort();
            keys.dedup();
            Ok(keys.len() as u64)
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

#[cfg(test)]
mod tests {
    use super::*;

    // Grouped as the domain groups them.
    const SECRET: Keyspace = Keyspace::point(1, "secret");
    const METADATA: Keyspace = Keyspace::point(2, "metadata");
    const ACCOUNT: Keyspace = Keyspace::listed(3, "account");
    const RECENT: Keyspace = Keyspace::listed(4, "recent").grouped(Group::prefix(32));
    const OUTBOX: Keyspace = Keyspace::point(7, "outbox").grouped(Group::Bytes { start: 9, len: 4 });

    fn layout(cluster: bool) -> Layout {
        let mut listed = [false; Keyspace::MAX_TAGS];
        listed[3] = true;
        listed[4] = true;
        Layout { prefix: b"lethe:".to_vec(), listed, cluster }
    }

    fn slot(key: &[u8]) -> u16 {
        ::redis::cluster_routing::get_slot(key)
    }

    #[test]
    fn a_single_server_keeps_the_layout_without_hash_tags() {
        let single = layout(false);
        assert_eq!(single.data_key(SECRET, b"\x01\x02\x03\x04rest"), b"lethe:d1:\x01\x02\x03\x04rest");
        assert_eq!(single.index_key(RECENT, &[7; 40]).as_deref(), Some(&b"lethe:i4"[..]));
        assert_eq!(single.index_key(SECRET, b"k"), None);
    }

    #[test]
    fn in_a_cluster_the_records_of_one_group_share_a_hash_slot_and_others_spread() {
        let cluster = layout(true);
        let secret = [1, 2, 3, 4, 9, 9, 9];
        let metadata = [1, 2, 3, 4, 8, 8, 8];
        let mut outbox = vec![0u8];
        outbox.extend_from_slice(&1_000u64.to_be_bytes());
        outbox.extend_from_slice(&metadata);
        assert_eq!(cluster.data_key(SECRET, &secret), b"lethe:d1:{g01020304}\x01\x02\x03\x04\x09\x09\x09");
        let keys = [
            cluster.data_key(SECRET, &secret),
            cluster.data_key(METADATA, &metadata),
            cluster.data_key(OUTBOX, &outbox),
        ];
        assert!(keys.iter().all(|k| slot(k) == slot(&keys[0])), "one group, one slot");
        // Groups with other sequences land on other slots: the keyspace spreads over the masters.
        let slots: std::collections::HashSet<u16> =
            (0u32..64).map(|seq| slot(&cluster.data_key(SECRET, &seq.to_be_bytes()))).collect();
        assert!(slots.len() > 32, "{slots:?}");
        // A whole keyspace is one group; a listed one keeps its index with its group.
        assert_eq!(slot(&cluster.data_key(ACCOUNT, b"alice")), slot(&cluster.data_key(ACCOUNT, b"bob")));
        let row = [[5u8; 32].as_slice(), &[6; 40]].concat();
        let index = cluster.index_key(RECENT, &row).expect("listed");
        assert_eq!(slot(&index), slot(&cluster.data_key(RECENT, &row)));
        assert_eq!(index, cluster.index_key(RECENT, &[5; 32]).expect("listed"), "the prefix names the group");
        assert!(RECENT.prefix_names_group(&[5; 32]) && !RECENT.prefix_names_group(&[5; 31]));
    }

    #[test]
    fn in_a_cluster_a_batch_across_groups_is_refused_and_within_one_is_not() {
        let (single, cluster) = (layout(false), layout(true));
        let together = Batch::new().require_absent(SECRET, [1, 2, 3, 4, 9].to_vec()).put(
            METADATA,
            [1, 2, 3, 4, 8].to_vec(),
            b"m".to_vec(),
            None,
        );
        assert!(cluster.check_one_group(&together).is_ok());
        let apart = together.put(RECENT, [5u8; 40].to_vec(), b"r".to_vec(), None);
        assert!(single.check_one_group(&apart).is_ok(), "one server holds every group");
        let err = cluster.check_one_group(&apart).expect_err("two groups").to_string();
        assert!(err.contains("spans two groups") && err.contains("secret and recent"), "{err}");
        let two_accounts_one_group =
            Batch::new().delete(ACCOUNT, b"a".to_vec()).delete(ACCOUNT, b"b".to_vec());
        assert!(cluster.check_one_group(&two_accounts_one_group).is_ok());
    }

    #[test]
    fn a_cluster_walk_matches_every_group_and_reads_back_the_keyspace_key() {
        let cluster = layout(true);
        assert_eq!(cluster.walk_pattern(SECRET, b"a*"), b"lethe:d1:{*}a\\**");
        let base = cluster.base(SECRET);
        let full = cluster.data_key(SECRET, b"\x01\x02\x03\x04}x");
        assert_eq!(cluster.key_of(&base, &full), Some(&b"\x01\x02\x03\x04}x"[..]));
        assert_eq!(cluster.key_of(&base, b"lethe:d2:{g00}k"), None, "another keyspace's");
        let single = layout(false);
        assert_eq!(single.walk_pattern(SECRET, b"a"), b"lethe:d1:a*");
        assert_eq!(single.key_of(&base, b"lethe:d1:k"), Some(&b"k"[..]));
    }
}

//! Configuration: figment layers (built-in defaults → TOML file → `LETHE_*` environment → command-line
//! flags) are merged into a [`RawConfig`], which [`RawConfig::validate`] turns into the resolved
//! [`Settings`] that the rest of the server receives as `Arc<Settings>`. Nothing else reads the
//! environment or the config file.
//!
//! Every validation error names the offending key, so an operator can fix the file without guessing.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::client_ip::TrustedProxies;
use crate::store::Engine;

/// Where the config file is looked for when `--config` is not given (after
/// `$CONFIGURATION_DIRECTORY/lethe.toml` under systemd).
pub const DEFAULT_CONFIG_FILE: &str = "/etc/lethe/lethe.toml";

/// A configuration error that names the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError { key: key.to_owned(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The configuration as written by the operator, before validation. Field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub data_dir: Option<PathBuf>,
    pub storage: String,
    pub public_url: Option<String>,
    pub listeners: Vec<RawListener>,
    pub read_only: bool,
    pub master_key_file: Option<PathBuf>,
    pub limits: Limits,
    pub ttl: TtlRules,
    pub expirations: Vec<u64>,
    pub passphrase: PassphraseRules,
    pub share_domains: Vec<String>,
    pub secret_requests: SecretRequests,
    /// The flag-shaped spelling `LETHE_DISABLE_SECRET_REQUESTS`; `true` wins over
    /// `secret_requests.enabled`.
    #[serde(skip_serializing)]
    pub disable_secret_requests: bool,
    pub audit: Audit,
    pub rate_limit: RateLimit,
    pub trusted_proxies: Vec<String>,
    pub metrics: Metrics,
    pub log: Log,
    pub http: Http,
    pub client: ClientDefaults,
    pub webhooks: Webhooks,
    pub mail: Mail,
    pub team: Team,
    pub redis: RedisConfig,
}

/// The `[redis]` section: where the Redis store lives when `storage = "redis"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// One URL for a single server (`rediss://` for TLS); several for cluster seeds. The environment
    /// may give one URL as a plain string.
    #[serde(deserialize_with = "one_or_many")]
    pub urls: Vec<String>,
    pub cluster: bool,
    /// Prefix of every key lethe writes, so one Redis can hold other data too.
    pub key_prefix: String,
    /// A file holding Redis's password, so it stays out of URLs and the config file.
    pub password_file: Option<PathBuf>,
    /// CA certificates (PEM) a `rediss://` server's certificate must chain to, instead of the
    /// built-in Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// Start even when Redis does not fsync every write; the guarantee becomes Redis's.
    pub accept_weaker_durability: bool,
}

impl Default for RedisConfig {
    fn default() -> RedisConfig {
        RedisConfig {
            urls: vec!["redis://127.0.0.1:6379/0".into()],
            cluster: false,
            key_prefix: "lethe:".into(),
            password_file: None,
            ca_file: None,
            accept_weaker_durability: false,
        }
    }
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(url) => vec![url],
        OneOrMany::Many(urls) => urls,
    })
}

impl RedisConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.urls.is_empty() {
            return Err(ConfigError::new("redis.urls", "must name at least one Redis server"));
        }
        for url in &self.urls {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                // Not the URL itself: it may carry a password.
                return Err(ConfigError::new("redis.urls", "each URL must start with redis:// or rediss://"));
            }
        }
        if self.urls.len() > 1 && !self.cluster {
            return Err(ConfigError::new(
                "redis.urls",
                "several URLs are a cluster's seeds; set redis.cluster = true (--redis-cluster) or name one server",
            ));
        }
        if self.key_prefix.is_empty() || self.key_prefix.len() > 64 {
            return Err(ConfigError::new("redis.key_prefix", "must be 1 to 64 characters"));
        }
        Ok(())
    }

    /// What the Redis backend needs, with the password read from `password_file`.
    pub fn options(&self) -> Result<crate::store::RedisOptions, ConfigError> {
        let password = match &self.password_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    ConfigError::new("redis.password_file", format!("{}: {err}", path.display()))
                })?;
                Some(text.trim_end_matches(['\r', '\n']).to_owned())
            }
        };
        Ok(crate::store::RedisOptions {
            urls: self.urls.clone(),
            cluster: self.cluster,
            key_prefix: self.key_prefix.clone(),
            password,
            accept_weaker_durability: self.accept_weaker_durability,
            key_check: None,
            team_key_check: None,
            ca_certs: match &self.ca_file {
                None => None,
                Some(path) => {
                    // Read and checked here, so a bad file is named at start; Redis's TLS takes PEM.
                    crate::tls::read_ca_certs(path)
                        .map_err(|e| ConfigError::new("redis.ca_file", format!("{}: {e}", path.display())))?;
                    Some(
                        std::fs::read(path).map_err(|e| {
                            ConfigError::new("redis.ca_file", format!("{}: {e}", path.display()))
                        })?,
                    )
                }
            },
        })
    }
}

/// Signed webhooks for secret-request events, sent from the outbox; off without `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Webhooks {
    /// The one place events are POSTed (`http://` or `https://`); never a per-request URL, so no
    /// server-side request forgery.
    pub url: Option<String>,
    /// The HMAC-SHA256 key for `X-Lethe-Signature`, read from this file at start; required with `url`.
    pub secret_file: Option<PathBuf>,
    /// How long a delivery is retried (with exponential backoff) before it is given up.
    pub give_up_seconds: u64,
    /// Extra CA certificates (PEM) an `https://` receiver's certificate may chain to.
    pub ca_file: Option<PathBuf>,
}

impl Default for Webhooks {
    fn default() -> Webhooks {
        Webhooks { url: None, secret_file: None, give_up_seconds: 86_400, ca_file: None }
    }
}

/// Mail to v1 recipients, sent from the outbox; off without `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mail {
    /// `smtp://host[:port]` (STARTTLS required; `?tls=none` allowed on a loopback host only) or
    /// `smtps://host[:port]` (implicit TLS).
    pub url: Option<String>,
    /// The sender address; required with `url`.
    pub from: Option<String>,
    /// SMTP login; needs `password_file`.
    pub username: Option<String>,
    /// The SMTP password, read from this file at start (never from the configuration itself).
    pub password_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for the SMTP server besides the built-in web roots.
    pub ca_file: Option<PathBuf>,
    /// Mails one account may cause per hour; a share past it is refused, so the server is no spam relay.
    pub per_account_per_hour: u32,
    /// How long a mail is retried (with exponential backoff) before it is given up.
    pub give_up_seconds: u64,
}

impl Default for Mail {
    fn default() -> Mail {
        Mail {
            url: None,
            from: None,
            username: None,
            password_file: None,
            ca_file: None,
            per_account_per_hour: 20,
            give_up_seconds: 86_400,
        }
    }
}

/// Whether a mail server is reached in clear, with STARTTLS, or over implicit TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailTls {
    None,
    StartTls,
    Implicit,
}

/// A parsed `mail.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailUrl {
    pub host: String,
    pub port: u16,
    pub tls: MailTls,
}

/// Parses `mail.url`; the message says what is wrong without naming the key.
pub fn parse_mail_url(url: &str) -> Result<MailUrl, String> {
    let url = url.trim();
    let (implicit, rest) = match (url.strip_prefix("smtp://"), url.strip_prefix("smtps://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err("must start with smtp:// or smtps://".into()),
    };
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '@', '#', ' ']) {
        // Credentials go in mail.username and mail.password_file, never in the URL.
        return Err(
            "must be scheme://host[:port] (credentials go in mail.username and mail.password_file)".into()
        );
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']').ok_or("has an unclosed [")?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or("has an invalid port")?,
        None if implicit => 465,
        None => 587,
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() {
        return Err("has no host".into());
    }
    let tls = match (implicit, query) {
        (true, "") => MailTls::Implicit,
        (false, "") => MailTls::StartTls,
        (false, "tls=none") => {
            // In clear only where nothing crosses a network: links are bearer secrets.
            let loopback =
                host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err("may use ?tls=none on a loopback host only".into());
            }
            MailTls::None
        }
        _ => return Err("takes no query but ?tls=none (smtp:// on a loopback host)".into()),
    };
    Ok(MailUrl { host, port, tls })
}

impl Mail {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10_000).contains(&self.per_account_per_hour) {
            return Err(ConfigError::new("mail.per_account_per_hour", "must be between 1 and 10000"));
        }
        if !(60..=30 * 86_400).contains(&self.give_up_seconds) {
            return Err(ConfigError::new("mail.give_up_seconds", "must be between 60 and 2592000"));
        }
        if self.username.is_some() != self.password_file.is_some() {
            return Err(ConfigError::new("mail.password_file", "goes with mail.username, both or neither"));
        }
        let Some(url) = &self.url else { return Ok(()) };
        parse_mail_url(url).map_err(|msg| ConfigError::new("mail.url", msg))?;
        let from = self.from.as_deref().map(str::trim).unwrap_or_default();
        if from.is_empty() {
            return Err(ConfigError::new("mail.from", "is required with mail.url"));
        }
        if from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError::new("mail.from", "is not a mail address"));
        }
        Ok(())
    }
}

/// The team surface (`api/team.md`): GPGAuth login, sessions, resources shared between users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Team {
    /// false → every team route answers 404.
    pub enabled: bool,
    /// The server's OpenPGP key for the login handshake; unset means `<data_dir>/team-server-key.asc`.
    pub server_key_file: Option<PathBuf>,
    /// A session ends after this long without use.
    pub session_idle_seconds: u64,
    /// A session ends this long after its login, used or not.
    pub session_max_seconds: u64,
    /// How long a stage-1 login challenge may be answered.
    pub login_token_seconds: u64,
}

impl Default for Team {
    fn default() -> Team {
        Team {
            enabled: true,
            server_key_file: None,
            session_idle_seconds: 3600,
            session_max_seconds: 86_400,
            login_token_seconds: 300,
        }
    }
}

impl Team {
    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("team.session_idle_seconds", self.session_idle_seconds),
            ("team.session_max_seconds", self.session_max_seconds),
            ("team.login_token_seconds", self.login_token_seconds),
        ];
        for (key, value) in positive {
            if !(1..=31_536_000).contains(&value) {
                return Err(ConfigError::new(key, "must be between 1 and 31536000 seconds"));
            }
        }
        if self.session_idle_seconds > self.session_max_seconds {
            return Err(ConfigError::new(
                "team.session_idle_seconds",
                "must not exceed team.session_max_seconds",
            ));
        }
        Ok(())
    }
}

/// The command-line client's defaults (`lethe send`, `receive`, `request …`); the server ignores them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientDefaults {
    /// The server to talk to when `--url` is not given.
    pub url: Option<String>,
    /// Where `lethe request` keeps its requests; unset means `$XDG_DATA_HOME/lethe/requests`.
    pub requests_dir: Option<PathBuf>,
    /// Extra CA certificates (PEM) an `https://` server's certificate may chain to.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub addr: String,
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "full".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// v1 secret size in bytes, counted on the decoded value.
    pub max_secret_bytes: usize,
    /// Armored client-encrypted message size in bytes.
    pub max_message_bytes: usize,
    /// Client-encrypted file size in bytes.
    pub max_file_bytes: usize,
    /// A team request body, in bytes (413 above).
    pub max_team_body_bytes: usize,
    /// A team secret's armored `data`, in bytes.
    pub max_team_secret_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_secret_bytes: 10_000,
            max_message_bytes: 10_000,
            max_file_bytes: 1_048_576,
            max_team_body_bytes: 4_194_304,
            max_team_secret_bytes: 65_536,
        }
    }
}

/// The v1 TTL rules, in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtlRules {
    pub default: u64,
    pub min: u64,
    pub max_anonymous: u64,
    pub max_account: u64,
}

impl Default for TtlRules {
    fn default() -> TtlRules {
        TtlRules { default: 604_800, min: 60, max_anonymous: 604_800, max_account: 2_592_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PassphraseRules {
    pub bcrypt_cost: u32,
    /// Failed attempts within `lock_seconds` that lock a secret.
    pub max_failures: u32,
    /// Both the window in which failures count and how long a lock lasts.
    pub lock_seconds: u64,
}

impl Default for PassphraseRules {
    fn default() -> PassphraseRules {
        PassphraseRules { bcrypt_cost: 10, max_failures: 5, lock_seconds: 1200 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretRequests {
    pub enabled: bool,
}

impl Default for SecretRequests {
    fn default() -> SecretRequests {
        SecretRequests { enabled: true }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Audit {
    pub enabled: bool,
    pub file: Option<PathBuf>,
}

impl Default for Audit {
    fn default() -> Audit {
        Audit { enabled: true, file: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    pub enabled: bool,
    pub creates: u32,
    pub reveals: u32,
    pub failed_passphrases: u32,
    pub submissions: u32,
    /// Wrong API tokens (HTTP Basic) per client network and window.
    pub failed_tokens: u32,
    /// Team login POSTs (GPGAuth stages 0–2) per client network and window.
    pub team_logins: u32,
    /// Team login POSTs per key fingerprint and window, from anywhere.
    pub team_logins_per_key: u32,
    pub window_seconds: u64,
    /// IPv4 clients are limited per network of this prefix length (32: per address).
    pub ipv4_prefix: u8,
    /// IPv6 clients are limited per network of this prefix length (64: per subnet, since one host is
    /// routinely given a whole /64).
    pub ipv6_prefix: u8,
    /// Windows kept in memory at most; past it, new networks share one overflow window per class.
    pub max_entries: usize,
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit {
            enabled: true,
            creates: 1000,
            reveals: 1000,
            failed_passphrases: 20,
            submissions: 100,
            failed_tokens: 20,
            team_logins: 100,
            team_logins_per_key: 100,
            window_seconds: 1200,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Metrics {
    pub enabled: bool,
    pub listen: Option<String>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics { enabled: true, listen: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// `text` or `json`; unset means text on a terminal and JSON otherwise.
    pub format: Option<String>,
}

/// Limits of the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// How long a client may take to send the request head; it also bounds how long an idle
    /// keep-alive connection is kept waiting for its next request.
    pub header_read_timeout_seconds: u64,
    /// How long a client may take to send a request's body once its head is in (a stalled or dripping
    /// upload is cut off with 408 and its connection closed), and how long a response may wait on a
    /// client that has stopped reading it before the connection is dropped.
    pub request_timeout_seconds: u64,
    /// Open connections per listener beyond which new ones wait in the kernel backlog.
    pub max_connections: usize,
    /// Open connections per client address on one listener (IPv6: per /64), counted on the TCP peer,
    /// never on `X-Forwarded-For`; one more is closed at once, so one client cannot fill the listener.
    pub max_connections_per_client: usize,
    /// How long in-flight requests may take to finish after a stop signal.
    pub shutdown_grace_seconds: u64,
}

impl Default for Http {
    fn default() -> Http {
        Http {
            header_read_timeout_seconds: 10,
            request_timeout_seconds: 30,
            max_connections: 1024,
            max_connections_per_client: 64,
            shutdown_grace_seconds: 30,
        }
    }
}

impl Default for RawConfig {
    fn default() -> RawConfig {
        RawConfig {
            data_dir: None,
            storage: "redb".into(),
            public_url: None,
            listeners: vec![RawListener { addr: "127.0.0.1:8080".into(), mode: "full".into() }],
            read_only: false,
            master_key_file: None,
            limits: Limits::default(),
            ttl: TtlRules::default(),
            expirations: vec![3600, 86_400, 604_800],
            passphrase: PassphraseRules::default(),
            share_domains: Vec::new(),
            secret_requests: SecretRequests::default(),
            disable_secret_requests: false,
            audit: Audit::default(),
            rate_limit: RateLimit::default(),
            trusted_proxies: Vec::new(),
            metrics: Metrics::default(),
            log: Log::default(),
            http: Http::default(),
            client: ClientDefaults::default(),
            webhooks: Webhooks::default(),
            mail: Mail::default(),
            team: Team::default(),
            redis: RedisConfig::default(),
        }
    }
}

/// Values given on the command line; each `Some` overrides every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub storage: Option<String>,
    pub public_url: Option<String>,
    pub listen: Vec<String>,
    pub read_only: bool,
    pub disable_secret_requests: bool,
    /// `--redis-url`, repeatable.
    pub redis_urls: Vec<String>,
    /// `--redis-cluster`.
    pub redis_cluster: bool,
}

/// Where the layers come from; tests pass their own environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--config`; when `None`, [`DEFAULT_CONFIG_FILE`] is read if it exists.
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
}

/// Merges every layer and validates the result.
pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    match &sources.file {
        Some(path) => {
            if !path.is_file() {
                return Err(ConfigError::new("config", format!("file {} not found", path.display())));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        None => {
            // Under systemd, `ConfigurationDirectory=` names where the unit's config lives.
            let from_systemd = std::env::var_os("CONFIGURATION_DIRECTORY")
                .map(|dir| PathBuf::from(dir).join("lethe.toml"))
                .filter(|p| p.is_file());
            let default = Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file());
            if let Some(path) = from_systemd.or(default) {
                figment = figment.merge(Toml::file_exact(path));
            }
        }
    }
    // `LETHE_CONFIG` names the file itself and is read by the CLI, not a key. Variables that name no key
    // are left out rather than refused: orchestrators inject `LETHE_PORT`, `LETHE_SERVICE_HOST` and the
    // like into every pod of a namespace with a Service named `lethe`.
    let ignored_environment = unknown_environment(std::env::vars_os().map(|(name, _)| name));
    figment = figment.merge(
        Env::prefixed(ENV_PREFIX)
            .split("__")
            .ignore(&["config"])
            .filter(|key| is_config_key(&key.as_str().to_ascii_lowercase())),
    );
    let o = &sources.overrides;
    if let Some(dir) = &o.data_dir {
        figment = figment.merge(("data_dir", dir));
    }
    if let Some(storage) = &o.storage {
        figment = figment.merge(("storage", storage));
    }
    if let Some(url) = &o.public_url {
        figment = figment.merge(("public_url", url));
    }
    if !o.listen.is_empty() {
        let listeners: Vec<RawListener> =
            o.listen.iter().map(|addr| RawListener { addr: addr.clone(), mode: default_mode() }).collect();
        figment = figment.merge(("listeners", listeners));
    }
    if o.read_only {
        figment = figment.merge(("read_only", true));
    }
    if o.disable_secret_requests {
        figment = figment.merge(("disable_secret_requests", true));
    }
    if !o.redis_urls.is_empty() {
        figment = figment.merge(("redis.urls", &o.redis_urls));
    }
    if o.redis_cluster {
        figment = figment.merge(("redis.cluster", true));
    }
    let raw: RawConfig = figment.extract().map_err(figment_error)?;
    let mut settings = raw.validate(std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))?;
    settings.ignored_environment = ignored_environment;
    Ok(settings)
}

const ENV_PREFIX: &str = "LETHE_";

/// Whether a dotted, lower-case key (`ttl.max_anonymous`) names a configuration key. The keys are those
/// of [`RawConfig`] as it serializes, so a new field is known without a list to keep in step; below a
/// key whose default is not a table (a list, an unset option), figment judges the rest.
fn is_config_key(key: &str) -> bool {
    static DEFAULTS: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let defaults = DEFAULTS.get_or_init(|| serde_json::to_value(RawConfig::default()).unwrap_or_default());
    // Not serialized (it is only ever read), but a key all the same.
    if key == "disable_secret_requests" {
        return true;
    }
    let mut node = defaults;
    for part in key.split('.') {
        match node {
            serde_json::Value::Object(map) => match map.get(part) {
                Some(next) => node = next,
                None => return false,
            },
            _ => return true,
        }
    }
    true
}

/// The `LETHE_*` variable names among `names` that name no configuration key, sorted.
fn unknown_environment(names: impl Iterator<Item = std::ffi::OsString>) -> Vec<String> {
    let mut unknown: Vec<String> = names
        .filter_map(|name| name.into_string().ok())
        .filter(|name| {
            let Some(rest) = name.get(..ENV_PREFIX.len()).filter(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
            else {
                return false;
            };
            let key = name[rest.len()..].to_ascii_lowercase().replace("__", ".");
            key != "config" && !is_config_key(&key)
        })
        .collect();
    unknown.sort();
    unknown
}

/// A figment error as one line that names the key and where it came from: the file (with its path) or
/// the environment (with the variable's name, rebuilt from the key's path as `Env` maps it).
fn figment_error(err: figment::Error) -> ConfigError {
    let key = err.path.join(".");
    let key = if key.is_empty() { "config".to_owned() } else { key };
    let mut message = err.kind.to_string();
    let from_env = err.metadata.as_ref().is_some_and(|m| m.name.contains("environment"));
    if from_env {
        let variable = format!("{ENV_PREFIX}{}", err.path.join("__").to_ascii_uppercase());
        message.push_str(&format!(" (from environment variable {variable})"));
    } else if let Some(source) = &err.metadata.as_ref().and_then(|m| m.source.as_ref()) {
        match source {
            figment::Source::File(path) => message.push_str(&format!(" (in file {})", path.display())),
            other => message.push_str(&format!(" (from {other})")),
        }
    }
    ConfigError { key, message }
}

/// How a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Full,
    /// No creation routes; retrieval, status and the responder side of requests stay.
    ReadOnly,
    /// Only `/metrics` (the `metrics.listen` address); never configured as a listener mode.
    Metrics,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub mode: Mode,
}

/// The resolved, validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub storage: Engine,
    /// Base of every link handed out, without a trailing slash.
    pub public_url: String,
    pub listeners: Vec<Listener>,
    pub master_key_file: PathBuf,
    pub limits: Limits,
    pub ttl: TtlRules,
    pub expirations: Vec<u64>,
    pub passphrase: PassphraseRules,
    pub share_domains: Vec<String>,
    pub secret_requests: bool,
    pub audit: Audit,
    pub rate_limit: RateLimit,
    pub trusted_proxies: TrustedProxies,
    pub metrics: Metrics,
    pub log: Log,
    pub http: Http,
    pub webhooks: Webhooks,
    pub mail: Mail,
    pub team: Team,
    /// Where the team server key lives (`team.server_key_file`, resolved).
    pub team_server_key_file: PathBuf,
    /// The raw form, for `lethe config`.
    pub raw: RawConfig,
    /// `LETHE_*` environment variables that name no key: ignored, and named in a warning at start.
    pub ignored_environment: Vec<String>,
}

impl RawConfig {
    /// Checks every key and resolves the defaults that depend on the environment (`state_directory` is
    /// `$STATE_DIRECTORY` under systemd).
    pub fn validate(self, state_directory: Option<PathBuf>) -> Result<Settings, ConfigError> {
        let storage: Engine = self.storage.parse().map_err(|msg| ConfigError::new("storage", msg))?;
        let data_dir = self
            .data_dir
            .clone()
            .or_else(|| state_directory.filter(|p| !p.as_os_str().is_empty()))
            .unwrap_or_else(|| PathBuf::from("./lethe-data"));
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::new("data_dir", "must not be empty"));
        }

        if self.listeners.is_empty() {
            return Err(ConfigError::new("listeners", "at least one listener is required"));
        }
        let mut listeners = Vec::with_capacity(self.listeners.len());
        for (i, l) in self.listeners.iter().enumerate() {
            let addr: SocketAddr = l.addr.trim().parse().map_err(|_| {
                ConfigError::new(
                    &format!("listeners[{i}].addr"),
                    format!("{:?} is not an address of the form IP:PORT", l.addr),
                )
            })?;
            let mode = match l.mode.as_str() {
                _ if self.read_only => Mode::ReadOnly,
                "full" => Mode::Full,
                "read-only" => Mode::ReadOnly,
                other => {
                    return Err(ConfigError::new(
                        &format!("listeners[{i}].mode"),
                        format!("unknown mode {other:?}; expected full or read-only"),
                    ));
                }
            };
            listeners.push(Listener { addr, mode });
        }

        let public_url = match &self.public_url {
            Some(url) => validate_url(url).map_err(|msg| ConfigError::new("public_url", msg))?,
            None => format!("http://{}", listeners[0].addr),
        };

        let t = &self.ttl;
        if t.min == 0 {
            return Err(ConfigError::new("ttl.min", "must be at least 1 second"));
        }
        if t.max_anonymous < t.min {
            return Err(ConfigError::new("ttl.max_anonymous", "must not be below ttl.min"));
        }
        if t.max_account < t.min {
            return Err(ConfigError::new("ttl.max_account", "must not be below ttl.min"));
        }
        if t.default < t.min || t.default > t.max_anonymous.max(t.max_account) {
            return Err(ConfigError::new("ttl.default", "must lie between ttl.min and the larger ttl.max_*"));
        }
        // Ten years: beyond that an expiry is a typo, and it keeps timestamp arithmetic far from overflow.
        const TEN_YEARS: u64 = 10 * 365 * 86_400;
        if t.max_anonymous > TEN_YEARS || t.max_account > TEN_YEARS {
            return Err(ConfigError::new("ttl", "a maximum TTL over ten years is not supported"));
        }
        if self.expirations.is_empty() {
            return Err(ConfigError::new("expirations", "at least one expiration is required"));
        }
        if let Some(bad) = self.expirations.iter().find(|&&e| e == 0 || e > TEN_YEARS) {
            return Err(ConfigError::new(
                "expirations",
                format!("{bad} is not between 1 second and ten years"),
            ));
        }
        if !(4..=31).contains(&self.passphrase.bcrypt_cost) {
            return Err(ConfigError::new("passphrase.bcrypt_cost", "must be between 4 and 31"));
        }
        if self.passphrase.max_failures == 0 {
            return Err(ConfigError::new("passphrase.max_failures", "must be at least 1"));
        }
        if self.passphrase.lock_seconds == 0 {
            return Err(ConfigError::new("passphrase.lock_seconds", "must be at least 1"));
        }
        let limits = &self.limits;
        for (key, value) in [
            ("limits.max_secret_bytes", limits.max_secret_bytes),
            ("limits.max_message_bytes", limits.max_message_bytes),
            ("limits.max_file_bytes", limits.max_file_bytes),
            ("limits.max_team_body_bytes", limits.max_team_body_bytes),
            ("limits.max_team_secret_bytes", limits.max_team_secret_bytes),
        ] {
            if value == 0 || value > 64 * 1024 * 1024 {
                return Err(ConfigError::new(key, "must be between 1 byte and 64 MiB"));
            }
        }
        let mut share_domains = Vec::with_capacity(self.share_domains.len());
        for (i, d) in self.share_domains.iter().enumerate() {
            let d = d.trim().to_ascii_lowercase();
            if d.is_empty() || !d.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':')) {
                return Err(ConfigError::new(&format!("share_domains[{i}]"), "must be a host name"));
            }
            share_domains.push(d);
        }
        let trusted_proxies = TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|msg| ConfigError::new("trusted_proxies", msg))?;
        if let Some(addr) = &self.metrics.listen
            && addr.parse::<SocketAddr>().is_err()
        {
            return Err(ConfigError::new("metrics.listen", "must be an address of the form IP:PORT"));
        }
        if let Some(format) = &self.log.format
            && format != "text"
            && format != "json"
        {
            return Err(ConfigError::new("log.format", "must be text or json"));
        }
        if self.http.header_read_timeout_seconds == 0 {
            return Err(ConfigError::new("http.header_read_timeout_seconds", "must be at least 1"));
        }
        if self.http.max_connections == 0 {
            return Err(ConfigError::new("http.max_connections", "must be at least 1"));
        }
        if self.http.request_timeout_seconds == 0 {
            return Err(ConfigError::new("http.request_timeout_seconds", "must be at least 1"));
        }
        if self.http.max_connections_per_client == 0 {
            return Err(ConfigError::new("http.max_connections_per_client", "must be at least 1"));
        }
        let r = &self.rate_limit;
        if r.window_seconds == 0 {
            return Err(ConfigError::new("rate_limit.window_seconds", "must be at least 1"));
        }
        if !(1..=32).contains(&r.ipv4_prefix) {
            return Err(ConfigError::new("rate_limit.ipv4_prefix", "must be between 1 and 32"));
        }
        if !(1..=128).contains(&r.ipv6_prefix) {
            return Err(ConfigError::new("rate_limit.ipv6_prefix", "must be between 1 and 128"));
        }
        if !(1_000..=10_000_000).contains(&r.max_entries) {
            return Err(ConfigError::new("rate_limit.max_entries", "must be between 1000 and 10000000"));
        }

        if let Some(url) = &self.client.url {
            validate_url(url).map_err(|msg| ConfigError::new("client.url", msg))?;
        }
        let mut webhooks = self.webhooks.clone();
        if let Some(url) = &webhooks.url {
            let url = validate_url(url).map_err(|msg| ConfigError::new("webhooks.url", msg))?;
            if webhooks.secret_file.is_none() {
                return Err(ConfigError::new("webhooks.secret_file", "is required with webhooks.url"));
            }
            webhooks.url = Some(url);
        }
        if !(60..=30 * 86_400).contains(&webhooks.give_up_seconds) {
            return Err(ConfigError::new("webhooks.give_up_seconds", "must be between 60 and 2592000"));
        }
        self.mail.validate()?;
        self.redis.validate()?;
        let master_key_file = self.master_key_file.clone().unwrap_or_else(|| data_dir.join("master.key"));
        self.team.validate()?;
        let team_server_key_file =
            self.team.server_key_file.clone().unwrap_or_else(|| data_dir.join("team-server-key.asc"));
        Ok(Settings {
            webhooks,
            mail: self.mail.clone(),
            team: self.team.clone(),
            team_server_key_file,
            storage,
            public_url,
            listeners,
            master_key_file,
            limits: self.limits.clone(),
            ttl: self.ttl.clone(),
            expirations: self.expirations.clone(),
            passphrase: self.passphrase.clone(),
            share_domains,
            secret_requests: self.secret_requests.enabled && !self.disable_secret_requests,
            audit: self.audit.clone(),
            rate_limit: self.rate_limit.clone(),
            trusted_proxies,
            metrics: self.metrics.clone(),
            log: self.log.clone(),
            http: self.http.clone(),
            raw: RawConfig { data_dir: Some(data_dir.clone()), ..self },
            data_dir,
            ignored_environment: Vec::new(),
        })
    }
}

/// Accepts `http(s)://host[:port][/path]` and returns it without a trailing slash.
fn validate_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains(['?', '#', '@', ' ']) {
        return Err(format!("{url:?} has no valid host"));
    }
    Ok(url.to_owned())
}

impl Settings {
    /// Settings for tests and embedding: the defaults, on the memory store, in `data_dir`.
    pub fn for_tests(data_dir: &Path) -> Settings {
        let raw = RawConfig {
            data_dir: Some(data_dir.to_owned()),
            storage: "memory".into(),
            listeners: vec![RawListener { addr: "127.0.0.1:0".into(), mode: "full".into() }],
            passphrase: PassphraseRules { bcrypt_cost: 4, ..PassphraseRules::default() },
            ..RawConfig::default()
        };
        match raw.validate(None) {
            Ok(settings) => settings,
            Err(err) => unreachable!("test defaults are valid: {err}"),
        }
    }

    /// The resolved configuration as TOML, for `lethe config`. No key holds a secret today (the master
    /// key lives in its own file); a future secret-bearing key must be redacted here.
    pub fn to_toml(&self) -> String {
        let mut raw = self.raw.clone();
        raw.public_url = Some(self.public_url.clone());
        raw.master_key_file = Some(self.master_key_file.clone());
        raw.secret_requests.enabled = self.secret_requests;
        toml::to_string_pretty(&raw).unwrap_or_else(|err| format!("# cannot render configuration: {err}\n"))
    }
}

#[cfg(test)]
// figment's `Jail` closures must return `figment::Error`, which is large; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in_jail(sources: Sources) -> Result<Settings, ConfigError> {
        load(&sources)
    }

    #[test]
    fn defaults_listen_on_localhost_8080_with_redb() {
        let s = RawConfig::default().validate(None).unwrap();
        assert_eq!(s.storage, Engine::Redb);
        assert_eq!(s.listeners, vec![Listener { addr: "127.0.0.1:8080".parse().unwrap(), mode: Mode::Full }]);
        assert_eq!(s.public_url, "http://127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./lethe-data"));
        assert_eq!(s.master_key_file, PathBuf::from("./lethe-data/master.key"));
    }

    #[test]
    fn state_directory_is_the_default_data_dir_under_systemd() {
        let s = RawConfig::default().validate(Some("/var/lib/lethe".into())).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/lethe"));
    }

    #[test]
    fn the_documented_example_file_parses_to_the_defaults() {
        let text = include_str!("../config/lethe.toml");
        let raw: RawConfig = Figment::from(Toml::string(text)).extract().unwrap();
        let expected = RawConfig { data_dir: raw.data_dir.clone(), ..RawConfig::default() };
        assert_eq!(raw, expected);
    }

    #[test]
    fn layers_apply_in_order_file_then_env_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "lethe.toml",
                "storage = \"memory\"\npublic_url = \"https://file.example\"\n[ttl]\nmin = 120\n",
            )?;
            jail.set_env("LETHE_PUBLIC_URL", "https://env.example");
            jail.set_env("LETHE_TTL__MAX_ANONYMOUS", "3600");
            jail.set_env("LETHE_CONFIG", "ignored-by-the-loader");
            let s = load_in_jail(Sources {
                file: Some("lethe.toml".into()),
                overrides: Overrides { listen: vec!["127.0.0.1:9999".into()], ..Overrides::default() },
            })
            .unwrap();
            assert_eq!(s.storage, Engine::Memory);
            assert_eq!(s.ttl.min, 120);
            assert_eq!(s.ttl.max_anonymous, 3600);
            assert_eq!(s.public_url, "https://env.example");
            assert_eq!(s.listeners[0].addr, "127.0.0.1:9999".parse().unwrap());

            let s = load_in_jail(Sources {
                file: Some("lethe.toml".into()),
                overrides: Overrides {
                    public_url: Some("https://flag.example/".into()),
                    ..Overrides::default()
                },
            })
            .unwrap();
            assert_eq!(s.public_url, "https://flag.example");
            Ok(())
        });
    }

    #[test]
    fn the_team_limits_come_from_the_environment_and_are_validated() {
        Jail::expect_with(|jail| {
            jail.set_env("LETHE_LIMITS__MAX_TEAM_BODY_BYTES", "8192");
            jail.set_env("LETHE_LIMITS__MAX_TEAM_SECRET_BYTES", "4096");
            jail.set_env("LETHE_RATE_LIMIT__TEAM_LOGINS", "7");
            jail.set_env("LETHE_RATE_LIMIT__TEAM_LOGINS_PER_KEY", "5");
            let s = load_in_jail(Sources::default()).unwrap();
            assert_eq!((s.limits.max_team_body_bytes, s.limits.max_team_secret_bytes), (8192, 4096));
            assert_eq!((s.rate_limit.team_logins, s.rate_limit.team_logins_per_key), (7, 5));
            jail.set_env("LETHE_LIMITS__MAX_TEAM_SECRET_BYTES", "0");
            let err = load_in_jail(Sources::default()).unwrap_err();
            assert!(err.to_string().starts_with("limits.max_team_secret_bytes:"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_their_key() {
        Jail::expect_with(|jail| {
            jail.set_env("LETHE_STORAGE", "foo");
            let err = load_in_jail(Sources::default()).unwrap_err();
            assert_eq!(err.to_string(), "storage: unknown engine \"foo\"; expected redb, memory or redis");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[ttl]\nmin = \"soon\"\n")?;
            let err =
                load_in_jail(Sources { file: Some("bad.toml".into()), ..Sources::default() }).unwrap_err();
            assert_eq!(err.key, "ttl.min");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "listner = 1\n")?;
            let err =
                load_in_jail(Sources { file: Some("typo.toml".into()), ..Sources::default() }).unwrap_err();
            assert!(err.to_string().contains("listner"), "{err}");
            Ok(())
        });
        type Mutation = fn(&mut RawConfig);
        let cases: [(&str, Mutation); 6] = [
            ("listeners[0].addr", |c| c.listeners[0].addr = "localhost".into()),
            ("listeners[0].mode", |c| c.listeners[0].mode = "half".into()),
            ("ttl.default", |c| c.ttl.default = 10),
            ("ttl.max_anonymous", |c| c.ttl.max_anonymous = 1),
            ("public_url", |c| c.public_url = Some("ftp://x".into())),
            ("passphrase.bcrypt_cost", |c| c.passphrase.bcrypt_cost = 99),
        ];
        for (key, mutate) in cases {
            let mut raw = RawConfig::default();
            mutate(&mut raw);
            assert_eq!(raw.validate(None).unwrap_err().key, key);
        }
    }

    #[test]
    fn unknown_environment_variables_are_ignored_and_named_but_unknown_file_keys_stop_start_up() {
        Jail::expect_with(|jail| {
            jail.set_env("LETHE_PORT", "tcp://10.0.0.7:8080");
            jail.set_env("LETHE_SERVICE_HOST", "10.0.0.7");
            jail.set_env("LETHE_TTL__NOPE", "1");
            jail.set_env("LETHE_TTL__MIN", "90");
            let s = load_in_jail(Sources::default()).unwrap();
            assert_eq!(s.ttl.min, 90);
            assert_eq!(s.ignored_environment, ["LETHE_PORT", "LETHE_SERVICE_HOST", "LETHE_TTL__NOPE"]);
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[ttl]\nminn = 1\n")?;
            let err =
                load_in_jail(Sources { file: Some("typo.toml".into()), ..Sources::default() }).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("minn") && text.contains("typo.toml"), "{text}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("LETHE_HTTP__MAX_CONNECTIONS", "many");
            let err = load_in_jail(Sources::default()).unwrap_err();
            assert_eq!(err.key, "http.max_connections");
            assert!(err.message.contains("environment variable LETHE_HTTP__MAX_CONNECTIONS"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn every_documented_key_is_known_to_the_environment_filter() {
        for key in [
            "data_dir",
            "storage",
            "ttl.max_anonymous",
            "http.max_connections",
            "listeners",
            "metrics.listen",
        ] {
            assert!(is_config_key(key), "{key}");
        }
        for key in ["port", "service_host", "ttl.nope", "http"] {
            assert_eq!(is_config_key(key), key == "http", "{key}");
        }
    }

    #[test]
    fn the_flag_shaped_environment_variable_disables_secret_requests() {
        Jail::expect_with(|jail| {
            jail.set_env("LETHE_DISABLE_SECRET_REQUESTS", "true");
            assert!(!load_in_jail(Sources::default()).unwrap().secret_requests);
            jail.set_env("LETHE_DISABLE_SECRET_REQUESTS", "false");
            assert!(load_in_jail(Sources::default()).unwrap().secret_requests);
            Ok(())
        });
    }

    #[test]
    fn read_only_makes_every_listener_read_only_and_disable_flag_turns_requests_off() {
        let raw = RawConfig {
            read_only: true,
            disable_secret_requests: true,
            listeners: vec![
                RawListener { addr: "127.0.0.1:1".into(), mode: "full".into() },
                RawListener { addr: "127.0.0.1:2".into(), mode: "read-only".into() },
            ],
            ..RawConfig::default()
        };
        let s = raw.validate(None).unwrap();
        assert!(s.listeners.iter().all(|l| l.mode == Mode::ReadOnly));
        assert!(!s.secret_requests);
    }

    #[test]
    fn printed_configuration_parses_back() {
        let s = RawConfig::default().validate(None).unwrap();
        let again: RawConfig = Figment::from(Toml::string(&s.to_toml())).extract().unwrap();
        assert_eq!(again.storage, "redb");
        assert_eq!(again.public_url.as_deref(), Some("http://127.0.0.1:8080"));
    }

    #[test]
    fn redis_keys_come_from_file_environment_and_flags_and_bad_ones_are_named() {
        Jail::expect_with(|jail| {
            jail.create_file("lethe.toml", "storage = \"redis\"\n[redis]\nkey_prefix = \"a:\"\n")?;
            jail.set_env("LETHE_REDIS__URLS", "redis://10.0.0.1:6379/0");
            let s =
                load_in_jail(Sources { file: Some("lethe.toml".into()), overrides: Overrides::default() })
                    .unwrap();
            assert_eq!(s.storage, Engine::Redis);
            assert_eq!(s.raw.redis.urls, ["redis://10.0.0.1:6379/0"]);
            assert_eq!(s.raw.redis.key_prefix, "a:");
            assert!(!s.raw.redis.accept_weaker_durability);
            let overrides =
                Overrides { redis_urls: vec!["rediss://r.example:6380/0".into()], ..Overrides::default() };
            let s = load_in_jail(Sources { file: Some("lethe.toml".into()), overrides }).unwrap();
            assert_eq!(s.raw.redis.urls, ["rediss://r.example:6380/0"]);
            jail.set_env("LETHE_REDIS__URLS", "http://user:hunter2@10.0.0.1/");
            let err =
                load_in_jail(Sources { file: Some("lethe.toml".into()), overrides: Overrides::default() })
                    .unwrap_err();
            assert_eq!(err.to_string(), "redis.urls: each URL must start with redis:// or rediss://");
            Ok(())
        });
    }

    #[test]
    fn several_redis_urls_are_cluster_seeds_and_need_cluster_mode() {
        Jail::expect_with(|jail| {
            jail.create_file("lethe.toml", "storage = \"redis\"\n")?;
            jail.set_env("LETHE_REDIS__URLS", "[redis://10.0.0.1:7000, redis://10.0.0.2:7000]");
            let err =
                load_in_jail(Sources { file: Some("lethe.toml".into()), overrides: Overrides::default() })
                    .unwrap_err();
            assert!(err.to_string().starts_with("redis.urls: several URLs are a cluster's seeds"), "{err}");
            let overrides = Overrides { redis_cluster: true, ..Overrides::default() };
            let s = load_in_jail(Sources { file: Some("lethe.toml".into()), overrides }).unwrap();
            assert!(s.raw.redis.cluster);
            assert_eq!(s.raw.redis.urls, ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]);
            assert!(s.raw.redis.options().unwrap().cluster);
            jail.set_env("LETHE_REDIS__CLUSTER", "true");
            let s =
                load_in_jail(Sources { file: Some("lethe.toml".into()), overrides: Overrides::default() })
                    .unwrap();
            assert!(s.raw.redis.cluster);
            Ok(())
        });
    }

    #[test]
    fn mail_urls_need_tls_except_on_loopback_and_mail_keys_are_checked() {
        let url = |u: &str| parse_mail_url(u);
        assert_eq!(
            url("smtp://mail.example.com"),
            Ok(MailUrl { host: "mail.example.com".into(), port: 587, tls: MailTls::StartTls })
        );
        assert_eq!(
            url("smtps://Mail.example.com:2465").map(|u| (u.host, u.port, u.tls)),
            Ok(("mail.example.com".into(), 2465, MailTls::Implicit))
        );
        assert_eq!(url("smtp://127.0.0.1:2525?tls=none").map(|u| u.tls), Ok(MailTls::None));
        assert_eq!(
            url("smtp://[::1]:25?tls=none").map(|u| (u.host, u.tls)),
            Ok(("::1".into(), MailTls::None))
        );
        assert!(url("smtp://mail.example.com?tls=none").unwrap_err().contains("loopback"));
        assert!(url("smtps://127.0.0.1?tls=none").is_err());
        assert!(url("http://mail.example.com").is_err());
        assert!(url("smtp://user:pw@mail.example.com").is_err());
        assert!(url("smtp://mail.example.com:0").is_err());
        assert!(url("smtp://mail.example.com:99999").is_err());

        let check = |m: Mail| {
            RawConfig { mail: m, ..RawConfig::default() }
                .validate(None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let on = Mail { url: Some("smtp://127.0.0.1:25?tls=none".into()), ..Mail::default() };
        assert!(check(on.clone()).unwrap_err().starts_with("mail.from"));
        assert!(
            check(Mail { from: Some("not a mailbox".into()), ..on.clone() })
                .unwrap_err()
                .starts_with("mail.from")
        );
        assert_eq!(check(Mail { from: Some("lethe <lethe@example.com>".into()), ..on.clone() }), Ok(()));
        let good = Mail { from: Some("lethe@example.com".into()), ..on };
        assert!(
            check(Mail { url: Some("smtp://mail.example.com?tls=none".into()), ..good.clone() })
                .unwrap_err()
                .starts_with("mail.url")
        );
        assert!(
            check(Mail { username: Some("u".into()), ..good.clone() })
                .unwrap_err()
                .starts_with("mail.password_file")
        );
        assert!(
            check(Mail { per_account_per_hour: 0, ..good.clone() })
                .unwrap_err()
                .starts_with("mail.per_account_per_hour")
        );
        assert!(check(Mail { give_up_seconds: 1, ..good }).unwrap_err().starts_with("mail.give_up_seconds"));
    }
}

//! lethe: a self-hosted server for handing a secret from one person to another exactly once.
//!
//! Data flows one way: `http` (accept, limits, headers) → `router` (typed endpoints) → `api::<surface>`
//! (wire formats and error dialects) → `domain` (lifecycles) → `store` (conditional batches). Side
//! tasks: the `reaper` (expiry sweep) and the `admin` socket (account commands while the daemon runs).

pub mod admin;
pub mod api;
pub mod audit;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod ratelimit;
pub mod reaper;
pub mod router;
pub mod server;
pub mod store;
pub mod systemd;
pub mod telemetry;

use std::net::IpAddr;

/// What every request handler shares.
#[derive(Debug)]
pub struct App {
    pub domain: domain::Domain,
    pub audit: audit::AuditSink,
    pub limiter: ratelimit::RateLimiter,
    pub metrics: std::sync::Arc<metrics::Metrics>,
}

/// What a handler knows about where a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// Trusted-proxy aware.
    pub client_ip: IpAddr,
    pub mode: config::Mode,
}

impl App {
    pub fn new(domain: domain::Domain, audit: audit::AuditSink) -> App {
        let limiter = ratelimit::RateLimiter::new(domain.settings.rate_limit.clone());
        App { domain, audit, limiter, metrics: std::sync::Arc::default() }
    }

    /// Records an audit event; `id` is hashed with the server's key before it is written.
    pub fn audit(
        &self,
        ctx: &Ctx,
        event: &'static str,
        outcome: audit::Outcome,
        reason: Option<&'static str>,
        id: Option<&str>,
        account: Option<&str>,
    ) {
        if !self.audit.is_enabled() {
            return;
        }
        let mut e = audit::Event::new(self.domain.now(), event, outcome, ctx.client_ip);
        e.reason = reason;
        e.id_hash = id.map(|id| self.domain.keys.id_hash(id));
        e.account = account.map(str::to_owned);
        self.audit.record(&e);
    }

    /// Counts one event of `class` for the caller; `Err(retry after seconds)` when over the limit.
    pub fn rate(&self, ctx: &Ctx, class: ratelimit::Class) -> Result<(), u64> {
        self.limiter.hit(class, ctx.client_ip, self.domain.now())
    }
}

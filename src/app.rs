//! What every request handler shares ([`App`]: the domain, the audit sink, the rate limiter, the
//! metrics) and what it knows of where a request came from ([`Ctx`]); the audit and rate-limit
//! helpers that keep a flood from flooding the trail.

use std::net::IpAddr;

use crate::ratelimit::{Class, Net};
use crate::{audit, config, domain, metrics, ratelimit};

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

/// Why [`App::authenticate`] turned a caller away.
#[derive(Debug)]
pub enum AuthRefused {
    /// Unknown name or wrong token (counted against the caller's `failed_tokens`).
    BadCredentials,
    /// The caller's failed-token allowance is spent; nothing was checked. Seconds until it refills.
    Limited(u64),
    /// The account store failed.
    Internal(domain::accounts::AccountError),
}

impl App {
    pub fn new(domain: domain::Domain, audit: audit::AuditSink) -> App {
        let limiter = ratelimit::RateLimiter::new(domain.settings.rate_limit.clone());
        let metrics = metrics::Metrics::with_audit_dropped(audit.dropped());
        App { domain, audit, limiter, metrics: std::sync::Arc::new(metrics) }
    }

    /// Records an audit event; `id` is hashed with the server's key before it is written.
    ///
    /// Rate-limited refusals are not written one by one: the limiter reports the first of each
    /// window and a count of the rest (see [`App::rate`]), so a flood cannot flood the trail.
    pub fn audit(
        &self,
        ctx: &Ctx,
        event: audit::EventName,
        outcome: audit::Outcome,
        reason: Option<&'static str>,
        id: Option<&str>,
        account: Option<&str>,
    ) {
        let mut facts = crate::api::AuditFacts::new(event, outcome, reason, id.map(str::to_owned));
        facts.account = account.map(str::to_owned);
        self.audit_facts(ctx, &facts);
    }

    /// Writes the audit line of `facts`, the id hashed.
    pub fn audit_facts(&self, ctx: &Ctx, facts: &crate::api::AuditFacts) {
        if !self.audit.is_enabled() || facts.reason == Some("rate_limited") {
            return;
        }
        let mut e = audit::Event::new(self.domain.now(), facts.event, facts.outcome, ctx.client_ip);
        e.reason = facts.reason;
        e.id_hash = facts.id.as_deref().map(|id| self.domain.keys.id_hash(id));
        e.account = facts.account.clone();
        (e.added, e.removed) = (facts.counts.map(|c| c.0), facts.counts.map(|c| c.1));
        self.audit.record(&e);
    }

    /// Counts one event of `class` for the caller; `Err(retry after seconds)` when over the limit.
    pub fn rate(&self, ctx: &Ctx, class: Class) -> Result<(), u64> {
        let result = self.limiter.hit(class, ctx.client_ip, self.domain.now());
        if let Err(refused) = &result
            && refused.first
        {
            self.audit_refusals(class, refused.net, 1);
        }
        self.audit_summaries();
        result.map_err(|refused| refused.retry_after)
    }

    /// [`App::rate`] for an endpoint's declared class; an endpoint without one is never limited.
    pub fn rate_for(&self, ctx: &Ctx, class: Option<Class>) -> Result<(), u64> {
        match class {
            Some(class) => self.rate(ctx, class),
            None => Ok(()),
        }
    }

    /// One `rate_limit.refused` line: `count` refusals of `class` for the network `net`.
    fn audit_refusals(&self, class: Class, net: Net, count: u32) {
        if !self.audit.is_enabled() {
            return;
        }
        let now = self.domain.now();
        let mut e = audit::Event::about(
            now,
            audit::EventName::RateLimitRefused,
            audit::Outcome::Denied,
            net.to_string(),
        );
        e.reason = Some(class.as_str());
        e.count = Some(u64::from(count));
        self.audit.record(&e);
    }

    /// Writes the summaries of rate-limit windows that have ended.
    fn audit_summaries(&self) {
        for s in self.limiter.take_summaries() {
            self.audit_refusals(s.class, s.net, s.further);
        }
    }

    /// Checks an account token from HTTP Basic auth, limited and audited per client like passphrase
    /// guesses: an attempt is counted before the check and given back when the token is right.
    pub async fn authenticate(
        &self,
        ctx: &Ctx,
        name: &str,
        token: &str,
    ) -> Result<domain::accounts::Account, AuthRefused> {
        self.rate(ctx, Class::FailedTokens).map_err(AuthRefused::Limited)?;
        match self.domain.accounts.authenticate(name, token).await {
            Ok(account) => {
                self.limiter.release(Class::FailedTokens, ctx.client_ip, self.domain.now());
                Ok(account)
            }
            Err(domain::accounts::AccountError::BadCredentials) => {
                // The presented name is not recorded: it may be anything, a token pasted by mistake too.
                self.audit(
                    ctx,
                    audit::EventName::AccountAuthenticated,
                    audit::Outcome::Denied,
                    Some("bad_token"),
                    None,
                    None,
                );
                Err(AuthRefused::BadCredentials)
            }
            Err(other) => {
                self.limiter.release(Class::FailedTokens, ctx.client_ip, self.domain.now());
                Err(AuthRefused::Internal(other))
            }
        }
    }

    /// The caller's allowance of passphrase checks, for [`domain::secrets`] to reserve from.
    pub fn passphrase_guesses<'a>(&'a self, ctx: &'a Ctx) -> PassphraseGuesses<'a> {
        PassphraseGuesses { app: self, ctx }
    }
}

impl Drop for App {
    /// Rate-limit refusals not yet summarised are written before the audit trail closes.
    fn drop(&mut self) {
        for s in self.limiter.end_all() {
            self.audit_refusals(s.class, s.net, s.further);
        }
    }
}

/// A client's `failed_passphrases` allowance (see [`domain::secrets::Guesses`]).
#[derive(Debug)]
pub struct PassphraseGuesses<'a> {
    app: &'a App,
    ctx: &'a Ctx,
}

impl domain::secrets::Guesses for PassphraseGuesses<'_> {
    fn reserve(&self) -> bool {
        self.app.rate(self.ctx, Class::FailedPassphrases).is_ok()
    }

    fn release(&self) {
        self.app.limiter.release(Class::FailedPassphrases, self.ctx.client_ip, self.app.domain.now());
    }
}

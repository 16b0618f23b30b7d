//! lethe: a self-hosted server for handing a secret from one person to another exactly once.
//!
//! Data flows one way: `http` (accept, limits, headers) → `router` (typed endpoints) → `api::<surface>`
//! (wire formats and error dialects) → `domain` (lifecycles) → `store` (conditional batches). Side
//! tasks: the `reaper` (expiry sweep) and the `admin` socket (account commands while the daemon runs).

pub mod admin;
pub mod api;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod reaper;
pub mod router;
pub mod server;
pub mod store;
pub mod telemetry;

/// What every request handler shares.
#[derive(Debug)]
pub struct App {
    pub domain: domain::Domain,
}

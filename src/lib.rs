//! lethe: a self-hosted server for handing a secret from one person to another exactly once.
//!
//! # Module map
//!
//! Data flows one way, and each module imports only from the floors below it:
//!
//! ```text
//! listener ─► http         transport: accept, connection caps, deadlines, body limits, header policies
//!          ─► service      the one server loop: route once, dispatch, render/log/audit/count once
//!          ─► router       (method, path, listener mode) → typed Endpoint with typed, redacted ids
//!          ─► api::<surface>  wire formats and error dialects: ots_v1, client, requests, web, app, ops, team/
//!          ─► domain       lifecycles as services: secrets, client, requests, accounts, outbox, team/ (no HTTP, no bytes on disk)
//!          ─► store        the Store trait, conditional batches, backends: memory, redb/, redis/
//! ```
//!
//! - The command-line client: [`client`] (`lethe send`, `receive`, `request …`), which encrypts locally
//!   as the web app does and speaks HTTP to a server; nothing in the server imports it.
//! - Composition: `main.rs` → [`cli`] → [`server`] (`server::Parts` builds the server from settings,
//!   store and clock for `serve`, `bench`, the admin commands and the tests) and [`config`] (figment →
//!   validated `Settings`).
//! - Side tasks: [`reaper`] (expiry sweep), [`delivery`] (mail and webhooks from the outbox), [`admin`]
//!   (account and team-user commands over a Unix socket while the daemon runs), [`audit`] (the trail,
//!   off the request path), [`metrics`] (Prometheus text).
//! - Leaves that everything may use: [`clock`] (time and `Timestamp`), [`histogram`], [`client_ip`]
//!   (trusted-proxy aware addresses), [`shutdown`], [`ratelimit`], [`crypto`] (ids, sealing,
//!   passphrases, OpenPGP checks), [`tls`] (outgoing TLS), [`html`] (escaping), [`telemetry`],
//!   [`systemd`].
//! - [`bench`](mod@bench) is the load generator behind `lethe bench`; `fuzzing` holds the fuzz targets' entry points.
//!
//! [`App`] is what every request handler shares; [`Ctx`] what it knows of where a request came from.

pub mod admin;
pub mod api;
mod app;
pub mod audit;
pub mod bench;
pub mod cli;
pub mod client;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod domain;
#[doc(hidden)]
pub mod fuzzing;
pub mod histogram;
pub mod html;
pub mod http;
pub mod metrics;
pub mod ratelimit;
pub mod reaper;
pub mod router;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod tls;

pub use app::{App, AuthRefused, Ctx, PassphraseGuesses};

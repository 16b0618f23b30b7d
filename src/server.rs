//! Running the server: [`Parts`] is the composition root (settings, master key, store, clock → the
//! domain and the [`App`]); [`run`] serves already-bound listeners until a shutdown signal, so tests
//! bind `127.0.0.1:0` and stop it cleanly; [`daemon`] is what `lethe serve` does around it (bind,
//! admin socket, readiness, signals).

use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::App;
use crate::admin;
use crate::audit::AuditSink;
use crate::clock::{Clock, SystemClock};
use crate::config::{Mode, Settings};
use crate::crypto::MasterKey;
use crate::domain::Domain;
use crate::reaper;
use crate::service::Service;
use crate::shutdown::wait_for;
use crate::store::{self, StoreError, StoreHandle};
use crate::systemd;

/// Entries the reaper removes per pass; bounded so a pass never holds the writer for long.
const REAPER_BATCH: usize = 1000;

/// Serves every listener and runs the reaper until `shutdown` becomes `true`; returns once in-flight
/// requests have finished.
pub async fn run(app: Arc<App>, listeners: Vec<(TcpListener, Mode)>, shutdown: watch::Receiver<bool>) {
    let mut tasks = JoinSet::new();
    for (listener, mode) in listeners {
        let app = Arc::clone(&app);
        let shutdown = shutdown.clone();
        let service = Arc::new(Service::new(Arc::clone(&app), mode));
        tasks.spawn(async move {
            crate::http::serve(service, listener, &app.domain.settings.http, wait_for(shutdown)).await
        });
    }
    let d = &app.domain;
    let stats = Arc::clone(&app.metrics.reaper);
    // Redis expires entries itself: nothing to sweep there.
    if d.settings.storage != crate::store::Engine::Redis {
        tasks.spawn(reaper::run(
            d.store().clone(),
            Arc::clone(&d.clock),
            REAPER_BATCH,
            stats,
            shutdown.clone(),
        ));
    }
    let mut transports = crate::delivery::Transports::default();
    match webhook(&d.settings) {
        Some(Ok(hook)) => transports.webhook = Some(hook),
        // `daemon` refuses to start on this; embedders keep serving with webhooks queued.
        Some(Err(err)) => tracing::error!("{err}; webhooks stay queued"),
        None => {}
    }
    match mailer(&d.settings) {
        Some(Ok(mailer)) => transports.mail = Some(mailer),
        Some(Err(err)) => tracing::error!("{err}; mails stay queued"),
        None => {}
    }
    if transports.webhook.is_some() || transports.mail.is_some() {
        tasks.spawn(crate::delivery::run(Arc::clone(&app), transports, shutdown.clone()));
    }
    while let Some(result) = tasks.join_next().await {
        if let Err(err) = result
            && err.is_panic()
        {
            std::panic::resume_unwind(err.into_panic());
        }
    }
}

/// The webhook transport when `webhooks.url` is set.
fn webhook(settings: &Settings) -> Option<Result<crate::delivery::webhook::Webhook, String>> {
    let url = settings.webhooks.url.as_deref()?;
    let secret_file = settings.webhooks.secret_file.as_deref().unwrap_or(std::path::Path::new(""));
    Some(crate::delivery::webhook::Webhook::open(url, secret_file, settings.webhooks.ca_file.as_deref()))
}

/// The mail transport when `mail.url` is set.
fn mailer(settings: &Settings) -> Option<Result<crate::delivery::mail::Mailer, String>> {
    settings.mail.url.as_ref()?;
    Some(crate::delivery::mail::Mailer::open(&settings.mail))
}

#[derive(Debug)]
pub enum StartError {
    DataDir(io::Error),
    Store(StoreError),
    Key(crate::crypto::CryptoError),
    TeamKey(crate::crypto::server_key::ServerKeyError),
    Bind {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    Admin(io::Error),
    Audit(io::Error),
    Webhooks(String),
    /// `mail.*` could not be set up (a password or CA file); the message names the key.
    Mail(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::DataDir(err) => write!(f, "data directory: {err}"),
            StartError::Store(StoreError::Locked) => f.write_str(
                "the database is in use by another process (is another lethe running on this data_dir?)",
            ),
            StartError::Store(err) => write!(f, "store: {err}"),
            StartError::Key(err) => err.fmt(f),
            StartError::TeamKey(err) => err.fmt(f),
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::Admin(err) => write!(f, "admin socket: {err}"),
            StartError::Audit(err) => write!(f, "audit.file: {err}"),
            StartError::Webhooks(err) => f.write_str(err),
            StartError::Mail(err) => f.write_str(err),
        }
    }
}

impl std::error::Error for StartError {}

/// Creates the data directory (mode 0700) if needed, and tightens one that group or others can reach.
///
/// Tightened rather than refused: the directory is lethe's alone (the database, the master key, the
/// admin socket), so nothing else can depend on its looser mode, while a refusal would stop every
/// deployment whose directory was made under a 022 umask. The change is logged with the old mode; a
/// directory lethe may not change (someone else's) is refused with the fix in the message.
pub fn ensure_data_dir(settings: &Settings) -> Result<(), io::Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = &settings.data_dir;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700)) {
        Ok(()) => {
            tracing::warn!(
                data_dir = %dir.display(),
                old_mode = %format_args!("{mode:04o}"),
                "the data directory was open to group or others; it is 0700 now"
            );
            Ok(())
        }
        Err(err) => Err(io::Error::new(
            err.kind(),
            format!(
                "{} is open to group or others (mode {mode:04o}) and cannot be tightened ({err}); run chmod 700 on it",
                dir.display()
            ),
        )),
    }
}

/// The composition root: what the settings name, opened — the data directory made safe, the master
/// key, the store — ready to become the [`Domain`] and the [`App`]. `lethe serve`, `lethe bench`, the
/// admin commands and the tests all build the server through it, so none keeps its own copy of the
/// start-up.
pub struct Parts {
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    pub keys: MasterKey,
    /// The team surface's GPGAuth key, beside the master key.
    pub team_key: crate::crypto::server_key::ServerKey,
    pub store: StoreHandle,
    /// The redb backend itself when that is the engine, for its writer's figures.
    pub redb: Option<Arc<store::RedbStore>>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").field("storage", &self.settings.storage).finish_non_exhaustive()
    }
}

impl Parts {
    pub fn open(settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Result<Parts, StartError> {
        ensure_data_dir(&settings).map_err(StartError::DataDir)?;
        let keys = MasterKey::load_or_create(&settings.master_key_file).map_err(StartError::Key)?;
        let team_key = crate::crypto::server_key::ServerKey::load_or_create(&settings.team_server_key_file)
            .map_err(StartError::TeamKey)?;
        let redis = match settings.storage {
            store::Engine::Redis => {
                let mut options = settings
                    .raw
                    .redis
                    .options()
                    .map_err(|err| StartError::Store(StoreError::Io(err.to_string())))?;
                options.key_check = Some(keys.id_hash("lethe/master-key-check"));
                options.team_key_check =
                    Some(keys.id_hash(&format!("lethe/team-key-check/{}", team_key.fingerprint())));
                Some(options)
            }
            _ => None,
        };
        let (store, redb) = store::open_engine(
            settings.storage,
            &settings.data_dir,
            redis.as_ref(),
            crate::domain::KEYSPACES,
        )
        .map_err(StartError::Store)?;
        Ok(Parts { settings, clock, keys, team_key, store, redb })
    }

    /// The same parts with the store wrapped (the tests' fault injection).
    pub fn wrap_store(self, wrap: impl FnOnce(StoreHandle) -> StoreHandle) -> Parts {
        Parts { store: wrap(self.store), ..self }
    }

    pub fn domain(self) -> Domain {
        Domain::new(self.settings, self.store, self.clock, self.keys, self.team_key)
    }

    /// The server's shared state, auditing to `audit`.
    pub fn app(self, audit: AuditSink) -> App {
        App::new(self.domain(), audit)
    }
}

/// Opens the store and the master key as configured, and builds the domain.
pub fn open_domain(settings: Arc<Settings>, clock: Arc<dyn Clock>) -> Result<Domain, StartError> {
    Parts::open(settings, clock).map(Parts::domain)
}

/// `lethe serve`: everything until a SIGINT or SIGTERM has been handled.
pub async fn daemon(settings: Arc<Settings>) -> Result<(), StartError> {
    let parts = Parts::open(Arc::clone(&settings), Arc::new(SystemClock))?;
    if let Some(Err(err)) = webhook(&settings) {
        return Err(StartError::Webhooks(err));
    }
    if let Some(Err(err)) = mailer(&settings) {
        return Err(StartError::Mail(err));
    }
    let mut listeners = Vec::with_capacity(settings.listeners.len());
    for l in &settings.listeners {
        let listener =
            TcpListener::bind(l.addr).await.map_err(|source| StartError::Bind { addr: l.addr, source })?;
        let local = listener.local_addr().unwrap_or(l.addr);
        tracing::info!(addr = %local, mode = ?l.mode, "listening");
        listeners.push((listener, l.mode));
    }
    if let (true, Some(addr)) = (settings.metrics.enabled, &settings.metrics.listen) {
        // Validated at load time.
        let addr: std::net::SocketAddr = addr.parse().map_err(|_| StartError::Bind {
            addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            source: io::Error::other("metrics.listen is not an address"),
        })?;
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "metrics listening");
        listeners.push((listener, Mode::Metrics));
    }
    let audit = match (&settings.audit.enabled, &settings.audit.file) {
        (false, _) => AuditSink::disabled(),
        (true, None) => AuditSink::stdout(),
        (true, Some(path)) => AuditSink::file(path).map_err(StartError::Audit)?,
    };
    let app = Arc::new(parts.app(audit));
    let (stop_tx, stop_rx) = watch::channel(false);
    let admin = admin::start(Arc::clone(&app), stop_rx.clone()).await.map_err(StartError::Admin)?;
    tracing::info!(storage = %settings.storage, data_dir = %settings.data_dir.display(), "lethe ready");
    // Ready only now: the store is open and every listener is bound.
    systemd::notify_or_warn("READY=1\nSTATUS=serving");
    if let Some(interval) = systemd::watchdog_interval() {
        let stop = wait_for(stop_rx.clone());
        tokio::spawn(async move {
            tokio::pin!(stop);
            // Twice per interval, so one late tick does not trip the watchdog.
            let mut ticks = tokio::time::interval(interval / 2);
            loop {
                tokio::select! {
                    _ = ticks.tick() => systemd::notify_or_warn("WATCHDOG=1"),
                    () = &mut stop => break,
                }
            }
        });
    }

    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("stop signal received; finishing in-flight requests");
        systemd::notify_or_warn("STOPPING=1");
        let _ = stop_tx.send(true);
    });
    run(app, listeners, stop_rx).await;
    let _ = admin.await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; stop with Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

//! Logging: tracing to stderr, as text on a terminal and as JSON lines otherwise (journald keeps either
//! well; neither has colour codes when stderr is not a terminal). `RUST_LOG` sets the filter.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::Settings;

pub fn init(settings: Option<&Settings>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let json = match settings.and_then(|s| s.log.format.as_deref()) {
        Some("json") => true,
        Some(_) => false,
        None => !terminal,
    };
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(terminal);
    // A second init (tests) is harmless; the first subscriber stays.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

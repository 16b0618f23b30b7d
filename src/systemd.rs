//! systemd integration without a library: readiness, watchdog pings and stopping notices sent as
//! datagrams to `$NOTIFY_SOCKET` (the `sd_notify` protocol). Outside systemd every call is a no-op.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one notification (`READY=1`, `WATCHDOG=1`, `STOPPING=1`, `STATUS=…`). `Ok(false)` when not
/// running under systemd.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(false) };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket: `@` stands for the leading NUL byte.
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), &path)?;
    }
    Ok(true)
}

/// How often systemd expects a watchdog ping, if it does: `$WATCHDOG_USEC`, when `$WATCHDOG_PID` is
/// unset or names this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Logs a failed notification once per call site instead of failing the daemon: systemd will notice
/// a missing READY or watchdog ping on its own.
pub fn notify_or_warn(state: &str) {
    if let Err(err) = notify(state) {
        tracing::warn!(error = %err, "cannot notify systemd");
    }
}

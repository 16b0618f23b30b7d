//! The stop signal every long-running task watches: a `watch` flag that turns `true` once. It is a
//! leaf so that the server, the admin socket and the reaper can wait on it without importing each other.

use tokio::sync::watch;

/// Resolves when the watched flag turns `true` (or its sender is gone).
pub async fn wait_for(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

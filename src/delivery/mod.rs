//! The outbox sender: a side task, shaped like the reaper, that drains `domain::outbox` — bounded
//! passes off the request path, retries with exponential backoff, and a bounded time before a
//! delivery is given up. It owns the transports (signed webhooks, [`webhook`]) and their outcome
//! counters; the entries themselves belong to the domain, which writes them with the changes that
//! cause them.
//!
//! Delivery is at least once: a crash between a receiver's 2xx and the entry's removal sends it again
//! after restart, so receivers should treat `(event, request_id)` as idempotent.

pub mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::App;
use crate::audit::{Event, EventName, Outcome};
use crate::domain::outbox::{Delivery, Queued};
use crate::store::Timestamp;

/// Entries read per pass; a pass sends at most [`SENDS_PER_PASS`] of them.
const SCAN_LIMIT: usize = 1000;
const SENDS_PER_PASS: usize = 100;
/// Pause between passes when nothing was due (or after a store error): deliveries leave within about
/// this long of their commit.
const POLL: Duration = Duration::from_millis(500);
/// First retry delay; it doubles per failed attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: u64 = 2;
const MAX_BACKOFF: u64 = 600;

/// What the sender has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub webhooks_sent: AtomicU64,
    /// Failed attempts that will be tried again.
    pub webhooks_retried: AtomicU64,
    /// Deliveries given up after `webhooks.give_up_seconds`.
    pub webhooks_failed: AtomicU64,
}

/// Seconds until the attempt after `attempts` failed ones.
fn backoff(attempts: u32) -> u64 {
    FIRST_BACKOFF.saturating_mul(1u64 << attempts.min(20)).min(MAX_BACKOFF)
}

/// Runs until `shutdown` becomes `true` (or its sender is dropped), delivering due entries.
pub async fn run(app: Arc<App>, hook: webhook::Webhook, mut shutdown: watch::Receiver<bool>) {
    let outbox = app.domain.outbox.clone();
    tracing::debug!("outbox sender started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let mut full = false;
        match outbox.due(SCAN_LIMIT).await {
            Ok(due) => {
                full = due.due.len() > SENDS_PER_PASS;
                for entry in due.due.into_iter().take(SENDS_PER_PASS) {
                    if *shutdown.borrow() {
                        break;
                    }
                    deliver(&app, &hook, entry).await;
                }
            }
            Err(err) => tracing::warn!(error = %err, "outbox pass failed; retrying"),
        }
        if full {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    tracing::debug!("outbox sender stopped");
}

async fn deliver(app: &App, hook: &webhook::Webhook, entry: Queued) {
    let d = &app.domain;
    let stats = &app.metrics.delivery;
    let Delivery::Webhook { event, request_id, label, occurred_at } = &entry.delivery;
    let body = webhook::payload(event, request_id, label.as_deref(), *occurred_at);
    let result = hook.post(&body, d.now()).await;
    let now = d.now();
    let (name, outcome, reason) = match result {
        Ok(()) => match d.outbox.finish(&entry).await {
            Ok(_) => {
                stats.webhooks_sent.fetch_add(1, Ordering::Relaxed);
                (EventName::WebhookSent, Outcome::Success, None)
            }
            Err(err) => {
                // Sent, but still queued: it goes again next pass (at least once).
                tracing::warn!(error = %err, "a sent webhook could not be removed from the outbox");
                return;
            }
        },
        Err(err) if now >= give_up_at(app, &entry) => {
            tracing::warn!(error = %err, attempts = entry.attempts + 1, "webhook given up");
            if let Err(err) = d.outbox.finish(&entry).await {
                tracing::warn!(error = %err, "a given-up webhook could not be removed from the outbox");
                return;
            }
            stats.webhooks_failed.fetch_add(1, Ordering::Relaxed);
            (EventName::WebhookFailed, Outcome::Failure, Some("gave_up"))
        }
        Err(err) => {
            let wait = backoff(entry.attempts);
            tracing::info!(error = %err, attempts = entry.attempts + 1, retry_in = wait, "webhook failed; will retry");
            stats.webhooks_retried.fetch_add(1, Ordering::Relaxed);
            if let Err(err) = d.outbox.retry_at(&entry, now.saturating_add(wait)).await {
                tracing::warn!(error = %err, "a webhook retry could not be recorded");
            }
            return;
        }
    };
    if app.audit.is_enabled() {
        // No client is behind a delivery; the id is hashed like every other id in the trail.
        let mut e = Event::about(now, name, outcome, "-".into());
        e.reason = reason;
        e.id_hash = Some(d.keys.id_hash(request_id));
        app.audit.record(&e);
    }
}

fn give_up_at(app: &App, entry: &Queued) -> Timestamp {
    entry.created.saturating_add(app.domain.settings.webhooks.give_up_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_two_seconds_up_to_ten_minutes() {
        assert_eq!(backoff(0), 2);
        assert_eq!(backoff(1), 4);
        assert_eq!(backoff(4), 32);
        assert_eq!(backoff(9), 600);
        assert_eq!(backoff(u32::MAX), 600);
    }
}

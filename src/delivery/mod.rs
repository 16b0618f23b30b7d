//! The outbox sender: a side task, shaped like the reaper, that drains `domain::outbox` — bounded
//! passes off the request path, retries with exponential backoff, and a bounded time before a
//! delivery is given up. It owns the transports (signed webhooks, [`webhook`]; mail to v1
//! recipients, [`mail`]) and their outcome counters; the entries themselves belong to the domain,
//! which writes them with the changes that cause them.
//!
//! Delivery is at least once: a crash between a receiver's 2xx (or the SMTP server's 250) and the
//! entry's removal sends it again after restart, so receivers should treat `(event, request_id)` as
//! idempotent. A mail whose secret is gone (revealed, burned, expired) is dropped unsent.

pub mod mail;
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
    pub mails_sent: AtomicU64,
    /// Failed mail attempts that will be tried again.
    pub mails_retried: AtomicU64,
    /// Mails refused for good by the SMTP server or given up after `mail.give_up_seconds`.
    pub mails_failed: AtomicU64,
    /// Mails not sent because their secret was gone before they left.
    pub mails_dropped: AtomicU64,
}

/// The configured transports; an entry whose transport is not configured waits, retried with
/// backoff, until it is given up (a restart with the transport configured sends it).
#[derive(Debug, Default)]
pub struct Transports {
    pub webhook: Option<webhook::Webhook>,
    pub mail: Option<mail::Mailer>,
}

/// Seconds until the attempt after `attempts` failed ones.
fn backoff(attempts: u32) -> u64 {
    FIRST_BACKOFF.saturating_mul(1u64 << attempts.min(20)).min(MAX_BACKOFF)
}

/// Runs until `shutdown` becomes `true` (or its sender is dropped), delivering due entries.
pub async fn run(app: Arc<App>, transports: Transports, mut shutdown: watch::Receiver<bool>) {
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
                    deliver(&app, &transports, entry).await;
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

/// What one attempt came to.
enum Attempt {
    Sent,
    /// The mail's secret is gone: nothing to send.
    Dropped,
    Failed {
        permanent: bool,
        description: String,
    },
}

async fn deliver(app: &App, transports: &Transports, entry: Queued) {
    let d = &app.domain;
    let now = d.now();
    let (attempt, id) = match &entry.delivery {
        Delivery::Webhook { event, request_id, label, occurred_at } => {
            let attempt = match &transports.webhook {
                Some(hook) => {
                    let body = webhook::payload(event, request_id, label.as_deref(), *occurred_at);
                    match hook.post(&body, now).await {
                        Ok(()) => Attempt::Sent,
                        Err(description) => Attempt::Failed { permanent: false, description },
                    }
                }
                None => not_configured("webhooks.url"),
            };
            (attempt, request_id.as_str())
        }
        Delivery::Mail(mail) => {
            // Checked before every attempt: a secret revealed, burned or expired by then is not mailed
            // about (one revealed during the attempt itself may still be; its link then finds nothing).
            let attempt = match (d.secrets.peek(&mail.secret_key).await, &transports.mail) {
                (Ok(None), _) => Attempt::Dropped,
                (Ok(Some(_)), Some(mailer)) => match mailer.send(mail, now).await {
                    Ok(()) => Attempt::Sent,
                    Err(err) => Attempt::Failed { permanent: err.permanent, description: err.description },
                },
                (Ok(Some(_)), None) => not_configured("mail.url"),
                (Err(err), _) => {
                    tracing::warn!(error = %err, "could not check a mail's secret; will retry");
                    return;
                }
            };
            (attempt, mail.secret_key.as_str())
        }
    };
    let is_mail = matches!(entry.delivery, Delivery::Mail(_));
    let stats = &app.metrics.delivery;
    let (sent, retried, failed) = if is_mail {
        (&stats.mails_sent, &stats.mails_retried, &stats.mails_failed)
    } else {
        (&stats.webhooks_sent, &stats.webhooks_retried, &stats.webhooks_failed)
    };
    let what = if is_mail { "mail" } else { "webhook" };
    let now = d.now();
    let (outcome, reason) = match attempt {
        Attempt::Sent | Attempt::Dropped => {
            if let Err(err) = d.outbox.finish(&entry).await {
                // Still queued: it goes again next pass (at least once).
                tracing::warn!(error = %err, kind = what, "a delivered outbox entry could not be removed");
                return;
            }
            if let Attempt::Dropped = attempt {
                tracing::info!("a mail was dropped: its secret was gone before it left");
                stats.mails_dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            sent.fetch_add(1, Ordering::Relaxed);
            (Outcome::Success, None)
        }
        Attempt::Failed { permanent, description } if permanent || now >= give_up_at(app, &entry) => {
            let attempts = entry.attempts + 1;
            tracing::warn!(error = %description, attempts, kind = what, "delivery given up");
            if let Err(err) = d.outbox.finish(&entry).await {
                tracing::warn!(error = %err, kind = what, "a given-up delivery could not be removed");
                return;
            }
            failed.fetch_add(1, Ordering::Relaxed);
            (Outcome::Failure, Some(if permanent { "refused" } else { "gave_up" }))
        }
        Attempt::Failed { description, .. } => {
            let wait = backoff(entry.attempts);
            let attempts = entry.attempts + 1;
            let retry_in = wait;
            tracing::info!(error = %description, attempts, retry_in, kind = what, "delivery failed");
            retried.fetch_add(1, Ordering::Relaxed);
            if let Err(err) = d.outbox.retry_at(&entry, now.saturating_add(wait)).await {
                tracing::warn!(error = %err, kind = what, "a delivery retry could not be recorded");
            }
            return;
        }
    };
    if app.audit.is_enabled() {
        let name = match (is_mail, outcome) {
            (true, Outcome::Success) => EventName::MailSent,
            (true, _) => EventName::MailFailed,
            (false, Outcome::Success) => EventName::WebhookSent,
            (false, _) => EventName::WebhookFailed,
        };
        // No client is behind a delivery; the id (request id, or the mail's secret key) is hashed like
        // every other id in the trail, and a mail's address and link never reach it.
        let mut e = Event::about(now, name, outcome, "-".into());
        e.reason = reason;
        e.id_hash = Some(d.keys.id_hash(id));
        if let Delivery::Mail(mail) = &entry.delivery {
            e.account = Some(mail.sender.clone());
        }
        app.audit.record(&e);
    }
}

fn not_configured(key: &str) -> Attempt {
    Attempt::Failed { permanent: false, description: format!("{key} is not configured") }
}

fn give_up_at(app: &App, entry: &Queued) -> Timestamp {
    let settings = &app.domain.settings;
    let give_up = match entry.delivery {
        Delivery::Webhook { .. } => settings.webhooks.give_up_seconds,
        Delivery::Mail(_) => settings.mail.give_up_seconds,
    };
    entry.created.saturating_add(give_up)
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

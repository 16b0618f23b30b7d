//! The audit trail: one JSON object per line, to stdout or a file, for every secret and request event,
//! including denied and failed attempts.
//!
//! An event never carries secret content, a token, a passphrase or a raw id: ids appear only as a keyed
//! hash (`id_hash`, 12 hex characters). Lines are handed to a dedicated writer thread through a
//! bounded queue, so a slow disk or a blocked stdout pipe never stalls a request handler and never
//! grows memory: when the queue is full a line is dropped and counted (`lethe_audit_dropped_total`,
//! and a warning at most every [`WARN_EVERY`]). Closing waits for the writer at most
//! [`CLOSE_DEADLINE`], so a stdout nobody reads cannot hold up a stop.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::{Timestamp, rfc3339};

/// Lines waiting for the writer at most: a few MiB of JSON, enough to ride out a burst while the
/// output is slow, small enough that a stalled output cannot grow the process.
pub const QUEUE_LINES: usize = 8_192;
/// How long [`AuditSink::close`] waits for queued lines to be written.
pub const CLOSE_DEADLINE: Duration = Duration::from_secs(5);
/// The least time between two warnings about dropped lines.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    /// The request was valid but could not be carried out (not found, wrong state, bad input).
    Failure,
    /// The caller was not allowed (bad token, bad credentials, locked, rate-limited).
    Denied,
}

/// What an audit line is about. The names are the trail's stable vocabulary: operators filter on them,
/// so a variant may be added but never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    /// A one-time secret of any surface was stored.
    SecretCreated,
    /// A one-time secret was asked for by its recipient (served or not).
    SecretRevealed,
    /// A v1 secret was destroyed unread by its creator.
    SecretBurned,
    /// A client-encrypted secret was deleted by someone holding its link.
    SecretDeleted,
    RequestCreated,
    /// A responder opened a request (its public key and label).
    RequestViewed,
    /// The requester polled its own request's state, proving it with the management token.
    RequestStatusChecked,
    RequestFulfilled,
    /// The requester collected the submitted secret.
    RequestSecretAccessed,
    RequestRevoked,
    RequestKeyRotated,
    /// An account token was checked.
    AccountAuthenticated,
    /// A summary of rate-limit refusals for one network and class.
    RateLimitRefused,
    /// A request event reached `webhooks.url` (a 2xx reply).
    WebhookSent,
    /// A request event was given up after `webhooks.give_up_seconds` of failed attempts.
    WebhookFailed,
    /// A v1 recipient's mail was accepted by the SMTP server.
    MailSent,
    /// A v1 recipient's mail was refused for good (5xx) or given up after `mail.give_up_seconds`.
    MailFailed,
    /// A team login (GPGAuth stage 2) succeeded or failed.
    TeamLogin,
    TeamLogout,
    /// A team user was registered (by an admin over the API, or by the operator).
    TeamUserCreated,
    /// The operator disabled a team user (their sessions end) or enabled one again.
    TeamUserDisabled,
    TeamUserEnabled,
    /// A team resource was created, updated or (soft) deleted, or a change to it was refused.
    TeamResourceCreated,
    TeamResourceUpdated,
    TeamResourceDeleted,
    /// A team user read their secret of a resource, or was refused it.
    TeamSecretRead,
    /// A team user was refused a resource or the listing (401/403/404); successful reads are not
    /// written one by one.
    TeamResourceRead,
    /// A resource's permissions changed (or the change was refused).
    TeamShare,
}

impl EventName {
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::SecretCreated => "secret.created",
            EventName::SecretRevealed => "secret.revealed",
            EventName::SecretBurned => "secret.burned",
            EventName::SecretDeleted => "secret.deleted",
            EventName::RequestCreated => "request.created",
            EventName::RequestViewed => "request.viewed",
            EventName::RequestStatusChecked => "request.status_checked",
            EventName::RequestFulfilled => "request.fulfilled",
            EventName::RequestSecretAccessed => "request.secret_accessed",
            EventName::RequestRevoked => "request.revoked",
            EventName::RequestKeyRotated => "request.key_rotated",
            EventName::AccountAuthenticated => "account.authenticated",
            EventName::RateLimitRefused => "rate_limit.refused",
            EventName::WebhookSent => "webhook.sent",
            EventName::WebhookFailed => "webhook.failed",
            EventName::MailSent => "mail.sent",
            EventName::MailFailed => "mail.failed",
            EventName::TeamLogin => "team.login",
            EventName::TeamLogout => "team.logout",
            EventName::TeamUserCreated => "team.user.created",
            EventName::TeamUserDisabled => "team.user.disabled",
            EventName::TeamUserEnabled => "team.user.enabled",
            EventName::TeamResourceCreated => "team.resource.created",
            EventName::TeamResourceUpdated => "team.resource.updated",
            EventName::TeamResourceDeleted => "team.resource.deleted",
            EventName::TeamSecretRead => "team.secret.read",
            EventName::TeamResourceRead => "team.resource.read",
            EventName::TeamShare => "team.share",
        }
    }
}

impl Serialize for EventName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One audit line.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub timestamp: String,
    pub event: EventName,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_hash: Option<String>,
    /// An address, or a network (`2001:db8:1:2::/64`) on lines about a rate-limit window.
    pub client_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// How many events the line stands for, on summary lines (rate-limit refusals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// On `team.share`: how many users gained access, and how many lost it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub added: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<u64>,
}

impl Event {
    pub fn new(now: Timestamp, event: EventName, outcome: Outcome, client_ip: IpAddr) -> Event {
        Event::about(now, event, outcome, client_ip.to_string())
    }

    /// An event about a client written as text: an address, or a network.
    pub fn about(now: Timestamp, event: EventName, outcome: Outcome, client: String) -> Event {
        Event {
            timestamp: rfc3339(now),
            event,
            outcome,
            reason: None,
            id_hash: None,
            client_ip: client,
            account: None,
            count: None,
            added: None,
            removed: None,
        }
    }
}

/// Where audit lines go. Cheap to share; `record` never blocks.
pub struct AuditSink {
    /// `None` when auditing is disabled or closed.
    tx: Option<SyncSender<Vec<u8>>>,
    /// Signalled (by disconnecting) when the writer thread has written everything and ended.
    finished: Mutex<Option<Receiver<()>>>,
    /// Lines dropped because the queue was full; shared with the metrics.
    dropped: Arc<AtomicU64>,
    /// `dropped` at the last warning, and when that was, so warnings come at most every
    /// [`WARN_EVERY`] however fast lines are dropped.
    warned: Mutex<(u64, Option<Instant>)>,
    close_deadline: Duration,
}

impl fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSink")
            .field("enabled", &self.tx.is_some())
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

impl AuditSink {
    pub fn disabled() -> AuditSink {
        AuditSink {
            tx: None,
            finished: Mutex::new(None),
            dropped: Arc::default(),
            warned: Mutex::new((0, None)),
            close_deadline: CLOSE_DEADLINE,
        }
    }

    /// Audit lines to stdout.
    pub fn stdout() -> AuditSink {
        AuditSink::to_writer(Box::new(io::stdout()))
    }

    /// Audit lines appended to `path` (created 0600 if absent).
    pub fn file(path: &Path) -> io::Result<AuditSink> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        Ok(AuditSink::to_writer(Box::new(file)))
    }

    /// Audit lines to any writer (tests capture them this way).
    pub fn to_writer(out: Box<dyn Write + Send>) -> AuditSink {
        AuditSink::bounded(out, QUEUE_LINES, CLOSE_DEADLINE)
    }

    /// Audit lines to `out`, at most `queue_lines` waiting, and `close` waiting at most `close_deadline`.
    pub fn bounded(out: Box<dyn Write + Send>, queue_lines: usize, close_deadline: Duration) -> AuditSink {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(queue_lines.max(1));
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new().name("lethe-audit".into()).spawn(move || {
            // Dropped when the thread ends, which is what `close` waits for.
            let _done = done_tx;
            let mut out = BufWriter::new(out);
            while let Ok(line) = rx.recv() {
                let mut ok = out.write_all(&line).is_ok();
                // Flush when the queue is drained, so lines are visible promptly but bursts batch.
                while let Ok(more) = rx.try_recv() {
                    ok &= out.write_all(&more).is_ok();
                }
                ok &= out.flush().is_ok();
                if !ok {
                    tracing::warn!("cannot write the audit trail");
                }
            }
        });
        let mut sink = AuditSink::disabled();
        sink.close_deadline = close_deadline;
        // Without a writer thread there is nobody to read the queue: auditing stays off.
        if spawned.is_ok() {
            sink.tx = Some(tx);
            sink.finished = Mutex::new(Some(done_rx));
        } else {
            tracing::warn!("cannot start the audit writer; auditing is off");
        }
        sink
    }

    /// False for [`AuditSink::disabled`], so callers can skip building events nobody will read.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Lines dropped so far because the writer could not keep up.
    pub fn dropped(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.dropped)
    }

    /// Queues a line; drops and counts it when the queue is full. Never blocks on the writer.
    pub fn record(&self, event: &Event) {
        let Some(tx) = &self.tx else { return };
        let Ok(mut line) = serde_json::to_vec(event) else { return };
        line.push(b'\n');
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                self.warn_dropped(total);
            }
            Err(TrySendError::Disconnected(_)) => tracing::warn!("the audit writer has stopped"),
        }
    }

    fn warn_dropped(&self, total: u64) {
        // Only the thread that finds the lock free may warn; the others just count.
        let Ok(mut warned) = self.warned.try_lock() else { return };
        let (at_last, when) = *warned;
        if when.is_some_and(|w| w.elapsed() < WARN_EVERY) {
            return;
        }
        *warned = (total, Some(Instant::now()));
        drop(warned);
        tracing::warn!(
            dropped = total - at_last,
            dropped_total = total,
            "audit lines dropped: the audit output is not keeping up"
        );
    }

    /// Stops accepting lines and waits, at most the close deadline, until every queued line is
    /// written. A writer still blocked after that is left behind (its lines are lost with it), so a
    /// stop is never held up by an output nobody reads.
    pub fn close(&mut self) {
        self.tx = None;
        // Drops since the last periodic warning would otherwise go unsaid.
        let total = self.dropped.load(Ordering::Relaxed);
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if total > warned.0 {
            tracing::warn!(dropped = total - warned.0, dropped_total = total, "audit lines were dropped");
            *warned = (total, None);
        }
        drop(warned);
        let finished = self.finished.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(finished) = finished {
            match finished.recv_timeout(self.close_deadline) {
                Err(mpsc::RecvTimeoutError::Disconnected) | Ok(()) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    tracing::warn!("the audit output did not take the last lines in time; they are lost");
                }
            }
        }
    }
}

impl Drop for AuditSink {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_are_json_lines_without_empty_fields() {
        let buf = Shared::default();
        let mut sink = AuditSink::to_writer(Box::new(buf.clone()));
        let mut e = Event::new(0, EventName::RequestCreated, Outcome::Success, "127.0.0.1".parse().unwrap());
        e.id_hash = Some("abcdef012345".into());
        sink.record(&e);
        let mut denied = Event::new(60, EventName::RequestRevoked, Outcome::Denied, "::1".parse().unwrap());
        denied.reason = Some("bad_token");
        sink.record(&denied);
        sink.close();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["timestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(lines[0]["outcome"], "success");
        assert!(lines[0].get("reason").is_none());
        assert_eq!(lines[1]["reason"], "bad_token");
        assert_eq!(lines[1]["client_ip"], "::1");
    }

    /// A writer that never returns, like a stdout pipe nobody reads.
    struct Stuck(Arc<(Mutex<bool>, std::sync::Condvar)>);

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            let (lock, released) = &*self.0;
            let mut go = lock.lock().unwrap();
            while !*go {
                go = released.wait(go).unwrap();
            }
            Err(io::Error::other("released"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_output_drops_and_counts_lines_and_close_still_returns() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let mut sink = AuditSink::bounded(Box::new(Stuck(Arc::clone(&gate))), 16, Duration::from_millis(200));
        let e = Event::new(0, EventName::SecretRevealed, Outcome::Failure, "192.0.2.1".parse().unwrap());
        // The writer buffers what it can (a BufWriter's worth) and blocks writing it; 16 more lines
        // fill the queue; the rest are dropped. If `record` blocked, this loop would never end.
        for _ in 0..1_000 {
            sink.record(&e);
        }
        let dropped = sink.dropped();
        let n = dropped.load(Ordering::Relaxed);
        assert!((800..=1_000 - 16).contains(&n), "{n} dropped");
        // If close waited for the writer, this would never return.
        sink.close();
        assert!(!sink.is_enabled());
        sink.record(&e);
        assert_eq!(dropped.load(Ordering::Relaxed), n);
        // Let the leaked writer thread end.
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
    }
}

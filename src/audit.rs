//! The audit trail: one JSON object per line, to stdout or a file, for every secret and request event,
//! including denied and failed attempts.
//!
//! An event never carries secret content, a token, a passphrase or a raw id: ids appear only as a keyed
//! hash (`id_hash`, 12 hex characters). Lines are handed to a dedicated writer thread through a
//! channel, so a slow disk or a blocked stdout pipe never stalls a request handler.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

use serde::Serialize;

use crate::clock::rfc3339;
use crate::store::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    /// The request was valid but could not be carried out (not found, wrong state, bad input).
    Failure,
    /// The caller was not allowed (bad token, bad credentials, locked).
    Denied,
}

/// One audit line.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub timestamp: String,
    pub event: &'static str,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_hash: Option<String>,
    pub client_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

impl Event {
    pub fn new(now: Timestamp, event: &'static str, outcome: Outcome, client_ip: IpAddr) -> Event {
        Event {
            timestamp: rfc3339(now),
            event,
            outcome,
            reason: None,
            id_hash: None,
            client_ip: client_ip.to_string(),
            account: None,
        }
    }
}

/// Where audit lines go. Cheap to share; `record` never blocks on I/O.
pub struct AuditSink {
    /// `None` when auditing is disabled. The mutex only guards the `Sender` handle (held for a
    /// non-blocking send), so the sink stays `Sync` on every toolchain.
    tx: Option<Mutex<Sender<Vec<u8>>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSink").field("enabled", &self.tx.is_some()).finish()
    }
}

impl AuditSink {
    pub fn disabled() -> AuditSink {
        AuditSink { tx: None, writer: Mutex::new(None) }
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
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let writer = std::thread::Builder::new()
            .name("lethe-audit".into())
            .spawn(move || {
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
            })
            .ok();
        AuditSink { tx: writer.as_ref().map(|_| Mutex::new(tx)), writer: Mutex::new(writer) }
    }

    /// False for [`AuditSink::disabled`], so callers can skip building events nobody will read.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn record(&self, event: &Event) {
        let Some(tx) = &self.tx else { return };
        let Ok(mut line) = serde_json::to_vec(event) else { return };
        line.push(b'\n');
        let tx = tx.lock().unwrap_or_else(|e| e.into_inner());
        if tx.send(line).is_err() {
            tracing::warn!("the audit writer has stopped");
        }
    }

    /// Stops accepting lines and waits until every recorded line is written.
    pub fn close(&mut self) {
        self.tx = None;
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
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
    use std::sync::Arc;

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
        let mut e = Event::new(0, "request.created", Outcome::Success, "127.0.0.1".parse().unwrap());
        e.id_hash = Some("abcdef012345".into());
        sink.record(&e);
        let mut denied = Event::new(60, "request.revoked", Outcome::Denied, "::1".parse().unwrap());
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
}

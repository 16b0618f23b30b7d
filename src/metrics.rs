//! Metrics in the Prometheus text format: requests by endpoint and status, latency histograms, live
//! records by kind, reaper work, group-commit sizes and commit latency, bcrypt queue depth and checks
//! run, audit lines dropped.
//!
//! Labels come only from the typed router's endpoint names and status codes, never from raw paths,
//! which carry bearer ids. The text format is simple enough to write by hand; no client library.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::histogram::Histogram;
use crate::reaper::ReaperStats;
use crate::store::CommitMetrics;

/// Request latency buckets, in seconds.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// What [`Metrics::render`] reports beside its own counters, read from the store and the domain by
/// the caller, so this module depends on neither.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Stored records not yet purged, by kind label; kinds whose count failed are left out.
    pub live_records: Vec<(&'static str, u64)>,
    pub commits: Option<Arc<CommitMetrics>>,
    pub bcrypt_queue_depth: usize,
    pub passphrase_checks: u64,
}

#[derive(Default)]
pub struct Metrics {
    /// Requests by (endpoint name, status); a mutex held for one map update per request.
    requests: Mutex<HashMap<(&'static str, u16), u64>>,
    /// Latency per endpoint name; entries are created once and then only observed.
    latency: Mutex<HashMap<&'static str, Arc<Histogram>>>,
    pub reaper: Arc<ReaperStats>,
    /// Outbox deliveries by outcome (the sender's counters).
    pub delivery: Arc<crate::delivery::DeliveryStats>,
    /// Audit lines dropped because the audit output could not keep up (the sink's own counter).
    pub audit_dropped: Arc<AtomicU64>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics that report the audit sink's count of dropped lines.
    pub fn with_audit_dropped(audit_dropped: Arc<AtomicU64>) -> Metrics {
        Metrics { audit_dropped, ..Metrics::default() }
    }

    pub fn observe(&self, endpoint: &'static str, status: u16, seconds: f64) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((endpoint, status)).or_insert(0) += 1;
        let histogram = Arc::clone(
            self.latency
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(endpoint)
                .or_insert_with(|| Arc::new(Histogram::new(LATENCY_BUCKETS))),
        );
        histogram.observe(seconds);
    }

    /// The whole exposition, with the gauges read by the caller (which knows the store and the hasher).
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8 * 1024);
        out.push_str("# HELP lethe_http_requests_total HTTP requests by endpoint and status.\n");
        out.push_str("# TYPE lethe_http_requests_total counter\n");
        let mut requests: Vec<_> =
            self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (*k, *v)).collect();
        requests.sort();
        for ((endpoint, status), n) in requests {
            let _ =
                writeln!(out, "lethe_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
        }

        out.push_str(
            "# HELP lethe_http_request_duration_seconds Time from routing to response, by endpoint.\n",
        );
        out.push_str("# TYPE lethe_http_request_duration_seconds histogram\n");
        let mut latency: Vec<_> = self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, Arc::clone(v)))
            .collect();
        latency.sort_by_key(|(k, _)| *k);
        for (endpoint, h) in latency {
            h.render(&mut out, "lethe_http_request_duration_seconds", &format!("endpoint=\"{endpoint}\""));
        }

        out.push_str("# HELP lethe_live_records Stored records not yet purged, by kind.\n");
        out.push_str("# TYPE lethe_live_records gauge\n");
        for (kind, n) in &gauges.live_records {
            let _ = writeln!(out, "lethe_live_records{{kind=\"{kind}\"}} {n}");
        }

        out.push_str("# HELP lethe_reaper_passes_total Expiry sweep passes.\n# TYPE lethe_reaper_passes_total counter\n");
        let _ = writeln!(out, "lethe_reaper_passes_total {}", self.reaper.passes.load(Ordering::Relaxed));
        out.push_str("# HELP lethe_reaper_removed_total Expired records removed.\n# TYPE lethe_reaper_removed_total counter\n");
        let _ = writeln!(out, "lethe_reaper_removed_total {}", self.reaper.removed.load(Ordering::Relaxed));

        if let Some(commits) = &gauges.commits {
            out.push_str("# HELP lethe_store_commit_batches Conditional batches per durable commit.\n");
            out.push_str("# TYPE lethe_store_commit_batches histogram\n");
            commits.group_size.render(&mut out, "lethe_store_commit_batches", "");
            out.push_str("# HELP lethe_store_commit_seconds Durable commit latency.\n");
            out.push_str("# TYPE lethe_store_commit_seconds histogram\n");
            commits.commit_seconds.render(&mut out, "lethe_store_commit_seconds", "");
        }

        out.push_str("# HELP lethe_bcrypt_queue_depth Passphrase hashes waiting or running.\n");
        out.push_str("# TYPE lethe_bcrypt_queue_depth gauge\n");
        let _ = writeln!(out, "lethe_bcrypt_queue_depth {}", gauges.bcrypt_queue_depth);
        out.push_str("# HELP lethe_passphrase_checks_total Passphrase checks run (bcrypt verifications).\n");
        out.push_str("# TYPE lethe_passphrase_checks_total counter\n");
        let _ = writeln!(out, "lethe_passphrase_checks_total {}", gauges.passphrase_checks);
        out.push_str(
            "# HELP lethe_webhooks_total Webhook attempts by outcome (sent, retried, failed = given up).\n",
        );
        out.push_str("# TYPE lethe_webhooks_total counter\n");
        let d = &self.delivery;
        for (outcome, n) in
            [("sent", &d.webhooks_sent), ("retried", &d.webhooks_retried), ("failed", &d.webhooks_failed)]
        {
            let _ =
                writeln!(out, "lethe_webhooks_total{{outcome=\"{outcome}\"}} {}", n.load(Ordering::Relaxed));
        }
        out.push_str(
            "# HELP lethe_mails_total Mail attempts by outcome (sent, retried, failed = refused or given up, \
             dropped = the secret was gone before the mail left).\n",
        );
        out.push_str("# TYPE lethe_mails_total counter\n");
        for (outcome, n) in [
            ("sent", &d.mails_sent),
            ("retried", &d.mails_retried),
            ("failed", &d.mails_failed),
            ("dropped", &d.mails_dropped),
        ] {
            let _ = writeln!(out, "lethe_mails_total{{outcome=\"{outcome}\"}} {}", n.load(Ordering::Relaxed));
        }
        out.push_str(
            "# HELP lethe_audit_dropped_total Audit lines dropped because the output fell behind.\n",
        );
        out.push_str("# TYPE lethe_audit_dropped_total counter\n");
        let _ = writeln!(out, "lethe_audit_dropped_total {}", self.audit_dropped.load(Ordering::Relaxed));
        out
    }
}

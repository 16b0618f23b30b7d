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

use crate::domain::Domain;
use crate::reaper::ReaperStats;
use crate::store::Keyspace;

/// Request latency buckets, in seconds.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Group-commit sizes, in batches per transaction.
pub const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
/// Durable commit latency buckets, in seconds.
pub const COMMIT_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];

/// A fixed-bucket histogram that can be observed from many threads without a lock.
pub struct Histogram {
    bounds: &'static [f64],
    /// One counter per bound, plus the +Inf bucket; not cumulative (summed when rendered).
    counts: Vec<AtomicU64>,
    /// The sum of observations, as f64 bits.
    sum: AtomicU64,
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram").field("count", &self.count()).finish_non_exhaustive()
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let i = self.bounds.iter().position(|&b| value <= b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let _ = self.sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Writes `name_bucket`, `name_sum` and `name_count` lines with the given extra labels.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}");
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed));
        let wrap = |l: &str| if l.is_empty() { String::new() } else { format!("{{{l}}}") };
        let _ = writeln!(out, "{name}_sum{} {sum}", wrap(labels));
        let _ = writeln!(out, "{name}_count{} {cumulative}", wrap(labels));
    }
}

/// Group-commit observations of a durable store.
#[derive(Debug)]
pub struct CommitMetrics {
    pub group_size: Histogram,
    pub commit_seconds: Histogram,
}

impl Default for CommitMetrics {
    fn default() -> CommitMetrics {
        CommitMetrics {
            group_size: Histogram::new(GROUP_BUCKETS),
            commit_seconds: Histogram::new(COMMIT_BUCKETS),
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    /// Requests by (endpoint name, status); a mutex held for one map update per request.
    requests: Mutex<HashMap<(&'static str, u16), u64>>,
    /// Latency per endpoint name; entries are created once and then only observed.
    latency: Mutex<HashMap<&'static str, Arc<Histogram>>>,
    pub reaper: Arc<ReaperStats>,
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

    /// The whole exposition.
    pub async fn render(&self, domain: &Domain) -> String {
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
        for (kind, ks) in
            [("secret", Keyspace::Secret), ("metadata", Keyspace::Metadata), ("request", Keyspace::Request)]
        {
            match domain.store.count(ks).await {
                Ok(n) => {
                    let _ = writeln!(out, "lethe_live_records{{kind=\"{kind}\"}} {n}");
                }
                Err(err) => tracing::warn!(error = %err, "cannot count records for metrics"),
            }
        }

        out.push_str("# HELP lethe_reaper_passes_total Expiry sweep passes.\n# TYPE lethe_reaper_passes_total counter\n");
        let _ = writeln!(out, "lethe_reaper_passes_total {}", self.reaper.passes.load(Ordering::Relaxed));
        out.push_str("# HELP lethe_reaper_removed_total Expired records removed.\n# TYPE lethe_reaper_removed_total counter\n");
        let _ = writeln!(out, "lethe_reaper_removed_total {}", self.reaper.removed.load(Ordering::Relaxed));

        if let Some(commits) = domain.store.blocking().commit_metrics() {
            out.push_str("# HELP lethe_store_commit_batches Conditional batches per durable commit.\n");
            out.push_str("# TYPE lethe_store_commit_batches histogram\n");
            commits.group_size.render(&mut out, "lethe_store_commit_batches", "");
            out.push_str("# HELP lethe_store_commit_seconds Durable commit latency.\n");
            out.push_str("# TYPE lethe_store_commit_seconds histogram\n");
            commits.commit_seconds.render(&mut out, "lethe_store_commit_seconds", "");
        }

        out.push_str("# HELP lethe_bcrypt_queue_depth Passphrase hashes waiting or running.\n");
        out.push_str("# TYPE lethe_bcrypt_queue_depth gauge\n");
        let _ = writeln!(out, "lethe_bcrypt_queue_depth {}", domain.hasher.queue_depth());
        out.push_str("# HELP lethe_passphrase_checks_total Passphrase checks run (bcrypt verifications).\n");
        out.push_str("# TYPE lethe_passphrase_checks_total counter\n");
        let _ = writeln!(out, "lethe_passphrase_checks_total {}", domain.hasher.checks());
        out.push_str(
            "# HELP lethe_audit_dropped_total Audit lines dropped because the output fell behind.\n",
        );
        out.push_str("# TYPE lethe_audit_dropped_total counter\n");
        let _ = writeln!(out, "lethe_audit_dropped_total {}", self.audit_dropped.load(Ordering::Relaxed));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets() {
        let h = Histogram::new(&[1.0, 2.0]);
        h.observe(0.5);
        h.observe(1.5);
        h.observe(9.0);
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert_eq!(
            out,
            "x_bucket{a=\"b\",le=\"1\"} 1\nx_bucket{a=\"b\",le=\"2\"} 2\nx_bucket{a=\"b\",le=\"+Inf\"} 3\n\
             x_sum{a=\"b\"} 11\nx_count{a=\"b\"} 3\n"
        );
        let mut bare = String::new();
        h.render(&mut bare, "y", "");
        assert!(bare.contains("y_bucket{le=\"+Inf\"} 3\ny_sum 11\ny_count 3\n"), "{bare}");
    }
}

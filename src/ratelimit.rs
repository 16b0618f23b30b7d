//! Per-client-IP rate limits, one fixed window per class (creates, reveals, failed passphrases,
//! request submissions), in memory.
//!
//! Limits protect one process; they are not shared across a fleet. The table is bounded: when it grows
//! past [`PRUNE_AT`] entries, windows that have ended are dropped.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::config::RateLimit;
use crate::store::Timestamp;

/// Entries kept before expired windows are pruned.
const PRUNE_AT: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Creates,
    Reveals,
    FailedPassphrases,
    Submissions,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Timestamp,
    count: u32,
}

pub struct RateLimiter {
    rules: RateLimit,
    /// Guards the per-(class, IP) windows; held only for a map lookup.
    windows: Mutex<HashMap<(Class, IpAddr), Window>>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter").field("rules", &self.rules).finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(rules: RateLimit) -> RateLimiter {
        RateLimiter { rules, windows: Mutex::new(HashMap::new()) }
    }

    fn limit(&self, class: Class) -> u32 {
        match class {
            Class::Creates => self.rules.creates,
            Class::Reveals => self.rules.reveals,
            Class::FailedPassphrases => self.rules.failed_passphrases,
            Class::Submissions => self.rules.submissions,
        }
    }

    /// Counts one event and refuses it when the window is full: `Err(seconds until the window ends)`.
    pub fn hit(&self, class: Class, ip: IpAddr, now: Timestamp) -> Result<(), u64> {
        self.check(class, ip, now, true)
    }

    /// Refuses when the window is already full, without counting (for classes counted on failure).
    pub fn peek(&self, class: Class, ip: IpAddr, now: Timestamp) -> Result<(), u64> {
        self.check(class, ip, now, false)
    }

    fn check(&self, class: Class, ip: IpAddr, now: Timestamp, count: bool) -> Result<(), u64> {
        if !self.rules.enabled {
            return Ok(());
        }
        let span = self.rules.window_seconds;
        let limit = self.limit(class);
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= PRUNE_AT {
            windows.retain(|_, w| now < w.start + span);
        }
        let window = windows.entry((class, ip)).or_insert(Window { start: now, count: 0 });
        if now >= window.start + span {
            *window = Window { start: now, count: 0 };
        }
        if window.count >= limit {
            return Err((window.start + span).saturating_sub(now).max(1));
        }
        if count {
            window.count += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(enabled: bool) -> RateLimiter {
        RateLimiter::new(RateLimit {
            enabled,
            creates: 2,
            failed_passphrases: 1,
            window_seconds: 60,
            ..RateLimit::default()
        })
    }

    #[test]
    fn a_full_window_refuses_until_it_ends_per_ip_and_class() {
        let l = limiter(true);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(l.hit(Class::Creates, a, 100), Ok(()));
        assert_eq!(l.hit(Class::Creates, a, 110), Ok(()));
        assert_eq!(l.hit(Class::Creates, a, 120), Err(40));
        assert_eq!(l.hit(Class::Creates, b, 120), Ok(()));
        assert_eq!(l.hit(Class::Reveals, a, 120), Ok(()));
        assert_eq!(l.hit(Class::Creates, a, 160), Ok(()));
    }

    #[test]
    fn peek_does_not_count_and_disabled_limits_never_refuse() {
        let l = limiter(true);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(l.peek(Class::FailedPassphrases, a, 0), Ok(()));
        assert_eq!(l.peek(Class::FailedPassphrases, a, 0), Ok(()));
        assert_eq!(l.hit(Class::FailedPassphrases, a, 0), Ok(()));
        assert_eq!(l.peek(Class::FailedPassphrases, a, 0), Err(60));
        let off = limiter(false);
        for _ in 0..10 {
            assert_eq!(off.hit(Class::Creates, a, 0), Ok(()));
        }
    }
}

//! Per-client rate limits: one fixed window per class (creates, reveals, failed passphrases, request
//! submissions, failed API tokens) and client network, in memory.
//!
//! Limits protect one process; they are not shared across a fleet. Clients are grouped by network
//! (`rate_limit.ipv4_prefix`, `rate_limit.ipv6_prefix`; /32 and /64 by default), because one IPv6
//! host is routinely handed a whole /64 and could otherwise mint a fresh budget per address.
//!
//! The table is bounded by `rate_limit.max_entries` and pruned incrementally: every window lasts the
//! same span, so windows queued in the order they started are also queued in the order they end, and
//! each check drops at most [`PRUNE_PER_CHECK`] ended windows from the head. No check ever scans the
//! table. When the table is full of live windows, a network without a window of its own shares one
//! overflow window per class and address family (`0.0.0.0/0`, `::/0`) with every other such network:
//! a flood of fresh addresses is limited as if it were one client, and clients that already have a
//! window keep it. Refusing every newcomer would let the flood lock everyone out; admitting them
//! unlimited would let it through.
//!
//! Refusals are counted per window so the audit trail can summarise them: the first refusal of a
//! window is reported at once (by the caller, from [`Refused::first`]), the rest as one
//! [`Summary`] when the window ends.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::clock::Timestamp;
use crate::config::RateLimit;

/// Ended windows dropped per check at most: more than one window can start per check, so the queue
/// drains faster than it fills, and a check never does more than this much pruning work.
const PRUNE_PER_CHECK: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Creates,
    Reveals,
    FailedPassphrases,
    Submissions,
    /// Wrong API tokens (HTTP Basic with a known or unknown account name).
    FailedTokens,
    /// Team login POSTs (GPGAuth stages 0–2) per client network.
    TeamLogins,
    /// Team login POSTs per key fingerprint, wherever they come from (counted by [`RateLimiter::hit_key`]).
    TeamLoginsPerKey,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Creates => "creates",
            Class::Reveals => "reveals",
            Class::FailedPassphrases => "failed_passphrases",
            Class::Submissions => "submissions",
            Class::FailedTokens => "failed_tokens",
            Class::TeamLogins => "team_logins",
            Class::TeamLoginsPerKey => "team_logins_per_key",
        }
    }
}

/// A client network: an address with its host bits cleared, and the prefix length kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// `ip` with everything past `prefix` bits cleared.
    pub fn of(ip: IpAddr, prefix: u8) -> Net {
        match ip {
            IpAddr::V4(v4) => {
                let prefix = prefix.min(32);
                let mask = u32::MAX.checked_shl(u32::from(32 - prefix)).unwrap_or(0);
                Net { addr: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask)), prefix }
            }
            IpAddr::V6(v6) => {
                let prefix = prefix.min(128);
                let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
                Net { addr: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)), prefix }
            }
        }
    }

    /// The overflow network of `ip`'s family.
    fn everything(ip: IpAddr) -> Net {
        Net::of(ip, 0)
    }
}

impl fmt::Display for Net {
    /// A full-length prefix prints as the bare address, so a /32 client reads like an address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == full {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// A refused event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Seconds until the window ends.
    pub retry_after: u64,
    /// The first refusal of its window: the one the caller reports at once.
    pub first: bool,
    /// Whose window refused it.
    pub net: Net,
}

/// Refusals of one ended window that were not reported one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub class: Class,
    pub net: Net,
    /// Refusals after the first (which was reported when it happened).
    pub further: u32,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Timestamp,
    count: u32,
    refused: u32,
}

type Key = (Class, Net);

#[derive(Default)]
struct Table {
    windows: HashMap<Key, Window>,
    /// Window starts in the order they began; an item whose key has since started a new window is
    /// stale and skipped when it reaches the head.
    started: VecDeque<(Timestamp, Key)>,
    /// Summaries of ended windows, until the caller takes them.
    summaries: Vec<Summary>,
}

impl Table {
    fn end(&mut self, key: Key, window: Window) {
        if window.refused > 1 {
            self.summaries.push(Summary { class: key.0, net: key.1, further: window.refused - 1 });
        }
    }

    /// Drops at most [`PRUNE_PER_CHECK`] ended windows from the head of the queue.
    fn prune(&mut self, now: Timestamp, span: u64) {
        for _ in 0..PRUNE_PER_CHECK {
            let Some(&(start, key)) = self.started.front() else { return };
            if now < start.saturating_add(span) {
                return;
            }
            self.started.pop_front();
            if let Some(window) = self.windows.get(&key).copied()
                && window.start == start
            {
                self.windows.remove(&key);
                self.end(key, window);
            }
        }
    }
}

pub struct RateLimiter {
    rules: RateLimit,
    /// The windows, their start queue and pending summaries; every operation under it is O(1)
    /// amortised, so the lock is held briefly whatever the table's size.
    table: Mutex<Table>,
    /// Set while summaries wait, so callers skip the lock when there are none.
    summaries_waiting: AtomicBool,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter").field("rules", &self.rules).finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(rules: RateLimit) -> RateLimiter {
        RateLimiter { rules, table: Mutex::default(), summaries_waiting: AtomicBool::new(false) }
    }

    fn limit(&self, class: Class) -> u32 {
        match class {
            Class::Creates => self.rules.creates,
            Class::Reveals => self.rules.reveals,
            Class::FailedPassphrases => self.rules.failed_passphrases,
            Class::Submissions => self.rules.submissions,
            Class::FailedTokens => self.rules.failed_tokens,
            Class::TeamLogins => self.rules.team_logins,
            Class::TeamLoginsPerKey => self.rules.team_logins_per_key,
        }
    }

    /// The network `ip` is limited as.
    pub fn net(&self, ip: IpAddr) -> Net {
        let prefix = if ip.is_ipv4() { self.rules.ipv4_prefix } else { self.rules.ipv6_prefix };
        Net::of(ip, prefix)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one event and refuses it when the window is full.
    pub fn hit(&self, class: Class, ip: IpAddr, now: Timestamp) -> Result<(), Refused> {
        self.hit_net(class, self.net(ip), now)
    }

    /// Counts one event for something that is not an address — a 16-byte keyed hash of it (a login's
    /// key fingerprint) — in the same bounded table; its window prints as that hash read as an IPv6
    /// address, so the audit trail never shows what was hashed.
    pub fn hit_key(&self, class: Class, hashed: [u8; 16], now: Timestamp) -> Result<(), Refused> {
        self.hit_net(class, Net { addr: IpAddr::V6(Ipv6Addr::from(hashed)), prefix: 128 }, now)
    }

    fn hit_net(&self, class: Class, net: Net, now: Timestamp) -> Result<(), Refused> {
        if !self.rules.enabled {
            return Ok(());
        }
        let span = self.rules.window_seconds;
        let limit = self.limit(class);
        let mut table = self.lock();
        table.prune(now, span);
        let own = (class, net);
        let key = if table.windows.contains_key(&own) || table.windows.len() < self.rules.max_entries {
            own
        } else {
            (class, Net::everything(net.addr))
        };
        let ended = match table.windows.get(&key) {
            Some(w) if now < w.start.saturating_add(span) => None,
            Some(w) => Some(*w),
            None => {
                table.windows.insert(key, Window { start: now, count: 0, refused: 0 });
                table.started.push_back((now, key));
                None
            }
        };
        if let Some(old) = ended {
            table.end(key, old);
            table.windows.insert(key, Window { start: now, count: 0, refused: 0 });
            table.started.push_back((now, key));
        }
        if !table.summaries.is_empty() {
            self.summaries_waiting.store(true, Ordering::Release);
        }
        let Some(window) = table.windows.get_mut(&key) else { return Ok(()) };
        if window.count >= limit {
            window.refused = window.refused.saturating_add(1);
            let retry_after = window.start.saturating_add(span).saturating_sub(now).max(1);
            return Err(Refused { retry_after, first: window.refused == 1, net: key.1 });
        }
        window.count += 1;
        Ok(())
    }

    /// Gives back one event counted by [`RateLimiter::hit`] in the window that is still running
    /// (for classes reserved before a check and released when the check passed or never ran).
    pub fn release(&self, class: Class, ip: IpAddr, now: Timestamp) {
        if !self.rules.enabled {
            return;
        }
        let span = self.rules.window_seconds;
        let mut table = self.lock();
        for key in [(class, self.net(ip)), (class, Net::everything(ip))] {
            if let Some(window) = table.windows.get_mut(&key)
                && now < window.start.saturating_add(span)
                && window.count > 0
            {
                window.count -= 1;
                return;
            }
        }
    }

    /// Summaries of windows that ended since the last call.
    pub fn take_summaries(&self) -> Vec<Summary> {
        if !self.summaries_waiting.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut self.lock().summaries)
    }

    /// Ends every window (at shutdown), so refusals not yet summarised are.
    pub fn end_all(&self) -> Vec<Summary> {
        let mut table = self.lock();
        let windows: Vec<_> = table.windows.drain().collect();
        table.started.clear();
        for (key, window) in windows {
            table.end(key, window);
        }
        self.summaries_waiting.store(false, Ordering::Release);
        std::mem::take(&mut table.summaries)
    }

    /// Windows held, overflow windows included.
    pub fn len(&self) -> usize {
        self.lock().windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_full_window_refuses_until_it_ends_per_ip_and_class() {
        let l = limiter(true);
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        assert_eq!(l.hit(Class::Creates, a, 100), Ok(()));
        assert_eq!(l.hit(Class::Creates, a, 110), Ok(()));
        let refused = l.hit(Class::Creates, a, 120).unwrap_err();
        assert_eq!((refused.retry_after, refused.first), (40, true));
        assert!(!l.hit(Class::Creates, a, 121).unwrap_err().first);
        assert_eq!(l.hit(Class::Creates, b, 120), Ok(()));
        assert_eq!(l.hit(Class::Reveals, a, 120), Ok(()));
        assert_eq!(l.hit(Class::Creates, a, 160), Ok(()));
    }

    #[test]
    fn release_gives_back_and_disabled_limits_never_refuse() {
        let l = limiter(true);
        let a = ip("192.0.2.1");
        assert_eq!(l.hit(Class::FailedPassphrases, a, 0), Ok(()));
        l.release(Class::FailedPassphrases, a, 1);
        assert_eq!(l.hit(Class::FailedPassphrases, a, 2), Ok(()));
        assert_eq!(l.hit(Class::FailedPassphrases, a, 3).unwrap_err().retry_after, 57);
        let off = limiter(false);
        for _ in 0..10 {
            assert_eq!(off.hit(Class::Creates, a, 0), Ok(()));
        }
    }

    #[test]
    fn clients_are_grouped_by_prefix() {
        let l = limiter(true);
        // Two hosts of one /64 share a window; another /64 has its own.
        assert_eq!(l.hit(Class::Creates, ip("2001:db8:1:2::1"), 0), Ok(()));
        assert_eq!(l.hit(Class::Creates, ip("2001:db8:1:2:ffff::9"), 0), Ok(()));
        let refused = l.hit(Class::Creates, ip("2001:db8:1:2::3"), 0).unwrap_err();
        assert_eq!(refused.net.to_string(), "2001:db8:1:2::/64");
        assert_eq!(l.hit(Class::Creates, ip("2001:db8:1:3::1"), 0), Ok(()));
        // IPv4 is per address by default.
        assert_eq!(l.hit(Class::Creates, ip("192.0.2.1"), 0), Ok(()));
        assert_eq!(l.hit(Class::Creates, ip("192.0.2.1"), 0), Ok(()));
        assert_eq!(l.hit(Class::Creates, ip("192.0.2.2"), 0), Ok(()));
        assert_eq!(l.hit(Class::Creates, ip("192.0.2.1"), 0).unwrap_err().net.to_string(), "192.0.2.1");

        let wide = RateLimiter::new(RateLimit {
            creates: 1,
            ipv4_prefix: 24,
            ipv6_prefix: 48,
            ..RateLimit::default()
        });
        assert_eq!(wide.hit(Class::Creates, ip("198.51.100.7"), 0), Ok(()));
        assert_eq!(
            wide.hit(Class::Creates, ip("198.51.100.200"), 0).unwrap_err().net.to_string(),
            "198.51.100.0/24"
        );
        assert_eq!(wide.hit(Class::Creates, ip("2001:db8:1:2::1"), 0), Ok(()));
        assert_eq!(
            wide.hit(Class::Creates, ip("2001:db8:1:9::1"), 0).unwrap_err().net.to_string(),
            "2001:db8:1::/48"
        );
        assert_eq!(Net::of(ip("10.1.2.3"), 0).to_string(), "0.0.0.0/0");
        assert_eq!(Net::of(ip("10.1.2.3"), 33).to_string(), "10.1.2.3");
    }

    #[test]
    fn the_table_stays_bounded_under_a_flood_of_distinct_addresses() {
        let max = 1_000;
        let l = RateLimiter::new(RateLimit {
            creates: 3,
            window_seconds: 60,
            max_entries: max,
            ..RateLimit::default()
        });
        let early = ip("203.0.113.1");
        assert_eq!(l.hit(Class::Creates, early, 0), Ok(()));
        for i in 0..100_000u32 {
            let flood = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.hit(Class::Creates, flood, 1);
            assert!(l.len() <= max + 1, "{} windows after {i} addresses", l.len());
        }
        // The flood shares one overflow window, which is full: newcomers are limited together...
        let newcomer = l.hit(Class::Creates, ip("198.51.100.1"), 2).unwrap_err();
        assert_eq!(newcomer.net.to_string(), "0.0.0.0/0");
        // ...while a client that had a window before the flood keeps its own budget.
        assert_eq!(l.hit(Class::Creates, early, 2), Ok(()));
        // Once the windows end, checks prune them a few at a time and newcomers get their own again.
        for _ in 0..200 {
            assert_eq!(l.hit(Class::Reveals, early, 61), Ok(()));
        }
        assert_eq!(l.len(), 1);
        assert_eq!(l.hit(Class::Creates, ip("198.51.100.1"), 62), Ok(()));
        assert_eq!(l.len(), 2);
        assert!(l.take_summaries().iter().any(|s| s.net.to_string() == "0.0.0.0/0" && s.further > 90_000));
    }

    #[test]
    fn refusals_beyond_the_first_are_summarised_when_the_window_ends() {
        let l = limiter(true);
        let a = ip("192.0.2.1");
        for _ in 0..2 {
            assert_eq!(l.hit(Class::Creates, a, 0), Ok(()));
        }
        let firsts = (0..10).filter(|_| l.hit(Class::Creates, a, 1).unwrap_err().first).count();
        assert_eq!(firsts, 1);
        assert!(l.take_summaries().is_empty());
        // The next check after the window ended prunes it.
        assert_eq!(l.hit(Class::Reveals, ip("192.0.2.9"), 60), Ok(()));
        let summaries = l.take_summaries();
        assert_eq!(summaries, vec![Summary { class: Class::Creates, net: l.net(a), further: 9 }]);
        assert!(l.take_summaries().is_empty());
        // A window still running at shutdown is summarised too.
        assert_eq!(l.hit(Class::FailedPassphrases, a, 70), Ok(()));
        for _ in 0..3 {
            let _ = l.hit(Class::FailedPassphrases, a, 70);
        }
        assert_eq!(l.end_all(), vec![Summary { class: Class::FailedPassphrases, net: l.net(a), further: 2 }]);
        assert!(l.is_empty());
    }
}

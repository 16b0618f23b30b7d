//! The client's IP address for audit and rate limits. `X-Forwarded-For` is believed only when the
//! connection comes from a configured trusted proxy; otherwise anyone could claim any address.

use std::net::IpAddr;

use hyper::header::HeaderMap;

/// A parsed `trusted_proxies` list of addresses and CIDR ranges.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Parses `1.2.3.4`, `10.0.0.0/8`, `::1`, `fd00::/8`. Entries that do not parse are reported.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        let mut nets = Vec::with_capacity(entries.len());
        for entry in entries {
            let (ip, len) = entry.split_once('/').unwrap_or((entry, ""));
            let ip: IpAddr =
                ip.trim().parse().map_err(|_| format!("{entry:?} is not an IP address or CIDR"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = if len.is_empty() {
                max
            } else {
                len.trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| format!("{entry:?} has a bad prefix length"))?
            };
            nets.push((ip, len));
        }
        Ok(TrustedProxies { nets })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|&(net, len)| match (canonical(net), ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), len),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), len),
            _ => false,
        })
    }

    /// The client address. `X-Forwarded-For` is walked from the right, starting at the peer: while the
    /// hop in hand is a trusted proxy, the entry to its left is the address that proxy saw, and the
    /// first address that is not a trusted proxy is the client. An entry that does not parse (or a
    /// header that is not text) ends the walk: nothing left of it was vouched for by a trusted hop, so
    /// the last address that was is the client. When every entry is trusted, the leftmost is.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.contains(client) {
            return client;
        }
        let values: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
        for value in values.iter().rev() {
            let Ok(value) = value.to_str() else { return client };
            for entry in value.rsplit(',').map(str::trim) {
                // Empty list elements are allowed by HTTP's list syntax and carry nothing.
                if entry.is_empty() {
                    continue;
                }
                let Some(ip) = parse_entry(entry) else { return client };
                client = ip;
                if !self.contains(ip) {
                    return client;
                }
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:5678`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = entry.parse::<std::net::SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    let bracketed = entry.strip_prefix('[')?.strip_suffix(']')?;
    bracketed.parse::<std::net::Ipv6Addr>().ok().map(|v6| canonical(IpAddr::V6(v6)))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) are the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], len: u8) -> bool {
    let (full, rest) = (usize::from(len / 8), len % 8);
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        let h = headers("203.0.113.9, 10.1.2.3");
        assert_eq!(t.client_ip("10.9.9.9".parse().unwrap(), &h), "203.0.113.9".parse::<IpAddr>().unwrap());
        assert_eq!(t.client_ip("192.0.2.1".parse().unwrap(), &h), "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            t.client_ip("::1".parse().unwrap(), &headers("2001:db8::5")),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            t.client_ip("10.0.0.1".parse().unwrap(), &HeaderMap::new()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            t.client_ip("::ffff:192.0.2.7".parse().unwrap(), &h),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
    }

    fn walk(trusted: &[&str], peer: &str, xff: &[&str]) -> String {
        let t = TrustedProxies::parse(&trusted.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let mut h = HeaderMap::new();
        for value in xff {
            h.append("x-forwarded-for", value.parse().unwrap());
        }
        t.client_ip(peer.parse().unwrap(), &h).to_string()
    }

    #[test]
    fn forwarded_for_is_walked_from_the_right_past_trusted_hops_only() {
        let proxies = ["10.0.0.0/8", "2001:db8:ffff::/48"];
        // The client-written entries left of the first untrusted address are never believed.
        assert_eq!(walk(&proxies, "10.0.0.1", &["6.6.6.6, 203.0.113.9, 10.2.2.2"]), "203.0.113.9");
        // Across repeated headers, the last header holds the rightmost entries.
        assert_eq!(walk(&proxies, "10.0.0.1", &["6.6.6.6, 203.0.113.9", "10.2.2.2"]), "203.0.113.9");
        assert_eq!(walk(&proxies, "10.0.0.1", &["203.0.113.9", "6.6.6.6"]), "6.6.6.6");
        // Empty list elements are skipped.
        assert_eq!(walk(&proxies, "10.0.0.1", &["203.0.113.9, ,10.2.2.2,"]), "203.0.113.9");
    }

    #[test]
    fn forwarded_for_entries_may_carry_ports() {
        let proxies = ["10.0.0.0/8", "2001:db8:ffff::/48"];
        assert_eq!(walk(&proxies, "10.0.0.1", &["203.0.113.9:4711"]), "203.0.113.9");
        assert_eq!(walk(&proxies, "10.0.0.1", &["[2001:db8::5]:443"]), "2001:db8::5");
        assert_eq!(walk(&proxies, "10.0.0.1", &["[2001:db8::5]"]), "2001:db8::5");
        assert_eq!(walk(&proxies, "10.0.0.1", &["6.6.6.6, 2001:db8::7, 10.3.3.3:80"]), "2001:db8::7");
        assert_eq!(walk(&proxies, "10.0.0.1", &["198.51.100.4, [2001:db8:ffff::1]:8443"]), "198.51.100.4");
        assert_eq!(walk(&proxies, "10.0.0.1", &["[::ffff:192.0.2.7]:1"]), "192.0.2.7");
    }

    #[test]
    fn an_unparsable_entry_ends_the_walk_at_the_last_trusted_hop() {
        let proxies = ["10.0.0.0/8"];
        // Today's trap: skipping the garbage would believe the client-written 6.6.6.6.
        assert_eq!(walk(&proxies, "10.0.0.1", &["6.6.6.6, garbage"]), "10.0.0.1");
        assert_eq!(walk(&proxies, "10.0.0.1", &["6.6.6.6, unknown, 10.4.4.4"]), "10.4.4.4");
        assert_eq!(walk(&proxies, "10.0.0.1", &["6.6.6.6, 1.2.3.4:notaport"]), "10.0.0.1");
        assert_eq!(walk(&proxies, "10.0.0.1", &["6.6.6.6, [2001:db8::1"]), "10.0.0.1");
        assert_eq!(walk(&proxies, "10.0.0.1", &["6.6.6.6, 300.1.1.1"]), "10.0.0.1");
        assert_eq!(walk(&proxies, "10.0.0.1", &["6.6.6.6", "x"]), "10.0.0.1");
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.append("x-forwarded-for", HeaderValue::from_bytes(b"\xff10.9.9.9").unwrap());
        let t = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        assert_eq!(t.client_ip("10.0.0.1".parse().unwrap(), &h), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn an_all_trusted_chain_gives_its_leftmost_address() {
        let proxies = ["10.0.0.0/8"];
        assert_eq!(walk(&proxies, "10.0.0.1", &["10.7.7.7, 10.8.8.8"]), "10.7.7.7");
        assert_eq!(walk(&proxies, "10.0.0.1", &[]), "10.0.0.1");
        // An untrusted peer's header is ignored entirely.
        assert_eq!(walk(&proxies, "192.0.2.1", &["203.0.113.9"]), "192.0.2.1");
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(TrustedProxies::parse(&["nope".into()]).is_err());
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(
            TrustedProxies::parse(&["10.0.0.0/12".into()])
                .unwrap()
                .contains("10.15.255.255".parse().unwrap())
        );
        assert!(
            !TrustedProxies::parse(&["10.0.0.0/12".into()]).unwrap().contains("10.16.0.0".parse().unwrap())
        );
    }
}

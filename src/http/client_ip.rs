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

    /// The client address: the peer, or, when the peer is a trusted proxy, the rightmost address in
    /// `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return canonical(peer);
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|part| part.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        forwarded
            .iter()
            .rev()
            .copied()
            .map(canonical)
            .find(|ip| !self.contains(*ip))
            .unwrap_or(canonical(peer))
    }
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

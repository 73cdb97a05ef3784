//! Source-address allowlist. Behind a load balancer the peer is the balancer, so when the
//! peer is a trusted proxy the client is the right-most `X-Forwarded-For` entry that is not
//! itself a trusted proxy (entries further left can be forged by the client).

use std::net::IpAddr;

use hyper::HeaderMap;
use ipnet::IpNet;

/// Who may send webhooks.
#[derive(Debug, Clone, Default)]
pub struct Access {
    allow: Vec<IpNet>,
    proxies: Vec<IpNet>,
}

impl Access {
    pub fn new(allow: &[IpNet], proxies: &[IpNet]) -> Self {
        Self {
            allow: allow.to_vec(),
            proxies: proxies.to_vec(),
        }
    }

    /// True when no allowlist is set: every source is accepted.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty()
    }

    /// The client address: the peer, or behind trusted proxies the right-most untrusted
    /// `X-Forwarded-For` hop. `None` when the peer is a trusted proxy and the chain cannot
    /// be read up to such a hop (header missing, not text, or a hop that is not an
    /// address): falling back to the proxy's own address would let anything through it
    /// that the proxy itself may send.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        if !self.trusted(peer) {
            return Some(peer);
        }
        let chain = headers.get_all("x-forwarded-for");
        // Every line must be text, even those left of the client (as the chain is read
        // whole); then hops are walked from the right without collecting them.
        if !chain.iter().all(|v| v.to_str().is_ok()) {
            return None;
        }
        let mut origin = None;
        let hops = chain
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or_default().rsplit(','));
        for hop in hops {
            let ip = hop_address(hop.trim())?;
            if !self.trusted(ip) {
                return Some(ip);
            }
            origin = Some(ip);
        }
        // Every hop a trusted proxy: the request started inside the proxy tier.
        origin
    }

    /// Whether a request from `peer` with these headers may proceed.
    pub fn allows(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        self.admits(self.client(peer, headers))
    }

    /// Whether a request from `client` (as [`Access::client`] found it) may proceed.
    pub fn admits(&self, client: Option<IpAddr>) -> bool {
        self.is_open()
            || client.is_some_and(|ip| self.allow.iter().any(|n| n.contains(&canonical(ip))))
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|n| n.contains(&canonical(ip)))
    }
}

/// One `X-Forwarded-For` hop: an address, optionally with a port as some balancers
/// write it (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn hop_address(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    // A bracketed IPv6 address without a port.
    hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`, as a dual-stack socket reports) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn direct_peers_and_trusted_proxies() {
        let a = Access::new(&nets(&["203.0.113.0/24"]), &nets(&["10.0.0.0/8"]));
        let none = HeaderMap::new();
        assert!(a.allows("203.0.113.9".parse().unwrap(), &none));
        assert!(!a.allows("198.51.100.1".parse().unwrap(), &none));
        assert!(a.allows("::ffff:203.0.113.9".parse().unwrap(), &none));
        // Through a trusted proxy: the right-most untrusted hop counts.
        let lb: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(a.allows(lb, &xff("203.0.113.7")));
        assert!(!a.allows(lb, &xff("198.51.100.1")));
        // A forged left-most entry does not help.
        assert!(!a.allows(lb, &xff("203.0.113.7, 198.51.100.1")));
        assert!(a.allows(lb, &xff("198.51.100.1, 203.0.113.7, 10.0.0.9")));
        // XFF from an untrusted peer is ignored.
        assert!(!a.allows("198.51.100.1".parse().unwrap(), &xff("203.0.113.7")));
        assert!(Access::default().allows("198.51.100.1".parse().unwrap(), &none));
        // Hops written with a port, as some balancers do.
        assert!(a.allows(lb, &xff("203.0.113.7:4711")));
        assert!(!a.allows(lb, &xff("198.51.100.1:4711")));
        assert!(!a.allows(lb, &xff("[2001:db8::1]:4711")));
        // The request started inside the proxy tier: the left-most proxy is the client.
        assert!(!a.allows(lb, &xff("10.0.0.9")));
    }

    /// Through a trusted proxy, a chain that cannot be read is refused rather than
    /// attributed to the proxy, even when the proxy itself is allowed.
    #[test]
    fn unreadable_forwarded_chains_fail_closed() {
        let a = Access::new(
            &nets(&["203.0.113.0/24", "10.0.0.0/8"]),
            &nets(&["10.0.0.0/8"]),
        );
        let lb: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(a.allows(lb, &xff("203.0.113.7")));
        assert!(!a.allows(lb, &HeaderMap::new()), "header missing");
        assert!(
            !a.allows(lb, &xff("unknown, 10.0.0.9")),
            "a hop left of a proxy"
        );
        assert!(
            !a.allows(lb, &xff("198.51.100.7, garbage")),
            "the right-most hop"
        );
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            hyper::header::HeaderValue::from_bytes(b"\xff, 198.51.100.7").unwrap(),
        );
        assert!(!a.allows(lb, &h), "not text");
        // A later header line counts as the chain's end.
        let mut h = xff("198.51.100.7");
        h.append("x-forwarded-for", "203.0.113.7".parse().unwrap());
        assert!(a.allows(lb, &h));
    }
}

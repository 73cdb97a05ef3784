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
    /// `X-Forwarded-For` hop.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.trusted(ip) => continue,
                Ok(ip) => return ip,
                // An unparsable hop ends what we can trust; attribute to the last proxy.
                Err(_) => break,
            }
        }
        peer
    }

    /// Whether a request from `peer` with these headers may proceed.
    pub fn allows(&self, peer: IpAddr, headers: &HeaderMap) -> bool {
        if self.is_open() {
            return true;
        }
        let ip = self.client(peer, headers);
        self.allow.iter().any(|n| n.contains(&canonical(ip)))
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|n| n.contains(&canonical(ip)))
    }
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
    }
}

//! Which addresses deliveries may connect to (the SSRF guard). By default
//! every address that is not on the public internet is refused: loopback,
//! private, link-local (cloud metadata included), CGNAT, multicast,
//! unspecified, and IPv4-mapped or IPv4-compatible forms of those. An
//! allow-list admits ranges (e.g. a test receiver on loopback); a block-list
//! refuses more, and wins over the allow-list.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use super::Invalid;

/// Refused unless allowed.
const DEFAULT_BLOCKED: &[&str] = &[
    "0.0.0.0/8",      // unspecified, "this network"
    "10.0.0.0/8",     // private
    "100.64.0.0/10",  // CGNAT
    "127.0.0.0/8",    // loopback
    "169.254.0.0/16", // link-local, cloud metadata 169.254.169.254
    "172.16.0.0/12",  // private
    "192.0.0.0/24",   // IETF protocol assignments
    "192.168.0.0/16", // private
    "198.18.0.0/15",  // benchmarking
    "224.0.0.0/4",    // multicast
    "240.0.0.0/4",    // reserved, broadcast
    "::/128",         // unspecified
    "::1/128",        // loopback
    "fc00::/7",       // unique local, incl. AWS metadata fd00:ec2::254
    "fe80::/10",      // link-local
    "ff00::/8",       // multicast
    "64:ff9b::/96",   // NAT64 of v4 addresses
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    allowed: Vec<IpNet>,
    blocked: Vec<IpNet>,
    default_blocked: Vec<IpNet>,
}

impl Default for NetworkPolicy {
    fn default() -> Self {
        Self {
            allowed: Vec::new(),
            blocked: Vec::new(),
            default_blocked: DEFAULT_BLOCKED
                .iter()
                .map(|cidr| cidr.parse().expect("constant CIDRs parse"))
                .collect(),
        }
    }
}

impl NetworkPolicy {
    /// `allow` and `block` are CIDRs (`10.1.0.0/16`) or single addresses.
    pub fn new<'a>(
        allow: impl IntoIterator<Item = &'a str>,
        block: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, Invalid> {
        let parse = |raw: &str| -> Result<IpNet, Invalid> {
            let raw = raw.trim();
            raw.parse::<IpNet>()
                .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| Invalid::new(format!("`{raw}` is not a CIDR or an IP address")))
        };
        Ok(Self {
            allowed: allow.into_iter().map(parse).collect::<Result<_, _>>()?,
            blocked: block.into_iter().map(parse).collect::<Result<_, _>>()?,
            ..Self::default()
        })
    }

    /// `Err(reason)` when deliveries must not connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        // An IPv6 address carrying an IPv4 one is judged as that address too.
        let forms: Vec<IpAddr> = match ip {
            IpAddr::V6(v6) => std::iter::once(ip)
                .chain(embedded_v4(v6).map(IpAddr::V4))
                .collect(),
            IpAddr::V4(_) => vec![ip],
        };
        if let Some(net) = forms
            .iter()
            .find_map(|a| self.blocked.iter().find(|n| n.contains(a)))
        {
            return Err(format!("{ip} is in the blocked network {net}"));
        }
        let allowed = |a: &IpAddr| self.allowed.iter().any(|n| n.contains(a));
        for form in &forms {
            if let Some(net) = self.default_blocked.iter().find(|n| n.contains(form))
                && !allowed(form)
                && !allowed(&ip)
            {
                return Err(format!(
                    "{ip} is in {net}, which is not on the public internet; allow it with --allow-network"
                ));
            }
        }
        Ok(())
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`) or
/// IPv4-compatible (`::a.b.c.d`) IPv6 address.
fn embedded_v4(v6: Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let segments = v6.segments();
    (segments[..6] == [0; 6] && v6 != Ipv6Addr::UNSPECIFIED && v6 != Ipv6Addr::LOCALHOST)
        .then(|| v6.to_ipv4().expect("the first 96 bits are zero"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_every_non_public_range_by_default() {
        let policy = NetworkPolicy::default();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(policy.check(ip(refused)).is_err(), "{refused} allowed");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(policy.check(ip(public)).is_ok(), "{public} refused");
        }
    }

    #[test]
    fn the_allow_list_admits_and_the_block_list_wins() {
        let policy =
            NetworkPolicy::new(["127.0.0.0/8", "::1"], ["127.0.0.9", "8.8.8.0/24"]).unwrap();
        assert!(policy.check(ip("127.0.0.1")).is_ok());
        assert!(policy.check(ip("::1")).is_ok());
        assert!(
            policy.check(ip("::ffff:127.0.0.1")).is_ok(),
            "the mapped form of an allowed address"
        );
        assert!(
            policy.check(ip("127.0.0.9")).is_err(),
            "blocked beats allowed"
        );
        assert!(
            policy.check(ip("8.8.8.8")).is_err(),
            "the block-list adds public ranges"
        );
        assert!(
            policy.check(ip("10.0.0.1")).is_err(),
            "other defaults stay blocked"
        );
        assert!(NetworkPolicy::new(["not-a-cidr"], []).is_err());
    }
}

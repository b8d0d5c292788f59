//! Which network addresses a webhook may be delivered to.
//!
//! Deliveries go to the public internet only, unless the operator allows
//! private targets. This list is checked twice: when an endpoint's URL is
//! saved (IP literals and names) and again at connect time on the resolved
//! addresses, which defeats DNS rebinding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// True when `ip` is a routable public address.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, including cloud metadata 169.254.169.254
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24 IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // 198.18/15 benchmarking
        || a >= 240) // 240/4 reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    // ::/96 (IPv4-compatible, with :: and ::1), ::ffff:0:0/96 (IPv4-mapped)
    // and ::ffff:0:0:0/96 (IPv4-translated) name IPv4 hosts through IPv6:
    // never a webhook's public address.
    if seg[..5].iter().all(|s| *s == 0) && (seg[5] == 0 || seg[5] == 0xffff) {
        return false;
    }
    if seg[..4].iter().all(|s| *s == 0) && seg[4] == 0xffff && seg[5] == 0 {
        return false;
    }
    // 64:ff9b:1::/48 local-use NAT64.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1 {
        return false;
    }
    // 2002::/16 6to4 embeds the IPv4 address of its gateway.
    if seg[0] == 0x2002 {
        let v4 = Ipv4Addr::new((seg[1] >> 8) as u8, seg[1] as u8, (seg[2] >> 8) as u8, seg[2] as u8);
        if !is_public_v4(v4) {
            return false;
        }
    }
    // 64:ff9b::/96 NAT64 embeds an IPv4 address.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6].iter().all(|s| *s == 0) {
        let v4 = Ipv4Addr::new((seg[6] >> 8) as u8, seg[6] as u8, (seg[7] >> 8) as u8, seg[7] as u8);
        return is_public_v4(v4);
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (seg[0] & 0xffc0) == 0xfe80 // fe80::/10 link local
        || (seg[0] & 0xffc0) == 0xfec0 // fec0::/10 site local (deprecated)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || (seg[0] == 0x2001 && seg[1] < 0x200) // 2001::/23 IETF assignments (Teredo, ORCHID…)
        || seg[0] == 0x0100 && seg[1..4].iter().all(|s| *s == 0)) // 100::/64 discard
}

/// Host names that are never public, whatever they resolve to.
pub fn is_internal_hostname(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost"
        || h.ends_with(".localhost")
        || h.ends_with(".local")
        || h.ends_with(".internal")
        || h == "metadata"
        || h == "metadata.google.internal"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_private_loopback_link_local_and_metadata() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "224.0.0.1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:8.8.8.8",
            "::ffff:0:7f00:1",
            "2002:7f00:1::1",
            "2002:a00:1::1",
            "2002:a9fe:a9fe::1",
            "64:ff9b:1::808:808",
        ] {
            assert!(!is_public_ip(ip(s)), "{s} should not be public");
        }
    }

    #[test]
    fn accepts_public_addresses() {
        for s in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "2002:808:808::1", "64:ff9b::808:808"] {
            assert!(is_public_ip(ip(s)), "{s} should be public");
        }
    }

    #[test]
    fn internal_host_names() {
        assert!(is_internal_hostname("LOCALHOST."));
        assert!(is_internal_hostname("api.localhost"));
        assert!(is_internal_hostname("metadata.google.internal"));
        assert!(!is_internal_hostname("example.com"));
    }
}

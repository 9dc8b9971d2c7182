//! IPv4 subnets and address allocation. Pure functions; the callers hold the network's lock and
//! pass the addresses in use.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network in CIDR form, normalised to its network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let mask = mask(prefix);
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.addr) & mask(p) == u32::from(other.addr) & mask(p)
    }

    /// The first usable address (`.1` of a /24): the default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(1))
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Subnet, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not in CIDR form: write it as 10.89.0.0/24"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{s:?}: {a:?} is not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to 32"))?;
        Ok(Subnet::new(addr, prefix))
    }
}

/// An address with its prefix (`10.88.0.1/16`, as `bip` is written).
pub fn parse_cidr_addr(s: &str) -> Result<(Ipv4Addr, Subnet), String> {
    let net: Subnet = s.parse()?;
    let ip: Ipv4Addr = s
        .split_once('/')
        .map(|(a, _)| a)
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address with a prefix length"))?;
    Ok((ip, net))
}

/// The next free address of `range` (within `subnet`), skipping the network and broadcast
/// addresses, the gateway and those in `used`. Allocation starts after `after` (the last address
/// handed out) and wraps, so a released address is not reused at once, as Docker's IPAM does.
pub fn allocate(
    subnet: &Subnet,
    range: &Subnet,
    gateway: Ipv4Addr,
    used: &BTreeSet<Ipv4Addr>,
    after: Option<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let lo = u32::from(range.addr).max(u32::from(subnet.addr));
    let hi = u32::from(range.broadcast()).min(u32::from(subnet.broadcast()));
    if hi < lo {
        return None;
    }
    let usable = |v: u32| {
        let ip = Ipv4Addr::from(v);
        (subnet.prefix >= 31 || (ip != subnet.addr && ip != subnet.broadcast()))
            && ip != gateway
            && !used.contains(&ip)
    };
    let start = after
        .map(u32::from)
        .filter(|a| (lo..=hi).contains(a))
        .map(|a| if a == hi { lo } else { a + 1 })
        .unwrap_or(lo);
    (start..=hi)
        .chain(lo..start)
        .find(|v| usable(*v))
        .map(Ipv4Addr::from)
}

/// The IPv4 routes of the host's main table (`/proc/net/route`), except the default route:
/// what a new network must not overlap.
pub fn host_routes() -> Vec<(String, Subnet)> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let dest = u32::from_str_radix(f[1], 16).ok()?;
            let m = u32::from_str_radix(f[7], 16).ok()?;
            // Little-endian hex of the network-order bytes.
            let dest = Ipv4Addr::from(dest.swap_bytes());
            let m = m.swap_bytes();
            if m == 0 {
                return None;
            }
            Some((f[0].to_string(), Subnet::new(dest, m.count_ones() as u8)))
        })
        .collect()
}

/// A MAC address derived from the IP, as Docker does (02:42 followed by the four address bytes).
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let bad = || format!("invalid MAC address {s:?}: write six hex bytes as 02:42:ac:11:00:02");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        m[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if m[0] & 1 == 1 {
        return Err(format!(
            "invalid MAC address {s:?}: it is a multicast address"
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_normalise() {
        let s: Subnet = "10.88.7.9/16".parse().unwrap();
        assert_eq!(s.to_string(), "10.88.0.0/16");
        assert_eq!(s.first_host(), Ipv4Addr::new(10, 88, 0, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(10, 88, 255, 255));
        assert!(s.contains(Ipv4Addr::new(10, 88, 200, 1)));
        assert!(!s.contains(Ipv4Addr::new(10, 89, 0, 1)));
        assert!("10.88.0.0".parse::<Subnet>().is_err());
        assert!("10.88.0.0/33".parse::<Subnet>().is_err());
        assert!("10.888.0.0/16".parse::<Subnet>().is_err());
        let a: Subnet = "10.88.0.0/16".parse().unwrap();
        let b: Subnet = "10.88.5.0/24".parse().unwrap();
        let c: Subnet = "10.89.0.0/24".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
    }

    #[test]
    fn allocation_skips_reserved_and_used_and_round_robins() {
        let s: Subnet = "10.0.0.0/29".parse().unwrap();
        let gw = s.first_host();
        let mut used = BTreeSet::new();
        let a = allocate(&s, &s, gw, &used, None).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 0, 0, 2));
        used.insert(a);
        let b = allocate(&s, &s, gw, &used, Some(a)).unwrap();
        assert_eq!(b, Ipv4Addr::new(10, 0, 0, 3));
        // Released `a` is not reused while later addresses are free.
        used.remove(&a);
        used.insert(b);
        let c = allocate(&s, &s, gw, &used, Some(b)).unwrap();
        assert_eq!(c, Ipv4Addr::new(10, 0, 0, 4));
        for i in 2..=6 {
            used.insert(Ipv4Addr::new(10, 0, 0, i));
        }
        assert_eq!(allocate(&s, &s, gw, &used, Some(c)), None);
        // A fixed range inside the subnet.
        let big: Subnet = "10.1.0.0/16".parse().unwrap();
        let r: Subnet = "10.1.5.0/24".parse().unwrap();
        let ip = allocate(&big, &r, big.first_host(), &BTreeSet::new(), None).unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 1, 5, 0));
    }

    #[test]
    fn macs() {
        let m = mac_for(Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(format_mac(&m), "02:42:0a:58:00:02");
        assert_eq!(parse_mac("02:42:0a:58:00:02").unwrap(), m);
        assert!(parse_mac("01:00:00:00:00:00").is_err());
        assert!(parse_mac("zz:00:00:00:00:00").is_err());
        assert!(parse_mac("02:42").is_err());
    }
}

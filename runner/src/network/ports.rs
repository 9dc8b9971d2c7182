//! Published ports: `-p` parsing into Docker's `PortBindings`, and at start the host side: each
//! binding's host port is reserved by a bound (not listening) socket the supervisor holds for
//! the container's life, so two containers (or a host service) can never get the same port and
//! a random port is the kernel's choice; the traffic itself goes through nftables DNAT.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;

use crate::error::{Result, RunnerError};
use crate::state::{PortBinding, Published};

/// A container port key as Docker writes it: "80/tcp".
pub fn port_key(port: u16, proto: &str) -> String {
    format!("{port}/{proto}")
}

/// Parse "80", "80/udp" into (port, proto).
pub fn parse_port_key(s: &str) -> Result<(u16, String)> {
    let (p, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(RunnerError::invalid(
            "port",
            format!("{s:?}: the protocol must be tcp, udp or sctp"),
        ));
    }
    let port = parse_port(p).map_err(|m| RunnerError::invalid("port", format!("{s:?}: {m}")))?;
    Ok((port, proto))
}

fn parse_port(p: &str) -> std::result::Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{p:?} is not a port number (1-65535)"))
}

fn parse_range(p: &str) -> std::result::Result<(u16, u16), String> {
    match p.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_port(a)?, parse_port(b)?);
            if b < a {
                return Err(format!("invalid range {p:?}: the end is before the start"));
            }
            Ok((a, b))
        }
        None => {
            let a = parse_port(p)?;
            Ok((a, a))
        }
    }
}

/// One `-p` value: `[IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTO]`, expanded into
/// (container port key, binding) pairs as Docker's `nat.ParsePortSpec`.
pub fn parse_publish(spec: &str) -> Result<Vec<(String, PortBinding)>> {
    let bad = |m: String| RunnerError::invalid("port specification", format!("{spec:?}: {m}"));
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad(format!(
            "unknown protocol {proto:?}: use tcp, udp or sctp"
        )));
    }
    // An IPv6 address is bracketed: [::1]:80:80.
    let (ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, r) = r
            .split_once("]:")
            .ok_or_else(|| bad("an unterminated [IPv6] address".into()))?;
        (ip.to_string(), r.to_string())
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 => (String::new(), parts[0].to_string()),
            2 => (String::new(), rest.to_string()),
            3 => (parts[0].to_string(), format!("{}:{}", parts[1], parts[2])),
            _ => return Err(bad("too many ':' (use IP:HOST_PORT:CONTAINER_PORT)".into())),
        }
    };
    if !ip.is_empty() {
        match ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => {}
            Ok(std::net::IpAddr::V6(_)) => {
                return Err(RunnerError::Unsupported(format!(
                    "publishing on an IPv6 address ({spec:?}) is not supported: berth's networks are IPv4"
                )));
            }
            Err(_) => return Err(bad(format!("{ip:?} is not an IP address"))),
        }
    }
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", rest.as_str()),
    };
    if container.is_empty() {
        return Err(bad("no container port".into()));
    }
    let (cs, ce) = parse_range(container).map_err(bad)?;
    // Host port 0 means any free port, as an empty one.
    let host_range = if host.is_empty() || host == "0" {
        None
    } else {
        Some(parse_range(host).map_err(bad)?)
    };
    let mut out = Vec::new();
    let count = u32::from(ce - cs) + 1;
    match host_range {
        Some((hs, he)) if u32::from(he - hs) + 1 != count && count > 1 => {
            return Err(bad(format!(
                "the host range {hs}-{he} and the container range {cs}-{ce} differ in size"
            )));
        }
        Some((hs, he)) if count == 1 && hs != he => {
            // One container port on any free port of a host range.
            out.push((
                port_key(cs, &proto),
                PortBinding {
                    host_ip: ip.clone(),
                    host_port: format!("{hs}-{he}"),
                },
            ));
        }
        _ => {
            for i in 0..count {
                let cp = cs + i as u16;
                let hp = host_range.map(|(hs, _)| (hs + i as u16).to_string());
                out.push((
                    port_key(cp, &proto),
                    PortBinding {
                        host_ip: ip.clone(),
                        host_port: hp.unwrap_or_default(),
                    },
                ));
            }
        }
    }
    Ok(out)
}

/// The host ports a running container holds.
pub struct Reservation {
    _sockets: Vec<OwnedFd>,
    /// (container port, proto, host ip, host port), in the order asked.
    pub chosen: Vec<(u16, String, Ipv4Addr, u16)>,
}

impl Reservation {
    pub fn empty() -> Reservation {
        Reservation {
            _sockets: Vec::new(),
            chosen: Vec::new(),
        }
    }

    /// "80/tcp" -> the bindings chosen (what `inspect` shows under NetworkSettings.Ports).
    pub fn ports(&self) -> BTreeMap<String, Vec<PortBinding>> {
        let mut out: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
        for (cp, proto, ip, hp) in &self.chosen {
            out.entry(port_key(*cp, proto))
                .or_default()
                .push(PortBinding {
                    host_ip: ip.to_string(),
                    host_port: hp.to_string(),
                });
        }
        out
    }

    /// The NAT entries for the container at `ip`.
    pub fn published(&self, ip: Ipv4Addr) -> Vec<Published> {
        self.chosen
            .iter()
            .map(|(cp, proto, hip, hp)| Published {
                proto: proto.clone(),
                host_ip: if hip.is_unspecified() {
                    String::new()
                } else {
                    hip.to_string()
                },
                host_port: *hp,
                container_ip: ip.to_string(),
                container_port: *cp,
            })
            .collect()
    }
}

/// Bind a socket of `proto` on `ip:port` (0: the kernel picks); the port it got.
fn bind(proto: &str, ip: Ipv4Addr, port: u16) -> std::io::Result<(OwnedFd, u16)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, bind, getsockname, socket_with};
    let ty = if proto == "udp" {
        SocketType::DGRAM
    } else {
        SocketType::STREAM
    };
    let fd = socket_with(AddressFamily::INET, ty, SocketFlags::CLOEXEC, None)?;
    bind(&fd, &SocketAddrV4::new(ip, port))?;
    let got = std::net::SocketAddr::try_from(getsockname(&fd)?)
        .map(|s| s.port())
        .unwrap_or(port);
    Ok((fd, got))
}

/// Is the host port of `p` free (nobody holds it)? Then its NAT entry has no live owner.
pub fn is_free(p: &Published) -> bool {
    let ip = p.host_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
    bind(&p.proto, ip, p.host_port).is_ok()
}

/// Reserve the host side of every binding (`-p`), plus every exposed port for `-P`.
pub fn reserve(
    bindings: &BTreeMap<String, Vec<PortBinding>>,
    publish_all: bool,
    exposed: &[String],
    default_ip: Ipv4Addr,
) -> Result<Reservation> {
    let mut all: Vec<(String, PortBinding)> = bindings
        .iter()
        .flat_map(|(k, v)| v.iter().map(move |b| (k.clone(), b.clone())))
        .collect();
    if publish_all {
        for k in exposed {
            if !bindings.contains_key(k) {
                all.push((k.clone(), PortBinding::default()));
            }
        }
    }
    let mut r = Reservation::empty();
    for (key, b) in all {
        let (cport, proto) = parse_port_key(&key)?;
        if proto == "sctp" {
            return Err(RunnerError::Unsupported(format!(
                "publishing sctp port {key} is not supported yet"
            )));
        }
        let ip: Ipv4Addr = if b.host_ip.is_empty() {
            default_ip
        } else {
            b.host_ip.parse().map_err(|_| {
                RunnerError::invalid("port", format!("{:?} is not an IPv4 address", b.host_ip))
            })?
        };
        let (lo, hi) = if b.host_port.is_empty() {
            (0, 0)
        } else {
            parse_range(&b.host_port).map_err(|m| RunnerError::invalid("port", m))?
        };
        let mut last_err = None;
        let mut got = None;
        for port in lo..=hi {
            match bind(&proto, ip, port) {
                Ok(x) => {
                    got = Some(x);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let Some((fd, hp)) = got else {
            let in_use = last_err
                .as_ref()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::AddrInUse);
            let e = last_err.map(|e| e.to_string()).unwrap_or_default();
            let what = if lo == hi {
                format!("{ip}:{lo}")
            } else {
                format!("{ip}:{lo}-{hi}")
            };
            return Err(RunnerError::Conflict(if in_use {
                format!("Bind for {what} failed: port is already allocated")
            } else {
                format!("Bind for {what} failed: {e}")
            }));
        };
        r._sockets.push(fd);
        r.chosen.push((cport, proto, ip, hp));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<(String, String, String)> {
        parse_publish(s)
            .unwrap()
            .into_iter()
            .map(|(k, b)| (k, b.host_ip, b.host_port))
            .collect()
    }

    #[test]
    fn publish_specs_parse_as_docker() {
        assert_eq!(
            p("8080:80"),
            vec![("80/tcp".into(), "".into(), "8080".into())]
        );
        assert_eq!(p("80"), vec![("80/tcp".into(), "".into(), "".into())]);
        assert_eq!(
            p("127.0.0.1:8080:80"),
            vec![("80/tcp".into(), "127.0.0.1".into(), "8080".into())]
        );
        assert_eq!(
            p("127.0.0.1::80"),
            vec![("80/tcp".into(), "127.0.0.1".into(), "".into())]
        );
        assert_eq!(
            p("5353:53/udp"),
            vec![("53/udp".into(), "".into(), "5353".into())]
        );
        assert_eq!(
            p("8000-8001:80-81"),
            vec![
                ("80/tcp".into(), "".into(), "8000".into()),
                ("81/tcp".into(), "".into(), "8001".into())
            ]
        );
        assert_eq!(
            p("9000-9010:80"),
            vec![("80/tcp".into(), "".into(), "9000-9010".into())]
        );
        assert_eq!(p("80-81").len(), 2);
        for bad in [
            "",
            "x",
            "8080:",
            "80:0",
            "70000:80",
            "1:2:3:4",
            "80/icmp",
            "a.b:1:2",
            "8000-8002:80-81",
            "[::1]:80",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse_publish("[::1]:80:80"),
            Err(RunnerError::Unsupported(_))
        ));
    }

    #[test]
    fn reservations_hold_ports_and_refuse_a_taken_one() {
        let mut b = BTreeMap::new();
        b.insert("80/tcp".to_string(), vec![PortBinding::default()]);
        let r = reserve(&b, false, &[], Ipv4Addr::LOCALHOST).unwrap();
        let (_, _, _, port) = r.chosen[0];
        assert!(port > 0);
        let mut b2 = BTreeMap::new();
        b2.insert(
            "81/tcp".to_string(),
            vec![PortBinding {
                host_ip: "127.0.0.1".into(),
                host_port: port.to_string(),
            }],
        );
        let e = reserve(&b2, false, &[], Ipv4Addr::UNSPECIFIED)
            .err()
            .unwrap();
        assert!(e.to_string().contains("already allocated"), "{e}");
        drop(r);
        assert!(reserve(&b2, false, &[], Ipv4Addr::UNSPECIFIED).is_ok());
        // -P takes every exposed port.
        let all = reserve(
            &BTreeMap::new(),
            true,
            &["80/tcp".into(), "53/udp".into()],
            Ipv4Addr::LOCALHOST,
        )
        .unwrap();
        assert_eq!(all.chosen.len(), 2);
    }
}

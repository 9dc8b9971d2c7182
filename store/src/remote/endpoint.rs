//! Where a reference's registry lives and how to speak to it: Docker Hub's name
//! (`docker.io` → `registry-1.docker.io`), and whether it is insecure as Docker means it —
//! loopback registries and those the user declared (`--insecure-registry`, `insecure-registries`
//! in `daemon.json`): HTTPS without certificate verification, then plain HTTP
//! (`transport::negotiate` settles which).

use std::path::Path;

/// The host Docker Hub's API answers on.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The key Docker writes Hub credentials under in `config.json`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A registry as berth talks to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` as in references (`docker.io`, `localhost:5000`).
    pub domain: String,
    /// `host[:port]` requests go to (`registry-1.docker.io` for `docker.io`).
    pub api_host: String,
    /// `https`, or `http` once [`super::transport::negotiate`] found an insecure registry
    /// speaking plain HTTP.
    pub scheme: &'static str,
    /// Loopback or declared insecure: TLS unverified, plain HTTP allowed.
    pub insecure: bool,
}

impl Endpoint {
    pub fn new(domain: &str, insecure: &[String]) -> Endpoint {
        let domain = canonical_domain(domain);
        let api_host = if domain == "docker.io" {
            DOCKER_HUB_API.to_string()
        } else {
            domain.clone()
        };
        let insecure = is_loopback(&domain) || is_insecure(&domain, insecure);
        Endpoint {
            domain,
            api_host,
            scheme: "https",
            insecure,
        }
    }

    /// `scheme://host/v2/`.
    pub fn base_url(&self) -> String {
        format!("{}://{}/v2/", self.scheme, self.api_host)
    }
}

/// Names Docker Hub goes by, folded into `docker.io`; anything else as typed (lower-cased host).
pub fn canonical_domain(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or(s);
    match s {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => s.to_ascii_lowercase(),
    }
}

/// `host` of `host[:port]` (brackets kept off IPv6 literals).
fn host_of(domain: &str) -> &str {
    if let Some(rest) = domain.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    domain.split(':').next().unwrap_or(domain)
}

/// Docker treats loopback registries on any port as insecure (127.0.0.0/8 and ::1 are in its
/// default insecure CIDRs).
pub fn is_loopback(domain: &str) -> bool {
    let host = host_of(domain);
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Whether `domain` matches an `--insecure-registry` entry: `host:port` matches exactly, a bare
/// `host` matches it on any port, and a CIDR (`10.0.0.0/8`) matches IPv4 hosts inside it.
pub fn is_insecure(domain: &str, insecure: &[String]) -> bool {
    let domain = domain.to_ascii_lowercase();
    let host = host_of(&domain);
    insecure.iter().any(|entry| {
        let e = canonical_domain(entry);
        let raw = entry.trim().to_ascii_lowercase();
        if let Some((net, bits)) = raw.split_once('/')
            && let (Ok(net), Ok(bits)) = (net.parse::<std::net::Ipv4Addr>(), bits.parse::<u32>())
        {
            return match host.parse::<std::net::Ipv4Addr>() {
                Ok(ip) if bits <= 32 => {
                    let mask = if bits == 0 {
                        0
                    } else {
                        u32::MAX << (32 - bits)
                    };
                    u32::from(ip) & mask == u32::from(net) & mask
                }
                _ => false,
            };
        }
        e == domain || (!e.contains(':') && e == host)
    })
}

/// `insecure-registries` from `daemon.json` (see [`crate::daemon_json`]), as Docker reads them,
/// and from berth's older `<root>/config.json` (else `/etc/berth/config.json`), still honoured.
/// A file that does not parse is reported, not ignored.
pub fn configured_insecure(root: &Path) -> Result<Vec<String>, String> {
    let mut list = match crate::daemon_json::read(root)? {
        Some((p, v)) => crate::daemon_json::strings(&p, &v, "insecure-registries")?,
        None => Vec::new(),
    };
    for p in [root.join("config.json"), "/etc/berth/config.json".into()] {
        match std::fs::read(&p) {
            Ok(bytes) => {
                let v: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
                list.extend(crate::daemon_json::strings(&p, &v, "insecure-registries")?);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", p.display())),
        }
    }
    Ok(list)
}

/// `registry-mirrors` from `daemon.json`: pull-through mirrors of Docker Hub, as URLs
/// (`https://mirror.example`, `http://127.0.0.1:5000`), tried in order before Docker Hub.
/// Returned as the domains berth speaks to, each with whether the URL said plain HTTP.
pub fn configured_mirrors(root: &Path) -> Result<Vec<Mirror>, String> {
    let Some((p, v)) = crate::daemon_json::read(root)? else {
        return Ok(Vec::new());
    };
    crate::daemon_json::strings(&p, &v, "registry-mirrors")?
        .iter()
        .map(|url| {
            Mirror::parse(url).map_err(|e| format!("{}: registry-mirrors: {e}", p.display()))
        })
        .collect()
}

/// One entry of `registry-mirrors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `host[:port]`.
    pub domain: String,
    /// The URL said `http://`: speak plain HTTP to it (Docker: a mirror is contacted at the
    /// scheme its URL gives).
    pub plain_http: bool,
}

impl Mirror {
    /// Docker's rules: a URL with scheme http or https, a host, and no path beyond `/`.
    pub fn parse(url: &str) -> Result<Mirror, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?}: a mirror is a URL with scheme http or https"))?;
        let plain_http = match scheme.to_ascii_lowercase().as_str() {
            "http" => true,
            "https" => false,
            _ => {
                return Err(format!(
                    "{url:?}: unsupported scheme {scheme:?} (http or https)"
                ));
            }
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        if !path.trim_end_matches('/').is_empty() {
            return Err(format!("{url:?}: a mirror URL has no path (got /{path})"));
        }
        Ok(Mirror {
            domain: host.to_ascii_lowercase(),
            plain_http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn loopback_registries_are_insecure_on_any_port() {
        for d in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:35123",
            "[::1]:5000",
            "127.0.0.2",
        ] {
            assert!(Endpoint::new(d, &[]).insecure, "{d}");
        }
        for d in [
            "example.com",
            "example.com:5000",
            "10.0.0.1:5000",
            "localhost.example",
        ] {
            assert!(!Endpoint::new(d, &[]).insecure, "{d}");
        }
    }

    #[test]
    fn insecure_registry_matching() {
        let list = s(&[
            "reg.lan:5000",
            "other.lan",
            "10.1.0.0/16",
            "http://Upper.Lan:80/",
        ]);
        assert!(is_insecure("reg.lan:5000", &list));
        assert!(!is_insecure("reg.lan:5001", &list));
        assert!(!is_insecure("reg.lan", &list));
        assert!(is_insecure("other.lan", &list));
        assert!(is_insecure("other.lan:8443", &list));
        assert!(is_insecure("10.1.2.3:5000", &list));
        assert!(!is_insecure("10.2.0.1:5000", &list));
        assert!(is_insecure("upper.lan:80", &list));
        assert!(!is_insecure("example.com", &list));
    }

    #[test]
    fn docker_hub_names_fold_into_docker_io() {
        for d in [
            "docker.io",
            "index.docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
        ] {
            let e = Endpoint::new(d, &[]);
            assert_eq!(e.domain, "docker.io");
            assert_eq!(e.base_url(), "https://registry-1.docker.io/v2/");
        }
        assert_eq!(
            canonical_domain("https://Reg.Example:5000/v2/"),
            "reg.example:5000"
        );
    }

    #[test]
    fn mirror_urls_parse_as_docker_checks_them() {
        assert_eq!(
            Mirror::parse("https://Mirror.Example:5000/").unwrap(),
            Mirror {
                domain: "mirror.example:5000".into(),
                plain_http: false
            }
        );
        assert!(Mirror::parse("http://127.0.0.1:5000").unwrap().plain_http);
        for bad in ["mirror.example", "ftp://m", "https://", "https://m/v2/x"] {
            assert!(Mirror::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_file_lists_insecure_registries() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("config.json"),
            r#"{"insecure-registries": ["a.lan:5000", "b.lan"]}"#,
        )
        .unwrap();
        assert_eq!(
            configured_insecure(t.path()).unwrap(),
            s(&["a.lan:5000", "b.lan"])
        );
        std::fs::write(t.path().join("config.json"), "{oops").unwrap();
        assert!(
            configured_insecure(t.path())
                .unwrap_err()
                .contains("config.json")
        );
    }
}

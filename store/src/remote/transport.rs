//! How a registry is reached: the HTTP client for one registry (its TLS trust and client
//! certificate from Docker's `certs.d`, verification off for insecure registries) and the
//! scheme it speaks, found as moby finds it: secure registries over HTTPS only; loopback and
//! insecure registries over HTTPS first (without verification), then plain HTTP.
//!
//! `certs.d`: for a registry `HOST:PORT`, every directory `<dir>/HOST:PORT/` (or `<dir>/HOST/`
//! when the registry has no port) of `$BERTH_CERTS_D` (colon-separated), else of
//! `/etc/berth/certs.d` and `/etc/docker/certs.d`, gives `*.crt` (CA roots, added to the system's),
//! and `NAME.cert` + `NAME.key` (a client certificate and its key). The system's roots come from
//! the platform store (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::endpoint::Endpoint;
use super::error::{RemoteError, Result, transport_reason};

/// Per-read and connect limits only: a multi-GiB transfer may take as long as it takes while
/// bytes keep moving.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// Where `certs.d` directories are looked for.
pub fn certs_dirs() -> Vec<PathBuf> {
    if let Some(v) = std::env::var_os("BERTH_CERTS_D") {
        return std::env::split_paths(&v).collect();
    }
    vec!["/etc/berth/certs.d".into(), "/etc/docker/certs.d".into()]
}

/// What `certs.d` holds for one registry.
#[derive(Default)]
struct RegistryCerts {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

fn read_certs(domain: &str) -> Result<RegistryCerts> {
    read_certs_in(&certs_dirs(), domain)
}

fn read_certs_in(dirs: &[PathBuf], domain: &str) -> Result<RegistryCerts> {
    let mut out = RegistryCerts::default();
    let bad = |p: &Path, e: &dyn std::fmt::Display| {
        RemoteError::Config(format!(
            "{}: {e} (certificates for registry {domain} must be PEM)",
            p.display()
        ))
    };
    for base in dirs {
        let dir = base.join(domain);
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(RemoteError::Config(format!("{}: {e}", dir.display()))),
        };
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in &names {
            match p.extension().and_then(|x| x.to_str()) {
                Some("crt") => {
                    let pem = std::fs::read(p).map_err(|e| bad(p, &e))?;
                    let certs =
                        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(p, &e))?;
                    if certs.is_empty() {
                        return Err(bad(p, &"no CERTIFICATE in it"));
                    }
                    out.roots.extend(certs);
                }
                Some("cert") if out.identity.is_none() => {
                    // Docker pairs client.cert with client.key and refuses a lone half.
                    let key = p.with_extension("key");
                    let cert_pem = std::fs::read(p).map_err(|e| bad(p, &e))?;
                    let key_pem = std::fs::read(&key).map_err(|_| {
                        RemoteError::Config(format!(
                            "missing key {} for client certificate {}",
                            key.display(),
                            p.display()
                        ))
                    })?;
                    let mut both = cert_pem;
                    both.push(b'\n');
                    both.extend_from_slice(&key_pem);
                    out.identity =
                        Some(reqwest::Identity::from_pem(&both).map_err(|e| bad(p, &e))?);
                }
                Some("key") if !p.with_extension("cert").exists() => {
                    return Err(RemoteError::Config(format!(
                        "missing client certificate {} for key {}",
                        p.with_extension("cert").display(),
                        p.display()
                    )));
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// An HTTP client for `endpoint`'s registry: timeouts, berth's user agent, the registry's
/// `certs.d` roots and client certificate, and no certificate verification when the registry
/// is insecure (declared so, or on loopback), as Docker does for those.
pub fn client_for(endpoint: &Endpoint) -> Result<reqwest::Client> {
    let certs = read_certs(&endpoint.domain)?;
    let mut b = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")));
    if !certs.roots.is_empty() {
        b = b.tls_certs_merge(certs.roots);
    }
    if let Some(id) = certs.identity {
        b = b.identity(id);
    }
    if endpoint.insecure {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| RemoteError::Config(format!("HTTP client for {}: {e}", endpoint.domain)))
}

/// The scheme each insecure registry answered on in this process, so a second session (push
/// of several tags, a build's several bases) does not try HTTPS again.
fn settled() -> &'static Mutex<HashMap<String, &'static str>> {
    static S: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(HashMap::new()))
}

/// `endpoint` with the scheme its registry speaks. Secure registries: HTTPS, not probed. Insecure
/// ones: `GET /v2/` over HTTPS, and plain HTTP when that fails at the transport level (no TLS
/// there, or nothing listening for it); an HTTP status of any kind settles on HTTPS.
pub async fn negotiate(mut endpoint: Endpoint, http: &reqwest::Client) -> Result<Endpoint> {
    if !endpoint.insecure {
        return Ok(endpoint);
    }
    if let Some(s) = settled()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&endpoint.domain)
    {
        endpoint.scheme = s;
        return Ok(endpoint);
    }
    endpoint.scheme = "https";
    let scheme = match http.get(endpoint.base_url()).send().await {
        Ok(_) => "https",
        Err(e) => {
            tracing::debug!(
                "{} over HTTPS: {}; trying plain HTTP",
                endpoint.domain,
                transport_reason(&e)
            );
            "http"
        }
    };
    endpoint.scheme = scheme;
    settled()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(endpoint.domain.clone(), scheme);
    Ok(endpoint)
}

/// The client and the negotiated endpoint, in one call.
pub async fn connect(endpoint: Endpoint) -> Result<(Endpoint, reqwest::Client)> {
    let http = client_for(&endpoint)?;
    let endpoint = negotiate(endpoint, &http).await?;
    Ok((endpoint, http))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_d_halves_and_bad_pem_are_errors_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        let dirs = [t.path().to_path_buf()];
        let dir = t.path().join("reg.example:5000");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("client.key"), "x").unwrap();
        let e = read_certs_in(&dirs, "reg.example:5000")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("missing client certificate") && e.contains("client.cert"),
            "{e}"
        );
        std::fs::remove_file(dir.join("client.key")).unwrap();
        std::fs::write(dir.join("client.cert"), "x").unwrap();
        let e = read_certs_in(&dirs, "reg.example:5000")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing key") && e.contains("client.key"), "{e}");
        std::fs::remove_file(dir.join("client.cert")).unwrap();
        std::fs::write(dir.join("ca.crt"), "not pem").unwrap();
        let e = read_certs_in(&dirs, "reg.example:5000")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("ca.crt"), "{e}");
        assert!(
            read_certs_in(&dirs, "other.example")
                .unwrap()
                .roots
                .is_empty()
        );
    }
}

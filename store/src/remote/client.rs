//! A connection to one repository of one registry. `oci-client` does the token dance, blob HEAD,
//! manifest GET/PUT and blob GET; plain `reqwest` (with the same Authorization) does what it
//! lacks: upload sessions with chunking, resume and cross-repo mount (see `upload`).
//!
//! With a token registry the session's bearer token is renewed shortly before it expires
//! ([`Session::fresh`], called before each upload request), and a 401 whose challenge asks for
//! more scope than the session holds (a cross-repository mount needs pull on the source) can be
//! answered with a token for exactly that challenge ([`Session::token_for`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference as OciRef, RegistryOperation};
use reqwest::header::{AUTHORIZATION, HeaderValue};

use super::auth::Credentials;
use super::endpoint::Endpoint;
use super::error::{RemoteError, Result, error_detail, transport_reason};

pub struct Session {
    pub endpoint: Endpoint,
    /// Repository path inside the registry (`library/busybox`).
    pub repo: String,
    oci: oci_client::Client,
    pub(super) http: reqwest::Client,
    authz: Mutex<Authz>,
    creds: Option<Credentials>,
    op: RegistryOperation,
}

/// The Authorization every reqwest call carries, and when a bearer token needs renewing.
struct Authz {
    header: Option<HeaderValue>,
    /// None: basic or no credentials, nothing to renew.
    renew_at: Option<Instant>,
}

/// Renew a token this long before it expires (a chunk PATCH must fit in what is left), or at
/// half its life when that is shorter.
const RENEW_MARGIN: Duration = Duration::from_secs(60);
/// The token spec's lifetime for a token that does not say (`expires_in` absent).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// When to renew a bearer token: from its JWT `exp` claim, else the spec's default lifetime.
fn renew_at(token: &str) -> Instant {
    use base64::Engine as _;
    let now = Instant::now();
    let lifetime = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .and_then(|claims| claims.get("exp").and_then(serde_json::Value::as_u64))
        .and_then(|exp| {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs();
            Some(Duration::from_secs(exp.saturating_sub(unix)))
        })
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    now + lifetime - RENEW_MARGIN.min(lifetime / 2)
}

/// Per-read and connect limits only: a multi-GiB transfer may take as long as it takes while
/// bytes keep moving.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(300);

impl Session {
    pub async fn connect(
        endpoint: Endpoint,
        repo: &str,
        creds: Option<Credentials>,
        op: RegistryOperation,
    ) -> Result<Session> {
        let protocol = if endpoint.scheme == "http" {
            ClientProtocol::HttpsExcept(vec![endpoint.api_host.clone()])
        } else {
            ClientProtocol::Https
        };
        let oci = oci_client::Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..Default::default()
        });
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RemoteError::Other(format!("HTTP client: {e}")))?;
        let s = Session {
            endpoint,
            repo: repo.to_string(),
            oci,
            http,
            authz: Mutex::new(Authz {
                header: None,
                renew_at: None,
            }),
            creds,
            op,
        };
        s.authenticate().await?;
        Ok(s)
    }

    fn registry_auth(&self) -> RegistryAuth {
        match &self.creds {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    /// Ask the registry how to authenticate and get a token (or settle on basic auth).
    async fn authenticate(&self) -> Result<()> {
        let token = self
            .oci
            .auth(&self.oref(None), &self.registry_auth(), self.op)
            .await
            .map_err(|e| self.map_oci("authenticating", e, self.creds.is_some()))?;
        let authz = match (token, &self.creds) {
            (Some(t), _) => Authz {
                header: HeaderValue::from_str(&format!("Bearer {t}")).ok(),
                renew_at: Some(renew_at(&t)),
            },
            (None, Some(c)) => {
                use base64::Engine as _;
                let b = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password));
                Authz {
                    header: HeaderValue::from_str(&format!("Basic {b}")).ok(),
                    renew_at: None,
                }
            }
            (None, None) => Authz {
                header: None,
                renew_at: None,
            },
        };
        *self.authz.lock().unwrap_or_else(|p| p.into_inner()) = authz;
        Ok(())
    }

    /// Renew the bearer token when it is about to expire, so long pushes outlive it.
    pub async fn fresh(&self) -> Result<()> {
        let due = self
            .authz
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .renew_at
            .is_some_and(|t| Instant::now() >= t);
        if due {
            self.authenticate().await?;
        }
        Ok(())
    }

    /// A bearer token for what `res` (a 401) challenges for, from its realm with this session's
    /// credentials; None when it is no bearer challenge or the token server refuses.
    pub async fn token_for(&self, res: &reqwest::Response) -> Option<HeaderValue> {
        let challenge = res
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)?
            .to_str()
            .ok()?;
        let (scheme, params) = challenge.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let realm = super::challenge_param(params, "realm")?;
        let mut query = Vec::new();
        if let Some(sv) = super::challenge_param(params, "service") {
            query.push(("service", sv));
        }
        if let Some(scope) = super::challenge_param(params, "scope") {
            query.extend(scope.split_whitespace().map(|s| ("scope", s.to_string())));
        }
        let mut req = self.http.get(&realm).query(&query);
        if let Some(c) = &self.creds {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let res = req.send().await.ok()?;
        if !res.status().is_success() {
            return None;
        }
        let v: serde_json::Value = res.json().await.ok()?;
        let t = v.get("token").or_else(|| v.get("access_token"))?.as_str()?;
        HeaderValue::from_str(&format!("Bearer {t}")).ok()
    }

    /// An `oci-client` reference to this repository, at `digest` or the `latest` placeholder
    /// (blob calls use only registry and repository).
    pub fn oref(&self, target: Option<&str>) -> OciRef {
        match target {
            Some(t) if t.starts_with("sha256:") => OciRef::with_digest(
                self.endpoint.api_host.clone(),
                self.repo.clone(),
                t.to_string(),
            ),
            Some(t) => OciRef::with_tag(
                self.endpoint.api_host.clone(),
                self.repo.clone(),
                t.to_string(),
            ),
            None => OciRef::with_tag(
                self.endpoint.api_host.clone(),
                self.repo.clone(),
                "latest".into(),
            ),
        }
    }

    pub fn unreachable(&self, e: &(dyn std::error::Error + 'static)) -> RemoteError {
        RemoteError::Unreachable {
            registry: self.endpoint.domain.clone(),
            reason: transport_reason(e),
        }
    }

    pub fn map_oci(&self, what: &str, e: OciDistributionError, had_creds: bool) -> RemoteError {
        let registry = self.endpoint.domain.clone();
        match e {
            OciDistributionError::RequestError(r) => self.unreachable(&r),
            OciDistributionError::AuthenticationFailure(_) if had_creds => {
                RemoteError::BadCredentials { registry }
            }
            OciDistributionError::AuthenticationFailure(_)
            | OciDistributionError::UnauthorizedError { .. } => {
                RemoteError::Unauthorized { registry }
            }
            OciDistributionError::ServerError { code: 401, .. } => {
                RemoteError::Unauthorized { registry }
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let body = serde_json::to_vec(&envelope).unwrap_or_default();
                let detail = error_detail(&body);
                if detail.contains("UNAUTHORIZED") || detail.contains("DENIED") {
                    return RemoteError::Unauthorized { registry };
                }
                RemoteError::Registry {
                    what: what.to_string(),
                    detail: detail.trim_start_matches(": ").to_string(),
                }
            }
            OciDistributionError::ServerError { code, message, .. } => RemoteError::Registry {
                what: what.to_string(),
                detail: format!("HTTP {code}{}", error_detail(message.as_bytes())),
            },
            OciDistributionError::DigestError(d) => RemoteError::Other(format!("{what}: {d}")),
            other => RemoteError::Other(format!("{what}: {other}")),
        }
    }

    /// A reqwest request carrying this session's Authorization.
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, url);
        let header = self
            .authz
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .header
            .clone();
        if let Some(a) = header {
            r = r.header(AUTHORIZATION, a);
        }
        r
    }

    /// Turn a non-success answer into an error naming `what`.
    pub async fn status_error(&self, what: &str, res: reqwest::Response) -> RemoteError {
        let status = res.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return RemoteError::Unauthorized {
                registry: self.endpoint.domain.clone(),
            };
        }
        let body = res.bytes().await.unwrap_or_default();
        let detail = error_detail(&body);
        RemoteError::Registry {
            what: what.to_string(),
            detail: format!("HTTP {}{detail}", status.as_u16()),
        }
    }

    pub fn url(&self, tail: &str) -> String {
        format!("{}{}/{tail}", self.endpoint.base_url(), self.repo)
    }

    /// Absolute URL of a `Location` header (registries may answer with a path).
    pub fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!(
                "{}://{}{}",
                self.endpoint.scheme, self.endpoint.api_host, location
            )
        }
    }

    pub async fn blob_exists(&self, digest: &str) -> Result<bool> {
        self.oci
            .blob_exists(&self.oref(None), digest)
            .await
            .map_err(|e| self.map_oci(&format!("checking blob {digest}"), e, false))
    }

    /// The manifest (or index) `target` names, raw, with its digest as computed here.
    pub async fn get_manifest(&self, target: &str, reference: &str) -> Result<(Vec<u8>, String)> {
        const ACCEPT: &[&str] = &[
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ];
        let res = self
            .oci
            .pull_manifest_raw(&self.oref(Some(target)), &RegistryAuth::Anonymous, ACCEPT)
            .await;
        match res {
            Ok((bytes, _)) => {
                let d = crate::digest::sha256_of(&bytes).to_string();
                Ok((bytes.to_vec(), d))
            }
            Err(OciDistributionError::ImageManifestNotFoundError(_))
            | Err(OciDistributionError::ServerError { code: 404, .. }) => {
                Err(RemoteError::ManifestUnknown {
                    reference: reference.to_string(),
                })
            }
            Err(OciDistributionError::RegistryError { envelope, .. })
                if envelope
                    .to_string()
                    .to_ascii_uppercase()
                    .contains("MANIFEST")
                    || serde_json::to_string(&envelope)
                        .unwrap_or_default()
                        .contains("NAME_UNKNOWN")
                    || serde_json::to_string(&envelope)
                        .unwrap_or_default()
                        .contains("MANIFEST_UNKNOWN") =>
            {
                Err(RemoteError::ManifestUnknown {
                    reference: reference.to_string(),
                })
            }
            Err(e) => Err(self.map_oci(&format!("fetching manifest of {reference}"), e, false)),
        }
    }

    pub async fn put_manifest(&self, tag: &str, body: Vec<u8>, media_type: &str) -> Result<()> {
        let ct = HeaderValue::from_str(media_type)
            .map_err(|e| RemoteError::Other(format!("media type {media_type}: {e}")))?;
        self.oci
            .push_manifest_raw(&self.oref(Some(tag)), body, ct)
            .await
            .map(|_| ())
            .map_err(|e| self.map_oci(&format!("pushing manifest {}:{tag}", self.repo), e, false))
    }

    pub async fn blob_stream(
        &self,
        digest: &str,
        size: u64,
    ) -> Result<oci_client::client::SizedStream> {
        let desc = oci_client::manifest::OciDescriptor {
            digest: digest.to_string(),
            size: size as i64,
            ..Default::default()
        };
        self.oci
            .pull_blob_stream(&self.oref(None), &desc)
            .await
            .map_err(|e| self.map_oci(&format!("fetching blob {digest}"), e, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn jwt(claims: &str) -> String {
        let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", e(r#"{"alg":"ES256"}"#), e(claims))
    }

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let within = |t: Instant, lo: u64, hi: u64| {
            let d = t.saturating_duration_since(Instant::now()).as_secs();
            assert!((lo..=hi).contains(&d), "{d} not in {lo}..={hi}");
        };
        within(
            renew_at(&jwt(&format!(r#"{{"exp":{}}}"#, unix + 300))),
            238,
            240,
        );
        // No readable exp: the spec's 60 s, renewed at half.
        within(renew_at("opaque-token"), 29, 30);
        within(renew_at(&jwt(r#"{"sub":"x"}"#)), 29, 30);
        // Already expired: renew now.
        within(renew_at(&jwt(&format!(r#"{{"exp":{}}}"#, unix - 10))), 0, 0);
    }
}

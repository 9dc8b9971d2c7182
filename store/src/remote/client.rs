//! A connection to one repository of one registry, over plain `reqwest`: the token dance, blob
//! HEAD and GET, manifest GET and PUT, and (see `upload`) upload sessions with chunking, resume
//! and cross-repo mount. Every answer is read with a bound (token and error bodies 1 MiB,
//! manifests 4 MiB, blobs their descriptor's size): `oci-client`'s calls read whole bodies into
//! memory, so a hostile registry or token server could fill it; the `oci-client` crate is no
//! longer used.
//!
//! With a token registry the session's bearer token is renewed shortly before it expires
//! ([`Session::fresh`], called before each upload request), and a 401 whose challenge asks for
//! more scope than the session holds (a cross-repository mount needs pull on the source) can be
//! answered with a token for exactly that challenge ([`Session::token_for`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderValue};

use super::auth::Credentials;
use super::endpoint::Endpoint;
use super::error::{RemoteError, Result, error_detail, transport_reason};

/// What a session's token must allow: `pull`, or `pull,push` on its repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Pull,
    Push,
    /// The registry's catalog (`registry:catalog:*`), for `search`; the session's repo is empty.
    Catalog,
}

pub struct Session {
    pub endpoint: Endpoint,
    /// Repository path inside the registry (`library/busybox`).
    pub repo: String,
    pub(super) http: reqwest::Client,
    authz: Mutex<Authz>,
    creds: Option<Credentials>,
    op: Operation,
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

impl Session {
    pub async fn connect(
        endpoint: Endpoint,
        repo: &str,
        creds: Option<Credentials>,
        op: Operation,
    ) -> Result<Session> {
        let (endpoint, http) = super::transport::connect(endpoint).await?;
        let s = Session {
            endpoint,
            repo: repo.to_string(),
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

    /// Ask the registry how to authenticate and get a token (or settle on basic auth).
    ///
    /// Our own GETs rather than `oci-client`'s `auth()`, which reads a token server's answer
    /// into memory whatever its size: an endless token response is cut off at
    /// [`MAX_SMALL_BODY`].
    async fn authenticate(&self) -> Result<()> {
        let token = match self.bearer_challenge().await? {
            Some((realm, service)) => Some(self.fetch_token(&realm, service.as_deref()).await?),
            None => None,
        };
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

    /// The realm and service of the bearer challenge `GET /v2/` answers with; None when the
    /// registry asks for no token (open, or basic auth).
    async fn bearer_challenge(&self) -> Result<Option<(String, Option<String>)>> {
        let res = self
            .http
            .get(self.endpoint.base_url())
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let Some(challenge) = res
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(None);
        };
        let Some((scheme, params)) = challenge.trim().split_once(' ') else {
            return Ok(None);
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        Ok(challenge_param(params, "realm")
            .map(|realm| (realm, challenge_param(params, "service"))))
    }

    /// A token for this session's repository and operation from the token server at `realm`,
    /// with the session's credentials (anonymous without).
    async fn fetch_token(&self, realm: &str, service: Option<&str>) -> Result<String> {
        let scope = match self.op {
            Operation::Pull => format!("repository:{}:pull", self.repo),
            Operation::Push => format!("repository:{}:pull,push", self.repo),
            Operation::Catalog => "registry:catalog:*".to_string(),
        };
        let mut query = vec![("scope", scope.as_str())];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let mut req = self.http.get(realm).query(&query);
        if let Some(c) = &self.creds {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let res = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = res.status();
        let token_server = |problem: String| RemoteError::TokenServer {
            realm: realm.to_string(),
            registry: self.endpoint.domain.clone(),
            problem,
        };
        let too_big = |n: String| {
            token_server(format!(
                "sent {n} as its token response; token responses are limited to 1 MiB"
            ))
        };
        if let Some(n) = res.content_length()
            && n > MAX_SMALL_BODY
        {
            return Err(too_big(format!("{n} bytes")));
        }
        let body = read_limited(res, MAX_SMALL_BODY)
            .await
            .map_err(|e| self.unreachable(&e))?
            .ok_or_else(|| too_big("more than 1 MiB".into()))?;
        if !status.is_success() {
            let registry = self.endpoint.domain.clone();
            return Err(if self.creds.is_some() {
                RemoteError::BadCredentials { registry }
            } else {
                RemoteError::Unauthorized { registry }
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            token_server(format!(
                "sent a token response that is not the spec's JSON: {e}"
            ))
        })?;
        parsed
            .token
            .or(parsed.access_token)
            .ok_or_else(|| token_server("sent a token response without a token".into()))
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
        let realm = challenge_param(params, "realm")?;
        let mut query = Vec::new();
        if let Some(sv) = challenge_param(params, "service") {
            query.push(("service", sv));
        }
        if let Some(scope) = challenge_param(params, "scope") {
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
        let body = read_limited(res, MAX_SMALL_BODY).await.ok()??;
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let t = v.get("token").or_else(|| v.get("access_token"))?.as_str()?;
        HeaderValue::from_str(&format!("Bearer {t}")).ok()
    }

    pub fn unreachable(&self, e: &(dyn std::error::Error + 'static)) -> RemoteError {
        RemoteError::Unreachable {
            registry: self.endpoint.domain.clone(),
            reason: transport_reason(e),
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
        let body = read_limited(res, MAX_SMALL_BODY)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
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
        self.fresh().await?;
        let res = self
            .request(reqwest::Method::HEAD, &self.url(&format!("blobs/{digest}")))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        match res.status() {
            s if s.is_success() => Ok(true),
            reqwest::StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self
                .status_error(&format!("checking blob {digest}"), res)
                .await),
        }
    }

    /// The manifest (or index) `target` names, raw, with its digest as computed here.
    ///
    /// Fetched with our own GET rather than `oci-client`'s, which reads the whole body into
    /// memory whatever its size: a registry that sends an endless manifest is cut off at
    /// [`MAX_MANIFEST`].
    pub async fn get_manifest(&self, target: &str, reference: &str) -> Result<(Vec<u8>, String)> {
        const ACCEPTED: &str = "application/vnd.oci.image.index.v1+json, \
                              application/vnd.oci.image.manifest.v1+json, \
                              application/vnd.docker.distribution.manifest.list.v2+json, \
                              application/vnd.docker.distribution.manifest.v2+json";
        self.fresh().await?;
        let what = format!("fetching manifest of {reference}");
        let res = self
            .request(
                reqwest::Method::GET,
                &self.url(&format!("manifests/{target}")),
            )
            .header(reqwest::header::ACCEPT, ACCEPTED)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let unknown = || RemoteError::ManifestUnknown {
            reference: reference.to_string(),
        };
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(unknown());
        }
        if !res.status().is_success() {
            return Err(match self.status_error(&what, res).await {
                RemoteError::Registry { detail, .. }
                    if detail.contains("MANIFEST_UNKNOWN") || detail.contains("NAME_UNKNOWN") =>
                {
                    unknown()
                }
                e => e,
            });
        }
        let too_big = |n: String| {
            self.misbehaved(format!(
                "sent {n} as the manifest of {reference}; manifests are limited to 4 MiB (as in \
                 distribution and containerd)"
            ))
        };
        if let Some(n) = res.content_length()
            && n > MAX_MANIFEST
        {
            return Err(too_big(format!("{n} bytes")));
        }
        let header = res
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_limited(res, MAX_MANIFEST)
            .await
            .map_err(|e| self.unreachable(&e))?
            .ok_or_else(|| too_big("more than 4 MiB".into()))?;
        let d = crate::digest::sha256_of(&body).to_string();
        // As oci-client did: a registry that names a sha256 digest for what it sent must have sent
        // exactly that.
        if let Some(h) = header
            && h.starts_with("sha256:")
            && h != d
        {
            return Err(RemoteError::DigestMismatch {
                what: format!("manifest of {reference} (its Docker-Content-Digest header)"),
                expected: h,
                actual: d,
            });
        }
        Ok((body, d))
    }

    pub async fn put_manifest(&self, tag: &str, body: Vec<u8>, media_type: &str) -> Result<()> {
        let ct = HeaderValue::from_str(media_type)
            .map_err(|e| RemoteError::Other(format!("media type {media_type}: {e}")))?;
        self.fresh().await?;
        let res = self
            .request(reqwest::Method::PUT, &self.url(&format!("manifests/{tag}")))
            .header(reqwest::header::CONTENT_TYPE, ct)
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if res.status().is_success() {
            return Ok(());
        }
        Err(self
            .status_error(&format!("pushing manifest {}:{tag}", self.repo), res)
            .await)
    }

    /// A GET of blob `digest`, which the manifest lists at `size` bytes; `what` names it in
    /// errors (`layer sha256:…`). The stream ends in an error as soon as the registry sends more
    /// than `size` bytes (before they reach the caller), so a blob can never grow past what its
    /// descriptor promised; the caller verifies the digest.
    pub async fn blob_stream(&self, digest: &str, size: u64, what: &str) -> Result<BlobStream<'_>> {
        let res = self
            .request(reqwest::Method::GET, &self.url(&format!("blobs/{digest}")))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if !res.status().is_success() {
            return Err(self.status_error(&format!("fetching {what}"), res).await);
        }
        if let Some(n) = res.content_length()
            && n > size
        {
            return Err(self.misbehaved(format!(
                "announced {n} bytes for {what}, which the manifest lists at {size} bytes"
            )));
        }
        Ok(BlobStream {
            s: self,
            res,
            what: what.to_string(),
            size,
            got: 0,
        })
    }

    /// The error for a registry that broke the protocol in a way no honest one would.
    pub fn misbehaved(&self, problem: String) -> RemoteError {
        RemoteError::Misbehaved {
            registry: self.endpoint.domain.clone(),
            problem,
        }
    }
}

/// Largest manifest or image index accepted from a registry (distribution's and containerd's
/// limit); more is refused before it is all read.
pub const MAX_MANIFEST: u64 = 4 << 20;

/// Largest error or token body read from a registry: enough for any real one, and a hostile
/// registry cannot fill memory through them.
pub(super) const MAX_SMALL_BODY: u64 = 1 << 20;

/// The body of `res`, or None as soon as it is longer than `limit`.
pub(super) async fn read_limited(
    mut res: reqwest::Response,
    limit: u64,
) -> std::result::Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// A blob being downloaded, never longer than its descriptor's size.
pub struct BlobStream<'a> {
    s: &'a Session,
    res: reqwest::Response,
    what: String,
    size: u64,
    got: u64,
}

impl BlobStream<'_> {
    /// The next chunk, None at the end; an error for a transport failure (`Unreachable`, worth
    /// a retry) or for more bytes than the descriptor's size (`Misbehaved`, not worth one).
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>> {
        let Some(b) = self.res.chunk().await.map_err(|e| self.s.unreachable(&e))? else {
            return Ok(None);
        };
        self.got += b.len() as u64;
        if self.got > self.size {
            return Err(self.s.misbehaved(format!(
                "sent more than the {} bytes the manifest lists for {}",
                self.size, self.what
            )));
        }
        Ok(Some(b))
    }
}

/// `key="value"` from a `WWW-Authenticate` parameter list.
pub(super) fn challenge_param(params: &str, key: &str) -> Option<String> {
    let mut rest = params;
    while !rest.is_empty() {
        let (k, after) = rest.split_once('=')?;
        let k = k.trim().trim_start_matches(',').trim();
        let (v, tail) = if let Some(a) = after.strip_prefix('"') {
            let end = a.find('"')?;
            (&a[..end], &a[end + 1..])
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        if k.eq_ignore_ascii_case(key) {
            return Some(v.to_string());
        }
        rest = tail.trim_start_matches(',');
    }
    None
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

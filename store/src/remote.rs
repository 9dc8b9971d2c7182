//! Push and pull between this store and registries speaking the OCI distribution API, and the
//! credentials `login` keeps for them.
//!
//! The library is async inside (`tokio`, `reqwest`: every request is our own, each answer read
//! with a size bound); the entry points here are synchronous and run a short-lived runtime, as
//! the CLI and builder are synchronous.
//!
//! - `endpoint`: registry names, Docker Hub's API host, insecure registries, mirrors
//! - `transport`: the HTTP client per registry (certs.d, TLS), HTTPS-then-HTTP negotiation
//! - `auth`: berth's and Docker's credential files, credential helpers
//! - `search`: `/v1/search`, or the catalog filtered for registries without search
//! - `client`: one authenticated session with a repository
//! - `upload`: chunked uploads with resume, cross-repo mount
//! - `gzip`: parallel gzip of plain layers on their way up
//! - `state`: compressed digests of plain layers and where blobs were seen, between runs
//! - `push`, `pull`
//! - `artifact`: single manifests and blobs of artifacts that are not images (the build cache)

pub mod artifact;
pub mod auth;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod gzip;
mod options;
pub mod pull;
pub mod push;
pub mod search;
pub mod state;
pub mod transport;
pub mod upload;

use std::sync::Arc;

pub use auth::Credentials;
pub use error::RemoteError;
pub(crate) use options::runtime;
pub use options::{Options, Progress, Quiet, short};
pub use pull::PullOutcome;
pub use push::PushOutcome;

use crate::root::Store;
use error::Result;

/// Upload image `spec` (a local reference) to the registry its name points at.
pub fn push(
    store: &Store,
    spec: &str,
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Result<PushOutcome> {
    runtime()?.block_on(push::push(store, spec, opts, progress))
}

/// Upload every local tag of repository `spec` (a name without tag), in tag order.
pub fn push_all_tags(
    store: &Store,
    spec: &str,
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Result<Vec<PushOutcome>> {
    runtime()?.block_on(push::push_all(store, spec, opts, progress))
}

/// Download `spec` (`name[:tag]` or `name@digest`) into the store and tag it.
pub fn pull(
    store: &Store,
    spec: &str,
    opts: &Options,
    progress: Arc<dyn Progress>,
) -> Result<PullOutcome> {
    runtime()?.block_on(pull::pull(store, spec, opts, progress))
}

/// `search TERM`: results from the registry `TERM` names (see [`search`]), at most `limit`.
pub fn search(term: &str, limit: usize, opts: &Options) -> Result<Vec<search::SearchResult>> {
    runtime()?.block_on(search::search(term, limit, opts))
}

/// Check credentials against `server` (basic or bearer-token challenge) without storing them.
pub fn verify_login(server: &str, creds: &Credentials, insecure: &[String]) -> Result<()> {
    let ep = endpoint::Endpoint::new(server, insecure);
    runtime()?.block_on(async {
        let (ep, http) = transport::connect(ep).await?;
        let unreachable = |e: reqwest::Error| RemoteError::Unreachable {
            registry: ep.domain.clone(),
            reason: error::transport_reason(&e),
        };
        let bad = || RemoteError::BadCredentials {
            registry: ep.domain.clone(),
        };
        let res = http.get(ep.base_url()).send().await.map_err(unreachable)?;
        if res.status().is_success() {
            return Ok(());
        }
        let challenge = res
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        if res.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Err(RemoteError::Registry {
                what: format!("login to {}", ep.domain),
                detail: format!("HTTP {} from {}", res.status().as_u16(), ep.base_url()),
            });
        }
        let ok = if let Some(params) = challenge
            .strip_prefix("Bearer ")
            .or_else(|| challenge.strip_prefix("bearer "))
        {
            let param = |k: &str| client::challenge_param(params, k);
            let realm = param("realm").ok_or_else(|| RemoteError::Registry {
                what: format!("login to {}", ep.domain),
                detail: "bearer challenge without realm".into(),
            })?;
            let mut q = vec![("account", creds.username.clone())];
            if let Some(sv) = param("service") {
                q.push(("service", sv));
            }
            http.get(realm)
                .query(&q)
                .basic_auth(&creds.username, Some(&creds.password))
                .send()
                .await
                .map_err(unreachable)?
                .status()
                .is_success()
        } else {
            http.get(ep.base_url())
                .basic_auth(&creds.username, Some(&creds.password))
                .send()
                .await
                .map_err(unreachable)?
                .status()
                .is_success()
        };
        if ok { Ok(()) } else { Err(bad()) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_params() {
        let p = r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#;
        assert_eq!(
            client::challenge_param(p, "realm").unwrap(),
            "https://auth.docker.io/token"
        );
        assert_eq!(
            client::challenge_param(p, "service").unwrap(),
            "registry.docker.io"
        );
        assert_eq!(
            client::challenge_param(p, "scope").unwrap(),
            "repository:a/b:pull,push"
        );
        assert_eq!(
            client::challenge_param("realm=x,service=y", "service").unwrap(),
            "y"
        );
        assert_eq!(client::challenge_param(p, "nope"), None);
    }

    #[test]
    fn short_digests() {
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }
}

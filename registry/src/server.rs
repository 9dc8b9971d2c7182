//! Running the server: bind, serve with a small tokio runtime, one access-log line per request on
//! stderr, `Docker-Distribution-API-Version` on every response, graceful shutdown on SIGTERM/SIGINT
//! (stop accepting, let requests in flight finish). Access control is one of: none, htpasswd basic
//! auth, or bearer tokens (with the built-in token server at `/token` when it has a key).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;

use axum::extract::State;
use axum::response::IntoResponse;

use crate::auth::{Htpasswd, REALM};
use crate::config::{Config, StorageConfig, TokenConfig};
use crate::endpoint::{Name, parse_query, parse_route, query_get};
use crate::error::{ErrorKind, RegistryError};
use crate::issuer::Issuer;
use crate::routes::{App, router};
use crate::scope;
use crate::storage::StorageError;
use crate::storage::fs::FsStorage;
use crate::token::{self, Rejection, SigningKey, Verifier};

/// How long an untouched upload session is kept.
const UPLOAD_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("opening storage: {0}")]
    Storage(#[from] StorageError),
    #[error("opening storage: {0}")]
    Bucket(#[from] crate::storage::cloud::OpenError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("loading htpasswd: {0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error("token auth: {0}")]
    Token(#[from] crate::token::TokenError),
    #[error("token auth: {0}")]
    TokenConfig(String),
    #[error("loading TLS certificate/key: {0}")]
    Tls(std::io::Error),
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// Serve until SIGTERM/SIGINT. `on_ready` gets the bound address (the real port for `:0`) and
/// whether it speaks TLS.
pub fn serve_blocking(
    cfg: Config,
    on_ready: impl FnOnce(SocketAddr, bool),
) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    rt.block_on(serve(cfg, on_ready))
}

pub async fn serve(cfg: Config, on_ready: impl FnOnce(SocketAddr, bool)) -> Result<(), ServeError> {
    let opts = (cfg.read_only, cfg.chunk_min_length);
    let router = match &cfg.storage {
        StorageConfig::Fs(dir) => fs_router(FsStorage::open(dir)?, opts),
        StorageConfig::Bucket(bucket) => {
            let storage = crate::storage::cloud::open(bucket, cfg.read_only).await?;
            // Parts arrive one PATCH each at best: ask for chunks of a whole part.
            let min = if cfg.chunk_min_length_set {
                cfg.chunk_min_length
            } else {
                bucket.part_size
            };
            router(Arc::new(App {
                storage,
                read_only: cfg.read_only,
                chunk_min_length: min,
            }))
        }
    };
    let htpasswd = cfg.htpasswd.as_deref().map(Htpasswd::load).transpose()?;
    let listener = tokio::net::TcpListener::bind(&cfg.addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.addr.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::Serve)?;
    let mut router = router;
    let basic = match &cfg.token {
        None => htpasswd,
        Some(tc) => {
            let (gate, issuer) = token_auth(tc, htpasswd, addr, cfg.tls.is_some())?;
            if let Some(issuer) = issuer {
                router = router.merge(
                    axum::Router::new()
                        .route(
                            "/token",
                            axum::routing::get(crate::issuer::token)
                                .post(crate::issuer::token_post),
                        )
                        .with_state(issuer),
                );
            }
            router = router.layer(middleware::from_fn_with_state(gate, require_token));
            // htpasswd guards the token server only.
            None
        }
    };
    let router = router
        .layer(middleware::from_fn_with_state(basic, require_auth))
        .layer(middleware::from_fn(log_and_version));
    let nofile = crate::connections::raise_nofile_limit();
    let limits = crate::connections::Limits {
        max_connections: cfg
            .max_connections
            .unwrap_or_else(|| crate::connections::Limits::default_max_connections(nofile)),
        header_timeout: cfg.header_timeout,
        idle_timeout: cfg.idle_timeout,
        write_timeout: cfg.write_timeout,
    };
    tracing::info!(
        "at most {} connections (open-file limit {nofile}), header timeout {:?}, idle timeout {:?}, \
         write timeout {:?}",
        limits.max_connections,
        limits.header_timeout,
        limits.idle_timeout,
        limits.write_timeout
    );
    let tls = match &cfg.tls {
        None => None,
        Some((cert, key)) => {
            // Both rustls backends may be compiled in; pick one explicitly (an error only
            // means a provider is already installed).
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(ServeError::Tls)?;
            Some(tokio_rustls::TlsAcceptor::from(tls.get_inner()))
        }
    };
    on_ready(addr, tls.is_some());
    crate::connections::serve(listener, tls, router, limits, shutdown_signal()).await;
    Ok(())
}

/// The filesystem backend's routes, and its hourly purge of abandoned upload sessions (on a
/// bucket, `berth registry gc` does that: replicas would all list the bucket hourly).
fn fs_router(storage: FsStorage, (read_only, chunk_min_length): (bool, u64)) -> axum::Router {
    // Sessions a client abandoned are dropped after a day, checked at start and hourly.
    let purge = |st: &FsStorage| match st.purge_stale_uploads(UPLOAD_MAX_AGE) {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} stale upload sessions"),
        Err(e) => tracing::warn!("purging stale uploads: {e}"),
    };
    purge(&storage);
    let app = Arc::new(App {
        storage,
        read_only,
        chunk_min_length,
    });
    let sweeper = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        tick.tick().await;
        loop {
            tick.tick().await;
            let app = sweeper.clone();
            let _ = tokio::task::spawn_blocking(move || purge(&app.storage)).await;
        }
    });
    router(app)
}

async fn log_and_version(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    let bytes = resp
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| resp.body().size_hint().exact())
        .unwrap_or(0);
    eprintln!(
        "{method} {path} {} {bytes} {:.3}ms",
        resp.status().as_u16(),
        start.elapsed().as_secs_f64() * 1000.0
    );
    resp
}

/// With an htpasswd file, `/v2…` needs basic credentials (`/healthz` stays open).
async fn require_auth(
    State(htpasswd): State<Option<Arc<Htpasswd>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(h) = htpasswd else {
        return next.run(req).await;
    };
    if !req.uri().path().starts_with("/v2") {
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // bcrypt is slow by design: keep it off the async workers, and only pay it once per
    // credentials.
    let ok = h.known_good(header.as_deref())
        || tokio::task::spawn_blocking(move || h.check(header.as_deref()))
            .await
            .unwrap_or(false);
    if ok {
        return next.run(req).await;
    }
    RegistryError::bare(ErrorKind::Unauthorized)
        .with_header(
            axum::http::header::WWW_AUTHENTICATE,
            &format!("Basic realm=\"{REALM}\""),
        )
        .into_response()
}

/// What the token middleware needs: the verifier and where to send clients for tokens.
struct TokenGate {
    verifier: Verifier,
    /// None: this registry's `/token`, at the scheme and `Host` the client used.
    realm: Option<String>,
    fallback_host: String,
    tls: bool,
}

type TokenParts = (Arc<TokenGate>, Option<Arc<Issuer>>);

fn token_auth(
    tc: &TokenConfig,
    htpasswd: Option<Arc<Htpasswd>>,
    addr: SocketAddr,
    tls: bool,
) -> Result<TokenParts, ServeError> {
    let mut keys = match &tc.rootcert {
        Some(p) => token::load_public_keys(p)?,
        None => Vec::new(),
    };
    let issuer = match &tc.key {
        Some(p) => {
            let key = SigningKey::load(p)?;
            keys.push(key.trusted());
            let htpasswd = htpasswd.ok_or_else(|| {
                ServeError::TokenConfig("the built-in token server needs an htpasswd file".into())
            })?;
            Some(Arc::new(Issuer {
                key,
                service: tc.service.clone(),
                issuer: tc.issuer.clone(),
                htpasswd,
                anonymous_pull: tc.anonymous_pull,
            }))
        }
        None => None,
    };
    let gate = Arc::new(TokenGate {
        verifier: Verifier::new(tc.service.clone(), tc.issuer.clone(), keys),
        realm: tc.realm.clone(),
        fallback_host: addr.to_string(),
        tls,
    });
    Ok((gate, issuer))
}

/// In token mode, `/v2…` needs a bearer token granting what the endpoint needs (`/healthz` and
/// `/token` stay open).
async fn require_token(State(gate): State<Arc<TokenGate>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !(path == "/v2" || path.starts_with("/v2/")) {
        return next.run(req).await;
    }
    // A path that does not parse needs only a valid token; its handler then says what is wrong.
    let needed = match parse_route(path.strip_prefix("/v2/").unwrap_or("")) {
        Ok(route) => {
            let q = parse_query(req.uri().query()).unwrap_or_default();
            let from = query_get(&q, "from").and_then(|f| Name::parse(f).ok());
            scope::required(&route, req.method(), from.as_ref())
        }
        Err(_) => Vec::new(),
    };
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let (error, message) = match gate.verifier.verify(header) {
        Ok(granted) if scope::satisfies(&granted, &needed) => return next.run(req).await,
        Ok(_) => (
            Some("insufficient_scope"),
            format!(
                "insufficient scope: the token does not grant {}",
                scope::challenge_scope(&needed)
            ),
        ),
        Err(Rejection::Missing) => (None, "authentication required".to_string()),
        Err(Rejection::Invalid(why)) => (Some("invalid_token"), why),
    };
    let realm = gate.realm.clone().unwrap_or_else(|| {
        let host = req
            .headers()
            .get(axum::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .filter(|h| !h.is_empty() && !h.contains(['"', '/', ' ']))
            .unwrap_or(&gate.fallback_host);
        let scheme = if gate.tls { "https" } else { "http" };
        format!("{scheme}://{host}/token")
    });
    RegistryError::new(ErrorKind::Unauthorized, message)
        .with_header(
            axum::http::header::WWW_AUTHENTICATE,
            &token::challenge(&realm, &gate.verifier.service, &needed, error),
        )
        .into_response()
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

//! HTTP routing: one catch-all `/v2/{*path}` route, parsed by [`crate::endpoint::parse_route`]
//! into a typed endpoint, then dispatched by method to a thin handler. Each handler carries the
//! spec's request above it.

mod blobs;
mod body;
mod lists;
mod manifests;
mod uploads;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use crate::endpoint::{Route, parse_query, parse_route};
use crate::error::{ErrorKind, RegistryError, Result};
use crate::storage::{Storage, StorageError};

pub struct App<S> {
    pub storage: S,
    pub read_only: bool,
    /// Sent as `OCI-Chunk-Min-Length` when an upload session opens (0: not sent).
    pub chunk_min_length: u64,
}

pub fn router<S: Storage>(app: Arc<App<S>>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v2", any(dispatch::<S>))
        .route("/v2/", any(dispatch::<S>))
        .route("/v2/{*path}", any(dispatch::<S>))
        .fallback(|| async { RegistryError::bare(ErrorKind::RouteUnknown) })
        .with_state(app)
}

async fn dispatch<S: Storage>(State(app): State<Arc<App<S>>>, req: Request) -> Response {
    match route(&app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route<S: Storage>(app: &App<S>, req: Request) -> Result<Response> {
    let path = req.uri().path();
    let rest = path.strip_prefix("/v2/").unwrap_or("");
    let endpoint = parse_route(rest)?;
    let query = parse_query(req.uri().query())?;
    let method = req.method().clone();
    let reading = method == Method::GET || method == Method::HEAD;
    if app.read_only && !reading {
        return Err(RegistryError::new(
            ErrorKind::Unsupported,
            "the registry is read-only",
        ));
    }
    let st = &app.storage;
    let head = method == Method::HEAD;
    match (endpoint, method) {
        (Route::Base, m) if m == Method::GET || m == Method::HEAD => Ok(base()),
        (Route::Catalog, Method::GET) => lists::catalog(st, &query).await,
        (Route::Tags(n), Method::GET) => lists::tags(st, &n, &query).await,
        (Route::Referrers(n, d), Method::GET) => lists::referrers(st, &n, &d, &query).await,
        (Route::Blob(n, d), m) if reading && (m == Method::GET || head) => {
            blobs::get(st, &n, &d, req.headers(), head).await
        }
        (Route::Blob(n, d), Method::DELETE) => blobs::delete(st, &n, &d).await,
        (Route::UploadStart(n), Method::POST) => {
            uploads::start(st, &n, &query, app.chunk_min_length, req).await
        }
        (Route::Upload(n, id), Method::GET) => uploads::status(st, &n, id).await,
        (Route::Upload(n, id), Method::PATCH) => uploads::patch(st, &n, id, req).await,
        (Route::Upload(n, id), Method::PUT) => uploads::put(st, &n, id, &query, req).await,
        (Route::Upload(n, id), Method::DELETE) => uploads::cancel(st, &n, id).await,
        (Route::Manifest(n, r), m) if m == Method::GET || head => {
            manifests::get(st, &n, &r, head).await
        }
        (Route::Manifest(n, r), Method::PUT) => manifests::put(st, &n, &r, &query, req).await,
        (Route::Manifest(n, r), Method::DELETE) => manifests::delete(st, &n, &r).await,
        (Route::ManifestBadReference(_, r), m) => manifests::bad_reference(&r, &m),
        (_, m) => Err(RegistryError::new(
            ErrorKind::MethodNotAllowed,
            format!("{m} is not allowed here"),
        )),
    }
}

// GET /v2/  (end-1)
fn base() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}

impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> Self {
        let kind = match &e {
            StorageError::Io { .. } | StorageError::Corrupt { .. } | StorageError::Store { .. } => {
                ErrorKind::Internal
            }
            StorageError::Body(_) => ErrorKind::BlobUploadInvalid,
            StorageError::DigestMismatch { .. } | StorageError::AlgorithmMismatch { .. } => {
                ErrorKind::DigestInvalid
            }
            StorageError::SizeMismatch { .. } => ErrorKind::SizeInvalid,
            StorageError::RangeMismatch { .. } => ErrorKind::RangeInvalid,
            StorageError::UploadUnknown(_) => ErrorKind::BlobUploadUnknown,
        };
        RegistryError::new(kind, e.to_string())
    }
}

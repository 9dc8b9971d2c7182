//! Request and response bodies the handlers share: a request body as a stream, its declared
//! length, and the empty responses most endpoints send.

use std::io;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::TryStreamExt;

use crate::error::{ErrorKind, RegistryError, Result};
use crate::storage::ByteStream;

/// A request body as a stream of chunks (never collected).
pub(crate) fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(io::Error::other))
}

pub(crate) fn content_length(h: &HeaderMap) -> Result<Option<u64>> {
    match h.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| RegistryError::new(ErrorKind::SizeInvalid, "invalid Content-Length")),
    }
}

/// A response with no body but the given status and headers; `Content-Length: 0` unless a
/// header sets it (HEAD keeps the length of what GET would send).
pub(crate) fn empty(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.append(*k, v);
        }
    }
    if !h.contains_key(header::CONTENT_LENGTH) {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    resp
}

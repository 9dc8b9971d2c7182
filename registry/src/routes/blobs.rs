//! Blob reads and deletes (end-2, end-10). Bodies are streamed from the open file.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use oci_spec::image::Digest;

use super::empty;
use crate::endpoint::Name;
use crate::error::{ErrorKind, RegistryError, Result};
use crate::range::{RangeRequest, parse_range};
use crate::storage::Storage;

fn unknown(d: &Digest) -> RegistryError {
    RegistryError::new(
        ErrorKind::BlobUnknown,
        format!("blob {d} unknown to registry"),
    )
}

// GET /v2/<name>/blobs/<digest>            200 (206 with Range) | 404 BLOB_UNKNOWN
// HEAD /v2/<name>/blobs/<digest>           200 Content-Length, Docker-Content-Digest | 404
pub async fn get<S: Storage>(
    st: &S,
    name: &Name,
    d: &Digest,
    h: &HeaderMap,
    head: bool,
) -> Result<Response> {
    let Some(size) = st.blob_size(name, d).await? else {
        return Err(unknown(d));
    };
    let common = [
        ("docker-content-digest", d.to_string()),
        ("accept-ranges", "bytes".to_string()),
        ("content-type", "application/octet-stream".to_string()),
    ];
    if head {
        let mut hs = common.to_vec();
        hs.push(("content-length", size.to_string()));
        return Ok(empty(StatusCode::OK, &hs));
    }
    let range = parse_range(h.get(header::RANGE).and_then(|v| v.to_str().ok()), size);
    let (status, start, len) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            return Err(RegistryError::new(
                ErrorKind::RangeInvalid,
                format!("range not satisfiable for a blob of {size} bytes"),
            )
            .with_header(header::CONTENT_RANGE, &format!("bytes */{size}")));
        }
    };
    let Some(blob) = st.blob_open(name, d, start, len).await? else {
        return Err(unknown(d));
    };
    let body = Body::from_stream(blob.body);
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let hm = resp.headers_mut();
    for (k, v) in common {
        if let Ok(v) = HeaderValue::from_str(&v) {
            hm.insert(k, v);
        }
    }
    hm.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        hm.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

// DELETE /v2/<name>/blobs/<digest>         202 | 404 BLOB_UNKNOWN
pub async fn delete<S: Storage>(st: &S, name: &Name, d: &Digest) -> Result<Response> {
    if !st.blob_delete(name, d).await? {
        return Err(unknown(d));
    }
    Ok(empty(
        StatusCode::ACCEPTED,
        &[("docker-content-digest", d.to_string())],
    ))
}

//! Blob uploads: monolithic (POST then PUT, or one POST with `digest`), chunked (PATCH with
//! `Content-Range`), status, cancel, and cross-repository mount (end-4 … end-6, end-11, end-13,
//! end-14).

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use oci_spec::image::{Digest, DigestAlgorithm};
use uuid::Uuid;

use super::body::{body_stream, content_length, empty};
use crate::endpoint::{Name, parse_digest, query_get};
use crate::error::{ErrorKind, RegistryError, Result};
use crate::range::{ContentRange, upload_range_header};
use crate::storage::{Storage, StorageError};

fn upload_location(name: &Name, id: Uuid) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn blob_created(name: &Name, d: &Digest) -> Response {
    empty(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{d}")),
            ("docker-content-digest", d.to_string()),
        ],
    )
}

fn session_headers(name: &Name, id: Uuid, offset: u64) -> Vec<(&'static str, String)> {
    vec![
        ("location", upload_location(name, id)),
        ("range", upload_range_header(offset)),
        ("docker-upload-uuid", id.to_string()),
    ]
}

fn unknown(id: Uuid) -> RegistryError {
    RegistryError::new(ErrorKind::BlobUploadUnknown, format!("upload {id} unknown"))
}

/// Map a storage failure on session `id`, giving a 416 the `Range` and `Location` the spec asks.
fn session_error(name: &Name, id: Uuid, e: StorageError) -> RegistryError {
    match e {
        StorageError::RangeMismatch { offset, .. } => {
            let mut err = RegistryError::from(e);
            for (k, v) in session_headers(name, id, offset) {
                err = err.with_header(header::HeaderName::from_static(k), &v);
            }
            err
        }
        other => other.into(),
    }
}

fn content_range(h: &HeaderMap) -> Result<Option<ContentRange>> {
    h.get(header::CONTENT_RANGE)
        .map(|v| ContentRange::parse(v.to_str().unwrap_or("")))
        .transpose()
}

/// The declared chunk length: `Content-Range` and `Content-Length` must agree when both are given.
fn chunk_len(h: &HeaderMap, cr: Option<ContentRange>) -> Result<Option<u64>> {
    let cl = content_length(h)?;
    match (cr, cl) {
        (Some(r), Some(l)) if r.size() != l => Err(RegistryError::new(
            ErrorKind::SizeInvalid,
            format!(
                "Content-Range covers {} bytes but Content-Length is {l}",
                r.size()
            ),
        )),
        (Some(r), _) => Ok(Some(r.size())),
        (None, l) => Ok(l),
    }
}

// POST /v2/<name>/blobs/uploads/                          202 Location, Docker-Upload-UUID, Range,
//                                                         OCI-Chunk-Min-Length (end-4a)
// POST /v2/<name>/blobs/uploads/?digest=<digest>          201 Location | 400 DIGEST_INVALID (end-4b)
// POST /v2/<name>/blobs/uploads/?digest-algorithm=<alg>   202 | 400 for other than sha256/sha512 (end-4c)
// POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other_name>
//                                                         201 when mounted, else 202 new session (end-11)
pub async fn start<S: Storage>(
    st: &S,
    name: &Name,
    q: &[(String, String)],
    chunk_min_length: u64,
    req: Request,
) -> Result<Response> {
    if let Some(m) = query_get(q, "mount") {
        let d = parse_digest(m)?;
        // Without `from` (or with one we cannot read) we do not look the digest up elsewhere: a
        // guessed digest must not reach another repository's blob.
        if let Some(from) = query_get(q, "from").and_then(|f| Name::parse(f).ok())
            && st.blob_mount(name, &from, &d).await?
        {
            return Ok(blob_created(name, &d));
        }
    } else if let Some(ds) = query_get(q, "digest") {
        let d = parse_digest(ds)?;
        let len = content_length(req.headers())?;
        st.blob_put(name, &d, body_stream(req.into_body()), len)
            .await?;
        return Ok(blob_created(name, &d));
    } else if let Some(alg) = query_get(q, "digest-algorithm") {
        // Chunks are hashed in sha256 as they arrive and read again to finish in another
        // algorithm, so the parameter only has to name one the storage can address.
        let known = match alg {
            "sha256" => Some(DigestAlgorithm::Sha256),
            "sha512" => Some(DigestAlgorithm::Sha512),
            _ => None,
        };
        let Some(a) = known else {
            return Err(RegistryError::new(
                ErrorKind::DigestInvalid,
                format!("digest algorithm {alg} is not supported, only sha256 and sha512"),
            ));
        };
        let id = st.upload_start_in(name, &a).await?;
        return Ok(session_opened(name, id, chunk_min_length));
    }
    let id = st.upload_start(name).await?;
    Ok(session_opened(name, id, chunk_min_length))
}

/// 202 for a new session, with what the client needs to send its chunks.
fn session_opened(name: &Name, id: Uuid, chunk_min_length: u64) -> Response {
    let mut headers = session_headers(name, id, 0);
    if chunk_min_length > 0 {
        headers.push(("oci-chunk-min-length", chunk_min_length.to_string()));
    }
    empty(StatusCode::ACCEPTED, &headers)
}

// GET <blob-push-location>                                 204 Location, Range | 404 BLOB_UPLOAD_UNKNOWN (end-13)
pub async fn status<S: Storage>(st: &S, name: &Name, id: Uuid) -> Result<Response> {
    let offset = st
        .upload_offset(name, id)
        .await?
        .ok_or_else(|| unknown(id))?;
    Ok(empty(
        StatusCode::NO_CONTENT,
        &session_headers(name, id, offset),
    ))
}

// PATCH <blob-push-location>
// Content-Range: <start>-<end>   Content-Length: <length>
//                                                          202 Location, Range | 416 out of order | 404 (end-5)
pub async fn patch<S: Storage>(st: &S, name: &Name, id: Uuid, req: Request) -> Result<Response> {
    let cr = content_range(req.headers())?;
    let len = chunk_len(req.headers(), cr)?;
    let offset = st
        .upload_append(
            name,
            id,
            cr.map(|r| r.start),
            body_stream(req.into_body()),
            len,
        )
        .await
        .map_err(|e| session_error(name, id, e))?;
    Ok(empty(
        StatusCode::ACCEPTED,
        &session_headers(name, id, offset),
    ))
}

// PUT <blob-push-location>?digest=<digest>
// [Content-Range, Content-Length: final chunk]             201 Location | 400 DIGEST_INVALID | 404 | 416 (end-6)
pub async fn put<S: Storage>(
    st: &S,
    name: &Name,
    id: Uuid,
    q: &[(String, String)],
    req: Request,
) -> Result<Response> {
    let ds = query_get(q, "digest").ok_or_else(|| {
        RegistryError::new(
            ErrorKind::DigestInvalid,
            "the closing PUT needs ?digest=<digest>",
        )
    })?;
    let d = parse_digest(ds)?;
    let cr = content_range(req.headers())?;
    let len = chunk_len(req.headers(), cr)?;
    let has_body =
        len.is_some_and(|l| l > 0) || req.headers().contains_key(header::TRANSFER_ENCODING);
    // A whole blob in the closing PUT of an empty session (POST then PUT) in another algorithm
    // than sha256: pushed as one, so a backend whose sessions hash in sha256 as chunks arrive
    // need not have been told the algorithm at the POST.
    if has_body
        && *d.algorithm() != DigestAlgorithm::Sha256
        && cr.is_none_or(|r| r.start == 0)
        && st.upload_offset(name, id).await? == Some(0)
    {
        st.blob_put(name, &d, body_stream(req.into_body()), len)
            .await?;
        st.upload_cancel(name, id).await?;
        return Ok(blob_created(name, &d));
    }
    if has_body {
        st.upload_append(
            name,
            id,
            cr.map(|r| r.start),
            body_stream(req.into_body()),
            len,
        )
        .await
        .map_err(|e| session_error(name, id, e))?;
    } else if st.upload_offset(name, id).await?.is_none() {
        return Err(unknown(id));
    }
    st.upload_finish(name, id, &d)
        .await
        .map_err(|e| session_error(name, id, e))?;
    Ok(blob_created(name, &d))
}

// DELETE <blob-push-location>                              204 | 404 BLOB_UPLOAD_UNKNOWN (end-14)
pub async fn cancel<S: Storage>(st: &S, name: &Name, id: Uuid) -> Result<Response> {
    if !st.upload_cancel(name, id).await? {
        return Err(unknown(id));
    }
    Ok(empty(StatusCode::NO_CONTENT, &[]))
}

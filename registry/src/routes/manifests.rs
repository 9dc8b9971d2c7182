//! Manifests and image indexes by tag or digest (end-3, end-7, end-9).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use oci_spec::image::DigestAlgorithm;

use super::body::empty;
use crate::endpoint::{Name, Reference, Tag};
use crate::error::{ErrorKind, RegistryError, Result};
use crate::manifest::{MAX_MANIFEST_BYTES, Needed, check};
use crate::storage::hash::digest_of;
use crate::storage::{NewManifest, Storage};

fn unknown(r: &Reference) -> RegistryError {
    let what = match r {
        Reference::Tag(t) => t.to_string(),
        Reference::Digest(d) => d.to_string(),
    };
    RegistryError::new(
        ErrorKind::ManifestUnknown,
        format!("manifest {what} unknown"),
    )
}

// GET /v2/<name>/manifests/<tag-or-digest>     200 Content-Type (as pushed), Docker-Content-Digest | 404
// HEAD /v2/<name>/manifests/<tag-or-digest>    the same without a body (end-3)
pub async fn get<S: Storage>(st: &S, name: &Name, r: &Reference, head: bool) -> Result<Response> {
    let m = st.manifest_get(name, r).await?.ok_or_else(|| unknown(r))?;
    let headers = [
        ("content-type", m.media_type.clone()),
        ("docker-content-digest", m.digest.to_string()),
        ("content-length", m.bytes.len().to_string()),
    ];
    if head {
        return Ok(empty(StatusCode::OK, &headers));
    }
    let mut resp = Response::new(Body::from(m.bytes));
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    Ok(resp)
}

// GET/HEAD /v2/<name>/manifests/<neither>     404 MANIFEST_UNKNOWN: end-3 fails with 404 only
// PUT/DELETE /v2/<name>/manifests/<neither>   400 TAG_INVALID (as MANIFEST_INVALID) / DIGEST_INVALID
pub fn bad_reference(r: &str, method: &Method) -> Result<Response> {
    let invalid = match Reference::parse(r) {
        Err(e) => e,
        Ok(_) => RegistryError::new(
            ErrorKind::ManifestInvalid,
            format!("invalid reference {r:?}"),
        ),
    };
    match *method {
        Method::GET | Method::HEAD => Err(RegistryError::new(
            ErrorKind::ManifestUnknown,
            format!("manifest unknown: {}", invalid.message),
        )),
        Method::PUT | Method::DELETE => Err(invalid),
        ref m => Err(RegistryError::new(
            ErrorKind::MethodNotAllowed,
            format!("{m} is not allowed here"),
        )),
    }
}

// PUT /v2/<name>/manifests/<tag-or-digest>
// Content-Type: <media type>                    201 Location, Docker-Content-Digest [, OCI-Subject] (end-7a)
// PUT /v2/<name>/manifests/<digest>?tag=1&tag=2 201 … OCI-Tag per accepted tag (end-7b)
//                                               400 MANIFEST_INVALID / DIGEST_INVALID / MANIFEST_BLOB_UNKNOWN,
//                                               413 when over 4 MiB
pub async fn put<S: Storage>(
    st: &S,
    name: &Name,
    r: &Reference,
    q: &[(String, String)],
    req: Request,
) -> Result<Response> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = read_limited(req.into_body()).await?;
    let checked = check(content_type.as_deref(), &bytes)?;
    // Pushed by digest, the manifest is addressed in that digest's algorithm; by tag, sha256.
    let alg = match r {
        Reference::Digest(d) => d.algorithm().clone(),
        Reference::Tag(_) => DigestAlgorithm::Sha256,
    };
    let digest = digest_of(&alg, &bytes);
    let mut tags: Vec<Tag> = Vec::new();
    match r {
        Reference::Digest(d) if *d != digest => {
            return Err(RegistryError::new(
                ErrorKind::DigestInvalid,
                format!("manifest has digest {digest}, not {d}"),
            ));
        }
        Reference::Digest(_) => {}
        Reference::Tag(t) => tags.push(t.clone()),
    }
    let mut query_tags = Vec::new();
    for (k, v) in q {
        if k == "tag" {
            let t = Tag::parse(v)?;
            if !tags.contains(&t) {
                tags.push(t.clone());
            }
            query_tags.push(t);
        }
    }
    for n in &checked.needed {
        let present = match n {
            Needed::Blob(d) => st.blob_size(name, d).await?.is_some(),
            Needed::Manifest(d) => st.manifest_exists(name, d).await?,
        };
        if !present {
            let d = match n {
                Needed::Blob(d) | Needed::Manifest(d) => d,
            };
            return Err(RegistryError::new(
                ErrorKind::ManifestBlobUnknown,
                format!("{d} is not in repository {name}"),
            ));
        }
    }
    let subject = checked
        .subject
        .clone()
        .map(|s| (s, checked.referrer_descriptor(&digest, bytes.len() as u64)));
    let mut headers = vec![
        ("location", format!("/v2/{name}/manifests/{digest}")),
        ("docker-content-digest", digest.to_string()),
    ];
    if let Some((s, _)) = &subject {
        headers.push(("oci-subject", s.to_string()));
    }
    for t in &query_tags {
        headers.push(("oci-tag", t.to_string()));
    }
    st.manifest_put(
        name,
        NewManifest {
            digest,
            media_type: checked.media_type,
            bytes,
            subject,
        },
        tags,
    )
    .await?;
    Ok(empty(StatusCode::CREATED, &headers))
}

/// Collect a manifest body, refusing more than the limit as soon as it is exceeded.
async fn read_limited(body: Body) -> Result<bytes::Bytes> {
    let mut s = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| {
            RegistryError::new(ErrorKind::ManifestInvalid, format!("reading manifest: {e}"))
        })?;
        if buf.len() + chunk.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::new(
                ErrorKind::ManifestTooLarge,
                format!("manifest exceeds {MAX_MANIFEST_BYTES} bytes"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

// DELETE /v2/<name>/manifests/<tag>       202 | 404 MANIFEST_UNKNOWN (end-9, tag)
// DELETE /v2/<name>/manifests/<digest>    202 | 404 MANIFEST_UNKNOWN; its tags go too (end-9)
pub async fn delete<S: Storage>(st: &S, name: &Name, r: &Reference) -> Result<Response> {
    let found = match r {
        Reference::Tag(t) => st.tag_delete(name, t).await?,
        Reference::Digest(d) => st.manifest_delete(name, d).await?,
    };
    if !found {
        return Err(unknown(r));
    }
    Ok(empty(StatusCode::ACCEPTED, &[]))
}

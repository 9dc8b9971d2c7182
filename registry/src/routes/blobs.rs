//! Blob reads and deletes (end-2, end-10). Bodies are streamed from the open file.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use oci_spec::image::Digest;

use super::body::empty;
use crate::endpoint::Name;
use crate::error::{ErrorKind, RegistryError, Result};
use crate::range::{RangeRequest, parse_range, store_can_serve};
use crate::storage::Storage;

fn unknown(d: &Digest) -> RegistryError {
    RegistryError::new(
        ErrorKind::BlobUnknown,
        format!("blob {d} unknown to registry"),
    )
}

// GET /v2/<name>/blobs/<digest>            200 (206 with Range) | 307 Location | 404 BLOB_UNKNOWN
// HEAD /v2/<name>/blobs/<digest>           200 Content-Length, Docker-Content-Digest | 404
//
// On a bucket with redirects on, a GET answers 307 with a presigned URL of the object holding
// the bytes (as distribution's storage drivers); the client's Range then goes to the object
// store. HEAD is always answered here, from what the registry knows, with no extra round trip,
// and so is a GET whose Range not every store takes (a suffix `bytes=-N`: Azure refuses it).
pub async fn get<S: Storage>(
    st: &S,
    name: &Name,
    d: &Digest,
    h: &HeaderMap,
    head: bool,
) -> Result<Response> {
    let range_header = h.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (size, url) = if head || !store_can_serve(range_header) {
        let Some(size) = st.blob_size(name, d).await? else {
            return Err(unknown(d));
        };
        (size, None)
    } else {
        let Some(loc) = st.blob_locate(name, d).await? else {
            return Err(unknown(d));
        };
        (loc.size, loc.url)
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
    let range = parse_range(range_header, size);
    let (status, start, len) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, size),
        RangeRequest::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            // Refused here, in the spec's error format, rather than by the object store.
            return Err(RegistryError::new(
                ErrorKind::RangeInvalid,
                format!("range not satisfiable for a blob of {size} bytes"),
            )
            .with_header(header::CONTENT_RANGE, &format!("bytes */{size}")));
        }
    };
    if let Some(url) = url {
        return Ok(empty(
            StatusCode::TEMPORARY_REDIRECT,
            &[("location", url), ("docker-content-digest", d.to_string())],
        ));
    }
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

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::time::Duration;

    use axum::response::IntoResponse;
    use bytes::Bytes;
    use object_store::memory::InMemory;
    use object_store::path::Path as Key;
    use object_store::signer::{Method, Signer, Url};

    use super::*;
    use crate::storage::ByteStream;
    use crate::storage::object::{Bucket, ObjectStorage, REDIRECT_VALIDITY};

    /// Signs as a store at `store.test` would, or fails as one whose credentials expired.
    #[derive(Debug)]
    struct TestSigner {
        fail: bool,
    }

    impl Signer for TestSigner {
        fn signed_url<'a, 'b, 'c>(
            &'a self,
            method: Method,
            path: &'b Key,
            expires_in: Duration,
        ) -> Pin<Box<dyn Future<Output = object_store::Result<Url>> + Send + 'c>>
        where
            'a: 'c,
            'b: 'c,
            Self: 'c,
        {
            Box::pin(async move {
                if self.fail {
                    return Err(object_store::Error::Generic {
                        store: "test",
                        source: "the credentials expired".into(),
                    });
                }
                let u = format!(
                    "http://store.test/bucket/{path}?X-Method={method}&X-Amz-Expires={}",
                    expires_in.as_secs()
                );
                Ok(Url::parse(&u).expect("url"))
            })
        }
    }

    fn storage(signer: Option<TestSigner>) -> ObjectStorage {
        let mem = Arc::new(InMemory::new());
        let bucket = Bucket {
            store: mem.clone(),
            parts: mem,
            prefix: "reg".into(),
            signer: signer.map(|s| Arc::new(s) as Arc<dyn Signer>),
        };
        ObjectStorage::new(bucket, 16)
    }

    fn body(b: &[u8]) -> ByteStream {
        Box::pin(futures::stream::iter([Ok(Bytes::copy_from_slice(b))]))
    }

    fn digest(b: &[u8]) -> Digest {
        use sha2::Digest as _;
        crate::storage::fs::from_hasher(sha2::Sha256::new_with_prefix(b))
    }

    /// One blob pushed whole (stored inline) and one through a session (by descriptor).
    async fn two_blobs(st: &ObjectStorage, repo: &Name) -> [(Digest, Vec<u8>, String); 2] {
        let small = b"inline bytes".to_vec();
        let ds = digest(&small);
        st.blob_put(repo, &ds, body(&small), None).await.unwrap();
        let big: Vec<u8> = (0..100u8).collect();
        let db = digest(&big);
        let id = st.upload_start(repo).await.unwrap();
        st.upload_append(repo, id, Some(0), body(&big), None)
            .await
            .unwrap();
        st.upload_finish(repo, id, &db).await.unwrap();
        let hs = ds.digest();
        [
            (
                ds.clone(),
                small,
                format!("reg/blobs/sha256/{}/{hs}", &hs[..2]),
            ),
            (db, big, format!("reg/blobs/data/{}", id.hyphenated())),
        ]
    }

    fn headers(range: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(r) = range {
            h.insert(header::RANGE, HeaderValue::from_str(r).unwrap());
        }
        h
    }

    fn header_of<'a>(r: &'a Response, k: &str) -> Option<&'a str> {
        r.headers().get(k).and_then(|v| v.to_str().ok())
    }

    async fn body_of(r: Response) -> Vec<u8> {
        axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn a_get_redirects_to_the_object_holding_the_bytes_and_a_head_does_not() {
        let st = storage(Some(TestSigner { fail: false }));
        let repo = Name::parse("team/app").unwrap();
        for (d, data, key) in two_blobs(&st, &repo).await {
            let want = format!(
                "http://store.test/bucket/{key}?X-Method=GET&X-Amz-Expires={}",
                REDIRECT_VALIDITY.as_secs()
            );
            for range in [None, Some("bytes=3-5")] {
                let r = get(&st, &repo, &d, &headers(range), false).await.unwrap();
                assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT, "{range:?}");
                assert_eq!(header_of(&r, "location"), Some(want.as_str()));
                assert_eq!(
                    header_of(&r, "docker-content-digest"),
                    Some(d.to_string().as_str())
                );
                assert!(body_of(r).await.is_empty());
            }
            // Ranges not every store takes (a suffix: Azure refuses it; several ranges) are
            // served here.
            let r = get(&st, &repo, &d, &headers(Some("bytes=-4")), false)
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
            assert_eq!(header_of(&r, "location"), None);
            assert_eq!(body_of(r).await, data[data.len() - 4..]);
            let r = get(&st, &repo, &d, &headers(Some("bytes=0-1,4-5")), false)
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(body_of(r).await, data);
            // A range past the end is refused here, in the spec's format.
            let past = format!("bytes={}-", data.len());
            let e = get(&st, &repo, &d, &headers(Some(&past)), false)
                .await
                .unwrap_err()
                .into_response();
            assert_eq!(e.status(), StatusCode::RANGE_NOT_SATISFIABLE);
            let r = get(&st, &repo, &d, &HeaderMap::new(), true).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(header_of(&r, "location"), None);
            assert_eq!(
                header_of(&r, "content-length"),
                Some(data.len().to_string().as_str())
            );
        }
        // Not linked into this repository: no URL to anything.
        let other = Name::parse("other").unwrap();
        let d = digest(b"inline bytes");
        let e = get(&st, &other, &d, &HeaderMap::new(), false).await;
        assert_eq!(
            e.unwrap_err().into_response().status(),
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn without_a_signer_or_when_signing_fails_the_registry_streams_the_blob() {
        for st in [storage(None), storage(Some(TestSigner { fail: true }))] {
            let repo = Name::parse("r").unwrap();
            for (d, data, _) in two_blobs(&st, &repo).await {
                let r = get(&st, &repo, &d, &HeaderMap::new(), false).await.unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                assert_eq!(header_of(&r, "location"), None);
                assert_eq!(body_of(r).await, data);
                let r = get(&st, &repo, &d, &headers(Some("bytes=2-4")), false)
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
                assert_eq!(body_of(r).await, data[2..5]);
            }
        }
    }
}

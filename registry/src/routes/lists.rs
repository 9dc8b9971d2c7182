//! Listings: tags (end-8), the catalog, and referrers (end-12), with `n`/`last` pagination and a
//! `Link: <…>; rel="next"` header when more remain.

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use oci_spec::image::Digest;
use serde_json::json;

use crate::endpoint::{Name, query_get};
use crate::error::{ErrorKind, RegistryError, Result};
use crate::manifest::OCI_INDEX;
use crate::storage::Storage;

/// One page of a listing and, when more remain, `(n, last)` for the next.
type Page = (Vec<String>, Option<(usize, String)>);

/// Apply `last` (exclusive start) and `n` (page size) to a sorted list; the second value is the
/// `last` for the next page, when there is one.
fn paginate(items: Vec<String>, q: &[(String, String)]) -> Result<Page> {
    let n = match query_get(q, "n") {
        None | Some("") => None,
        Some(s) => Some(s.parse::<usize>().map_err(|_| {
            RegistryError::new(
                ErrorKind::PaginationInvalid,
                format!("n={s:?} is not a non-negative integer"),
            )
        })?),
    };
    let mut rest: Vec<String> = match query_get(q, "last") {
        Some(last) if !last.is_empty() => items.into_iter().filter(|t| t.as_str() > last).collect(),
        _ => items,
    };
    match n {
        Some(n) if rest.len() > n => {
            rest.truncate(n);
            let next = if n == 0 {
                None
            } else {
                rest.last().map(|l| (n, l.clone()))
            };
            Ok((rest, next))
        }
        _ => Ok((rest, None)),
    }
}

fn with_link(mut resp: Response, base: &str, next: Option<(usize, String)>) -> Response {
    if let Some((n, last)) = next
        && let Ok(v) = HeaderValue::from_str(&format!("<{base}?n={n}&last={last}>; rel=\"next\""))
    {
        resp.headers_mut().insert(header::LINK, v);
    }
    resp
}

// GET /v2/<name>/tags/list                       200 {"name","tags"} | 404 NAME_UNKNOWN (end-8a)
// GET /v2/<name>/tags/list?n=<int>&last=<tag>    200, Link when more remain (end-8b)
pub async fn tags<S: Storage>(st: &S, name: &Name, q: &[(String, String)]) -> Result<Response> {
    let all = st.tags(name).await?.ok_or_else(|| {
        RegistryError::new(
            ErrorKind::NameUnknown,
            format!("repository {name} not known to registry"),
        )
    })?;
    let (page, next) = paginate(all, q)?;
    let resp = Json(json!({"name": name.as_str(), "tags": page})).into_response();
    Ok(with_link(resp, &format!("/v2/{name}/tags/list"), next))
}

// GET /v2/_catalog[?n=<int>&last=<name>]         200 {"repositories"}, Link when more remain
pub async fn catalog<S: Storage>(st: &S, q: &[(String, String)]) -> Result<Response> {
    let (page, next) = paginate(st.repositories().await?, q)?;
    let resp = Json(json!({"repositories": page})).into_response();
    Ok(with_link(resp, "/v2/_catalog", next))
}

// GET /v2/<name>/referrers/<digest>                          200 image index (never 404) (end-12a)
// GET /v2/<name>/referrers/<digest>?artifactType=<type>      200, OCI-Filters-Applied: artifactType (end-12b)
pub async fn referrers<S: Storage>(
    st: &S,
    name: &Name,
    d: &Digest,
    q: &[(String, String)],
) -> Result<Response> {
    let mut list = st.referrers(name, d).await?;
    let filter = query_get(q, "artifactType").filter(|a| !a.is_empty());
    if let Some(a) = filter {
        list.retain(|desc| {
            desc.artifact_type()
                .as_ref()
                .is_some_and(|t| t.to_string() == a)
        });
    }
    let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list});
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    if filter.is_some() {
        resp.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        crate::endpoint::parse_query(Some(s)).unwrap()
    }

    #[test]
    fn pagination() {
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            paginate(items.clone(), &q("")).unwrap(),
            (items.clone(), None)
        );
        let (p, next) = paginate(items.clone(), &q("n=2")).unwrap();
        assert_eq!(p, ["a", "b"]);
        assert_eq!(next, Some((2, "b".to_string())));
        let (p, next) = paginate(items.clone(), &q("n=2&last=b")).unwrap();
        assert_eq!(p, ["c", "d"]);
        assert_eq!(next, None);
        let (p, next) = paginate(items.clone(), &q("n=0")).unwrap();
        assert!(p.is_empty() && next.is_none());
        assert_eq!(paginate(items.clone(), &q("last=c")).unwrap().0, ["d"]);
        assert_eq!(
            paginate(items, &q("n=-1")).unwrap_err().kind,
            ErrorKind::PaginationInvalid
        );
    }
}

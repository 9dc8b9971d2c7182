//! Listings: tags (end-8), the catalog, and referrers (end-12), with `n`/`last` pagination and a
//! `Link: <…>; rel="next"` header when more remain. Referrers are also paged by size: a page is
//! an image index, and one larger than a manifest may be could not be read back as one.

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use oci_spec::image::{Descriptor, Digest};
use serde_json::json;

use crate::endpoint::{Name, query_get};
use crate::error::{ErrorKind, RegistryError, Result};
use crate::manifest::{MAX_MANIFEST_BYTES, OCI_INDEX};
use crate::storage::Storage;

/// One page of a listing and, when more remain, `(n, last)` for the next.
type Page = (Vec<String>, Option<(usize, String)>);

/// Apply `last` (exclusive start) and `n` (page size) to a sorted list; the second value is the
/// `last` for the next page, when there is one.
fn paginate(items: Vec<String>, q: &[(String, String)]) -> Result<Page> {
    let n = page_size(q)?;
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

/// The `n` query parameter, when given.
fn page_size(q: &[(String, String)]) -> Result<Option<usize>> {
    match query_get(q, "n") {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<usize>().map(Some).map_err(|_| {
            RegistryError::new(
                ErrorKind::PaginationInvalid,
                format!("n={s:?} is not a non-negative integer"),
            )
        }),
    }
}

/// The most a referrers page's `manifests` may take when serialized: the page must fit the
/// manifest size limit with room for the index around it.
const REFERRERS_PAGE_BYTES: usize = MAX_MANIFEST_BYTES - 1024;

/// How many of `list` (sorted, after `last`) go on this page: at most `n`, within
/// `budget` bytes of JSON, and at least one when any remain (a descriptor comes from a manifest
/// within the size limit, so it fits a page of its own).
fn referrers_page_len(list: &[Descriptor], n: Option<usize>, budget: usize) -> usize {
    let max = n.unwrap_or(usize::MAX).min(list.len());
    let mut used = 0;
    for (i, d) in list.iter().take(max).enumerate() {
        let len = serde_json::to_vec(d).map_or(0, |v| v.len()) + 1;
        if i > 0 && used + len > budget {
            return i;
        }
        used += len;
    }
    max
}

/// Percent-encode a query value (everything but RFC 3986's unreserved characters and `/`, `:`).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
// Pages: sorted by digest; when the rest does not fit one index (or `n`), `Link: <…?last=<digest>>;
// rel="next"` points at the next page, keeping the filter.
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
    if let Some(last) = query_get(q, "last").filter(|l| !l.is_empty()) {
        list.retain(|desc| desc.digest().to_string().as_str() > last);
    }
    let n = page_size(q)?;
    let len = referrers_page_len(&list, n, REFERRERS_PAGE_BYTES);
    let next = (len < list.len() && len > 0).then(|| list[len - 1].digest().to_string());
    list.truncate(len);
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
    if let Some(last) = next {
        let mut link = format!("</v2/{name}/referrers/{d}?last={}", query_escape(&last));
        if let Some(n) = n {
            link.push_str(&format!("&n={n}"));
        }
        if let Some(a) = filter {
            link.push_str(&format!("&artifactType={}", query_escape(a)));
        }
        link.push_str(">; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
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

    #[test]
    fn referrers_pages_by_count_and_size() {
        let desc = |i: u8, pad: usize| -> Descriptor {
            serde_json::from_value(json!({
                "mediaType": OCI_INDEX,
                "digest": format!("sha256:{}", hex::encode([i; 32])),
                "size": 1,
                "annotations": {"pad": "x".repeat(pad)},
            }))
            .unwrap()
        };
        let list: Vec<Descriptor> = (0..4).map(|i| desc(i, 1000)).collect();
        let one = serde_json::to_vec(&list[0]).unwrap().len() + 1;
        assert_eq!(referrers_page_len(&list, None, usize::MAX), 4);
        assert_eq!(referrers_page_len(&list, Some(3), usize::MAX), 3);
        assert_eq!(referrers_page_len(&list, Some(0), usize::MAX), 0);
        assert_eq!(referrers_page_len(&list, None, 2 * one), 2);
        assert_eq!(referrers_page_len(&list, None, 2 * one - 1), 1);
        // A descriptor larger than the budget still makes a page of its own.
        assert_eq!(referrers_page_len(&list, None, 10), 1);
        assert_eq!(referrers_page_len(&[], None, 10), 0);
        assert_eq!(
            query_escape("application/vnd.a+json x"),
            "application/vnd.a%2Bjson%20x"
        );
    }
}

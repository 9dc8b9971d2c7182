//! `search TERM`: Docker's search against a registry. A registry that offers Docker Hub's
//! `GET /v1/search?q=TERM&n=LIMIT` answers with its own results; a plain OCI registry (which has
//! no search) is searched through its catalog (`/v2/_catalog`, followed page by page), keeping
//! the repositories whose name contains the term.
//!
//! `TERM` names its registry as Docker's CLI reads it: `HOST[:PORT]/TERM` when the first
//! component looks like a host (has a `.` or `:`, or is `localhost`), else Docker Hub.

use super::Options;
use super::client::{MAX_SMALL_BODY, Operation, Session, read_limited};
use super::endpoint::Endpoint;
use super::error::Result;

/// One result, with the fields Docker's `--format` knows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct SearchResult {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub star_count: u64,
    #[serde(default)]
    pub is_official: bool,
    #[serde(default)]
    pub is_automated: bool,
}

/// Catalog pages read at most (`n` repositories each): a registry with more answers only for
/// the first ones, rather than holding the client forever.
const MAX_CATALOG_PAGES: usize = 100;
const CATALOG_PAGE: usize = 1000;
/// A catalog page or a search answer is bounded like any small registry answer, larger: a page
/// of 1000 long names.
const MAX_PAGE_BODY: u64 = 8 * MAX_SMALL_BODY;

/// `(registry domain, term)` from what the user typed.
pub fn split_term(term: &str) -> (String, String) {
    match term.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), term.to_string()),
    }
}

pub(super) async fn search(term: &str, limit: usize, opts: &Options) -> Result<Vec<SearchResult>> {
    let (domain, query) = split_term(term);
    let mut endpoint = Endpoint::new(&domain, &opts.insecure);
    if endpoint.domain == "docker.io" {
        // Docker Hub's search lives on its index host, not on the registry API host.
        endpoint.api_host = "index.docker.io".to_string();
    }
    let creds = super::auth::lookup(&endpoint.domain)?;
    let s = Session::connect(endpoint, "", creds, Operation::Catalog).await?;
    let url = format!("{}://{}/v1/search", s.endpoint.scheme, s.endpoint.api_host);
    let res = s
        .request(reqwest::Method::GET, &url)
        .query(&[("q", query.as_str()), ("n", &limit.to_string())])
        .send()
        .await
        .map_err(|e| s.unreachable(&e))?;
    let status = res.status();
    if status.is_success() {
        let body = bounded(&s, res, "search results").await?;
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            results: Vec<SearchResult>,
        }
        let a: Answer = serde_json::from_slice(&body).map_err(|e| {
            s.misbehaved(format!(
                "answered /v1/search with what is not its JSON: {e}"
            ))
        })?;
        let mut out = a.results;
        out.truncate(limit);
        return Ok(out);
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(s.status_error("search", res).await);
    }
    // No search endpoint (a plain OCI registry): its catalog, filtered here.
    catalog_search(&s, &query, limit).await
}

async fn bounded(s: &Session, res: reqwest::Response, what: &str) -> Result<Vec<u8>> {
    read_limited(res, MAX_PAGE_BODY)
        .await
        .map_err(|e| s.unreachable(&e))?
        .ok_or_else(|| {
            s.misbehaved(format!(
                "sent more than {} MiB of {what}",
                MAX_PAGE_BODY >> 20
            ))
        })
}

async fn catalog_search(s: &Session, query: &str, limit: usize) -> Result<Vec<SearchResult>> {
    let needle = query.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut url = format!(
        "{}://{}/v2/_catalog?n={CATALOG_PAGE}",
        s.endpoint.scheme, s.endpoint.api_host
    );
    for _ in 0..MAX_CATALOG_PAGES {
        let res = s
            .request(reqwest::Method::GET, &url)
            .send()
            .await
            .map_err(|e| s.unreachable(&e))?;
        if !res.status().is_success() {
            return Err(s.status_error("search (the registry's catalog)", res).await);
        }
        let next = res
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link)
            .map(|l| s.absolute(&l));
        let body = bounded(s, res, "catalog").await?;
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            repositories: Vec<String>,
        }
        let page: Page = serde_json::from_slice(&body).map_err(|e| {
            s.misbehaved(format!(
                "answered /v2/_catalog with what is not its JSON: {e}"
            ))
        })?;
        for repo in page.repositories {
            if repo.to_ascii_lowercase().contains(&needle) {
                out.push(SearchResult {
                    // The name to pull it by.
                    name: format!("{}/{repo}", s.endpoint.domain),
                    description: String::new(),
                    star_count: 0,
                    is_official: false,
                    is_automated: false,
                });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    Ok(out)
}

/// The target of `rel="next"` in a `Link` header (`</v2/_catalog?last=x&n=100>; rel="next"`).
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_name_their_registry_as_docker_reads_them() {
        assert_eq!(
            split_term("busybox"),
            ("docker.io".into(), "busybox".into())
        );
        assert_eq!(
            split_term("user/app"),
            ("docker.io".into(), "user/app".into())
        );
        assert_eq!(
            split_term("localhost:5000/app"),
            ("localhost:5000".into(), "app".into())
        );
        assert_eq!(
            split_term("reg.example/team/app"),
            ("reg.example".into(), "team/app".into())
        );
        assert_eq!(split_term("localhost/x"), ("localhost".into(), "x".into()));
    }

    #[test]
    fn next_links_are_read_from_the_link_header() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }
}

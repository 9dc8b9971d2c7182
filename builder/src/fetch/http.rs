//! `ADD http(s)://… dest`: the file is streamed into a temp file and hashed on the way (never
//! held in memory). As BuildKit's http source: the cache key is the content digest (so the URL
//! is checked on every build), with `--checksum` the pinned digest is the key and the content
//! must match it; an ETag seen before is revalidated with `If-None-Match`, and a 304 reuses
//! the digest recorded for it (`ROOT/builder/http/<url hash>.json`) without downloading.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What stops an http source.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid checksum digest format {value:?}: expected sha256:<hex>")]
    ChecksumFormat { value: String },
    #[error("unsupported checksum algorithm {algorithm:?}: berth verifies sha256 digests")]
    ChecksumAlgorithm { algorithm: String },
    #[error(
        "invalid checksum digest {value:?}: expected sha256: followed by 64 lowercase hex digits"
    )]
    ChecksumDigest { value: String },
    #[error("creating {}: {source}", path.display())]
    CreateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the HTTP client: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The request or the body transfer failed (connection, TLS, timeout).
    #[error("failed to fetch {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("failed to fetch {url}: invalid response status {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("creating a temp file in {}: {source}", dir.display())]
    TempFile {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the download of {url}: {source}")]
    Write {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// A 304 answer to a revalidation whose ETag record has gone meanwhile.
    #[error("304 without a recorded ETag")]
    NotModifiedWithoutRecord,
}

/// A finished download.
pub struct Download {
    pub file: tempfile::TempPath,
    /// `sha256:…` of the content.
    pub digest: String,
    pub last_modified: Option<String>,
    pub etag: Option<String>,
}

/// What an ETag stood for the last time it was downloaded.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    etag: String,
    digest: String,
    last_modified: Option<String>,
}

/// The file name ADD gives a URL's content: the last segment of its path (percent-decoded),
/// or `__unnamed__`, as BuildKit's Dockerfile frontend names it.
pub fn file_name(url: &str) -> String {
    let after = url.split_once("://").map_or(url, |(_, r)| r);
    let after = after.split(['?', '#']).next().unwrap_or("");
    let path = after.find('/').map_or("", |i| &after[i..]);
    let base = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let decoded = percent_decode(base);
    if decoded.is_empty() || decoded == "." || decoded == ".." || decoded.contains('/') {
        "__unnamed__".into()
    } else {
        decoded
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mtime BuildKit gives a downloaded file: `Last-Modified`, else the epoch.
pub fn mtime(last_modified: Option<&str>) -> SystemTime {
    last_modified
        .and_then(|s| chrono::DateTime::parse_from_rfc2822(s.trim()).ok())
        .and_then(|t| {
            let secs = u64::try_from(t.timestamp()).ok()?;
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        })
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Checks a `--checksum` value: `sha256:` and 64 hex digits.
pub fn parse_checksum(s: &str) -> Result<String, HttpError> {
    let (alg, _) = s.split_once(':').ok_or_else(|| HttpError::ChecksumFormat {
        value: s.to_string(),
    })?;
    if alg != "sha256" {
        return Err(HttpError::ChecksumAlgorithm {
            algorithm: alg.to_string(),
        });
    }
    berth_store::digest::parse_sha256(s).map_err(|_| HttpError::ChecksumDigest {
        value: s.to_string(),
    })?;
    Ok(s.to_string())
}

fn header(res: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// GETs `url` into a temp file in `tmp`, hashing it; `Ok(None)` when the server answered 304
/// to `If-None-Match: etag`.
pub fn download(
    url: &str,
    tmp: &Path,
    if_none_match: Option<&str>,
) -> Result<Option<Download>, HttpError> {
    std::fs::create_dir_all(tmp).map_err(|source| HttpError::CreateDir {
        path: tmp.to_path_buf(),
        source,
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(HttpError::Runtime)?;
    let unreachable = |e: reqwest::Error| HttpError::Transport {
        url: url.to_string(),
        reason: berth_store::remote::error::transport_reason(&e),
    };
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(HttpError::Client)?;
        let mut req = client.get(url);
        if let Some(t) = if_none_match {
            req = req.header(reqwest::header::IF_NONE_MATCH, t);
        }
        let mut res = req.send().await.map_err(unreachable)?;
        let status = res.status();
        if status == reqwest::StatusCode::NOT_MODIFIED && if_none_match.is_some() {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(HttpError::Status {
                url: url.to_string(),
                status,
            });
        }
        let etag =
            header(&res, reqwest::header::ETAG).map(|t| t.trim_start_matches("W/").to_string());
        let last_modified = header(&res, reqwest::header::LAST_MODIFIED);
        let mut file =
            tempfile::NamedTempFile::new_in(tmp).map_err(|source| HttpError::TempFile {
                dir: tmp.to_path_buf(),
                source,
            })?;
        let mut h = Sha256::new();
        while let Some(chunk) = res.chunk().await.map_err(unreachable)? {
            h.update(&chunk);
            file.write_all(&chunk).map_err(|source| HttpError::Write {
                url: url.to_string(),
                source,
            })?;
        }
        file.as_file()
            .sync_all()
            .map_err(|source| HttpError::Write {
                url: url.to_string(),
                source,
            })?;
        Ok(Some(Download {
            file: file.into_temp_path(),
            digest: format!("sha256:{}", hex::encode(h.finalize())),
            last_modified,
            etag,
        }))
    })
}

fn record_path(state: &Path, url: &str) -> std::path::PathBuf {
    state.join(format!(
        "{}.json",
        hex::encode(Sha256::digest(url.as_bytes()))
    ))
}

/// An http source resolved for the cache key: its content digest, and the download when one
/// was needed for it.
pub struct Resolved {
    pub digest: String,
    pub last_modified: Option<String>,
    pub file: Option<tempfile::TempPath>,
}

/// Resolves an http source for the cache key, as BuildKit does: `--checksum` is the key;
/// otherwise an ETag recorded for this URL is revalidated (304: its digest, no download),
/// and anything else is downloaded and hashed (the file then goes to the step).
pub fn resolve(
    url: &str,
    checksum: Option<&str>,
    state: &Path,
    tmp: &Path,
) -> Result<Resolved, HttpError> {
    if let Some(c) = checksum {
        return Ok(Resolved {
            digest: parse_checksum(c)?,
            last_modified: None,
            file: None,
        });
    }
    let rec_path = record_path(state, url);
    let record: Option<Record> = std::fs::read(&rec_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let Some(d) = download(url, tmp, record.as_ref().map(|r| r.etag.as_str()))? else {
        let r = record.ok_or(HttpError::NotModifiedWithoutRecord)?;
        return Ok(Resolved {
            digest: r.digest,
            last_modified: r.last_modified,
            file: None,
        });
    };
    if let Some(etag) = &d.etag {
        // Best effort: without the record the next build downloads again.
        let rec = Record {
            etag: etag.clone(),
            digest: d.digest.clone(),
            last_modified: d.last_modified.clone(),
        };
        if std::fs::create_dir_all(state).is_ok()
            && let Ok(bytes) = serde_json::to_vec(&rec)
            && let Ok(mut t) = tempfile::NamedTempFile::new_in(state)
            && t.write_all(&bytes).is_ok()
        {
            let _ = t.persist(&rec_path);
        }
    }
    Ok(Resolved {
        digest: d.digest,
        last_modified: d.last_modified,
        file: Some(d.file),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_times() {
        assert_eq!(file_name("http://h/a/b.tar.gz?x=1#f"), "b.tar.gz");
        assert_eq!(file_name("http://h/dir/"), "dir");
        assert_eq!(file_name("http://h"), "__unnamed__");
        assert_eq!(file_name("http://h/a%20b"), "a b");
        assert_eq!(
            mtime(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1445412480)
        );
        assert_eq!(mtime(None), SystemTime::UNIX_EPOCH);
        assert!(matches!(
            parse_checksum("sha256:abc"),
            Err(HttpError::ChecksumDigest { .. })
        ));
        assert!(matches!(
            parse_checksum("md5:abc"),
            Err(HttpError::ChecksumAlgorithm { .. })
        ));
        assert!(parse_checksum(&format!("sha256:{}", "a".repeat(64))).is_ok());
    }
}

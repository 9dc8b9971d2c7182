//! What can go wrong talking to a registry, each variant one line naming the registry or object.

use crate::error::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("registry {registry} is unreachable: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("unauthorized: authentication required for {registry} (run `berth login {registry}`)")]
    Unauthorized { registry: String },
    #[error("unauthorized: incorrect username or password for {registry}")]
    BadCredentials { registry: String },
    /// Docker's words for `push NAME[:TAG]` when no local image has that tag.
    #[error("tag does not exist: {0}")]
    TagNotFound(String),
    /// Docker's words for `push --all-tags NAME` when the repository has no local tag.
    #[error("An image does not exist locally with the tag: {0}")]
    NoLocalTags(String),
    #[error("manifest unknown: {reference} not found in the registry")]
    ManifestUnknown { reference: String },
    #[error("{what}: {detail}")]
    Registry {
        what: String,
        /// Status and the spec's `CODE: message`, e.g. `HTTP 400: MANIFEST_BLOB_UNKNOWN: …`.
        detail: String,
    },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// The registry sent what no honest one would (more bytes than a descriptor lists, an
    /// endless manifest); nothing of it was stored.
    #[error("registry {registry} {problem}; nothing of it was stored")]
    Misbehaved { registry: String, problem: String },
    /// A registry's token server sent what no honest one would (an endless or malformed token
    /// response).
    #[error("token server {realm} of registry {registry} {problem}")]
    TokenServer {
        realm: String,
        registry: String,
        problem: String,
    },
    #[error("no manifest for platform {platform} in the image index of {reference}")]
    NoPlatform { reference: String, platform: String },
    #[error("unsupported {what}: {reason}")]
    Unsupported { what: String, reason: String },
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

/// `: CODE: message` from a distribution-spec error body, or the body's first line.
pub fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<Err>,
    }
    #[derive(serde::Deserialize)]
    struct Err {
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errs>(body)
        && let Some(first) = e.errors.first()
    {
        return if first.message.is_empty() {
            format!(": {}", first.code)
        } else {
            format!(": {}: {}", first.code, first.message)
        };
    }
    let text = String::from_utf8_lossy(body);
    match text.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(l) => format!(": {}", l.chars().take(200).collect::<String>()),
        None => String::new(),
    }
}

/// One line for a transport error, with its innermost cause ("connection refused").
///
/// A TLS client that is answered in plain HTTP sees a record of the wrong content type; Go (and
/// so Docker) says what happened instead, and so does berth, with the way out.
pub fn transport_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    let mut plain_http = false;
    while let Some(s) = cur {
        let t = s.to_string();
        if t.contains("InvalidContentType") {
            plain_http = true;
        } else if !msg.contains(&t) {
            msg = format!("{msg}: {t}");
        }
        cur = s.source();
    }
    if plain_http || msg.contains("InvalidContentType") {
        let first = msg
            .split(": received corrupt message")
            .next()
            .unwrap_or(&msg);
        return format!(
            "{first}: server gave HTTP response to HTTPS client (if the registry serves plain \
             HTTP, pass --insecure-registry or list it in insecure-registries in daemon.json)"
        );
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_from_spec_errors_and_plain_bodies() {
        let b = br#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"x"}]}"#;
        assert_eq!(
            error_detail(b),
            ": MANIFEST_BLOB_UNKNOWN: blob unknown to registry"
        );
        assert_eq!(
            error_detail(b"\n  404 page not found\n"),
            ": 404 page not found"
        );
        assert_eq!(error_detail(b""), "");
    }
}

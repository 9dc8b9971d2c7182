//! The registry's error vocabulary: every failure a handler can report, the one table that maps
//! each to the spec's error code and HTTP status, and its JSON body
//! (`{"errors":[{"code","message","detail"}]}`).

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What went wrong, as the client needs to know it. The code and status live in [`TABLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    /// A chunk that does not start at the session's current offset.
    RangeInvalid,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    ManifestTooLarge,
    TagInvalid,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    PaginationInvalid,
    Unauthorized,
    Denied,
    /// Writes on a read-only registry, deletes where they are disabled.
    Unsupported,
    TooManyRequests,
    RouteUnknown,
    MethodNotAllowed,
    Internal,
}

/// kind -> (code in the JSON body, HTTP status, default message). As distribution's
/// `errcode/register.go`, one place decides what each failure looks like on the wire.
pub const TABLE: &[(ErrorKind, &str, StatusCode, &str)] = &[
    (
        ErrorKind::BlobUnknown,
        "BLOB_UNKNOWN",
        StatusCode::NOT_FOUND,
        "blob unknown to registry",
    ),
    (
        ErrorKind::BlobUploadInvalid,
        "BLOB_UPLOAD_INVALID",
        StatusCode::BAD_REQUEST,
        "blob upload invalid",
    ),
    (
        ErrorKind::BlobUploadUnknown,
        "BLOB_UPLOAD_UNKNOWN",
        StatusCode::NOT_FOUND,
        "blob upload unknown to registry",
    ),
    (
        ErrorKind::RangeInvalid,
        "BLOB_UPLOAD_INVALID",
        StatusCode::RANGE_NOT_SATISFIABLE,
        "chunk out of order",
    ),
    (
        ErrorKind::DigestInvalid,
        "DIGEST_INVALID",
        StatusCode::BAD_REQUEST,
        "provided digest did not match uploaded content",
    ),
    (
        ErrorKind::ManifestBlobUnknown,
        "MANIFEST_BLOB_UNKNOWN",
        StatusCode::BAD_REQUEST,
        "manifest references a manifest or blob unknown to registry",
    ),
    (
        ErrorKind::ManifestInvalid,
        "MANIFEST_INVALID",
        StatusCode::BAD_REQUEST,
        "manifest invalid",
    ),
    (
        ErrorKind::ManifestUnknown,
        "MANIFEST_UNKNOWN",
        StatusCode::NOT_FOUND,
        "manifest unknown to registry",
    ),
    (
        ErrorKind::ManifestTooLarge,
        "SIZE_INVALID",
        StatusCode::PAYLOAD_TOO_LARGE,
        "manifest too large",
    ),
    (
        ErrorKind::TagInvalid,
        "MANIFEST_INVALID",
        StatusCode::BAD_REQUEST,
        "invalid tag",
    ),
    (
        ErrorKind::NameInvalid,
        "NAME_INVALID",
        StatusCode::BAD_REQUEST,
        "invalid repository name",
    ),
    (
        ErrorKind::NameUnknown,
        "NAME_UNKNOWN",
        StatusCode::NOT_FOUND,
        "repository name not known to registry",
    ),
    (
        ErrorKind::SizeInvalid,
        "SIZE_INVALID",
        StatusCode::BAD_REQUEST,
        "provided length did not match content length",
    ),
    (
        ErrorKind::PaginationInvalid,
        "UNSUPPORTED",
        StatusCode::BAD_REQUEST,
        "invalid pagination parameter",
    ),
    (
        ErrorKind::Unauthorized,
        "UNAUTHORIZED",
        StatusCode::UNAUTHORIZED,
        "authentication required",
    ),
    (
        ErrorKind::Denied,
        "DENIED",
        StatusCode::FORBIDDEN,
        "requested access to the resource is denied",
    ),
    (
        ErrorKind::Unsupported,
        "UNSUPPORTED",
        StatusCode::METHOD_NOT_ALLOWED,
        "the operation is unsupported",
    ),
    (
        ErrorKind::TooManyRequests,
        "TOOMANYREQUESTS",
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests",
    ),
    (
        ErrorKind::RouteUnknown,
        "UNSUPPORTED",
        StatusCode::NOT_FOUND,
        "no such endpoint",
    ),
    (
        ErrorKind::MethodNotAllowed,
        "UNSUPPORTED",
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    ),
    (
        ErrorKind::Internal,
        "UNKNOWN",
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error",
    ),
];

impl ErrorKind {
    fn entry(self) -> (&'static str, StatusCode, &'static str) {
        TABLE
            .iter()
            .find(|(k, ..)| *k == self)
            .map(|&(_, c, s, m)| (c, s, m))
            .unwrap_or((
                "UNKNOWN",
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ))
    }

    pub fn code(self) -> &'static str {
        self.entry().0
    }

    pub fn status(self) -> StatusCode {
        self.entry().1
    }
}

/// One error response: kind, a message naming what was wrong, and headers some errors must carry
/// (a 416 says where the upload really is).
#[derive(Debug)]
pub struct RegistryError {
    pub kind: ErrorKind,
    pub message: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl RegistryError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RegistryError {
            kind,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn bare(kind: ErrorKind) -> Self {
        RegistryError::new(kind, kind.entry().2)
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for RegistryError {}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        if self.kind == ErrorKind::Internal {
            tracing::error!("{}", self.message);
        }
        let body = json!({"errors": [{
            "code": self.kind.code(),
            "message": self.message,
            "detail": serde_json::Value::Null,
        }]});
        let mut resp = (self.kind.status(), axum::Json(body)).into_response();
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_every_kind_once() {
        let kinds = [
            ErrorKind::BlobUnknown,
            ErrorKind::BlobUploadInvalid,
            ErrorKind::BlobUploadUnknown,
            ErrorKind::RangeInvalid,
            ErrorKind::DigestInvalid,
            ErrorKind::ManifestBlobUnknown,
            ErrorKind::ManifestInvalid,
            ErrorKind::ManifestUnknown,
            ErrorKind::ManifestTooLarge,
            ErrorKind::TagInvalid,
            ErrorKind::NameInvalid,
            ErrorKind::NameUnknown,
            ErrorKind::SizeInvalid,
            ErrorKind::PaginationInvalid,
            ErrorKind::Unauthorized,
            ErrorKind::Denied,
            ErrorKind::Unsupported,
            ErrorKind::TooManyRequests,
            ErrorKind::RouteUnknown,
            ErrorKind::MethodNotAllowed,
            ErrorKind::Internal,
        ];
        assert_eq!(kinds.len(), TABLE.len());
        for k in kinds {
            assert_eq!(TABLE.iter().filter(|(t, ..)| *t == k).count(), 1, "{k:?}");
        }
    }

    #[test]
    fn spec_codes_and_statuses() {
        assert_eq!(ErrorKind::BlobUnknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(ErrorKind::BlobUnknown.code(), "BLOB_UNKNOWN");
        assert_eq!(ErrorKind::RangeInvalid.status().as_u16(), 416);
        assert_eq!(ErrorKind::DigestInvalid.status().as_u16(), 400);
        assert_eq!(ErrorKind::ManifestTooLarge.status().as_u16(), 413);
        assert_eq!(ErrorKind::Unauthorized.status().as_u16(), 401);
        assert_eq!(ErrorKind::Unsupported.status().as_u16(), 405);
        // Every code is one the spec lists (or distribution's UNKNOWN for 500s).
        let spec = [
            "BLOB_UNKNOWN",
            "BLOB_UPLOAD_INVALID",
            "BLOB_UPLOAD_UNKNOWN",
            "DIGEST_INVALID",
            "MANIFEST_BLOB_UNKNOWN",
            "MANIFEST_INVALID",
            "MANIFEST_UNKNOWN",
            "NAME_INVALID",
            "NAME_UNKNOWN",
            "SIZE_INVALID",
            "UNAUTHORIZED",
            "DENIED",
            "UNSUPPORTED",
            "TOOMANYREQUESTS",
            "UNKNOWN",
        ];
        for (_, code, ..) in TABLE {
            assert!(spec.contains(code), "{code}");
            assert!(code.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        }
    }
}

//! Server settings: from flags, or from a `registry.toml` with the same names
//! (`addr`, `storage`, `read-only`, `htpasswd`, `tls-cert`, `tls-key`, `chunk-min-length`,
//! `auth-token-realm`, `auth-token-service`, `auth-token-issuer`, `auth-token-rootcert`,
//! `auth-token-key`, `auth-token-anonymous-pull`, `max-connections`, `header-timeout`,
//! `idle-timeout`, `write-timeout`); flags win over the file.
//!
//! `storage` is a directory (`storage = "/srv/registry"`, or `--storage DIR`), or a bucket:
//! `--storage s3://BUCKET[/PREFIX]`, `az://CONTAINER[/PREFIX]` (Azure Blob Storage),
//! `gs://BUCKET[/PREFIX]` (Google Cloud Storage), or a table in the file:
//!
//! ```toml
//! [storage]
//! kind = "s3"                   # or "azure" (container = …) or "gcs"
//! bucket = "images"
//! prefix = "registry"           # optional: keys live under it
//! endpoint = "http://127.0.0.1:9000"  # optional: an S3-compatible server; Azure: the
//!                               #   account's blob URL; GCS: the base URL
//! region = "eu-west-1"          # optional, S3 only
//! allow-http = true             # optional: a plain-HTTP endpoint
//! part-size = 8388608           # optional: multipart part size in bytes (S3, GCS: >= 5 MiB)
//! max-retries = 3               # optional: retries of a failed object-store request
//! retry-timeout = "10s"         # optional: no retry starts after this
//! request-timeout = "60s"       # optional: one request's limit
//! redirect = true               # optional, S3 and Azure: blob GETs answer 307 to a presigned
//!                               #   URL of the object (default; false: stream them)
//! ```
//!
//! Azure has `container` instead of `bucket`, and `account` and `use-emulator` (Azurite).
//! Credentials, and anything not set here, come from the environment as each provider's tools
//! read it: S3 `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, …; Azure `AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`, `AZURE_CLIENT_ID`, …; GCS
//! `GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_SERVICE_ACCOUNT_KEY`, `GOOGLE_APPLICATION_CREDENTIALS`, ….
//! The table wins over the environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod storage;
pub use storage::{
    BucketConfig, BucketKind, DEFAULT_PART_SIZE, MIN_PART_SIZE, StorageConfig, StorageSetting,
    StorageTable,
};

#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port`; port 0 picks a free one.
    pub addr: String,
    pub storage: StorageConfig,
    pub read_only: bool,
    /// htpasswd file (bcrypt): when set, every `/v2` request needs basic auth.
    pub htpasswd: Option<PathBuf>,
    /// PEM certificate chain and private key: serve HTTPS instead of HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `OCI-Chunk-Min-Length` announced when an upload session opens; 0 announces none.
    pub chunk_min_length: u64,
    /// Whether `chunk_min_length` was set (else a bucket announces its part size).
    pub chunk_min_length_set: bool,
    /// Bearer-token mode: every `/v2` request needs a token (htpasswd then only guards the
    /// built-in token server).
    pub token: Option<TokenConfig>,
    /// Connection cap; None: derived from the open-file limit at start.
    pub max_connections: Option<usize>,
    /// How long a request head (or TLS handshake) may take to arrive.
    pub header_timeout: Duration,
    /// How long a connection may stay without a request in flight, and a request body without
    /// data.
    pub idle_timeout: Duration,
    /// How long a write to a client may wait without the client taking any data.
    pub write_timeout: Duration,
}

/// The token auth settings, as distribution's `auth.token` section plus the built-in issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// Where clients get tokens. None: this registry's own `/token` (needs `key`), as the
    /// client reached it (scheme and `Host` of the request).
    pub realm: Option<String>,
    /// The `aud` tokens must carry and the `service` of challenges.
    pub service: String,
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// PEM bundle of certificates (or public keys) whose keys may sign tokens.
    pub rootcert: Option<PathBuf>,
    /// Private key of the built-in token server at `/token`; its public half is trusted too.
    pub key: Option<PathBuf>,
    /// The built-in token server grants pull to requests without credentials.
    pub anonymous_pull: bool,
}

/// `service` and `issuer` when the built-in token server is on and they are not set.
pub const DEFAULT_TOKEN_SERVICE: &str = "berth-registry";
pub const DEFAULT_TOKEN_ISSUER: &str = "berth-registry";

impl TokenConfig {
    /// Token settings from the optional parts, or None when none of them is set; an error
    /// says which part is missing.
    pub fn assemble(
        realm: Option<String>,
        service: Option<String>,
        issuer: Option<String>,
        rootcert: Option<PathBuf>,
        key: Option<PathBuf>,
        anonymous_pull: bool,
        htpasswd: bool,
    ) -> Result<Option<TokenConfig>, String> {
        let any = realm.is_some()
            || service.is_some()
            || issuer.is_some()
            || rootcert.is_some()
            || key.is_some()
            || anonymous_pull;
        if !any {
            return Ok(None);
        }
        let builtin = key.is_some();
        if builtin && !htpasswd {
            return Err(
                "the built-in token server (auth-token-key) checks users against an htpasswd file: set htpasswd".into(),
            );
        }
        if !builtin && htpasswd {
            return Err("with an outside token server (no auth-token-key) the registry accepts tokens only: htpasswd would be ignored, leave it out".into());
        }
        if !builtin && anonymous_pull {
            return Err("auth-token-anonymous-pull is a setting of the built-in token server: set auth-token-key".into());
        }
        if !builtin && rootcert.is_none() {
            return Err("token auth needs auth-token-rootcert (the certificates whose keys sign tokens) or auth-token-key (the built-in token server)".into());
        }
        let need = |v: Option<String>, what: &str, default: &str| match v {
            Some(v) => Ok(v),
            None if builtin => Ok(default.to_string()),
            None => Err(format!(
                "token auth with an external token server needs {what}"
            )),
        };
        Ok(Some(TokenConfig {
            realm: match realm {
                Some(r) => Some(r),
                None if builtin => None,
                None => {
                    return Err(
                        "token auth with an external token server needs auth-token-realm (its URL)"
                            .into(),
                    );
                }
            },
            service: need(service, "auth-token-service", DEFAULT_TOKEN_SERVICE)?,
            issuer: need(issuer, "auth-token-issuer", DEFAULT_TOKEN_ISSUER)?,
            rootcert,
            key,
            anonymous_pull,
        }))
    }
}

/// Every PATCH costs an fsync of the session's data and of its state file, so ask clients for
/// chunks of at least this much (the spec makes it a SHOULD for them; smaller ones still work).
pub const DEFAULT_CHUNK_MIN_LENGTH: u64 = 1 << 20;

/// `registry.toml`: every field optional.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub addr: Option<String>,
    pub storage: Option<StorageSetting>,
    #[serde(alias = "read_only")]
    pub read_only: Option<bool>,
    pub htpasswd: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub chunk_min_length: Option<u64>,
    pub auth_token_realm: Option<String>,
    pub auth_token_service: Option<String>,
    pub auth_token_issuer: Option<String>,
    pub auth_token_rootcert: Option<PathBuf>,
    pub auth_token_key: Option<PathBuf>,
    pub auth_token_anonymous_pull: Option<bool>,
    pub max_connections: Option<usize>,
    /// A duration (`30s`, `2m`, `500ms`).
    pub header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub write_timeout: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let c: FileConfig =
            toml::from_str("addr = \"127.0.0.1:0\"\nstorage = \"/x\"\nread-only = true\nhtpasswd = \"/h\"\ntls-cert = \"/c\"\ntls-key = \"/k\"\nchunk-min-length = 5242880\n").unwrap();
        assert_eq!(
            c,
            FileConfig {
                addr: Some("127.0.0.1:0".into()),
                storage: Some(StorageSetting::Path("/x".into())),
                read_only: Some(true),
                htpasswd: Some("/h".into()),
                tls_cert: Some("/c".into()),
                tls_key: Some("/k".into()),
                chunk_min_length: Some(5 << 20),
                ..FileConfig::default()
            }
        );
        let c: FileConfig = toml::from_str(
            "auth-token-realm = \"http://h/token\"\nauth-token-service = \"s\"\nauth-token-issuer = \"i\"\nauth-token-rootcert = \"/r.pem\"\nauth-token-key = \"/k.pem\"\nauth-token-anonymous-pull = true\n",
        )
        .unwrap();
        assert_eq!(c.auth_token_realm.as_deref(), Some("http://h/token"));
        assert_eq!(c.auth_token_rootcert, Some("/r.pem".into()));
        assert_eq!(c.auth_token_anonymous_pull, Some(true));
        let c: FileConfig = toml::from_str("read_only = false").unwrap();
        assert_eq!(c.read_only, Some(false));
        assert!(toml::from_str::<FileConfig>("adr = \"x\"").is_err());
    }

    #[test]
    fn storage_is_a_directory_a_url_or_a_table() {
        let f = |t: &str| toml::from_str::<FileConfig>(t).map(|c| c.storage.unwrap().resolve());
        assert_eq!(
            f("storage = \"/x\"").unwrap(),
            Ok(StorageConfig::Fs("/x".into()))
        );
        assert_eq!(
            f("[storage]\nkind = \"fs\"\npath = \"/y\"").unwrap(),
            Ok(StorageConfig::Fs("/y".into()))
        );
        let c = f("[storage]\nkind = \"s3\"\nbucket = \"b\"\nprefix = \"/p/q/\"\nendpoint = \"http://127.0.0.1:9\"\nallow-http = true\nmax-retries = 0\nretry-timeout = \"2s\"\nrequest-timeout = \"5s\"\npart-size = 16777216")
            .unwrap()
            .unwrap();
        let StorageConfig::Bucket(c) = c else {
            panic!("{c:?}")
        };
        assert_eq!(c.kind, BucketKind::S3);
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("b", "p/q"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(
            (c.allow_http, c.max_retries, c.part_size),
            (Some(true), 0, 16 << 20)
        );
        assert_eq!(
            (c.retry_timeout, c.request_timeout),
            (Duration::from_secs(2), Duration::from_secs(5))
        );
        assert!(c.redirect, "blob GETs are redirected unless turned off");
        let c = f("[storage]\nkind = \"s3\"\nbucket = \"b\"\nredirect = false");
        assert!(matches!(
            c,
            Ok(Ok(StorageConfig::Bucket(BucketConfig {
                redirect: false,
                ..
            })))
        ));
        for (t, want) in [
            (
                "[storage]\nkind = \"fs\"\npath = \"/x\"\nredirect = true",
                "redirect is a setting of kind = \"s3\" or \"azure\"",
            ),
            (
                "[storage]\nkind = \"gcs\"\nbucket = \"b\"\nredirect = true",
                "redirect is a setting of kind = \"s3\" or \"azure\"",
            ),
            ("[storage]\nkind = \"s3\"", "needs bucket"),
            (
                "[storage]\nkind = \"gcp\"\nbucket = \"b\"",
                "not a storage kind: use \"fs\", \"s3\", \"azure\" or \"gcs\"",
            ),
            ("[storage]\nkind = \"fs\"", "needs path"),
            (
                "[storage]\nkind = \"fs\"\npath = \"/x\"\nbucket = \"b\"",
                "bucket is a setting of kind = \"s3\"",
            ),
            (
                "[storage]\nkind = \"s3\"\nbucket = \"b\"\npart-size = 1024",
                "minimum part size",
            ),
            (
                "[storage]\nkind = \"s3\"\nbucket = \"b\"\nretry-timeout = \"soon\"",
                "retry-timeout",
            ),
            (
                "[storage]\nkind = \"s3\"\nbucket = \"b\"\npart-size = 6000000000",
                "maximum part size of 5368709120",
            ),
            ("[storage]\nkind = \"azure\"", "needs container"),
            (
                "[storage]\nkind = \"azure\"\nbucket = \"b\"",
                "bucket is a setting of kind = \"s3\" or \"gcs\": an Azure container is named by container",
            ),
            (
                "[storage]\nkind = \"s3\"\nbucket = \"b\"\ncontainer = \"c\"",
                "container is a setting of kind = \"azure\"",
            ),
            (
                "[storage]\nkind = \"gcs\"\nbucket = \"b\"\nregion = \"eu\"",
                "region is a setting of kind = \"s3\"",
            ),
            (
                "[storage]\nkind = \"s3\"\nbucket = \"b\"\naccount = \"a\"",
                "account is a setting of kind = \"azure\"",
            ),
            (
                "[storage]\nkind = \"gcs\"\nbucket = \"b\"\nuse-emulator = true",
                "use-emulator is a setting of kind = \"azure\"",
            ),
            (
                "[storage]\nkind = \"fs\"\npath = \"/x\"\nmax-retries = 1",
                "max-retries is a setting of kind = \"s3\", \"azure\" or \"gcs\"",
            ),
            (
                "[storage]\nkind = \"azure\"\ncontainer = \"c\"\nuse-emulator = true\nendpoint = \"http://127.0.0.1:1\"",
                "AZURITE_BLOB_STORAGE_URL",
            ),
            (
                "[storage]\nkind = \"azure\"\ncontainer = \"c\"\npart-size = 1000",
                "minimum part size of 1048576",
            ),
            (
                "[storage]\nkind = \"azure\"\ncontainer = \"c\"\npart-size = 4294967296",
                "at most 4000 MiB",
            ),
            (
                "[storage]\nkind = \"gcs\"\nbucket = \"b\"\npart-size = 4194304",
                "GCS's multipart part size is 5 MiB to 5 GiB",
            ),
            ("[storage]\nkind = \"gcs\"\nprefix = \"p\"", "needs bucket"),
        ] {
            let e = f(t).unwrap().unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
        let e =
            toml::from_str::<FileConfig>("[storage]\nkind = \"s3\"\nbukket = \"b\"").unwrap_err();
        assert!(e.to_string().contains("bukket"), "{e}");

        let c = f("[storage]\nkind = \"azure\"\ncontainer = \"imgs\"\naccount = \"acct\"\nendpoint = \"http://127.0.0.1:10000/acct\"\npart-size = 1048576")
            .unwrap()
            .unwrap();
        let StorageConfig::Bucket(c) = c else {
            panic!("{c:?}")
        };
        assert_eq!(
            (c.kind, c.bucket.as_str(), c.account.as_deref(), c.part_size),
            (BucketKind::Azure, "imgs", Some("acct"), 1 << 20)
        );
        let c = f("[storage]\nkind = \"gcs\"\nbucket = \"g\"\nendpoint = \"http://127.0.0.1:4443\"\nmax-retries = 1")
            .unwrap()
            .unwrap();
        let StorageConfig::Bucket(c) = c else {
            panic!("{c:?}")
        };
        assert_eq!(
            (c.kind, c.bucket.as_str(), c.max_retries),
            (BucketKind::Gcs, "g", 1)
        );
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:4443"));

        for (url, kind, bucket, prefix) in [
            ("s3://imgs/reg/x", BucketKind::S3, "imgs", "reg/x"),
            ("az://cont/p", BucketKind::Azure, "cont", "p"),
            ("gs://b", BucketKind::Gcs, "b", ""),
        ] {
            let c = StorageConfig::parse_flag(url).unwrap();
            assert_eq!(
                c,
                StorageConfig::Bucket(BucketConfig::new(kind, bucket, prefix))
            );
            assert_eq!(c.to_string(), url);
        }
        let e = StorageConfig::parse_flag("az://").unwrap_err();
        assert!(e.contains("names no container (az://CONTAINER"), "{e}");
        assert_eq!(
            StorageConfig::parse_flag("/d"),
            Ok(StorageConfig::Fs("/d".into()))
        );
        assert!(StorageConfig::parse_flag("s3://").is_err());
        let e = StorageConfig::parse_flag("abfs://c").unwrap_err();
        assert!(
            e.contains("abfs:// is not a storage URL: use s3://BUCKET[/PREFIX], az://CONTAINER[/PREFIX], gs://BUCKET[/PREFIX] or a directory"),
            "{e}"
        );
    }

    #[test]
    fn token_settings_name_what_is_missing() {
        let s = |v: &str| Some(v.to_string());
        let p = |v: &str| Some(PathBuf::from(v));
        let asm = TokenConfig::assemble;
        assert_eq!(asm(None, None, None, None, None, false, true), Ok(None));
        // External token server: everything must be given.
        let t = asm(
            s("http://a/t"),
            s("svc"),
            s("iss"),
            p("/r"),
            None,
            false,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (t.realm.as_deref(), t.service.as_str()),
            (Some("http://a/t"), "svc")
        );
        let e = asm(None, s("svc"), s("iss"), p("/r"), None, false, false).unwrap_err();
        assert!(e.contains("auth-token-realm"), "{e}");
        let e = asm(s("http://a/t"), None, s("iss"), p("/r"), None, false, false).unwrap_err();
        assert!(e.contains("auth-token-service"), "{e}");
        let e = asm(
            s("http://a/t"),
            s("svc"),
            s("iss"),
            None,
            None,
            false,
            false,
        )
        .unwrap_err();
        assert!(e.contains("auth-token-rootcert"), "{e}");
        let e = asm(
            s("http://a/t"),
            s("svc"),
            s("iss"),
            p("/r"),
            None,
            true,
            false,
        )
        .unwrap_err();
        assert!(e.contains("auth-token-key"), "{e}");
        // Built-in: defaults, and htpasswd required.
        let t = asm(None, None, None, None, p("/k"), true, true)
            .unwrap()
            .unwrap();
        assert_eq!(t.realm, None);
        assert_eq!(t.service, DEFAULT_TOKEN_SERVICE);
        assert!(t.anonymous_pull);
        let e = asm(None, None, None, None, p("/k"), false, false).unwrap_err();
        assert!(e.contains("htpasswd"), "{e}");
        let e = asm(
            s("http://a/t"),
            s("svc"),
            s("iss"),
            p("/r"),
            None,
            false,
            true,
        )
        .unwrap_err();
        assert!(e.contains("htpasswd would be ignored"), "{e}");
    }
}

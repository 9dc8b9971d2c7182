//! Server settings: from flags, or from a `registry.toml` with the same names
//! (`addr`, `storage`, `read-only`, `htpasswd`, `tls-cert`, `tls-key`, `chunk-min-length`,
//! `auth-token-realm`, `auth-token-service`, `auth-token-issuer`, `auth-token-rootcert`,
//! `auth-token-key`, `auth-token-anonymous-pull`); flags win over the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port`; port 0 picks a free one.
    pub addr: String,
    pub storage: PathBuf,
    pub read_only: bool,
    /// htpasswd file (bcrypt): when set, every `/v2` request needs basic auth.
    pub htpasswd: Option<PathBuf>,
    /// PEM certificate chain and private key: serve HTTPS instead of HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `OCI-Chunk-Min-Length` announced when an upload session opens; 0 announces none.
    pub chunk_min_length: u64,
    /// Bearer-token mode: every `/v2` request needs a token (htpasswd then only guards the
    /// built-in token server).
    pub token: Option<TokenConfig>,
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
    pub storage: Option<PathBuf>,
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
                storage: Some("/x".into()),
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

//! Server settings: from flags, or from a `registry.toml` with the same names
//! (`addr`, `storage`, `read-only`, `htpasswd`, `tls-cert`, `tls-key`, `chunk-min-length`); flags
//! win over the file.

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
            }
        );
        let c: FileConfig = toml::from_str("read_only = false").unwrap();
        assert_eq!(c.read_only, Some(false));
        assert!(toml::from_str::<FileConfig>("adr = \"x\"").is_err());
    }
}

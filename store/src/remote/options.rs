//! What push, pull and search share: their settings ([`Options`]: insecure registries,
//! mirrors, parallel transfers), per-blob progress, and the short-lived async runtime the
//! synchronous entry points run on.

use super::endpoint;
use super::error::{RemoteError, Result};
use crate::root::Store;

/// Settings shared by push and pull.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--insecure-registry` entries plus the config file's.
    pub insecure: Vec<String>,
    /// Docker Hub pull-through mirrors, tried in order (`registry-mirrors` in daemon.json).
    pub mirrors: Vec<endpoint::Mirror>,
    /// Blobs transferred at once.
    pub jobs: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure: Vec::new(),
            mirrors: Vec::new(),
            jobs: 3,
        }
    }
}

impl Options {
    /// Defaults plus the `insecure-registries` and `registry-mirrors` of daemon.json (and the
    /// older `<root>/config.json` or `/etc/berth/config.json` for insecure registries).
    pub fn for_root(store: &Store, insecure: &[String]) -> Result<Options> {
        let mut list = insecure.to_vec();
        list.extend(endpoint::configured_insecure(store.root()).map_err(RemoteError::Config)?);
        Ok(Options {
            insecure: list,
            mirrors: endpoint::configured_mirrors(store.root()).map_err(RemoteError::Config)?,
            ..Options::default()
        })
    }
}

/// Per-blob progress; `id` is the 12-character short digest Docker shows.
pub trait Progress: Send + Sync {
    fn begin(&self, _id: &str, _action: &str, _total: Option<u64>) {}
    fn advance(&self, _id: &str, _bytes: u64) {}
    fn end(&self, _id: &str, _status: &str) {}
}

/// Progress that shows nothing.
pub struct Quiet;
impl Progress for Quiet {}

/// `sha256:0123456789ab…` → `0123456789ab`.
pub fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| RemoteError::Other(format!("starting async runtime: {e}")))
}

//! `berth save` / `berth load`: image archives exchanged with Docker and OCI tools.
//!
//! `save` writes the layout Docker 25+ writes: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) that also carries Docker's `manifest.json` and `repositories`, so both
//! `docker load` and OCI tools (skopeo, umoci) accept the same tar. `load` reads that layout,
//! the legacy docker-archive layout (`manifest.json` naming `<hex>.tar` or `<id>/layer.tar`
//! layers and a `<hex>.json` config) and OCI archives, plain or gzip/zstd compressed.
//!
//! Blobs always stream between the store and the tar; only small JSON files are held in memory.

mod docker;
mod export;
mod ingest;
mod load;
mod members;
mod oci;
mod plan;
mod save;
#[cfg(test)]
mod tests;

pub use export::{ExportFormat, ExportOptions, Exported, export};
pub use load::{Loaded, load};
pub use save::save;

/// Archive members both layouts agree on.
const OCI_LAYOUT_FILE: &str = "oci-layout";
const INDEX_JSON: &str = "index.json";
const MANIFEST_JSON: &str = "manifest.json";
const REPOSITORIES: &str = "repositories";
const OCI_LAYOUT_CONTENT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

/// Where a blob lives inside an archive.
fn blob_path(d: &oci_spec::image::Digest) -> String {
    format!("blobs/{}/{}", d.algorithm(), d.digest())
}

/// Text from an archive (member names, tar errors) made safe for a one-line message: control
/// characters are escaped.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

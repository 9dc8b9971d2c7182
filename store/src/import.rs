//! `import`: a root filesystem tarball (plain, gzip or zstd) becomes a one-layer image.
//!
//! The tar is validated, hashed and stored in one streaming pass: the decompressed bytes are
//! teed into the blob writer while the tar parser walks the entries, so a corrupted or truncated
//! archive fails before anything becomes visible. The layer is stored uncompressed (digest ==
//! diff ID): import is then bounded by hashing and disk speed, and compression happens when the
//! image is pushed.

use std::io::{self, Read, Write};

use oci_spec::image::{Descriptor, MediaType};
use serde_json::{Map, Value, json};

use crate::blobs::BlobWriter;
use crate::compression::auto_decoder;
use crate::error::{Result, StoreError};
use crate::images::{Image, config_json};
use crate::reference::Reference;
use crate::root::Store;

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The image config's `config` object (Cmd, Env, …): `import --change`, applied by the
    /// caller (`berth_builder::change`, which expands them as Docker does).
    pub config: Map<String, Value>,
    /// History comment; Docker's default is "Imported from <source>".
    pub message: Option<String>,
    /// Where the tar came from (`-` for stdin), for the history comment.
    pub source: String,
}

/// The GOARCH name of the machine we run on.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "arm" => "arm",
        other => other,
    }
}

/// The current time as Go's `time.RFC3339Nano` writes it (trailing zeros of the fraction dropped),
/// so a config we write survives a re-marshal by Go tools (skopeo, containerd) byte for byte.
pub fn now_rfc3339() -> String {
    go_rfc3339_nano(chrono::Utc::now())
}

pub fn go_rfc3339_nano(t: chrono::DateTime<chrono::Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = format!("{:09}", t.timestamp_subsec_nanos());
    let frac = nanos.trim_end_matches('0');
    if frac.is_empty() {
        format!("{base}Z")
    } else {
        format!("{base}.{frac}Z")
    }
}

/// Order the members of an image config's `config` object as Go's `v1.ImageConfig` (then
/// Docker's extra fields), so Go tools re-marshal it to the same bytes.
pub fn canonical_container_config(cfg: Map<String, Value>) -> Map<String, Value> {
    const ORDER: [&str; 14] = [
        "User",
        "ExposedPorts",
        "Env",
        "Entrypoint",
        "Cmd",
        "Volumes",
        "WorkingDir",
        "Labels",
        "StopSignal",
        "ArgsEscaped",
        "Healthcheck",
        "OnBuild",
        "Shell",
        "StopTimeout",
    ];
    let mut cfg = cfg;
    let mut out = Map::new();
    for k in ORDER {
        if let Some(v) = cfg.remove(k) {
            out.insert(k.to_string(), v);
        }
    }
    out.extend(cfg);
    out
}

/// Reads from `inner` and copies every byte read into the blob being written.
pub(crate) struct Tee<'a, R> {
    pub(crate) inner: R,
    pub(crate) out: &'a mut BlobWriter,
    pub(crate) err: Option<io::Error>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            // Keep the write error apart: it is about the store (disk full), not the input.
            let kind = e.kind();
            self.err = Some(e);
            return Err(io::Error::new(kind, "writing to the store failed"));
        }
        Ok(n)
    }
}

/// Stream a tar (any supported compression) into a new uncompressed layer blob, checking that it
/// is a well-formed tar. Returns the layer descriptor (digest == diff ID).
pub(crate) fn store_layer_tar(store: &Store, input: impl Read, what: &str) -> Result<Descriptor> {
    // Entry names from the archive end up in the reason: keep the message on one line.
    let bad = |reason: String| StoreError::BadArchive {
        what: what.to_string(),
        reason: reason
            .chars()
            .flat_map(|c| {
                let esc: Vec<char> = if c.is_control() {
                    c.escape_default().collect()
                } else {
                    vec![c]
                };
                esc
            })
            .collect(),
    };
    let (_, decoded) = auto_decoder(input).map_err(|e| bad(e.to_string()))?;
    let mut writer = store.blobs().writer()?;
    let mut tee = Tee {
        inner: decoded,
        out: &mut writer,
        err: None,
    };
    let walk = (|| -> io::Result<u64> {
        let mut archive = tar::Archive::new(&mut tee);
        let mut entries = 0u64;
        for e in archive.entries()? {
            e?;
            entries += 1;
        }
        // The parser stops at the end-of-archive blocks; keep everything that follows in the
        // blob so its digest is the digest of the whole stream.
        io::copy(&mut archive.into_inner(), &mut io::sink())?;
        Ok(entries)
    })();
    let tee_err = tee.err.take();
    if let Some(e) = tee_err {
        return Err(StoreError::io("writing layer into", store.tmp_dir(), e));
    }
    let entries = walk.map_err(|e| {
        // The reader's refusal of an oversized long name or PAX header (vendor/tar) says
        // exactly what is wrong; the hint is for archives that are no tar or cut short.
        if crate::extract::header_too_large(&e) {
            bad(e.to_string())
        } else {
            bad(format!("{e} (is it a tar archive, and complete?)"))
        }
    })?;
    if entries == 0 {
        return Err(bad("the archive is empty (no files)".into()));
    }
    let (digest, size) = writer.commit(None)?;
    Ok(Descriptor::new(MediaType::ImageLayer, size, digest))
}

impl Store {
    /// `import FILE|- [REPOSITORY[:TAG]]`.
    pub fn import_rootfs(
        &self,
        input: impl Read,
        tag: Option<&Reference>,
        opts: &ImportOptions,
    ) -> Result<Image> {
        let cfg = opts.config.clone();
        let _writing = self.writer_lock()?;
        let what = if opts.source == "-" {
            "standard input"
        } else {
            opts.source.as_str()
        };
        let layer = store_layer_tar(self, input, what)?;
        let created = now_rfc3339();
        let comment = opts
            .message
            .clone()
            .unwrap_or_else(|| format!("Imported from {}", opts.source));
        let config = json!({
            "created": created,
            "architecture": host_arch(),
            "os": "linux",
            "config": Value::Object(canonical_container_config(cfg)),
            "rootfs": {"type": "layers", "diff_ids": [layer.digest().to_string()]},
            "history": [{"created": created, "created_by": "berth import", "comment": comment}],
        });
        let new = self.write_image(&config_json(&config)?, vec![layer])?;
        let tags: Vec<Reference> = tag.into_iter().cloned().collect();
        self.add_image(&new, &tags)?;
        self.resolve_image(new.config.as_ref())
    }
}

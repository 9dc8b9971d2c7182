//! Blob- and manifest-level access to one repository, for artifacts that are not images (the
//! build cache): fetch or put a manifest under a tag, HEAD, fetch and upload single blobs.
//! Synchronous, over a runtime of its own, as the builder is synchronous.

use std::io::Write;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::reference::Reference;

use super::client::{Operation, Session};
use super::endpoint::Endpoint;
use super::error::{RemoteError, Result};
use super::upload::{self, Source};
use super::{Options, runtime};

/// One session with the repository `reference` names.
pub struct Artifacts {
    rt: tokio::runtime::Runtime,
    s: Session,
    reference: Reference,
}

impl Artifacts {
    /// Connect to `spec`'s repository (a tag names the manifest [`Artifacts::manifest`] reads
    /// and [`Artifacts::put_manifest`] writes; `latest` when none); `push` asks for push scope.
    pub fn connect(spec: &str, push: bool, opts: &Options) -> Result<Artifacts> {
        let reference = Reference::parse_normalized(spec)
            .map_err(crate::StoreError::from)?
            .with_default_tag();
        let rt = runtime()?;
        let endpoint = Endpoint::new(reference.domain(), &opts.insecure);
        let creds = super::auth::lookup(&endpoint.domain)?;
        let op = if push {
            Operation::Push
        } else {
            Operation::Pull
        };
        let s = rt.block_on(Session::connect(endpoint, reference.path(), creds, op))?;
        Ok(Artifacts { rt, s, reference })
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    fn target(&self) -> String {
        match (self.reference.digest(), self.reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".into(),
        }
    }

    /// The manifest the reference names, raw; `None` when the registry has none.
    pub fn manifest(&self) -> Result<Option<Vec<u8>>> {
        let shown = self.reference.to_string();
        match self
            .rt
            .block_on(self.s.get_manifest(&self.target(), &shown))
        {
            Ok((bytes, _)) => Ok(Some(bytes)),
            Err(RemoteError::ManifestUnknown { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Put `body` (of `media_type`) under the reference's tag.
    pub fn put_manifest(&self, body: Vec<u8>, media_type: &str) -> Result<()> {
        if self.reference.digest().is_some() {
            return Err(RemoteError::Unsupported {
                what: format!("writing to {}", self.reference),
                reason: "a digest cannot be written to; give a tag".into(),
            });
        }
        self.rt
            .block_on(self.s.put_manifest(&self.target(), body, media_type))
    }

    pub fn has_blob(&self, digest: &str) -> Result<bool> {
        self.rt.block_on(self.s.blob_exists(digest))
    }

    /// Stream blob `digest` into `out`; an error when its bytes do not match the digest (what
    /// `out` received is then to be thrown away).
    pub fn fetch_blob(&self, digest: &str, size: u64, out: &mut dyn Write) -> Result<()> {
        self.rt.block_on(async {
            let mut stream = self
                .s
                .blob_stream(digest, size, &format!("blob {digest}"))
                .await?;
            let mut h = Sha256::new();
            while let Some(b) = stream.chunk().await? {
                h.update(&b);
                out.write_all(&b)
                    .map_err(|e| RemoteError::Other(format!("storing blob {digest}: {e}")))?;
            }
            let got = format!("sha256:{}", hex::encode(h.finalize()));
            if got != digest {
                return Err(RemoteError::DigestMismatch {
                    what: format!("blob from {}", self.s.endpoint.domain),
                    expected: digest.to_string(),
                    actual: got,
                });
            }
            Ok(())
        })
    }

    /// Upload the file at `path` as blob `digest`.
    pub fn put_blob_file(&self, digest: &str, path: &Path) -> Result<()> {
        self.rt.block_on(upload::upload(
            &self.s,
            &format!("uploading blob {digest}"),
            Source::File {
                path: path.to_path_buf(),
                offset: 0,
            },
            Some(digest),
            async { Ok((String::new(), 0)) },
            &|_| {},
        ))?;
        Ok(())
    }

    /// Upload `bytes` as blob `digest`.
    pub fn put_blob_bytes(&self, digest: &str, bytes: Vec<u8>) -> Result<()> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.try_send(Ok(bytes::Bytes::from(bytes)));
        drop(tx);
        self.rt.block_on(upload::upload(
            &self.s,
            &format!("uploading blob {digest}"),
            Source::Channel(rx),
            Some(digest),
            async { Ok((String::new(), 0)) },
            &|_| {},
        ))?;
        Ok(())
    }
}

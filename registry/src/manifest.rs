//! Manifest validation on push: the body must be JSON of the media type it claims (OCI image
//! manifest or index, Docker schema2 manifest or manifest list), at most 4 MiB; what it references
//! is collected so the handler can check it exists in the repository, and a `subject` yields the
//! descriptor the referrers API reports.

use std::collections::HashMap;

use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest, MediaType};
use serde_json::Value;

use crate::error::{ErrorKind, RegistryError, Result};

pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Something a manifest points at that must already be in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Needed {
    Blob(Digest),
    Manifest(Digest),
}

#[derive(Debug)]
pub struct Checked {
    pub media_type: String,
    pub needed: Vec<Needed>,
    pub subject: Option<Digest>,
    artifact_type: Option<String>,
    annotations: Option<HashMap<String, String>>,
}

impl Checked {
    /// The descriptor the referrers API lists for this manifest.
    pub fn referrer_descriptor(&self, digest: &Digest, size: u64) -> Descriptor {
        let mut d = Descriptor::new(
            MediaType::from(self.media_type.as_str()),
            size,
            digest.clone(),
        );
        d.set_artifact_type(self.artifact_type.as_deref().map(MediaType::from));
        d.set_annotations(self.annotations.clone());
        d
    }
}

fn invalid(msg: impl Into<String>) -> RegistryError {
    RegistryError::new(ErrorKind::ManifestInvalid, msg)
}

/// Strip parameters (`; charset=…`) from a Content-Type.
fn bare_type(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

pub fn check(content_type: Option<&str>, bytes: &[u8]) -> Result<Checked> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(RegistryError::new(
            ErrorKind::ManifestTooLarge,
            format!(
                "manifest is {} bytes, the limit is {MAX_MANIFEST_BYTES}",
                bytes.len()
            ),
        ));
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("manifest is not a JSON object"))?;
    let body_type = match obj.get("mediaType") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(invalid("mediaType is not a string")),
    };
    let header = content_type
        .map(bare_type)
        .filter(|t| !t.is_empty() && *t != "application/octet-stream" && *t != "application/json");
    let media_type = match (header, body_type) {
        (Some(h), Some(b)) if h != b => {
            return Err(invalid(format!(
                "Content-Type {h} does not match the manifest's mediaType {b}"
            )));
        }
        (Some(h), _) => h,
        (None, Some(b)) => b,
        // Neither says: an OCI manifest or index, told apart by shape.
        (None, None) if obj.contains_key("manifests") => OCI_INDEX,
        (None, None) => OCI_MANIFEST,
    }
    .to_string();
    match obj.get("schemaVersion").and_then(Value::as_u64) {
        Some(2) => {}
        _ => return Err(invalid("schemaVersion must be 2")),
    }
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: ImageManifest = serde_json::from_value(v)
                .map_err(|e| invalid(format!("invalid {media_type}: {e}")))?;
            let mut needed = vec![Needed::Blob(m.config().digest().clone())];
            for l in m.layers() {
                // Foreign layers (with `urls`) live elsewhere by design.
                if l.urls().as_ref().is_none_or(|u| u.is_empty()) {
                    needed.push(Needed::Blob(l.digest().clone()));
                }
            }
            let artifact_type = m
                .artifact_type()
                .as_ref()
                .map(|a| a.to_string())
                .or_else(|| Some(m.config().media_type().to_string()));
            Ok(Checked {
                media_type,
                needed,
                subject: m.subject().as_ref().map(|s| s.digest().clone()),
                artifact_type,
                annotations: m.annotations().clone(),
            })
        }
        OCI_INDEX | DOCKER_LIST => {
            let i: ImageIndex = serde_json::from_value(v)
                .map_err(|e| invalid(format!("invalid {media_type}: {e}")))?;
            Ok(Checked {
                media_type,
                needed: i
                    .manifests()
                    .iter()
                    .map(|d| Needed::Manifest(d.digest().clone()))
                    .collect(),
                subject: i.subject().as_ref().map(|s| s.digest().clone()),
                artifact_type: i.artifact_type().as_ref().map(|a| a.to_string()),
                annotations: i.annotations().clone(),
            })
        }
        other => Err(invalid(format!("unsupported manifest media type {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest(media: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D2}","size":3}}]}}"#
        )
    }

    #[test]
    fn oci_and_docker_manifests() {
        for mt in [OCI_MANIFEST, DOCKER_MANIFEST] {
            let c = check(Some(mt), manifest(mt).as_bytes()).unwrap();
            assert_eq!(c.media_type, mt);
            assert_eq!(c.needed.len(), 2);
            assert!(c.subject.is_none());
        }
        // parameters on the Content-Type are ignored
        let c = check(
            Some(&format!("{OCI_MANIFEST}; charset=utf-8")),
            manifest(OCI_MANIFEST).as_bytes(),
        )
        .unwrap();
        assert_eq!(c.media_type, OCI_MANIFEST);
    }

    #[test]
    fn index_needs_manifests() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{{"mediaType":"{DOCKER_MANIFEST}","digest":"{D1}","size":5}}]}}"#
        );
        let c = check(Some(DOCKER_LIST), body.as_bytes()).unwrap();
        assert_eq!(c.needed, vec![Needed::Manifest(D1.parse().unwrap())]);
    }

    #[test]
    fn refusals() {
        let kind = |ct: Option<&str>, b: &str| check(ct, b.as_bytes()).unwrap_err().kind;
        assert_eq!(
            kind(Some(OCI_MANIFEST), "not json"),
            ErrorKind::ManifestInvalid
        );
        assert_eq!(kind(Some(OCI_MANIFEST), "[]"), ErrorKind::ManifestInvalid);
        assert_eq!(
            kind(Some(OCI_INDEX), &manifest(OCI_MANIFEST)),
            ErrorKind::ManifestInvalid
        );
        assert_eq!(
            kind(
                Some(OCI_MANIFEST),
                &manifest(OCI_MANIFEST).replace("\"schemaVersion\":2", "\"schemaVersion\":1")
            ),
            ErrorKind::ManifestInvalid
        );
        assert_eq!(
            kind(
                Some(OCI_MANIFEST),
                &manifest(OCI_MANIFEST).replace(D1, "sha256:nothex")
            ),
            ErrorKind::ManifestInvalid
        );
        assert_eq!(
            kind(Some("text/plain"), r#"{"schemaVersion":2}"#),
            ErrorKind::ManifestInvalid
        );
        let huge = format!(
            "{{\"schemaVersion\":2,\"x\":\"{}\"}}",
            "a".repeat(MAX_MANIFEST_BYTES)
        );
        assert_eq!(kind(Some(OCI_MANIFEST), &huge), ErrorKind::ManifestTooLarge);
    }

    #[test]
    fn subject_and_artifact_type() {
        let body = manifest(OCI_MANIFEST).replace(
            "\"layers\"",
            &format!(r#""artifactType":"application/vnd.example+json","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":9}},"annotations":{{"a":"b"}},"layers""#),
        );
        let c = check(None, body.as_bytes()).unwrap();
        assert_eq!(c.subject, Some(D2.parse().unwrap()));
        let d = c.referrer_descriptor(&D1.parse().unwrap(), 10);
        let j = serde_json::to_value(&d).unwrap();
        assert_eq!(j["artifactType"], "application/vnd.example+json");
        assert_eq!(j["annotations"]["a"], "b");
        assert_eq!(j["mediaType"], OCI_MANIFEST);
    }
}

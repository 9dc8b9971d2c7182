//! `load` of OCI archives: tags from annotations, image indexes, descriptor checks.

use oci_spec::image::Arch;
use serde_json::{Value, json};

use super::fixtures::*;
use crate::archive::load;
use crate::digest::sha256_of;
use crate::root::Store;
/// An OCI archive (as `skopeo copy … oci-archive:`) of the blobs of `made`, its index.json
/// entry given.
fn oci_archive(a: &Store, made: &Made, entry: Value, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut files: Vec<(String, Vec<u8>)> = vec![(
        "oci-layout".into(),
        b"{\"imageLayoutVersion\":\"1.0.0\"}".to_vec(),
    )];
    for d in [&made.manifest, &made.id].into_iter().chain(&made.layers) {
        files.push((
            format!("blobs/sha256/{}", d.digest()),
            a.blobs().read_verified(d).unwrap(),
        ));
    }
    for (p, b) in extra {
        files.push((p.to_string(), b.to_vec()));
    }
    let index = json!({"schemaVersion": 2, "manifests": [entry]});
    files.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    tar_of(&refs)
}

fn manifest_entry(a: &Store, made: &Made, ref_name: Option<&str>) -> Value {
    let mut e = json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": made.manifest.to_string(),
        "size": a.blobs().size(&made.manifest).unwrap(),
    });
    if let Some(n) = ref_name {
        e["annotations"] = json!({"org.opencontainers.image.ref.name": n});
    }
    e
}

#[test]
fn oci_ref_name_is_a_tag_only_when_it_is_a_reference() {
    let t = tempfile::tempdir().unwrap();
    let a = new_store(&t, "a");
    let made = busybox(&a);
    for (i, (name, want)) in [
        (Some("busybox:1.36"), vec!["docker.io/library/busybox:1.36"]),
        (Some("quay.io/org/app"), vec!["quay.io/org/app:latest"]),
        (Some("latest"), vec![]),
        (None, vec![]),
    ]
    .into_iter()
    .enumerate()
    {
        let b = new_store(&t, &format!("b{i}"));
        let archive = oci_archive(&a, &made, manifest_entry(&a, &made, name), &[]);
        let loaded = load(&b, &mut &archive[..]).unwrap();
        assert_eq!(loaded[0].id, made.id);
        let got: Vec<String> = loaded[0].tags.iter().map(|t| t.to_string()).collect();
        assert_eq!(got, want, "ref name {name:?}");
        assert_eq!(tags_of(&b, &made.id), want);
    }
}

#[test]
fn oci_archive_with_an_image_index_loads_the_host_platform() {
    let t = tempfile::tempdir().unwrap();
    let a = new_store(&t, "a");
    let made = busybox(&a);
    let host = Arch::default().to_string();
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let absent = sha256_of(b"a manifest not in the archive");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": absent.to_string(),
             "size": 10, "platform": {"os": "linux", "architecture": other}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": made.manifest.to_string(),
             "size": a.blobs().size(&made.manifest).unwrap(), "platform": {"os": "linux", "architecture": host}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": absent.to_string(),
             "size": 10, "platform": {"os": "unknown", "architecture": "unknown"}},
        ],
    }))
    .unwrap();
    let index_digest = sha256_of(&index);
    let entry = json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": index_digest.to_string(),
        "size": index.len(),
        "annotations": {"io.containerd.image.name": "docker.io/library/busybox:multi",
                        "org.opencontainers.image.ref.name": "multi"},
    });
    let index_path = format!("blobs/sha256/{}", index_digest.digest());
    let archive = oci_archive(&a, &made, entry, &[(&index_path, &index)]);
    let b = new_store(&t, "b");
    let loaded = load(&b, &mut &archive[..]).unwrap();
    assert_eq!(loaded[0].id, made.id);
    let img = b.resolve_image("busybox:multi").unwrap();
    assert_eq!(img.manifest, made.manifest);
}

#[test]
fn oci_blob_with_a_wrong_size_is_rejected() {
    let t = tempfile::tempdir().unwrap();
    let a = new_store(&t, "a");
    let made = busybox(&a);
    let mut entry = manifest_entry(&a, &made, Some("busybox:latest"));
    entry["size"] = json!(3);
    let b = new_store(&t, "b");
    assert_load_fails(&b, &oci_archive(&a, &made, entry, &[]), "size mismatch");
}

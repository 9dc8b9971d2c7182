//! `save`: the layout written, which images a spec selects, and round trips through `load`.

use oci_spec::image::Digest;
use serde_json::{Value, json};

use super::fixtures::*;
use crate::archive::{load, save};
use crate::digest::sha256_of;
use crate::error::StoreError;
use crate::reference::Reference;
#[test]
fn save_then_load_gives_same_id_manifest_and_tags() {
    let t = tempfile::tempdir().unwrap();
    let a = new_store(&t, "a");
    let made = busybox(&a);
    a.tag_image("busybox:latest", &Reference::parse("busybox:1.36").unwrap())
        .unwrap();
    let archive = save_vec(&a, &["busybox"]);

    let b = new_store(&t, "b");
    let loaded = load(&b, &mut &archive[..]).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, made.id);
    let mut tags: Vec<String> = loaded[0].tags.iter().map(|t| t.to_string()).collect();
    tags.sort();
    assert_eq!(
        tags,
        [
            "docker.io/library/busybox:1.36",
            "docker.io/library/busybox:latest"
        ]
    );

    let imgs = b.images().unwrap();
    assert_eq!(imgs.len(), 1);
    let img = &imgs[0];
    assert_eq!(img.id, made.id);
    assert_eq!(img.manifest, made.manifest);
    assert_eq!(img.created.as_deref(), Some(CREATED));
    let orig = a.images().unwrap().remove(0);
    assert_eq!(img.size, orig.size);
    assert_eq!(img.tags, orig.tags);
    assert_eq!(
        b.blobs().read_verified(&made.manifest).unwrap(),
        a.blobs().read_verified(&made.manifest).unwrap()
    );
    for l in &made.layers {
        assert_eq!(b.blobs().verify(l).unwrap(), None);
    }
    // A second load of the same archive changes nothing.
    let before = index_bytes(&b);
    load(&b, &mut &archive[..]).unwrap();
    assert_eq!(index_bytes(&b), before);
}

#[test]
fn save_writes_docker_25_layout() {
    let t = tempfile::tempdir().unwrap();
    let s = new_store(&t, "a");
    let made = busybox(&s);
    let archive = save_vec(&s, &["busybox:latest"]);
    let ms = members(&archive);
    let mut expected: Vec<String> = vec!["blobs/".into(), "blobs/sha256/".into()];
    let mut blobs: Vec<String> = [&made.manifest, &made.id]
        .into_iter()
        .chain(&made.layers)
        .map(|d| format!("blobs/sha256/{}", d.digest()))
        .collect();
    blobs.sort();
    expected.extend(blobs);
    expected
        .extend(["index.json", "manifest.json", "oci-layout", "repositories"].map(String::from));
    let paths: Vec<&str> = ms.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(paths, expected);
    for m in &ms {
        let dir = m.kind == tar::EntryType::Directory;
        assert_eq!(m.mode, if dir { 0o755 } else { 0o644 }, "{}", m.path);
        assert_eq!((m.uid, m.gid, m.mtime), (0, 0, CREATED_SECS), "{}", m.path);
        if let Some(hex) = m
            .path
            .strip_prefix("blobs/sha256/")
            .filter(|h| !h.is_empty())
        {
            assert_eq!(sha256_of(&m.data).digest(), hex);
        }
    }
    let top = made.layers.last().unwrap().digest();
    assert_eq!(
        json_of(&ms, "manifest.json"),
        json!([{
            "Config": format!("blobs/sha256/{}", made.id.digest()),
            "RepoTags": ["busybox:latest"],
            "Layers": made.layers.iter().map(|l| format!("blobs/sha256/{}", l.digest())).collect::<Vec<_>>(),
        }])
    );
    assert_eq!(
        json_of(&ms, "repositories"),
        json!({"busybox": {"latest": top}})
    );
    assert_eq!(
        json_of(&ms, "oci-layout"),
        json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = json_of(&ms, "index.json");
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        index["manifests"],
        json!([{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": made.manifest.to_string(),
            "size": s.blobs().size(&made.manifest).unwrap(),
            "annotations": {
                "io.containerd.image.name": "docker.io/library/busybox:latest",
                "org.opencontainers.image.ref.name": "latest",
            },
        }])
    );
}

#[test]
fn save_is_deterministic() {
    let t = tempfile::tempdir().unwrap();
    let s = new_store(&t, "a");
    busybox(&s);
    make_image(
        &s,
        &[layer(&[("x", b"x")])],
        "2023-01-01T00:00:00Z",
        &["ghcr.io/org/app:v1"],
    );
    let specs = ["ghcr.io/org/app:v1", "busybox"];
    let first = save_vec(&s, &specs);
    let second = save_vec(&s, &specs);
    assert!(first == second, "two saves differ");
    // Saved into another store and saved again: still the same bytes.
    let b = new_store(&t, "b");
    load(&b, &mut &first[..]).unwrap();
    assert!(save_vec(&b, &specs) == first, "save after load differs");
}

#[test]
fn save_of_images_sharing_a_layer_writes_it_once() {
    let t = tempfile::tempdir().unwrap();
    let s = new_store(&t, "a");
    let base = layer(&[("etc/os-release", b"ID=test\n")]);
    let one = make_image(
        &s,
        &[base.clone(), layer(&[("a", b"1")])],
        CREATED,
        &["one:latest"],
    );
    let two = make_image(&s, &[base, layer(&[("b", b"2")])], CREATED, &["two:latest"]);
    assert_eq!(one.layers[0], two.layers[0]);
    let archive = save_vec(&s, &["one", "two"]);
    let ms = members(&archive);
    let shared = format!("blobs/sha256/{}", one.layers[0].digest());
    assert_eq!(ms.iter().filter(|m| m.path == shared).count(), 1);
    let mut paths: Vec<&str> = ms.iter().map(|m| m.path.as_str()).collect();
    paths.dedup();
    assert_eq!(paths.len(), ms.len(), "a member is written twice");
    assert_eq!(json_of(&ms, "manifest.json").as_array().unwrap().len(), 2);

    let b = new_store(&t, "b");
    let loaded = load(&b, &mut &archive[..]).unwrap();
    let ids: Vec<&Digest> = loaded.iter().map(|l| &l.id).collect();
    assert_eq!(ids, [&one.id, &two.id]);
    assert_eq!(tags_of(&b, &two.id), ["docker.io/library/two:latest"]);
}

#[test]
fn save_by_id_has_no_repo_tags_and_loads_untagged() {
    let t = tempfile::tempdir().unwrap();
    let s = new_store(&t, "a");
    let made = busybox(&s);
    let short = &made.id.digest()[..12];
    let archive = save_vec(&s, &[short]);
    let ms = members(&archive);
    assert_eq!(json_of(&ms, "manifest.json")[0]["RepoTags"], Value::Null);
    assert!(
        json_of(&ms, "index.json")["manifests"][0]
            .get("annotations")
            .is_none()
    );
    assert!(!ms.iter().any(|m| m.path == "repositories"));

    let b = new_store(&t, "b");
    let loaded = load(&b, &mut &archive[..]).unwrap();
    assert_eq!(loaded[0].id, made.id);
    assert!(loaded[0].tags.is_empty());
    assert!(tags_of(&b, &made.id).is_empty());
}

#[test]
fn save_name_tag_saves_only_that_tag() {
    let t = tempfile::tempdir().unwrap();
    let s = new_store(&t, "a");
    busybox(&s);
    s.tag_image("busybox:latest", &Reference::parse("busybox:1.36").unwrap())
        .unwrap();
    let ms = members(&save_vec(&s, &["busybox:1.36"]));
    assert_eq!(
        json_of(&ms, "manifest.json")[0]["RepoTags"],
        json!(["busybox:1.36"])
    );
    let all = members(&save_vec(&s, &["busybox"]));
    assert_eq!(
        json_of(&all, "manifest.json")[0]["RepoTags"],
        json!(["busybox:1.36", "busybox:latest"])
    );
    assert_eq!(
        json_of(&all, "index.json")["manifests"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn save_of_unknown_image_fails() {
    let t = tempfile::tempdir().unwrap();
    let s = new_store(&t, "a");
    busybox(&s);
    let mut out = Vec::new();
    let err = save(&s, &["alpine".to_string()], &mut out).unwrap_err();
    assert!(matches!(err, StoreError::ImageNotFound(_)), "{err}");
}

//! Round trips through `save`/`load` and the archives other tools write, built in temp dirs.

use std::fs;
use std::io::{Read, Write};

use oci_spec::image::{Arch, Descriptor, Digest, ImageManifestBuilder, MediaType};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::{load, save};
use crate::digest::sha256_of;
use crate::error::StoreError;
use crate::images::NewImage;
use crate::reference::Reference;
use crate::root::Store;

const CREATED: &str = "2024-05-01T12:00:00Z";
const CREATED_SECS: u64 = 1_714_564_800;

fn new_store(t: &TempDir, name: &str) -> Store {
    Store::open(t.path().join(name)).unwrap()
}

/// A small layer tar.
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn config_json(diff_ids: &[Digest], created: &str) -> Vec<u8> {
    let ids: Vec<String> = diff_ids.iter().map(|d| d.to_string()).collect();
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": ids},
    }))
    .unwrap()
}

struct Made {
    id: Digest,
    manifest: Digest,
    layers: Vec<Digest>,
}

/// Store an image (uncompressed layers) as `berth build`/`pull` would, tagged `tags`.
fn make_image(s: &Store, layers: &[Vec<u8>], created: &str, tags: &[&str]) -> Made {
    let mut descs = Vec::new();
    let mut digests = Vec::new();
    let mut size = 0;
    for l in layers {
        let (d, n) = s.blobs().put_bytes(l).unwrap();
        descs.push(Descriptor::new(MediaType::ImageLayer, n, d.clone()));
        digests.push(d);
        size += n;
    }
    let config = config_json(&digests, created);
    let (cd, cn) = s.blobs().put_bytes(&config).unwrap();
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(MediaType::ImageConfig, cn, cd.clone()))
        .layers(descs)
        .build()
        .unwrap();
    let (md, mn) = s
        .blobs()
        .put_bytes(&serde_json::to_vec(&manifest).unwrap())
        .unwrap();
    let tags: Vec<Reference> = tags.iter().map(|t| Reference::parse(t).unwrap()).collect();
    s.add_image(
        &NewImage {
            manifest: md.clone(),
            manifest_size: mn,
            media_type: MediaType::ImageManifest,
            config: cd.clone(),
            created: Some(created.to_string()),
            size,
        },
        &tags,
    )
    .unwrap();
    Made {
        id: cd,
        manifest: md,
        layers: digests,
    }
}

fn busybox(s: &Store) -> Made {
    make_image(
        s,
        &[
            layer(&[
                ("bin/busybox", b"#!busybox\n"),
                ("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
            ]),
            layer(&[("etc/motd", b"hello\n")]),
        ],
        CREATED,
        &["busybox:latest"],
    )
}

fn save_vec(s: &Store, specs: &[&str]) -> Vec<u8> {
    let specs: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    save(s, &specs, &mut out).unwrap();
    out
}

struct Member {
    path: String,
    data: Vec<u8>,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

fn members(archive: &[u8]) -> Vec<Member> {
    let mut a = tar::Archive::new(archive);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let h = e.header();
            Member {
                path: e.path().unwrap().to_string_lossy().into_owned(),
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                mtime: h.mtime().unwrap(),
                data,
            }
        })
        .collect()
}

fn member<'a>(ms: &'a [Member], path: &str) -> &'a Member {
    ms.iter()
        .find(|m| m.path == path)
        .unwrap_or_else(|| panic!("no member {path}"))
}

fn json_of(ms: &[Member], path: &str) -> Value {
    serde_json::from_slice(&member(ms, path).data).unwrap()
}

/// A tar of files (and symlinks, written as `-> target`), in the given order.
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        if let Some(target) = std::str::from_utf8(data)
            .ok()
            .and_then(|d| d.strip_prefix("-> "))
        {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, name, target).unwrap();
        } else {
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, *data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn rebuild(ms: &[Member]) -> Vec<u8> {
    let files: Vec<(&str, &[u8])> = ms
        .iter()
        .filter(|m| m.kind == tar::EntryType::Regular)
        .map(|m| (m.path.as_str(), m.data.as_slice()))
        .collect();
    tar_of(&files)
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

fn index_bytes(s: &Store) -> Vec<u8> {
    fs::read(s.index_path()).unwrap()
}

fn tags_of(s: &Store, id: &Digest) -> Vec<String> {
    let img = s
        .images()
        .unwrap()
        .into_iter()
        .find(|i| &i.id == id)
        .unwrap();
    img.tags.iter().map(|t| t.to_string()).collect()
}

/// Loading `archive` into `s` fails, leaves the index as it was, and the message says `needle`.
fn assert_load_fails(s: &Store, archive: &[u8], needle: &str) -> StoreError {
    let before = index_bytes(s);
    let err = load(s, &mut &archive[..]).expect_err("load should fail");
    assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
    assert!(!err.to_string().contains('\n'), "one line: {err}");
    assert_eq!(index_bytes(s), before, "index changed by a failed load");
    err
}

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

#[test]
fn load_of_gzip_and_zstd_compressed_saves() {
    let t = tempfile::tempdir().unwrap();
    let a = new_store(&t, "a");
    let made = busybox(&a);
    let archive = save_vec(&a, &["busybox"]);
    let zst = zstd::encode_all(&archive[..], 3).unwrap();
    for (name, bytes) in [("gz", gzip(&archive)), ("zst", zst)] {
        let b = new_store(&t, name);
        let loaded = load(&b, &mut &bytes[..]).unwrap();
        assert_eq!(loaded[0].id, made.id);
        assert_eq!(tags_of(&b, &made.id), ["docker.io/library/busybox:latest"]);
    }
}

#[test]
fn load_of_a_legacy_docker_archive() {
    let t = tempfile::tempdir().unwrap();
    let plain = layer(&[("bin/sh", b"sh")]);
    let compressed_tar = layer(&[("etc/motd", b"motd")]);
    let compressed = gzip(&compressed_tar);
    let diff_ids = [
        sha256_of(&plain),
        sha256_of(&compressed_tar),
        sha256_of(&plain),
    ];
    let config = config_json(&diff_ids, CREATED);
    let config_hex = sha256_of(&config).digest().to_string();
    let (id1, id2, id3) = ("1".repeat(64), "2".repeat(64), "3".repeat(64));
    let manifest = serde_json::to_vec(&json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": ["busybox:latest", "example.com/team/app:v1"],
        "Layers": [format!("{id1}/layer.tar"), format!("{id2}/layer.tar"), format!("./{id3}/layer.tar")],
    }]))
    .unwrap();
    let link = format!("-> ../{id1}/layer.tar");
    let archive = tar_of(&[
        // manifest.json first: members may come in any order.
        ("manifest.json", &manifest),
        (&format!("{id3}/layer.tar"), link.as_bytes()),
        (&format!("{id1}/VERSION"), b"1.0"),
        (&format!("{id1}/json"), b"{}"),
        (&format!("{id1}/layer.tar"), &plain),
        (&format!("{id2}/layer.tar"), &compressed),
        (&format!("{config_hex}.json"), &config),
        ("repositories", b"{\"busybox\":{\"latest\":\"3333\"}}"),
    ]);
    let s = new_store(&t, "b");
    let loaded = load(&s, &mut &archive[..]).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id.digest(), config_hex);
    assert_eq!(
        tags_of(&s, &loaded[0].id),
        [
            "docker.io/library/busybox:latest",
            "example.com/team/app:v1"
        ]
    );
    let img = s.resolve_image("busybox").unwrap();
    assert_eq!(img.created.as_deref(), Some(CREATED));
    assert_eq!(img.size, 2 * plain.len() as u64 + compressed.len() as u64);
    let m = s.manifest(&img.manifest).unwrap();
    assert_eq!(m.config().media_type(), &MediaType::ImageConfig);
    let types: Vec<&MediaType> = m.layers().iter().map(|l| l.media_type()).collect();
    assert_eq!(
        types,
        [
            &MediaType::ImageLayer,
            &MediaType::ImageLayerGzip,
            &MediaType::ImageLayer
        ]
    );
    assert_eq!(m.layers()[1].digest(), &sha256_of(&compressed));
    assert_eq!(s.config_bytes(&img).unwrap(), config);

    // The same archive gzipped loads the same image.
    let z = new_store(&t, "z");
    assert_eq!(
        load(&z, &mut &gzip(&archive)[..]).unwrap()[0].id,
        loaded[0].id
    );
}

#[test]
fn load_of_a_docker_archive_with_a_wrong_diff_id_fails() {
    let t = tempfile::tempdir().unwrap();
    let plain = layer(&[("bin/sh", b"sh")]);
    let config = config_json(&[sha256_of(b"something else")], CREATED);
    let config_hex = sha256_of(&config).digest().to_string();
    let manifest = serde_json::to_vec(&json!([{
        "Config": format!("{config_hex}.json"), "RepoTags": ["x:1"], "Layers": ["l.tar"],
    }]))
    .unwrap();
    let archive = tar_of(&[
        ("l.tar", &plain),
        (&format!("{config_hex}.json"), &config),
        ("manifest.json", &manifest),
    ]);
    let s = new_store(&t, "b");
    let err = assert_load_fails(&s, &archive, "diff ID");
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(s.images().unwrap().is_empty());
}

#[test]
fn tampered_blob_is_rejected_and_the_index_is_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let a = new_store(&t, "a");
    let made = busybox(&a);
    let mut ms = members(&save_vec(&a, &["busybox"]));
    let target = format!("blobs/sha256/{}", made.layers[1].digest());
    let m = ms.iter_mut().find(|m| m.path == target).unwrap();
    m.data = layer(&[("etc/motd", b"evil\n")]);
    let tampered = rebuild(&ms);

    let b = new_store(&t, "b");
    make_image(&b, &[layer(&[("other", b"o")])], CREATED, &["other:latest"]);
    let images_before = b.images().unwrap();
    let err = assert_load_fails(&b, &tampered, &target);
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert_eq!(b.images().unwrap(), images_before);
    // Also when the store already holds the genuine blob.
    assert_load_fails(&a, &tampered, &target);
}

#[test]
fn truncated_archives_are_rejected() {
    let t = tempfile::tempdir().unwrap();
    let a = new_store(&t, "a");
    busybox(&a);
    let archive = save_vec(&a, &["busybox"]);
    let b = new_store(&t, "b");
    for cut in [100, 512, 700, archive.len() / 2, archive.len() - 1536 - 10] {
        assert_load_fails(&b, &archive[..cut], "image archive");
    }
    let gz = gzip(&archive);
    assert_load_fails(&b, &gz[..gz.len() / 2], "is not a valid tar archive");
    // Only the gzip trailer missing: the content is all there but the stream is damaged.
    assert_load_fails(&b, &gz[..gz.len() - 4], "is not a valid tar archive");
    assert!(b.images().unwrap().is_empty());
}

#[test]
fn garbage_input_is_rejected() {
    let t = tempfile::tempdir().unwrap();
    let s = new_store(&t, "a");
    let noise: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for (input, needle) in [
        (&b""[..], "image archive"),
        (&b"hello, world"[..], "image archive"),
        (&noise[..], "image archive"),
        (&[0u8; 10240][..], "contains no files"),
        (&gzip(b"not a tar at all")[..], "image archive"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00, 1, 2][..], "xz"),
        (
            &tar_of(&[("hello.txt", b"hi")])[..],
            "neither index.json nor manifest.json",
        ),
        (
            &tar_of(&[("manifest.json", b"{not json")])[..],
            "manifest.json",
        ),
        (&tar_of(&[("index.json", b"[]")])[..], "index.json"),
        (&tar_of(&[("manifest.json", b"[]")])[..], "no images"),
        (&tar_of(&[("blobs/sha256/zz", b"x")])[..], "blobs/sha256/zz"),
    ] {
        assert_load_fails(&s, input, needle);
    }
}

#[test]
fn archive_missing_a_layer_is_rejected() {
    let t = tempfile::tempdir().unwrap();
    let a = new_store(&t, "a");
    let made = busybox(&a);
    let ms = members(&save_vec(&a, &["busybox"]));
    let gone = format!("blobs/sha256/{}", made.layers[0].digest());
    let kept: Vec<Member> = ms.into_iter().filter(|m| m.path != gone).collect();
    let b = new_store(&t, "b");
    assert_load_fails(
        &b,
        &rebuild(&kept),
        &format!("layer {} is missing", made.layers[0]),
    );

    // The same archive seen as a docker-archive only (no index.json).
    let docker_only: Vec<Member> = kept
        .into_iter()
        .filter(|m| m.path != "index.json")
        .collect();
    assert_load_fails(&b, &rebuild(&docker_only), "not in the archive");
    assert!(b.images().unwrap().is_empty());
}

#[test]
fn members_may_come_in_any_order() {
    let t = tempfile::tempdir().unwrap();
    let a = new_store(&t, "a");
    let made = busybox(&a);
    let mut ms = members(&save_vec(&a, &["busybox"]));
    ms.reverse();
    let b = new_store(&t, "b");
    assert_eq!(load(&b, &mut &rebuild(&ms)[..]).unwrap()[0].id, made.id);
}

#[test]
fn docker_archive_of_a_save_without_index_json_loads() {
    let t = tempfile::tempdir().unwrap();
    let a = new_store(&t, "a");
    let made = busybox(&a);
    let ms: Vec<Member> = members(&save_vec(&a, &["busybox"]))
        .into_iter()
        .filter(|m| m.path != "index.json")
        .collect();
    let b = new_store(&t, "b");
    let loaded = load(&b, &mut &rebuild(&ms)[..]).unwrap();
    assert_eq!(loaded[0].id, made.id);
    assert_eq!(tags_of(&b, &made.id), ["docker.io/library/busybox:latest"]);
}

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

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> &'static [u8] {
        static SAMPLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        SAMPLE.get_or_init(|| {
            let t = tempfile::tempdir().unwrap();
            let s = new_store(&t, "a");
            make_image(&s, &[layer(&[("f", b"data")])], CREATED, &["tiny:latest"]);
            save_vec(&s, &["tiny"])
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn load_of_a_damaged_archive_errs_or_loads(
            cut in 0usize..8192,
            flips in proptest::collection::vec((0usize..8192, any::<u8>()), 0..4),
            gz in any::<bool>(),
        ) {
            let mut bytes = sample().to_vec();
            for (at, v) in flips {
                let n = bytes.len();
                bytes[at % n] ^= v;
            }
            bytes.truncate(bytes.len().saturating_sub(cut));
            if gz {
                bytes = gzip(&bytes);
            }
            let t = tempfile::tempdir().unwrap();
            let s = new_store(&t, "b");
            if let Err(e) = load(&s, &mut &bytes[..]) {
                prop_assert!(!e.to_string().is_empty());
                prop_assert!(s.images().unwrap().is_empty());
            }
        }
    }
}

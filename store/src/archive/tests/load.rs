//! `load` of docker-archives and damaged input.

use oci_spec::image::MediaType;
use serde_json::json;

use super::fixtures::*;
use crate::archive::load;
use crate::digest::sha256_of;
use crate::error::StoreError;
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
    let mid_blob = {
        let mut a = tar::Archive::new(&archive[..]);
        let first_blob = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.size() > 0)
            .unwrap();
        first_blob.raw_file_position() as usize + 100
    };
    // Mid-header, exactly after the first header (looks like a complete archive of one
    // directory), mid-blob, and inside the last header.
    for (cut, needle) in [
        (
            100,
            "the input is not a valid tar archive: it ends in the middle of a tar header",
        ),
        (512, "neither index.json nor manifest.json"),
        (
            700,
            "damaged after entry blobs: it ends in the middle of a tar header",
        ),
        (mid_blob, "is truncated"),
        (archive.len() - 1536 - 10, "damaged after entry oci-layout"),
    ] {
        assert_load_fails(&b, &archive[..cut], needle);
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
        (&b""[..], "contains no files"),
        (&b"hello, world"[..], "the input is not a valid tar archive"),
        (&noise[..], "the input is not a valid tar archive"),
        (&[0u8; 10240][..], "contains no files"),
        (
            &gzip(b"not a tar at all")[..],
            "the input is not a valid tar archive",
        ),
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

#[test]
fn empty_index_json_falls_back_to_manifest_json() {
    let t = tempfile::tempdir().unwrap();
    let a = new_store(&t, "a");
    let made = busybox(&a);
    let mut ms = members(&save_vec(&a, &["busybox"]));
    let index = ms.iter_mut().find(|m| m.path == "index.json").unwrap();
    index.data = br#"{"schemaVersion":2,"manifests":[]}"#.to_vec();
    let b = new_store(&t, "b");
    let loaded = load(&b, &mut &rebuild(&ms)[..]).unwrap();
    assert_eq!(loaded[0].id, made.id);
    assert_eq!(tags_of(&b, &made.id), ["docker.io/library/busybox:latest"]);
}

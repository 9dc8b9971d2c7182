//! Images, layers and archives the archive tests start from.

use std::fs;
use std::io::{Read, Write};

use oci_spec::image::{Descriptor, Digest, MediaType};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::archive::{load, save};
use crate::error::StoreError;
use crate::reference::Reference;
use crate::root::Store;

pub(super) const CREATED: &str = "2024-05-01T12:00:00Z";
pub(super) const CREATED_SECS: u64 = 1_714_564_800;

pub(super) fn new_store(t: &TempDir, name: &str) -> Store {
    Store::open(t.path().join(name)).unwrap()
}

/// A small layer tar.
pub(super) fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
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

pub(super) fn config_json(diff_ids: &[Digest], created: &str) -> Vec<u8> {
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

pub(super) struct Made {
    pub(super) id: Digest,
    pub(super) manifest: Digest,
    pub(super) layers: Vec<Digest>,
}

/// Store an image (uncompressed layers) as `berth build`/`pull` would, tagged `tags`.
pub(super) fn make_image(s: &Store, layers: &[Vec<u8>], created: &str, tags: &[&str]) -> Made {
    let mut descs = Vec::new();
    let mut digests = Vec::new();
    for l in layers {
        let (d, n) = s.blobs().put_bytes(l).unwrap();
        descs.push(Descriptor::new(MediaType::ImageLayer, n, d.clone()));
        digests.push(d);
    }
    let config = config_json(&digests, created);
    let new = s.write_image(&config, descs).unwrap();
    let tags: Vec<Reference> = tags.iter().map(|t| Reference::parse(t).unwrap()).collect();
    s.add_image(&new, &tags).unwrap();
    Made {
        id: new.config,
        manifest: new.manifest,
        layers: digests,
    }
}

pub(super) fn busybox(s: &Store) -> Made {
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

pub(super) fn save_vec(s: &Store, specs: &[&str]) -> Vec<u8> {
    let specs: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    save(s, &specs, &mut out).unwrap();
    out
}

pub(super) struct Member {
    pub(super) path: String,
    pub(super) data: Vec<u8>,
    pub(super) kind: tar::EntryType,
    pub(super) mode: u32,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) mtime: u64,
}

pub(super) fn members(archive: &[u8]) -> Vec<Member> {
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

pub(super) fn member<'a>(ms: &'a [Member], path: &str) -> &'a Member {
    ms.iter()
        .find(|m| m.path == path)
        .unwrap_or_else(|| panic!("no member {path}"))
}

pub(super) fn json_of(ms: &[Member], path: &str) -> Value {
    serde_json::from_slice(&member(ms, path).data).unwrap()
}

/// A tar of files (and symlinks, written as `-> target`), in the given order.
pub(super) fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
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

pub(super) fn rebuild(ms: &[Member]) -> Vec<u8> {
    let files: Vec<(&str, &[u8])> = ms
        .iter()
        .filter(|m| m.kind == tar::EntryType::Regular)
        .map(|m| (m.path.as_str(), m.data.as_slice()))
        .collect();
    tar_of(&files)
}

pub(super) fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

pub(super) fn index_bytes(s: &Store) -> Vec<u8> {
    fs::read(s.index_path()).unwrap()
}

pub(super) fn tags_of(s: &Store, id: &Digest) -> Vec<String> {
    let img = s
        .images()
        .unwrap()
        .into_iter()
        .find(|i| &i.id == id)
        .unwrap();
    img.tags.iter().map(|t| t.to_string()).collect()
}

/// Loading `archive` into `s` fails, leaves the index as it was, and the message says `needle`
/// (or one of its `|`-separated alternatives).
pub(super) fn assert_load_fails(s: &Store, archive: &[u8], needle: &str) -> StoreError {
    let before = index_bytes(s);
    let err = load(s, &mut &archive[..]).expect_err("load should fail");
    let msg = err.to_string();
    assert!(
        needle.split('|').any(|n| msg.contains(n)),
        "{needle:?} not in {msg}"
    );
    assert!(!err.to_string().contains('\n'), "one line: {err}");
    assert_eq!(index_bytes(s), before, "index changed by a failed load");
    err
}

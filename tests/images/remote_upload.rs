//! How `berth push` puts a plain layer on the wire: gzip made of blocks compressed in parallel
//! (one gzip member, decodable by any reader), and chunks sized by the registry's
//! `OCI-Chunk-Min-Length`.

use crate::common;
use crate::registry_client;

use std::io::Read;

use common::Env;
use registry_client::{Server, digest_of};

/// A one-file tar of `size` bytes, half xorshift noise and half text, imported as `name`.
fn import_layer(env: &Env, name: &str, size: usize, seed: u64) {
    let tar = env.path("layer.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
    let mut x = seed;
    let mut data: Vec<u8> = (0..size / 2)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    data.extend(
        b"a line of text, again "
            .iter()
            .cycle()
            .take(size - size / 2),
    );
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "data.bin", &data[..]).unwrap();
    b.finish().unwrap();
    env.ok(&["import", tar.to_str().unwrap(), name]);
}

/// The pushed manifest's only layer: (descriptor, bytes), and the config's first diff ID.
fn pushed_layer(s: &Server, repo: &str, tag: &str) -> (serde_json::Value, Vec<u8>, String) {
    let m = s
        .req(
            "GET",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[(
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
            )],
            b"",
        )
        .json();
    let layer = m["layers"][0].clone();
    let blob = s
        .get(&format!(
            "/v2/{repo}/blobs/{}",
            layer["digest"].as_str().unwrap()
        ))
        .body;
    let cfg = s
        .get(&format!(
            "/v2/{repo}/blobs/{}",
            m["config"]["digest"].as_str().unwrap()
        ))
        .json();
    let diff_id = cfg["rootfs"]["diff_ids"][0].as_str().unwrap().to_string();
    (layer, blob, diff_id)
}

#[test]
fn plain_layers_go_up_as_one_gzip_member_of_parallel_blocks() {
    let env = Env::new();
    let s = Server::start(&env.path("registry"), &[]);
    let name = format!("127.0.0.1:{}/gz/app:v1", s.port);
    import_layer(&env, &name, 6 << 20, 0x9e3779b97f4a7c15);
    let out = env.ok(&["push", &name]);
    assert!(out.starts_with("v1: digest: sha256:"), "{out}");

    let (layer, blob, diff_id) = pushed_layer(&s, "gz/app", "v1");
    assert!(
        layer["mediaType"].as_str().unwrap().ends_with("tar+gzip"),
        "{layer}"
    );
    assert_eq!(layer["digest"].as_str().unwrap(), digest_of(&blob));
    assert_eq!(layer["size"].as_u64().unwrap(), blob.len() as u64);
    // One member holds the whole layer: a single-member decoder gives back every byte.
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(digest_of(&plain), diff_id);
    // Blocks compressed independently end in a sync flush (an empty stored block, 00 00 ff ff):
    // a 6 MiB layer in 1 MiB blocks has five such joins. A one-thread gzip has none.
    let joins = blob.windows(4).filter(|w| w == &[0, 0, 0xff, 0xff]).count();
    assert!(joins >= 5, "{joins} block joins");

    // Pulled back, it is the same image.
    let other = Env::new();
    other.ok(&["pull", &name]);
    assert_eq!(
        other.ok(&["inspect", "-f", "{{.Id}}", &name]),
        env.ok(&["inspect", "-f", "{{.Id}}", &name])
    );
    other.check_store();
}

#[test]
fn push_sends_chunks_of_at_least_the_registry_minimum() {
    let env = Env::new();
    let min = 20 << 20;
    let s = Server::start(
        &env.path("registry"),
        &["--chunk-min-length", &min.to_string()],
    );
    let name = format!("127.0.0.1:{}/chunks/app:v1", s.port);
    // Mostly noise: ~45 MiB compressed, three PATCHes of ≥ 20 MiB where 8 MiB chunks take six.
    import_layer(&env, &name, 88 << 20, 0x2545f4914f6cdd1d);
    env.ok(&["push", &name]);

    let (_, blob, _) = pushed_layer(&s, "chunks/app", "v1");
    let patches = s
        .access_log()
        .lines()
        .filter(|l| l.starts_with("PATCH /v2/chunks/app/blobs/uploads/"))
        .count();
    // The config blob takes one PATCH of its own.
    assert_eq!(
        patches,
        blob.len().div_ceil(min) + 1,
        "{} bytes went up in {patches} PATCHes",
        blob.len()
    );
}

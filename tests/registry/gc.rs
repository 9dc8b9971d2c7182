//! `berth registry gc` on storage a real `berth registry serve` wrote: what it deletes, what it
//! keeps, the dry run, the grace period, and that the surviving image still pulls unchanged.

use crate::client as registry_client;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use registry_client::*;
use tempfile::TempDir;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn berth(storage: &Path, args: &[&str]) -> Out {
    let o = Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .args(["--root", storage.join("root").to_str().expect("utf-8")])
        .args(["registry", "gc"])
        .args(args)
        .output()
        .expect("run berth registry gc");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn gc_ok(storage: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["--storage", storage.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    let o = berth(storage, &all);
    assert_eq!(o.code, 0, "stdout: {}\nstderr: {}", o.stdout, o.stderr);
    o.stdout.lines().map(str::to_string).collect()
}

fn blob_path(storage: &Path, d: &str) -> PathBuf {
    let hex = d.strip_prefix("sha256:").expect("sha256 digest");
    storage.join("blobs/sha256").join(&hex[..2]).join(hex)
}

fn link_path(storage: &Path, repo: &str, d: &str) -> PathBuf {
    let hex = d.strip_prefix("sha256:").expect("sha256 digest");
    storage
        .join("repositories")
        .join(repo)
        .join("_layers/sha256")
        .join(hex)
}

/// Push `config` + `layers` as an OCI image tagged `tag`; returns (manifest digest, bytes).
fn push_image(
    s: &Server,
    repo: &str,
    tag: &str,
    config: &[u8],
    layers: &[&[u8]],
) -> (String, String) {
    let cd = s.push_blob(repo, config);
    let lds: Vec<String> = layers.iter().map(|l| s.push_blob(repo, l)).collect();
    let ls: Vec<(&str, usize)> = lds
        .iter()
        .zip(layers)
        .map(|(d, l)| (d.as_str(), l.len()))
        .collect();
    let m = manifest_json(OCI_MANIFEST, (&cd, config.len()), &ls, "");
    let r = s.req(
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", OCI_MANIFEST)],
        m.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    (digest_of(m.as_bytes()), m)
}

fn stop(mut s: Server) {
    s.signal("TERM");
    assert!(s.wait_exit(20).success());
}

#[test]
fn gc_deletes_unreferenced_blobs_and_keeps_live_images() {
    let dir = TempDir::new().expect("tempdir");
    let storage = dir.path().join("storage");
    let s = Server::start(&storage, &[]);

    let shared: &[u8] = b"a layer both images use";
    let (layer_a, layer_b): (&[u8], &[u8]) = (b"only image a has this", b"only image b has this");
    let (cfg_a, cfg_b) = (
        br#"{"architecture":"amd64","os":"linux","config":{"Labels":{"img":"a"}},"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec(),
        config_blob(),
    );
    let (md_a, _) = push_image(&s, "gc/one", "a", &cfg_a, &[shared, layer_a]);
    let (md_b, m_b) = push_image(&s, "gc/two", "b", &cfg_b, &[shared, layer_b]);
    let orphan = s.push_blob("gc/one", b"pushed, but no manifest references it");
    // An upload a client abandoned half-way.
    let r = s.req("POST", "/v2/gc/one/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    let loc = r.header("location").expect("location").to_string();
    let r = s.req(
        "PATCH",
        &loc,
        &[("Content-Type", "application/octet-stream")],
        b"half a blob",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let upload_id = loc
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .and_then(|l| l.split('?').next())
        .expect("upload id")
        .to_string();
    let upload_dir = storage
        .join("repositories/gc/one/_uploads")
        .join(&upload_id);
    assert!(upload_dir.is_dir(), "{}", upload_dir.display());

    let r = s.req("DELETE", &format!("/v2/gc/one/manifests/{md_a}"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    stop(s);

    let dead: BTreeSet<String> = [
        orphan.clone(),
        digest_of(layer_a),
        digest_of(&cfg_a),
        md_a.clone(),
    ]
    .into();
    let live = [
        digest_of(shared),
        digest_of(layer_b),
        digest_of(&cfg_b),
        md_b.clone(),
    ];
    let stored_before = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(storage.join("blobs/sha256"))
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .map(|f| f.unwrap().path())
            .collect();
        v.sort();
        v
    };
    assert_eq!(stored_before.len(), 8);

    // Dry run, with the storage named by a settings file: lists, deletes nothing.
    let cfg_file = dir.path().join("registry.toml");
    std::fs::write(
        &cfg_file,
        format!("storage = {:?}\n", storage.to_str().expect("utf-8")),
    )
    .unwrap();
    let o = berth(
        &storage,
        &[
            "--config",
            cfg_file.to_str().unwrap(),
            "--grace",
            "0s",
            "--dry-run",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    let listed: BTreeSet<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("blob eligible for deletion: "))
        .map(str::to_string)
        .collect();
    assert_eq!(listed, dead, "{}", o.stdout);
    assert!(
        lines.contains(&format!("upload eligible for deletion: gc/one/{upload_id}").as_str()),
        "{}",
        o.stdout
    );
    assert_eq!(
        lines.last().copied(),
        Some("4 blobs marked, 4 blobs eligible for deletion, 1 uploads eligible for purging")
    );
    assert_eq!(lines.len(), 6, "{}", o.stdout);
    let mut stored_after: Vec<PathBuf> = stored_before
        .iter()
        .filter(|p| p.exists())
        .cloned()
        .collect();
    stored_after.sort();
    assert_eq!(stored_after, stored_before);
    assert!(upload_dir.is_dir());
    assert!(link_path(&storage, "gc/one", &digest_of(layer_a)).exists());

    // The real thing.
    let lines = gc_ok(&storage, &["--grace", "0s"]);
    let deleted: BTreeSet<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("deleting blob: "))
        .map(str::to_string)
        .collect();
    assert_eq!(deleted, dead, "{lines:?}");
    assert!(
        lines.contains(&format!("deleting upload: gc/one/{upload_id}")),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("4 blobs marked, 4 blobs deleted, 1 uploads purged")
    );
    for d in &dead {
        assert!(!blob_path(&storage, d).exists(), "{d} still stored");
    }
    for d in &live {
        assert!(blob_path(&storage, d).exists(), "{d} was deleted");
    }
    assert!(!upload_dir.exists());
    // Links to deleted blobs go; a link to a live blob stays, even in the repository whose image
    // was deleted.
    assert!(!link_path(&storage, "gc/one", &digest_of(layer_a)).exists());
    assert!(!link_path(&storage, "gc/one", &orphan).exists());
    assert!(link_path(&storage, "gc/one", &digest_of(shared)).exists());

    // Nothing left to collect.
    assert_eq!(
        gc_ok(&storage, &["--grace", "0s"]),
        vec!["4 blobs marked, 0 blobs deleted, 0 uploads purged".to_string()]
    );

    // The surviving image still pulls, byte for byte; the deleted one is gone.
    let s = Server::start(&storage, &[]);
    let r = s.get("/v2/gc/two/manifests/b");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, m_b.as_bytes());
    assert_eq!(r.header("docker-content-digest"), Some(md_b.as_str()));
    for (d, bytes) in [
        (digest_of(shared), shared.to_vec()),
        (digest_of(layer_b), layer_b.to_vec()),
        (digest_of(&cfg_b), cfg_b.clone()),
    ] {
        let r = s.get(&format!("/v2/gc/two/blobs/{d}"));
        assert_eq!(r.status, 200, "{d}: {}", r.text());
        assert_eq!(r.body, bytes, "{d}");
    }
    assert_eq!(s.get(&format!("/v2/gc/one/manifests/{md_a}")).status, 404);
    assert_eq!(
        s.get(&format!("/v2/gc/one/blobs/{}", digest_of(layer_a)))
            .status,
        404
    );
    assert_eq!(s.get(&format!("/v2/gc/one/blobs/{orphan}")).status, 404);
    assert_eq!(
        s.get(&format!("/v2/gc/one/blobs/{}", digest_of(shared)))
            .status,
        200
    );
}

fn age(p: &Path, by: Duration) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .set_modified(SystemTime::now() - by)
        .unwrap();
}

#[test]
fn fresh_unreferenced_blob_survives_the_default_grace() {
    let dir = TempDir::new().expect("tempdir");
    let storage = dir.path().join("storage");
    let s = Server::start(&storage, &[]);
    let blob = s.push_blob("gc/race", b"uploaded; its manifest is on the way");
    stop(s);

    // Within the default hour: an unreferenced blob may belong to a push still in flight.
    assert_eq!(
        gc_ok(&storage, &[]),
        vec!["0 blobs marked, 0 blobs deleted, 0 uploads purged".to_string()]
    );
    assert!(blob_path(&storage, &blob).exists());
    assert!(link_path(&storage, "gc/race", &blob).exists());

    // A fresh link alone keeps it too (the blob was pushed long ago, linked just now).
    age(&blob_path(&storage, &blob), Duration::from_secs(2 * 3600));
    gc_ok(&storage, &[]);
    assert!(blob_path(&storage, &blob).exists());

    // Once both are older than the grace period, it goes.
    age(
        &link_path(&storage, "gc/race", &blob),
        Duration::from_secs(2 * 3600),
    );
    assert_eq!(
        gc_ok(&storage, &["--grace", "1h"]),
        vec![
            format!("deleting blob: {blob}"),
            "0 blobs marked, 1 blobs deleted, 0 uploads purged".to_string()
        ]
    );
    assert!(!blob_path(&storage, &blob).exists());
    assert!(!link_path(&storage, "gc/race", &blob).exists());
}

/// A first push into a new repository that the client abandoned: the repository holds a
/// session and nothing else, and gc still finds it (it used to look only in repositories
/// with manifests or links).
#[test]
fn gc_purges_an_abandoned_first_push_into_a_new_repository() {
    let dir = TempDir::new().expect("tempdir");
    let storage = dir.path().join("storage");
    let s = Server::start(&storage, &[]);
    let r = s.req("POST", "/v2/gc/brand/new/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    let loc = r.header("location").expect("location").to_string();
    let r = s.req(
        "PATCH",
        &loc,
        &[("Content-Type", "application/octet-stream")],
        b"the start of a layer",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    stop(s);
    let uploads = storage.join("repositories/gc/brand/new/_uploads");
    let ids: Vec<_> = std::fs::read_dir(&uploads)
        .expect("the session is stored")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");

    // Fresh: kept.
    assert_eq!(
        gc_ok(&storage, &[]),
        vec!["0 blobs marked, 0 blobs deleted, 0 uploads purged".to_string()]
    );
    assert!(uploads.join(&ids[0]).is_dir());
    assert_eq!(
        gc_ok(&storage, &["--grace", "0s"]),
        vec![
            format!("deleting upload: gc/brand/new/{}", ids[0]),
            "0 blobs marked, 0 blobs deleted, 1 uploads purged".to_string()
        ]
    );
    assert!(!uploads.join(&ids[0]).exists());
}

#[test]
fn gc_errors_are_one_clear_line() {
    let dir = TempDir::new().expect("tempdir");
    let missing = dir.path().join("nope");
    let o = berth(dir.path(), &["--storage", missing.to_str().unwrap()]);
    assert_eq!(o.code, 1);
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
    assert!(
        o.stderr.contains("not a registry storage directory"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains(missing.to_str().unwrap()), "{}", o.stderr);
    assert!(!missing.exists(), "gc must not create storage");

    let o = berth(
        dir.path(),
        &["--storage", dir.path().to_str().unwrap(), "--grace", "soon"],
    );
    assert_eq!(o.code, 2);
    assert!(
        o.stderr.contains("invalid duration \"soon\""),
        "{}",
        o.stderr
    );
}

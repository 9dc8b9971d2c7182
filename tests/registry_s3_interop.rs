//! skopeo against the object-storage backend: the whole interop suite (`registry_interop.rs`)
//! on a bucket, and an image copied in through one replica and out through another.

#[path = "registry_interop.rs"]
mod interop;

use std::process::Command;

use interop::client::*;
use interop::{layout_manifest_digest, make_layout, skopeo};
use tempfile::TempDir;

#[test]
fn skopeo_copies_in_through_one_replica_and_out_through_the_other() {
    if Command::new("skopeo").arg("--version").output().is_err() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let storage = dir.path().join("storage");
    let (a, b) = (Server::start(&storage, &[]), Server::start(&storage, &[]));
    let built = dir.path().join("built");
    make_layout(&built);
    let src = dir.path().join("src");
    skopeo(&[
        "copy",
        &format!("oci:{}:t", built.display()),
        &format!("oci:{}:t", src.display()),
    ]);
    let md = layout_manifest_digest(&src);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:t", src.display()),
        &format!("docker://127.0.0.1:{}/team/app:v1", a.port),
    ]);
    let back = dir.path().join("back");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://127.0.0.1:{}/team/app:v1", b.port),
        &format!("oci:{}:t", back.display()),
    ]);
    assert_eq!(layout_manifest_digest(&back), md, "same manifest digest");
    // Every blob of the source layout came back byte-identical.
    for e in std::fs::read_dir(src.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let got = std::fs::read(back.join("blobs/sha256").join(e.file_name()))
            .unwrap_or_else(|err| panic!("{:?} missing after the copy: {err}", e.file_name()));
        assert_eq!(got, std::fs::read(e.path()).unwrap(), "{:?}", e.file_name());
    }
    // Replica b serves the same manifest bytes replica a stored.
    let (ra, rb) = (
        a.get("/v2/team/app/manifests/v1"),
        b.get("/v2/team/app/manifests/v1"),
    );
    assert_eq!((ra.status, rb.status), (200, 200));
    assert_eq!(ra.body, rb.body);
    assert_eq!(rb.header("docker-content-digest"), Some(md.as_str()));
}

//! `berth registry serve` against a real peer: skopeo pushes an OCI layout into it and pulls it
//! back byte-identical; a second copy converts to Docker schema2 inside the registry (exercising
//! cross-repository mount and the Docker media types).

use crate::common;

use std::path::Path;
use std::process::Command;

use crate::client::*;
use common::have;
use tempfile::TempDir;

// On a directory and on S3 (moto).
per_backend!(
    [fs: Fs, s3: S3]
    [
        skopeo_push_and_pull_round_trip,
        skopeo_push_with_basic_auth,
        tls_with_a_self_signed_certificate,
    ]
);

fn write_blob(layout: &Path, bytes: &[u8]) -> String {
    let d = digest_of(bytes);
    let hex = d.trim_start_matches("sha256:");
    std::fs::write(layout.join("blobs/sha256").join(hex), bytes).unwrap();
    d
}

/// A minimal OCI image layout with one uncompressed layer, tagged `t`; returns the manifest digest.
pub(crate) fn make_layout(layout: &Path) -> String {
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "data.bin", content.as_slice())
        .unwrap();
    let tar = b.into_inner().unwrap();
    // Compressed, as a registry push would make it anyway (skopeo gzips uncompressed layers).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let layer = gz.finish().unwrap();
    let diff_id = digest_of(&tar);
    let ld = write_blob(layout, &layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let cd = write_blob(layout, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let md = write_blob(layout, manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{md}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#,
        manifest.len()
    );
    std::fs::write(layout.join("index.json"), index).unwrap();
    md
}

pub(crate) fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn layout_manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn skopeo_push_and_pull_round_trip(b: Backend) {
    if !have("skopeo") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let s = Server::start_on(b, &dir.path().join("storage"), &[]);
    let built = dir.path().join("built");
    make_layout(&built);
    // The source layout is what skopeo itself writes from ours.
    let src = dir.path().join("src");
    skopeo(&[
        "copy",
        &format!("oci:{}:t", built.display()),
        &format!("oci:{}:t", src.display()),
    ]);
    let md = layout_manifest_digest(&src);
    let reg = format!("docker://127.0.0.1:{}", s.port);
    let src_ref = format!("oci:{}:t", src.display());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &src_ref,
        &format!("{reg}/x/y:tag"),
    ]);

    let r = s.get("/v2/x/y/manifests/tag");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(md.as_str()));
    assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));

    let back = dir.path().join("back");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("{reg}/x/y:tag"),
        &format!("oci:{}:t", back.display()),
    ]);
    assert_eq!(
        layout_manifest_digest(&back),
        md,
        "identical manifest after the round trip"
    );

    // Registry to registry, converted to Docker schema2 on the way.
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!("{reg}/x/y:tag"),
        &format!("{reg}/other/z:v2s2"),
    ]);
    let r = s.get("/v2/other/z/manifests/v2s2");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(DOCKER_MANIFEST));
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("{reg}/other/z:v2s2"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, r.body);
    // Layer and config are shared by both repositories; each manifest is stored once.
    assert_eq!(s.stored_blobs().len(), 4);
    let mounted = |log: &str| {
        log.lines().any(|l| {
            l.starts_with("POST /v2/other/z/blobs/uploads/?")
                && l.contains("mount=")
                && l.contains(" 201 ")
        })
    };
    common::wait_for(
        "skopeo's mount in the access log",
        std::time::Duration::from_secs(10),
        || mounted(&s.access_log()),
    );
}

fn skopeo_push_with_basic_auth(b: Backend) {
    if !have("skopeo") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("htpasswd");
    let out = assert_cmd::Command::cargo_bin("berth")
        .unwrap()
        .args([
            "registry",
            "htpasswd",
            "ci",
            "--file",
            file.to_str().unwrap(),
        ])
        .write_stdin("hunter2\n")
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = Server::start_on(
        b,
        &dir.path().join("storage"),
        &["--htpasswd", file.to_str().unwrap()],
    );
    let src = dir.path().join("src");
    make_layout(&src);
    let dest = format!("docker://127.0.0.1:{}/auth/app:v1", s.port);
    let src_ref = format!("oci:{}:t", src.display());
    let denied = Command::new("skopeo")
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "ci:wrong",
            &src_ref,
            &dest,
        ])
        .output()
        .unwrap();
    assert!(!denied.status.success(), "wrong password must be refused");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "ci:hunter2",
        &src_ref,
        &dest,
    ]);
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--creds",
            "ci:hunter2",
            "--raw",
            &dest,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["schemaVersion"], 2);
}

fn tls_with_a_self_signed_certificate(b: Backend) {
    if !have("openssl") || !have("curl") || !have("skopeo") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = Server::start_on(
        b,
        &dir.path().join("storage"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let out = Command::new("curl")
        .args(["-s", "-i", "--cacert", cert.to_str().unwrap()])
        .arg(format!("https://127.0.0.1:{}/v2/", s.port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/") && text.contains(" 200"), "{text}");
    assert!(
        text.contains("docker-distribution-api-version: registry/2.0"),
        "{text}"
    );
    // Plain HTTP is not spoken on the TLS port.
    let plain = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{}/v2/", s.port))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
    // skopeo pushes over TLS, verifying against the certificate.
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&cert, certs.join("ca.crt")).unwrap();
    let src = dir.path().join("src");
    let md = make_layout(&src);
    skopeo(&[
        "copy",
        "--dest-cert-dir",
        certs.to_str().unwrap(),
        &format!("oci:{}:t", src.display()),
        &format!("docker://127.0.0.1:{}/tls/app:v1", s.port),
    ]);
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            cert.to_str().unwrap(),
        ])
        .arg(format!(
            "https://127.0.0.1:{}/v2/tls/app/manifests/v1",
            s.port
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let _ = md;
}

/// An image copied in through one replica on a bucket and out through another.
#[test]
fn s3_skopeo_copies_in_through_one_replica_and_out_through_the_other() {
    if !have("skopeo") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let storage = dir.path().join("storage");
    let (a, b) = (
        Server::start_on(Backend::S3, &storage, &[]),
        Server::start_on(Backend::S3, &storage, &[]),
    );
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

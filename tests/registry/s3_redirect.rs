//! Blob GETs on a bucket are redirected to the object store, as distribution's S3 driver does:
//! `307` with a presigned GET URL of the object that holds the bytes (a session-pushed blob's
//! data object, an inline blob's own key), the client's `Range` then served by the store; HEAD
//! and manifests stay with the registry; `redirect = false` streams as before. `berth pull`,
//! skopeo and podman follow the redirect and get the same image. (On this process's moto, see
//! `registry_client.rs`; moto does not check signatures, the Garage bench in
//! `bench/registry_s3.sh` does.)

use crate::common;

use std::process::Command;

use crate::client::*;
use common::{Env, have};
use tempfile::TempDir;

fn data(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

/// A session upload (POST, PATCH, PUT as docker and skopeo push) of `blob`; its digest.
fn push_session(s: &Server, repo: &str, blob: &[u8]) -> String {
    let d = digest_of(blob);
    let r = s.req("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    let r = s.req("PATCH", r.header("location").unwrap(), &[], blob);
    assert_eq!(r.status, 202, "{}", r.text());
    let loc = r.header("location").unwrap().to_string();
    let r = s.req("PUT", &format!("{loc}?digest={d}"), &[], b"");
    assert_eq!(r.status, 201, "{}", r.text());
    d
}

/// The query parameter `k` of `url`.
fn query<'a>(url: &'a str, k: &str) -> Option<&'a str> {
    url.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
}

/// The object key a presigned path-style URL of `bucket` names.
fn key_of<'a>(url: &'a str, bucket: &str) -> &'a str {
    let path = url.split_once('?').map_or(url, |(p, _)| p);
    let at = path
        .find(&format!("/{bucket}/"))
        .unwrap_or_else(|| panic!("{url} is not in bucket {bucket}"));
    &path[at + bucket.len() + 2..]
}

/// Blob GETs the access log shows, by status.
fn blob_gets(s: &Server, status: u16) -> usize {
    s.access_log()
        .lines()
        .filter(|l| l.starts_with("GET /v2/") && l.contains("/blobs/sha256:"))
        .filter(|l| l.split(' ').nth(2) == Some(status.to_string().as_str()))
        .count()
}

#[test]
fn a_blob_get_answers_307_with_a_presigned_url_of_the_object_holding_the_bytes() {
    let dir = TempDir::new().unwrap();
    let s = Server::start_on(Backend::S3, &dir.path().join("storage"), &[]);
    let bucket = s.bucket.clone().unwrap();
    let moto = Moto::get();
    // A session blob larger than a part (stored by descriptor) and a small one pushed whole
    // (stored inline under its digest).
    let big = data(11 << 20, 3);
    let db = push_session(&s, "team/app", &big);
    let small = b"a small config".to_vec();
    let ds = s.push_blob("team/app", &small);
    let data_keys = moto.keys(&bucket, "blobs/data/");
    assert_eq!(data_keys.len(), 1, "{data_keys:?}");
    let hex = ds.trim_start_matches("sha256:");
    for (d, blob, key) in [
        (&db, &big, data_keys[0].clone()),
        (&ds, &small, format!("blobs/sha256/{}/{hex}", &hex[..2])),
    ] {
        let r = request_once(
            &format!("127.0.0.1:{}", s.port),
            "GET",
            &format!("/v2/team/app/blobs/{d}"),
            &[],
            b"",
        );
        assert_eq!(r.status, 307, "{}", r.text());
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
        assert!(r.body.is_empty());
        let url = r.header("location").unwrap().to_string();
        assert!(
            url.starts_with(&format!("{}/{bucket}/", moto.endpoint())),
            "{url}"
        );
        assert_eq!(key_of(&url, &bucket), key);
        // SigV4 query authentication with the registry's key, valid 20 minutes.
        assert_eq!(query(&url, "X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert_eq!(query(&url, "X-Amz-Expires"), Some("1200"));
        assert!(
            query(&url, "X-Amz-Credential").is_some_and(|c| c.starts_with("testing%2F")),
            "{url}"
        );
        assert_eq!(query(&url, "X-Amz-Signature").map(str::len), Some(64));

        // The URL serves the blob, whole and by range (curl, as any HTTP client would).
        assert!(
            fetch_url(&url, None) == *blob,
            "the whole blob through {url}"
        );
        let n = blob.len();
        assert_eq!(
            fetch_url(&url, Some(&format!("{}-{}", n - 9, n - 2))),
            blob[n - 9..n - 1]
        );

        // HEAD and manifests are the registry's own answers.
        let r = s.req("HEAD", &format!("/v2/team/app/blobs/{d}"), &[], b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("location"), None);
        assert_eq!(
            r.header("content-length"),
            Some(blob.len().to_string().as_str())
        );
    }
    // A range across the data object's part boundary, followed as clients follow it.
    let r = s.req(
        "GET",
        &format!("/v2/team/app/blobs/{db}"),
        &[("Range", "bytes=8388000-8389999")],
        b"",
    );
    assert_eq!(r.redirected_from.as_ref().map(|r| r.status), Some(307));
    assert_eq!(r.status, 206);
    assert!(r.body == big[8_388_000..8_390_000]);
    // A range past the end is refused by the registry in the spec's format, not redirected.
    let r = s.req(
        "GET",
        &format!("/v2/team/app/blobs/{ds}"),
        &[("Range", "bytes=100-")],
        b"",
    );
    assert_eq!(r.status, 416, "{}", r.text());
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{}", small.len()).as_str())
    );
    assert!(r.redirected_from.is_none());
    // Unknown and unlinked blobs are 404s, not URLs.
    let r = s.get(&format!("/v2/other/app/blobs/{ds}"));
    assert_eq!((r.status, r.code().as_str()), (404, "BLOB_UNKNOWN"));
    // Manifests are never redirected.
    let cfg = config_blob();
    let cd = s.push_blob("team/app", &cfg);
    let m = manifest_json(OCI_MANIFEST, (&cd, cfg.len()), &[(&db, big.len())], "");
    let r = s.req(
        "PUT",
        "/v2/team/app/manifests/v1",
        &[("Content-Type", OCI_MANIFEST)],
        m.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = s.get("/v2/team/app/manifests/v1");
    assert_eq!((r.status, r.body.as_slice()), (200, m.as_bytes()));
    assert!(r.redirected_from.is_none());
}

#[test]
fn with_redirect_off_the_registry_streams_blobs_itself() {
    let dir = TempDir::new().unwrap();
    let storage = dir.path().join("storage");
    let bucket = bucket_for(&storage);
    Moto::get().create_bucket(&bucket);
    let cfg = dir.path().join("registry.toml");
    std::fs::write(
        &cfg,
        format!("[storage]\nkind = \"s3\"\nbucket = {bucket:?}\nredirect = false\n"),
    )
    .unwrap();
    let s = Server::start_with_on(
        Backend::S3,
        &["--config", cfg.to_str().unwrap()],
        &storage,
        &[],
    );
    let big = data(9 << 20, 8);
    let d = push_session(&s, "plain/app", &big);
    let r = s.get(&format!("/v2/plain/app/blobs/{d}"));
    assert!(r.redirected_from.is_none(), "not redirected");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert!(r.body == big);
    let r = s.req(
        "GET",
        &format!("/v2/plain/app/blobs/{d}"),
        &[("Range", "bytes=5-9")],
        b"",
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &big[5..10]));
    assert_eq!(r.header("content-range"), Some("bytes 5-9/9437184"));
    assert_eq!((blob_gets(&s, 307), blob_gets(&s, 200)), (0, 1));
}

/// A rootfs tar of `size` random bytes (incompressible), so the image has a layer larger than a
/// multipart part.
fn big_rootfs(dir: &std::path::Path, size: usize) -> std::path::PathBuf {
    use std::io::Read;
    let tar_path = dir.join("big.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    let mut noise = vec![0u8; size];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut noise))
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(noise.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "noise.bin", noise.as_slice())
        .unwrap();
    b.finish().unwrap();
    tar_path
}

#[test]
fn berth_pull_skopeo_and_podman_follow_the_redirect_and_get_the_same_image() {
    let dir = TempDir::new().unwrap();
    let s = Server::start_on(Backend::S3, &dir.path().join("storage"), &[]);
    let a = Env::new();
    let name = format!("127.0.0.1:{}/redir/app:v1", s.port);
    // A layer larger than a part, so its blob is a session's data object.
    let tar = big_rootfs(dir.path(), 12 << 20);
    a.ok(&["import", tar.to_str().unwrap(), &name]);
    let pushed = a.ok(&["push", &name]);
    let digest = pushed
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("{pushed}"))
        .to_string();
    assert!(digest.starts_with("sha256:"), "{pushed}");
    assert_eq!(blob_gets(&s, 307), 0, "a push reads no blobs");

    let b = Env::new();
    let pulled = b.ok(&["pull", &name]);
    assert!(pulled.contains(&format!("Digest: {digest}")), "{pulled}");
    let id = |e: &Env| e.ok(&["image", "inspect", "--format", "{{.Id}}", &name]);
    assert_eq!(id(&b), id(&a));
    b.check_store();
    // Layer and config came from the bucket; the registry sent none of their bytes.
    assert_eq!(
        (blob_gets(&s, 307), blob_gets(&s, 200)),
        (2, 0),
        "{}",
        s.access_log()
    );

    if !have("skopeo") {
        return;
    }
    let out = dir.path().join("layout");
    let run = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{name}"))
        .arg(format!("oci:{}:v1", out.display()))
        .output()
        .expect("run skopeo");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    assert_eq!(blob_gets(&s, 307), 4, "{}", s.access_log());
    // skopeo verified every blob against its digest; check the layer's bytes landed.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            out.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let bytes = std::fs::read(
        out.join("blobs/sha256")
            .join(layer.trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_eq!(digest_of(&bytes), layer);
    assert!(bytes.len() > 8 << 20, "{}", bytes.len());

    // podman (containers/image, as skopeo) too: the image ID berth has.
    if !have("podman") {
        return;
    }
    let run = Command::new("podman")
        .arg("--root")
        .arg(b.path("podman-storage"))
        .arg("--runroot")
        .arg(b.path("podman-run"))
        .args([
            "--storage-driver",
            "vfs",
            "pull",
            "-q",
            "--tls-verify=false",
        ])
        .arg(&name)
        .output()
        .expect("run podman");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let pid = String::from_utf8_lossy(&run.stdout).trim().to_string();
    assert_eq!(format!("sha256:{pid}"), id(&b).trim());
    assert_eq!(blob_gets(&s, 307), 6, "{}", s.access_log());
    assert_eq!(blob_gets(&s, 200), 0);
}

/// A TCP proxy in front of moto that records every request head (one request per connection:
/// it asks for `Connection: close`), so a test sees exactly what reaches the object store.
struct Recorder {
    port: u16,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    fn start(upstream: u16) -> Recorder {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = heads.clone();
        // The accept thread lives as long as the test process; its connections end with
        // moto's answers.
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut client) = conn else { return };
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read_exact(&mut byte).is_err() {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let mut out: Vec<&str> = text
                        .trim_end()
                        .lines()
                        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                        .collect();
                    out.push("Connection: close");
                    seen.lock().unwrap().push(text.clone());
                    let Ok(mut up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                        return;
                    };
                    let _ = up.write_all(format!("{}\r\n\r\n", out.join("\r\n")).as_bytes());
                    let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut c2, &mut u2);
                    });
                    let _ = std::io::copy(&mut up, &mut client);
                    let _ = client.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Recorder { port, heads }
    }
}

#[test]
fn credentials_for_the_registry_never_reach_the_object_store() {
    let dir = TempDir::new().unwrap();
    let storage = dir.path().join("storage");
    let bucket = bucket_for(&storage);
    let moto = Moto::get();
    moto.create_bucket(&bucket);
    let rec = Recorder::start(moto.port);
    let cfg = dir.path().join("registry.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\nkind = \"s3\"\nbucket = {bucket:?}\nendpoint = \"http://127.0.0.1:{}\"\n",
            rec.port
        ),
    )
    .unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let out = Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .args(["--root", dir.path().join("root").to_str().unwrap()])
        .args(["registry", "htpasswd", "alice", "--file"])
        .arg(&htpasswd)
        .stdin(
            std::fs::File::open({
                let pw = dir.path().join("pw");
                std::fs::write(&pw, "s3cret\n").unwrap();
                pw
            })
            .unwrap(),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = Server::start_with_on(
        Backend::S3,
        &["--config", cfg.to_str().unwrap()],
        &storage,
        &["--htpasswd", htpasswd.to_str().unwrap()],
    );
    let addr = format!("127.0.0.1:{}", s.port);
    let name = format!("{addr}/private/app:v1");
    let berth = |e: &Env, args: &[&str]| {
        let out = e
            .berth()
            .env("BERTH_AUTH_FILE", e.path("auth.json"))
            .args(args)
            .write_stdin("s3cret\n")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let a = Env::new();
    a.import_busybox(&name);
    berth(&a, &["login", "-u", "alice", "--password-stdin", &addr]);
    let pushed = berth(&a, &["push", &name]);
    let b = Env::new();
    berth(&b, &["login", "-u", "alice", "--password-stdin", &addr]);
    let pulled = berth(&b, &["pull", &name]);
    let digest = pushed.split_whitespace().nth(2).unwrap();
    assert!(pulled.contains(&format!("Digest: {digest}")), "{pulled}");
    assert_eq!(blob_gets(&s, 307), 2, "{}", s.access_log());

    let heads = rec.heads.lock().unwrap().clone();
    let (presigned, own): (Vec<&String>, Vec<&String>) = heads.iter().partition(|h| {
        h.lines()
            .next()
            .is_some_and(|l| l.contains("X-Amz-Signature="))
    });
    assert_eq!(presigned.len(), 2, "{heads:#?}");
    for h in &presigned {
        assert!(h.starts_with("GET /"), "{h}");
        let lower = h.to_ascii_lowercase();
        assert!(!lower.contains("\nauthorization:"), "forwarded: {h}");
        assert!(!lower.contains("basic "), "{h}");
    }
    // The registry's own requests do carry its (SigV4) authorization: the recorder sees them.
    assert!(
        own.iter().any(|h| h
            .to_ascii_lowercase()
            .contains("\nauthorization: aws4-hmac-sha256")),
        "{own:#?}"
    );
}

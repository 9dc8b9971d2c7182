//! The object-storage backend with several replicas on one bucket (a moto server per test
//! process, see `registry_client.rs`): what holds on any bucket
//! (`replicas.rs`: push through one replica and pull through another, tag
//! races, gc while replicas serve), and here an upload whose chunks land on different replicas
//! and that outlives a `kill -9`, the descriptor layout, and what start-up and a failing object
//! store look like.

use std::process::Command;

use crate::client::*;
use crate::replicas::*;

use tempfile::TempDir;

#[test]
fn a_chunked_upload_moves_between_replicas_and_survives_kill_9() {
    let dir = TempDir::new().unwrap();
    let (mut a, b) = replicas(Backend::S3, &dir);
    let blob = data(20 << 20, 7);
    let d = digest_of(&blob);
    let (loc, at) = chunks_through_both_replicas(&a, &b, "up/load", &blob);
    // The next chunk is in flight on replica a when it dies.
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Range: {at}-{}\r\nContent-Length: {}\r\n\r\n",
        blob.len() - 1,
        blob.len() - at
    );
    let conn = start_request(a.port, &head, &blob[at..at + (2 << 20)]);
    wait_read_by_server(&conn);
    a.kill9();
    drop(conn);
    assert_eq!(
        b.stored_blobs().len(),
        0,
        "nothing visible before the digest is checked"
    );

    // The client asks replica b where the session stands, and resumes there.
    let r = b.get(&loc);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("range"), Some(format!("0-{}", at - 1).as_str()));
    let r = b.req(
        "PUT",
        &format!("{loc}?digest={}", digest_of(b"x")),
        &[],
        b"",
    );
    assert_eq!(r.status, 400, "a wrong digest is refused: {}", r.text());
    let r = b.req(
        "PATCH",
        &loc,
        &[("Content-Range", &format!("{at}-{}", blob.len() - 1))],
        &blob[at..],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let r = b.req("PUT", &format!("{loc}?digest={d}"), &[], b"");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(b.get(&format!("/v2/up/load/blobs/{d}")).body, blob);
    assert_eq!(b.stored_blobs().len(), 1);
    let bucket = b.bucket.clone().unwrap();
    assert!(
        Moto::get()
            .keys(&bucket, "repositories/up/load/_uploads/")
            .is_empty(),
        "the finished session leaves nothing behind"
    );
}

#[test]
fn a_session_pushed_blob_is_a_descriptor_read_whole_and_by_range_through_the_other_replica() {
    let dir = TempDir::new().unwrap();
    let (a, b) = replicas(Backend::S3, &dir);
    let bucket = a.bucket.clone().unwrap();
    let blob = data(19 << 20, 11);
    let d = digest_of(&blob);
    let loc = patch_upload(&a, "sess/app", &blob);
    let r = a.req("PUT", &format!("{loc}?digest={d}"), &[], b"");
    assert_eq!(r.status, 201, "{}", r.text());
    // Published by a descriptor naming the upload's data object: nothing copied, nothing left.
    let hex = d.trim_start_matches("sha256:");
    let moto = Moto::get();
    assert!(moto.keys(&bucket, "blobs/sha256/").is_empty());
    assert_eq!(
        moto.keys(&bucket, "blobs/ref/sha256/"),
        vec![format!("blobs/ref/sha256/{}/{hex}", &hex[..2])]
    );
    assert_eq!(moto.keys(&bucket, "blobs/data/").len(), 1);
    assert!(
        moto.keys(&bucket, "repositories/sess/app/_uploads/")
            .is_empty()
    );

    let r = b.req("HEAD", &format!("/v2/sess/app/blobs/{d}"), &[], b"");
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some(blob.len().to_string().as_str()))
    );
    let r = b.get(&format!("/v2/sess/app/blobs/{d}"));
    assert_eq!(r.status, 200);
    assert!(r.body == blob, "the whole blob reads back");
    // A range across a part boundary and the last bytes.
    for (from, to) in [
        (8_388_000usize, 8_389_999usize),
        (blob.len() - 10, blob.len() - 1),
    ] {
        let r = b.req(
            "GET",
            &format!("/v2/sess/app/blobs/{d}"),
            &[("Range", &format!("bytes={from}-{to}"))],
            b"",
        );
        assert_eq!(r.status, 206, "{}", r.text());
        assert!(r.body == blob[from..=to], "bytes {from}-{to}");
    }
    // Mounted into another repository through the other replica, readable there.
    let r = b.req(
        "POST",
        &format!("/v2/sess/other/blobs/uploads/?mount={d}&from=sess/app"),
        &[],
        b"",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(a.get(&format!("/v2/sess/other/blobs/{d}")).body == blob);
}

#[test]
fn two_sessions_of_one_blob_finishing_at_once_leave_one_blob_and_gc_leaves_no_orphan() {
    let dir = TempDir::new().unwrap();
    let (a, b, blob, d) = two_sessions_finish_at_once(Backend::S3, &dir);
    let bucket = a.bucket.clone().unwrap();
    let url = format!("s3://{bucket}");
    let moto = Moto::get();

    // A finish that crashed between its data object and its descriptor leaves an orphan:
    // gc deletes it once older than the grace period, and keeps a fresh one.
    let put = |key: &str| {
        let r = request(
            moto.port,
            "PUT",
            &format!("/{bucket}/{key}"),
            &[],
            b"orphaned bytes",
        );
        assert_eq!(r.status, 200, "{}", r.text());
    };
    let old = "blobs/data/0b7e3c1e-5d43-4b8e-9a57-3f1a0c6f2d11";
    let young = "blobs/data/6f0c2a51-8c1e-4e0f-b2d4-9e8f7a6b5c40";
    put(old);
    // The blob is referenced by a manifest, so only the orphans are candidates.
    let cfg = config_blob();
    let cd = a.push_blob("dup/app", &cfg);
    let m = manifest_json(OCI_MANIFEST, (&cd, cfg.len()), &[(&d, blob.len())], "");
    assert_eq!(put_manifest(&a, "dup/app", "v1", &m).status, 201);
    std::thread::sleep(std::time::Duration::from_secs(3));
    put(young);
    let out = gc(&a, &url, &[]);
    assert!(
        out.contains(&format!("deleting orphaned data: {old}")),
        "{out}"
    );
    assert!(
        out.contains("0 blobs deleted, 0 uploads purged, 1 orphaned data objects deleted"),
        "{out}"
    );
    let mut left = moto.keys(&bucket, "blobs/data/");
    left.sort();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.contains(&young.to_string()) && !left.contains(&old.to_string()),
        "{left:?}"
    );
    assert!(b.get(&format!("/v2/dup/app/blobs/{d}")).body == blob);

    // Unreferenced now: gc deletes the blob's descriptor and its data object together.
    assert_eq!(
        a.req(
            "DELETE",
            &format!("/v2/dup/app/manifests/{}", digest_of(m.as_bytes())),
            &[],
            b""
        )
        .status,
        202
    );
    gc_deletes_the_unreferenced_blob(&a, &b, &d);
}

#[test]
fn a_blob_stored_inline_by_an_older_version_still_reads() {
    let dir = TempDir::new().unwrap();
    let (a, b) = replicas(Backend::S3, &dir);
    let bucket = a.bucket.clone().unwrap();
    let moto = Moto::get();
    // Laid out as before descriptors: the bytes at blobs/sha256/<hh>/<hex>, plus the link.
    // Its bytes even look like a descriptor; they are data all the same.
    let blob = br#"{"data":"0b7e3c1e-5d43-4b8e-9a57-3f1a0c6f2d11","size":3}"#.to_vec();
    let d = digest_of(&blob);
    let hex = d.trim_start_matches("sha256:");
    for (key, body) in [
        (format!("blobs/sha256/{}/{hex}", &hex[..2]), blob.clone()),
        (
            format!("repositories/old/app/_layers/sha256/{hex}"),
            d.clone().into_bytes(),
        ),
    ] {
        let r = request(moto.port, "PUT", &format!("/{bucket}/{key}"), &[], &body);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = b.req("HEAD", &format!("/v2/old/app/blobs/{d}"), &[], b"");
    assert_eq!(
        r.header("content-length"),
        Some(blob.len().to_string().as_str())
    );
    assert_eq!(a.get(&format!("/v2/old/app/blobs/{d}")).body, blob);
    let r = b.req(
        "GET",
        &format!("/v2/old/app/blobs/{d}"),
        &[("Range", "bytes=2-5")],
        b"",
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &blob[2..6]));
    // Pushing it again through a session keeps the one inline copy.
    let loc = patch_upload(&a, "old/app", &blob);
    assert_eq!(
        a.req("PUT", &format!("{loc}?digest={d}"), &[], b"").status,
        201
    );
    assert!(moto.keys(&bucket, "blobs/ref/").is_empty());
}

#[test]
fn a_missing_bucket_stops_the_server_at_start_up() {
    let dir = TempDir::new().unwrap();
    Moto::get();
    let out = Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .envs(Moto::get().env())
        .args(["--root", dir.path().to_str().unwrap()])
        .args(["registry", "serve", "--addr", "127.0.0.1:0"])
        .args(["--storage", "s3://no-such-bucket/x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no-such-bucket") && err.contains("the bucket does not exist"),
        "{err}"
    );
    assert!(!err.contains("<?xml"), "the XML body is boiled down: {err}");
    // An unreachable store: the probe says so.
    let out = Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .envs(Moto::get().env())
        .env("AWS_ENDPOINT", "http://127.0.0.1:9")
        .args(["--root", dir.path().to_str().unwrap()])
        .args(["registry", "serve", "--addr", "127.0.0.1:0"])
        .args(["--storage", "s3://b"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("unreachable"), "{err}");
}

/// A moto that enforces authentication (after `INITIAL_NO_AUTH_ACTION_COUNT` free actions),
/// killed by PID when dropped.
struct AuthMoto {
    port: u16,
    pid: u32,
}

impl Drop for AuthMoto {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
    }
}

#[test]
fn wrong_credentials_stop_the_server_at_start_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    // One free action: creating the bucket. Everything after it must be signed by a key moto
    // knows. (moto's server mode also refuses correctly signed requests — curl's own SigV4
    // gets SignatureDoesNotMatch too — so only the refusal can be tested here, not a key that
    // works; s3s-fs in bench/registry_s3.sh checks signatures that must pass.)
    let m = AuthMoto {
        port,
        pid: spawn_moto_with(port, &[("INITIAL_NO_AUTH_ACTION_COUNT", "1")]),
    };
    let r = request(m.port, "PUT", "/locked", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let dir = TempDir::new().unwrap();
    let out = Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .env("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{}", m.port))
        .env("AWS_ALLOW_HTTP", "true")
        .args(["--root", dir.path().to_str().unwrap()])
        .args(["registry", "serve", "--addr", "127.0.0.1:0"])
        .args(["--storage", "s3://locked/reg"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(out.stdout.is_empty(), "it never listened");
    assert!(
        err.contains("\"locked\"")
            && err.contains("access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"),
        "{err}"
    );
    assert!(err.contains("InvalidAccessKeyId"), "{err}");
    assert!(!err.contains("<?xml"), "{err}");
}

/// Peak RSS of `pid` in MiB since the last reset, then reset it (`clear_refs` 5).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    kib >> 10
}

#[test]
fn server_memory_does_not_grow_with_the_blob() {
    let dir = TempDir::new().unwrap();
    let s = Server::start_on(Backend::S3, &dir.path().join("storage"), &[]);
    // Warm up (first-use allocations), then a small and a five times larger blob, each on
    // the monolithic PUT and on the session path, and pulled back.
    s.push_blob("mem/app", &data(1 << 20, 1));
    peak_rss_mib(s.pid());
    let mut peaks = Vec::new();
    for (mib, seed) in [(32usize, 2u32), (160, 3)] {
        let blob = data(mib << 20, seed);
        let d = s.push_blob("mem/app", &blob);
        let r = s.req("POST", "/v2/mem/app/blobs/uploads/", &[], b"");
        let loc = r.header("location").unwrap().to_string();
        let r = s.req("PATCH", &loc, &[], &blob);
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(
            s.req("PUT", &format!("{loc}?digest={d}"), &[], b"").status,
            201
        );
        let got = s.get(&format!("/v2/mem/app/blobs/{d}"));
        assert!(got.body == blob, "pulled back intact");
        peaks.push(peak_rss_mib(s.pid()));
    }
    eprintln!("peak RSS by blob size (32, 160 MiB): {peaks:?} MiB");
    // Buffering the blob would add ≥ 128 MiB for the larger one; parts and read windows are
    // a fixed number of 8 MiB buffers.
    assert!(
        peaks[1] <= peaks[0] + 12,
        "peak RSS {} MiB for 32 MiB blobs, {} MiB for 160 MiB blobs",
        peaks[0],
        peaks[1]
    );
    assert!(peaks[1] <= 96, "peak RSS {} MiB", peaks[1]);
}

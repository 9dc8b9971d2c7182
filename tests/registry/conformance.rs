//! `berth registry serve` on the points where the OCI conformance suites and real clients found
//! it apart from the spec or from CNCF distribution (issue 18): connections kept across early
//! answers, invalid references, sha512 digests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::client::*;
use base64::Engine as _;
use tempfile::TempDir;

// On a directory and on S3 (moto).
per_backend!(
    [fs: Fs, s3: S3]
    [
        early_answers_keep_the_connection,
        unauthenticated_upload_keeps_the_connection,
        invalid_manifest_references,
        sha512_digests,
    ]
);

/// One HTTP/1.1 connection kept across requests, as a client's pool keeps it.
struct KeepAlive {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

/// A response read off a kept connection.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }

    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    fn code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        v["errors"][0]["code"].as_str().unwrap_or_default().into()
    }
}

impl KeepAlive {
    fn open(port: u16) -> KeepAlive {
        let w = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        w.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let r = BufReader::new(w.try_clone().expect("clone"));
        KeepAlive { r, w }
    }

    /// Send a whole request, head then body; a failed write (the server reset the connection
    /// while the body was still on its way) fails the test.
    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: registry\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        self.w
            .write_all(head.as_bytes())
            .unwrap_or_else(|e| panic!("{method} {path}: writing the head: {e}"));
        self.w
            .write_all(body)
            .unwrap_or_else(|e| panic!("{method} {path}: writing the body: {e}"));
    }

    fn answer(&mut self, head_only: bool) -> Answer {
        let mut line = String::new();
        self.r.read_line(&mut line).expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line, got {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            self.r.read_line(&mut l).expect("header line");
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let mut a = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = a
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if !head_only {
            a.body.resize(len, 0);
            self.r.read_exact(&mut a.body).expect("body");
        }
        a
    }

    fn call(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        self.send(method, path, headers, body);
        self.answer(method == "HEAD")
    }

    /// After an answer that said `Connection: close`: the server closes in order (FIN, no
    /// reset), so the client reads the end of the stream rather than an error.
    fn expect_clean_close(&mut self) {
        let mut rest = Vec::new();
        self.r
            .read_to_end(&mut rest)
            .expect("the server closed in order, without a reset");
        assert!(rest.is_empty(), "nothing after the answer: {rest:?}");
    }
}

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

/// After the request on `c` got its early answer, the connection either serves the next
/// request or was closed in order after saying so.
fn next_request_works(c: &mut KeepAlive, first: &Answer, auth: &[(&str, &str)]) {
    if first.closes() {
        c.expect_clean_close();
        return;
    }
    let r = c.call("GET", "/v2/", auth, b"");
    assert_eq!(r.status, 200, "the connection serves the next request");
}

/// Answers given before the request body was read (416 for a chunk out of order, 400, 404,
/// 401 before credentials) leave the connection usable: the server reads the body (or says
/// `Connection: close` and closes only once the client is done), never resetting a connection
/// the client is still writing to.
fn early_answers_keep_the_connection(b: Backend) {
    let dir = TempDir::new().unwrap();
    let s = Server::start_on(b, &dir.path().join("storage"), &[]);
    let chunk = vec![7u8; 1 << 20];
    let mut c = KeepAlive::open(s.port);
    let r = c.call("POST", "/v2/a/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 202);
    let loc = r.header("location").expect("location").to_string();

    // A chunk that does not start at the session's offset: 416 before a byte is read.
    let range = format!("10-{}", 10 + chunk.len() - 1);
    let r = c.call(
        "PATCH",
        &loc,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", &range),
        ],
        &chunk,
    );
    assert_eq!(r.status, 416);
    next_request_works(&mut c, &r, &[]);

    // A body too large to be worth reading: the answer says the connection ends, and it ends
    // in order once the client has sent it all.
    let big = vec![7u8; 24 << 20];
    let range = format!("10-{}", 10 + big.len() - 1);
    let mut c = KeepAlive::open(s.port);
    let r = c.call(
        "PATCH",
        &loc,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", &range),
        ],
        &big,
    );
    assert_eq!(r.status, 416);
    assert!(r.closes(), "{:?}", r.headers);
    c.expect_clean_close();

    // An invalid digest, an unknown session, a bad manifest: each answered early.
    let mut c = KeepAlive::open(s.port);
    for (method, path) in [
        ("PUT", format!("{loc}?digest=sha256:nothex")),
        (
            "PATCH",
            "/v2/a/blobs/uploads/8f1a4a52-5a1f-4f39-9d0e-3f4c6b0e0a11".to_string(),
        ),
        ("PUT", "/v2/a/manifests/latest".to_string()),
    ] {
        let r = c.call(
            method,
            &path,
            &[("Content-Type", "application/octet-stream")],
            &chunk,
        );
        assert!(
            matches!(r.status, 400 | 404),
            "{method} {path}: {}",
            r.status
        );
        if r.closes() {
            c.expect_clean_close();
            c = KeepAlive::open(s.port);
        } else {
            let ok = c.call("GET", "/v2/", &[], b"");
            assert_eq!(ok.status, 200, "after {method} {path}");
        }
    }
}

fn unauthenticated_upload_keeps_the_connection(b: Backend) {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("htpasswd");
    let out = assert_cmd::Command::cargo_bin("berth")
        .unwrap()
        .args(["--root", dir.path().join("root").to_str().unwrap()])
        .args([
            "registry",
            "htpasswd",
            "u",
            "--file",
            file.to_str().unwrap(),
        ])
        .write_stdin("pw\n")
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = Server::start_on(
        b,
        &dir.path().join("storage"),
        &["--htpasswd", file.to_str().unwrap()],
    );
    let auth = basic("u", "pw");
    let auth = [("Authorization", auth.as_str())];
    let chunk = vec![9u8; 1 << 20];
    let d = digest_of(&chunk);

    // A monolithic PUT sent before credentials, as clients do on their first try.
    let mut c = KeepAlive::open(s.port);
    let r = c.call("POST", "/v2/a/blobs/uploads/", &auth, b"");
    assert_eq!(r.status, 202);
    let loc = r.header("location").expect("location").to_string();
    let r = c.call(
        "PUT",
        &format!("{loc}?digest={d}"),
        &[("Content-Type", "application/octet-stream")],
        &chunk,
    );
    assert_eq!((r.status, r.code().as_str()), (401, "UNAUTHORIZED"));
    next_request_works(&mut c, &r, &auth);

    // And the retry with credentials goes through on a connection of its own.
    let mut c = KeepAlive::open(s.port);
    let mut h = auth.to_vec();
    h.push(("Content-Type", "application/octet-stream"));
    let r = c.call("PUT", &format!("{loc}?digest={d}"), &h, &chunk);
    assert_eq!(r.status, 201);
    let r = c.call("HEAD", &format!("/v2/a/blobs/{d}"), &auth, b"");
    assert_eq!(r.status, 200);
}

/// A manifest reference that is neither a tag nor a digest: a read finds nothing there (404,
/// the only failure end-3 lists), a write is a bad request.
fn invalid_manifest_references(b: Backend) {
    let dir = TempDir::new().unwrap();
    let s = Server::start_on(b, &dir.path().join("storage"), &[]);
    for bad in [
        ".INVALID_MANIFEST_NAME",
        "sha256:totallywrong",
        "-x",
        "md5:abc",
    ] {
        let path = format!("/v2/a/manifests/{bad}");
        let r = s.get(&path);
        assert_eq!(
            (r.status, r.code().as_str()),
            (404, "MANIFEST_UNKNOWN"),
            "GET {bad}"
        );
        let r = s.req("HEAD", &path, &[], b"");
        assert_eq!(r.status, 404, "HEAD {bad}");
        let r = s.req("PUT", &path, &[("Content-Type", OCI_MANIFEST)], b"{}");
        let want = if bad.contains(':') {
            "DIGEST_INVALID"
        } else {
            "MANIFEST_INVALID"
        };
        assert_eq!((r.status, r.code().as_str()), (400, want), "PUT {bad}");
        let r = s.req("DELETE", &path, &[], b"");
        assert_eq!((r.status, r.code().as_str()), (400, want), "DELETE {bad}");
    }
    // A valid tag that is absent answers the same.
    let r = s.get("/v2/a/manifests/valid-but-absent");
    assert_eq!((r.status, r.code().as_str()), (404, "MANIFEST_UNKNOWN"));
}

fn sha512_of(b: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(b)))
}

/// sha512 digests wherever a digest is accepted: monolithic, two-step and chunked uploads (with
/// `digest-algorithm`), blob GET/HEAD/DELETE, cross-repository mounts, manifests pushed and
/// pulled by digest, `Docker-Content-Digest` in the algorithm the client used, and gc keeping
/// what a sha512 manifest references; on every backend.
fn sha512_digests(b: Backend) {
    let dir = TempDir::new().unwrap();
    let storage = dir.path().join("storage");
    let s = Server::start_on(b, &storage, &[]);
    let layer = b"a layer hashed in sha512".to_vec();
    let d = sha512_of(&layer);
    let r = s.req(
        "POST",
        &format!("/v2/a/blobs/uploads/?digest={d}"),
        &[("Content-Type", "application/octet-stream")],
        &layer,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/a/blobs/{d}").as_str())
    );

    let r = s.get(&format!("/v2/a/blobs/{d}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, layer);
    // On a bucket the digest is on the redirect (issue 18 item 4 is the store's answer).
    let answered = r.redirected_from.as_deref().unwrap_or(&r);
    assert_eq!(answered.header("docker-content-digest"), Some(d.as_str()));
    let r = s.req("HEAD", &format!("/v2/a/blobs/{d}"), &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(layer.len().to_string().as_str())
    );
    // The same bytes under their sha256 digest were never pushed.
    assert_eq!(
        s.get(&format!("/v2/a/blobs/{}", digest_of(&layer))).status,
        404
    );

    // A wrong sha512 is refused.
    let wrong = sha512_of(b"other bytes");
    let r = s.req(
        "POST",
        &format!("/v2/a/blobs/uploads/?digest={wrong}"),
        &[],
        &layer,
    );
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));
    let r = s.req(
        "POST",
        "/v2/a/blobs/uploads/?digest-algorithm=md5",
        &[],
        b"",
    );
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));

    // Chunked, announced with digest-algorithm; and POST then PUT.
    let cfg = config_blob();
    let cd = sha512_of(&cfg);
    let r = s.req(
        "POST",
        "/v2/a/blobs/uploads/?digest-algorithm=sha512",
        &[],
        b"",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let loc = r.header("location").unwrap().to_string();
    let (first, rest) = cfg.split_at(10);
    let r = s.req(
        "PATCH",
        &loc,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", &format!("0-{}", first.len() - 1)),
        ],
        first,
    );
    assert_eq!(r.status, 202);
    let r = s.req(
        "PUT",
        &format!("{loc}?digest={cd}"),
        &[
            ("Content-Type", "application/octet-stream"),
            (
                "Content-Range",
                &format!("{}-{}", first.len(), cfg.len() - 1),
            ),
        ],
        rest,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(cd.as_str()));
    let second = b"a second layer".to_vec();
    let d2 = sha512_of(&second);
    let r = s.req("POST", "/v2/a/blobs/uploads/", &[], b"");
    let loc = r.header("location").unwrap().to_string();
    let r = s.req("PUT", &format!("{loc}?digest={d2}"), &[], &second);
    assert_eq!(r.status, 201, "{}", r.text());
    // Chunks sent to a session not told the algorithm: the filesystem reads them again; object
    // storage (whose parts cannot be read back before the finish) asks for digest-algorithm.
    let third = b"a third blob, sent in chunks".to_vec();
    let d3 = sha512_of(&third);
    let r = s.req("POST", "/v2/a/blobs/uploads/", &[], b"");
    let loc = r.header("location").unwrap().to_string();
    let r = s.req(
        "PATCH",
        &loc,
        &[("Content-Range", &format!("0-{}", third.len() - 1))],
        &third,
    );
    assert_eq!(r.status, 202);
    let r = s.req("PUT", &format!("{loc}?digest={d3}"), &[], b"");
    if b == Backend::Fs {
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(s.get(&format!("/v2/a/blobs/{d3}")).body, third);
    } else {
        assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));
        assert!(r.text().contains("digest-algorithm=sha512"), "{}", r.text());
    }

    // Mounted into another repository.
    let r = s.req(
        "POST",
        &format!("/v2/b/blobs/uploads/?mount={d}&from=a"),
        &[],
        b"",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(s.get(&format!("/v2/b/blobs/{d}")).body, layer);

    // A manifest over sha512 blobs, pushed by its sha512 digest with a tag.
    let m = manifest_json(
        OCI_MANIFEST,
        (&cd, cfg.len()),
        &[(&d, layer.len()), (&d2, second.len())],
        "",
    );
    let md = sha512_of(m.as_bytes());
    let r = s.req(
        "PUT",
        &format!("/v2/a/manifests/{md}?tag=v1"),
        &[("Content-Type", OCI_MANIFEST)],
        m.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(md.as_str()));
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/a/manifests/{md}").as_str())
    );
    for reference in [md.as_str(), "v1"] {
        let r = s.get(&format!("/v2/a/manifests/{reference}"));
        assert_eq!(r.status, 200, "{reference}");
        assert_eq!(r.body, m.as_bytes());
        assert_eq!(r.header("docker-content-digest"), Some(md.as_str()));
        let r = s.req("HEAD", &format!("/v2/a/manifests/{reference}"), &[], b"");
        assert_eq!(r.status, 200);
    }
    // Pushed by tag, a manifest is addressed in sha256, as before.
    let r = s.req(
        "PUT",
        "/v2/a/manifests/v2",
        &[("Content-Type", OCI_MANIFEST)],
        m.as_bytes(),
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(digest_of(m.as_bytes()).as_str())
    );
    let wrong = sha512_of(b"not this manifest");
    let r = s.req(
        "PUT",
        &format!("/v2/a/manifests/{wrong}"),
        &[("Content-Type", OCI_MANIFEST)],
        m.as_bytes(),
    );
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));
    // The sha256 layout is where it always was; sha512 beside it.
    let hex = &d["sha512:".len()..];
    let h256 = &digest_of(m.as_bytes())["sha256:".len()..];
    for (alg, hex) in [("sha512", hex), ("sha256", h256)] {
        let rel = format!("blobs/{alg}/{}/{hex}", &hex[..2]);
        match &s.bucket {
            None => assert!(storage.join(&rel).is_file(), "{rel}"),
            Some(bucket) => assert!(!b.keys(bucket, &rel).is_empty(), "{rel}"),
        }
    }

    // gc keeps everything the sha512 manifest references, and what b links.
    let url = match &s.bucket {
        None => storage.to_str().unwrap().to_string(),
        Some(bucket) => b.url(bucket),
    };
    drop(s);
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .envs(b.env())
        .args(["--root", dir.path().join("root").to_str().unwrap()])
        .args(["registry", "gc", "--storage", &url, "--grace", "0s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = Server::start_on(b, &storage, &[]);
    for (digest, bytes) in [(&d, &layer), (&cd, &cfg), (&d2, &second)] {
        assert_eq!(&s.get(&format!("/v2/a/blobs/{digest}")).body, bytes);
    }
    assert_eq!(s.get(&format!("/v2/a/manifests/{md}")).status, 200);

    // Deleted by digest.
    let r = s.req("DELETE", &format!("/v2/b/blobs/{d}"), &[], b"");
    assert_eq!(r.status, 202);
    assert_eq!(s.get(&format!("/v2/b/blobs/{d}")).status, 404);
    let r = s.req("DELETE", &format!("/v2/a/manifests/{md}"), &[], b"");
    assert_eq!(r.status, 202);
    assert_eq!(s.get(&format!("/v2/a/manifests/{md}")).status, 404);
    assert_eq!(s.get("/v2/a/manifests/v1").status, 404);
}

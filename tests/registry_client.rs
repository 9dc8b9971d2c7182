//! Shared by the `registry_*` tests (included with `#[path]`): start the real
//! `berth registry serve` binary and talk raw HTTP/1.1 to it, so tests can also send what a
//! well-behaved client never would (a body shorter than its Content-Length).
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub fn digest_of(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Which storage `Server::start` gives a registry. The `registry_api_s3` and `registry_s3*`
/// test binaries run on buckets of a moto server; every other binary on a directory. (Chosen
/// by the binary's name, so `registry_api_s3` can include the very same suite.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Fs,
    S3,
}

pub fn backend() -> Backend {
    let exe = std::env::current_exe().unwrap_or_default();
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with("registry_api_s3") || name.starts_with("registry_s3") {
        Backend::S3
    } else {
        Backend::Fs
    }
}

/// A moto S3 server on a free loopback port, one per test process. It is started from a
/// thread that never ends, with the parent-death signal set, so it dies (SIGKILL) with the
/// test process however that ends; `stop`/`restart` control it in between.
pub struct Moto {
    pub port: u16,
    pid: std::sync::Mutex<u32>,
}

pub const MOTO: &str = "/opt/berth-test-venv/bin/moto_server";

fn spawn_moto(port: u16) -> u32 {
    spawn_moto_with(port, &[])
}

/// A moto server with extra environment (e.g. `INITIAL_NO_AUTH_ACTION_COUNT` to enforce auth).
pub fn spawn_moto_with(port: u16, env: &[(&str, &str)]) -> u32 {
    assert!(
        Path::new(MOTO).exists(),
        "{MOTO} is missing: run scripts/setup.sh (the S3 tests need moto[server])"
    );
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let child = Command::new("setpriv")
            .envs(env)
            .args(["--pdeathsig", "KILL", "--", MOTO, "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        tx.send(child.id()).expect("send pid");
        let mut child = child;
        let _ = child.wait();
    });
    let pid = rx.recv().expect("moto pid");
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("moto_server did not listen on port {port}");
}

impl Moto {
    pub fn get() -> &'static Moto {
        static M: std::sync::OnceLock<Moto> = std::sync::OnceLock::new();
        M.get_or_init(|| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let pid = spawn_moto(port);
            Moto {
                port,
                pid: std::sync::Mutex::new(pid),
            }
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The AWS_* settings a registry (or gc) needs to reach this moto.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Create `bucket` (no error if it exists).
    pub fn create_bucket(&self, bucket: &str) {
        let r = request(self.port, "PUT", &format!("/{bucket}"), &[], b"");
        assert!(
            r.status == 200 || r.status == 409,
            "create bucket {bucket}: {} {}",
            r.status,
            r.text()
        );
    }

    /// Keys in `bucket` under `prefix`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let q = if token.is_empty() {
                format!("/{bucket}?list-type=2&prefix={prefix}")
            } else {
                format!("/{bucket}?list-type=2&prefix={prefix}&continuation-token={token}")
            };
            let r = request(self.port, "GET", &q, &[], b"");
            assert_eq!(r.status, 200, "{}", r.text());
            let t = r.text();
            out.extend(
                t.split("<Key>")
                    .skip(1)
                    .filter_map(|k| k.split("</Key>").next())
                    .map(str::to_string),
            );
            match t
                .split("<NextContinuationToken>")
                .nth(1)
                .and_then(|k| k.split("</NextContinuationToken>").next())
            {
                Some(n) => {
                    token = n
                        .replace('=', "%3D")
                        .replace('+', "%2B")
                        .replace('/', "%2F")
                }
                None => return out,
            }
        }
    }

    pub fn stop(&self) {
        let pid = *self.pid.lock().unwrap();
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Start again on the same port (moto keeps nothing: buckets are gone).
    pub fn restart(&self) {
        *self.pid.lock().unwrap() = spawn_moto(self.port);
    }
}

/// A bucket name for a storage directory: the same directory (a restarted server) gets the
/// same bucket.
pub fn bucket_for(storage: &Path) -> String {
    let h = hex::encode(Sha256::digest(storage.to_string_lossy().as_bytes()));
    format!("t-{}", &h[..20])
}

/// A running `berth registry serve`, killed by PID when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    pub storage: PathBuf,
    pub log: PathBuf,
    /// On the S3 backend: the bucket.
    pub bucket: Option<String>,
}

impl Server {
    /// A registry on `storage` (a directory), or, in the S3 test binaries, on the bucket named
    /// after it.
    pub fn start(storage: &Path, extra: &[&str]) -> Server {
        if backend() == Backend::S3 {
            let bucket = bucket_for(storage);
            Moto::get().create_bucket(&bucket);
            let url = format!("s3://{bucket}");
            let mut s = Self::start_with(&["--storage", &url], storage, extra);
            s.bucket = Some(bucket);
            return s;
        }
        Self::start_with(
            &["--storage", storage.to_str().expect("utf-8 path")],
            storage,
            extra,
        )
    }

    pub fn start_with(args: &[&str], storage: &Path, extra: &[&str]) -> Server {
        std::fs::create_dir_all(storage).expect("storage dir");
        let log = storage.with_extension(format!("log{}", rand_suffix()));
        let err = File::create(&log).expect("log file");
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("berth"));
        if backend() == Backend::S3 {
            cmd.envs(Moto::get().env());
        }
        let mut child = cmd
            .args(["--root", storage.join("root").to_str().expect("utf-8")])
            .args(["registry", "serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start berth registry serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read stdout");
        let port = line
            .trim()
            .strip_prefix("listening on http://127.0.0.1:")
            .or_else(|| line.trim().strip_prefix("listening on https://127.0.0.1:"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "unexpected startup line {line:?}; stderr: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Server {
            child,
            port,
            storage: storage.to_path_buf(),
            log,
            bucket: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// Wait for the process to exit (up to `secs`), returning its exit status.
    pub fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        for _ in 0..secs * 20 {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not exit within {secs}s");
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(self.port, method, path, headers, body)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], b"")
    }

    /// POST + PUT a whole blob into `repo`; asserts 201.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = digest_of(data);
        let r = self.req("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        assert_eq!(r.status, 202, "{}", r.text());
        let loc = r.header("location").expect("location").to_string();
        let r = self.req(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(r.status, 201, "{}", r.text());
        d
    }

    /// Whether anything is stored under `rel` (a directory, or a key prefix in the bucket).
    pub fn stored_under(&self, rel: &str) -> bool {
        match &self.bucket {
            Some(b) => !Moto::get().keys(b, &format!("{rel}/")).is_empty(),
            None => self.storage.join(rel).exists(),
        }
    }

    /// Blobs stored (data files under blobs/), for "nothing partial is visible" checks. In a
    /// bucket: inline blobs and blob descriptors (one per digest), not the data objects those
    /// name.
    pub fn stored_blobs(&self) -> Vec<PathBuf> {
        if let Some(b) = &self.bucket {
            let mut keys = Moto::get().keys(b, "blobs/sha256/");
            for k in Moto::get().keys(b, "blobs/ref/sha256/") {
                let hex = k.rsplit('/').next().unwrap_or_default().to_string();
                if !keys.iter().any(|i| i.ends_with(&format!("/{hex}"))) {
                    keys.push(k);
                }
            }
            return keys.into_iter().map(PathBuf::from).collect();
        }
        let mut out = Vec::new();
        let base = self.storage.join("blobs/sha256");
        for d in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
                out.push(f.path());
            }
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}", n % 1_000_000_007)
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The redirect this response was reached through (a blob GET on a bucket).
    pub redirected_from: Option<Box<Resp>>,
}

impl Resp {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, k: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The first error code of a spec error body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Send one request (`Connection: close`) and read the whole response. `Content-Length` is the
/// body's length unless `headers` sets one. A GET redirected to another server (a blob in a
/// bucket: a presigned URL of the object store) is followed there as registry clients do, with
/// the same headers (`Range`) but no `Authorization`; the 307 is kept in `redirected_from`.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let r = request_once(&format!("127.0.0.1:{port}"), method, path, headers, body);
    let followed = method == "GET" && matches!(r.status, 302 | 303 | 307 | 308);
    let Some(to) = r
        .header("location")
        .and_then(|l| l.strip_prefix("http://"))
        .filter(|_| followed)
    else {
        return r;
    };
    let (host, path) = match to.find('/') {
        Some(i) => (to[..i].to_string(), to[i..].to_string()),
        None => (to.to_string(), "/".to_string()),
    };
    let kept: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
        .copied()
        .collect();
    let mut next = request_once(&host, method, &path, &kept, b"");
    next.redirected_from = Some(Box::new(r));
    next
}

/// One request to `host` (`ip:port`), redirects not followed.
pub fn request_once(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut s = TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("write head");
    // The server may answer (and close) before taking the body, e.g. with a 416.
    let _ = s.write_all(body);
    read_response(s, method == "HEAD")
}

/// Open a connection and send a request head plus part of its body; the caller decides what
/// happens next (finish it, or let the server die).
pub fn start_request(port: u16, head: &str, partial_body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(partial_body).expect("body");
    s.flush().expect("flush");
    s
}

pub fn read_response(mut s: TcpStream, head_only: bool) -> Resp {
    let _ = head_only;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let _ = s.shutdown(Shutdown::Both);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = raw[split + 4..].to_vec();
    Resp {
        status,
        headers,
        body,
        redirected_from: None,
    }
}

pub fn config_blob() -> Vec<u8> {
    br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec()
}

/// An image manifest of `media_type` over config `c` and layers `layers` (digest, size).
pub fn manifest_json(
    media_type: &str,
    config: (&str, usize),
    layers: &[(&str, usize)],
    extra: &str,
) -> String {
    let (cfg_type, layer_type) = if media_type.contains("docker") {
        (
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar",
        )
    };
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, n)| format!(r#"{{"mediaType":"{layer_type}","digest":"{d}","size":{n}}}"#))
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"{cfg_type}","digest":"{}","size":{}}},"layers":[{}]{extra}}}"#,
        config.0,
        config.1,
        layers.join(",")
    )
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

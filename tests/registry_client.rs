//! Shared by tests/registry and the build, images and security tests (included with `#[path]`):
//! start the real `berth registry serve` binary and talk raw HTTP/1.1 to it, so tests can also
//! send what a well-behaved client never would (a body shorter than its Content-Length).
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

/// Which storage a test registry runs on: a directory, buckets of this process's moto, or
/// containers of this process's Azurite. Chosen by the test (`Server::start_on`), so one suite
/// body runs once per backend and nextest names the backend in each test's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Fs,
    S3,
    Azure,
}

impl Backend {
    /// The keys under `prefix` of bucket (or container) `bucket` of this object store.
    pub fn keys(self, bucket: &str, prefix: &str) -> Vec<String> {
        match self {
            Backend::Azure => Azurite::get().keys(bucket, prefix),
            _ => Moto::get().keys(bucket, prefix),
        }
    }

    /// A `[storage]` table for bucket (or container) `bucket` of this object store.
    pub fn storage_table(self, bucket: &str) -> String {
        match self {
            Backend::Azure => format!("[storage]\nkind = \"azure\"\ncontainer = {bucket:?}\n"),
            _ => format!("[storage]\nkind = \"s3\"\nbucket = {bucket:?}\n"),
        }
    }

    /// The environment a `berth` command needs to reach this object store.
    pub fn env(self) -> Vec<(&'static str, String)> {
        match self {
            Backend::Fs => Vec::new(),
            Backend::S3 => Moto::get().env(),
            Backend::Azure => Azurite::get().env(),
        }
    }

    /// Create bucket (container) `bucket` on this object store.
    pub fn create(self, bucket: &str) {
        match self {
            Backend::Fs => {}
            Backend::S3 => Moto::get().create_bucket(bucket),
            Backend::Azure => Azurite::get().create_container(bucket),
        }
    }

    /// Kill this process's object store (until `restart`).
    pub fn stop(self) {
        match self {
            Backend::Fs => {}
            Backend::S3 => Moto::get().stop(),
            Backend::Azure => Azurite::get().stop(),
        }
    }

    /// Start this process's object store again on its port (empty: it keeps nothing).
    pub fn restart(self) {
        match self {
            Backend::Fs => {}
            Backend::S3 => Moto::get().restart(),
            Backend::Azure => Azurite::get().restart(),
        }
    }

    /// The `--storage` URL of bucket (container) `bucket`.
    pub fn url(self, bucket: &str) -> String {
        match self {
            Backend::Azure => format!("az://{bucket}"),
            _ => format!("s3://{bucket}"),
        }
    }
}

/// One `#[test]` per (body, backend), so nextest names the backend in each test's path:
/// `per_backend!([fs: Fs, s3: S3] [a, b])` makes `fs::a`, `fs::b`, `s3::a`, `s3::b`, each
/// calling `super::a(Backend::…)`. The bodies' module must have `Backend` in scope.
#[macro_export]
macro_rules! per_backend {
    ([$($module:ident: $variant:ident),+ $(,)?] $names:tt) => {
        $( $crate::backend_tests!($module, $variant, $names); )+
    };
}

#[macro_export]
macro_rules! backend_tests {
    ($module:ident, $variant:ident, [$($name:ident),* $(,)?]) => {
        mod $module {
            $( #[test] fn $name() { super::$name(super::Backend::$variant) } )*
        }
    };
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
    let mut cmd = Command::new(MOTO);
    cmd.envs(env.iter().copied())
        .args(["-H", "127.0.0.1", "-p"])
        .arg(port.to_string());
    spawn_listening(cmd, port)
}

/// Run `cmd` (a test store) from a thread that never ends, with the parent-death signal set,
/// so it dies with this test process however that ends; return its PID once it listens on
/// `port` (up to 30 s: a loaded CI machine starts Python and Node slowly).
fn spawn_listening(cmd: Command, port: u16) -> u32 {
    let program = cmd.get_program().to_owned();
    let mut full = Command::new("setpriv");
    full.args(["--pdeathsig", "KILL", "--"])
        .arg(&program)
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (tx, rx) = std::sync::mpsc::channel();
    let name = program.to_string_lossy().into_owned();
    let spawned = name.clone();
    std::thread::spawn(move || {
        let mut child = full
            .spawn()
            .unwrap_or_else(|e| panic!("start {spawned}: {e}"));
        tx.send(child.id()).expect("send pid");
        let _ = child.wait();
    });
    let pid = rx.recv().expect("test store pid");
    for _ in 0..1200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{name} did not listen on port {port}");
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

/// The blob service of Azurite (npm `azurite`, installed by scripts/setup.sh).
pub const AZURITE: &str = "/opt/berth-test-node/node_modules/.bin/azurite-blob";
/// Azurite's well-known development account and key.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Start Azurite's blob service (in memory) on `port`; returns its PID once it listens.
fn spawn_azurite(port: u16) -> u32 {
    assert!(
        Path::new(AZURITE).exists(),
        "{AZURITE} is missing: run scripts/setup.sh (the Azure tests need azurite)"
    );
    let mut cmd = Command::new(AZURITE);
    cmd.args(["--blobHost", "127.0.0.1", "--blobPort"])
        .arg(port.to_string())
        .args(["--inMemoryPersistence", "--disableTelemetry", "--silent"])
        // Room for the suite's blobs; nothing is written to disk.
        .args(["--extentMemoryLimit", "2048"]);
    spawn_listening(cmd, port)
}

/// An Azurite blob service on a free loopback port, one per test process, started and ended
/// like `Moto`.
pub struct Azurite {
    pub port: u16,
    pid: std::sync::Mutex<u32>,
}

impl Azurite {
    pub fn get() -> &'static Azurite {
        static A: std::sync::OnceLock<Azurite> = std::sync::OnceLock::new();
        A.get_or_init(|| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            Azurite {
                port,
                pid: std::sync::Mutex::new(spawn_azurite(port)),
            }
        })
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

    /// Start again on the same port (in memory: containers are gone).
    pub fn restart(&self) {
        *self.pid.lock().unwrap() = spawn_azurite(self.port);
    }

    /// The blob service URL of the account, as `endpoint` takes it.
    pub fn account_url(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// The AZURE_* settings a registry (or gc) needs: the emulator mode of the Azure tools.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
            (
                "AZURITE_BLOB_STORAGE_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
        ]
    }

    /// An account SAS token (query string) for the blob service, signed with the account key:
    /// what a user hands berth in `AZURE_STORAGE_SAS_KEY` instead of the key itself.
    pub fn account_sas(&self) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = b64.decode(AZURITE_KEY).expect("key");
        let expiry = (chrono::Utc::now() + chrono::Duration::hours(2))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let (sp, ss, srt, spr, sv) = ("rwdlacup", "b", "sco", "https,http", "2021-08-06");
        // The string to sign of an account SAS, version 2020-12-06 and later.
        let to_sign =
            format!("{AZURITE_ACCOUNT}\n{sp}\n{ss}\n{srt}\n\n{expiry}\n\n{spr}\n{sv}\n\n");
        let sig = b64.encode(hmac_sha256(&key, to_sign.as_bytes()));
        let enc = |v: &str| {
            v.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        format!(
            "sv={sv}&ss={ss}&srt={srt}&sp={sp}&se={}&spr={}&sig={}",
            enc(&expiry),
            enc(spr),
            enc(&sig)
        )
    }

    /// A request signed with the account key (Shared Key), to `/<account><path>?<query>`.
    pub fn signed(&self, method: &str, path: &str, query: &[(&str, &str)]) -> Resp {
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-08-06";
        let mut q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        q.sort();
        let mut resource = format!("/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}{path}");
        for (k, v) in &q {
            resource.push_str(&format!("\n{k}:{v}"));
        }
        // VERB, then 11 standard headers (all empty here), then x-ms-* and the resource.
        let to_sign = format!(
            "{method}\n{}x-ms-date:{date}\nx-ms-version:{version}\n{resource}",
            "\n".repeat(11)
        );
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = b64.decode(AZURITE_KEY).expect("account key");
        let sig = b64.encode(hmac_sha256(&key, to_sign.as_bytes()));
        let auth = format!("SharedKey {AZURITE_ACCOUNT}:{sig}");
        let query: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{k}={}", v.replace('/', "%2F")))
            .collect();
        let target = if query.is_empty() {
            format!("/{AZURITE_ACCOUNT}{path}")
        } else {
            format!("/{AZURITE_ACCOUNT}{path}?{}", query.join("&"))
        };
        request(
            self.port,
            method,
            &target,
            &[
                ("x-ms-date", &date),
                ("x-ms-version", version),
                ("Authorization", &auth),
            ],
            b"",
        )
    }

    /// Create `container` (no error if it exists).
    pub fn create_container(&self, container: &str) {
        let r = self.signed("PUT", &format!("/{container}"), &[("restype", "container")]);
        assert!(
            r.status == 201 || r.status == 409,
            "create container {container}: {} {}",
            r.status,
            r.text()
        );
    }

    /// Blob names in `container` under `prefix`.
    pub fn keys(&self, container: &str, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let mut q = vec![
                ("restype", "container"),
                ("comp", "list"),
                ("prefix", prefix),
            ];
            if !marker.is_empty() {
                q.push(("marker", &marker));
            }
            let r = self.signed("GET", &format!("/{container}"), &q);
            assert_eq!(r.status, 200, "{}", r.text());
            let t = r.text();
            out.extend(
                t.split("<Name>")
                    .skip(1)
                    .filter_map(|k| k.split("</Name>").next())
                    .map(str::to_string),
            );
            match t
                .split("<NextMarker>")
                .nth(1)
                .and_then(|k| k.split("</NextMarker>").next())
                .filter(|m| !m.is_empty())
            {
                Some(m) => marker = m.to_string(),
                None => return out,
            }
        }
    }
}

/// HMAC-SHA256 (RFC 2104) over sha2, for Shared Key signatures.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |p: u8| k.iter().map(|b| b ^ p).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
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
    /// On an object-storage backend: the bucket (or Azure container).
    pub bucket: Option<String>,
    pub backend: Backend,
}

impl Server {
    /// A registry on `storage` (a directory).
    pub fn start(storage: &Path, extra: &[&str]) -> Server {
        Self::start_on(Backend::Fs, storage, extra)
    }

    /// A registry on `backend`: on `storage` (a directory), or on the bucket (container) named
    /// after it.
    pub fn start_on(backend: Backend, storage: &Path, extra: &[&str]) -> Server {
        let bucket = bucket_for(storage);
        match backend {
            Backend::Fs => {
                return Self::start_with(
                    &["--storage", storage.to_str().expect("utf-8 path")],
                    storage,
                    extra,
                );
            }
            Backend::S3 => Moto::get().create_bucket(&bucket),
            Backend::Azure => Azurite::get().create_container(&bucket),
        }
        let url = backend.url(&bucket);
        let mut s = Self::start_with_on(backend, &["--storage", &url], storage, extra);
        s.bucket = Some(bucket);
        s
    }

    /// A registry with command-line `args`, on a directory.
    pub fn start_with(args: &[&str], storage: &Path, extra: &[&str]) -> Server {
        Self::start_with_on(Backend::Fs, args, storage, extra)
    }

    /// A registry with command-line `args` and the environment reaching `backend`.
    pub fn start_with_on(
        backend: Backend,
        args: &[&str],
        storage: &Path,
        extra: &[&str],
    ) -> Server {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("berth"));
        cmd.envs(backend.env())
            .args(["--root", storage.join("root").to_str().expect("utf-8")])
            .args(["registry", "serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .args(extra);
        let mut s = Self::spawn(cmd, storage);
        s.backend = backend;
        s
    }

    /// Run `cmd` (a whole `berth … registry serve` command line) and wait until it listens.
    pub fn spawn(mut cmd: Command, storage: &Path) -> Server {
        std::fs::create_dir_all(storage).expect("storage dir");
        let log = storage.with_extension(format!("log{}", rand_suffix()));
        let err = File::create(&log).expect("log file");
        let mut child = cmd
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
            backend: Backend::Fs,
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
            Some(b) => !self.backend.keys(b, &format!("{rel}/")).is_empty(),
            None => self.storage.join(rel).exists(),
        }
    }

    /// Blobs stored (data files under blobs/), for "nothing partial is visible" checks. In a
    /// bucket: inline blobs and blob descriptors (one per digest), not the data objects those
    /// name.
    pub fn stored_blobs(&self) -> Vec<PathBuf> {
        if let Some(b) = &self.bucket {
            let mut keys = self.backend.keys(b, "blobs/sha256/");
            for k in self.backend.keys(b, "blobs/ref/sha256/") {
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

/// The bytes at `url` (a presigned object-store URL), whole or `range` (`START-END`), fetched
/// by curl with nothing but the URL's own authorization; fails the test on any error.
pub fn fetch_url(url: &str, range: Option<&str>) -> Vec<u8> {
    let mut c = Command::new("curl");
    c.args(["-sS", "--fail", "-o", "-"]);
    if let Some(r) = range {
        c.args(["-H", &format!("Range: bytes={r}")]);
    }
    let out = c.arg(url).output().expect("run curl");
    assert!(
        out.status.success(),
        "{url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
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

/// Wait (up to 10 s) until the server has accepted `conn` and read all it was sent: its end of
/// the connection, in /proc/net/tcp, holds nothing unread. (What a test waits for before it
/// kills or stops a server with a request in flight.)
pub fn wait_read_by_server(conn: &TcpStream) {
    let (local, peer) = (
        conn.local_addr().expect("local addr"),
        conn.peer_addr().expect("peer addr"),
    );
    // The server's end: local address the peer, remote address this end, as /proc writes them
    // (IPv4 in host byte order, port in hex).
    let hex = |a: std::net::SocketAddr| match a {
        std::net::SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        ),
        std::net::SocketAddr::V6(_) => panic!("test servers listen on 127.0.0.1"),
    };
    let (server_end, client_end) = (hex(peer), hex(local));
    let drained = || {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        table.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 4
                && f[1] == server_end
                && f[2] == client_end
                && f[4]
                    .split(':')
                    .nth(1)
                    .is_some_and(|rx| rx.trim_start_matches('0').is_empty())
        })
    };
    for _ in 0..400 {
        if drained() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("the server did not read the request in flight within 10 s");
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

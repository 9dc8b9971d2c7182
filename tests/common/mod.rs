//! Fixtures for end-to-end tests: a private state root per test, the `berth` binary, and a
//! busybox root filesystem made from Debian's busybox-static.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

pub struct Env {
    pub dir: tempfile::TempDir,
    /// Which Env of this test process it is (0 for the first): picks its bridge and subnet.
    pub seq: u32,
}

static ENVS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Env {
    pub fn new() -> Env {
        let base = std::env::var_os("BERTH_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let env = Env {
            dir: tempfile::Builder::new()
                .prefix("berth-test-")
                .tempdir_in(base)
                .expect("temp dir"),
            seq: ENVS.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        };
        // Every root gets a default network of its own (bridge name, subnet, pool for
        // `network create`), so tests running at once never share a bridge.
        if env.seq < 2 {
            std::fs::create_dir_all(env.root()).unwrap();
            let (a, b) = env.octets();
            let pid = std::process::id();
            let pool = (16 + ((pid >> 8) & 0x0f) + 16 * env.seq.min(1), pid & 0xff);
            std::fs::write(
                env.root().join("daemon.json"),
                format!(
                    r#"{{"bridge":"{}","bip":"10.{a}.{b}.1/24","default-address-pools":[{{"base":"172.{}.{}.0/24","size":28}}]}}"#,
                    env.bridge(),
                    pool.0,
                    pool.1
                ),
            )
            .unwrap();
        }
        env
    }

    fn octets(&self) -> (u32, u32) {
        let pid = std::process::id();
        (100 + ((pid >> 8) & 0x3f) + 64 * self.seq, pid & 0xff)
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `berth --root <private root> ARGS…`
    /// A build context `name` in the test's directory: the Dockerfile and `files` (path,
    /// content; parent directories made).
    pub fn context(&self, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).expect("context dir");
        std::fs::write(dir.join("Dockerfile"), dockerfile).expect("Dockerfile");
        for (p, c) in files {
            let p = dir.join(p);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("context subdir");
            std::fs::write(p, c).expect("context file");
        }
        dir
    }

    pub fn berth(&self) -> Command {
        let mut c = Command::cargo_bin("berth").expect("berth binary");
        c.arg("--root").arg(self.root()).env_remove("BERTH_ROOT");
        c
    }

    /// The same command as a `std::process::Command`, for spawning with pipes.
    pub fn berth_std(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("berth"));
        c.arg("--root").arg(self.root()).env_remove("BERTH_ROOT");
        c
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth().args(args).output().expect("run berth");
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }

    pub fn fails(&self, args: &[&str]) -> Output {
        let out = self.berth().args(args).output().expect("run berth");
        assert!(
            !out.status.success(),
            "berth {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "berth {args:?} panicked: {err}");
        out
    }

    /// The process IDs of this Env's container supervisors and inits (from their state files).
    pub fn container_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.root().join("containers")) else {
            return pids;
        };
        for e in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("state.json"))
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&s)
            {
                for p in [&v["Pid"], &v["berth"]["supervisor_pid"]] {
                    if let Some(p) = p.as_i64().filter(|p| *p > 0) {
                        pids.push(p as i32);
                    }
                }
            }
        }
        pids
    }

    /// Import the busybox rootfs as `tag`; returns the image ID.
    pub fn import_busybox(&self, tag: &str) -> String {
        let tar = self.path("busybox.tar");
        if !tar.exists() {
            busybox_rootfs_tar(&tar);
        }
        self.ok(&["import", tar.to_str().unwrap(), tag])
            .trim()
            .to_string()
    }

    pub fn check_store(&self) {
        let out = self.ok(&["system", "check"]);
        assert!(out.contains("no problems"), "system check: {out}");
    }
}

impl Env {
    /// The default bridge's device name of this root.
    pub fn bridge(&self) -> String {
        format!("bt{:x}x{}", std::process::id(), self.seq)
    }

    /// The default bridge's subnet prefix ("10.A.B.") of this root.
    pub fn subnet_prefix(&self) -> String {
        let (a, b) = self.octets();
        format!("10.{a}.{b}.")
    }

    /// The nftables table of this root (as berth names it).
    pub fn nft_table(&self) -> String {
        use sha2::Digest;
        let h = hex::encode(sha2::Sha256::digest(
            self.root().as_os_str().as_encoded_bytes(),
        ));
        format!("berth_{}", &h[..10])
    }

    /// The bridges this root's networks use.
    pub fn bridges(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.root().join("networks")) {
            for e in rd.flatten() {
                if let Ok(s) = std::fs::read_to_string(e.path().join("network.json"))
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(&s)
                    && let Some(b) = v["Options"]["com.docker.network.bridge.name"].as_str()
                {
                    out.push(b.to_string());
                }
            }
        }
        out
    }
}

impl Drop for Env {
    /// Containers a test left behind are removed (force), so no supervisor, mount or cgroup
    /// outlives the test's state root; so are its networks' bridges and nftables table.
    fn drop(&mut self) {
        if self.root().join("containers").is_dir()
            && let Ok(out) = self.berth().args(["ps", "-aq", "--no-trunc"]).output()
        {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect();
            if !ids.is_empty() {
                let _ = self.berth().arg("rm").arg("-f").args(&ids).output();
            }
        }
        if self.root().join("networks").is_dir() {
            for b in self.bridges() {
                let _ = std::process::Command::new("ip")
                    .args(["link", "del", &b])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            let _ = std::process::Command::new("nft")
                .args(["delete", "table", "ip", &self.nft_table()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

pub fn busybox_path() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox is not installed (apt-get install busybox-static)");
}

/// A small root filesystem: busybox and its applet links, /etc/passwd, /etc/group, empty /tmp.
pub fn busybox_rootfs_tar(out: &Path) {
    let f = std::fs::File::create(out).expect("create tar");
    let mut b = tar::Builder::new(f);
    let dir = |b: &mut tar::Builder<std::fs::File>, p: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, p, std::io::empty()).unwrap();
    };
    let file = |b: &mut tar::Builder<std::fs::File>, p: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, p, data).unwrap();
    };
    for d in ["bin/", "etc/", "root/", "home/", "var/", "usr/", "usr/bin/"] {
        dir(&mut b, d, 0o755);
    }
    dir(&mut b, "tmp/", 0o1777);
    let busybox = std::fs::read(busybox_path()).unwrap();
    file(&mut b, "bin/busybox", 0o755, &busybox);
    for applet in [
        "sh", "ls", "cat", "echo", "env", "id", "ps", "sleep", "true", "false", "mount",
        "hostname", "wget", "nc", "ip", "touch", "mkdir", "rm", "tr", "head", "grep", "dd", "kill",
        "seq", "wc", "stat", "ping", "nslookup",
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    file(&mut b, "etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n");
    file(
        &mut b,
        "etc/group",
        0o644,
        b"root:x:0:\nnobody:x:65534:\napp:x:1000:\n",
    );
    b.finish().unwrap();
}

/// Whether a peer tool is installed; in CI (env CI set) a missing peer fails the test.
pub fn have(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{tool} is required in CI");
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

/// Poll `f` every 50 ms until it holds; fail the test after `limit` naming `what`.
pub fn wait_for(what: &str, limit: std::time::Duration, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

impl Env {
    /// `inspect --type container NAME`, the first (only) object.
    pub fn inspect_container(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", "--type", "container", name]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
        v[0].clone()
    }
}

/// `sh -c CMD` on the host.
pub fn sh(cmd: &str) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh")
}

/// GET `url` with curl until it answers (a server in a container starts asynchronously), for
/// up to 10 s; the body (empty when it never answered).
pub fn http_get(url: &str) -> String {
    let mut body = String::new();
    let start = std::time::Instant::now();
    let limit = std::time::Duration::from_secs(10);
    wait_for(&format!("{url} to answer"), limit + limit, || {
        let o = sh(&format!("curl -s -m 2 {url}"));
        body = String::from_utf8_lossy(&o.stdout).into_owned();
        // Past the limit the caller gets what it got (its assertion says what was wrong).
        o.status.success() || start.elapsed() > limit
    });
    body
}

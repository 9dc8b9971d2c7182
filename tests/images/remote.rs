//! `push`, `pull`, `login`, `logout` against Debian's CNCF registry (`docker-registry`), with
//! skopeo as a second client. Each test runs its own registry on a free port.

use crate::common;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, have};

/// A `docker-registry serve` process, killed by PID on drop.
struct Registry {
    child: Child,
    pub addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Option<Registry> {
        if !have("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog: {{level: info}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: {addr}}}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = dir.path().join("registry.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("start docker-registry");
        let r = Registry {
            child,
            addr: addr.clone(),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(r)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Requests in the log matching `method path-substring`.
    fn count(&self, method: &str, needle: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains(&format!("\"{method} /v2/")) && l.contains(needle))
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Relative path → (kind, mode, content hash or link target) of every entry under `dir`.
fn tree(dir: &Path) -> Vec<(String, String)> {
    fn walk(base: &Path, p: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&path).unwrap();
            use std::os::unix::fs::PermissionsExt;
            let mode = m.permissions().mode();
            let desc = if m.file_type().is_symlink() {
                format!(
                    "link {:o} {}",
                    mode,
                    std::fs::read_link(&path).unwrap().display()
                )
            } else if m.is_dir() {
                format!("dir {mode:o}")
            } else {
                let mut h = sha2::Sha256::default();
                let mut f = std::fs::File::open(&path).unwrap();
                let mut buf = Vec::new();
                f.read_to_end(&mut buf).unwrap();
                sha2::Digest::update(&mut h, &buf);
                format!("file {mode:o} {}", hex::encode(sha2::Digest::finalize(h)))
            };
            out.push((rel, desc));
            if m.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

/// Mounts an image and unmounts it on drop.
struct Mounted<'a> {
    env: &'a Env,
    image: String,
    path: PathBuf,
}

impl<'a> Mounted<'a> {
    fn new(env: &'a Env, image: &str) -> Mounted<'a> {
        let out = env.ok(&["image", "mount", image]);
        Mounted {
            env,
            image: image.to_string(),
            path: PathBuf::from(out.trim()),
        }
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = self
            .env
            .berth()
            .args(["image", "unmount", &self.image])
            .output();
    }
}

fn id_of(env: &Env, image: &str) -> String {
    env.ok(&["image", "inspect", "--format", "{{.Id}}", image])
        .trim()
        .to_string()
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn push_then_pull_gives_the_same_image_and_files() {
    let Some(reg) = Registry::start() else { return };
    let a = Env::new();
    let name = format!("{}/test/busybox:v1", reg.addr);
    let id = a.import_busybox(&name);
    let out = a.ok(&["push", &name]);
    assert!(
        out.starts_with("v1: digest: sha256:") && out.contains(" size: "),
        "{out}"
    );
    let pushed_digest = out.split_whitespace().nth(2).unwrap().to_string();
    assert_eq!(
        reg.count("PATCH", "/test/busybox/blobs/uploads/"),
        2,
        "{}",
        reg.log()
    );

    // A second push uploads nothing and prints the same digest.
    let again = a.ok(&["push", &name]);
    assert_eq!(again, out);
    assert_eq!(reg.count("PATCH", "/blobs/uploads/"), 2);
    assert_eq!(reg.count("POST", "/blobs/uploads/"), 2);
    // First push: HEAD for the config (the layer is new); second: HEAD for both.
    assert_eq!(
        reg.count("HEAD", "/test/busybox/blobs/"),
        3,
        "{}",
        reg.log()
    );

    let b = Env::new();
    let pulled = b.ok(&["pull", &name]);
    assert!(
        pulled.contains(&format!("Digest: {pushed_digest}")),
        "{pulled}"
    );
    assert!(
        pulled.contains(&format!("Status: Downloaded newer image for {name}")),
        "{pulled}"
    );
    assert_eq!(id_of(&b, &name), id_of(&a, &name));
    assert!(id_of(&a, &name).ends_with(&id), "{id}");
    // Sizes are uncompressed, as Docker reports them: the pulled image (its layer came gzipped)
    // is as big as the imported one (issue 18 item 10).
    let size = |e: &Env| inspect_image(e, &name)["Size"].as_u64().unwrap();
    assert_eq!(size(&b), size(&a));
    // Pulled again under another tag, its layer already in the store: the same size.
    let again_as = format!("{}/test/busybox:again", reg.addr);
    a.ok(&["tag", &name, &again_as]);
    a.ok(&["push", "-q", &again_as]);
    b.ok(&["pull", "-q", &again_as]);
    assert_eq!(
        inspect_image(&b, &again_as)["Size"],
        inspect_image(&a, &name)["Size"]
    );
    let again = b.ok(&["pull", &name]);
    assert!(
        again.contains(&format!("Status: Image is up to date for {name}")),
        "{again}"
    );
    // -q: only the reference, as Docker prints it (issue 18 item 10).
    let quiet = b.ok(&["pull", "-q", &name]);
    assert_eq!(quiet, format!("{name}\n"));
    // A bare name: Docker's CLI first says which tag it chose.
    let bare = name.rsplit_once(':').map(|(n, _)| n).unwrap_or(&name);
    a.ok(&["tag", &name, &format!("{bare}:latest")]);
    a.ok(&["push", "-q", &format!("{bare}:latest")]);
    let out = b.ok(&["pull", bare]);
    assert!(out.starts_with("Using default tag: latest\n"), "{out}");
    assert_eq!(b.ok(&["pull", "-q", bare]), format!("{bare}:latest\n"));

    let ma = Mounted::new(&a, &name);
    let mb = Mounted::new(&b, &name);
    let (ta, tb) = (tree(&ma.path), tree(&mb.path));
    assert!(ta.iter().any(|(p, _)| p == "bin/busybox"), "{ta:?}");
    assert_eq!(ta, tb);
    drop((ma, mb));
    b.check_store();
}

#[test]
fn push_to_another_repository_mounts_shared_blobs() {
    let Some(reg) = Registry::start() else { return };
    let a = Env::new();
    let one = format!("{}/one/app:1", reg.addr);
    let two = format!("{}/two/app:1", reg.addr);
    a.import_busybox(&one);
    a.ok(&["push", &one]);
    a.ok(&["tag", &one, &two]);
    a.ok(&["push", &two]);
    assert_eq!(reg.count("POST", "mount=sha256"), 2, "{}", reg.log());
    assert_eq!(reg.count("PATCH", "/two/app/"), 0, "{}", reg.log());
    // A fresh root knows nothing about `one`, and must still be able to pull `two`.
    let b = Env::new();
    b.ok(&["pull", &two]);
    assert_eq!(id_of(&b, &two), id_of(&a, &one));
}

#[test]
fn push_all_tags_pushes_every_tag_and_a_bare_name_pushes_latest() {
    let Some(reg) = Registry::start() else { return };
    let a = Env::new();
    let repo = format!("{}/multi/app", reg.addr);
    a.import_busybox(&format!("{repo}:1"));
    a.ok(&["tag", &format!("{repo}:1"), &format!("{repo}:2")]);
    a.ok(&[
        "tag",
        &format!("{repo}:1"),
        &format!("{}/elsewhere:9", reg.addr),
    ]);

    // Docker pushes :latest for a bare name, and says so when there is none.
    let out = a.fails(&["push", &repo]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("tag does not exist: {repo}:latest")),
        "{err}"
    );
    let out = a.fails(&["push", "--all-tags", &format!("{repo}:1")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tag can't be used with --all-tags/-a"),
        "{err}"
    );
    let none = format!("{}/no/such", reg.addr);
    let out = a.fails(&["push", "-a", &none]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "An image does not exist locally with the tag: {none}"
        )),
        "{err}"
    );
    assert_eq!(reg.count("PUT", "/manifests/"), 0, "{}", reg.log());

    let out = a.ok(&["push", "--all-tags", &repo]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("1: digest: sha256:"), "{out}");
    assert!(lines[1].starts_with("2: digest: sha256:"), "{out}");
    assert_eq!(lines[0][1..], lines[1][1..], "one image, one digest: {out}");
    // The blobs the tags share went up once; each tag got its manifest; other repositories'
    // tags were left alone.
    assert_eq!(
        reg.count("PATCH", "/multi/app/blobs/uploads/"),
        2,
        "{}",
        reg.log()
    );
    assert_eq!(
        reg.count("PUT", "/multi/app/manifests/1"),
        1,
        "{}",
        reg.log()
    );
    assert_eq!(
        reg.count("PUT", "/multi/app/manifests/2"),
        1,
        "{}",
        reg.log()
    );
    assert_eq!(reg.count("PUT", "/manifests/"), 2, "{}", reg.log());

    a.ok(&["tag", &format!("{repo}:1"), &repo]);
    let out = a.ok(&["push", &repo]);
    assert!(out.starts_with("latest: digest: sha256:"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(reg.count("PUT", "/multi/app/manifests/latest"), 1);

    let b = Env::new();
    b.ok(&["pull", &format!("{repo}:2")]);
    assert_eq!(
        id_of(&b, &format!("{repo}:2")),
        id_of(&a, &format!("{repo}:1"))
    );
}

#[test]
fn skopeo_reads_what_berth_pushed_and_berth_pulls_what_skopeo_copied() {
    let Some(reg) = Registry::start() else { return };
    if !have("skopeo") {
        return;
    }
    let a = Env::new();
    let name = format!("{}/sk/src:1", reg.addr);
    a.import_busybox(&name);
    let pushed = a.ok(&["push", &name]);
    let digest = pushed.split_whitespace().nth(2).unwrap().to_string();
    let out = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{name}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"], digest.as_str());
    assert_eq!(v["Architecture"], "amd64");
    let raw = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ])
        .output()
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        m["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
        "{m}"
    );

    let copied = format!("{}/sk/copied:2", reg.addr);
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--dest-compress-format=zstd",
            &format!("docker://{name}"),
            &format!("docker://{copied}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = Env::new();
    b.ok(&["pull", &copied]);
    assert_eq!(id_of(&b, &copied), id_of(&a, &name));
    let m = Mounted::new(&b, &copied);
    assert!(m.path.join("bin/busybox").is_file());
}

#[test]
fn pull_by_digest_and_through_an_image_index() {
    let Some(reg) = Registry::start() else { return };
    let a = Env::new();
    let name = format!("{}/idx/app:1", reg.addr);
    a.import_busybox(&name);
    let pushed = a.ok(&["push", &name]);
    let fields: Vec<&str> = pushed.split_whitespace().collect();
    let (digest, size) = (fields[2].to_string(), fields[4].to_string());

    let b = Env::new();
    let by_digest = format!("{}/idx/app@{digest}", reg.addr);
    let out = b.ok(&["pull", &by_digest]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert_eq!(id_of(&b, &by_digest), id_of(&a, &name));

    // An index with this platform and another one, PUT over HTTP.
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":{size},"platform":{{"architecture":"arm64","os":"linux"}}}},
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","size":{size},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
    );
    let st = Command::new("curl")
        .args([
            "-sSf",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.index.v1+json",
            "--data-binary",
            &index,
            &format!("http://{}/v2/idx/app/manifests/multi", reg.addr),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let index_digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(index.as_bytes()))
    );
    let c = Env::new();
    let multi = format!("{}/idx/app:multi", reg.addr);
    let out = c.ok(&["pull", &multi]);
    assert!(out.contains(&format!("Digest: {index_digest}")), "{out}");
    assert_eq!(id_of(&c, &multi), id_of(&a, &name));
    // Pulled through an index by tag: RepoDigests and DIGEST name the index, as Docker's do.
    let repo = format!("{}/idx/app", reg.addr);
    let doc = inspect_image(&c, &multi);
    assert_eq!(
        doc["RepoDigests"],
        serde_json::json!([format!("{repo}@{index_digest}")])
    );
    let listed = c.ok(&["images", "--digests", "--format", "{{.Tag}} {{.Digest}}"]);
    assert_eq!(listed.trim(), format!("multi {index_digest}"));
}

fn inspect_image(env: &Env, name: &str) -> serde_json::Value {
    let out = env.ok(&["image", "inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

#[test]
fn repo_digests_are_recorded_by_push_and_pull_as_docker_records_them() {
    // Issue 18 items 5 and 6.
    let Some(reg) = Registry::start() else { return };
    let a = Env::new();
    let repo = format!("{}/rd/app", reg.addr);
    let name = format!("{repo}:1");
    a.import_busybox(&name);
    let pushed = a.ok(&["push", &name]);
    let digest = pushed.split_whitespace().nth(2).unwrap().to_string();
    // After push: the digest the registry answers to, in RepoDigests and the DIGEST column.
    assert_eq!(
        inspect_image(&a, &name)["RepoDigests"],
        serde_json::json!([format!("{repo}@{digest}")])
    );
    let listed = a.ok(&[
        "images",
        "--digests",
        "--format",
        "{{.Repository}} {{.Tag}} {{.Digest}}",
    ]);
    assert_eq!(listed.trim(), format!("{repo} 1 {digest}"));
    let st = Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "-I", "-H"])
        .arg(
            "Accept: application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        )
        .arg(format!("http://{}/v2/rd/app/manifests/{digest}", reg.addr))
        .status()
        .unwrap();
    assert!(st.success(), "the registry does not know {digest}");

    // Pulled by digest: named `REPO <none>`, not dangling, kept by image prune.
    let b = Env::new();
    let by_digest = format!("{repo}@{digest}");
    b.ok(&["pull", "-q", &by_digest]);
    let listed = b.ok(&[
        "images",
        "--digests",
        "--format",
        "{{.Repository}} {{.Tag}} {{.Digest}}",
    ]);
    assert_eq!(listed.trim(), format!("{repo} <none> {digest}"));
    assert_eq!(b.ok(&["images", "-q", "--filter", "dangling=true"]), "");
    b.ok(&["image", "prune", "-f"]);
    let doc = inspect_image(&b, &by_digest);
    assert_eq!(doc["RepoDigests"], serde_json::json!([by_digest.clone()]));
    assert_eq!(doc["RepoTags"], serde_json::json!([]));
    // Tagging it and removing the tag keeps the digest; removing the digest deletes the image.
    b.ok(&["tag", &by_digest, &format!("{repo}:mine")]);
    let out = b.ok(&["rmi", &by_digest]);
    assert_eq!(out, format!("Untagged: {by_digest}\n"));
    let out = b.ok(&["rmi", &format!("{repo}:mine")]);
    assert!(
        out.starts_with(&format!("Untagged: {repo}:mine\nDeleted: sha256:")),
        "{out}"
    );

    // Pulled by tag: the tag and the digest; rmi of the repository's last tag removes both.
    let c = Env::new();
    c.ok(&["pull", "-q", &name]);
    assert_eq!(
        inspect_image(&c, &name)["RepoDigests"],
        serde_json::json!([by_digest.clone()])
    );
    let out = c.ok(&["rmi", &name]);
    assert!(
        out.starts_with(&format!(
            "Untagged: {name}\nUntagged: {by_digest}\nDeleted: sha256:"
        )),
        "{out}"
    );
    assert_eq!(c.ok(&["images", "-q"]), "");
}

#[test]
fn failures_are_one_clear_line_and_leave_nothing_behind() {
    let Some(reg) = Registry::start() else { return };
    let e = Env::new();
    let missing = format!("{}/nope/none:1", reg.addr);
    let out = e.fails(&["pull", &missing]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not found") && err.contains("nope/none:1"),
        "{err}"
    );
    assert_eq!(e.ok(&["images", "-q"]).trim(), "");
    let blobs = e.root().join("images/blobs/sha256");
    assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);

    // Nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("127.0.0.1:{port}/a/b:1");
    let out = e.fails(&["pull", &down]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreachable"), "{err}");
    e.import_busybox(&down);
    let out = e.fails(&["push", &down]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unreachable") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert_eq!(stdout_of(&out), "");
}

#[test]
fn login_and_logout_keep_credentials_in_the_auth_file() {
    let Some(reg) = Registry::start() else { return };
    let e = Env::new();
    let auth = e.path("auth.json");
    let out = e
        .berth()
        .env("BERTH_AUTH_FILE", &auth)
        .args(["login", "-u", "me", "--password-stdin", &reg.addr])
        .write_stdin("s3cret\n")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout_of(&out).contains("Login Succeeded"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&auth).unwrap()).unwrap();
    // base64("me:s3cret")
    assert_eq!(v["auths"][&reg.addr]["auth"], "bWU6czNjcmV0");
    // Pushing with stored (unneeded) credentials still works.
    let name = format!("{}/auth/app:1", reg.addr);
    e.import_busybox(&name);
    let out = e
        .berth()
        .env("BERTH_AUTH_FILE", &auth)
        .args(["push", &name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = e
        .berth()
        .env("BERTH_AUTH_FILE", &auth)
        .args(["logout", &reg.addr])
        .output()
        .unwrap();
    assert!(
        stdout_of(&out).contains("Removing login credentials"),
        "{}",
        stdout_of(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&auth).unwrap()).unwrap();
    assert!(v["auths"].as_object().unwrap().is_empty());
}

//! `berth build` with what does not come from the context: ADD of http(s) files (served by a
//! tiny server in the test) and git repositories (`git daemon` and dumb http on loopback),
//! COPY/ADD heredocs, ONBUILD triggers of a base image, and base images pulled from a
//! `berth registry serve` the test starts; with the errors each can end in.

use crate::common;
use crate::registry_client;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};

use common::Env;
use sha2::{Digest, Sha256};

fn context(env: &Env, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    env.context(name, dockerfile, files)
}

/// `berth build ARGS`; (success, stderr).
fn build(env: &Env, args: &[&str]) -> (bool, String) {
    let out = env.berth().arg("build").args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (out.status.success(), err)
}

fn build_ok(env: &Env, args: &[&str]) -> String {
    let (ok, err) = build(env, args);
    assert!(ok, "build {args:?} failed: {err}");
    err
}

fn build_err(env: &Env, ctx: &Path) -> String {
    let (ok, err) = build(env, &["-t", "bad:1", ctx.to_str().unwrap()]);
    assert!(!ok, "build should fail: {err}");
    env.fails(&["inspect", "bad:1"]);
    err
}

/// (content, mode, uid, mtime) of files in an image.
fn files(env: &Env, image: &str, paths: &[&str]) -> Vec<(String, u32, u32, i64)> {
    let root = PathBuf::from(env.ok(&["image", "mount", image]).trim());
    let out = paths
        .iter()
        .map(|p| {
            let f = root.join(p.trim_start_matches('/'));
            let md = fs::metadata(&f).unwrap_or_else(|e| panic!("{p}: {e}"));
            let text = if md.is_file() {
                String::from_utf8_lossy(&fs::read(&f).unwrap()).into_owned()
            } else {
                String::new()
            };
            (text, md.mode() & 0o7777, md.uid(), md.mtime())
        })
        .collect();
    env.ok(&["image", "unmount", image]);
    out
}

fn exists(env: &Env, image: &str, path: &str) -> bool {
    let root = PathBuf::from(env.ok(&["image", "mount", image]).trim());
    let e = root
        .join(path.trim_start_matches('/'))
        .symlink_metadata()
        .is_ok();
    env.ok(&["image", "unmount", image]);
    e
}

#[derive(Clone, Default)]
struct Served {
    body: Vec<u8>,
    etag: Option<&'static str>,
    last_modified: Option<&'static str>,
}

/// A one-request-per-connection HTTP server on 127.0.0.1: `files` by path, else files under
/// `root`; honours If-None-Match; logs (path, status). It lives as long as the test process.
struct Http {
    port: u16,
    files: Arc<Mutex<HashMap<String, Served>>>,
    log: Arc<Mutex<Vec<(String, u16)>>>,
}

impl Http {
    fn start(root: Option<PathBuf>) -> Http {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let files: Arc<Mutex<HashMap<String, Served>>> = Arc::default();
        let log: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
        let (f, lg) = (files.clone(), log.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                serve(s, &f, &lg, root.as_deref());
            }
        });
        Http { port, files, log }
    }
    fn put(&self, path: &str, s: Served) {
        self.files.lock().unwrap().insert(path.into(), s);
    }
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    fn hits(&self, path: &str, status: u16) -> usize {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|(p, s)| p == path && *s == status)
            .count()
    }
}

fn serve(
    mut s: TcpStream,
    files: &Mutex<HashMap<String, Served>>,
    log: &Mutex<Vec<(String, u16)>>,
    root: Option<&Path>,
) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut first = String::new();
    let _ = r.read_line(&mut first);
    let mut inm = None;
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("if-none-match")
        {
            inm = Some(v.trim().to_string());
        }
    }
    let mut words = first.split_whitespace();
    let method = words.next().unwrap_or("GET").to_string();
    let path = words.next().unwrap_or("/");
    let path = path.split('?').next().unwrap_or("/").to_string();
    let found = files.lock().unwrap().get(&path).cloned().or_else(|| {
        let body = fs::read(root?.join(path.trim_start_matches('/'))).ok()?;
        Some(Served {
            body,
            ..Default::default()
        })
    });
    let mut head = String::new();
    let (status, body) = match found {
        None => (404, b"not found".to_vec()),
        Some(f) => {
            if let Some(e) = f.etag {
                head.push_str(&format!("ETag: {e}\r\n"));
            }
            if let Some(m) = f.last_modified {
                head.push_str(&format!("Last-Modified: {m}\r\n"));
            }
            if inm.is_some() && inm.as_deref() == f.etag {
                (304, Vec::new())
            } else {
                (200, f.body)
            }
        }
    };
    log.lock().unwrap().push((path, status));
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{head}\r\n",
        if status == 304 { 0 } else { body.len() }
    );
    if method != "HEAD" {
        let _ = s.write_all(&body);
    }
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn gz_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "inside.txt", &b"in\n"[..]).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn add_url_downloads_pins_revalidates_and_fails_clearly() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let http = Http::start(None);
    let tgz = gz_tar();
    let lm = "Wed, 21 Oct 2015 07:28:00 GMT";
    http.put(
        "/files/data.tar.gz",
        Served {
            body: tgz.clone(),
            etag: Some("\"v1\""),
            last_modified: Some(lm),
        },
    );
    let plain = |b: &str| Served {
        body: b.as_bytes().to_vec(),
        ..Default::default()
    };
    http.put("/plain", plain("hello\n"));
    http.put("/pinned", plain("pinned\n"));
    let df = format!(
        "FROM bb:1\nADD {} /dl/\nADD --chmod=644 --chown=1000:1000 {} /named\nADD --checksum={} {} /checked\n",
        http.url("/files/data.tar.gz"),
        http.url("/plain"),
        sha(b"pinned\n"),
        http.url("/pinned"),
    );
    let ctx = context(&env, "ctx", &df, &[]);
    build_ok(&env, &["-t", "u:1", ctx.to_str().unwrap()]);
    let f = files(&env, "u:1", &["/dl/data.tar.gz", "/named", "/checked"]);
    // Not unpacked, 0600, mtime from Last-Modified.
    assert_eq!(f[0].0.as_bytes(), String::from_utf8_lossy(&tgz).as_bytes());
    assert_eq!((f[0].1, f[0].3), (0o600, 1445412480));
    assert!(!exists(&env, "u:1", "/dl/inside.txt"));
    assert_eq!((f[1].0.as_str(), f[1].1, f[1].2), ("hello\n", 0o644, 1000));
    assert_eq!((f[2].0.as_str(), f[2].1, f[2].3), ("pinned\n", 0o600, 0));

    // Rebuild: the ETag is revalidated (304, no download), the pinned file not fetched.
    let err = build_ok(&env, &["-t", "u:1", ctx.to_str().unwrap()]);
    assert_eq!(err.matches("CACHED").count(), 4, "{err}");
    assert_eq!(http.hits("/files/data.tar.gz", 304), 1);
    assert_eq!(http.hits("/pinned", 200), 1);
    // Changed content at the URL: that step runs again.
    http.put("/plain", plain("changed\n"));
    let err = build_ok(&env, &["-t", "u:1", ctx.to_str().unwrap()]);
    assert_eq!(err.matches("CACHED").count(), 2, "{err}");
    assert_eq!(files(&env, "u:1", &["/named"])[0].0, "changed\n");

    // A checksum that does not match, a 404 and a refused connection: named, with the line.
    let bad = format!(
        "FROM bb:1\nADD --checksum={} {} /x\n",
        sha(b"other"),
        http.url("/plain")
    );
    let err = build_err(&env, &context(&env, "c2", &bad, &[]));
    assert!(
        err.contains("digest mismatch") && err.contains("Dockerfile:2"),
        "{err}"
    );
    let bad = format!("FROM bb:1\nRUN true\nADD {} /x\n", http.url("/missing"));
    let err = build_err(&env, &context(&env, "c3", &bad, &[]));
    assert!(err.contains("404") && err.contains("/missing"), "{err}");
    assert!(err.contains("Dockerfile:3"), "{err}");
    let refused = "FROM bb:1\nADD http://127.0.0.1:1/f /x\n";
    let err = build_err(&env, &context(&env, "c4", refused, &[]));
    assert!(err.contains("http://127.0.0.1:1/f"), "{err}");
    env.check_store();
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `git daemon`, killed by PID on drop.
struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn add_git_checks_out_refs_subdirs_and_keeps_git_dir_on_request() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let (work, srv) = (env.path("work"), env.path("srv"));
    fs::create_dir_all(work.join("sub")).unwrap();
    fs::create_dir_all(&srv).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    fs::write(work.join("a.txt"), "v1\n").unwrap();
    fs::write(work.join("sub/b.txt"), "b1\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(&work, &["tag", "-a", "v1", "-m", "v1"]);
    fs::write(work.join("a.txt"), "v2\n").unwrap();
    git(&work, &["commit", "-q", "-am", "two"]);
    let bare = srv.join("r.git");
    git(
        &srv,
        &["clone", "-q", "--bare", work.to_str().unwrap(), "r.git"],
    );
    git(&bare, &["update-server-info"]);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // git-daemon itself (not the `git` wrapper, which would leave it running when killed).
    let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
    let exec_path = PathBuf::from(String::from_utf8_lossy(&exec_path.stdout).trim());
    let _daemon = Daemon(
        Command::new(exec_path.join("git-daemon"))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", srv.display()))
            .arg(&srv)
            .spawn()
            .unwrap(),
    );
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Dumb http serves the same repository (no shallow fetches there).
    let http = Http::start(Some(srv.clone()));
    let repo = format!("git://127.0.0.1:{port}/r.git");
    let df = format!(
        "FROM bb:1\nADD {repo}#v1 /src\nADD {repo}#main:sub /sub/\nADD --keep-git-dir {repo} /kept\nADD {}#v1 /dumb\n",
        http.url("/r.git")
    );
    let ctx = context(&env, "ctx", &df, &[]);
    build_ok(&env, &["-t", "g:1", ctx.to_str().unwrap()]);
    let f = files(
        &env,
        "g:1",
        &["/src/a.txt", "/sub/b.txt", "/kept/a.txt", "/dumb/a.txt"],
    );
    assert_eq!(f[0].0, "v1\n");
    assert_eq!(f[1].0, "b1\n");
    assert_eq!(f[2].0, "v2\n");
    assert_eq!(f[3].0, "v1\n");
    assert!(!exists(&env, "g:1", "/src/.git"));
    assert!(!exists(&env, "g:1", "/sub/sub"));
    assert!(exists(&env, "g:1", "/kept/.git/HEAD"));

    // Cached while the refs stay; a new commit on main reruns the steps that follow main.
    let err = build_ok(&env, &["-t", "g:1", ctx.to_str().unwrap()]);
    assert_eq!(err.matches("CACHED").count(), 5, "{err}");
    fs::write(work.join("sub/b.txt"), "b2\n").unwrap();
    git(&work, &["commit", "-q", "-am", "three"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let err = build_ok(&env, &["-t", "g:1", ctx.to_str().unwrap()]);
    assert_eq!(err.matches("CACHED").count(), 2, "{err}");
    assert_eq!(files(&env, "g:1", &["/sub/b.txt"])[0].0, "b2\n");

    let bad = format!("FROM bb:1\nADD {repo}#nope /x\n");
    let err = build_err(&env, &context(&env, "c2", &bad, &[]));
    assert!(
        err.contains("git ref \"nope\" not found") && err.contains("Dockerfile:2"),
        "{err}"
    );
}

#[test]
fn heredocs_become_files_and_bad_sources_are_refused() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let df = "FROM bb:1\nARG WHO=world\nCOPY <<EOF /greeting\nhello $WHO\nEOF\nCOPY --chmod=755 <<'RAW' <<-TABS /dir/\nraw $WHO\nRAW\n\ttabbed\n\tTABS\nADD --chown=1000:1000 <<EOF /added\nadded\nEOF\n";
    let ctx = context(&env, "ctx", df, &[]);
    build_ok(&env, &["-t", "h:1", ctx.to_str().unwrap()]);
    let f = files(
        &env,
        "h:1",
        &["/greeting", "/dir/RAW", "/dir/TABS", "/added"],
    );
    assert_eq!((f[0].0.as_str(), f[0].1), ("hello world\n", 0o644));
    assert_eq!((f[1].0.as_str(), f[1].1), ("raw $WHO\n", 0o755));
    assert_eq!((f[2].0.as_str(), f[2].1), ("tabbed\n", 0o755));
    assert_eq!((f[3].0.as_str(), f[3].2), ("added\n", 1000));
    let hist = env.ok(&["history", "--no-trunc", "h:1"]);
    assert!(hist.contains("COPY <<EOF /greeting # buildkit"), "{hist}");

    for (df, want) in [
        ("FROM bb:1\nCOPY <<EOF /x\nno end\n", "unterminated heredoc"),
        (
            "FROM bb:1\nADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 a.txt /x\n",
            "checksum requires HTTP(S) or Git sources",
        ),
        (
            "FROM bb:1\nADD ftp://example.com/f /x\n",
            "unsupported URL scheme \"ftp\"",
        ),
        (
            "FROM bb:1\nCOPY http://127.0.0.1:1/f /x\n",
            "source can't be a URL for COPY",
        ),
    ] {
        let err = build_err(&env, &context(&env, "bad", df, &[("a.txt", "a")]));
        assert!(err.contains(want) && err.contains("Dockerfile:2"), "{err}");
    }
}

#[test]
fn onbuild_triggers_run_in_the_child_and_are_not_inherited() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let base = "FROM bb:1\nONBUILD COPY a /a\nONBUILD RUN echo \"triggered $(cat /a)\" > /t\nONBUILD ENV FROM_TRIGGER=1\n";
    build_ok(
        &env,
        &[
            "-t",
            "onb:1",
            context(&env, "b", base, &[]).to_str().unwrap(),
        ],
    );
    let cfg = env.ok(&["inspect", "-f", "{{json .Config.OnBuild}}", "onb:1"]);
    assert!(
        cfg.contains("COPY a /a") && cfg.contains("ENV FROM_TRIGGER=1"),
        "{cfg}"
    );

    let child = "FROM onb:1\nRUN cat /t\n";
    let ctx = context(&env, "c", child, &[("a", "payload")]);
    let err = build_ok(&env, &["-t", "child:1", ctx.to_str().unwrap()]);
    assert!(err.contains("[2/5] ONBUILD COPY a /a"), "{err}");
    assert!(err.contains("triggered payload"), "{err}");
    let f = files(&env, "child:1", &["/a", "/t"]);
    assert_eq!(
        (f[0].0.as_str(), f[1].0.as_str()),
        ("payload", "triggered payload\n")
    );
    let onbuild = env.ok(&["inspect", "-f", "{{json .Config.OnBuild}}", "child:1"]);
    assert_eq!(onbuild.trim(), "null");
    let envs = env.ok(&["inspect", "-f", "{{json .Config.Env}}", "child:1"]);
    assert!(envs.contains("FROM_TRIGGER=1"), "{envs}");
    let hist = env.ok(&["history", "--no-trunc", "child:1"]);
    assert!(hist.contains("COPY a /a # buildkit"), "{hist}");

    // The trigger's source missing from the child's context: named.
    let err = build_err(&env, &context(&env, "c2", child, &[]));
    assert!(err.contains("\"a\" not found"), "{err}");
}

#[test]
fn missing_bases_are_pulled_from_their_registry_or_named() {
    let env = Env::new();
    let server = registry_client::Server::start(&env.path("registry"), &[]);
    let reg = format!("127.0.0.1:{}", server.port);
    let pusher = Env::new();
    for name in ["lib/bb:1", "lib/other:2"] {
        pusher.import_busybox(&format!("{reg}/{name}"));
        pusher.ok(&["push", &format!("{reg}/{name}")]);
    }
    let df = format!(
        "FROM {reg}/lib/bb:1\nRUN echo ok > /ok\nCOPY --from={reg}/lib/other:2 /bin/busybox /bb2\n"
    );
    let ctx = context(&env, "ctx", &df, &[]);
    let err = build_ok(&env, &["-t", "p:1", ctx.to_str().unwrap()]);
    assert!(err.contains(&format!("pulling {reg}/lib/bb:1")), "{err}");
    assert!(err.contains(&format!("pulling {reg}/lib/other:2")), "{err}");
    assert_eq!(files(&env, "p:1", &["/ok"])[0].0, "ok\n");
    assert!(exists(&env, "p:1", "/bb2"));
    // Local now: no pull; --pull asks the registry again.
    let err = build_ok(&env, &["-t", "p:1", ctx.to_str().unwrap()]);
    assert!(!err.contains("pulling"), "{err}");
    let err = build_ok(&env, &["--pull", "-t", "p:1", ctx.to_str().unwrap()]);
    assert!(err.contains("Image is up to date"), "{err}");

    for base in [
        format!("{reg}/lib/nothere:1"),
        "127.0.0.1:1/x:1".to_string(),
    ] {
        let df = format!("FROM {base}\nRUN true\n");
        let err = build_err(&env, &context(&env, "bad", &df, &[]));
        assert!(
            err.contains(&format!("failed to resolve source metadata for {base}"))
                && err.contains("Dockerfile:1"),
            "{err}"
        );
    }
    env.check_store();
}

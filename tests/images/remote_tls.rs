//! Issue 18, items 7–9: how berth reaches a registry and authenticates, as Docker does. Loopback and insecure
//! registries over HTTPS first (unverified), then plain HTTP; secure ones over verified HTTPS
//! only, trusting the CAs of `certs.d`; a plain-HTTP answer to HTTPS named as Go names it;
//! `registry-mirrors` and `insecure-registries` from daemon.json; credential helpers and
//! `login` without a TTY.
//!
//! The "remote" registry is berth's own `registry serve`, on loopback or on an address of a
//! bridge the test makes (a registry that is not loopback, so not insecure by default).

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{Env, have};

/// A `berth registry serve` on `addr` (`IP:0`), killed by PID on drop.
struct Registry {
    child: Child,
    /// `IP:PORT`.
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(ip: &str, tls: Option<(&Path, &Path)>) -> Registry {
        Self::start_with(ip, tls, &[])
    }

    fn start_with(ip: &str, tls: Option<(&Path, &Path)>, extra: &[&str]) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("berth"));
        cmd.arg("--root")
            .arg(dir.path().join("root"))
            .args([
                "registry",
                "serve",
                "--addr",
                &format!("{ip}:0"),
                "--storage",
            ])
            .arg(dir.path().join("storage"));
        if let Some((cert, key)) = tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        cmd.args(extra);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start berth registry serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit("://")
            .next()
            .filter(|a| a.starts_with(ip))
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("unexpected startup line {line:?}")
            })
            .to_string();
        Registry {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and a server certificate it signed for `ip`: (ca, cert, key) files in `dir`.
fn certificate(dir: &Path, ip: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let (ca, ca_key, cert, key, csr, ext) = (
        p("ca.pem"),
        p("ca.key"),
        p("reg.crt"),
        p("reg.key"),
        p("reg.csr"),
        p("ext.cnf"),
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=berth test CA",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        &format!("/CN={ip}"),
        "-keyout",
        &key,
        "-out",
        &csr,
    ]);
    std::fs::write(
        &ext,
        format!("basicConstraints=CA:FALSE\nsubjectAltName=IP:{ip}\n"),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    (ca.into(), cert.into(), key.into())
}

/// A bridge of the test's own with one address, removed on drop: a registry there is not on
/// loopback, so berth treats it as secure unless told otherwise.
struct Bridge {
    name: String,
    ip: String,
}

impl Bridge {
    fn new(env: &Env) -> Bridge {
        let name = format!("brt{:x}", std::process::id());
        let ip = format!("{}1", env.subnet_prefix());
        for args in [
            vec!["link", "add", &name, "type", "bridge"],
            vec!["addr", "add", &format!("{ip}/24"), "dev", &name],
            vec!["link", "set", &name, "up"],
        ] {
            let ok = Command::new("ip").args(&args).status().expect("ip");
            assert!(ok.success(), "ip {args:?}");
        }
        Bridge { name, ip }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .status();
    }
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_tls_registry_on_loopback_is_spoken_to_over_https() {
    // Before: every loopback registry got plain HTTP ("invalid HTTP version parsed").
    if !have("openssl") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (_, cert, key) = certificate(certs.path(), "127.0.0.1");
    let reg = Registry::start("127.0.0.1", Some((&cert, &key)));
    let a = Env::new();
    let name = format!("{}/tls/bb:1", reg.addr);
    a.import_busybox(&name);
    // Loopback is insecure as in Docker: the self-signed certificate is not verified.
    let out = a.ok(&["push", &name]);
    assert!(out.starts_with("1: digest: sha256:"), "{out}");
    let b = Env::new();
    assert_eq!(b.ok(&["pull", "-q", &name]), format!("{name}\n"));
    // A plain-HTTP loopback registry still works (HTTPS is tried, then HTTP).
    let plain = Registry::start("127.0.0.1", None);
    let name = format!("{}/plain/bb:1", plain.addr);
    a.ok(&["tag", &format!("{}/tls/bb:1", reg.addr), &name]);
    a.ok(&["push", "-q", &name]);
    assert_eq!(b.ok(&["pull", "-q", &name]), format!("{name}\n"));
}

#[test]
fn a_secure_registry_is_verified_against_the_cas_of_certs_d() {
    if !have("openssl") || !have("ip") {
        return;
    }
    let env = Env::new();
    let bridge = Bridge::new(&env);
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificate(certs.path(), &bridge.ip);
    let reg = Registry::start(&bridge.ip, Some((&cert, &key)));
    let name = format!("{}/sec/bb:1", reg.addr);
    env.import_busybox(&name);
    let certs_d = certs.path().join("certs.d");
    let push = |certs_d: &Path| {
        env.berth()
            .env("BERTH_CERTS_D", certs_d)
            .args(["push", &name])
            .output()
            .unwrap()
    };
    // Without its CA the certificate is refused, with a reason and no fallback to HTTP.
    let out = push(&certs_d);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains(&reg.addr) && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    // certs.d/HOST:PORT/ca.crt makes it trusted.
    let dir = certs_d.join(&reg.addr);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&ca, dir.join("ca.crt")).unwrap();
    let out = push(&certs_d);
    assert!(out.status.success(), "{}", stderr_of(&out));
    // A broken certs.d entry is a clear error naming the file.
    std::fs::write(dir.join("client.key"), "x").unwrap();
    let err = stderr_of(&push(&certs_d));
    assert!(
        err.contains("client.cert") && err.contains("client.key"),
        "{err}"
    );
}

#[test]
fn plain_http_answering_https_is_named_and_insecure_registries_fall_back() {
    if !have("ip") {
        return;
    }
    let env = Env::new();
    let bridge = Bridge::new(&env);
    let reg = Registry::start(&bridge.ip, None);
    let name = format!("{}/plain/bb:1", reg.addr);
    env.import_busybox(&name);
    // Secure by default (not loopback): Go's wording for what happened, and the way out.
    let out = env.fails(&["push", &name]);
    let err = stderr_of(&out);
    assert!(
        err.contains("server gave HTTP response to HTTPS client")
            && err.contains("insecure-registr"),
        "{err}"
    );
    // --insecure-registry: HTTPS is tried, then plain HTTP.
    env.ok(&["push", "--insecure-registry", &reg.addr, &name]);
    // insecure-registries in daemon.json does the same (Docker's key, in Docker's file).
    let b = Env::new();
    add_daemon_keys(&b, serde_json::json!({ "insecure-registries": [reg.addr] }));
    assert_eq!(b.ok(&["pull", "-q", &name]), format!("{name}\n"));
}

/// Merge `keys` into the root's daemon.json (the test harness writes network settings there).
fn add_daemon_keys(env: &Env, keys: serde_json::Value) {
    let path = env.root().join("daemon.json");
    std::fs::create_dir_all(env.root()).unwrap();
    let mut v: serde_json::Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    for (k, val) in keys.as_object().unwrap() {
        v[k] = val.clone();
    }
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn docker_hub_images_come_through_registry_mirrors_in_order() {
    let mirror = Registry::start("127.0.0.1", None);
    let a = Env::new();
    // The mirror holds library/bb:1, as a pull-through cache of Docker Hub would.
    let on_mirror = format!("{}/library/bb:1", mirror.addr);
    a.import_busybox(&on_mirror);
    a.ok(&["push", "-q", &on_mirror]);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let b = Env::new();
    add_daemon_keys(
        &b,
        serde_json::json!({ "registry-mirrors": [
            format!("http://{dead_addr}"),
            format!("http://{}", mirror.addr),
        ] }),
    );
    // The first mirror is down; the second answers; Docker Hub is never asked.
    assert_eq!(b.ok(&["pull", "-q", "bb:1"]), "docker.io/library/bb:1\n");
    let images = b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(images.trim(), "bb:1");
    // Only Docker Hub images are mirrored: another registry's image is not looked for there.
    let err = stderr_of(&b.fails(&["pull", &format!("{dead_addr}/library/bb:1")]));
    assert!(err.contains(&dead_addr.to_string()), "{err}");
    // A malformed mirror is an error naming the file and the entry.
    add_daemon_keys(
        &b,
        serde_json::json!({ "registry-mirrors": ["mirror.example"] }),
    );
    let err = stderr_of(&b.fails(&["pull", "bb:1"]));
    assert!(
        err.contains("daemon.json") && err.contains("registry-mirrors"),
        "{err}"
    );
}

/// A `docker-credential-file` helper (Docker's protocol) keeping one record per server as
/// `DIR/<server>.json`; returns the PATH to run berth with.
fn credential_helper(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let store = dir.join("creds");
    std::fs::create_dir_all(&store).unwrap();
    let script = format!(
        r#"#!/bin/sh
set -e
read -r input || true
case "$1" in
  get) f="{s}/$(echo "$input" | tr '/:' '__').json"
       [ -f "$f" ] || {{ echo "credentials not found in native keychain"; exit 1; }}
       cat "$f" ;;
  store) server=$(echo "$input" | sed 's/.*"ServerURL":"\([^"]*\)".*/\1/')
         echo "$input" > "{s}/$(echo "$server" | tr '/:' '__').json" ;;
  erase) rm -f "{s}/$(echo "$input" | tr '/:' '__').json" ;;
esac
"#,
        s = store.display()
    );
    let helper = bin.join("docker-credential-file");
    std::fs::write(&helper, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn credential_helpers_store_and_answer_for_login_push_and_logout() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let out = env
        .berth()
        .args(["registry", "htpasswd", "alice", "--file"])
        .arg(&htpasswd)
        .write_stdin("wonderland\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let reg = Registry::start_with(
        "127.0.0.1",
        None,
        &["--htpasswd", htpasswd.to_str().unwrap()],
    );
    let path = credential_helper(dir.path());
    let auth = dir.path().join("auth.json");
    std::fs::write(&auth, r#"{"credsStore": "file"}"#).unwrap();
    let berth = |args: &[&str], stdin: &str| {
        env.berth()
            .env("PATH", &path)
            .env("BERTH_AUTH_FILE", &auth)
            .args(args)
            .write_stdin(stdin.to_string())
            .output()
            .unwrap()
    };
    // Without a TTY and without -u, docker login's refusal.
    let out = berth(&["login", &reg.addr], "");
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("Cannot perform an interactive login from a non TTY device"),
        "{}",
        stderr_of(&out)
    );
    // login stores through the helper; the file keeps an empty entry, as Docker's does.
    let out = berth(
        &["login", "-u", "alice", "--password-stdin", &reg.addr],
        "wonderland\n",
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("docker-credential-file"),
        "{}",
        stderr_of(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&auth).unwrap()).unwrap();
    assert_eq!(v["auths"][&reg.addr], serde_json::json!({}));
    let record = std::fs::read_to_string(
        dir.path()
            .join("creds")
            .join(format!("{}.json", reg.addr.replace(':', "_"))),
    )
    .unwrap();
    assert!(record.contains("\"Secret\":\"wonderland\""), "{record}");
    // Push authenticates with what the helper answers.
    let name = format!("{}/helped/bb:1", reg.addr);
    env.import_busybox(&name);
    let out = berth(&["push", "-q", &name], "");
    assert!(out.status.success(), "{}", stderr_of(&out));
    // Login again with no flags: the stored credentials are tried first (Docker 28).
    let out = berth(&["login", &reg.addr], "");
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("Authenticating with existing credentials... [Username: alice]"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // logout erases in the helper too; then push is refused with the way out.
    let out = berth(&["logout", &reg.addr], "");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = berth(&["push", &name], "");
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("unauthorized") && err.contains("berth login"),
        "{err}"
    );
    // A helper that is not installed is named, with the way out.
    std::fs::write(&auth, r#"{"credsStore": "missing"}"#).unwrap();
    let err = stderr_of(&berth(&["push", &name], ""));
    assert!(
        err.contains("docker-credential-missing") && err.contains("PATH"),
        "{err}"
    );
}

#[test]
fn search_finds_repositories_in_a_registry_without_a_search_api() {
    // Issue 18 item 12: a plain OCI registry is searched through its catalog.
    let reg = Registry::start("127.0.0.1", None);
    let env = Env::new();
    for repo in ["team/app", "team/web", "other/appliance"] {
        let name = format!("{}/{repo}:1", reg.addr);
        env.import_busybox(&name);
        env.ok(&["push", "-q", &name]);
    }
    let out = env.ok(&["search", &format!("{}/app", reg.addr)]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("DESCRIPTION"),
        "{out}"
    );
    assert!(
        lines[0].contains("STARS") && lines[0].contains("OFFICIAL"),
        "{out}"
    );
    let names = env.ok(&[
        "search",
        "--format",
        "{{.Name}} {{.StarCount}} [{{.IsOfficial}}]",
        &format!("{}/app", reg.addr),
    ]);
    assert_eq!(
        names,
        format!(
            "{a}/other/appliance 0 []\n{a}/team/app 0 []\n",
            a = reg.addr
        )
    );
    // What search prints is what pull takes.
    let b = Env::new();
    b.ok(&["pull", "-q", &format!("{}/team/app:1", reg.addr)]);
    let one = env.ok(&[
        "search",
        "--limit",
        "1",
        "--format",
        "{{.Name}}",
        &format!("{}/a", reg.addr),
    ]);
    assert_eq!(one.lines().count(), 1, "{one}");
    assert_eq!(
        env.ok(&[
            "search",
            "--filter",
            "stars=1",
            "--format",
            "{{.Name}}",
            &format!("{}/app", reg.addr)
        ]),
        ""
    );
    for (args, want) in [
        (vec!["--limit", "0"], "outside the range of [1, 100]"),
        (vec!["--filter", "color=red"], "invalid filter 'color'"),
        (
            vec!["--filter", "stars=many"],
            "invalid filter 'stars=many'",
        ),
    ] {
        let mut full = vec!["search"];
        full.extend(args);
        let term = format!("{}/app", reg.addr);
        full.push(&term);
        let err = stderr_of(&env.fails(&full));
        assert!(err.contains(want), "{full:?}: {err}");
    }
}

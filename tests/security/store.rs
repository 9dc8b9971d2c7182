//! Issue 15, items 10 and 11: hostile tars and a hostile registry must not exhaust berth.
//!
//! Item 10: a gzipped tar of a few hundred KB whose PAX extended header or GNU long name claims
//! 256 MiB is fed to every command that reads a tar (`load`, `import`, a build context on stdin,
//! `ADD` of a local tar, `cp` into a container). Each must fail with one short line naming the
//! oversized header, at a bounded peak RSS (the unpatched `tar` crate read the whole header into
//! memory first).
//!
//! Item 11: a tiny registry in a thread of the test (std TcpListener on 127.0.0.1, just enough
//! of the distribution API) serves an endless manifest, a layer longer than its descriptor and
//! a huge config, and asks for a token from a token server whose answer never ends; `berth pull`
//! must fail fast naming what the registry did wrong, stay small,
//! stop reading, leave nothing in the store, and `system check` stays clean.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Env;
use sha2::Digest as _;

const MIB: u64 = 1 << 20;
/// What the hostile headers claim: far over the 1 MiB limit, cheap to generate and compress.
const HUGE: u64 = 256 * MIB;
/// Peak RSS any of these commands may reach (a 256 MiB header read whole is well above it).
const RSS_LIMIT_KB: u64 = 200 * 1024;
/// Longest acceptable stderr (the unpatched reader printed the whole name).
const STDERR_LIMIT: usize = 4096;

#[derive(Clone, Copy, Debug)]
enum Hostile {
    /// A PAX `x` header of HUGE bytes before a regular file.
    Pax,
    /// A GNU `L` long name of HUGE bytes before a regular file.
    LongName,
}

/// Stream the hostile tar into `w` without holding it in memory: the header, HUGE bytes of
/// `a` in 1 MiB writes, then a one-byte file and the end-of-archive blocks.
fn write_hostile_tar(w: &mut dyn Write, kind: Hostile) -> std::io::Result<()> {
    write_tar_with(w, kind, HUGE)
}

/// A tar whose first member is preceded by a `kind` header of `size` bytes of `a`.
fn write_tar_with(w: &mut dyn Write, kind: Hostile, size: u64) -> std::io::Result<()> {
    let mut h = match kind {
        Hostile::Pax => {
            let mut h = tar::Header::new_ustar();
            h.set_path("PaxHeaders/f")?;
            h.set_entry_type(tar::EntryType::XHeader);
            h
        }
        Hostile::LongName => {
            let mut h = tar::Header::new_gnu();
            h.set_path("././@LongLink")?;
            h.set_entry_type(tar::EntryType::GNULongName);
            h
        }
    };
    h.set_mode(0o644);
    h.set_size(size);
    h.set_cksum();
    w.write_all(h.as_bytes())?;
    let chunk = vec![b'a'; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB);
        w.write_all(&chunk[..n as usize])?;
        left -= n;
    }
    w.write_all(&vec![0u8; ((512 - size % 512) % 512) as usize])?;
    let mut f = tar::Header::new_ustar();
    f.set_path("f")?;
    f.set_entry_type(tar::EntryType::Regular);
    f.set_mode(0o644);
    f.set_size(1);
    f.set_cksum();
    w.write_all(f.as_bytes())?;
    let mut data = [0u8; 512];
    data[0] = b'x';
    w.write_all(&data)?;
    w.write_all(&[0u8; 1024])
}

/// The hostile tar, gzipped, at `path` (a few hundred KB).
fn hostile_tar_gz(path: &Path, kind: Hostile) {
    let f = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::best());
    write_hostile_tar(&mut gz, kind).unwrap();
    gz.finish().unwrap();
    let size = std::fs::metadata(path).unwrap().len();
    assert!(size < 2 * MIB, "generated {size} bytes");
}

/// A berth run with its peak RSS in KiB (GNU time's %M; None when /usr/bin/time is missing).
struct Measured {
    out: Output,
    peak_kb: Option<u64>,
    took: Duration,
}

/// Writes a command's stdin (in a thread of its own).
type Feed = Box<dyn FnOnce(&mut dyn Write) + Send>;

/// Run `berth --root ROOT args…` under /usr/bin/time, feeding stdin from `feed` in a thread.
fn measured(env: &Env, args: &[&str], feed: Option<Feed>) -> Measured {
    let bin = assert_cmd::cargo::cargo_bin("berth");
    let time = Path::new("/usr/bin/time");
    let report = env.path("time.out");
    let _ = std::fs::remove_file(&report);
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.arg("-f").arg("%M").arg("-o").arg(&report).arg(&bin);
        c
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "/usr/bin/time (Debian's `time`) is required in CI"
        );
        eprintln!("/usr/bin/time is missing: peak RSS not measured");
        Command::new(&bin)
    };
    cmd.arg("--root")
        .arg(env.root())
        .args(args)
        .env_remove("BERTH_ROOT")
        .stdin(if feed.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let feeder = feed.map(|f| {
        let mut stdin = child.stdin.take().unwrap();
        // berth may stop reading early (that is the point): a broken pipe here is expected.
        std::thread::spawn(move || f(&mut stdin))
    });
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    if let Some(t) = feeder {
        let _ = t.join();
    }
    let peak_kb = std::fs::read_to_string(&report)
        .ok()
        .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()));
    Measured { out, peak_kb, took }
}

/// The command failed with one short line that contains every one of `needles`, without a
/// panic, within the RSS limit.
fn assert_refused(what: &str, m: &Measured, needles: &[&str]) {
    let err = String::from_utf8_lossy(&m.out.stderr);
    eprintln!(
        "{what}: exit {:?} in {:?}, peak RSS {:?} KiB, {} bytes of stderr: {:.300}",
        m.out.status.code(),
        m.took,
        m.peak_kb,
        m.out.stderr.len(),
        err.trim()
    );
    assert!(
        !m.out.status.success(),
        "{what}: unexpectedly succeeded: {}",
        String::from_utf8_lossy(&m.out.stdout)
    );
    assert!(!err.contains("panicked"), "{what}: panicked: {err:.2000}");
    if let Some(kb) = m.peak_kb {
        assert!(
            kb < RSS_LIMIT_KB,
            "{what}: peak RSS {} MiB (limit {} MiB)",
            kb / 1024,
            RSS_LIMIT_KB / 1024
        );
    }
    assert!(
        m.out.stderr.len() < STDERR_LIMIT,
        "{what}: stderr is {} bytes long",
        m.out.stderr.len()
    );
    for n in needles {
        assert!(err.contains(n), "{what}: `{n}` not in: {err}");
    }
}

fn header_needle(kind: Hostile) -> &'static str {
    match kind {
        Hostile::Pax => "PAX extended header of 268435456 bytes exceeds the 1 MiB limit",
        Hostile::LongName => "GNU long name of 268435456 bytes exceeds the 1 MiB limit",
    }
}

#[test]
fn oversized_tar_headers_are_refused_by_load_import_and_builds() {
    let env = Env::new();
    for kind in [Hostile::Pax, Hostile::LongName] {
        let tgz = env.path(&format!("{kind:?}.tar.gz"));
        hostile_tar_gz(&tgz, kind);
        let needle = header_needle(kind);
        let tgz_s = tgz.to_str().unwrap();

        let m = measured(&env, &["load", "-i", tgz_s], None);
        assert_refused(&format!("load ({kind:?})"), &m, &[needle]);

        let m = measured(&env, &["import", tgz_s, "hostile:import"], None);
        assert_refused(&format!("import ({kind:?})"), &m, &[needle]);

        // A build context given as a tar on stdin.
        let bytes = std::fs::read(&tgz).unwrap();
        let m = measured(
            &env,
            &["build", "-t", "hostile:ctx", "-"],
            Some(Box::new(move |w: &mut dyn Write| {
                let _ = w.write_all(&bytes);
            })),
        );
        assert_refused(&format!("build context on stdin ({kind:?})"), &m, &[needle]);

        // ADD of a local tar, which the builder unpacks into the image.
        let ctx = env.context(
            &format!("ctx-{kind:?}"),
            "FROM scratch\nADD hostile.tar.gz /x/\n",
            &[],
        );
        std::fs::copy(&tgz, ctx.join("hostile.tar.gz")).unwrap();
        let m = measured(
            &env,
            &["build", "-t", "hostile:add", ctx.to_str().unwrap()],
            None,
        );
        assert_refused(&format!("ADD of a local tar ({kind:?})"), &m, &[needle]);
    }
    let images = env.ok(&["images", "-q"]);
    assert!(images.trim().is_empty(), "images were made: {images}");
    env.check_store();
}

#[test]
fn oversized_tar_headers_are_refused_by_cp_into_a_container() {
    let env = Env::new();
    env.import_busybox("busybox:sec");
    env.ok(&["create", "--name", "cp-target", "busybox:sec", "true"]);
    for kind in [Hostile::Pax, Hostile::LongName] {
        // `cp -` reads a plain tar on stdin: stream it (256 MiB) straight into the pipe.
        let m = measured(
            &env,
            &["cp", "-", "cp-target:/tmp"],
            Some(Box::new(move |w: &mut dyn Write| {
                let _ = write_hostile_tar(w, kind);
            })),
        );
        assert_refused(
            &format!("cp into a container ({kind:?})"),
            &m,
            &[header_needle(kind)],
        );
    }
    env.ok(&["rm", "cp-target"]);
    env.check_store();
}

/// Writes to `inner` and hashes what was written (the uncompressed layer's diff ID).
struct Hashing<W: Write> {
    inner: W,
    hash: sha2::Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.hash.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// An OCI archive (gzipped outer tar) of one image `tag` whose only layer is the hostile tar,
/// gzipped: valid everywhere except inside the layer, so `load` accepts it and the header is
/// met when the layer is unpacked into a snapshot.
fn oci_archive_with_hostile_layer(path: &Path, kind: Hostile, tag: &str) {
    let mut gz = Hashing {
        inner: flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best()),
        hash: sha2::Sha256::new(),
    };
    write_hostile_tar(&mut gz, kind).unwrap();
    let diff_id = format!("sha256:{}", hex::encode(gz.hash.finalize()));
    let layer = gz.inner.finish().unwrap();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/f"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let desc = |mt: &str, b: &[u8]| serde_json::json!({"mediaType": mt, "digest": sha(b), "size": b.len()});
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", &config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", &layer)],
    }))
    .unwrap();
    let mut index_entry = desc("application/vnd.oci.image.manifest.v1+json", &manifest);
    index_entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [index_entry],
    }))
    .unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        f,
        flate2::Compression::fast(),
    ));
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &index);
    for blob in [&config, &manifest, &layer] {
        add(&format!("blobs/sha256/{}", &sha(blob)[7..]), blob);
    }
    b.into_inner().unwrap().finish().unwrap();
}

#[test]
fn oversized_tar_headers_in_a_layer_are_refused_when_it_is_unpacked() {
    let env = Env::new();
    for kind in [Hostile::Pax, Hostile::LongName] {
        let archive = env.path(&format!("layer-{kind:?}.tar.gz"));
        let tag = format!("hostile:layer-{kind:?}").to_lowercase();
        oci_archive_with_hostile_layer(&archive, kind, &tag);
        env.ok(&["load", "-i", archive.to_str().unwrap()]);
        // `create` unpacks the image's layers into snapshots (store extract).
        let m = measured(&env, &["create", &tag], None);
        assert_refused(
            &format!("unpacking a layer ({kind:?})"),
            &m,
            &[header_needle(kind)],
        );
        env.ok(&["rmi", &tag]);
    }
    env.check_store();
}

/// A name under the 1 MiB limit is read, but must not be printed whole in an error.
#[test]
fn long_names_under_the_limit_are_cut_short_in_errors() {
    let env = Env::new();
    let name_size = 600 * 1024;
    let tgz = env.path("long-name.tar.gz");
    {
        let f = std::fs::File::create(&tgz).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::best());
        write_tar_with(&mut gz, Hostile::LongName, name_size).unwrap();
        gz.finish().unwrap();
    }
    // `import` stores it as a layer; unpacking it refuses the name as too long for any path.
    env.ok(&["import", tgz.to_str().unwrap(), "long:name"]);
    let m = measured(&env, &["create", "long:name", "/f"], None);
    assert_refused(
        "unpacking a layer with a 600 KiB name",
        &m,
        &[
            "name is longer than 4096 bytes",
            &format!("({name_size} bytes)"),
        ],
    );
    env.import_busybox("busybox:sec");
    env.ok(&["create", "--name", "cp-long", "busybox:sec", "true"]);
    let m = measured(
        &env,
        &["cp", "-", "cp-long:/tmp"],
        Some(Box::new(move |w: &mut dyn Write| {
            let _ = write_tar_with(w, Hostile::LongName, name_size);
        })),
    );
    assert_refused("cp of a 600 KiB name into a container", &m, &[]);
    // A build context on stdin and `ADD` of a local tar, both with the long name inside.
    let long_tgz = std::fs::read(&tgz).unwrap();
    let ctx_tgz = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let dockerfile = b"FROM scratch\nCOPY f /\n";
        let mut h = tar::Header::new_ustar();
        h.set_path("Dockerfile").unwrap();
        h.set_mode(0o644);
        h.set_size(dockerfile.len() as u64);
        h.set_cksum();
        gz.write_all(h.as_bytes()).unwrap();
        let mut block = [0u8; 512];
        block[..dockerfile.len()].copy_from_slice(dockerfile);
        gz.write_all(&block).unwrap();
        write_tar_with(&mut gz, Hostile::LongName, name_size).unwrap();
        gz.finish().unwrap()
    };
    let m = measured(
        &env,
        &["build", "-t", "long:ctx", "-"],
        Some(Box::new(move |w: &mut dyn Write| {
            let _ = w.write_all(&ctx_tgz);
        })),
    );
    assert_refused(
        "build context with a 600 KiB name",
        &m,
        &[
            "name is longer than 4096 bytes",
            &format!("({name_size} bytes)"),
        ],
    );
    let ctx = env.context("long-add", "FROM scratch\nADD long.tar.gz /x/\n", &[]);
    std::fs::write(ctx.join("long.tar.gz"), long_tgz).unwrap();
    let m = measured(
        &env,
        &["build", "-t", "long:add", ctx.to_str().unwrap()],
        None,
    );
    assert_refused(
        "ADD of a tar with a 600 KiB name",
        &m,
        &[
            "name is longer than 4096 bytes",
            &format!("({name_size} bytes)"),
        ],
    );
    env.ok(&["rm", "cp-long"]);
    env.check_store();
}

// ---------------------------------------------------------------------------------------------
// Item 11: a hostile registry.

/// What the hostile registry does.
#[derive(Clone, Copy, Debug)]
enum Trick {
    /// The manifest never ends (capped at 512 MiB so an unfixed client cannot take the machine).
    EndlessManifest,
    /// The layer is listed at 1024 bytes; the blob GET sends 64 MiB, close-delimited.
    LongLayer,
    /// The config is listed at 300 MB.
    HugeConfig,
    /// The config is listed at 1000 bytes; the blob GET sends 64 MiB.
    LongConfig,
    /// `/v2/` asks for a bearer token from `/token`, whose answer never ends.
    EndlessToken,
}

const LAYER_SIZE: u64 = 1024;
const CONFIG_SIZE: u64 = 1000;
const ENDLESS_CAP: u64 = 512 * MIB;
const LONG_BLOB: u64 = 64 * MIB;

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

struct HostileRegistry {
    addr: String,
    /// Bytes of blob or manifest bodies the client accepted (successful writes).
    sent: Arc<AtomicU64>,
}

impl HostileRegistry {
    /// Listen on a free loopback port; every connection is served by a thread of its own and
    /// closed after one response. The threads end with the test process.
    fn start(trick: Trick) -> HostileRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, trick, &counter);
                });
            }
        });
        HostileRegistry { addr, sent }
    }
}

/// The layer is LAYER_SIZE bytes of `z`, which is what the blob GET sends first, so only the
/// bytes past the descriptor's size are wrong.
fn layer_digest() -> String {
    sha(&[b'z'; LAYER_SIZE as usize])
}

fn config_digest() -> String {
    sha(b"config")
}

fn manifest(trick: Trick) -> Vec<u8> {
    let config_size = match trick {
        Trick::HugeConfig => 300_000_000,
        _ => CONFIG_SIZE,
    };
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest(),
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest(),
            "size": LAYER_SIZE,
        }],
    }))
    .unwrap()
}

/// Answer one request on `conn`.
fn serve(conn: TcpStream, trick: Trick, sent: &AtomicU64) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut host = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("host")
        {
            host = v.trim().to_string();
        }
    }
    let mut w = conn;
    let head = |w: &mut TcpStream, status: &str, ctype: &str, len: Option<u64>| {
        let len = len
            .map(|n| format!("Content-Length: {n}\r\n"))
            .unwrap_or_default();
        write!(
            w,
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n{len}Docker-Distribution-API-Version: registry/2.0\r\nConnection: close\r\n\r\n"
        )
    };
    // A close-delimited body of `total` bytes of `fill`, counting what the client took.
    let endless = |w: &mut TcpStream, first: &[u8], fill: u8, total: u64| -> std::io::Result<()> {
        w.write_all(first)?;
        let chunk = vec![fill; 64 * 1024];
        let mut n = first.len() as u64;
        while n < total {
            w.write_all(&chunk)?;
            n += chunk.len() as u64;
            sent.store(n, Ordering::SeqCst);
        }
        Ok(())
    };
    let body = method != "HEAD";
    if let Trick::EndlessToken = trick {
        if path.starts_with("/token") {
            head(&mut w, "200 OK", "application/json", None)?;
            return endless(&mut w, b"{\"token\": \"", b'a', ENDLESS_CAP);
        }
        if path == "/v2/" || path == "/v2" {
            let msg = br#"{"errors":[{"code":"UNAUTHORIZED","message":"token needed"}]}"#;
            write!(
                w,
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nWWW-Authenticate: Bearer realm=\"http://{host}/token\",service=\"hostile\"\r\nConnection: close\r\n\r\n",
                msg.len()
            )?;
            return w.write_all(msg);
        }
    }
    if path == "/v2/" || path == "/v2" {
        head(&mut w, "200 OK", "application/json", Some(2))?;
        return w.write_all(b"{}");
    }
    if path.starts_with("/v2/x/manifests/") {
        let ctype = "application/vnd.oci.image.manifest.v1+json";
        if let Trick::EndlessManifest = trick {
            head(&mut w, "200 OK", ctype, None)?;
            if body {
                endless(
                    &mut w,
                    b"{\"schemaVersion\": 2, \"pad\": \"",
                    b'a',
                    ENDLESS_CAP,
                )?;
            }
            return Ok(());
        }
        let m = manifest(trick);
        head(&mut w, "200 OK", ctype, Some(m.len() as u64))?;
        return if body { w.write_all(&m) } else { Ok(()) };
    }
    if let Some(d) = path.strip_prefix("/v2/x/blobs/") {
        let ctype = "application/octet-stream";
        let long = matches!(
            (trick, d == layer_digest()),
            (Trick::LongLayer, true) | (Trick::LongConfig, false) | (Trick::HugeConfig, false)
        );
        if long {
            head(&mut w, "200 OK", ctype, None)?;
            return if body {
                endless(&mut w, b"", b'z', LONG_BLOB)
            } else {
                Ok(())
            };
        }
        // A blob of the listed size: the layer is right; the config's digest will not match,
        // but no test gets that far with it.
        let n = if d == layer_digest() {
            LAYER_SIZE
        } else {
            CONFIG_SIZE
        };
        head(&mut w, "200 OK", ctype, Some(n))?;
        return if body {
            w.write_all(&vec![b'z'; n as usize])
        } else {
            Ok(())
        };
    }
    let msg = br#"{"errors":[{"code":"NOT_FOUND","message":"not here"}]}"#;
    head(
        &mut w,
        "404 Not Found",
        "application/json",
        Some(msg.len() as u64),
    )?;
    w.write_all(msg)
}

/// Sizes of all regular files under `dir`.
fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            out.extend(files_under(&e.path()));
        } else if ft.is_file() {
            out.push((e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)));
        }
    }
    out
}

fn pull_from_hostile(trick: Trick, needles: &[&str]) {
    let env = Env::new();
    env.ok(&["images"]);
    let before: Vec<PathBuf> = files_under(&env.root())
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let reg = HostileRegistry::start(trick);
    let reference = format!("{}/x:y", reg.addr);
    let m = measured(&env, &["pull", &reference], None);
    assert_refused(&format!("pull ({trick:?})"), &m, needles);
    assert!(
        m.took < Duration::from_secs(30),
        "pull ({trick:?}) took {:?}",
        m.took
    );
    // The client hung up instead of reading the rest.
    let sent = reg.sent.load(Ordering::SeqCst);
    let cap = match trick {
        Trick::EndlessManifest | Trick::EndlessToken => ENDLESS_CAP,
        _ => LONG_BLOB,
    };
    assert!(
        sent < cap / 2,
        "pull ({trick:?}): the client read {sent} of the {cap} bytes the registry sent"
    );
    // Nothing of the download was left in the root, and the store is consistent.
    let left: Vec<(PathBuf, u64)> = files_under(&env.root())
        .into_iter()
        .filter(|(p, _)| !before.contains(p))
        .filter(|(p, n)| *n > 0 && !p.ends_with("remote.json") && !p.ends_with("lock"))
        // A layer that arrived whole and verified before the config failed may stay (gc
        // collects it); nothing else may.
        .filter(|(p, _)| !p.ends_with(layer_digest().trim_start_matches("sha256:")))
        .collect();
    assert!(
        left.is_empty(),
        "pull ({trick:?}) left files behind: {left:?}"
    );
    let images = env.ok(&["images", "-q"]);
    assert!(
        images.trim().is_empty(),
        "pull ({trick:?}) made an image: {images}"
    );
    env.check_store();
}

#[test]
fn an_endless_manifest_is_cut_off_at_4_mib() {
    pull_from_hostile(
        Trick::EndlessManifest,
        &[
            "registry 127.0.0.1:",
            "manifest of",
            "manifests are limited to 4 MiB",
        ],
    );
}

#[test]
fn a_layer_longer_than_its_descriptor_is_cut_off_at_its_size() {
    let d = layer_digest();
    pull_from_hostile(
        Trick::LongLayer,
        &[
            "registry 127.0.0.1:",
            &format!("sent more than the 1024 bytes the manifest lists for layer {d}"),
        ],
    );
}

#[test]
fn a_config_longer_than_its_descriptor_is_cut_off_at_its_size() {
    let d = config_digest();
    pull_from_hostile(
        Trick::LongConfig,
        &[
            "registry 127.0.0.1:",
            &format!("sent more than the 1000 bytes the manifest lists for config {d}"),
        ],
    );
}

#[test]
fn a_huge_config_is_refused_before_it_is_downloaded() {
    pull_from_hostile(
        Trick::HugeConfig,
        &[
            "image config of",
            "300000000 bytes",
            "image configs are limited to 16 MiB",
        ],
    );
}

#[test]
fn an_endless_token_response_is_cut_off_at_1_mib() {
    pull_from_hostile(
        Trick::EndlessToken,
        &[
            "token server http://127.0.0.1:",
            "/token of registry 127.0.0.1:",
            "token responses are limited to 1 MiB",
        ],
    );
}

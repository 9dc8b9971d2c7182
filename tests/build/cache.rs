//! The shared build cache: `--cache-to` exports a build's steps to `berth registry serve` or an
//! OCI layout directory; a fresh state root with only `--cache-from` finds every step CACHED and
//! ends with the same image (manifest digest and image ID), fetching only the layers it needs;
//! cache-mount contents travel with mode=max, incrementally; bad values and unreachable caches
//! are handled as buildx does.

use crate::common;
use crate::registry_client as client;

use std::fs;
use std::path::Path;

use client::Server;
use common::Env;
use serde_json::Value;

/// A registry with the busybox base pushed to it as `HOST/base/bb:1`; returns the base's name.
fn registry_with_base(a: &Env) -> (Server, String) {
    let server = Server::start(&a.path("registry"), &[]);
    let base = format!("127.0.0.1:{}/base/bb:1", server.port);
    a.import_busybox("bb:1");
    a.ok(&["tag", "bb:1", &base]);
    a.ok(&["push", &base]);
    (server, base)
}

fn context(env: &Env, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> String {
    env.context(name, dockerfile, files)
        .to_string_lossy()
        .into_owned()
}

/// `build --progress plain ARGS`: (stdout, stderr).
fn build(env: &Env, args: &[&str]) -> (String, String) {
    let mut full = vec!["build", "--progress", "plain"];
    full.extend_from_slice(args);
    let out = env.berth().args(&full).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "berth {full:?} failed: {err}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), err)
}

/// Steps reported CACHED and steps that ran.
fn cached_and_ran(progress: &str) -> (usize, usize) {
    let cached = progress.lines().filter(|l| l.ends_with(" CACHED")).count();
    let ran = progress
        .lines()
        .filter(|l| l.starts_with('#') && l.contains(" DONE "))
        .count();
    (cached, ran)
}

/// (manifest digest, image ID) of tag `name` in a root's index.
fn image_of(env: &Env, name: &str) -> (String, String) {
    let id = env
        .ok(&["inspect", "--format", "{{.Id}}", name])
        .trim()
        .to_string();
    let index: Value =
        serde_json::from_slice(&fs::read(env.root().join("images/index.json")).unwrap()).unwrap();
    let full = format!("docker.io/library/{name}");
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|r| r == full || r == name)
        })
        .unwrap_or_else(|| panic!("{name} not in index: {index}"));
    (entry["digest"].as_str().unwrap().to_string(), id)
}

/// Sizes of the blobs a root holds.
fn blob_sizes(env: &Env) -> Vec<u64> {
    fs::read_dir(env.root().join("images/blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .collect()
}

/// Files under a directory, recursively.
fn count_files(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

const SIMPLE: &str = "FROM {BASE}
ENV GREETING=hello
WORKDIR /app
COPY msg.txt ./
RUN echo \"$GREETING from $(cat msg.txt)\" > out.txt
CMD [\"cat\", \"/app/out.txt\"]
";

#[test]
fn a_fresh_root_with_only_cache_from_gets_every_step_cached_and_the_same_image() {
    let a = Env::new();
    let (server, base) = registry_with_base(&a);
    let df = SIMPLE.replace("{BASE}", &base);
    let ctx = context(&a, "ctx", &df, &[("msg.txt", "berth")]);
    let cache = format!("127.0.0.1:{}/cache/app:buildcache", server.port);
    let (_, err) = build(
        &a,
        &[
            "-t",
            "app:1",
            "--cache-to",
            &format!("type=registry,ref={cache}"),
            &ctx,
        ],
    );
    assert!(
        err.contains(&format!("exporting cache to {cache}")),
        "{err}"
    );
    let (digest_a, id_a) = image_of(&a, "app:1");

    let b = Env::new();
    b.ok(&["pull", &base]);
    let ctx_b = context(&b, "ctx", &df, &[("msg.txt", "berth")]);
    let (_, err) = build(&b, &["-t", "app:1", "--cache-from", &cache, &ctx_b]);
    let (cached, ran) = cached_and_ran(&err);
    assert_eq!(ran, 0, "nothing may run on the fresh root: {err}");
    assert_eq!(cached, 6, "every step CACHED: {err}");
    assert_eq!(image_of(&b, "app:1"), (digest_a, id_a));
    b.check_store();
    assert_eq!(
        b.ok(&["run", "--rm", "--network", "none", "app:1"]),
        "hello from berth\n"
    );
    // The imported steps are local cache entries now: a build without --cache-from hits.
    let (_, err) = build(&b, &["-t", "app:2", &ctx_b]);
    assert_eq!(cached_and_ran(&err).1, 0, "{err}");

    // A context file that differs on the importing side misses from its COPY on.
    fs::write(Path::new(&ctx_b).join("msg.txt"), "changed").unwrap();
    let c = Env::new();
    c.ok(&["pull", &base]);
    let (_, err) = build(&c, &["-t", "app:1", "--cache-from", &cache, &ctx_b]);
    let (cached, ran) = cached_and_ran(&err);
    assert_eq!((cached, ran), (3, 3), "{err}");
    assert_eq!(
        c.ok(&["run", "--rm", "--network", "none", "app:1"]),
        "hello from changed\n"
    );
}

const MULTI: &str = "FROM {BASE} AS builder
RUN mkdir /out && head -c 5000000 /dev/urandom > /out/big && echo built > /out/flag
FROM {BASE}
COPY --from=builder /out/flag /flag
CMD [\"cat\", \"/flag\"]
";

#[test]
fn multi_stage_hits_without_fetching_the_source_stage_in_both_modes() {
    let a = Env::new();
    let (server, base) = registry_with_base(&a);
    let df = MULTI.replace("{BASE}", &base);
    let ctx = context(&a, "ctx", &df, &[]);
    let max = format!("127.0.0.1:{}/cache/multi:max", server.port);
    let min = format!("127.0.0.1:{}/cache/multi:min", server.port);
    build(
        &a,
        &[
            "-t",
            "multi:1",
            "--cache-to",
            &format!("type=registry,ref={max},mode=max"),
            "--cache-to",
            &format!("type=registry,ref={min},mode=min"),
            &ctx,
        ],
    );
    let expected = image_of(&a, "multi:1");
    // The registry holds the 5 MB layer once (max exports it, min does not need it).
    for cache in [&max, &min] {
        let b = Env::new();
        b.ok(&["pull", &base]);
        let ctx_b = context(&b, "ctx", &df, &[]);
        let (_, err) = build(&b, &["-t", "multi:1", "--cache-from", cache, &ctx_b]);
        let (cached, ran) = cached_and_ran(&err);
        assert_eq!(ran, 0, "{cache}: {err}");
        assert_eq!(cached, 5, "{cache}: {err}");
        assert_eq!(image_of(&b, "multi:1"), expected, "{cache}");
        // Lazily: the builder stage's 5 MB layer never came down.
        assert!(
            !blob_sizes(&b).iter().any(|&n| n > 4_000_000),
            "{cache}: a big blob was fetched: {:?}",
            blob_sizes(&b)
        );
        assert_eq!(
            b.ok(&["run", "--rm", "--network", "none", "multi:1"]),
            "built\n"
        );
        b.check_store();
    }
    // A change in the final stage before the COPY --from needs the builder's root: with the
    // min cache (no builder layer) the builder stage is built again; with max its layer comes
    // from the cache.
    let df2 = df.replace("COPY --from", "RUN echo x > /x\nCOPY --from");
    for (cache, builder_runs) in [(&max, false), (&min, true)] {
        let b = Env::new();
        b.ok(&["pull", &base]);
        let ctx_b = context(&b, "ctx2", &df2, &[]);
        let (_, err) = build(&b, &["-t", "multi:2", "--cache-from", cache, &ctx_b]);
        let ran_builder = err
            .lines()
            .any(|l| l.contains("head -c 5000000") && l.starts_with('#'))
            && err.contains("building again");
        assert_eq!(ran_builder, builder_runs, "{cache}: {err}");
        assert_eq!(
            b.ok(&["run", "--rm", "--network", "none", "multi:2"]),
            "built\n"
        );
    }
}

#[test]
fn local_cache_round_trip_and_a_second_export_replaces_the_index() {
    let a = Env::new();
    a.import_busybox("bb:1");
    let df = SIMPLE.replace("{BASE}", "bb:1");
    let ctx = context(&a, "ctx", &df, &[("msg.txt", "one")]);
    let dir = a.path("cache-dir");
    let to = format!("type=local,dest={}", dir.display());
    build(&a, &["-t", "app:1", "--cache-to", &to, &ctx]);
    assert!(dir.join("oci-layout").is_file());
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    let expected = image_of(&a, "app:1");

    // The base travels by `save`/`load` here: the same image ID on the other root.
    let b = Env::new();
    let tar = a.path("bb.tar");
    a.ok(&["save", "-o", tar.to_str().unwrap(), "bb:1"]);
    b.ok(&["load", "-i", tar.to_str().unwrap()]);
    let from = format!("type=local,src={}", dir.display());
    let ctx_b = context(&b, "ctx", &df, &[("msg.txt", "one")]);
    let (_, err) = build(&b, &["-t", "app:1", "--cache-from", &from, &ctx_b]);
    assert_eq!(cached_and_ran(&err).1, 0, "{err}");
    assert_eq!(image_of(&b, "app:1"), expected);

    // A second export after a change: one index entry still, the blobs it reuses kept, the
    // replaced layer's gone.
    let before: std::collections::BTreeSet<_> = fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    fs::write(Path::new(&ctx).join("msg.txt"), "two").unwrap();
    build(&a, &["-t", "app:2", "--cache-to", &to, &ctx]);
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    let after: std::collections::BTreeSet<_> = fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let kept = before.intersection(&after).count();
    assert!(
        kept >= 2,
        "base and WORKDIR layers reused: {before:?} {after:?}"
    );
    assert!(
        before.difference(&after).count() >= 2,
        "old COPY/RUN layers swept"
    );
    let ctx_c = context(&b, "ctx2", &df, &[("msg.txt", "two")]);
    let (_, err) = build(&b, &["-t", "app:2", "--cache-from", &from, &ctx_c]);
    assert_eq!(cached_and_ran(&err).1, 0, "{err}");
    assert_eq!(image_of(&b, "app:2"), image_of(&a, "app:2"));
}

/// A damaged layer in an imported cache is never stored: its digest check fails while it is
/// inflated (download and inflation run at once), the build says so, runs the steps itself, and
/// the store stays sound.
#[test]
fn a_damaged_cached_layer_is_refused_and_the_steps_run() {
    let a = Env::new();
    a.import_busybox("bb:1");
    let df = "FROM bb:1\nRUN head -c 3000000 /dev/urandom > /big\nCMD [\"true\"]\n";
    let ctx = context(&a, "ctx", df, &[]);
    let dir = a.path("cache-dir");
    let to = format!("type=local,dest={}", dir.display());
    build(&a, &["-t", "app:1", "--cache-to", &to, &ctx]);
    // The RUN's 3 MB of random bytes is the biggest blob; flip a byte in its middle.
    let biggest = fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let mut bytes = fs::read(&biggest).unwrap();
    assert!(bytes.len() > 2_000_000, "{}", bytes.len());
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&biggest, bytes).unwrap();

    let b = Env::new();
    let tar = a.path("bb.tar");
    a.ok(&["save", "-o", tar.to_str().unwrap(), "bb:1"]);
    b.ok(&["load", "-i", tar.to_str().unwrap()]);
    let from = format!("type=local,src={}", dir.display());
    let ctx_b = context(&b, "ctx", df, &[]);
    let (_, err) = build(&b, &["-t", "app:1", "--cache-from", &from, &ctx_b]);
    assert!(err.contains("damaged"), "{err}");
    assert!(
        err.contains("#2 cache miss") && cached_and_ran(&err).1 >= 1,
        "the RUN ran: {err}"
    );
    b.check_store();
    let out = b.ok(&["run", "--rm", "app:1", "sh", "-c", "wc -c < /big"]);
    assert_eq!(out.trim(), "3000000");
}

const MOUNTS: &str = "FROM {BASE}
ARG V=1
RUN --mount=type=cache,target=/cache,id=pkgs if [ ! -f /cache/big ]; then head -c 3000000 /dev/urandom > /cache/big; fi; echo $V > /cache/v; if [ -f /cache/big ]; then echo warm; else echo cold; fi > /status; cat /cache/v >> /status
CMD [\"cat\", \"/status\"]
";

/// "N cache mounts in C chunks (U uploaded)" of an export line: (C, U).
fn chunks(err: &str) -> (usize, usize) {
    let line = err
        .lines()
        .find(|l| l.contains("cache mounts in"))
        .unwrap_or_else(|| panic!("no cache mount export: {err}"));
    let after = line.split("cache mounts in ").nth(1).unwrap();
    let total: usize = after.split_whitespace().next().unwrap().parse().unwrap();
    let up: usize = after
        .split('(')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (total, up)
}

#[test]
fn cache_mounts_travel_with_mode_max_and_a_second_export_uploads_only_changed_chunks() {
    let a = Env::new();
    let (server, base) = registry_with_base(&a);
    let df = MOUNTS.replace("{BASE}", &base);
    let ctx = context(&a, "ctx", &df, &[]);
    let cache = format!("127.0.0.1:{}/cache/mounts:c", server.port);
    let to = format!("type=registry,ref={cache},mode=max");
    let blobs = server.storage.join("blobs");
    let (_, err) = build(&a, &["-t", "m:1", "--cache-to", &to, &ctx]);
    let (total, up) = chunks(&err);
    assert!(total >= 4, "3 MB in chunks of 256 KiB on average: {err}");
    assert_eq!(up, total, "{err}");
    let stored = count_files(&blobs);

    // A small change in the cache mount: only the chunks around it go up.
    let (_, err) = build(
        &a,
        &["-t", "m:2", "--build-arg", "V=2", "--cache-to", &to, &ctx],
    );
    let (total2, up2) = chunks(&err);
    assert!(total2 >= total - 1, "{err}");
    assert!(
        up2 <= 2,
        "only the changed chunks are uploaded: {up2} of {total2}: {err}"
    );
    // New blobs in the registry: the changed chunks, the RUN layer, the config.
    let added = count_files(&blobs) - stored;
    assert!(added <= up2 + 3, "{added} blobs added for {up2} chunks");

    // A cold runner: the RUN misses (new arg) and finds the cache mount warm.
    let b = Env::new();
    b.ok(&["pull", &base]);
    let ctx_b = context(&b, "ctx", &df, &[]);
    let (_, err) = build(
        &b,
        &[
            "-t",
            "m:3",
            "--build-arg",
            "V=3",
            "--cache-from",
            &cache,
            &ctx_b,
        ],
    );
    assert!(err.contains("restored cache mount"), "{err}");
    assert_eq!(
        b.ok(&["run", "--rm", "--network", "none", "m:3"]),
        "warm\n3\n"
    );
    let big = |env: &Env| -> Vec<u8> {
        let dir = env.root().join("builder/cache-mounts");
        let d = fs::read_dir(&dir).unwrap().flatten().next().unwrap().path();
        fs::read(d.join("data/big")).unwrap()
    };
    assert_eq!(big(&a), big(&b), "the cache mount's content came across");
}

#[test]
fn bad_values_and_unreachable_caches() {
    let a = Env::new();
    a.import_busybox("bb:1");
    let df = SIMPLE.replace("{BASE}", "bb:1");
    let ctx = context(&a, "ctx", &df, &[("msg.txt", "x")]);
    for (flag, value, says) in [
        ("--cache-to", "type=registry", "type=registry needs ref="),
        (
            "--cache-to",
            "type=registry,ref=h:5000/a:b,colour=red",
            "accepted keys: type, ref",
        ),
        (
            "--cache-to",
            "type=local,dest=/tmp/x,mode=all",
            "mode must be min or max",
        ),
        ("--cache-to", "type=inline", "type=inline is not supported"),
        ("--cache-from", "type=s3,ref=x", "unsupported cache type"),
        (
            "--cache-from",
            "type=local,dest=/x",
            "accepted keys: type, ref (registry), src",
        ),
    ] {
        let out = a.fails(&["build", flag, value, &ctx]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
    // Nothing listens on port 1; a live registry without the ref; a corrupt local cache.
    let server = Server::start(&a.path("registry"), &[]);
    let missing = format!("127.0.0.1:{}/cache/none:c", server.port);
    let corrupt = a.path("corrupt");
    fs::create_dir_all(corrupt.join("blobs/sha256")).unwrap();
    let cfg = b"{not json";
    let cfg_d = client::digest_of(cfg);
    fs::write(corrupt.join("blobs/sha256").join(&cfg_d[7..]), cfg).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.berth.buildcache.config.v1+json","digest":"{cfg_d}","size":{}}},"layers":[]}}"#,
        cfg.len()
    );
    let m_d = client::digest_of(manifest.as_bytes());
    fs::write(corrupt.join("blobs/sha256").join(&m_d[7..]), &manifest).unwrap();
    fs::write(
        corrupt.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m_d}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"latest"}}}}]}}"#,
            manifest.len()
        ),
    )
    .unwrap();
    let (_, err) = build(
        &a,
        &[
            "-t",
            "ok:1",
            "--cache-from",
            "type=registry,ref=127.0.0.1:1/cache/x:c",
            "--cache-from",
            &missing,
            "--cache-from",
            &format!("type=local,src={}", corrupt.display()),
            &ctx,
        ],
    );
    assert!(
        err.contains("127.0.0.1:1/cache/x:c") && err.contains("WARNING: failed to import cache"),
        "{err}"
    );
    assert!(err.contains(&format!("{missing}: not found")), "{err}");
    assert!(err.contains("cache config is damaged"), "{err}");
    // An export that fails: the image is stored, the build exits non-zero.
    let out = a.fails(&[
        "build",
        "-t",
        "kept:1",
        "--cache-to",
        "type=registry,ref=127.0.0.1:1/cache/x:c",
        &ctx,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ERROR: failed to export cache to 127.0.0.1:1/cache/x:c"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(1));
    a.ok(&["inspect", "kept:1"]);
    // ignore-error=true: a warning, success.
    let (_, err) = build(
        &a,
        &[
            "-t",
            "kept:2",
            "--cache-to",
            "type=registry,ref=127.0.0.1:1/cache/x:c,ignore-error=true",
            &ctx,
        ],
    );
    assert!(err.contains("WARNING: failed to export cache"), "{err}");
}

/// `berth ARGS` with the credentials file `auth` (as `BERTH_AUTH_FILE`): (success, stderr).
fn with_auth(env: &Env, auth: &Path, args: &[&str], stdin: &str) -> (bool, String) {
    let out = env
        .berth()
        .env("BERTH_AUTH_FILE", auth)
        .args(args)
        .write_stdin(stdin)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A cache in a registry that wants credentials: export and import use what `berth login`
/// stored, as push and pull do; without them the import is a warning that says so, and the
/// build goes on.
#[test]
fn a_cache_in_a_registry_with_auth_uses_the_login() {
    let a = Env::new();
    let htpasswd = a.path("htpasswd");
    let (ok, err) = with_auth(
        &a,
        &a.path("unused.json"),
        &[
            "registry",
            "htpasswd",
            "builder",
            "--file",
            htpasswd.to_str().unwrap(),
        ],
        "cache-pw\n",
    );
    assert!(ok, "{err}");
    let server = Server::start(
        &a.path("registry"),
        &["--htpasswd", htpasswd.to_str().unwrap()],
    );
    let host = format!("127.0.0.1:{}", server.port);
    let auth = a.path("auth.json");
    let login = ["login", "-u", "builder", "--password-stdin", host.as_str()];
    let (ok, err) = with_auth(&a, &auth, &login, "cache-pw\n");
    assert!(ok, "{err}");
    let base = format!("{host}/base/bb:1");
    a.import_busybox("bb:1");
    a.ok(&["tag", "bb:1", &base]);
    let (ok, err) = with_auth(&a, &auth, &["push", &base], "");
    assert!(ok, "{err}");

    let df = SIMPLE.replace("{BASE}", &base);
    let ctx = context(&a, "ctx", &df, &[("msg.txt", "secret")]);
    let cache = format!("{host}/cache/app:c");
    let to = format!("type=registry,ref={cache},mode=max");
    let args = [
        "build",
        "--progress",
        "plain",
        "-t",
        "app:1",
        "--cache-to",
        &to,
        &ctx,
    ];
    let (ok, err) = with_auth(&a, &auth, &args, "");
    assert!(ok, "{err}");
    assert!(!err.contains("warning"), "{err}");
    let (digest_a, id_a) = image_of(&a, "app:1");

    let b = Env::new();
    let (ok, err) = with_auth(&b, &auth, &["pull", &base], "");
    assert!(ok, "{err}");
    let ctx_b = context(&b, "ctx", &df, &[("msg.txt", "secret")]);
    let from = [
        "build",
        "--progress",
        "plain",
        "-t",
        "app:1",
        "--cache-from",
        &cache,
    ];
    let (ok, err) = with_auth(&b, &auth, &[&from[..], &[ctx_b.as_str()]].concat(), "");
    assert!(ok, "{err}");
    assert_eq!(cached_and_ran(&err), (6, 0), "{err}");
    assert_eq!(image_of(&b, "app:1"), (digest_a, id_a));

    // Without the login: the registry refuses, the build says so and runs its steps.
    let c = Env::new();
    let (ok, err) = with_auth(&c, &auth, &["pull", &base], "");
    assert!(ok, "{err}");
    let ctx_c = context(&c, "ctx", &df, &[("msg.txt", "secret")]);
    let (ok, err) = with_auth(
        &c,
        &c.path("nobody.json"),
        &[&from[..], &[ctx_c.as_str()]].concat(),
        "",
    );
    assert!(ok, "{err}");
    assert!(
        err.contains(&cache) && (err.contains("unauthorized") || err.contains("401")),
        "the warning names the cache and the refusal: {err}"
    );
    assert_eq!(cached_and_ran(&err).1, 5, "{err}");
}

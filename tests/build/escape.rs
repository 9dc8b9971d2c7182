//! `berth build` never reaches the host through symlinks, as BuildKit resolves every path
//! inside its root: a COPY destination through an absolute symlink of the image
//! (`/var/run -> /run`) lands in the image's directory, a COPY --from source that is an
//! absolute symlink gives the target inside the stage, and a context symlink to a host file
//! outside the context is not followed out of it.

use crate::common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use common::Env;

fn context(env: &Env, name: &str, dockerfile: &str) -> PathBuf {
    env.context(name, dockerfile, &[])
}

/// `berth build -t TAG CTX`; (success, stderr).
fn build(env: &Env, tag: &str, ctx: &Path) -> (bool, String) {
    let out = env
        .berth()
        .args(["build", "-t", tag, ctx.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (out.status.success(), err)
}

fn build_ok(env: &Env, tag: &str, ctx: &Path) {
    let (ok, err) = build(env, tag, ctx);
    assert!(ok, "build {tag} failed: {err}");
}

/// Runs `f` on the mounted root of `image`, unmounted again even when `f` fails.
fn with_root<T>(env: &Env, image: &str, f: impl FnOnce(&Path) -> T) -> T {
    let root = PathBuf::from(env.ok(&["image", "mount", image]).trim());
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&root)));
    env.ok(&["image", "unmount", image]);
    out.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn inside(root: &Path, host: &Path) -> PathBuf {
    root.join(host.strip_prefix("/").unwrap())
}

#[test]
fn copy_through_an_absolute_symlink_of_the_image_stays_in_the_image() {
    let env = Env::new();
    env.import_busybox("bb:1");
    // A host directory the image's /var/run points at by its absolute path.
    let host = env.path("hostrun");
    fs::create_dir_all(&host).unwrap();
    fs::set_permissions(&host, fs::Permissions::from_mode(0o751)).unwrap();
    let base = context(
        &env,
        "base",
        &format!(
            "FROM bb:1\nRUN mkdir -p /var && rm -rf /var/run && ln -s {} /var/run\n",
            host.display()
        ),
    );
    build_ok(&env, "base:1", &base);

    let ctx = context(&env, "ctx", "FROM base:1\nCOPY rootfs/ /\nADD a.tar /\n");
    fs::create_dir_all(ctx.join("rootfs/var/run/sub")).unwrap();
    fs::write(ctx.join("rootfs/var/run/x"), "copied").unwrap();
    fs::write(ctx.join("rootfs/var/run/sub/y"), "y").unwrap();
    fs::set_permissions(
        ctx.join("rootfs/var/run"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let mut b = tar::Builder::new(fs::File::create(ctx.join("a.tar")).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "var/run/added/z", &b"tar"[..])
        .unwrap();
    b.into_inner().unwrap();
    build_ok(&env, "out:1", &ctx);

    // Nothing written to or chmodded on the host.
    assert_eq!(fs::read_dir(&host).unwrap().count(), 0);
    assert_eq!(
        fs::metadata(&host).unwrap().permissions().mode() & 0o7777,
        0o751
    );
    // The image's own directory got it all; the link is still a link.
    with_root(&env, "out:1", |root| {
        let run = inside(root, &host);
        assert_eq!(fs::read_to_string(run.join("x")).unwrap(), "copied");
        assert_eq!(fs::read_to_string(run.join("sub/y")).unwrap(), "y");
        assert_eq!(fs::read_to_string(run.join("added/z")).unwrap(), "tar");
        assert_eq!(fs::read_link(root.join("var/run")).unwrap(), host);
    });
}

#[test]
fn copy_from_a_stage_follows_its_symlinks_inside_the_stage() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let host = env.path("hostfiles");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("secret"), "HOST SECRET\n").unwrap();
    fs::write(host.join("only-on-host"), "HOST ONLY\n").unwrap();
    let h = host.display();
    let ctx = context(
        &env,
        "ctx",
        &format!(
            "FROM bb:1 AS s\n\
             RUN mkdir -p {h} && echo inroot > {h}/secret && ln -s {h}/secret /link \
             && ln -s {h} /dirlink\n\
             FROM bb:1\n\
             COPY --from=s /link /x\n\
             COPY --from=s /dirlink /d/\n\
             COPY --from=s /dirlink/secret /y\n"
        ),
    );
    build_ok(&env, "out:1", &ctx);
    with_root(&env, "out:1", |root| {
        assert_eq!(fs::read_to_string(root.join("x")).unwrap(), "inroot\n");
        assert_eq!(
            fs::read_to_string(root.join("d/secret")).unwrap(),
            "inroot\n"
        );
        assert_eq!(fs::read_to_string(root.join("y")).unwrap(), "inroot\n");
        assert!(!root.join("d/only-on-host").exists());
    });

    // A link to a file that only the host has names nothing in the stage.
    let bad = context(
        &env,
        "bad",
        &format!(
            "FROM bb:1 AS s\nRUN ln -s {h}/only-on-host /link\n\
             FROM bb:1\nCOPY --from=s /link /x\n"
        ),
    );
    let (ok, err) = build(&env, "bad:1", &bad);
    assert!(!ok, "{err}");
    assert!(!err.contains("HOST ONLY"), "{err}");
    env.fails(&["inspect", "bad:1"]);
}

#[test]
fn a_context_symlink_is_not_followed_out_of_the_context() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let host = env.path("outside");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("id_rsa"), "PRIVATE KEY\n").unwrap();
    let ctx = context(&env, "ctx", "FROM bb:1\nCOPY leak /leak\n");
    symlink(host.join("id_rsa"), ctx.join("leak")).unwrap();
    let (ok, err) = build(&env, "bad:1", &ctx);
    assert!(!ok, "{err}");
    env.fails(&["inspect", "bad:1"]);

    // Inside the context, an absolute link is taken from the context root, and a link
    // inside a copied directory is copied as a link.
    fs::write(
        ctx.join("Dockerfile"),
        "FROM bb:1\nCOPY abs /abs\nCOPY d/ /d/\nCOPY dirlink/ /e/\n",
    )
    .unwrap();
    fs::write(ctx.join("real.txt"), "in context\n").unwrap();
    symlink("/real.txt", ctx.join("abs")).unwrap();
    fs::create_dir(ctx.join("d")).unwrap();
    symlink(host.join("id_rsa"), ctx.join("d/key")).unwrap();
    symlink(&host, ctx.join("dirlink")).unwrap();
    // The context's own copy of the host path the link names.
    let mirror = inside(&ctx, &host);
    fs::create_dir_all(&mirror).unwrap();
    fs::write(mirror.join("id_rsa"), "context copy\n").unwrap();
    build_ok(&env, "ok:1", &ctx);
    with_root(&env, "ok:1", |root| {
        assert_eq!(
            fs::read_to_string(root.join("abs")).unwrap(),
            "in context\n"
        );
        assert_eq!(
            fs::read_link(root.join("d/key")).unwrap(),
            host.join("id_rsa")
        );
        assert!(
            fs::symlink_metadata(root.join("d/key"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(
            fs::read_to_string(root.join("e/id_rsa")).unwrap(),
            "context copy\n"
        );
    });
}

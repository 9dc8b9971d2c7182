//! Security holes in the command line and the host view of the state root (issue 15, items 1, 4,
//! 9, 13), each exploit scripted: flags after IMAGE or CONTAINER reaching berth instead of the
//! container, `exec` handing the caller's own descriptors to the container, stored images
//! reachable by other local users, and `-o` replacing a device node.

use crate::common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::Stdio;
use std::time::Duration;

use common::{Env, wait_for};

/// Docker's default capability set, as /proc/self/status shows it.
const DEFAULT_CAPS: &str = "00000000a80425fb";

fn env_with_image() -> Env {
    let env = Env::new();
    env.import_busybox("bb:1");
    env
}

fn cap_eff(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no CapEff in {out:?}"))
}

#[test]
fn flags_after_the_image_belong_to_the_container() {
    let env = env_with_image();
    let host_dir = env.path("host-secret");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("marker"), "host").unwrap();
    let bind = format!("{}:/h", host_dir.display());

    // Every word after IMAGE is an argument of the container's command.
    let out = env.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/echo",
        "bb:1",
        "--privileged",
        "--cap-add",
        "ALL",
        "-v",
        &bind,
        "/h",
    ]);
    assert_eq!(
        out.trim(),
        format!("--privileged --cap-add ALL -v {bind} /h")
    );

    // `run IMG sh -c … --privileged`: the container keeps Docker's default capabilities.
    let out = env.ok(&[
        "run",
        "--rm",
        "bb:1",
        "sh",
        "-c",
        "grep CapEff /proc/self/status",
        "--privileged",
    ]);
    assert_eq!(cap_eff(&out), DEFAULT_CAPS);

    // `run --entrypoint /bin/ls IMG -v /host:/h /h`: no host directory appears in the container.
    let out = env
        .berth()
        .args([
            "run",
            "--rm",
            "--entrypoint",
            "/bin/ls",
            "bb:1",
            "-v",
            &bind,
            "/h",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "ls /h found a directory");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("marker"));

    // `create` too.
    env.ok(&[
        "create",
        "--name",
        "c1",
        "--entrypoint",
        "/bin/echo",
        "bb:1",
        "--privileged",
        "--name",
        "other",
    ]);
    let out = env.ok(&["start", "-a", "c1"]);
    assert_eq!(out.trim(), "--privileged --name other");
    let out = env.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(out.trim(), "c1");
}

#[test]
fn flags_after_the_exec_container_belong_to_the_command() {
    let env = env_with_image();
    env.ok(&["run", "-d", "--name", "e1", "bb:1", "sleep", "600"]);
    let out = env.ok(&[
        "exec",
        "e1",
        "sh",
        "-c",
        "grep CapEff /proc/self/status",
        "--privileged",
    ]);
    assert_eq!(cap_eff(&out), DEFAULT_CAPS);
    let out = env.ok(&["exec", "e1", "echo", "-d", "-u", "nobody", "--privileged"]);
    assert_eq!(out.trim(), "-d -u nobody --privileged");
    // The usual flags before CONTAINER still work.
    let out = env.ok(&["exec", "-u", "nobody", "e1", "id", "-u"]);
    assert_eq!(out.trim(), "65534");
    // CONTAINER without a command: Docker's usage error.
    let out = env.fails(&["exec", "e1"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("requires at least 2 arguments"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn exec_ok(env: &Env, args: &[&str]) -> bool {
    env.berth_std()
        .arg("exec")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn exec_never_hands_the_callers_descriptors_to_the_container() {
    let env = env_with_image();
    env.ok(&["run", "-d", "--name", "x1", "bb:1", "sleep", "600"]);

    // stdout redirected to a file the container must neither see, truncate nor write later.
    let out_path = env.path("caller-output");
    std::fs::write(&out_path, "SECRET\n").unwrap();
    let out_file = std::fs::OpenOptions::new()
        .append(true)
        .open(&out_path)
        .unwrap();
    let script = "trap '' PIPE; \
        ls -l /proc/self/fd/1; \
        : > /proc/self/fd/1; \
        (while [ ! -e /tmp/go ]; do sleep 0.05; done; echo LATE; touch /tmp/done) & \
        echo first";
    let status = env
        .berth_std()
        .args(["exec", "x1", "sh", "-c", script])
        .stdout(out_file)
        .status()
        .unwrap();
    assert!(status.success());
    // exec has returned; now the process it left behind writes.
    assert!(exec_ok(&env, &["x1", "touch", "/tmp/go"]));
    wait_for("the background writer", Duration::from_secs(20), || {
        exec_ok(&env, &["x1", "ls", "/tmp/done"])
    });
    let got = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        got.starts_with("SECRET\n"),
        "the caller's file was truncated: {got:?}"
    );
    assert!(got.contains("first"), "{got:?}");
    assert!(
        !got.contains("LATE"),
        "written after exec returned: {got:?}"
    );
    assert!(
        !got.contains(&*out_path.to_string_lossy()),
        "the container saw the caller's file: {got:?}"
    );

    // -i: the container's stdin ends with exec; what the caller's stdin gets later is not read.
    let mut child = env
        .berth_std()
        .args([
            "exec",
            "-i",
            "x1",
            "sh",
            "-c",
            "(while [ ! -e /tmp/go2 ]; do sleep 0.05; done; cat > /tmp/stolen; touch /tmp/done2) \
             >/dev/null 2>&1 & exit 0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    assert!(child.wait().unwrap().success());
    use std::io::Write;
    // Berth has exited, so the write may find no reader at all: that is the point.
    let _ = stdin.write_all(b"TYPED AT THE PROMPT\n");
    drop(stdin);
    assert!(exec_ok(&env, &["x1", "touch", "/tmp/go2"]));
    wait_for("the background reader", Duration::from_secs(20), || {
        exec_ok(&env, &["x1", "ls", "/tmp/done2"])
    });
    let stolen = env.ok(&["exec", "x1", "cat", "/tmp/stolen"]);
    assert_eq!(
        stolen, "",
        "the container read the caller's stdin after exec"
    );

    // Pipes still carry input and output both ways.
    let mut child = env
        .berth_std()
        .args(["exec", "-i", "x1", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PIPED\n");
}

#[test]
fn stored_images_are_not_reachable_by_other_users() {
    let env = Env::new();
    // The test's own directory made traversable, as /var/lib is.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(env.root()).unwrap();
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env.import_busybox("bb:1");
    // Layers are unpacked on first use.
    env.ok(&["run", "--rm", "bb:1", "true"]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&env.root()), 0o700, "state root");
    assert_eq!(mode(&env.root().join("snapshots")), 0o700, "snapshots");
    let snap = std::fs::read_dir(env.root().join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("bin/busybox"))
        .find(|p| p.exists())
        .expect("an unpacked busybox");
    // Another local user cannot reach the stored binaries.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(&snap)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "uid 65534 read {}", snap.display());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));

    // An existing root left open is closed when berth opens it.
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env.ok(&["images", "-q"]);
    assert_eq!(mode(&env.root()), 0o700);
}

fn char_device(path: &std::path::Path) {
    let st = std::process::Command::new("mknod")
        .arg(path)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(st.success());
}

fn still_a_device(path: &std::path::Path) {
    let t = std::fs::symlink_metadata(path).unwrap().file_type();
    assert!(t.is_char_device(), "{} was replaced", path.display());
}

#[test]
fn output_files_never_replace_a_device() {
    let env = env_with_image();
    let dev = env.path("null");
    char_device(&dev);
    let dev_s = dev.to_str().unwrap();
    let link = env.path("link-to-null");
    std::os::unix::fs::symlink(&dev, &link).unwrap();

    let out = env.fails(&["save", "-o", dev_s, "bb:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must be a directory or a regular file: got a device"),
        "{err}"
    );
    still_a_device(&dev);
    env.fails(&["save", "-o", link.to_str().unwrap(), "bb:1"]);
    still_a_device(&dev);

    env.ok(&["create", "--name", "cx", "bb:1", "true"]);
    let out = env.fails(&["export", "-o", dev_s, "cx"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("got a device"));
    still_a_device(&dev);

    let out = env.fails(&["cp", "cx:/etc/passwd", dev_s]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must be a directory or a regular file"),
        "{err}"
    );
    still_a_device(&dev);

    let ctx = env.context("ctx", "FROM bb:1\n", &[]);
    let out = env.fails(&[
        "build",
        "-o",
        &format!("type=tar,dest={dev_s}"),
        ctx.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("got a device"));
    still_a_device(&dev);

    // A regular file is still replaced, atomically.
    let file = env.path("image.tar");
    std::fs::write(&file, "old").unwrap();
    env.ok(&["save", "-o", file.to_str().unwrap(), "bb:1"]);
    assert!(std::fs::metadata(&file).unwrap().len() > 1024);
}

//! `cp`, `export`, `diff`, `commit` and `top` end to end: what the user sees and what is stored.

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use common::{Env, have};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A stopped container that added, changed and deleted files, a directory replaced included.
fn changed_container(env: &Env) -> String {
    env.import_busybox("bb");
    env.ok(&[
        "run",
        "--name",
        "c1",
        "--network",
        "none",
        "bb",
        "sh",
        "-c",
        "echo more >> /etc/passwd; busybox rm /etc/group; busybox rm -r /home; busybox mkdir /home; \
         echo n > /home/new; busybox mkdir -p /data/sub; echo hi > /data/sub/f; busybox chmod 0750 /data/sub/f",
    ]);
    "c1".into()
}

#[test]
fn diff_lists_changes_as_docker() {
    let env = Env::new();
    let c = changed_container(&env);
    let out = env.ok(&["diff", &c]);
    assert_eq!(
        out,
        "A /data\nA /data/sub\nA /data/sub/f\nC /etc\nD /etc/group\nC /etc/passwd\nD /home\nA /home/new\n"
    );
    // Under `container` too; an unknown container is Docker's error.
    assert_eq!(env.ok(&["container", "diff", &c]), out);
    let e = env.fails(&["diff", "nope"]);
    assert!(
        stderr(&e).contains("No such container: nope"),
        "{}",
        stderr(&e)
    );
}

#[test]
fn commit_makes_an_image_with_the_changes() {
    let env = Env::new();
    let c = changed_container(&env);
    let id = env.ok(&[
        "commit",
        "-m",
        "my change",
        "-a",
        "me",
        "-c",
        "ENV X=1",
        "-c",
        "CMD [\"sh\"]",
        &c,
        "snap:v1",
    ]);
    assert!(
        id.trim().starts_with("sha256:") && id.trim().len() == 71,
        "{id}"
    );
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "snap:v1",
        "sh",
        "-c",
        "busybox tail -1 /etc/passwd; [ -e /etc/group ] || echo nogroup; ls /home; cat /data/sub/f; stat -c %a /data/sub/f; echo X=$X",
    ]);
    assert_eq!(out, "more\nnogroup\nnew\nhi\n750\nX=1\n");
    let cfg = env.ok(&[
        "inspect",
        "-f",
        "{{json .Config.Cmd}} {{.Author}}",
        "snap:v1",
    ]);
    assert_eq!(cfg.trim(), "[\"sh\"] me");
    let hist = env.ok(&["history", "--no-trunc", "snap:v1"]);
    assert!(hist.contains("my change"), "{hist}");
    // A bad --change and a bad name fail before anything is stored.
    let e = env.fails(&["commit", "-c", "BOGUS x", &c]);
    assert!(stderr(&e).contains("BOGUS"), "{}", stderr(&e));
    env.fails(&["commit", &c, "Bad:Name:x"]);
    env.check_store();
}

#[test]
fn committed_image_is_read_by_umoci_and_skopeo() {
    let env = Env::new();
    let c = changed_container(&env);
    env.ok(&["commit", &c, "snap:v1"]);
    if have("umoci") {
        let bundle = env.path("bundle");
        let st = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!(
                "{}:docker.io/library/snap:v1",
                env.root().join("images").display()
            ))
            .arg(&bundle)
            .status()
            .unwrap();
        assert!(st.success());
        let rootfs = bundle.join("rootfs");
        assert_eq!(
            std::fs::read_to_string(rootfs.join("data/sub/f")).unwrap(),
            "hi\n"
        );
        assert!(!rootfs.join("etc/group").exists());
        assert!(rootfs.join("home/new").exists());
        assert!(
            !rootfs.join("proc").exists(),
            "runtime mount points are not committed"
        );
    }
    if have("skopeo") {
        let tar = env.path("saved.tar");
        env.ok(&["save", "-o", tar.to_str().unwrap(), "snap:v1"]);
        let out = Command::new("skopeo")
            .args(["inspect"])
            .arg(format!("docker-archive:{}", tar.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn export_round_trips_through_import() {
    let env = Env::new();
    let c = changed_container(&env);
    let tar = env.path("export.tar");
    env.ok(&["export", "-o", tar.to_str().unwrap(), &c]);
    let mut names: Vec<String> = tar::Archive::new(std::fs::File::open(&tar).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"data/sub/f".to_string()), "{names:?}");
    assert!(names.contains(&"bin/busybox".to_string()));
    assert!(!names.iter().any(|n| n.starts_with("etc/group")));
    // Stdout gives the same bytes.
    let out = env.berth().args(["export", &c]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(&tar).unwrap());
    env.ok(&["import", tar.to_str().unwrap(), "exported"]);
    let listing = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "exported",
        "sh",
        "-c",
        "cat /data/sub/f /home/new; busybox tail -1 /etc/passwd",
    ]);
    assert_eq!(listing, "hi\nn\nmore\n");
}

#[test]
fn cp_out_of_a_stopped_container_follows_dockers_rules() {
    let env = Env::new();
    let c = changed_container(&env);
    let dest = env.path("out");
    std::fs::create_dir(&dest).unwrap();
    let d = dest.to_str().unwrap();
    // A directory into an existing directory: copied under its own name, modes kept.
    env.ok(&["cp", &format!("{c}:/data"), d]);
    let f = dest.join("data/sub/f");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "hi\n");
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
        0o750
    );
    // A file to a new name; a directory's contents (`/.`) to a new directory.
    env.ok(&["cp", &format!("{c}:/etc/passwd"), &format!("{d}/pw")]);
    assert!(
        std::fs::read_to_string(dest.join("pw"))
            .unwrap()
            .ends_with("more\n")
    );
    env.ok(&["cp", &format!("{c}:/data/."), &format!("{d}/contents")]);
    assert!(dest.join("contents/sub/f").exists());
    // The mtime comes from the container (busybox's files are from 2023).
    env.ok(&["cp", &format!("{c}:/bin/busybox"), d]);
    assert_eq!(
        std::fs::metadata(dest.join("busybox")).unwrap().mtime(),
        1_700_000_000
    );
    // A stream on stdout.
    let out = env
        .berth()
        .args(["cp", &format!("{c}:/home"), "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = tar::Archive::new(&out.stdout[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["home/", "home/new"]);
    // Errors.
    let e = env.fails(&["cp", &format!("{c}:/nope"), d]);
    assert_eq!(
        stderr(&e).trim(),
        "Error: Could not find the file /nope in container c1"
    );
    let e = env.fails(&["cp", &format!("{c}:/data"), &format!("{d}/pw")]);
    assert!(
        stderr(&e).contains("cannot copy directory"),
        "{}",
        stderr(&e)
    );
    let e = env.fails(&["cp", &format!("{c}:/etc/passwd"), &format!("{d}/missing/")]);
    assert!(stderr(&e).contains("no such directory"), "{}", stderr(&e));
    let e = env.fails(&["cp", "a", "b"]);
    assert!(stderr(&e).contains("must specify at least one container source"));
    let e = env.fails(&["cp", "c1:/a", "c1:/b"]);
    assert!(stderr(&e).contains("copying between containers is not supported"));
}

#[test]
fn cp_into_containers_running_and_stopped() {
    let env = Env::new();
    env.import_busybox("bb");
    let src = env.path("src");
    std::fs::create_dir_all(src.join("dir/inner")).unwrap();
    std::fs::write(src.join("dir/inner/x"), "x\n").unwrap();
    std::fs::write(src.join("file"), "f\n").unwrap();
    std::fs::set_permissions(src.join("file"), std::fs::Permissions::from_mode(0o741)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
    std::os::unix::fs::symlink("file", src.join("link2")).unwrap();
    env.ok(&[
        "create",
        "--name",
        "sc",
        "--network",
        "none",
        "bb",
        "sleep",
        "1000",
    ]);
    env.ok(&["cp", src.join("dir").to_str().unwrap(), "sc:/tmp/"]);
    env.ok(&["cp", src.join("file").to_str().unwrap(), "sc:/tmp/renamed"]);
    env.ok(&["cp", src.join("link").to_str().unwrap(), "sc:/tmp/"]);
    env.ok(&[
        "cp",
        "-L",
        src.join("link2").to_str().unwrap(),
        "sc:/tmp/followed",
    ]);
    env.ok(&["start", "sc"]);
    let out = env.ok(&[
        "exec", "sc", "sh", "-c",
        "cat /tmp/dir/inner/x /tmp/renamed; stat -c '%a %u' /tmp/renamed; busybox readlink /tmp/link; busybox head -1 /tmp/followed",
    ]);
    assert_eq!(out, "x\nf\n741 0\n/etc/passwd\nf\n");
    // Running: through the container's own mounts, and a symlink inside the container cannot
    // lead out of it.
    env.ok(&[
        "exec",
        "sc",
        "sh",
        "-c",
        "busybox ln -s / /tmp/escape; busybox ln -s /etc /tmp/etc2",
    ]);
    env.ok(&[
        "cp",
        src.join("file").to_str().unwrap(),
        "sc:/tmp/escape/tmp/",
    ]);
    assert!(env.ok(&["exec", "sc", "cat", "/tmp/file"]) == "f\n");
    let host = env.path("host-out");
    std::fs::create_dir(&host).unwrap();
    env.ok(&["cp", "sc:/tmp/etc2/passwd", host.to_str().unwrap()]);
    assert!(
        std::fs::read_to_string(host.join("passwd"))
            .unwrap()
            .starts_with("root:x:0:0")
    );
    // A tar on stdin goes into an existing directory only.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o600);
    h.set_uid(1000);
    h.set_gid(1000);
    b.append_data(&mut h, "streamed", &b"st\n"[..]).unwrap();
    let data = b.into_inner().unwrap();
    let out = env
        .berth()
        .args(["cp", "-a", "-", "sc:/tmp"])
        .write_stdin(data.clone())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        env.ok(&["exec", "sc", "stat", "-c", "%a %u", "/tmp/streamed"]),
        "600 1000\n"
    );
    let out = env
        .berth()
        .args(["cp", "-", "sc:/tmp/renamed"])
        .write_stdin(data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("must be a directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn top_shows_the_containers_processes() {
    let env = Env::new();
    env.import_busybox("bb");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "tc",
        "--network",
        "none",
        "bb",
        "sleep",
        "1000",
    ]);
    let out = env.ok(&["top", "tc"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("UID") && header.contains("PID") && header.ends_with("CMD"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0].ends_with("sleep 1000"), "{out}");
    // ps options pass through.
    let out = env.ok(&["top", "tc", "-o", "pid,comm"]);
    assert!(
        out.lines().nth(1).unwrap().trim_end().ends_with("sleep"),
        "{out}"
    );
    env.ok(&["stop", "-t", "0", "tc"]);
    let e = env.fails(&["top", "tc"]);
    assert!(stderr(&e).contains("is not running"), "{}", stderr(&e));
}

#[test]
fn cp_reaches_the_volumes_of_a_stopped_container() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let host = env.path("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("h.txt"), "fromhost\n").unwrap();
    let bind = format!("{}:/hd", host.display());
    env.ok(&[
        "run",
        "--name",
        "vc",
        "--network",
        "none",
        "-v",
        "vdata:/data",
        "-v",
        &bind,
        "bb:1",
        "sh",
        "-c",
        "echo invol > /data/a.txt",
    ]);
    // Out of a named volume and a bind mount of the stopped container.
    let out = env.path("a.txt");
    env.ok(&["cp", "vc:/data/a.txt", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "invol\n");
    let out2 = env.path("h.txt");
    env.ok(&["cp", "vc:/hd/h.txt", out2.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out2).unwrap(), "fromhost\n");
    // Into the volume: the next container using it sees the file.
    let new = env.path("new.txt");
    std::fs::write(&new, "new\n").unwrap();
    env.ok(&["cp", new.to_str().unwrap(), "vc:/data/new.txt"]);
    let got = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "vdata:/data",
        "bb:1",
        "cat",
        "/data/new.txt",
    ]);
    assert_eq!(got, "new\n");
    // The container's own layer did not get it.
    let id = env
        .ok(&["inspect", "-f", "{{.Id}}", "vc"])
        .trim()
        .to_string();
    assert!(
        !env.root()
            .join("containers")
            .join(id)
            .join("upper/data/new.txt")
            .exists()
    );
    env.ok(&["rm", "-v", "vc"]);
    env.ok(&["volume", "rm", "vdata"]);
    // A read-only mount is not written through.
    let ro = format!("{}:/ro:ro", host.display());
    env.ok(&[
        "create",
        "--name",
        "rc",
        "--network",
        "none",
        "-v",
        &ro,
        "bb:1",
        "true",
    ]);
    let err =
        String::from_utf8_lossy(&env.fails(&["cp", new.to_str().unwrap(), "rc:/ro/x"]).stderr)
            .into_owned();
    assert!(err.contains("read-only"), "{err}");
    assert!(!host.join("x").exists());
    env.ok(&["rm", "rc"]);
}

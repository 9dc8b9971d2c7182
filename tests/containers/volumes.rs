//! Volumes end to end: named volumes that outlive containers, bind mounts (ro and rw), anonymous
//! volumes from the image's VOLUME, Docker's copy-up into a fresh volume, tmpfs, --volumes-from,
//! `volume rm|prune`, and bad mount syntax that leaves nothing behind. Needs root (namespaces).

use crate::common;

use std::path::Path;

use common::Env;

/// busybox plus `/data/seed`, imported with `VOLUME /data`.
fn import_seeded(env: &Env, tag: &str) {
    let base = env.path("busybox.tar");
    common::busybox_rootfs_tar(&base);
    let out = env.path("seeded.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&out).unwrap());
    let mut a = tar::Archive::new(std::fs::File::open(&base).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        let path = e.path().unwrap().into_owned();
        if h.entry_type().is_symlink() {
            let target = e.link_name().unwrap().unwrap().into_owned();
            b.append_link(&mut h, &path, &target).unwrap();
        } else {
            b.append_data(&mut h, &path, &mut e).unwrap();
        }
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "data/", std::io::empty()).unwrap();
    let seed = b"seeded by the image\n";
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o640);
    h.set_uid(1000);
    h.set_size(seed.len() as u64);
    b.append_data(&mut h, "data/seed", &seed[..]).unwrap();
    b.finish().unwrap();
    drop(b);
    env.ok(&[
        "import",
        "--change",
        "VOLUME /data",
        out.to_str().unwrap(),
        tag,
    ]);
}

fn run(env: &Env, args: &[&str]) -> String {
    let mut v = vec!["run", "--network", "none"];
    v.extend_from_slice(args);
    env.ok(&v)
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

#[test]
fn named_volume_persists_across_containers_and_is_refused_removal_while_used() {
    let env = Env::new();
    env.import_busybox("bb");
    assert_eq!(env.ok(&["volume", "create", "keep"]).trim(), "keep");
    run(
        &env,
        &[
            "--name",
            "writer",
            "-v",
            "keep:/v",
            "bb",
            "sh",
            "-c",
            "echo kept > /v/f",
        ],
    );
    assert_eq!(
        run(&env, &["--rm", "-v", "keep:/v:ro", "bb", "cat", "/v/f"]),
        "kept\n"
    );
    // The data is in the volume's directory on the host.
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["volume", "inspect", "keep"])).unwrap();
    let mp = inspect[0]["Mountpoint"].as_str().unwrap().to_string();
    assert_eq!(inspect[0]["Driver"], "local");
    assert_eq!(inspect[0]["Scope"], "local");
    assert_eq!(
        std::fs::read_to_string(Path::new(&mp).join("f")).unwrap(),
        "kept\n"
    );
    // inspect of the container shows the mount as Docker does.
    let mounts: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "-f", "{{json .Mounts}}", "writer"])).unwrap();
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Name"], "keep");
    assert_eq!(mounts[0]["Destination"], "/v");
    assert_eq!(mounts[0]["Source"], mp.as_str());

    // In use by a stopped container: refused, with Docker's message.
    let id = env
        .ok(&["inspect", "-f", "{{.Id}}", "writer"])
        .trim()
        .to_string();
    let out = env.fails(&["volume", "rm", "keep"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("remove keep: volume is in use - [{id}]")),
        "{err}"
    );
    // rm -v never removes a named volume.
    env.ok(&["rm", "-v", "writer"]);
    assert_eq!(lines(&env.ok(&["volume", "ls", "-q"])), vec!["keep"]);
    assert_eq!(env.ok(&["volume", "rm", "keep"]).trim(), "keep");
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");
    let out = env.fails(&["volume", "inspect", "keep"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such volume: keep"));
    env.ok(&["volume", "rm", "-f", "keep"]);
}

#[test]
fn bind_mounts_ro_refuses_writes_and_rw_writes_reach_the_host() {
    let env = Env::new();
    env.import_busybox("bb");
    let host = env.path("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let h = host.to_str().unwrap();

    let out = env
        .berth()
        .args(["run", "--network", "none", "--name", "ro", "-v"])
        .arg(format!("{h}:/h:ro"))
        .args(["bb", "sh", "-c", "cat /h/in; echo x > /h/out"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from host\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!host.join("out").exists());

    run(
        &env,
        &[
            "--name",
            "rw",
            "-v",
            &format!("{h}:/h"),
            "bb",
            "sh",
            "-c",
            "echo written > /h/out",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(host.join("out")).unwrap(),
        "written\n"
    );

    // A missing host directory is created, as Docker does for -v.
    let made = env.path("made/by/run");
    run(
        &env,
        &[
            "--rm",
            "-v",
            &format!("{}:/m", made.display()),
            "bb",
            "touch",
            "/m/f",
        ],
    );
    assert!(made.join("f").exists());

    // --mount type=bind, readonly.
    let out = env
        .berth()
        .args(["run", "--rm", "--network", "none", "--mount"])
        .arg(format!("type=bind,source={h},target=/b,readonly"))
        .args(["bb", "touch", "/b/nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    let mounts: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "-f", "{{json .Mounts}}", "ro"])).unwrap();
    assert_eq!(mounts[0]["Type"], "bind");
    assert_eq!(mounts[0]["Source"], h);
    assert_eq!(mounts[0]["RW"], false);
    assert_eq!(mounts[0]["Mode"], "ro");
    env.ok(&["rm", "-f", "ro", "rw"]);
}

#[test]
fn image_volume_is_anonymous_seeded_and_removed_by_rm_v() {
    let env = Env::new();
    import_seeded(&env, "seeded");
    // The image's VOLUME becomes an anonymous volume, filled with the image's /data.
    assert_eq!(
        run(&env, &["--name", "first", "seeded", "cat", "/data/seed"]),
        "seeded by the image\n"
    );
    let vols = lines(&env.ok(&["volume", "ls", "-q"]));
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].len(), 64, "{vols:?}");
    let label = env.ok(&[
        "volume",
        "ls",
        "--filter",
        "label=com.docker.volume.anonymous",
        "-q",
    ]);
    assert_eq!(lines(&label), vols);
    // Not dangling while its container exists.
    assert_eq!(
        env.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]),
        ""
    );
    // rm without -v keeps it; then it is dangling.
    run(&env, &["--name", "second", "seeded", "true"]);
    assert_eq!(lines(&env.ok(&["volume", "ls", "-q"])).len(), 2);
    env.ok(&["rm", "second"]);
    let dangling = lines(&env.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]));
    assert_eq!(dangling.len(), 1);
    assert!(!dangling.contains(&vols[0]));
    // rm -v removes the anonymous one.
    env.ok(&["rm", "-v", "first"]);
    assert_eq!(lines(&env.ok(&["volume", "ls", "-q"])), dangling);
    // --rm removes its anonymous volumes too.
    run(&env, &["--rm", "seeded", "true"]);
    assert_eq!(lines(&env.ok(&["volume", "ls", "-q"])), dangling);
}

#[test]
fn fresh_named_volume_is_filled_from_the_image_once() {
    let env = Env::new();
    import_seeded(&env, "seeded");
    env.ok(&["volume", "create", "fresh"]);
    let out = run(
        &env,
        &[
            "--rm",
            "-v",
            "fresh:/data",
            "seeded",
            "sh",
            "-c",
            "cat /data/seed; ls -ln /data/seed; rm /data/seed; echo mine > /data/own",
        ],
    );
    assert!(out.starts_with("seeded by the image\n"), "{out}");
    assert!(
        out.contains("-rw-r-----    1 1000"),
        "owner and mode kept: {out}"
    );
    // Not empty any more: the image's content is not copied again.
    assert_eq!(
        run(
            &env,
            &["--rm", "-v", "fresh:/data", "seeded", "ls", "/data"]
        ),
        "own\n"
    );
    // nocopy leaves a new volume empty.
    assert_eq!(
        run(
            &env,
            &["--rm", "-v", "empty:/data:nocopy", "seeded", "ls", "/data"]
        ),
        ""
    );
    assert_eq!(
        run(
            &env,
            &[
                "--rm",
                "--mount",
                "type=volume,source=empty2,target=/data,volume-nocopy",
                "seeded",
                "ls",
                "/data"
            ]
        ),
        ""
    );
}

#[test]
fn tmpfs_mounts_are_tmpfs() {
    let env = Env::new();
    env.import_busybox("bb");
    let out = run(
        &env,
        &[
            "--rm",
            "--tmpfs",
            "/scratch:size=1m",
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=2m",
            "bb",
            "cat",
            "/proc/mounts",
        ],
    );
    let scratch = out.lines().find(|l| l.contains(" /scratch ")).expect(&out);
    assert!(scratch.starts_with("tmpfs /scratch tmpfs "), "{scratch}");
    assert!(
        scratch.contains("size=1024k") && scratch.contains("noexec"),
        "{scratch}"
    );
    let t = out.lines().find(|l| l.contains(" /t ")).expect(&out);
    assert!(
        t.starts_with("tmpfs /t tmpfs ") && t.contains("size=2048k"),
        "{t}"
    );
    // Nothing persists in a tmpfs.
    run(
        &env,
        &[
            "--name",
            "tm",
            "--tmpfs",
            "/scratch",
            "bb",
            "touch",
            "/scratch/f",
        ],
    );
    env.ok(&["start", "-a", "tm"]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");
    env.ok(&["rm", "-f", "tm"]);
}

#[test]
fn volumes_from_a_data_container() {
    let env = Env::new();
    env.import_busybox("bb");
    env.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "store",
        "-v",
        "shared:/shared",
        "-v",
        "/anon",
        "bb",
        "true",
    ]);
    run(
        &env,
        &[
            "--rm",
            "--volumes-from",
            "store",
            "bb",
            "sh",
            "-c",
            "echo one > /shared/f; echo two > /anon/f",
        ],
    );
    assert_eq!(
        run(
            &env,
            &[
                "--rm",
                "--volumes-from",
                "store",
                "bb",
                "cat",
                "/shared/f",
                "/anon/f"
            ]
        ),
        "one\ntwo\n"
    );
    let out = env
        .berth()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--volumes-from",
            "store:ro",
            "bb",
            "touch",
            "/anon/x",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    // A user's rm -v does not remove the anonymous volume the data container still has.
    run(
        &env,
        &["--name", "user", "--volumes-from", "store", "bb", "true"],
    );
    env.ok(&["rm", "-v", "user"]);
    assert_eq!(lines(&env.ok(&["volume", "ls", "-q"])).len(), 2);
    env.ok(&["rm", "-v", "store"]);
    assert_eq!(lines(&env.ok(&["volume", "ls", "-q"])), vec!["shared"]);
    env.fails(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--volumes-from",
        "nosuch",
        "bb",
        "true",
    ]);
}

#[test]
fn prune_removes_unused_anonymous_volumes_unless_all() {
    let env = Env::new();
    env.import_busybox("bb");
    env.ok(&["volume", "create", "named"]);
    env.ok(&["volume", "create", "--label", "keep=yes", "labelled"]);
    let anon = env.ok(&["volume", "create"]).trim().to_string();
    assert_eq!(anon.len(), 64);
    run(&env, &["--name", "user", "-v", "/used", "bb", "true"]);
    let used = env.ok(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", "user"]);
    let out = env.ok(&["volume", "prune", "-f"]);
    assert!(
        out.contains("Deleted Volumes:\n") && out.contains(&anon),
        "{out}"
    );
    assert!(out.contains("Total reclaimed space:"), "{out}");
    let left = lines(&env.ok(&["volume", "ls", "-q"]));
    assert!(left.contains(&"named".to_string()) && left.contains(&used.trim().to_string()));
    assert!(!left.contains(&anon));
    // -a removes unused named ones too, filters keep what they exclude.
    env.ok(&["volume", "prune", "-f", "-a", "--filter", "label!=keep=yes"]);
    let left = lines(&env.ok(&["volume", "ls", "-q"]));
    assert!(
        left.contains(&"labelled".to_string()) && !left.contains(&"named".to_string()),
        "{left:?}"
    );
    let json = env.ok(&["volume", "ls", "--format", "json", "--filter", "name=label"]);
    let row: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(row["Name"], "labelled");
    assert_eq!(row["Labels"], "keep=yes");
    env.ok(&["rm", "-f", "user"]);
}

#[test]
fn bad_mount_syntax_is_refused_and_leaves_nothing() {
    let env = Env::new();
    env.import_busybox("bb");
    for (args, msg) in [
        (
            vec!["-v", "data:relative"],
            "invalid volume specification: 'data:relative'",
        ),
        (vec!["-v", "/x:rw"], "invalid volume specification: '/x:rw'"),
        (vec!["-v", "v:/x:bogus"], "invalid mode: bogus"),
        (
            vec!["-v", "b@d:/x"],
            "includes invalid characters for a local volume name",
        ),
        (
            vec!["-v", "ok1:/a", "-v", "ok2:/a"],
            "Duplicate mount point: /a",
        ),
        (
            vec!["--mount", "type=bind,source=/tmp"],
            "invalid argument \"type=bind,source=/tmp\" for \"--mount\" flag: target is required",
        ),
        (
            vec!["--mount", "type=bind,source=/does/not/exist,target=/x"],
            "invalid mount config for type \"bind\": bind source path does not exist: /does/not/exist",
        ),
        (vec!["--tmpfs", "relative"], "mount path must be absolute"),
        (
            vec!["-v", "ok3:/a", "--volumes-from", "missing"],
            "No such container: missing",
        ),
    ] {
        let mut full = vec!["run", "--network", "none"];
        full.extend(&args);
        full.extend(["bb", "true"]);
        let out = env.fails(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "", "no volume left behind");
    let leftovers: Vec<_> = std::fs::read_dir(env.root().join("containers"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

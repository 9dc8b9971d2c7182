//! Issue 15, items 2 and 8, end to end.
//!
//! Item 2: a container must not change its own cgroup limits or reach the host's cgroups. The
//! exploit: from inside a container run with `-m 64m --pids-limit 50 --cpus 0.5`, write its own
//! `memory.limit_in_bytes`, `pids.max` and `cpu.cfs_quota_us`, the `name=systemd` hierarchy's
//! `notify_on_release`, and mkdir in every hierarchy. Every write is of the value already there,
//! so a run on a vulnerable build shows the hole without changing any limit or host setting.
//! Expected, as runc shows it: every hierarchy mounted read-only at the container's own cgroup,
//! every write and mkdir failing with EROFS. Where Debian's runc is installed, the same probe
//! runs in a runc container with Docker's defaults and the two views are compared.
//!
//! Item 8: every container creation, restarts included, happens in a single-threaded process
//! (the runtime clones). berth records the thread count of the process that calls the runtime
//! when BERTH_DEBUG_SANDBOX_THREADS names a file.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{Env, wait_for};
use serde_json::Value;

/// Prints the container's view of its cgroups, one normalised line per fact: its own cgroup
/// path (the memory controller's) is shown as `own`, so berth's and runc's views compare.
const PROBE: &str = r#"
B=busybox
own=$($B sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)
[ -n "$own" ] || own=$($B sed -n 's/^0:://p' /proc/self/cgroup)
$B grep -E ' - cgroup2? ' /proc/self/mountinfo | while read -r id parent mm root mp opts rest; do
  [ "$root" = "$own" ] && r=own || r="$root"
  echo "mount $mp root=$r ${opts%%,*}"
done
$B grep ' /sys/fs/cgroup ' /proc/self/mountinfo | while read -r id parent mm root mp opts rest; do
  echo "top $mp ${opts%%,*}"
done
while IFS=: read -r n ctl path; do
  [ "$path" = "$own" ] && p=own || p="$path"
  echo "cgroup ${ctl:-unified} $p"
done < /proc/self/cgroup
try() {
  if out=$("$@" 2>&1); then echo OK; else
    case "$out" in
      *"Read-only file system"*) echo EROFS ;;
      *"ermission denied"*) echo EACCES ;;
      *) echo "ERR $out" ;;
    esac
  fi
}
for f in memory/memory.limit_in_bytes pids/pids.max cpu/cpu.cfs_quota_us \
         systemd/notify_on_release memory.max pids.max cpu.max; do
  p=/sys/fs/cgroup/$f
  [ -f "$p" ] || continue
  echo "write $f $(try sh -c "v=\$($B cat $p) && echo \"\$v\" > $p")"
done
for d in /sys/fs/cgroup /sys/fs/cgroup/*; do
  [ -d "$d" ] || continue
  r=$(try $B mkdir "$d/berth-probe-$$")
  [ "$r" = OK ] && $B rmdir "$d/berth-probe-$$"
  echo "mkdir $d $r"
done
"#;

fn lines(out: &str) -> BTreeSet<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn host_is_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The cgroup v1 hierarchies the host mounts under /sys/fs/cgroup (directory names).
fn host_v1_hierarchies() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" - cgroup "))
        .filter_map(|l| l.split(' ').nth(4))
        .filter_map(|mp| mp.strip_prefix("/sys/fs/cgroup/"))
        .map(String::from)
        .collect()
}

fn berth_probe(env: &Env, extra: &[&str]) -> String {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["bb:1", "sh", "-c", PROBE]);
    let out = env.berth().args(&args).output().expect("run berth");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "berth {extra:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const LIMITS: [&str; 6] = ["-m", "64m", "--pids-limit", "50", "--cpus", "0.5"];

#[test]
fn a_container_cannot_write_its_cgroups() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let out = berth_probe(&env, &LIMITS);
    let seen = lines(&out);
    let mut expected = BTreeSet::new();
    if host_is_v2() {
        // A cgroup namespace: the container's own cgroup is the root it sees, read-only.
        expected.insert("mount /sys/fs/cgroup root=/ ro".to_string());
        expected.insert("top /sys/fs/cgroup ro".to_string());
        for f in ["memory.max", "pids.max", "cpu.max"] {
            expected.insert(format!("write {f} EROFS"));
        }
    } else {
        expected.insert("top /sys/fs/cgroup ro".to_string());
        for h in host_v1_hierarchies() {
            // Read-only, and at the container's own cgroup, never at the host's root.
            expected.insert(format!("mount /sys/fs/cgroup/{h} root=own ro"));
            expected.insert(format!("mkdir /sys/fs/cgroup/{h} EROFS"));
        }
        for f in [
            "memory/memory.limit_in_bytes",
            "pids/pids.max",
            "cpu/cpu.cfs_quota_us",
            "systemd/notify_on_release",
        ] {
            if Path::new("/sys/fs/cgroup").join(f).exists() {
                expected.insert(format!("write {f} EROFS"));
            }
        }
        // Its own cgroup in the hierarchies without controllers too, as with runc.
        if Path::new("/sys/fs/cgroup/systemd").is_dir() {
            expected.insert("cgroup name=systemd own".to_string());
        }
        if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
            expected.insert("cgroup unified own".to_string());
        }
    }
    expected.insert("mkdir /sys/fs/cgroup EROFS".to_string());
    let missing: Vec<_> = expected.difference(&seen).collect();
    assert!(missing.is_empty(), "missing {missing:#?} in:\n{out}");
    for l in &seen {
        assert!(
            !l.ends_with(" OK") && !l.contains(" rw") && !l.contains("ERR"),
            "{l:?} in:\n{out}"
        );
    }
    // Nothing was left in the host's hierarchies.
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        if let Ok(rd) = std::fs::read_dir(h.path()) {
            for e in rd.flatten() {
                let name = e.file_name();
                assert!(
                    !name.to_string_lossy().starts_with("berth-probe-"),
                    "{}",
                    e.path().display()
                );
            }
        }
    }
}

#[test]
fn privileged_containers_keep_writable_cgroups() {
    // Docker mounts cgroups read-write for --privileged; so does berth.
    let env = Env::new();
    env.import_busybox("bb:1");
    let out = berth_probe(&env, &["--privileged"]);
    let seen = lines(&out);
    if host_is_v2() {
        assert!(seen.contains("mount /sys/fs/cgroup root=/ rw"), "{out}");
    } else {
        assert!(seen.contains("top /sys/fs/cgroup rw"), "{out}");
        assert!(
            seen.contains("mount /sys/fs/cgroup/memory root=own rw"),
            "{out}"
        );
        assert!(
            seen.contains("write memory/memory.limit_in_bytes OK"),
            "{out}"
        );
    }
}

/// The probe run by berth as a cgroup v2 host would: in a private mount namespace whose
/// /sys/fs/cgroup is the unified hierarchy (a hybrid host mounts it at /sys/fs/cgroup/unified,
/// without controllers). berth then takes its v2 path: a cgroup namespace and a fresh cgroup2
/// mount. None when the host has no unified hierarchy to show.
fn berth_probe_as_v2(env: &Env, extra: &[&str]) -> Option<String> {
    if host_is_v2() {
        return None;
    }
    let unified = Path::new("/sys/fs/cgroup/unified");
    if !unified.join("cgroup.controllers").exists() {
        eprintln!("skipped: no cgroup2 hierarchy at {}", unified.display());
        return None;
    }
    let berth = assert_cmd::cargo::cargo_bin("berth");
    let root = env.root();
    let mut args: Vec<&str> = vec![
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        r#"mount --bind /sys/fs/cgroup/unified /sys/fs/cgroup && exec "$0" "$@""#,
    ];
    args.push(berth.to_str().unwrap());
    args.extend(["--root", root.to_str().unwrap()]);
    args.extend(["run", "--rm", "--network", "none"]);
    args.extend_from_slice(extra);
    let script = format!("{PROBE}{PROBE_V2}");
    args.extend(["bb:1", "sh", "-c", &script]);
    let out = std::process::Command::new("unshare")
        .args(&args)
        .env_remove("BERTH_ROOT")
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "berth {extra:?} as on cgroup v2 failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

/// The v2 part of the probe, and what only v2 has: the files that move processes and enable
/// controllers (cgroup.procs, cgroup.subtree_control) and the container's view of its own path.
const PROBE_V2: &str = r#"
echo "self $(busybox sed -n 's/^0:://p' /proc/self/cgroup)"
for f in cgroup.procs cgroup.subtree_control; do
  if out=$(sh -c "echo 0 > /sys/fs/cgroup/$f" 2>&1); then echo "write $f OK"; else
    case "$out" in *"Read-only file system"*) echo "write $f EROFS" ;; *) echo "write $f ERR $out" ;; esac
  fi
done
"#;

#[test]
fn on_cgroup_v2_a_container_sees_only_its_own_cgroup_read_only() {
    // Issue 15 item 2 on v2 (this VM is hybrid: the unified hierarchy is shown to berth as the
    // only one). Expected, as runc and Docker on v2: a cgroup namespace rooted at the container's
    // own cgroup, mounted read-only; no write or mkdir anywhere.
    let env = Env::new();
    env.import_busybox("bb:1");
    let Some(out) = berth_probe_as_v2(&env, &[]) else {
        return;
    };
    let seen = lines(&out);
    for want in [
        // `own` is the container's cgroup; `self /` says the namespace is rooted at it.
        "self /",
        "mount /sys/fs/cgroup root=own ro",
        "top /sys/fs/cgroup ro",
        "cgroup unified own",
        "mkdir /sys/fs/cgroup EROFS",
        "write cgroup.procs EROFS",
        "write cgroup.subtree_control EROFS",
    ] {
        assert!(seen.contains(want), "missing {want:?} in:\n{out}");
    }
    for l in &seen {
        assert!(!l.contains(" OK") && !l.contains("ERR"), "{l:?} in:\n{out}");
    }
    // --privileged keeps the namespace but mounts it read-write, as Docker does on v2.
    let out = berth_probe_as_v2(&env, &["--privileged"]).expect("probed once already");
    let seen = lines(&out);
    assert!(seen.contains("mount /sys/fs/cgroup root=own rw"), "{out}");
    assert!(seen.contains("self /"), "{out}");
}

/// The same probe in a runc container with Docker's defaults (capabilities, read-only cgroup
/// mount, the host's cgroup namespace on v1); its normalised lines.
fn runc_probe(dir: &Path, id: &str) -> String {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(common::busybox_path(), rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    let st = std::process::Command::new("runc")
        .arg("spec")
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success());
    let path = dir.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["process"]["terminal"] = false.into();
    c["process"]["args"] = serde_json::json!(["/bin/sh", "-c", PROBE]);
    let caps = serde_json::json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE"
    ]);
    c["process"]["capabilities"] = serde_json::json!({
        "bounding": caps, "effective": caps, "permitted": caps
    });
    c["root"]["readonly"] = false.into();
    c["linux"]["cgroupsPath"] = format!("/{id}").into();
    c["linux"]["resources"] = serde_json::json!({
        "memory": {"limit": 67108864},
        "pids": {"limit": 50},
        "cpu": {"quota": 50000, "period": 100000}
    });
    if host_is_v2() {
        // Docker's default on cgroup v2: a private cgroup namespace.
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "cgroup"}));
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(dir.join("state"))
        .args(["run", id])
        .current_dir(dir)
        .output()
        .unwrap();
    let _ = std::process::Command::new("runc")
        .arg("--root")
        .arg(dir.join("state"))
        .args(["delete", "-f", id])
        .output();
    assert!(
        out.status.success(),
        "runc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_cgroup_view_matches_runc() {
    if !common::have("runc") {
        return;
    }
    let env = Env::new();
    env.import_busybox("bb:1");
    let ours = berth_probe(&env, &LIMITS);
    let id = format!("berth-test-runc-{}", std::process::id());
    let theirs = runc_probe(&env.path("runc"), &id);
    // runc 1.1 leaves the tmpfs that holds the v1 hierarchies writable (a container can make
    // empty directories there, in its own mount namespace); berth mounts it read-only, as runc
    // 1.0 did.
    let comparable = |s: &str| {
        lines(s)
            .into_iter()
            .filter(|l| !l.starts_with("top ") && !l.starts_with("mkdir /sys/fs/cgroup "))
            .collect::<BTreeSet<_>>()
    };
    let (a, b) = (comparable(&ours), comparable(&theirs));
    assert_eq!(
        a,
        b,
        "berth (left) and runc (right) differ:\nonly berth: {:#?}\nonly runc: {:#?}",
        a.difference(&b).collect::<Vec<_>>(),
        b.difference(&a).collect::<Vec<_>>()
    );
}

/// The thread counts recorded for container `id`'s creations.
fn creations(log: &Path, id: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(id))
        .map(|t| t.trim().to_string())
        .collect()
}

#[test]
fn restarts_start_from_a_single_threaded_process() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let log = env.path("threads.log");
    let run = |args: &[&str]| {
        let out = env
            .berth()
            .env("BERTH_DEBUG_SANDBOX_THREADS", &log)
            .args(args)
            .output()
            .expect("run berth");
        assert!(
            out.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Pipes (stdio through descriptors passed to the starter), no network.
    let id = run(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--network",
        "none",
        "--restart",
        "on-failure:3",
        "bb:1",
        "sh",
        "-c",
        "echo started; exit 3",
    ]);
    wait_for("three restarts then exit", Duration::from_secs(30), || {
        let v = env.inspect_container("flaky");
        v["State"]["Status"] == "exited" && v["RestartCount"] == 3
    });
    let v = env.inspect_container("flaky");
    assert_eq!(v["State"]["ExitCode"], 3, "{v}");
    let logs = env.ok(&["logs", "flaky"]);
    assert_eq!(logs.matches("started").count(), 4, "{logs}");
    assert_eq!(creations(&log, &id), vec!["1"; 4], "{log:?}");

    // A terminal (the console socket goes to the starter) on the default bridge network (the
    // prestart hook plugs each new network namespace between create and start).
    let id = run(&[
        "run",
        "-d",
        "-t",
        "--name",
        "steady",
        "--restart",
        "always",
        "bb:1",
        "sh",
        "-c",
        "ip -4 addr show eth0 | grep -q inet && echo plugged",
    ]);
    // RestartCount counts the runs that ended.
    wait_for("three runs", Duration::from_secs(30), || {
        env.inspect_container("steady")["RestartCount"]
            .as_u64()
            .unwrap_or(0)
            >= 3
    });
    env.ok(&["stop", "-t", "1", "steady"]);
    wait_for("the stop", Duration::from_secs(30), || {
        env.inspect_container("steady")["State"]["Status"] == "exited"
    });
    let logs = env.ok(&["logs", "steady"]);
    let starts = creations(&log, &id);
    assert!(starts.len() >= 3, "{starts:?}");
    assert!(starts.iter().all(|t| t == "1"), "{starts:?}");
    assert!(logs.matches("plugged").count() >= 3, "{logs}");
}

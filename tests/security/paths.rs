//! Issue 15, paths inside a root and state a build leaves (items 6, 7 and 14), each exploit
//! scripted against the `berth` binary:
//! - a chain of 41 symlinks in a base image (or a build context) leads every in-root lookup of
//!   the builder (COPY destination, `RUN --mount` bind source and target, WORKDIR, a context
//!   source) to fail with "too many levels of symbolic links" instead of onto the host;
//! - copy-up into a volume another container shares, while that container swaps the entries
//!   being made for symlinks to a host file and a host directory, never changes the host file
//!   nor writes into the host directory;
//! - a build SIGKILLed with its whole process group leaves runtime state and cgroups that the
//!   next build removes, without touching a build still running.
//!
//! Needs root (namespaces, cgroups).

use crate::common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Env;

/// `berth build --progress plain -t TAG CTX`: (success, stderr).
fn build(env: &Env, tag: &str, ctx: &Path) -> (bool, String) {
    let out = env
        .berth()
        .args([
            "build",
            "--progress",
            "plain",
            "-t",
            tag,
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (out.status.success(), err)
}

/// Every file and directory below `dir`, as relative paths.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

const LOOP: &str = "too many levels of symbolic links";

#[test]
fn a_chain_of_41_symlinks_fails_with_eloop_and_never_reaches_the_host() {
    let env = Env::new();
    env.import_busybox("bb:1");
    // The host directory the chain's last link names: a subdirectory (so that a path through
    // it has somewhere to land) and a secret.
    let host = env.path("host");
    fs::create_dir_all(host.join("d")).unwrap();
    fs::write(host.join("secret"), "host-secret\n").unwrap();
    let before = listing(&host);
    // /l0 -> /l1 -> ... -> /l40 -> HOST: 41 links, one more than Linux follows.
    let chain = env.context(
        "chain",
        &format!(
            "FROM bb:1\nRUN i=0; while [ $i -lt 40 ]; do busybox ln -s /l$((i+1)) /l$i; \
             i=$((i+1)); done; busybox ln -s {} /l40\n",
            host.display()
        ),
        &[],
    );
    let (ok, err) = build(&env, "chain:1", &chain);
    assert!(ok, "building the base image: {err}");

    let cases: &[(&str, &str)] = &[
        ("copy-dest", "FROM chain:1\nCOPY f /l0/d/x\n"),
        ("copy-dir-dest", "FROM chain:1\nCOPY dir /l0/d/\n"),
        (
            "bind-source",
            "FROM chain:1\nRUN --mount=type=bind,from=chain:1,source=/l0,target=/m cat /m/secret\n",
        ),
        (
            "bind-target",
            "FROM chain:1\nRUN --mount=type=tmpfs,target=/l0/d/t true\n",
        ),
        ("workdir", "FROM chain:1\nWORKDIR /l0/d/w\nRUN true\n"),
    ];
    for (name, dockerfile) in cases {
        let ctx = env.context(
            name,
            dockerfile,
            &[("f", "from-context\n"), ("dir/y", "y\n")],
        );
        let (ok, err) = build(&env, &format!("{name}:1"), &ctx);
        assert!(!ok, "{name}: the build went through the chain: {err}");
        assert!(
            err.to_lowercase().contains(LOOP),
            "{name}: no ELOOP error: {err}"
        );
        assert!(!err.contains("host-secret"), "{name}: read the host: {err}");
        assert_eq!(listing(&host), before, "{name}: wrote on the host");
    }

    // The same chain in a build context: a source through it is not read from the host.
    let ctx = env.context("ctx-chain", "FROM bb:1\nCOPY l0/secret /s\n", &[]);
    for i in 0..40 {
        std::os::unix::fs::symlink(format!("/l{}", i + 1), ctx.join(format!("l{i}"))).unwrap();
    }
    std::os::unix::fs::symlink(&host, ctx.join("l40")).unwrap();
    let (ok, err) = build(&env, "ctx-chain:1", &ctx);
    assert!(!ok, "context chain: the build copied through it: {err}");
    assert!(
        err.to_lowercase().contains(LOOP),
        "context chain: no ELOOP error: {err}"
    );

    // One link fewer is followed as the kernel would: inside the root.
    let ok_ctx = env.context(
        "short",
        "FROM chain:1\nCOPY f /l1/d/x\nRUN cat /l1/d/x\n",
        &[("f", "inside\n")],
    );
    let (ok, err) = build(&env, "short:1", &ok_ctx);
    assert!(ok, "a 40-link chain: {err}");
    assert_eq!(listing(&host), before, "short chain: wrote on the host");
}

/// Removes the containers named on drop (a failed assertion must not leave a swapper running).
struct Containers<'a>(&'a Env, Vec<String>);

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        if !self.1.is_empty() {
            let _ = self.0.berth().args(["rm", "-f"]).args(&self.1).output();
        }
    }
}

#[test]
fn copy_up_while_another_container_swaps_entries_for_host_symlinks_stays_in_the_volume() {
    let env = Env::new();
    env.import_busybox("bb:1");
    // The image content copy-up puts into the volume: a big set-uid file (the copy takes a
    // while, between creating the file and setting its mode) and a directory of files.
    let img = env.context(
        "img",
        "FROM bb:1\nRUN mkdir -p /data/d && dd if=/dev/zero of=/data/f bs=1M count=16 \
         && busybox chmod 4777 /data/f && for i in $(seq 200); do echo x > /data/d/$i; done\n",
        &[],
    );
    let (ok, err) = build(&env, "img:1", &img);
    assert!(ok, "{err}");
    let host_file = env.path("host-file");
    fs::write(&host_file, "host\n").unwrap();
    fs::set_permissions(&host_file, fs::Permissions::from_mode(0o600)).unwrap();
    let host_dir = env.path("host-dir");
    fs::create_dir(&host_dir).unwrap();
    // The other container: whenever copy-up has made /vol/f or /vol/d, put a symlink to the
    // host file (directory) in its place; copy-up's later chmod / file creation by path would
    // follow it on the host.
    let swapper = format!(
        "while :; do \
           if [ -f /vol/f ] && [ ! -L /vol/f ]; then rm -f /vol/f; busybox ln -s {hf} /vol/f; fi; \
           if [ -d /vol/d ] && [ ! -L /vol/d ]; then busybox mv /vol/d /vol/d.$$; \
             busybox ln -s {hd} /vol/d; fi; \
         done",
        hf = host_file.display(),
        hd = host_dir.display()
    );
    let mut guard = Containers(&env, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..6 {
        if Instant::now() > deadline {
            break;
        }
        let vol = format!("v{i}:/vol");
        let a = format!("swapper{i}");
        env.ok(&[
            "run",
            "-d",
            "--name",
            &a,
            "--network",
            "none",
            "-v",
            &vol,
            "bb:1",
            "sh",
            "-c",
            &swapper,
        ]);
        guard.1.push(a.clone());
        // Copy-up at this container's start (the volume is empty); it may fail (what it was
        // making was swapped away), it must not write through the swap.
        let _ = env
            .berth()
            .args(["run", "--rm", "--network", "none", "-v"])
            .arg(format!("v{i}:/data"))
            .args(["img:1", "true"])
            .output()
            .unwrap();
        env.ok(&["rm", "-f", &a]);
        guard.1.pop();
        let mode = fs::metadata(&host_file).unwrap().mode() & 0o7777;
        assert_eq!(
            mode, 0o600,
            "round {i}: copy-up changed the host file's mode"
        );
        assert_eq!(fs::read_to_string(&host_file).unwrap(), "host\n");
        assert_eq!(
            listing(&host_dir),
            Vec::<String>::new(),
            "round {i}: copy-up wrote into the host directory"
        );
    }
}

/// A `berth build` of `ctx` in its own process group (so the test can kill the group), its
/// stderr read until the RUN printed "started".
struct Build {
    child: std::process::Child,
}

impl Build {
    fn start(env: &Env, tag: &str, ctx: &Path) -> Build {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("berth"));
        cmd.arg("--root")
            .arg(env.root())
            .args([
                "build",
                "--progress",
                "plain",
                "-t",
                tag,
                ctx.to_str().unwrap(),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().unwrap();
        let mut err = child.stderr.take().unwrap();
        let b = Build { child };
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("started") {
            let n = std::io::Read::read(&mut err, &mut buf).unwrap();
            assert!(
                n > 0,
                "build ended early: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
        // Keep draining so the build never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        b
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL to the whole process group (the build, its step's child, anything else in it).
    fn kill_group(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pid())])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Build {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill_group();
        }
    }
}

/// The step entries (runtime state, cgroups) a build with this PID owns.
fn steps_of(env: &Env, pid: u32) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let prefix = format!("build-{pid}-");
    let matching = |d: &Path| -> Vec<PathBuf> {
        fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    let runtime = matching(&env.root().join("runtime"));
    // Every mounted hierarchy: v1 controllers and named ones, a hybrid host's unified
    // hierarchy, or the v2 root itself.
    let mut cgroups = matching(Path::new("/sys/fs/cgroup/berth"));
    for c in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        cgroups.extend(matching(&c.path().join("berth")));
    }
    (runtime, cgroups)
}

/// The PIDs of this test's RUN processes (`sleep MARKER`).
fn sleepers(marker: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c == format!("sleep\0{marker}\0").as_bytes())
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn sleeper_alive(marker: &str) -> bool {
    !sleepers(marker).is_empty()
}

/// Should a failed assertion leave them: kills this test's RUN processes, then runs one more
/// build, whose sweep unmounts and removes what the killed builds left. Made before the
/// builds' guards, so it runs after they killed their process groups.
struct Cleanup<'a>(&'a Env, Vec<String>);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for m in &self.1 {
            for pid in sleepers(m) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        let ctx = self
            .0
            .context("cleanup", "FROM bb:1\nLABEL cleanup=1\n", &[]);
        let _ = self
            .0
            .berth()
            .args([
                "build",
                "-q",
                "-t",
                "cleanup:1",
                ctx.to_str().unwrap_or("."),
            ])
            .output();
    }
}

#[test]
fn a_build_killed_with_its_process_group_is_cleaned_up_by_the_next_build() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let marker = |n: u32| format!("{}.{n}", 3000 + std::process::id() % 1000);
    let (m_killed, m_running) = (marker(7), marker(8));
    let _cleanup = Cleanup(&env, vec![m_killed.clone(), m_running.clone()]);
    let ctx = |name: &str, m: &str| {
        env.context(
            name,
            // The quotes keep "started" out of the step's title.
            &format!("FROM bb:1\nRUN echo st''arted; exec sleep {m}\n"),
            &[],
        )
    };
    let mut killed = Build::start(&env, "killed:1", &ctx("killed", &m_killed));
    let running = Build::start(&env, "running:1", &ctx("running", &m_running));
    let (rt, cg) = steps_of(&env, killed.pid());
    assert!(
        !rt.is_empty() && !cg.is_empty(),
        "no step state: {rt:?} {cg:?}"
    );

    killed.kill_group();
    // What is left once the group is dead: nothing removes it on its own.
    let (rt, cg) = steps_of(&env, killed.pid());
    assert!(
        !rt.is_empty(),
        "expected the killed step's runtime state to be left"
    );

    // The next build sweeps what the dead build owned.
    let next = env.context("next", "FROM bb:1\nLABEL x=y\n", &[]);
    let (ok, err) = build(&env, "next:1", &next);
    assert!(ok, "{err}");
    common::wait_for(
        "the killed build's RUN to be ended by the sweep",
        Duration::from_secs(10),
        || !sleeper_alive(&m_killed),
    );
    let (rt_after, cg_after) = steps_of(&env, killed.pid());
    assert!(
        rt_after.is_empty(),
        "runtime state left: {rt_after:?} (was {rt:?})"
    );
    assert!(
        cg_after.is_empty(),
        "cgroups left: {cg_after:?} (was {cg:?})"
    );

    // The build still running kept its step.
    let (rt, cg) = steps_of(&env, running.pid());
    assert!(
        !rt.is_empty(),
        "the running build's runtime state was removed"
    );
    assert!(!cg.is_empty(), "the running build's cgroups were removed");
    assert!(
        sleeper_alive(&m_running),
        "the running build's RUN was killed"
    );
    // It stops cleanly (Ctrl-C) and takes its own state with it.
    let pid = running.pid();
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let mut running = running;
    let _ = running.child.wait();
    let (rt, cg) = steps_of(&env, pid);
    assert!(rt.is_empty() && cg.is_empty(), "{rt:?} {cg:?}");
}

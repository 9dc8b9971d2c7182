//! Issue 15, item 5: the default seccomp filter is Docker's allowlist, not a denylist.
//!
//! A small static C program (built with gcc at test time, bind-mounted into a busybox
//! container) calls the system calls that tell the two apart and prints one line per call:
//! "ok" or the errno's name. The same probe runs under runc with Docker's profile (through
//! podman, which converts Docker's profile format the way Docker does) for the reference table.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Env;

const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static void report(const char *name, long r) {
    printf("%s %s\n", name, r < 0 ? strerrorname_np(errno) : "ok");
}

int main(void) {
    char src[8] = "probe", dst[8];
    struct iovec l = {dst, sizeof dst}, r = {src, sizeof src};
    /* NULL params: EFAULT when the call is let through. */
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
    long fd = syscall(SYS_socket, 40 /* AF_VSOCK */, SOCK_STREAM, 0);
    if (fd < 0 && errno == EAFNOSUPPORT) fd = 0; /* let through; vsock is just not loaded */
    report("socket_vsock", fd);
    report("socket_unix", syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0));
    long old = syscall(SYS_personality, 0xffffffff);
    long p = syscall(SYS_personality, 0x0400000 /* READ_IMPLIES_EXEC */);
    if (p >= 0) syscall(SYS_personality, old);
    report("personality_read_implies_exec", p);
    report("personality_query", old);
    /* No such process: ESRCH when let through. */
    report("ptrace", syscall(SYS_ptrace, PTRACE_PEEKUSER, 999999, 0, 0));
    report("process_vm_readv", syscall(SYS_process_vm_readv, getpid(), &l, 1, &r, 1, 0));
    /* A NULL, zero-sized clone_args: EINVAL when let through. */
    report("clone3", syscall(SYS_clone3, NULL, 0));
    /* open_tree_attr (Linux 6.15), newer than the profile, and a number no kernel has yet. */
    report("new_syscall_467", syscall(467, -1, NULL, 0, NULL, 0));
    report("unknown_1000", syscall(1000));
    report("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
    long m = syscall(SYS_mkdir, "/tmp/probe-dir", 0755);
    if (m == 0) rmdir("/tmp/probe-dir");
    report("mkdir", m);
    return 0;
}
"#;

/// Build the probe; `None` (with a message) when gcc or a static libc is missing.
fn probe(env: &Env) -> Option<PathBuf> {
    if !common::have("gcc") {
        return None;
    }
    let src = env.path("probe.c");
    let bin = env.path("probe");
    std::fs::write(&src, PROBE_C).unwrap();
    let out = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap();
    if !out.status.success() {
        assert!(
            std::env::var_os("CI").is_none(),
            "gcc -static failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "skipping: gcc -static failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(bin)
}

fn table(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Run the probe in a berth container with `flags`; returns its table.
fn berth_probe(env: &Env, probe: &Path, flags: &[&str]) -> BTreeMap<String, String> {
    let mount = format!("{}:/probe:ro", probe.display());
    let mut args = vec!["run", "--rm", "--network", "none", "-v", &mount];
    args.extend(flags);
    args.extend(["bb:1", "/probe"]);
    table(&env.ok(&args))
}

fn env_with_image() -> Env {
    let env = Env::new();
    env.import_busybox("bb:1");
    env
}

/// Docker's default profile as berth ships it (Docker's format).
fn default_profile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("runner/src/seccomp/default.json")
}

/// The probe under runc with `seccomp`, through podman (rootfs = a directory holding only the
/// probe). `None` when podman or runc is missing.
fn runc_probe(env: &Env, probe: &Path, seccomp: &str) -> Option<BTreeMap<String, String>> {
    if !common::have("podman") || !common::have("runc") {
        return None;
    }
    let rootfs = env.path("runc-rootfs");
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    std::fs::copy(probe, rootfs.join("probe")).unwrap();
    // podman's default ulimits ask for more than this machine's hard limits (see bench/run.sh).
    let conf = env.path("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n",
    )
    .unwrap();
    let out = Command::new("podman")
        .env("CONTAINERS_CONF", &conf)
        .arg("--root")
        .arg(env.path("podman-root"))
        .arg("--runroot")
        .arg(env.path("podman-run"))
        .args(["--runtime", "runc", "run", "--rm", "--network", "none"])
        .args(["--security-opt", &format!("seccomp={seccomp}")])
        .arg("--rootfs")
        .arg(&rootfs)
        .arg("/probe")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman --runtime runc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = Command::new("umount")
        .arg(env.path("podman-root").join("overlay"))
        .stderr(std::process::Stdio::null())
        .status();
    Some(table(&String::from_utf8_lossy(&out.stdout)))
}

fn expect(t: &BTreeMap<String, String>, rows: &[(&str, &str)], what: &str) {
    for (k, v) in rows {
        assert_eq!(
            t.get(*k).map(String::as_str),
            Some(*v),
            "{what}: {k} (whole table: {t:?})"
        );
    }
}

#[test]
fn default_filter_is_dockers_allowlist() {
    let env = env_with_image();
    let Some(probe) = probe(&env) else { return };
    let berth = berth_probe(&env, &probe, &[]);
    expect(
        &berth,
        &[
            // Not in Docker's allowlist: refused with EPERM (not ENOSYS, not let through).
            ("io_uring_setup", "EPERM"),
            ("socket_vsock", "EPERM"),
            ("personality_read_implies_exec", "EPERM"),
            ("new_syscall_467", "EPERM"),
            ("unknown_1000", "EPERM"),
            ("keyctl", "EPERM"),
            // Docker allows these on kernels >= 4.8 without CAP_SYS_PTRACE.
            ("ptrace", "ESRCH"),
            ("process_vm_readv", "ok"),
            // Without CAP_SYS_ADMIN clone3 answers ENOSYS, so libc falls back to clone.
            ("clone3", "ENOSYS"),
            ("socket_unix", "ok"),
            ("personality_query", "ok"),
            ("mkdir", "ok"),
        ],
        "berth, default profile",
    );

    // CAP_SYS_ADMIN lifts the clone3 rule, as in Docker's profile.
    let admin = berth_probe(&env, &probe, &["--cap-add", "SYS_ADMIN"]);
    expect(&admin, &[("clone3", "EINVAL")], "berth --cap-add SYS_ADMIN");

    // The reference: runc with Docker's profile. Same answers, except that runc answers ENOSYS
    // (its own addition to the filter) for numbers above every system call libseccomp knows,
    // where berth's filter answers the profile's default, EPERM.
    let Some(runc) = runc_probe(&env, &probe, default_profile().to_str().unwrap()) else {
        eprintln!("skipping the runc comparison: podman or runc is not installed");
        return;
    };
    for (k, v) in &berth {
        let r = runc.get(k).map(String::as_str);
        let same = r == Some(v.as_str())
            || (k.starts_with("new_syscall") || k.starts_with("unknown"))
                && v == "EPERM"
                && r == Some("ENOSYS");
        assert!(
            same,
            "{k}: berth {v}, runc {r:?}\nberth {berth:?}\nrunc {runc:?}"
        );
    }
}

#[test]
fn custom_profile_file_is_dockers_format() {
    let env = env_with_image();
    let Some(probe) = probe(&env) else { return };
    let profile = env.path("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
              {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": null}],
  "syscalls": [
    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
    {"name": "keyctl", "action": "SCMP_ACT_ERRNO", "errnoRet": 95,
     "includes": {"minKernel": "3.0"}, "comment": "the old single-name form"},
    {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
     "excludes": {"caps": ["CAP_SYS_PTRACE"]}}
  ]
}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let t = berth_probe(&env, &probe, &["--security-opt", &opt]);
    expect(
        &t,
        &[
            ("mkdir", "EACCES"),
            ("keyctl", "EOPNOTSUPP"),
            ("ptrace", "EPERM"),
            // Everything else is let through: the profile's default action.
            ("io_uring_setup", "EFAULT"),
            ("clone3", "EINVAL"),
        ],
        "berth, custom profile",
    );
    // busybox's mkdir says so too.
    let out = env
        .berth()
        .args(["run", "--rm", "--network", "none", "--security-opt", &opt])
        .args(["bb:1", "mkdir", "/tmp/x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // excludes.caps: with CAP_SYS_PTRACE the ptrace rule is left out.
    let t = berth_probe(
        &env,
        &probe,
        &["--security-opt", &opt, "--cap-add", "SYS_PTRACE"],
    );
    expect(&t, &[("ptrace", "ESRCH")], "custom profile, CAP_SYS_PTRACE");

    // The profile is read at create: the container starts the same after the file is gone.
    let mount = format!("{}:/probe:ro", probe.display());
    env.ok(&[
        "create",
        "--name",
        "kept",
        "--network",
        "none",
        "-v",
        &mount,
        "--security-opt",
        &opt,
        "bb:1",
        "/probe",
    ]);
    std::fs::remove_file(&profile).unwrap();
    let t = table(&env.ok(&["start", "-a", "kept"]));
    expect(&t, &[("mkdir", "EACCES")], "profile stored at create");
    env.ok(&["rm", "kept"]);
}

#[test]
fn malformed_profiles_are_clear_errors() {
    let env = env_with_image();
    for (name, text, says) in [
        (
            "truncated.json",
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": ["#,
            "EOF",
        ),
        (
            "action.json",
            r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#,
            "SCMP_ACT_MAYBE",
        ),
        (
            "both.json",
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
            "both 'architectures' and 'archMap'",
        ),
        (
            "kernel.json",
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"],
                "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}}]}"#,
            "minKernel",
        ),
        (
            "nonames.json",
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}"#,
            "syscalls[0] names no system call",
        ),
    ] {
        let path = env.path(name);
        std::fs::write(&path, text).unwrap();
        let opt = format!("seccomp={}", path.display());
        let out = env.fails(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--security-opt",
            &opt,
            "bb:1",
            "true",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(name) && err.contains(says),
            "{name}: expected the file and {says:?} in: {err}"
        );
    }
    let out = env.fails(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=/nonexistent/profile.json",
        "bb:1",
        "true",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/profile.json"), "{err}");
    // An option that only starts like one is not taken for it.
    for bad in ["seccompx", "seccomp", "apparmorx=y"] {
        let out = env.fails(&["run", "--rm", "--security-opt", bad, "bb:1", "true"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a known option"), "{bad}: {err}");
    }
    // No container was left behind by the failed runs.
    assert_eq!(env.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn unconfined_and_privileged_run_without_a_filter() {
    let env = env_with_image();
    let Some(probe) = probe(&env) else { return };
    for flags in [
        &["--security-opt", "seccomp=unconfined"][..],
        &["--privileged"][..],
    ] {
        let t = berth_probe(&env, &probe, flags);
        expect(
            &t,
            &[
                ("io_uring_setup", "EFAULT"),
                ("personality_read_implies_exec", "ok"),
                ("keyctl", "EINVAL"),
                ("unknown_1000", "ENOSYS"),
            ],
            &format!("berth {flags:?}"),
        );
    }
}

#[test]
fn exec_runs_under_the_containers_filter() {
    let env = env_with_image();
    let profile = env.path("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    for (name, flags, filtered) in [
        ("dflt", &[][..], true),
        ("custom", &["--security-opt", opt.as_str()][..], true),
        (
            "unconf",
            &["--security-opt", "seccomp=unconfined"][..],
            false,
        ),
    ] {
        let mut args = vec!["run", "-d", "--name", name, "--network", "none"];
        args.extend(flags);
        args.extend(["bb:1", "sleep", "60"]);
        env.ok(&args);
        let status = env.ok(&["exec", name, "cat", "/proc/self/status"]);
        let mode = status
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(str::trim);
        // Docker (runc) filters exec'd processes with the container's profile.
        let want = if filtered { "2" } else { "0" };
        assert_eq!(mode, Some(want), "{name}: exec'd process's seccomp mode");
        if name == "custom" {
            // The profile's own rule, not only some filter.
            let out = env.fails(&["exec", name, "mkdir", "/tmp/y"]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("Permission denied"), "exec mkdir: {err}");
        }
        env.ok(&["rm", "-f", name]);
    }
}

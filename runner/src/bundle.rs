//! Image config + run options -> an OCI runtime bundle (`bundle/config.json`), with Docker's
//! defaults: its capability set, masked and read-only `/proc` paths, read-only `/sys`, its device
//! rules, the /etc/hostname, /etc/hosts and /etc/resolv.conf files it generates, and limits as
//! cgroup resources. The spec is assembled as JSON and parsed into `oci_spec::runtime::Spec`, the
//! one vocabulary every runtime (embedded or external) reads.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use crate::caps::capabilities;
// The seccomp profile (crate::seccomp, and its tests) still names these here.
#[cfg(test)]
pub(crate) use crate::caps::DEFAULT_CAPS;
pub(crate) use crate::caps::all_caps;
use crate::error::{Result, RunnerError};
use crate::state::ContainerRecord;
use crate::user::ResolvedUser;

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker refuses memory limits below this.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// How the container's network namespace is set up.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkMode {
    /// Its own, empty namespace (only `lo`).
    None,
    /// The host's namespace.
    Host,
    /// Another container's namespace, by path (`/proc/PID/ns/net`).
    Join(PathBuf),
}

/// A mount that run options add (volumes, binds, tmpfs), already resolved to host paths.
#[derive(Debug, Clone)]
pub struct ExtraMount {
    pub destination: String,
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Everything `spec` needs beyond the container record.
pub struct BundleInput<'a> {
    pub record: &'a ContainerRecord,
    pub rootfs: &'a Path,
    pub user: &'a ResolvedUser,
    pub args: Vec<String>,
    pub network: NetworkMode,
    pub cgroups_path: String,
    pub hostname_file: &'a Path,
    pub hosts_file: &'a Path,
    pub resolv_conf: &'a Path,
    pub mounts: Vec<ExtraMount>,
    pub cgroup_v2: bool,
    /// Initial terminal size (rows, cols) for `-t`.
    pub console_size: Option<(u16, u16)>,
}

fn bind(dest: &str, src: &Path, ro: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    if ro {
        options.push("ro");
    }
    json!({"destination": dest, "type": "bind", "source": src, "options": options})
}

/// Every device node under the host's /dev, as `--privileged` hands them to the container
/// (Docker's `HostDevices`: the pts, shm, mqueue and fd directories and the console left out).
fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fn walk(dir: &Path, out: &mut Vec<Value>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                if !matches!(
                    name.as_str(),
                    "pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev"
                ) {
                    walk(&path, out);
                }
                continue;
            }
            let kind = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            if path == Path::new("/dev/console") {
                continue;
            }
            let rdev = meta.rdev();
            out.push(json!({
                "path": path, "type": kind,
                "major": rustix::fs::major(rdev), "minor": rustix::fs::minor(rdev),
                "fileMode": meta.mode() & 0o7777, "uid": meta.uid(), "gid": meta.gid(),
            }));
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/dev"), &mut out);
    out
}

/// Build the runtime spec.
pub fn spec(input: &BundleInput) -> Result<Spec> {
    let rec = input.record;
    let hc = &rec.host_config;
    let cfg = &rec.config;
    let caps = capabilities(hc.privileged, &hc.cap_add, &hc.cap_drop)?;
    let no_new_privs = hc.security_opt.iter().any(|o| {
        matches!(
            o.as_str(),
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true"
        )
    });

    let mut args = input.args.clone();
    let mut init_mount = None;
    if hc.init == Some(true) {
        let bin = init_binary()?;
        args.splice(0..0, [INIT_DEST.to_string(), "--".to_string()]);
        init_mount = Some(bind(INIT_DEST, &bin, true));
    }
    let mut env = cfg.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", input.user.home));
    }
    let mut process = json!({
        "terminal": cfg.tty,
        "user": {
            "uid": input.user.uid,
            "gid": input.user.gid,
            "additionalGids": input.user.additional_gids,
        },
        "args": args,
        "env": env,
        "cwd": if cfg.working_dir.is_empty() { "/" } else { cfg.working_dir.as_str() },
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
        },
    });
    // Only when set: libcontainer loads seccomp after dropping capabilities whenever the field
    // is present, even as `false`, which then fails without no_new_privs.
    if no_new_privs {
        process["noNewPrivileges"] = json!(true);
    }
    if let (true, Some((rows, cols))) = (cfg.tty, input.console_size) {
        process["consoleSize"] = json!({"height": rows, "width": cols});
    }

    let sys_ro = !hc.privileged;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": if sys_ro { vec!["nosuid", "noexec", "nodev", "ro"] } else { vec!["nosuid", "noexec", "nodev"] }}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": if sys_ro { vec!["nosuid", "noexec", "nodev", "relatime", "ro"] } else { vec!["nosuid", "noexec", "nodev", "relatime"] }}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    ];
    let user_dests: Vec<&str> = input
        .mounts
        .iter()
        .map(|m| m.destination.as_str())
        .collect();
    for (dest, file) in [
        ("/etc/resolv.conf", input.resolv_conf),
        ("/etc/hostname", input.hostname_file),
        ("/etc/hosts", input.hosts_file),
    ] {
        if !user_dests.contains(&dest) {
            mounts.push(bind(dest, file, false));
        }
    }
    mounts.extend(init_mount);
    for m in &input.mounts {
        mounts.push(json!({
            "destination": m.destination, "type": m.kind, "source": m.source, "options": m.options,
        }));
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    match &input.network {
        NetworkMode::None => namespaces.push(json!({"type": "network"})),
        NetworkMode::Host => {}
        NetworkMode::Join(path) => namespaces.push(json!({"type": "network", "path": path})),
    }
    if input.cgroup_v2 {
        namespaces.push(json!({"type": "cgroup"}));
    }

    let devices = if hc.privileged {
        json!([{"allow": true, "access": "rwm"}])
    } else {
        let c = |major: i64, minor: Option<i64>| match minor {
            Some(minor) => {
                json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": "rwm"})
            }
            None => json!({"allow": true, "type": "c", "major": major, "access": "rwm"}),
        };
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "access": "m"},
            {"allow": true, "type": "b", "access": "m"},
            c(1, Some(3)), c(1, Some(5)), c(1, Some(7)), c(1, Some(8)), c(1, Some(9)),
            c(5, Some(0)), c(5, Some(1)), c(5, Some(2)), c(136, None), c(10, Some(200)),
        ])
    };
    let mut resources = json!({"devices": devices});
    if hc.memory > 0 {
        resources["memory"] = json!({"limit": hc.memory});
        if hc.memory_swap != 0 {
            resources["memory"]["swap"] = json!(hc.memory_swap);
        }
    }
    if hc.nano_cpus > 0 {
        let period: i64 = 100_000;
        resources["cpu"] =
            json!({"quota": hc.nano_cpus * period / 1_000_000_000, "period": period});
    }
    if let Some(p) = hc.pids_limit
        && p > 0
    {
        resources["pids"] = json!({"limit": p});
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": input.cgroups_path,
    });
    if hc.privileged {
        linux["devices"] = Value::Array(host_devices());
    }
    if let Some(seccomp) = crate::seccomp::profile(hc.privileged, &hc.security_opt, &caps)? {
        linux["seccomp"] = seccomp;
    }
    if !hc.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }

    let spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": input.rootfs, "readonly": hc.readonly_rootfs},
        "hostname": cfg.hostname,
        "mounts": mounts,
        "linux": linux,
    });
    serde_json::from_value(spec).map_err(|e| {
        RunnerError::invalid("runtime spec", format!("berth built an invalid spec: {e}"))
    })
}

/// Where an init binary goes inside the container, as Docker mounts it for `--init`.
pub const INIT_DEST: &str = "/sbin/docker-init";

/// The init binary for `--init`: `BERTH_INIT_PATH`, else a static `docker-init`, `tini-static`
/// or `catatonit` on PATH (Debian's `tini` package has tini-static). It runs inside the
/// container's filesystem, so it must not need the host's shared libraries.
pub fn init_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_INIT_PATH") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(RunnerError::invalid(
            "BERTH_INIT_PATH",
            format!("{} does not exist", p.display()),
        ));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["docker-init", "tini-static", "catatonit"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(RunnerError::Unsupported(
        "--init needs a static init binary: install Debian's tini package (tini-static) or set BERTH_INIT_PATH".into(),
    ))
}

/// Write `spec` as `DIR/config.json`.
pub fn write(dir: &Path, spec: &Spec) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| RunnerError::io("creating", dir, e))?;
    let bytes = serde_json::to_vec(spec)
        .map_err(|e| RunnerError::invalid("runtime spec", e.to_string()))?;
    crate::persist::write_regenerated(&dir.join("config.json"), &bytes)
}

/// The argv a container runs: Docker's ENTRYPOINT/CMD combination is already applied when the
/// record is made, so this is `Path` + `Args`.
pub fn argv(rec: &ContainerRecord) -> Vec<String> {
    std::iter::once(rec.path.clone())
        .chain(rec.args.iter().cloned())
        .collect()
}

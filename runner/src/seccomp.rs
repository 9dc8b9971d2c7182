//! The default seccomp filter: the system calls Docker's default profile keeps from containers,
//! as a deny list on top of an allow-by-default filter. Calls that Docker allows only with a
//! capability (mount with CAP_SYS_ADMIN, ptrace with CAP_SYS_PTRACE, …) are allowed when the
//! container has that capability, as in Docker. `--privileged` and `seccomp=unconfined` run
//! without a filter; `seccomp=PATH` loads an OCI/Docker-format profile from a file.

use std::path::Path;

use serde_json::{Value, json};

use crate::error::{Result, RunnerError};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Always refused (Docker's profile never allows these).
const DENY_ALWAYS: &[&str] = &[
    "add_key",
    "create_module",
    "get_kernel_syms",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "nfsservctl",
    "open_by_handle_at",
    "query_module",
    "request_key",
    "sysfs",
    "_sysctl",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// Refused unless the container holds the capability.
const DENY_WITHOUT_CAP: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "pivot_root",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "swapoff",
            "swapon",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_settime64",
            "adjtimex",
            "clock_adjtime",
            "clock_adjtime64",
        ],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
            "move_pages",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
];

/// clone(2) flags that make namespaces: refused without CAP_SYS_ADMIN, as Docker does.
const CLONE_NS_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

fn architectures() -> Vec<&'static str> {
    if cfg!(target_arch = "x86_64") {
        vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    } else if cfg!(target_arch = "aarch64") {
        vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    } else {
        Vec::new()
    }
}

/// The `linux.seccomp` section for a container, or `None` for no filter.
pub fn profile(
    privileged: bool,
    security_opt: &[String],
    caps: &[String],
) -> Result<Option<Value>> {
    let mut custom = None;
    for o in security_opt {
        if let Some(v) = o
            .strip_prefix("seccomp=")
            .or_else(|| o.strip_prefix("seccomp:"))
        {
            if v == "unconfined" {
                return Ok(None);
            }
            custom = Some(v.to_string());
        }
    }
    if let Some(path) = custom {
        return load(Path::new(&path)).map(Some);
    }
    if privileged {
        return Ok(None);
    }
    let has = |c: &str| caps.iter().any(|x| x == c);
    let mut deny: Vec<&str> = DENY_ALWAYS.to_vec();
    for (cap, calls) in DENY_WITHOUT_CAP {
        if !has(cap) {
            deny.extend_from_slice(calls);
        }
    }
    deny.sort_unstable();
    deny.dedup();
    let mut syscalls = vec![json!({"names": deny, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM})];
    if !has("CAP_SYS_ADMIN") {
        for flag in CLONE_NS_FLAGS {
            syscalls.push(json!({
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }));
        }
        // clone3 passes its flags in memory, which seccomp cannot read: answer ENOSYS so libc
        // falls back to clone, which the rules above can check (Docker's answer too).
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    }
    Ok(Some(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": syscalls,
    })))
}

/// A profile file: the OCI `linux.seccomp` shape (Docker's profile files are the same shape
/// plus fields the runtime ignores).
fn load(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunnerError::io("reading seccomp profile", path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        RunnerError::invalid(format!("seccomp profile {}", path.display()), e.to_string())
    })?;
    if v.get("defaultAction").is_none() {
        return Err(RunnerError::invalid(
            format!("seccomp profile {}", path.display()),
            "it has no defaultAction",
        ));
    }
    // Keep only what the OCI spec defines.
    let mut out = json!({"defaultAction": v["defaultAction"]});
    for k in ["defaultErrnoRet", "architectures", "flags", "syscalls"] {
        if let Some(x) = v.get(k) {
            out[k] = x.clone();
        }
    }
    if out.get("architectures").is_none()
        && let Some(maps) = v.get("archMap").and_then(Value::as_array)
    {
        let arches: Vec<Value> = maps
            .iter()
            .filter_map(|m| m.get("architecture").cloned())
            .collect();
        out["architectures"] = Value::Array(arches);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_follows_capabilities() {
        let caps: Vec<String> = crate::bundle::DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .collect();
        let p = profile(false, &[], &caps).unwrap().unwrap();
        let denied = p["syscalls"][0]["names"].as_array().unwrap();
        assert!(denied.iter().any(|n| n == "mount"));
        assert!(denied.iter().any(|n| n == "keyctl"));
        assert!(
            !denied.iter().any(|n| n == "chroot"),
            "CAP_SYS_CHROOT is a default capability"
        );
        let mut admin = caps.clone();
        admin.push("CAP_SYS_ADMIN".into());
        let p = profile(false, &[], &admin).unwrap().unwrap();
        assert!(
            !p["syscalls"][0]["names"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n == "mount")
        );
        assert_eq!(p["syscalls"].as_array().unwrap().len(), 1);
        assert!(profile(true, &[], &caps).unwrap().is_none());
        assert!(
            profile(false, &["seccomp=unconfined".into()], &caps)
                .unwrap()
                .is_none()
        );
        let p: oci_spec::runtime::LinuxSeccomp =
            serde_json::from_value(profile(false, &[], &caps).unwrap().unwrap()).unwrap();
        assert!(!p.syscalls().as_ref().unwrap().is_empty());
    }
}

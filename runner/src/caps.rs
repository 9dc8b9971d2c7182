//! Linux capabilities as Docker names and grants them: its default set (moby's
//! `oci/caps/defaults.go`), the names it accepts (`NET_ADMIN`, `cap_net_admin`, `ALL`), and a
//! container's set from `--privileged`, `--cap-add` and `--cap-drop`.

use oci_spec::runtime::Capability;
use serde_json::Value;

use crate::error::{Result, RunnerError};

/// Docker's default capabilities (moby's `oci/caps/defaults.go`).
pub const DEFAULT_CAPS: &[&str] = &[
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
    "CAP_AUDIT_WRITE",
];

/// Parse a capability name as Docker accepts it (`NET_ADMIN`, `cap_net_admin`, `ALL`).
pub fn parse_capability(name: &str) -> Result<String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value::<Capability>(Value::String(full.clone()))
        .map(|_| full)
        .map_err(|_| RunnerError::invalid("capability", format!("unknown capability: {name:?}")))
}

/// Capability names by number (linux/capability.h).
const CAP_NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Every capability this process can hand on: its bounding set (root may lack some, e.g. in a
/// VM or a container), restricted to the names oci-spec knows. `--privileged` and `--cap-add ALL`
/// mean these, as they do for Docker.
pub(crate) fn all_caps() -> Vec<String> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    CAP_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
        .map(|(_, n)| n.to_string())
        .filter(|n| serde_json::from_value::<Capability>(Value::String(n.clone())).is_ok())
        .collect()
}

/// The effective capability set: Docker's defaults (or all, when privileged), plus `--cap-add`,
/// minus `--cap-drop` (`ALL` on either side as Docker treats it).
pub fn capabilities(privileged: bool, add: &[String], drop: &[String]) -> Result<Vec<String>> {
    let add: Vec<String> = add
        .iter()
        .map(|c| parse_capability(c))
        .collect::<Result<_>>()?;
    let drop: Vec<String> = drop
        .iter()
        .map(|c| parse_capability(c))
        .collect::<Result<_>>()?;
    if privileged || add.iter().any(|c| c == "ALL") {
        let all = all_caps();
        if privileged {
            return Ok(all);
        }
        return Ok(all.into_iter().filter(|c| !drop.contains(c)).collect());
    }
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for c in add {
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_match_docker_and_add_drop_apply() {
        let c = capabilities(false, &[], &[]).unwrap();
        assert_eq!(c.len(), 14);
        let c = capabilities(false, &["net_admin".into()], &["CHOWN".into()]).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        let c = capabilities(false, &["NET_RAW".into()], &["ALL".into()]).unwrap();
        assert_eq!(c, vec!["CAP_NET_RAW".to_string()]);
        assert!(
            capabilities(true, &[], &[])
                .unwrap()
                .contains(&"CAP_SYS_ADMIN".to_string())
        );
        let err = capabilities(false, &["BOGUS".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("BOGUS"), "{err}");
    }
}

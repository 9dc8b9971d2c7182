//! Docker's seccomp profile format and its conversion to the OCI `linux.seccomp` section.
//!
//! Docker's format is the OCI one plus rules that apply only under conditions: the container's
//! capabilities (`includes.caps` / `excludes.caps`, checked against the bounding set), the host's
//! kernel version (`minKernel`, "<kernel>.<major>", compared with uname's release) and the native
//! architecture (`arches`, in Go's names: amd64, arm64, …). `archMap` lists the native seccomp
//! architecture with its sub-architectures; only the native entry is kept. The conversion follows
//! moby's `profiles/seccomp` so one profile file gives the same filter under berth and Docker.

use oci_spec::runtime::{Arch, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag};
use serde::Deserialize;
use serde_json::{Value, json};

/// A profile in Docker's JSON format. Unknown fields are ignored, as Docker does.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    #[serde(default)]
    default_action: Option<LinuxSeccompAction>,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<Rule>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    names: Option<Vec<String>>,
    /// The single-name form older profiles use.
    #[serde(default)]
    name: Option<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// A kernel version as Docker compares them: only "<kernel>.<major>" counts, so 6.8.0-45-generic
/// and 6.8 are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion(pub u64, pub u64);

impl KernelVersion {
    /// The running kernel's version, from uname's release ("6.1.0-18-amd64").
    pub fn running() -> Result<KernelVersion, String> {
        let uts = rustix::system::uname();
        let release = uts.release().to_string_lossy().into_owned();
        Self::from_release(&release)
            .ok_or_else(|| format!("cannot read the kernel version from uname's {release:?}"))
    }

    fn from_release(release: &str) -> Option<KernelVersion> {
        let mut parts = release.splitn(3, '.');
        let kernel = parts.next()?.parse().ok()?;
        let major: String = parts
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        Some(KernelVersion(kernel, major.parse().ok()?))
    }

    /// A profile's `minKernel`: exactly "<kernel>.<major>", each below 256, not "0.0".
    fn from_profile(v: &str) -> Result<KernelVersion, String> {
        let bad =
            |why: &str| format!("invalid minKernel {v:?}: expected \"<kernel>.<major>\"{why}");
        let (k, m) = v.split_once('.').ok_or_else(|| bad(""))?;
        let k: u8 = k.parse().map_err(|_| bad(""))?;
        let m: u8 = m.parse().map_err(|_| bad(""))?;
        if k == 0 && m == 0 {
            return Err(bad(", not 0.0"));
        }
        Ok(KernelVersion(k.into(), m.into()))
    }
}

/// The host the filter is made for: its architecture and kernel, and the container's bounding
/// capabilities (`CAP_…` names).
pub struct Host<'a> {
    /// Go's name for the native architecture (what `arches` conditions name).
    pub arch: &'static str,
    /// The seccomp name of the native architecture (what `archMap` entries name).
    pub scmp_arch: Option<Arch>,
    /// Whether an `archMap` entry brings its sub-architectures (x86 and x32 beside x86_64).
    /// Docker's conversion always does; see `seccomp::profile` for why berth's default
    /// profile does not.
    pub sub_arches: bool,
    pub kernel: KernelVersion,
    pub caps: &'a [String],
}

impl Host<'_> {
    pub fn native_arch() -> (&'static str, Option<Arch>) {
        if cfg!(target_arch = "x86_64") {
            ("amd64", Some(Arch::ScmpArchX86_64))
        } else if cfg!(target_arch = "aarch64") {
            ("arm64", Some(Arch::ScmpArchAarch64))
        } else if cfg!(target_arch = "riscv64") {
            ("riscv64", Some(Arch::ScmpArchRiscv64))
        } else if cfg!(target_arch = "s390x") {
            ("s390x", Some(Arch::ScmpArchS390x))
        } else if cfg!(target_arch = "powerpc64") {
            ("ppc64le", Some(Arch::ScmpArchPpc64le))
        } else if cfg!(target_arch = "loongarch64") {
            ("loong64", Some(Arch::ScmpArchLoongarch64))
        } else if cfg!(target_arch = "x86") {
            ("x86", Some(Arch::ScmpArchX86))
        } else if cfg!(target_arch = "arm") {
            ("arm", Some(Arch::ScmpArchArm))
        } else {
            ("", None)
        }
    }

    fn has_cap(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }
}

/// Parse a profile. The error is serde's, with line and column.
pub fn parse(text: &str) -> Result<Profile, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// The OCI `linux.seccomp` section for `host`, or `None` when the profile has neither a default
/// action nor rules (Docker runs such a container without a filter).
pub fn to_oci(p: &Profile, host: &Host) -> Result<Option<Value>, String> {
    let rules = p.syscalls.as_deref().unwrap_or_default();
    let Some(default_action) = p.default_action else {
        if rules.is_empty() {
            return Ok(None);
        }
        return Err("it has rules but no defaultAction".into());
    };
    let has_arches = p.architectures.as_ref().is_some_and(|a| !a.is_empty());
    let has_map = p.arch_map.as_ref().is_some_and(|a| !a.is_empty());
    if has_arches && has_map {
        return Err("it gives both 'architectures' and 'archMap'; use one of them".into());
    }
    // berth does not run a seccomp agent, so a notify rule would stop the container forever.
    if default_action == LinuxSeccompAction::ScmpActNotify
        || rules
            .iter()
            .any(|r| r.action == LinuxSeccompAction::ScmpActNotify)
    {
        return Err("SCMP_ACT_NOTIFY needs a seccomp agent, which berth does not run".into());
    }
    let mut architectures: Vec<Arch> = p.architectures.clone().unwrap_or_default();
    if let (Some(maps), Some(native)) = (&p.arch_map, host.scmp_arch)
        && let Some(m) = maps.iter().find(|m| m.architecture == native)
    {
        architectures.push(m.architecture);
        if host.sub_arches {
            architectures.extend(m.sub_architectures.iter().flatten().copied());
        }
    }

    let mut syscalls = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let names = match (&rule.name, &rule.names) {
            (Some(_), Some(n)) if !n.is_empty() => {
                return Err(format!(
                    "syscalls[{i}] gives both 'name' and 'names'; use one of them"
                ));
            }
            (Some(n), _) => vec![n.clone()],
            (None, Some(n)) if !n.is_empty() => n.clone(),
            _ => return Err(format!("syscalls[{i}] names no system call")),
        };
        for a in rule.args.iter().flatten() {
            if a.index() > 5 {
                return Err(format!(
                    "syscalls[{i}] ({}) checks argument {}; system calls have arguments 0 to 5",
                    names[0],
                    a.index()
                ));
            }
        }
        if !applies(rule, host).map_err(|e| format!("syscalls[{i}] ({}): {e}", names[0]))? {
            continue;
        }
        let mut s = json!({"names": names, "action": rule.action});
        if let Some(e) = rule.errno_ret {
            s["errnoRet"] = json!(e);
        }
        if let Some(args) = &rule.args {
            s["args"] = json!(args);
        }
        syscalls.push(s);
    }

    let mut out = json!({
        "defaultAction": default_action,
        "architectures": architectures,
        "syscalls": syscalls,
    });
    if let Some(e) = p.default_errno_ret {
        out["defaultErrnoRet"] = json!(e);
    }
    if let Some(f) = &p.flags {
        out["flags"] = json!(f);
    }
    if let Some(l) = &p.listener_path {
        out["listenerPath"] = json!(l);
    }
    Ok(Some(out))
}

/// Whether a conditional rule is part of the filter on this host. An `excludes` condition drops
/// the rule when any of its items matches; `includes` keeps it only when all of them match.
fn applies(rule: &Rule, host: &Host) -> Result<bool, String> {
    // Both versions are read first so a malformed one is reported whatever the other
    // conditions say.
    let min_kernel = |f: &Option<Filter>| -> Result<Option<KernelVersion>, String> {
        match f.as_ref().and_then(|f| f.min_kernel.as_deref()) {
            None | Some("") => Ok(None),
            Some(v) => KernelVersion::from_profile(v).map(Some),
        }
    };
    let (ex_kernel, inc_kernel) = (min_kernel(&rule.excludes)?, min_kernel(&rule.includes)?);
    if let Some(ex) = &rule.excludes {
        if ex.arches.iter().flatten().any(|a| a == host.arch) {
            return Ok(false);
        }
        if ex.caps.iter().flatten().any(|c| host.has_cap(c)) {
            return Ok(false);
        }
        if ex_kernel.is_some_and(|v| host.kernel >= v) {
            return Ok(false);
        }
    }
    if let Some(inc) = &rule.includes {
        if let Some(arches) = inc.arches.as_ref().filter(|a| !a.is_empty())
            && !arches.iter().any(|a| a == host.arch)
        {
            return Ok(false);
        }
        if !inc.caps.iter().flatten().all(|c| host.has_cap(c)) {
            return Ok(false);
        }
        if inc_kernel.is_some_and(|v| host.kernel < v) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(caps: &[String], kernel: KernelVersion) -> Host<'_> {
        Host {
            arch: "amd64",
            scmp_arch: Some(Arch::ScmpArchX86_64),
            sub_arches: true,
            kernel,
            caps,
        }
    }

    fn names(v: &Value, action: &str) -> Vec<String> {
        v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == action && r.get("args").is_none())
            .flat_map(|r| r["names"].as_array().unwrap().clone())
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn kernel_versions_compare_as_docker_does() {
        assert_eq!(
            KernelVersion::from_release("6.1.0-18-amd64"),
            Some(KernelVersion(6, 1))
        );
        assert_eq!(
            KernelVersion::from_release("3.12-1-amd64"),
            Some(KernelVersion(3, 12))
        );
        assert_eq!(
            KernelVersion::from_release("6.18.44-fc"),
            Some(KernelVersion(6, 18))
        );
        assert!(KernelVersion(4, 10) > KernelVersion(4, 8));
        assert!(KernelVersion::from_profile("4").is_err());
        assert!(KernelVersion::from_profile("4.8.1").is_err());
        assert!(KernelVersion::from_profile("0.0").is_err());
        assert!(KernelVersion::from_profile("300.1").is_err());
    }

    #[test]
    fn conditions_follow_kernel_caps_and_arch() {
        let p = parse(include_str!("default.json")).unwrap();
        let none: Vec<String> = Vec::new();
        let v = to_oci(&p, &host(&none, KernelVersion(6, 1)))
            .unwrap()
            .unwrap();
        let allowed = names(&v, "SCMP_ACT_ALLOW");
        assert!(allowed.iter().any(|n| n == "ptrace"), "minKernel 4.8");
        assert!(allowed.iter().any(|n| n == "arch_prctl"), "amd64 only");
        assert!(!allowed.iter().any(|n| n == "cacheflush"), "arm only");
        assert!(!allowed.iter().any(|n| n == "mount"));
        assert!(!allowed.iter().any(|n| n == "io_uring_setup"));
        assert_eq!(
            v["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        assert_eq!(v["defaultErrnoRet"], 1);
        // clone3 answers ENOSYS without CAP_SYS_ADMIN, and clone is allowed only without
        // namespace flags.
        let rules = v["syscalls"].as_array().unwrap();
        assert!(
            rules
                .iter()
                .any(|r| r["names"] == json!(["clone3"]) && r["errnoRet"] == 38)
        );
        assert!(rules.iter().any(|r| r["names"] == json!(["clone"])
            && r["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
            && r["args"][0]["index"] == 0));

        let old = to_oci(&p, &host(&none, KernelVersion(4, 4)))
            .unwrap()
            .unwrap();
        assert!(!names(&old, "SCMP_ACT_ALLOW").iter().any(|n| n == "ptrace"));

        let admin = vec!["CAP_SYS_ADMIN".to_string()];
        let v = to_oci(&p, &host(&admin, KernelVersion(6, 1)))
            .unwrap()
            .unwrap();
        assert!(names(&v, "SCMP_ACT_ALLOW").iter().any(|n| n == "mount"));
        let rules = v["syscalls"].as_array().unwrap();
        assert!(!rules.iter().any(|r| r["names"] == json!(["clone3"])));
        assert!(!rules.iter().any(|r| r["names"] == json!(["clone"])));
        // The result is a valid OCI section.
        let _: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(v).unwrap();
    }

    #[test]
    fn malformed_profiles_say_what_is_wrong() {
        let none: Vec<String> = Vec::new();
        let h = host(&none, KernelVersion(6, 1));
        let err = |text: &str| match parse(text) {
            Err(e) => e,
            Ok(p) => to_oci(&p, &h).unwrap_err(),
        };
        assert!(err("{").contains("line 1"));
        assert!(err(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#).contains("SCMP_ACT_NOPE"));
        assert!(
            err(
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                    "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#
            )
            .contains("both")
        );
        assert!(
            err(
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}"#
            )
            .contains("syscalls[0] names no system call")
        );
        assert!(
            err(
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"],
                    "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "four"}}]}"#
            )
            .contains("minKernel")
        );
        assert!(
            err(r#"{"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#)
                .contains("no defaultAction")
        );
        assert!(to_oci(&parse("{}").unwrap(), &h).unwrap().is_none());
    }
}

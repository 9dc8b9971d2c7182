//! The seccomp filter a container runs under. The default is Docker's default profile
//! (`default.json`, in Docker's format): an allowlist whose default answer is EPERM, with rules
//! that depend on the container's capabilities, the host's kernel version and architecture
//! (see `docker`). `seccomp=PROFILE.json` takes a profile in the same format through the same
//! conversion; `seccomp=unconfined` and `--privileged` run without a filter, as in Docker.
//!
//! A profile file is read once, when the container is created: its text replaces the path in
//! the stored `--security-opt` (as Docker's CLI sends it), so the container starts the same way
//! later even if the file changed or went away.

mod cache;
mod docker;

pub use cache::program as compiled_program;

use std::path::Path;

use serde_json::Value;

use crate::error::{Result, RunnerError};

/// Docker's default profile, in Docker's format.
const DEFAULT_PROFILE: &str = include_str!("default.json");

/// What a container's `--security-opt seccomp=…` asks for.
enum Choice<'a> {
    Default,
    Unconfined,
    /// A profile's JSON text, as stored at create time.
    Inline(&'a str),
    /// A path (containers created before profiles were stored inline).
    File(&'a str),
}

fn choice(security_opt: &[String]) -> Choice<'_> {
    let mut c = Choice::Default;
    for o in security_opt {
        if let Some(v) = o
            .strip_prefix("seccomp=")
            .or_else(|| o.strip_prefix("seccomp:"))
        {
            c = match v {
                "unconfined" => Choice::Unconfined,
                "builtin" | "" => Choice::Default,
                v if v.trim_start().starts_with('{') => Choice::Inline(v),
                v => Choice::File(v),
            };
        }
    }
    c
}

/// The `--security-opt` list to store for a new container: a `seccomp=PATH` becomes
/// `seccomp=<the profile's JSON>` once the profile is read and checked, so a bad profile fails
/// `create` with an error naming the file and what is wrong.
pub fn resolve_security_opts(security_opt: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(security_opt.len());
    for o in security_opt {
        let Some(v) = o
            .strip_prefix("seccomp=")
            .or_else(|| o.strip_prefix("seccomp:"))
        else {
            out.push(o.clone());
            continue;
        };
        if matches!(v, "unconfined" | "builtin") || v.trim_start().starts_with('{') {
            out.push(o.clone());
            continue;
        }
        if v.is_empty() {
            return Err(RunnerError::invalid(
                "--security-opt",
                "seccomp= needs a profile file, \"unconfined\" or \"builtin\"",
            ));
        }
        let path = Path::new(v);
        let text = std::fs::read_to_string(path)
            .map_err(|e| RunnerError::io("reading seccomp profile", path, e))?;
        let what = || format!("seccomp profile {}", path.display());
        let profile = docker::parse(&text).map_err(|e| RunnerError::invalid(what(), e))?;
        // Convert once for a container with all capabilities, so every conditional rule is
        // checked, not only those that apply to this container.
        let (arch, scmp_arch) = docker::Host::native_arch();
        let all = crate::bundle::all_caps();
        let host = docker::Host {
            arch,
            scmp_arch,
            sub_arches: true,
            kernel: docker::KernelVersion(0, 0),
            caps: &all,
        };
        docker::to_oci(&profile, &host).map_err(|e| RunnerError::invalid(what(), e))?;
        // Stored compact, on one line, as Docker's CLI sends it.
        let compact: Value =
            serde_json::from_str(&text).map_err(|e| RunnerError::invalid(what(), e.to_string()))?;
        out.push(format!("seccomp={compact}"));
    }
    Ok(out)
}

/// The `linux.seccomp` section for a container with bounding capabilities `caps`, or `None`
/// for no filter.
pub fn profile(
    privileged: bool,
    security_opt: &[String],
    caps: &[String],
) -> Result<Option<Value>> {
    let builtin = matches!(choice(security_opt), Choice::Default);
    let (text, what) = match choice(security_opt) {
        Choice::Unconfined => return Ok(None),
        // Docker: --privileged drops the default filter but keeps a profile given explicitly.
        Choice::Default if privileged => return Ok(None),
        Choice::Default => (
            DEFAULT_PROFILE.to_string(),
            "berth's default seccomp profile".to_string(),
        ),
        Choice::Inline(t) => (
            t.to_string(),
            "the seccomp profile given at create".to_string(),
        ),
        Choice::File(p) => {
            let path = Path::new(p);
            let text = std::fs::read_to_string(path)
                .map_err(|e| RunnerError::io("reading seccomp profile", path, e))?;
            (text, format!("seccomp profile {}", path.display()))
        }
    };
    let profile = docker::parse(&text).map_err(|e| RunnerError::invalid(&what, e))?;
    let kernel = docker::KernelVersion::running().map_err(|e| RunnerError::invalid(&what, e))?;
    let (arch, scmp_arch) = docker::Host::native_arch();
    let host = docker::Host {
        arch,
        scmp_arch,
        // The default filter covers the native architecture only. Compiling it with the 32-bit
        // x86 and x32 ABIs beside x86_64, as Docker's conversion gives, takes libseccomp 15-112
        // ms, which the compiled-filter cache (`cache`) takes off the start path; but the
        // program is then three times longer (1041 instructions instead of 354) and the
        // kernel's load of it takes ~0.4 ms more on every start (bench/RESULTS.md 2026-12-08),
        // where `run` is over its latency bound. System calls of other ABIs (an i386 binary's
        // int 0x80) are therefore killed, where Docker filters them. A profile file gets
        // Docker's conversion as is.
        sub_arches: !builtin,
        kernel,
        caps,
    };
    docker::to_oci(&profile, &host).map_err(|e| RunnerError::invalid(&what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_caps() -> Vec<String> {
        crate::bundle::DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    #[test]
    fn default_profile_is_an_allowlist() {
        let caps = default_caps();
        let p = profile(false, &[], &caps).unwrap().unwrap();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        let allowed: Vec<&str> = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW")
            .flat_map(|r| r["names"].as_array().unwrap())
            .filter_map(Value::as_str)
            .collect();
        assert!(
            allowed.contains(&"chroot"),
            "CAP_SYS_CHROOT is a default capability"
        );
        assert!(!allowed.contains(&"mount"));
        assert!(!allowed.contains(&"keyctl"));
        if cfg!(target_arch = "x86_64") {
            assert_eq!(p["architectures"], serde_json::json!(["SCMP_ARCH_X86_64"]));
        }
        let _: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(p).unwrap();
    }

    #[test]
    fn unconfined_and_privileged() {
        let caps = default_caps();
        assert!(profile(true, &[], &caps).unwrap().is_none());
        assert!(
            profile(false, &["seccomp=unconfined".into()], &caps)
                .unwrap()
                .is_none()
        );
        assert!(
            profile(true, &["seccomp=builtin".into()], &caps)
                .unwrap()
                .is_none()
        );
        let inline = r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#.to_string();
        assert!(profile(true, &[inline], &caps).unwrap().is_some());
    }

    #[test]
    fn profile_files_are_stored_inline_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(
            &good,
            "{\n \"defaultAction\": \"SCMP_ACT_ALLOW\",\n \"syscalls\": [{\"names\": [\"mkdir\"], \"action\": \"SCMP_ACT_ERRNO\", \"errnoRet\": 13}]\n}\n",
        )
        .unwrap();
        let opts = vec![
            format!("seccomp={}", good.display()),
            "no-new-privileges".into(),
        ];
        let out = resolve_security_opts(&opts).unwrap();
        assert!(out[0].starts_with("seccomp={\"defaultAction\""), "{out:?}");
        assert_eq!(out[1], "no-new-privileges");
        let p = profile(false, &out[..1], &default_caps()).unwrap().unwrap();
        assert_eq!(p["syscalls"][0]["errnoRet"], 13);

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"defaultAction\": \"SCMP_ACT_ALLOW\",").unwrap();
        let e = resolve_security_opts(&[format!("seccomp={}", bad.display())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.json") && e.contains("line 1"), "{e}");
        let e = resolve_security_opts(&[format!(
            "seccomp={}",
            dir.path().join("none.json").display()
        )])
        .unwrap_err()
        .to_string();
        assert!(e.contains("none.json"), "{e}");
    }
}

//! Docker's flag grammar for `create`/`run`, parsed at the edge into typed values: sizes,
//! restart policy, CPUs, environment, labels, exposed ports, security options; what the
//! container's `HostConfig` records.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, RunnerError};
use crate::state::{HostConfig, RestartPolicy};

/// The default PATH Docker gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `berth create`/`run` options, as the CLI parsed them.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub image: String,
    pub name: Option<String>,
    /// Arguments after the image (replace the image's CMD).
    pub command: Vec<String>,
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub labels: Vec<String>,
    pub tty: bool,
    pub interactive: bool,
    pub attach: bool,
    pub auto_remove: bool,
    pub init: bool,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub restart: Option<String>,
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<String>,
    pub pids_limit: Option<i64>,
    pub network: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub read_only: bool,
    pub security_opt: Vec<String>,
    pub dns: Vec<String>,
    pub add_host: Vec<String>,
    pub volumes: Vec<String>,
    pub mounts: Vec<String>,
    pub tmpfs: Vec<String>,
    pub volumes_from: Vec<String>,
    pub runtime: Option<String>,
    /// `-p`, `-P`, `--expose`.
    pub publish: Vec<String>,
    pub publish_all: bool,
    pub expose: Vec<String>,
    /// `--link NAME[:ALIAS]`.
    pub links: Vec<String>,
    /// `--network-alias`, `--ip`, `--mac-address`: for the first network.
    pub network_aliases: Vec<String>,
    pub ip: Option<String>,
    pub mac_address: Option<String>,
    pub dns_search: Vec<String>,
    pub dns_option: Vec<String>,
}

pub(super) fn set_env(env: &mut Vec<String>, kv: String) {
    let key = kv.split('=').next().unwrap_or("").to_string();
    if let Some(slot) = env
        .iter_mut()
        .find(|e| e.split('=').next() == Some(key.as_str()))
    {
        *slot = kv;
    } else {
        env.push(kv);
    }
}

/// `-e KEY=V` as given; `-e KEY` takes KEY from berth's own environment (dropped if unset).
pub(super) fn env_arg(e: &str) -> Result<Option<String>> {
    let key = e.split('=').next().unwrap_or("");
    if key.is_empty() {
        return Err(RunnerError::invalid(
            "environment variable",
            format!("{e:?}: the name is empty"),
        ));
    }
    if key.contains(char::is_whitespace) {
        return Err(RunnerError::invalid(
            "environment variable",
            format!("{key:?} contains whitespaces"),
        ));
    }
    if e.contains('=') {
        return Ok(Some(e.to_string()));
    }
    Ok(std::env::var(key).ok().map(|v| format!("{key}={v}")))
}

/// Docker's `--env-file`: one KEY=VALUE (or KEY) per line, `#` comments, blank lines skipped.
pub fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(path).ctx("reading env file", path)?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let e = env_arg(line).map_err(|e| {
            RunnerError::invalid(
                format!("env file {} line {}", path.display(), n + 1),
                e.to_string(),
            )
        })?;
        out.extend(e);
    }
    Ok(out)
}

/// Docker's `RAMInBytes`: `512m`, `1g`, `1024k`, `100` (bytes), case-insensitive, optional `b`.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| {
        RunnerError::invalid(
            "size",
            format!("{s:?}: use a number with an optional unit (b, k, m, g)"),
        )
    })?;
    if n < 0.0 || !n.is_finite() {
        return Err(RunnerError::invalid("size", format!("{s:?} is negative")));
    }
    Ok((n * mult as f64) as i64)
}

pub(super) fn host_config(o: &CreateOptions) -> Result<HostConfig> {
    let memory = o
        .memory
        .as_deref()
        .map(parse_bytes)
        .transpose()?
        .unwrap_or(0);
    if memory > 0 && memory < crate::bundle::MIN_MEMORY {
        return Err(RunnerError::invalid(
            "--memory",
            "Minimum memory limit allowed is 6MB",
        ));
    }
    let memory_swap = match o.memory_swap.as_deref() {
        Some("-1") => -1,
        Some(s) => {
            let v = parse_bytes(s)?;
            if memory == 0 {
                return Err(RunnerError::invalid(
                    "--memory-swap",
                    "You should always set the Memory limit when using Memoryswap limit",
                ));
            }
            if v < memory {
                return Err(RunnerError::invalid(
                    "--memory-swap",
                    "Minimum memoryswap limit should be larger than memory limit, see usage",
                ));
            }
            v
        }
        None => 0,
    };
    let nano_cpus = match o.cpus.as_deref() {
        Some(c) => {
            let v: f64 = c
                .parse()
                .map_err(|_| RunnerError::invalid("--cpus", format!("{c:?} is not a number")))?;
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1) as f64;
            if v <= 0.0 || !v.is_finite() {
                return Err(RunnerError::invalid(
                    "--cpus",
                    format!("{c:?}: the value must be positive"),
                ));
            }
            if v > cores {
                return Err(RunnerError::invalid(
                    "--cpus",
                    format!(
                        "range of CPUs is from 0.01 to {cores:.2}, as there are only {cores} CPUs available"
                    ),
                ));
            }
            (v * 1e9) as i64
        }
        None => 0,
    };
    let restart_policy = parse_restart(o.restart.as_deref().unwrap_or("no"))?;
    if o.auto_remove && !matches!(restart_policy.name.as_str(), "" | "no") {
        return Err(RunnerError::invalid(
            "options",
            "Conflicting options: --restart and --rm",
        ));
    }
    let network_mode = match o.network.as_deref() {
        None | Some("") | Some("default") => "bridge".to_string(),
        Some(n) => n.to_string(),
    };
    let mut port_bindings: BTreeMap<String, Vec<crate::state::PortBinding>> = BTreeMap::new();
    for p in &o.publish {
        for (k, b) in crate::network::ports::parse_publish(p)? {
            port_bindings.entry(k).or_default().push(b);
        }
    }
    for c in o.cap_add.iter().chain(&o.cap_drop) {
        crate::caps::parse_capability(c)?;
    }
    for s in &o.security_opt {
        let known = matches!(
            s.as_str(),
            "no-new-privileges"
                | "no-new-privileges:true"
                | "no-new-privileges=true"
                | "no-new-privileges:false"
                | "no-new-privileges=false"
        ) || ["label", "apparmor", "seccomp"].iter().any(|k| {
            s.strip_prefix(k)
                .is_some_and(|rest| rest.starts_with('=') || rest.starts_with(':'))
        });
        if !known {
            return Err(RunnerError::invalid(
                "--security-opt",
                format!("{s:?} is not a known option"),
            ));
        }
    }
    Ok(HostConfig {
        binds: o.volumes.clone(),
        network_mode,
        restart_policy,
        auto_remove: o.auto_remove,
        volumes_from: o.volumes_from.clone(),
        cap_add: o.cap_add.clone(),
        cap_drop: o.cap_drop.clone(),
        dns: o.dns.clone(),
        extra_hosts: o.add_host.clone(),
        privileged: o.privileged,
        readonly_rootfs: o.read_only,
        security_opt: crate::seccomp::resolve_security_opts(&o.security_opt)?,
        tmpfs: o
            .tmpfs
            .iter()
            .map(|t| match t.split_once(':') {
                Some((p, opts)) => (p.to_string(), opts.to_string()),
                None => (t.clone(), String::new()),
            })
            .collect(),
        runtime: o.runtime.clone().unwrap_or_else(|| "berth".into()),
        init: o.init.then_some(true),
        memory,
        memory_swap,
        nano_cpus,
        pids_limit: o.pids_limit,
        mounts: Vec::new(),
        port_bindings,
        publish_all_ports: o.publish_all,
        links: Vec::new(),
        dns_search: o.dns_search.clone(),
        dns_options: o.dns_option.clone(),
    })
}

/// The image's exposed ports plus `--expose` and the container ports of `-p` (Docker adds
/// both to `Config.ExposedPorts`).
pub(super) fn exposed_ports(
    image: &[String],
    expose: &[String],
    bindings: &BTreeMap<String, Vec<crate::state::PortBinding>>,
) -> Result<Option<BTreeMap<String, serde_json::Value>>> {
    let mut out: BTreeMap<String, serde_json::Value> = image
        .iter()
        .map(|k| (k.clone(), serde_json::json!({})))
        .collect();
    for e in expose {
        let (range, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let bad = || RunnerError::invalid("--expose", format!("{e:?} is not a port or range"));
        let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a == 0 || b < a {
            return Err(bad());
        }
        for p in a..=b {
            let (p, proto) = crate::network::ports::parse_port_key(&format!("{p}/{proto}"))?;
            out.insert(
                crate::network::ports::port_key(p, &proto),
                serde_json::json!({}),
            );
        }
    }
    for k in bindings.keys() {
        out.insert(k.clone(), serde_json::json!({}));
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `no`, `always`, `unless-stopped`, `on-failure[:N]`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let bad = || {
        RunnerError::invalid(
            "--restart",
            format!("{s:?}: use no, always, unless-stopped or on-failure[:max-retries]"),
        )
    };
    match (name, count) {
        ("no" | "" | "always" | "unless-stopped", None) => Ok(RestartPolicy {
            name: if name.is_empty() {
                "no".into()
            } else {
                name.into()
            },
            maximum_retry_count: 0,
        }),
        ("on-failure", None) => Ok(RestartPolicy {
            name: "on-failure".into(),
            maximum_retry_count: 0,
        }),
        ("on-failure", Some(c)) => {
            let n: i64 = c.parse().map_err(|_| bad())?;
            if n < 0 {
                return Err(RunnerError::invalid(
                    "--restart",
                    "maximum retry count cannot be negative",
                ));
            }
            Ok(RestartPolicy {
                name: "on-failure".into(),
                maximum_retry_count: n,
            })
        }
        (_, Some(_)) if name != "on-failure" => Err(RunnerError::invalid(
            "--restart",
            format!("maximum retry count cannot be used with restart policy '{name}'"),
        )),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_docker() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("64mb").unwrap(), 64 << 20);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1m").is_err());
    }

    #[test]
    fn restart_policies_parse() {
        assert_eq!(
            parse_restart("on-failure:3").unwrap().maximum_retry_count,
            3
        );
        assert_eq!(parse_restart("always").unwrap().name, "always");
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("sometimes").is_err());
        assert!(parse_restart("on-failure:x").is_err());
    }

    #[test]
    fn env_overrides_by_key() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        set_env(&mut env, "A=2".into());
        set_env(&mut env, "B=3".into());
        assert_eq!(env, vec!["PATH=/bin", "A=2", "B=3"]);
    }
}

//! What is stored for each container: its configuration (`config.json`, in the shape Docker's
//! `inspect` shows, so inspect is a read and a merge) and its state (`state.json`, rewritten by the
//! supervisor at each transition), and where a container's files live. How they are written and
//! locked is [`crate::persist`]'s.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

// The CLI's build sandbox (src/cli/build_sandbox.rs) still names these here.
pub use crate::process::{process_alive, process_start_time};

/// Go's zero time, which Docker shows for "never".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Docker's `Config` of a container.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub image: String,
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    pub working_dir: String,
    pub entrypoint: Option<Vec<String>>,
    pub on_build: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: i64,
}

/// A `--mount`/`-v`/`--tmpfs` request, as Docker's HostConfig.Mounts holds it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountRequest {
    /// bind, volume or tmpfs.
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<VolumeOptions>,
}

/// Docker's `VolumeOptions` of a `--mount type=volume`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeOptions {
    pub no_copy: bool,
    pub labels: BTreeMap<String, String>,
}

/// Docker's `HostConfig` of a container (the fields berth implements).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Vec<String>,
    pub network_mode: String,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub volumes_from: Vec<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub dns: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub security_opt: Vec<String>,
    pub tmpfs: BTreeMap<String, String>,
    pub runtime: String,
    pub init: Option<bool>,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub pids_limit: Option<i64>,
    pub mounts: Vec<MountRequest>,
    /// `-p`: "80/tcp" -> host bindings (an empty HostPort means a random port).
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    /// `-P`: every exposed port on a random host port.
    pub publish_all_ports: bool,
    /// `--link NAME:ALIAS` (stored as Docker does: "/name:/me/alias").
    pub links: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
}

/// One host side of a published port.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

/// Docker's per-network endpoint settings: the configuration part at create/connect (aliases,
/// requested address, MAC), the address part filled while the container runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointSettings {
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpamConfig>,
    pub links: Option<Vec<String>>,
    pub aliases: Option<Vec<String>>,
    pub mac_address: String,
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub gateway: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway")]
    pub ipv6_gateway: String,
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub global_ipv6_prefix_len: u8,
    #[serde(rename = "DNSNames")]
    pub dns_names: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct EndpointIpamConfig {
    #[serde(rename = "IPv4Address", skip_serializing_if = "String::is_empty")]
    pub ipv4_address: String,
}

/// A published port as applied to the host's NAT table while the container runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Published {
    pub proto: String,
    pub host_ip: String,
    pub host_port: u16,
    pub container_ip: String,
    pub container_port: u16,
}

/// One mount of a created container as `inspect` lists it under `Mounts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub source: String,
    pub destination: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub driver: String,
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: String,
}

/// The fixed part of a container: written once at create (and on rename).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerRecord {
    pub id: String,
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    /// The image ID (`sha256:…`).
    pub image: String,
    pub name: String,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub mounts: Vec<MountPoint>,
    /// The networks the container is attached to (name -> settings), as `--network` and
    /// `network connect` configured them.
    pub networking_config: BTreeMap<String, EndpointSettings>,
    /// Where the sandbox runs it: "" for the embedded sandbox, else an OCI runtime binary.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub runtime_path: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// The changing part: rewritten at every transition.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct State {
    pub status: Status,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    pub restart_count: u32,
    /// While running: each network's endpoint with its address (name -> settings).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, EndpointSettings>,
    /// While running: the published ports, "80/tcp" -> the host bindings chosen.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, Vec<PortBinding>>,
    /// berth's own bookkeeping, not shown by inspect.
    #[serde(rename = "berth")]
    pub internal: Internal,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: Status::Created,
            running: false,
            paused: false,
            restarting: false,
            oom_killed: false,
            dead: false,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            restart_count: 0,
            networks: BTreeMap::new(),
            ports: BTreeMap::new(),
            internal: Internal::default(),
        }
    }
}

/// Process identities that survive PID reuse: a PID plus its start time (field 22 of
/// `/proc/PID/stat`), so a recycled PID is never mistaken for the container or its supervisor.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Internal {
    pub pid_start: u64,
    pub supervisor_pid: i32,
    pub supervisor_start: u64,
    /// Set by `stop`/`kill`/`rm`, so the restart policy does not bring it back (Docker's rule).
    pub manually_stopped: bool,
    /// The cgroup the container runs in, for OOM accounting and cleanup.
    pub cgroup: String,
    /// Host mounts the supervisor set up (rootfs overlay), to undo when the container stops.
    pub rootfs_mounted: bool,
    /// NAT entries of published ports, to remove when the container stops.
    pub published: Vec<Published>,
}

impl State {
    pub fn set_running(&mut self, pid: i32, pid_start: u64, now: &str) {
        self.status = Status::Running;
        self.running = true;
        self.restarting = false;
        self.dead = false;
        self.oom_killed = false;
        self.pid = pid;
        self.internal.pid_start = pid_start;
        self.exit_code = 0;
        self.error.clear();
        self.started_at = now.into();
    }

    pub fn set_exited(&mut self, code: i32, oom: bool, now: &str) {
        self.status = Status::Exited;
        self.running = false;
        self.paused = false;
        self.restarting = false;
        self.pid = 0;
        self.internal.pid_start = 0;
        self.exit_code = code;
        self.oom_killed = oom;
        self.finished_at = now.into();
    }
}

/// The current time as Docker prints it (RFC 3339, nanoseconds, UTC).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Paths inside a container's directory.
#[derive(Debug, Clone)]
pub struct ContainerPaths {
    pub dir: PathBuf,
}

impl ContainerPaths {
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    pub fn image(&self) -> PathBuf {
        self.dir.join("image")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    pub fn log(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}-json.log"))
    }
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_with_docker_field_names() {
        let mut st = State::default();
        st.set_running(42, 7, "2026-01-01T00:00:00Z");
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["Status"], "running");
        assert_eq!(v["Pid"], 42);
        assert_eq!(v["OOMKilled"], false);
        let back: State = serde_json::from_value(v).unwrap();
        assert_eq!(back.internal.pid_start, 7);
    }
}

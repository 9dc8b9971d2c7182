//! `container inspect`: Docker's inspect document for a container (state, host config, mounts,
//! network settings), and the printing of inspect documents shared by every `inspect`.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use berth_runner::{Container, Runner};
use clap::Args;
use serde_json::{Value, json};

use crate::cli::format::{Format, render, template};
use crate::cli::open_store;

fn runner(root: &Path) -> Result<Runner> {
    Ok(Runner::open(open_store(root)?)?)
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a Go template or json
    #[arg(short, long)]
    format: Option<String>,
    /// Display total file sizes (accepted for Docker compatibility)
    #[arg(short, long)]
    size: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

/// Docker's container inspect document.
pub fn inspect_json(c: &Container) -> Value {
    let rec = &c.record;
    let mut state = serde_json::to_value(&c.state).unwrap_or(Value::Null);
    if let Some(o) = state.as_object_mut() {
        o.remove("berth");
        o.remove("RestartCount");
    }
    let mut host_config = serde_json::to_value(&rec.host_config).unwrap_or(Value::Null);
    if let Some(o) = host_config.as_object_mut() {
        o.insert("NanoCpus".into(), json!(rec.host_config.nano_cpus));
        o.insert(
            "ReadonlyRootfs".into(),
            json!(rec.host_config.readonly_rootfs),
        );
        o.insert(
            "LogConfig".into(),
            json!({"Type": "json-file", "Config": {}}),
        );
    }
    json!({
        "Id": rec.id,
        "Created": rec.created,
        "Path": rec.path,
        "Args": rec.args,
        "State": state,
        "Image": rec.image,
        "ResolvConfPath": c.paths.resolv_conf(),
        "HostnamePath": c.paths.hostname(),
        "HostsPath": c.paths.hosts(),
        "LogPath": c.log_path(),
        "Name": format!("/{}", rec.name),
        "RestartCount": c.state.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": host_config,
        "GraphDriver": {
            "Name": "overlay",
            "Data": {
                "UpperDir": c.paths.upper(),
                "WorkDir": c.paths.work(),
                "MergedDir": c.paths.rootfs(),
            }
        },
        "Mounts": rec.mounts,
        "Config": rec.config,
        "NetworkSettings": network_settings(c),
    })
}

/// Docker's `NetworkSettings`: per-network endpoints (with addresses while running), published
/// ports, and the default bridge's address at the top level as Docker shows it.
fn network_settings(c: &Container) -> Value {
    let rec = &c.record;
    let running = c.is_running();
    let mut networks = serde_json::Map::new();
    for (name, cfg) in &rec.networking_config {
        let es = if running {
            c.state
                .networks
                .get(name)
                .cloned()
                .unwrap_or_else(|| cfg.clone())
        } else {
            cfg.clone()
        };
        networks.insert(
            name.clone(),
            serde_json::to_value(es).unwrap_or(Value::Null),
        );
    }
    if rec.networking_config.is_empty() {
        networks.insert(
            rec.host_config.network_mode.clone(),
            serde_json::to_value(berth_runner::state::EndpointSettings::default())
                .unwrap_or(Value::Null),
        );
    }
    let default = if running {
        c.state.networks.get("bridge").cloned().unwrap_or_default()
    } else {
        Default::default()
    };
    let mut ports = serde_json::Map::new();
    if let Some(exp) = &rec.config.exposed_ports {
        for k in exp.keys() {
            ports.insert(k.clone(), Value::Null);
        }
    }
    if running {
        for (k, bs) in &c.state.ports {
            ports.insert(k.clone(), json!(bs));
        }
    }
    json!({
        "Bridge": "", "SandboxID": "", "HairpinMode": false,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports,
        "SandboxKey": if c.state.pid > 0 { format!("/proc/{}/ns/net", c.state.pid) } else { String::new() },
        "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
        "EndpointID": default.endpoint_id,
        "Gateway": default.gateway,
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "IPAddress": default.ip_address,
        "IPPrefixLen": default.ip_prefix_len,
        "IPv6Gateway": "",
        "MacAddress": default.mac_address,
        "Networks": networks,
    })
}

/// Look `name` up as a container (for the top-level `inspect`, which tries containers first).
pub fn find_for_inspect(root: &Path, name: &str) -> Option<Value> {
    let r = runner(root).ok()?;
    r.get(name).ok().map(|c| inspect_json(&c))
}

pub fn inspect(root: &Path, a: InspectArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    let mut docs = Vec::new();
    let mut failed = false;
    for n in &a.containers {
        match r.get(n) {
            Ok(c) => docs.push(inspect_json(&c)),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    print_docs(&docs, a.format.as_deref())?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn print_docs(docs: &[Value], format: Option<&str>) -> Result<()> {
    let mut out = io::stdout().lock();
    match Format::parse(format) {
        Format::Template { tmpl, .. } => {
            let t = template(&tmpl)?;
            for d in docs {
                writeln!(out, "{}", render(&t, d)?)?;
            }
        }
        Format::Json | Format::Table => writeln!(out, "{}", serde_json::to_string_pretty(docs)?)?,
    }
    Ok(())
}

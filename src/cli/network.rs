//! `network create|ls|inspect|rm|prune|connect|disconnect` and `port`, with Docker's output and
//! errors. Networks, their addresses and rules live in `berth_runner::network`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use berth_runner::network::{self, CreateNetwork, Network, Networks};
use berth_runner::state::{EndpointIpamConfig, EndpointSettings};
use berth_runner::{Container, Runner};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::format::{Format, Row, print_rows};
use super::open_store;
use super::volume::key_values;

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list", name = "ls")]
    Ls(ListArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove", name = "rm")]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

pub fn run(root: &Path, c: NetworkCommand) -> Result<ExitCode> {
    match c {
        NetworkCommand::Create(a) => create(root, a),
        NetworkCommand::Ls(a) => list(root, a),
        NetworkCommand::Inspect(a) => inspect(root, a),
        NetworkCommand::Rm(a) => rm(root, a),
        NetworkCommand::Prune(a) => prune(root, a),
        NetworkCommand::Connect(a) => connect(root, a),
        NetworkCommand::Disconnect(a) => disconnect(root, a),
    }
}

fn open(root: &Path) -> Result<(Runner, Networks)> {
    let r = Runner::open(open_store(root)?)?;
    let n = Networks::open(root)?;
    Ok((r, n))
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Driver to manage the network (only "bridge")
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    subnet: Option<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    gateway: Option<String>,
    /// Allocate container IPs from a sub-range
    #[arg(long = "ip-range")]
    ip_range: Option<String>,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Enable manual container attachment (always possible with berth)
    #[arg(long)]
    attachable: bool,
    /// Set metadata on a network
    #[arg(long = "label")]
    label: Vec<String>,
    /// Set driver specific options (com.docker.network.bridge.name, com.docker.network.driver.mtu)
    #[arg(short, long = "opt")]
    opt: Vec<String>,
    /// Enable IPv6 networking (not supported)
    #[arg(long)]
    ipv6: bool,
    name: String,
}

fn create(root: &Path, a: CreateArgs) -> Result<ExitCode> {
    if a.ipv6 {
        bail!("IPv6 networks are not supported by berth yet: leave out --ipv6");
    }
    let (_, nets) = open(root)?;
    let n = nets.create(&CreateNetwork {
        name: a.name,
        driver: a.driver,
        subnet: a.subnet,
        gateway: a.gateway,
        ip_range: a.ip_range,
        internal: a.internal,
        attachable: a.attachable,
        labels: key_values(&a.label),
        options: key_values(&a.opt),
    })?;
    println!("{}", n.id());
    Ok(ExitCode::SUCCESS)
}

/// The predefined `host` and `none` networks, as Docker lists them.
fn pseudo(name: &str) -> Value {
    let driver = if name == "host" { "host" } else { "null" };
    json!({
        "Name": name, "Id": network::pseudo_id(name), "Created": "0001-01-01T00:00:00Z", "Scope": "local",
        "Driver": driver, "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": []},
        "Internal": false, "Attachable": false, "Ingress": false,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": false,
        "Containers": {}, "Options": {}, "Labels": {},
    })
}

/// A network as `network inspect` shows it, with its containers.
fn inspect_json(r: &Runner, n: &Network) -> Value {
    let mut v = serde_json::to_value(&n.record).unwrap_or(Value::Null);
    let mut containers = serde_json::Map::new();
    for ep in n.endpoints() {
        let name = r
            .get(&ep.container_id)
            .map(|c| c.name().to_string())
            .unwrap_or(ep.name.clone());
        containers.insert(
            ep.container_id.clone(),
            json!({
                "Name": name,
                "EndpointID": ep.endpoint_id,
                "MacAddress": ep.mac,
                "IPv4Address": format!("{}/{}", ep.ip, ep.prefix_len),
                "IPv6Address": "",
            }),
        );
    }
    if let Some(o) = v.as_object_mut() {
        o.insert("Containers".into(), Value::Object(containers));
    }
    v
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only display network IDs
    #[arg(short, long)]
    quiet: bool,
    /// Provide filter values (driver=, id=, label=, name=, type=custom|builtin)
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkRow {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    driver: String,
    scope: String,
    #[serde(rename = "IPv6")]
    ipv6: String,
    internal: String,
    labels: String,
    created_at: String,
}

impl Row for NetworkRow {
    fn cell(&self, field: &str) -> String {
        match field {
            "ID" => self.id.clone(),
            "Name" => self.name.clone(),
            "Driver" => self.driver.clone(),
            "Scope" => self.scope.clone(),
            "IPv6" => self.ipv6.clone(),
            "Internal" => self.internal.clone(),
            "Labels" => self.labels.clone(),
            "CreatedAt" => self.created_at.clone(),
            _ => String::new(),
        }
    }
}

fn filter_matches(doc: &Value, filters: &BTreeMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(k, vals)| {
        vals.iter().any(|want| match k.as_str() {
            "driver" => doc["Driver"] == want.as_str(),
            "id" => doc["Id"]
                .as_str()
                .is_some_and(|i| i.starts_with(want.as_str())),
            "name" => doc["Name"]
                .as_str()
                .is_some_and(|n| n.contains(want.as_str())),
            "label" => match want.split_once('=') {
                Some((lk, lv)) => doc["Labels"][lk] == lv,
                None => doc["Labels"].get(want.as_str()).is_some(),
            },
            "type" => {
                let builtin = network::is_predefined(doc["Name"].as_str().unwrap_or(""));
                (want == "builtin") == builtin
            }
            "scope" => want == "local",
            _ => true,
        })
    })
}

fn parse_filters(items: &[String], allowed: &[&str]) -> Result<BTreeMap<String, Vec<String>>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in items {
        let Some((k, v)) = f.split_once('=') else {
            bail!("bad format of filter (expected name=value)");
        };
        if !allowed.contains(&k) {
            bail!("invalid filter '{k}'");
        }
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    Ok(m)
}

fn all_docs(r: &Runner, nets: &Networks) -> Result<Vec<Value>> {
    let mut docs: Vec<Value> = nets.list()?.iter().map(|n| inspect_json(r, n)).collect();
    docs.insert(1, pseudo("host"));
    docs.insert(2, pseudo("none"));
    Ok(docs)
}

fn list(root: &Path, a: ListArgs) -> Result<ExitCode> {
    let filters = parse_filters(
        &a.filter,
        &["driver", "id", "label", "name", "type", "scope"],
    )?;
    let (r, nets) = open(root)?;
    let docs: Vec<Value> = all_docs(&r, &nets)?
        .into_iter()
        .filter(|d| filter_matches(d, &filters))
        .collect();
    let mut out = io::stdout().lock();
    let id = |d: &Value| {
        let id = d["Id"].as_str().unwrap_or_default().to_string();
        if a.no_trunc {
            id
        } else {
            id.chars().take(12).collect()
        }
    };
    if a.quiet {
        for d in &docs {
            writeln!(out, "{}", id(d))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<NetworkRow> = docs
        .iter()
        .map(|d| NetworkRow {
            id: id(d),
            name: d["Name"].as_str().unwrap_or_default().into(),
            driver: d["Driver"].as_str().unwrap_or_default().into(),
            scope: "local".into(),
            ipv6: "false".into(),
            internal: d["Internal"].as_bool().unwrap_or(false).to_string(),
            labels: d["Labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
            created_at: d["Created"].as_str().unwrap_or_default().into(),
        })
        .collect();
    print_rows(
        &mut out,
        &Format::parse(a.format.as_deref()),
        &[
            ("ID", "NETWORK ID"),
            ("Name", "NAME"),
            ("Driver", "DRIVER"),
            ("Scope", "SCOPE"),
        ],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a Go template or json
    #[arg(short, long)]
    format: Option<String>,
    /// Verbose output (accepted, as Docker; nothing more to show for local networks)
    #[arg(short, long)]
    verbose: bool,
    #[arg(required = true, value_name = "NETWORK")]
    names: Vec<String>,
}

fn find_doc(r: &Runner, nets: &Networks, name: &str) -> Result<Value> {
    if name == "host" || name == "none" {
        return Ok(pseudo(name));
    }
    Ok(inspect_json(r, &nets.get(name)?))
}

/// Look `name` up as a network or a volume (for the top-level `inspect`).
pub fn find_for_inspect(root: &Path, name: &str, kind: Option<&str>) -> Option<Value> {
    if kind != Some("volume") {
        let (r, nets) = open(root).ok()?;
        if let Ok(d) = find_doc(&r, &nets, name) {
            return Some(d);
        }
    }
    if kind != Some("network") {
        return berth_runner::volumes::store::get(root, name)
            .ok()
            .map(|v| v.inspect_json());
    }
    None
}

fn inspect(root: &Path, a: InspectArgs) -> Result<ExitCode> {
    let (r, nets) = open(root)?;
    let mut docs = Vec::new();
    let mut failed = false;
    for n in &a.names {
        match find_doc(&r, &nets, n) {
            Ok(d) => docs.push(d),
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    super::container::print_docs(&docs, a.format.as_deref())?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Containers configured for the network (running or not): Docker refuses to remove it then.
fn users(r: &Runner, n: &Network) -> Result<Vec<Container>> {
    Ok(r.list()?
        .into_iter()
        .filter(|c| {
            c.record.networking_config.contains_key(n.name())
                || c.record
                    .networking_config
                    .values()
                    .any(|e| e.network_id == n.id())
        })
        .collect())
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short, long)]
    force: bool,
    #[arg(required = true, value_name = "NETWORK")]
    names: Vec<String>,
}

fn rm(root: &Path, a: RmArgs) -> Result<ExitCode> {
    let (r, nets) = open(root)?;
    let mut code = ExitCode::SUCCESS;
    for name in &a.names {
        let res = (|| -> Result<()> {
            if network::is_predefined(name) {
                bail!("{name} is a pre-defined network and cannot be removed");
            }
            let n = nets.get(name)?;
            if n.is_default {
                bail!(
                    "{} is a pre-defined network and cannot be removed",
                    n.name()
                );
            }
            let using = users(&r, &n)?;
            if !using.is_empty() {
                let names: Vec<&str> = using.iter().map(|c| c.name()).collect();
                bail!(
                    "error while removing network: network {} id {} has active endpoints (containers: {}); remove them or disconnect them first",
                    n.name(),
                    n.id(),
                    names.join(", ")
                );
            }
            nets.remove(&n)?;
            Ok(())
        })();
        match res {
            Ok(()) => println!("{name}"),
            Err(e)
                if a.force
                    && matches!(
                        e.downcast_ref::<berth_runner::RunnerError>(),
                        Some(berth_runner::RunnerError::NoSuchNetwork(_))
                    ) => {}
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Provide filter values (label=KEY[=VALUE])
    #[arg(long = "filter")]
    filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

fn prune(root: &Path, a: PruneArgs) -> Result<ExitCode> {
    let filters = parse_filters(&a.filter, &["label", "until"])?;
    if !a.force {
        eprint!(
            "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] "
        );
        let mut answer = String::new();
        io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("Aborted.");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let (r, nets) = open(root)?;
    let mut removed = Vec::new();
    let label_filters: BTreeMap<String, Vec<String>> =
        filters.into_iter().filter(|(k, _)| k == "label").collect();
    for n in nets.list()? {
        if n.is_default || !users(&r, &n)?.is_empty() {
            continue;
        }
        if !filter_matches(&inspect_json(&r, &n), &label_filters) {
            continue;
        }
        nets.remove(&n)?;
        removed.push(n.name().to_string());
    }
    let mut out = io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Networks:")?;
        for n in &removed {
            writeln!(out, "{n}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    ip: Option<String>,
    /// Add link to another container (accepted as an alias on user-defined networks)
    #[arg(long)]
    link: Vec<String>,
    network: String,
    container: String,
}

fn connect(root: &Path, a: ConnectArgs) -> Result<ExitCode> {
    let (r, _) = open(root)?;
    let mut c = r.get(&a.container)?;
    let mut aliases = a.alias.clone();
    for l in &a.link {
        let alias = l.split_once(':').map(|(_, al)| al).unwrap_or(l);
        aliases.push(alias.to_string());
    }
    let es = EndpointSettings {
        aliases: (!aliases.is_empty()).then_some(aliases),
        ipam_config: a.ip.map(|ip| EndpointIpamConfig { ipv4_address: ip }),
        ..Default::default()
    };
    berth_runner::network::attach::connect(&r, &mut c, &a.network, es)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    force: bool,
    network: String,
    container: String,
}

fn disconnect(root: &Path, a: DisconnectArgs) -> Result<ExitCode> {
    let (r, _) = open(root)?;
    let mut c = r.get(&a.container)?;
    berth_runner::network::attach::disconnect(&r, &mut c, &a.network)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct PortArgs {
    container: String,
    /// PRIVATE_PORT[/PROTO]
    port: Option<String>,
}

/// `port CONTAINER [PRIVATE_PORT[/PROTO]]`: "80/tcp -> 0.0.0.0:8080".
pub fn port(root: &Path, a: PortArgs) -> Result<ExitCode> {
    let (r, _) = open(root)?;
    let c = r.get(&a.container)?;
    let mut out = io::stdout().lock();
    let ports = if c.is_running() {
        c.state.ports.clone()
    } else {
        BTreeMap::new()
    };
    match &a.port {
        Some(p) => {
            let (port, proto) = berth_runner::network::ports::parse_port_key(p)?;
            let key = berth_runner::network::ports::port_key(port, &proto);
            let Some(bs) = ports.get(&key).filter(|b| !b.is_empty()) else {
                bail!("No public port '{key}' published for {}", a.container);
            };
            for b in bs {
                writeln!(out, "{}:{}", b.host_ip, b.host_port)?;
            }
        }
        None => {
            for (k, bs) in &ports {
                for b in bs {
                    writeln!(out, "{k} -> {}:{}", b.host_ip, b.host_port)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

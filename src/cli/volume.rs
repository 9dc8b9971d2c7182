//! `volume create|ls|inspect|rm|prune`, with Docker's output and errors. The store and its
//! rules (names, in-use checks, locking) live in `berth_runner::volumes::store`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use berth_runner::Runner;
use berth_runner::volumes::store::{self, Volume};
use clap::{Args, Subcommand};

use super::format::{Format, Row, human_size, print_rows};
use super::open_store;

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list", name = "ls")]
    Ls(ListArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove", name = "rm")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

pub fn run(root: &Path, c: VolumeCommand) -> Result<ExitCode> {
    match c {
        VolumeCommand::Create(a) => create(root, a),
        VolumeCommand::Ls(a) => list(root, a),
        VolumeCommand::Inspect(a) => inspect(root, a),
        VolumeCommand::Rm(a) => rm(root, a),
        VolumeCommand::Prune(a) => prune(root, a),
    }
}

fn runner(root: &Path) -> Result<Runner> {
    Ok(Runner::open(open_store(root)?)?)
}

/// `KEY=VALUE` list (a bare KEY has an empty value) into a map.
pub(super) fn key_values(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Specify volume driver name (only "local")
    #[arg(short, long, default_value = "local")]
    driver: String,
    /// Set metadata for a volume
    #[arg(long = "label")]
    label: Vec<String>,
    /// Set driver specific options (type, device, o)
    #[arg(short, long = "opt")]
    opt: Vec<String>,
    /// Volume name (a random 64-hex name when omitted)
    name: Option<String>,
    /// Volume name, as --name
    #[arg(long = "name", conflicts_with = "name")]
    name_flag: Option<String>,
}

pub fn create(root: &Path, a: CreateArgs) -> Result<ExitCode> {
    let name = a.name.or(a.name_flag);
    if a.driver != "local" {
        bail!(
            "create {}: error looking up volume plugin {}: plugin {:?} not found",
            name.as_deref().unwrap_or(""),
            a.driver,
            a.driver
        );
    }
    let r = runner(root)?;
    let (v, _) = store::create(
        r.root(),
        name.as_deref(),
        key_values(&a.label),
        key_values(&a.opt),
    )?;
    println!("{}", v.name);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
    /// Provide filter values (dangling=true|false, name=…, label=KEY[=VALUE], driver=local)
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    format: Option<String>,
}

/// One line of `volume ls`, with Docker's field names.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeRow {
    availability: &'static str,
    driver: &'static str,
    group: &'static str,
    labels: String,
    links: String,
    mountpoint: String,
    name: String,
    scope: &'static str,
    size: String,
    status: &'static str,
}

impl Row for VolumeRow {
    fn cell(&self, field: &str) -> String {
        match field {
            "Driver" => self.driver.into(),
            "Name" => self.name.clone(),
            "Mountpoint" => self.mountpoint.clone(),
            "Labels" => self.labels.clone(),
            "Scope" => self.scope.into(),
            _ => String::new(),
        }
    }
}

/// `--filter` of `volume ls`/`volume prune`: every key must match (values of one key are OR'd).
struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    fn parse(items: &[String], allowed: &[&str]) -> Result<Filters> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in items {
            let Some((k, v)) = f.split_once('=') else {
                bail!("bad format of filter (expected name=value)");
            };
            if !allowed.contains(&k) {
                bail!("invalid filter '{k}'");
            }
            if k == "dangling" && !matches!(v, "true" | "false" | "1" | "0") {
                bail!("invalid filter 'dangling={v}'");
            }
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(Filters(m))
    }

    fn label_matches(v: &Volume, want: &str) -> bool {
        match want.split_once('=') {
            Some((k, val)) => v.meta.labels.get(k).is_some_and(|x| x == val),
            None => v.meta.labels.contains_key(want),
        }
    }

    fn matches(&self, v: &Volume, used: bool) -> bool {
        self.0.iter().all(|(k, vals)| match k.as_str() {
            // Label filters must all hold (Docker's MatchKVList).
            "label" => vals.iter().all(|w| Self::label_matches(v, w)),
            "label!" => vals.iter().all(|w| !Self::label_matches(v, w)),
            _ => vals.iter().any(|want| match k.as_str() {
                "dangling" => matches!(want.as_str(), "true" | "1") != used,
                "name" => v.name.contains(want.as_str()),
                "driver" => want == "local",
                _ => true,
            }),
        })
    }
}

pub fn list(root: &Path, a: ListArgs) -> Result<ExitCode> {
    let filters = Filters::parse(&a.filter, &["dangling", "name", "label", "driver"])?;
    let r = runner(root)?;
    let users = store::users(&r)?;
    let vols: Vec<Volume> = store::list(r.root())?
        .into_iter()
        .filter(|v| filters.matches(v, users.contains_key(&v.name)))
        .collect();
    let mut out = io::stdout().lock();
    if a.quiet {
        for v in &vols {
            writeln!(out, "{}", v.name)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<VolumeRow> = vols
        .iter()
        .map(|v| VolumeRow {
            availability: "N/A",
            driver: "local",
            group: "N/A",
            labels: v
                .meta
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            links: "N/A".into(),
            mountpoint: v.data().display().to_string(),
            name: v.name.clone(),
            scope: "local",
            size: "N/A".into(),
            status: "N/A",
        })
        .collect();
    print_rows(
        &mut out,
        &Format::parse(a.format.as_deref()),
        &[("Driver", "DRIVER"), ("Name", "VOLUME NAME")],
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a Go template or json
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true, value_name = "VOLUME")]
    names: Vec<String>,
}

pub fn inspect(root: &Path, a: InspectArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    let mut docs = Vec::new();
    let mut failed = false;
    for n in &a.names {
        match store::get(r.root(), n) {
            Ok(v) => docs.push(v.inspect_json()),
            Err(_) => {
                eprintln!("Error: No such volume: {n}");
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

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of one or more volumes (a missing one is not an error)
    #[arg(short, long)]
    force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    names: Vec<String>,
}

pub fn rm(root: &Path, a: RmArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    let mut code = ExitCode::SUCCESS;
    for n in &a.names {
        match store::remove(&r, n) {
            Ok(()) => println!("{n}"),
            Err(berth_runner::RunnerError::NoSuchVolume(_)) if a.force => {}
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
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Provide filter values (label=KEY[=VALUE], label!=KEY[=VALUE], all=true)
    #[arg(long = "filter")]
    filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn prune(root: &Path, a: PruneArgs) -> Result<ExitCode> {
    let mut filters = Filters::parse(&a.filter, &["label", "label!", "all"])?;
    let all = a.all
        || filters
            .0
            .remove("all")
            .is_some_and(|v| v.iter().any(|x| matches!(x.as_str(), "true" | "1")));
    if !a.force {
        let what = if all {
            "all local volumes not used by at least one container"
        } else {
            "anonymous local volumes not used by at least one container"
        };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("Aborted.");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let r = runner(root)?;
    let removed = store::prune(&r, all, &|v| !filters.matches(v, false))?;
    let mut out = io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Volumes:")?;
        for (name, _) in &removed {
            writeln!(out, "{name}")?;
        }
        writeln!(out)?;
    }
    let total: u64 = removed.iter().map(|(_, s)| s).sum();
    writeln!(out, "Total reclaimed space: {}", human_size(total))?;
    Ok(ExitCode::SUCCESS)
}

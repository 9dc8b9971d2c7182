//! `info`, `version` and `system check`.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::format::{Format, human_size, render, template};
use super::open_store;

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Display system-wide information
    Info(InfoArgs),
    /// Verify every blob's digest, every image's objects and every snapshot
    Check(CheckArgs),
}

pub fn run(root: &Path, c: SystemCommand) -> Result<ExitCode> {
    match c {
        SystemCommand::Info(a) => info(root, a),
        SystemCommand::Check(a) => check(root, a),
    }
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Format output using a Go template or json
    #[arg(short, long)]
    format: Option<String>,
}

fn cgroup_version() -> &'static str {
    match rustix_statfs_is_cgroup2() {
        true => "2",
        false => "1",
    }
}

fn rustix_statfs_is_cgroup2() -> bool {
    // cgroup2 mounted at /sys/fs/cgroup itself means the unified hierarchy.
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "))
        })
        .unwrap_or(false)
}

fn print_doc(
    format: Option<&str>,
    doc: &Value,
    human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let mut out = io::stdout().lock();
    match Format::parse(format) {
        Format::Json => writeln!(out, "{}", serde_json::to_string(doc)?)?,
        Format::Template { tmpl, .. } => writeln!(out, "{}", render(&template(&tmpl)?, doc)?)?,
        Format::Table => human(&mut out)?,
    }
    Ok(())
}

pub fn info(root: &Path, a: InfoArgs) -> Result<ExitCode> {
    let store = open_store(root)?;
    let images = store.images()?;
    let tags = store.tag_count()?;
    let (blobs, _) = store.blobs().list()?;
    let snapshots = std::fs::read_dir(store.snapshots_dir())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0);
    let used = store.disk_usage().unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let doc = json!({
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "BerthRootDir": store.root().display().to_string(),
        "DockerRootDir": store.root().display().to_string(),
        "Images": images.len(),
        "Tags": tags,
        "Blobs": blobs.len(),
        "Snapshots": snapshots,
        "StorageUsed": used,
        "Driver": "overlay",
        "CgroupVersion": cgroup_version(),
        "KernelVersion": kernel,
        "OperatingSystem": "linux",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    print_doc(a.format.as_deref(), &doc, |out| {
        writeln!(out, "Server Version: {}", env!("CARGO_PKG_VERSION"))?;
        writeln!(out, "Root Dir: {}", store.root().display())?;
        writeln!(out, "Storage Driver: overlay")?;
        writeln!(out, "Storage Used: {}", human_size(used))?;
        writeln!(out, "Images: {} ({} tags)", images.len(), tags)?;
        writeln!(out, " Blobs: {}", blobs.len())?;
        writeln!(out, " Snapshots: {snapshots}")?;
        writeln!(out, "Cgroup Version: {}", cgroup_version())?;
        writeln!(out, "Kernel Version: {kernel}")?;
        writeln!(out, "Architecture: {}", std::env::consts::ARCH)?;
        writeln!(out, "CPUs: {}", doc["NCPU"])
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Format output using a Go template or json
    #[arg(short, long)]
    format: Option<String>,
}

pub fn version(a: VersionArgs) -> Result<ExitCode> {
    let doc = json!({
        "Client": {"Version": env!("CARGO_PKG_VERSION"), "Os": "linux", "Arch": berth_store::import::host_arch()},
        "Version": env!("CARGO_PKG_VERSION"),
    });
    print_doc(a.format.as_deref(), &doc, |out| {
        writeln!(out, "berth version {}", env!("CARGO_PKG_VERSION"))?;
        writeln!(out, " OS/Arch: linux/{}", berth_store::import::host_arch())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Print only problems
    #[arg(short, long)]
    quiet: bool,
}

pub fn check(root: &Path, a: CheckArgs) -> Result<ExitCode> {
    let store = open_store(root)?;
    let rep = store.check()?;
    // Steps of builds killed with their sandbox child: their owner is gone, so they go.
    let stale = super::build_sandbox::sweep_stale_steps(root);
    let mut out = io::stdout().lock();
    if !a.quiet && !stale.is_empty() {
        writeln!(
            out,
            "note: removed the runtime state and cgroups of {} step(s) of killed builds",
            stale.len()
        )?;
    }
    for p in &rep.problems {
        writeln!(out, "PROBLEM: {p}")?;
    }
    if !a.quiet {
        for n in &rep.notes {
            writeln!(out, "note: {n}")?;
        }
        writeln!(
            out,
            "checked {} blobs, {} images, {} snapshots: {}",
            rep.blobs,
            rep.images,
            rep.snapshots,
            if rep.ok() {
                "no problems".to_string()
            } else {
                format!("{} problem(s)", rep.problems.len())
            }
        )?;
    }
    Ok(if rep.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

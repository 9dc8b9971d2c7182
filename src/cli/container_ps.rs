//! `ps`: the container list as Docker prints it (columns, `--format`, `--filter`, `-n`/`-l`).

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use berth_runner::container::filter::Filters;
use berth_runner::state::Status;
use berth_runner::{Container, Runner};
use clap::Args;

use crate::cli::format::{Format, Row, human_duration, print_rows};
use crate::cli::open_store;

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_hyphen_values = true)]
    last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    latest: bool,
    /// Display total file sizes (accepted for Docker compatibility)
    #[arg(short, long)]
    size: bool,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct PsRow {
    command: String,
    created_at: String,
    #[serde(rename = "ID")]
    id: String,
    image: String,
    labels: String,
    local_volumes: String,
    mounts: String,
    names: String,
    networks: String,
    ports: String,
    running_for: String,
    size: String,
    state: String,
    status: String,
}

impl Row for PsRow {
    fn cell(&self, field: &str) -> String {
        match field {
            "ID" => self.id.clone(),
            "Image" => self.image.clone(),
            "Command" => self.command.clone(),
            "RunningFor" => self.running_for.clone(),
            "Status" => self.status.clone(),
            "Ports" => self.ports.clone(),
            "Names" => self.names.clone(),
            "State" => self.state.clone(),
            "CreatedAt" => self.created_at.clone(),
            "Labels" => self.labels.clone(),
            _ => String::new(),
        }
    }
}

/// The PORTS column: "0.0.0.0:8080->80/tcp, 53/udp" (exposed but unpublished ports bare).
fn ports_text(c: &Container) -> String {
    let mut out: Vec<String> = Vec::new();
    if c.is_running() {
        for (k, bs) in &c.state.ports {
            for b in bs {
                out.push(format!("{}:{}->{k}", b.host_ip, b.host_port));
            }
        }
    }
    if let Some(exp) = &c.record.config.exposed_ports {
        for k in exp.keys() {
            if !c.is_running() || !c.state.ports.contains_key(k) {
                out.push(k.clone());
            }
        }
    }
    out.join(", ")
}

fn ps_row(c: &Container, no_trunc: bool, now: chrono::DateTime<chrono::Utc>) -> PsRow {
    let mut command = std::iter::once(c.record.path.as_str())
        .chain(c.record.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    if !no_trunc && command.chars().count() > 20 {
        command = format!("{}…", command.chars().take(19).collect::<String>());
    }
    let created = chrono::DateTime::parse_from_rfc3339(&c.record.created).ok();
    PsRow {
        command: format!("\"{command}\""),
        created_at: created
            .map(|t| {
                t.with_timezone(&chrono::Utc)
                    .format("%Y-%m-%d %H:%M:%S +0000 UTC")
                    .to_string()
            })
            .unwrap_or_default(),
        id: if no_trunc {
            c.id().to_string()
        } else {
            c.short_id().to_string()
        },
        image: c.record.config.image.clone(),
        labels: c
            .record
            .config
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        local_volumes: "0".into(),
        mounts: String::new(),
        names: c.name().to_string(),
        networks: if c.record.networking_config.is_empty() {
            c.record.host_config.network_mode.clone()
        } else {
            c.record
                .networking_config
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(",")
        },
        ports: ports_text(c),
        running_for: created
            .map(|t| {
                format!(
                    "{} ago",
                    human_duration(now.signed_duration_since(t.with_timezone(&chrono::Utc)))
                )
            })
            .unwrap_or_default(),
        size: String::new(),
        state: c.state.status.as_str().to_string(),
        status: describe(&c.state, now),
    }
}

/// `Up 3 minutes` / `Exited (0) 2 seconds ago` / `Created`, as `docker ps` shows it.
fn describe(st: &berth_runner::state::State, now: chrono::DateTime<chrono::Utc>) -> String {
    let since = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| human_duration(now.signed_duration_since(t.with_timezone(&chrono::Utc))))
            .unwrap_or_default()
    };
    match st.status {
        Status::Running => format!("Up {}", since(&st.started_at)),
        Status::Paused => format!("Up {} (Paused)", since(&st.started_at)),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            st.exit_code,
            since(&st.finished_at)
        ),
        Status::Exited if st.finished_at != berth_runner::state::ZERO_TIME => {
            format!("Exited ({}) {} ago", st.exit_code, since(&st.finished_at))
        }
        Status::Exited => format!("Exited ({})", st.exit_code),
        Status::Created => "Created".into(),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

pub fn ps(root: &Path, a: PsArgs) -> Result<ExitCode> {
    let r = Runner::open(open_store(root)?)?;
    let filters = Filters::parse(&a.filter)?;
    let all = a.all || a.last >= 0 || a.latest || filters.has("status") || filters.has("exited");
    let mut list: Vec<Container> = r
        .list()?
        .into_iter()
        .filter(|c| all || c.is_running())
        .filter(|c| filters.matches(c))
        .collect();
    if a.latest {
        list.truncate(1);
    } else if a.last >= 0 {
        list.truncate(a.last as usize);
    }
    let mut out = io::stdout().lock();
    if a.quiet {
        for c in &list {
            writeln!(out, "{}", if a.no_trunc { c.id() } else { c.short_id() })?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let now = chrono::Utc::now();
    let rows: Vec<PsRow> = list.iter().map(|c| ps_row(c, a.no_trunc, now)).collect();
    let columns = [
        ("ID", "CONTAINER ID"),
        ("Image", "IMAGE"),
        ("Command", "COMMAND"),
        ("RunningFor", "CREATED"),
        ("Status", "STATUS"),
        ("Ports", "PORTS"),
        ("Names", "NAMES"),
    ];
    print_rows(
        &mut out,
        &Format::parse(a.format.as_deref()),
        &columns,
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

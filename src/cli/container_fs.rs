//! The commands that read or write a container's filesystem: `cp`, `export`, `diff`, `commit`,
//! and `top` (its processes), under their top-level names and under `berth container …`.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use berth_runner::copy::CopyOptions;
use berth_runner::{Container, Runner, RunnerError};
use berth_store::Reference;
use berth_store::commit::CommitConfig;
use clap::Args;
use serde_json::{Map, Value, json};

use super::open_store;

fn runner(root: &Path) -> Result<Runner> {
    Ok(Runner::open(open_store(root)?)?)
}

/// A runner error as Docker's CLI reports it: message on stderr, its exit code.
fn fail(e: RunnerError) -> ExitCode {
    eprintln!("Error: {e}");
    ExitCode::from(e.exit_code())
}

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    follow_link: bool,
    /// Suppress progress output during copy (berth prints none)
    #[arg(short = 'q', long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH or SRC_PATH|- (local)
    #[arg(value_name = "SRC")]
    src: String,
    /// DEST_PATH|- (local) or CONTAINER:DEST_PATH
    #[arg(value_name = "DEST")]
    dest: String,
}

/// Docker's `splitCpArg`: `NAME:PATH` names a container unless the argument is a local path
/// (absolute, or starting with `.`).
fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') || arg.starts_with('.') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => (Some(c), p),
        _ => (None, arg),
    }
}

pub fn cp(root: &Path, a: CpArgs) -> Result<ExitCode> {
    let _ = a.quiet;
    let opts = CopyOptions {
        archive: a.archive,
        follow_link: a.follow_link,
    };
    let (src_c, src_p) = split_cp_arg(&a.src);
    let (dst_c, dst_p) = split_cp_arg(&a.dest);
    let r = runner(root)?;
    match (src_c, dst_c) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
        (Some(name), None) => {
            let c = match r.get(name) {
                Ok(c) => c,
                Err(e) => return Ok(fail(e)),
            };
            if src_p.is_empty() {
                bail!("source path can not be empty");
            }
            let mut out = io::stdout().lock();
            let dest = (dst_p != "-").then(|| PathBuf::from(dst_p));
            if dest.is_none() && out.is_terminal() {
                bail!("cowardly refusing to write a tar archive to a terminal; redirect it");
            }
            if let Err(e) = berth_runner::copy::copy_from_container(
                &r,
                &c,
                src_p,
                dest.as_deref(),
                &mut out,
                opts,
            ) {
                return Ok(fail(e));
            }
            out.flush().context("writing to standard output")?;
        }
        (None, Some(name)) => {
            let c = match r.get(name) {
                Ok(c) => c,
                Err(e) => return Ok(fail(e)),
            };
            if dst_p.is_empty() {
                bail!("destination path can not be empty");
            }
            let src = (src_p != "-").then(|| PathBuf::from(src_p));
            let mut input = io::stdin().lock();
            if let Err(e) = berth_runner::copy::copy_to_container(
                &r,
                &c,
                src.as_deref(),
                &mut input,
                dst_p,
                opts,
            ) {
                return Ok(fail(e));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    container: String,
}

pub fn export(root: &Path, a: ExportArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    let c = match r.get(&a.container) {
        Ok(c) => c,
        Err(e) => return Ok(fail(e)),
    };
    match &a.output {
        Some(path) => {
            let res = super::outfile::write(path, "failed to export container", |w| {
                berth_runner::fsview::export(&r, &c, w)
            })?;
            if let Err(e) = res {
                return Ok(fail(e));
            }
        }
        None => {
            let out = io::stdout().lock();
            if out.is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut w = io::BufWriter::with_capacity(1 << 20, out);
            if let Err(e) = berth_runner::fsview::export(&r, &c, &mut w) {
                return Ok(fail(e));
            }
            w.flush().context("writing to standard output")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    container: String,
}

fn lowers(r: &Runner, c: &Container) -> std::result::Result<Vec<PathBuf>, RunnerError> {
    let img = r.store().resolve_image(&c.record.image)?;
    Ok(r.store().ensure_snapshots(&img)?)
}

pub fn diff(root: &Path, a: DiffArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    let c = match r.get(&a.container) {
        Ok(c) => c,
        Err(e) => return Ok(fail(e)),
    };
    let changes = lowers(&r, &c).and_then(|l| {
        berth_store::layers::changes(&c.paths.upper(), &l).map_err(RunnerError::from)
    });
    let changes = match changes {
        Ok(ch) => ch,
        Err(e) => return Ok(fail(e)),
    };
    let mut out = io::stdout().lock();
    for ch in changes {
        writeln!(out, "{} {}", ch.kind.letter(), ch.path).context("writing to standard output")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Pause container during commit (the default; -p=false to read its changes while it runs)
    #[arg(short = 'p', long, num_args = 0..=1, default_value = "true", default_missing_value = "true", action = clap::ArgAction::Set)]
    pause: bool,
    container: String,
    /// REPOSITORY[:TAG]
    repository: Option<String>,
}

/// The image config's `config` for a committed container: the image's, overridden by what the
/// container was created with (as Docker's commit merges them).
fn committed_config(
    r: &Runner,
    c: &Container,
) -> std::result::Result<Map<String, Value>, RunnerError> {
    let img = r.store().resolve_image(&c.record.image)?;
    let bytes = r.store().config_bytes(&img)?;
    let parent: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut m = parent
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let cc = &c.record.config;
    let mut set = |k: &str, v: Option<Value>| match v {
        Some(v) => {
            m.insert(k.to_string(), v);
        }
        None => {
            m.remove(k);
        }
    };
    set("User", (!cc.user.is_empty()).then(|| json!(cc.user)));
    set(
        "ExposedPorts",
        cc.exposed_ports
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(|p| json!(p)),
    );
    // berth adds HOSTNAME (and TERM for a tty) at create; Docker adds them when it starts.
    let env: Vec<&String> = cc
        .env
        .iter()
        .filter(|e| **e != format!("HOSTNAME={}", cc.hostname))
        .filter(|e| !(cc.tty && *e == "TERM=xterm"))
        .collect();
    set("Env", (!env.is_empty()).then(|| json!(env)));
    set("Entrypoint", cc.entrypoint.as_ref().map(|e| json!(e)));
    set("Cmd", cc.cmd.as_ref().map(|e| json!(e)));
    set(
        "Volumes",
        cc.volumes
            .as_ref()
            .filter(|v| !v.is_empty())
            .map(|v| json!(v)),
    );
    set(
        "WorkingDir",
        (!cc.working_dir.is_empty()).then(|| json!(cc.working_dir)),
    );
    set("Labels", (!cc.labels.is_empty()).then(|| json!(cc.labels)));
    set("StopSignal", cc.stop_signal.as_ref().map(|s| json!(s)));
    Ok(m)
}

pub fn commit(root: &Path, a: CommitArgs) -> Result<ExitCode> {
    let tags: Vec<Reference> = match &a.repository {
        Some(s) => {
            let r =
                Reference::parse(s).with_context(|| format!("invalid reference format: {s}"))?;
            if r.digest().is_some() {
                bail!("invalid reference format: {s}: a commit cannot be named with a digest");
            }
            vec![r]
        }
        None => Vec::new(),
    };
    // A bad --change fails before anything is read.
    berth_builder::change::apply_changes(&mut Map::new(), &a.change)?;
    let r = runner(root)?;
    let c = match r.get(&a.container) {
        Ok(c) => c,
        Err(e) => return Ok(fail(e)),
    };
    // -p (the default): the container is frozen while its changes are read, as Docker does.
    let mut frozen = c.clone();
    let paused = a.pause
        && c.state.status == berth_runner::state::Status::Running
        && match r.pause(&mut frozen) {
            Ok(()) => true,
            Err(e) => return Ok(fail(e)),
        };
    let made = (|| -> std::result::Result<_, RunnerError> {
        let img = r.store().resolve_image(&c.record.image)?;
        let lowers = r.store().ensure_snapshots(&img)?;
        let mut config = committed_config(&r, &c)?;
        berth_builder::change::apply_changes(&mut config, &a.change)
            .map_err(berth_store::StoreError::from)?;
        // The layer goes through a temp file in the store: a tar of the upper directory is
        // written, then stored (and checked) in one pass.
        let tmp_dir = r.store().tmp_dir();
        let mut tmp = tempfile::tempfile_in(&tmp_dir)
            .map_err(|e| RunnerError::io("creating a temp file in", tmp_dir.clone(), e))?;
        {
            let w = io::BufWriter::with_capacity(1 << 20, &mut tmp);
            berth_store::layers::write_layer(&c.paths.upper(), &lowers, w)?;
        }
        io::Seek::rewind(&mut tmp).map_err(|e| RunnerError::io("reading", tmp_dir.clone(), e))?;
        let cfg = CommitConfig {
            config,
            created_by: c.record.config.cmd.clone().unwrap_or_default().join(" "),
            comment: a.message.clone(),
            author: a.author.clone(),
            container: Some(c.id().to_string()),
        };
        Ok(r.store().commit_layer(
            Some(&img),
            io::BufReader::with_capacity(1 << 20, tmp),
            &cfg,
            &tags,
        )?)
    })();
    if paused && let Err(e) = r.unpause(&mut frozen) {
        eprintln!("Error: {e}");
    }
    match made {
        Ok(img) => {
            println!("{}", img.id);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(e)),
    }
}

#[derive(Args, Debug)]
pub struct TopArgs {
    container: String,
    /// Options passed to ps (default -ef)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ps OPTIONS"
    )]
    ps_args: Vec<String>,
}

pub fn top(root: &Path, a: TopArgs) -> Result<ExitCode> {
    let r = runner(root)?;
    let c = match r.get(&a.container) {
        Ok(c) => c,
        Err(e) => return Ok(fail(e)),
    };
    match berth_runner::top::top(&c, &a.ps_args) {
        Ok(t) => {
            print!("{}", berth_runner::top::render(&t));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(e)),
    }
}

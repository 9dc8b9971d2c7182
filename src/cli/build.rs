//! `berth build`: Docker's flags, the builder's plan and cache, and the runner's sandbox plugged
//! in as the builder's executor (each RUN step runs in a `berth __build-run` child, see
//! [`super::build_sandbox`], so this process may have threads and Ctrl-C stops a build cleanly).

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use berth_builder::progress::{Plain, Progress, Quiet, Tty};
use berth_builder::run_mounts::SecretSource;
use berth_builder::{BuildOptions, ExecError, Executor, NetworkMode, RunMount, RunSpec};
use berth_runner::bundle::{self, BundleInput};
use berth_runner::state::{ContainerConfig, ContainerRecord};
use berth_store::Reference;
use clap::Args;

use super::open_store;

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag (format: "name:tag")
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile"; "-" reads it from stdin)
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    no_cache: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Set metadata for an image
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Set type of progress output ("auto", "plain", "tty")
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Output destination (format: "type=local,dest=path"; types oci, docker, tar, local; "-o
    /// DIR" is type=local, "-o -" a tar on stdout)
    #[arg(short = 'o', long = "output")]
    outputs: Vec<String>,
    /// Layer compression of --output type=oci|docker: gzip, zstd or uncompressed
    #[arg(long)]
    compression: Option<String>,
    /// Do not cache specified stages
    #[arg(long = "no-cache-filter", value_delimiter = ',')]
    no_cache_filter: Vec<String>,
    /// Check the Dockerfile for problems without building (shorthand for "--call=check")
    #[arg(long)]
    check: bool,
    /// Build context directory
    context: String,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pull: bool,
    /// Secret to expose to the build (format: "id=mysecret[,src=/local/secret]" or
    /// "id=mysecret,env=VARIABLE")
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// SSH agent socket to expose to the build (format: "default|<id>[=<socket>]")
    #[arg(long = "ssh")]
    ssh: Vec<String>,
    /// Cache export destinations (format: "type=registry,ref=HOST/REPO:TAG[,mode=min|max]",
    /// "type=local,dest=DIR[,mode=max]")
    #[arg(long = "cache-to")]
    cache_to: Vec<String>,
    /// External cache sources (format: "type=registry,ref=HOST/REPO:TAG", "type=local,src=DIR")
    #[arg(long = "cache-from")]
    cache_from: Vec<String>,
}

/// `--secret` as docker buildx reads it: `id=ID[,src=PATH|,env=VAR][,type=file|env]`; with
/// neither `src` nor `env`, the variable named ID when set, else the file named ID.
fn parse_secret(spec: &str) -> Result<(String, SecretSource)> {
    let (mut id, mut src, mut env, mut typ) = (None, None, None, None);
    for field in spec.split(',') {
        let Some((k, v)) = field.split_once('=') else {
            bail!("invalid --secret {spec:?}: field {field:?} must be a key=value pair");
        };
        match k.to_ascii_lowercase().as_str() {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            "type" if v == "file" || v == "env" => typ = Some(v.to_string()),
            "type" => {
                bail!("invalid --secret {spec:?}: unsupported secret type {v:?} (use file or env)")
            }
            _ => {
                bail!("invalid --secret {spec:?}: unexpected key {k:?} (use id, src, env or type)")
            }
        }
    }
    let Some(id) = id.filter(|i| !i.is_empty()) else {
        bail!("invalid --secret {spec:?}: id=NAME is required");
    };
    if typ.as_deref() == Some("env") && env.is_none() {
        env = src.take().or_else(|| Some(id.clone()));
    }
    let source = match (src, env) {
        (Some(_), Some(_)) => bail!("invalid --secret {spec:?}: give src or env, not both"),
        (Some(p), None) => SecretSource::File(PathBuf::from(p)),
        (None, Some(v)) => {
            if std::env::var_os(&v).is_none() {
                bail!("secret {id}: the environment variable {v} is not set");
            }
            SecretSource::Env(v)
        }
        (None, None) if typ.as_deref() != Some("file") && std::env::var_os(&id).is_some() => {
            SecretSource::Env(id.clone())
        }
        (None, None) => SecretSource::File(PathBuf::from(&id)),
    };
    if let SecretSource::File(p) = &source
        && let Err(e) = std::fs::metadata(p)
    {
        bail!(
            "secret {id}: cannot read {}: {e} (use --secret id={id},src=FILE or env=VARIABLE)",
            p.display()
        );
    }
    Ok((id, source))
}

/// `--ssh` as docker buildx reads it: `ID[=SOCKET]`, `$SSH_AUTH_SOCK` when no path is given.
/// berth forwards agent sockets; key files need an agent (`ssh-add KEY`).
fn parse_ssh(spec: &str) -> Result<(String, PathBuf)> {
    use std::os::unix::fs::FileTypeExt;
    let (id, paths) = spec.split_once('=').unwrap_or((spec, ""));
    if id.is_empty() {
        bail!("invalid --ssh {spec:?}: use default or ID[=SOCKET]");
    }
    let path = match paths {
        "" => match std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
            Some(s) => PathBuf::from(s),
            None => bail!(
                "--ssh {id}: no socket given and SSH_AUTH_SOCK is not set (start ssh-agent, or pass --ssh {id}=SOCKET)"
            ),
        },
        p if p.contains(',') => {
            bail!("--ssh {id}: berth forwards one agent socket per id, not a list ({p})")
        }
        p => PathBuf::from(p),
    };
    let md = std::fs::metadata(&path)
        .with_context(|| format!("--ssh {id}: cannot use {}", path.display()))?;
    if !md.file_type().is_socket() {
        bail!(
            "--ssh {id}: {} is not an SSH agent socket; berth forwards agents only, so load a key into one (ssh-add KEY) and pass --ssh {id}=$SSH_AUTH_SOCK",
            path.display()
        );
    }
    Ok((id.to_string(), path))
}

fn split_kv(s: &str) -> (String, String) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (s.to_string(), String::new()),
    }
}

pub fn build(root: &Path, a: BuildArgs) -> Result<ExitCode> {
    if !matches!(a.progress.as_str(), "auto" | "plain" | "tty" | "quiet") {
        bail!(
            "invalid --progress {:?}: use auto, plain or tty",
            a.progress
        );
    }
    let cache_to = a
        .cache_to
        .iter()
        .map(|s| berth_builder::cache_io::CacheTo::parse(s).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let cache_from = a
        .cache_from
        .iter()
        .map(|s| berth_builder::cache_io::CacheFrom::parse(s).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    // `-`: a tar context (or a lone Dockerfile) on stdin, unpacked into a scratch directory
    // that lives as long as the build.
    let mut stdin_dockerfile = None;
    let stdin_dir;
    let context = if a.context == "-" {
        if a.file.as_deref() == Some("-") {
            bail!("the context and the Dockerfile cannot both come from stdin");
        }
        // A locked scratch directory: the next build removes it if this one is killed.
        stdin_dir = berth_builder::scratch_dir(root)?;
        let dir = stdin_dir.0.path().join("context");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the build context from stdin")?;
        match berth_builder::context::context_from_stdin(&bytes, &dir)
            .context("unpacking the build context from stdin")?
        {
            berth_builder::context::StdinContext::Archive => {}
            berth_builder::context::StdinContext::Dockerfile(d) => stdin_dockerfile = Some(d),
        }
        dir
    } else {
        PathBuf::from(&a.context)
    };
    if !context.is_dir() {
        bail!(
            "unable to prepare context: path {:?} not found or not a directory",
            a.context
        );
    }
    let (dockerfile, dockerfile_path) = match a.file.as_deref() {
        _ if stdin_dockerfile.is_some() => (
            stdin_dockerfile.take().unwrap_or_default(),
            context.join("Dockerfile"),
        ),
        // With a context on stdin, -f names a file inside it.
        Some(f) if a.context == "-" => {
            let p = context.join(f);
            let s = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read Dockerfile {f} in the context from stdin"))?;
            (s, p)
        }
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the Dockerfile from stdin")?;
            (s, context.join("Dockerfile"))
        }
        Some(f) => {
            let p = PathBuf::from(f);
            let s = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read Dockerfile {}", p.display()))?;
            (s, p)
        }
        None => {
            let p = context.join("Dockerfile");
            let s = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read Dockerfile {}", p.display()))?;
            (s, p)
        }
    };
    let build_args: std::collections::BTreeMap<String, String> = a
        .build_args
        .iter()
        .filter_map(|s| match s.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            // `--build-arg NAME` takes the value from the environment, as Docker does; unset
            // there, the argument is not passed at all (its ARG default applies).
            None => std::env::var(s).ok().map(|v| (s.clone(), v)),
        })
        .collect();
    let shown_name = a
        .file
        .as_deref()
        .filter(|f| *f != "-")
        .map(|f| {
            Path::new(f)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| f.to_string())
        })
        .unwrap_or_else(|| "Dockerfile".into());
    let df = berth_builder::frontend::parse(&dockerfile)
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().replacen("Dockerfile", &shown_name, 1)))?;
    let store = open_store(root)?;
    let lint_opts = lint_options(&store, &df, &context, &dockerfile_path, &build_args);
    let report = berth_builder::lint::lint(&df, &lint_opts);
    if a.check {
        // Plan too (an unknown --target, bad expansions), without any base image.
        berth_builder::frontend::plan::plan(
            &df,
            &berth_builder::frontend::plan::PlanOptions {
                build_args: build_args.clone(),
                target: a.target.clone(),
                ..Default::default()
            },
        )?;
        let mut out = std::io::stdout().lock();
        berth_builder::lint::print_check(&mut out, &report, &dockerfile, &shown_name);
        if let Some(v) = report.violation() {
            bail!("{v}");
        }
        return Ok(if report.warnings.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if let Some(v) = report.violation() {
        bail!("{v}");
    }
    let output = match a.outputs.as_slice() {
        [] => None,
        [one] => Some(super::build_output::OutputSpec::parse(
            one,
            a.compression.as_deref(),
        )?),
        _ => bail!("multiple outputs are not supported: give one --output"),
    };
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().parse::<u64>().map_err(|_| {
            anyhow::anyhow!(
                "invalid SOURCE_DATE_EPOCH {v:?} in the environment: expected seconds since 1970"
            )
        })?),
        _ => None,
    };
    let tags = a
        .tags
        .iter()
        .map(|t| {
            Reference::parse(t)
                .with_context(|| format!("invalid tag {t:?}"))
                .map(|r| r.with_default_tag())
        })
        .collect::<Result<Vec<_>>>()?;
    // The build arg wins over the environment, as in the builder.
    let epoch = build_args
        .get("SOURCE_DATE_EPOCH")
        .and_then(|v| v.trim().parse().ok())
        .or(source_date_epoch);
    let mut tags = tags;
    if let Some(o) = &output {
        for n in &o.names {
            if !tags.contains(n) {
                tags.push(n.clone());
            }
        }
    }
    let opts = BuildOptions {
        context,
        dockerfile,
        dockerfile_path,
        build_args,
        target: a.target.clone(),
        no_cache: a.no_cache,
        labels: a.labels.iter().map(|l| split_kv(l)).collect(),
        tags: tags.clone(),
        pull: a.pull,
        secrets: a
            .secrets
            .iter()
            .map(|s| parse_secret(s))
            .collect::<Result<_>>()?,
        ssh: a.ssh.iter().map(|s| parse_ssh(s)).collect::<Result<_>>()?,
        export_only: output.is_some(),
        source_date_epoch,
        no_cache_filter: a.no_cache_filter.clone(),
        cache_io: None,
    };
    let mut opts = opts;
    let exec = SandboxExecutor {
        root: root.to_path_buf(),
        cancel: super::build_sandbox::Cancel::new().context("creating a pipe")?,
    };
    let mut plain;
    let mut tty;
    let mut quiet = Quiet;
    let on_terminal = std::io::stderr().is_terminal();
    let progress: &mut (dyn Progress + Send) = if a.quiet || a.progress == "quiet" {
        &mut quiet
    } else if a.progress == "tty" || (a.progress == "auto" && on_terminal) {
        tty = Tty::new(std::io::stderr(), terminal_width());
        &mut tty
    } else {
        plain = Plain::new(std::io::stderr());
        &mut plain
    };
    // Held shared for the build: `builder prune` waits for running builds (it would take the
    // step images and snapshots they stand on).
    let _building = build_lock(root, false)?;
    // What builds killed with their steps' children left behind (runtime state, cgroups).
    super::build_sandbox::sweep_stale_steps(root);
    // From here Ctrl-C stops the build cleanly (a second one ends it at once).
    super::build_sandbox::Interrupt::install();
    let remote_opts = berth_store::remote::Options::for_root(&store, &[])?;
    if !cache_from.is_empty() || !cache_to.is_empty() {
        let io = if cache_from.is_empty() || a.no_cache {
            berth_builder::cache_io::CacheIo::empty()
        } else {
            for f in &cache_from {
                progress.note(&format!("importing cache manifest from {}", f.location));
            }
            berth_builder::cache_io::CacheIo::import(&cache_from, &remote_opts, &mut |w| {
                progress.note(w)
            })
        };
        opts.cache_io = Some(std::sync::Arc::new(io));
    }
    let built = berth_builder::build(&store, &exec, &opts, progress);
    progress.finish();
    let img = match built {
        Ok(img) => img,
        Err(e @ berth_builder::BuildError::Interrupted) => {
            eprintln!("Error: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
        Err(e) => return Err(e.into()),
    };
    match &output {
        None => {
            progress.note(&format!("writing image {} done", img.id));
            for t in &tags {
                progress.note(&format!("naming to {t} done"));
            }
        }
        Some(_) if exec.interrupted() => {
            let e = berth_builder::BuildError::Interrupted;
            eprintln!("Error: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
        Some(o) => {
            let started = std::time::Instant::now();
            let what = o.export(&store, &img, &tags, epoch)?;
            progress.note(&format!(
                "exporting to {what} done {:.1}s",
                started.elapsed().as_secs_f64()
            ));
        }
    }
    // As buildx: a failed export fails the build (the image is kept), unless ignore-error=true.
    let mut export_failed = false;
    if let Some(io) = &opts.cache_io {
        for to in &cache_to {
            let started = std::time::Instant::now();
            match io.export(&store, &img, to, &remote_opts) {
                Ok(st) => {
                    let mut what = format!(
                        "{} steps, {} layers ({} uploaded)",
                        st.records, st.layers, st.layers_uploaded
                    );
                    if st.mounts > 0 {
                        what.push_str(&format!(
                            ", {} cache mounts in {} chunks ({} uploaded)",
                            st.mounts, st.chunks, st.chunks_uploaded
                        ));
                    }
                    progress.note(&format!(
                        "exporting cache to {}: {what} done {:.1}s",
                        to.location,
                        started.elapsed().as_secs_f64()
                    ));
                }
                Err(e) if to.ignore_error => progress.note(&format!(
                    "WARNING: failed to export cache to {}: {e}",
                    to.location
                )),
                Err(e) => {
                    eprintln!("ERROR: failed to export cache to {}: {e}", to.location);
                    export_failed = true;
                }
            }
        }
    }
    if let Some(s) = berth_builder::lint::summary(&report) {
        progress.note(&s);
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, img.id.to_string())
            .with_context(|| format!("writing the image ID to {}", f.display()))?;
    }
    // With the archive on stdout, the ID would corrupt it.
    let stdout_taken = output
        .as_ref()
        .is_some_and(|o| o.dest == super::build_output::Dest::Stdout);
    if a.quiet && !stdout_taken {
        println!("{}", img.id);
    }
    if export_failed {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The terminal's columns (`COLUMNS`, else the window size), 80 when unknown.
fn terminal_width() -> usize {
    if let Some(c) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return c;
    }
    berth_runner::terminal::stderr_size()
        .map(|(_, c)| c as usize)
        .filter(|&c| c > 0)
        .unwrap_or(80)
}

/// What the linter may know beyond the Dockerfile: base images' environments where they are
/// already local (nothing is pulled), and the context's ignore rules.
fn lint_options(
    store: &berth_store::Store,
    df: &berth_builder::frontend::Dockerfile,
    context: &Path,
    dockerfile_path: &Path,
    build_args: &std::collections::BTreeMap<String, String>,
) -> berth_builder::lint::LintOptions {
    let mut image_env = std::collections::BTreeMap::new();
    for ins in &df.instructions {
        if let berth_builder::frontend::Command::From(f) = &ins.command
            && !f.image.contains('$')
            && let Ok(img) = store.resolve_image(&f.image)
            && let Ok(cfg) = store.config(&img)
        {
            let env = cfg
                .config()
                .as_ref()
                .and_then(|c| c.env().clone())
                .unwrap_or_default()
                .iter()
                .map(|e| match e.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (e.clone(), String::new()),
                })
                .collect::<Vec<_>>();
            image_env.insert(f.image.clone(), env);
        }
    }
    berth_builder::lint::LintOptions {
        build_args: build_args.clone(),
        image_env,
        ignore: berth_builder::ignore::Ignore::for_build(context, dockerfile_path)
            .ok()
            .map(|(i, _)| i),
    }
}

/// The builder's executor: overlay mounts, the change walk and the embedded sandbox of the runner.
struct SandboxExecutor {
    root: PathBuf,
    cancel: super::build_sandbox::Cancel,
}

fn xerr(e: impl std::fmt::Display) -> ExecError {
    ExecError(e.to_string())
}

impl Executor for SandboxExecutor {
    fn mount(
        &self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<(), ExecError> {
        berth_runner::rootfs::mount_overlay(lowers, upper, work, target).map_err(xerr)
    }

    fn unmount(&self, target: &Path) -> Result<(), ExecError> {
        berth_runner::rootfs::unmount(target)
            .map(|_| ())
            .map_err(xerr)
    }

    fn write_layer(
        &self,
        upper: &Path,
        lowers: &[PathBuf],
        out: &mut dyn std::io::Write,
    ) -> Result<(), ExecError> {
        berth_store::layers::write_layer(upper, lowers, out).map_err(xerr)
    }

    fn interrupted(&self) -> bool {
        super::build_sandbox::Interrupt::get().is_some_and(|i| i.raised())
    }

    fn run(&self, spec: &RunSpec<'_>, output: &mut dyn FnMut(&[u8])) -> Result<i32, ExecError> {
        let id = super::build_sandbox::step_id();
        // The working directory exists before the process starts in it (as BuildKit makes it).
        let cwd_host = berth_store::inroot::resolve(spec.rootfs, &spec.cwd, true).map_err(xerr)?;
        berth_builder::copy::mkdir_all(&cwd_host, (0, 0)).map_err(xerr)?;
        let user = berth_runner::user::resolve_user(spec.rootfs, &spec.user).map_err(xerr)?;
        let hostname = spec.scratch.join("hostname");
        let hosts = spec.scratch.join("hosts");
        let resolv = spec.scratch.join("resolv.conf");
        let write = |p: &Path, s: &str| std::fs::write(p, s).map_err(xerr);
        write(&hostname, "buildkitsandbox\n")?;
        write(
            &hosts,
            "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        )?;
        let resolv_text = match spec.network {
            NetworkMode::Host => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            NetworkMode::None => String::new(),
        };
        write(&resolv, &resolv_text)?;
        let record = ContainerRecord {
            id: id.clone(),
            path: spec.argv.first().cloned().unwrap_or_default(),
            args: spec.argv.iter().skip(1).cloned().collect(),
            config: ContainerConfig {
                hostname: "buildkitsandbox".into(),
                user: spec.user.clone(),
                env: spec.env.clone(),
                working_dir: spec.cwd.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        let cgroups_path = berth_runner::cgroups::path_for(&id);
        let oci = bundle::spec(&BundleInput {
            record: &record,
            rootfs: spec.rootfs,
            user: &user,
            args: spec.argv.clone(),
            network: match spec.network {
                NetworkMode::None => bundle::NetworkMode::None,
                NetworkMode::Host => bundle::NetworkMode::Host,
            },
            cgroups_path: cgroups_path.clone(),
            hostname_file: &hostname,
            hosts_file: &hosts,
            resolv_conf: &resolv,
            mounts: spec
                .mounts
                .iter()
                .map(|m| match m {
                    RunMount::Bind {
                        target,
                        source,
                        read_only,
                    } => {
                        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
                        if *read_only {
                            options.push("ro".into());
                        }
                        bundle::ExtraMount {
                            destination: target.clone(),
                            kind: "bind".into(),
                            source: source.display().to_string(),
                            options,
                        }
                    }
                    RunMount::Tmpfs { target, size } => {
                        let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
                        if let Some(size) = size {
                            options.push(format!("size={size}"));
                        }
                        bundle::ExtraMount {
                            destination: target.clone(),
                            kind: "tmpfs".into(),
                            source: "tmpfs".into(),
                            options,
                        }
                    }
                })
                .collect(),
            cgroup_v2: berth_runner::cgroups::is_v2(),
            console_size: None,
        })
        .map_err(xerr)?;
        bundle::write(spec.scratch, &oci).map_err(xerr)?;
        super::build_sandbox::run_step(
            &super::build_sandbox::StepRun {
                state_root: &self.root,
                id: &id,
                bundle: spec.scratch,
                cgroup: &cgroups_path,
                loopback: spec.network == NetworkMode::None,
            },
            &self.cancel,
            output,
        )
    }

    fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// `ROOT/builder/build.lock`: shared by each build, exclusive for `builder prune` (which says
/// so when it has to wait).
fn build_lock(root: &Path, exclusive: bool) -> Result<std::fs::File> {
    Ok(berth_builder::prune::build_lock(root, exclusive, || {
        if exclusive {
            eprintln!("waiting for the builds running on this root to finish…");
        }
    })?)
}

/// `berth builder …`.
#[derive(clap::Subcommand, Debug)]
pub enum BuilderCommand {
    /// Remove build cache
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused build cache, not just dangling ones (berth's cache has no dangling
    /// kind: both remove every record)
    #[arg(short = 'a', long)]
    all: bool,
    /// Do not prompt for confirmation (berth never prompts)
    #[arg(short = 'f', long)]
    force: bool,
}

/// `builder prune`: [`berth_builder::prune::prune`] once no build runs on this root.
pub fn builder(root: &Path, c: BuilderCommand) -> Result<ExitCode> {
    let BuilderCommand::Prune(a) = c;
    let _ = (a.all, a.force);
    let _no_builds = build_lock(root, true)?;
    super::build_sandbox::sweep_stale_steps(root);
    let store = open_store(root)?;
    let total = berth_builder::prune::prune(&store)?;
    println!("Total:\t{}", super::format::human_size(total));
    Ok(ExitCode::SUCCESS)
}

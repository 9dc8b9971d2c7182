//! `push`, `pull`, `search`, `login`, `logout`: argument handling and Docker's output; the work
//! is in `berth_store::remote`.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use berth_store::remote::{self, Credentials, Options, Progress, Quiet};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::open_store;

/// Flags push and pull share.
#[derive(Args, Debug)]
struct TransferArgs {
    /// Speak plain HTTP to this registry (HOST[:PORT] or CIDR); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure: Vec<String>,
    /// Suppress progress output
    #[arg(short, long)]
    quiet: bool,
    /// Layers transferred at once
    #[arg(long, default_value_t = 3)]
    jobs: usize,
}

impl TransferArgs {
    fn options(&self, store: &berth_store::Store) -> Result<Options> {
        let mut opts = Options::for_root(store, &self.insecure)?;
        opts.jobs = self.jobs;
        Ok(opts)
    }
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// NAME[:TAG] (NAME alone pushes NAME:latest)
    image: String,
    /// Push all tags of the repository NAME
    #[arg(short = 'a', long = "all-tags")]
    all_tags: bool,
    #[command(flatten)]
    transfer: TransferArgs,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// NAME[:TAG|@DIGEST]
    image: String,
    #[command(flatten)]
    transfer: TransferArgs,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// [REGISTRY/]TERM (Docker Hub without a registry)
    term: String,
    /// Filter output based on conditions provided (stars=N, is-official=BOOL, is-automated=BOOL)
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template ('table', 'json', or a Go template)
    #[arg(long)]
    format: Option<String>,
    /// Max number of search results
    #[arg(long, default_value_t = 25)]
    limit: usize,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Speak plain HTTP to this registry (HOST[:PORT] or CIDR); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure: Vec<String>,
}

/// One line of `search`, with Docker's field names.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct SearchRow {
    name: String,
    description: String,
    star_count: String,
    is_official: String,
    is_automated: String,
}

impl super::format::Row for SearchRow {
    fn cell(&self, field: &str) -> String {
        match field {
            "Name" => self.name.clone(),
            "Description" => self.description.clone(),
            "StarCount" => self.star_count.clone(),
            "IsOfficial" => self.is_official.clone(),
            "IsAutomated" => self.is_automated.clone(),
            _ => String::new(),
        }
    }
}

/// Docker's search filters, checked before anything is sent.
struct SearchFilter {
    stars: u64,
    official: Option<bool>,
    automated: Option<bool>,
}

fn search_filter(list: &[String]) -> Result<SearchFilter> {
    let mut f = SearchFilter {
        stars: 0,
        official: None,
        automated: None,
    };
    for item in list {
        let (k, v) = item
            .split_once('=')
            .with_context(|| format!("bad format of filter (expected name=value): {item}"))?;
        let boolean = |v: &str| match v {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => bail!("invalid filter '{k}={v}'"),
        };
        match k {
            "stars" => {
                f.stars = v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("invalid filter 'stars={v}'"))?
            }
            "is-official" => f.official = Some(boolean(v)?),
            "is-automated" => f.automated = Some(boolean(v)?),
            _ => bail!("invalid filter '{k}'"),
        }
    }
    Ok(f)
}

pub fn search(root: &Path, a: SearchArgs) -> Result<ExitCode> {
    if !(1..=100).contains(&a.limit) {
        bail!("limit {} is outside the range of [1, 100]", a.limit);
    }
    let filter = search_filter(&a.filter)?;
    let store = open_store(root)?;
    let opts = Options::for_root(&store, &a.insecure)?;
    let results =
        remote::search(&a.term, a.limit, &opts).with_context(|| format!("search {}", a.term))?;
    let rows: Vec<SearchRow> = results
        .into_iter()
        .filter(|r| r.star_count >= filter.stars)
        .filter(|r| filter.official.is_none_or(|o| r.is_official == o))
        .filter(|r| filter.automated.is_none_or(|o| r.is_automated == o))
        .map(|r| {
            // Docker's table cuts descriptions at 45 characters with an ellipsis.
            let description = if a.no_trunc || r.description.chars().count() <= 45 {
                r.description
            } else {
                let cut: String = r.description.chars().take(44).collect();
                format!("{cut}…")
            };
            SearchRow {
                name: r.name,
                description: description.replace('\n', " "),
                star_count: r.star_count.to_string(),
                is_official: if r.is_official { "[OK]" } else { "" }.to_string(),
                is_automated: if r.is_automated { "[OK]" } else { "" }.to_string(),
            }
        })
        .collect();
    let columns = [
        ("Name", "NAME"),
        ("Description", "DESCRIPTION"),
        ("StarCount", "STARS"),
        ("IsOfficial", "OFFICIAL"),
    ];
    let mut out = io::stdout().lock();
    super::format::print_rows(
        &mut out,
        &super::format::Format::parse(a.format.as_deref()),
        &columns,
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry server (default: Docker Hub)
    server: Option<String>,
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin)
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    /// Speak plain HTTP to this registry (HOST[:PORT] or CIDR); repeatable
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry server (default: Docker Hub)
    server: Option<String>,
}

/// One bar per blob on stderr, like Docker's per-layer lines.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn bar(&self, id: &str) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(id.to_string())
            .or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new(0));
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix}: {msg} {wide_bar} {bytes}/{total_bytes}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b.set_prefix(id.to_string());
                b
            })
            .clone()
    }
}

impl Progress for Bars {
    fn begin(&self, id: &str, action: &str, total: Option<u64>) {
        let b = self.bar(id);
        b.set_message(action.to_string());
        if let Some(t) = total {
            b.set_length(t);
            b.set_position(0);
        }
    }
    fn advance(&self, id: &str, bytes: u64) {
        self.bar(id).inc(bytes);
    }
    fn end(&self, id: &str, status: &str) {
        let b = self.bar(id);
        b.set_style(
            ProgressStyle::with_template("{prefix}: {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.finish_with_message(status.to_string());
    }
}

fn progress(quiet: bool) -> Arc<dyn Progress> {
    if quiet || !io::stderr().is_terminal() {
        return Arc::new(Quiet);
    }
    Arc::new(Bars {
        multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)),
        bars: Mutex::new(HashMap::new()),
    })
}

pub fn push(root: &Path, a: PushArgs) -> Result<ExitCode> {
    let store = open_store(root)?;
    let opts = a.transfer.options(&store)?;
    let outs = if a.all_tags {
        remote::push_all_tags(&store, &a.image, &opts, progress(a.transfer.quiet))
    } else {
        remote::push(&store, &a.image, &opts, progress(a.transfer.quiet)).map(|o| vec![o])
    }
    .with_context(|| format!("push {}", a.image))?;
    for out in outs {
        println!("{}: digest: {} size: {}", out.tag, out.digest, out.size);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn pull(root: &Path, a: PullArgs) -> Result<ExitCode> {
    let store = open_store(root)?;
    let opts = a.transfer.options(&store)?;
    let quiet = a.transfer.quiet;
    // Docker's CLI says which tag it chose before pulling, unless -q.
    if !quiet && berth_store::reference::Reference::parse(&a.image).is_ok_and(|r| r.is_name_only())
    {
        println!("Using default tag: latest");
    }
    let out = remote::pull(&store, &a.image, &opts, progress(quiet))
        .with_context(|| format!("pull {}", a.image))?;
    // With -q, Docker prints only the reference pulled (scripts read it as the last line).
    if !quiet {
        let shown = out.reference.familiar_string();
        println!("Digest: {}", out.digest);
        if out.updated {
            println!("Status: Downloaded newer image for {shown}");
        } else {
            println!("Status: Image is up to date for {shown}");
        }
    }
    println!("{}", out.reference);
    Ok(ExitCode::SUCCESS)
}

pub fn login(a: LoginArgs) -> Result<ExitCode> {
    let server = a.server.unwrap_or_else(|| "docker.io".to_string());
    let shown = remote::endpoint::canonical_domain(&server);
    let tty = io::stdin().is_terminal();
    // Docker 28: with no credentials given, stored ones are tried first.
    if a.username.is_none()
        && a.password.is_none()
        && !a.password_stdin
        && let Some(stored) =
            remote::auth::lookup(&shown).with_context(|| format!("login {server}"))?
    {
        println!(
            "Authenticating with existing credentials... [Username: {}]",
            stored.username
        );
        if remote::verify_login(&server, &stored, &a.insecure).is_ok() {
            println!("Login Succeeded");
            return Ok(ExitCode::SUCCESS);
        }
        if !tty {
            bail!(
                "login {server}: the stored credentials were refused; pass -u and --password-stdin"
            );
        }
    }
    let username = match a.username {
        Some(u) => u,
        None if tty => prompt_line("Username: ")?,
        None => bail!("Cannot perform an interactive login from a non TTY device"),
    };
    if username.is_empty() {
        bail!("Username is required");
    }
    let password = if a.password_stdin {
        let mut p = String::new();
        io::stdin()
            .read_to_string(&mut p)
            .context("reading the password from stdin")?;
        p.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else if tty {
        rpassword::prompt_password("Password: ").context("reading the password")?
    } else {
        bail!("Cannot perform an interactive login from a non TTY device")
    };
    if password.is_empty() {
        bail!("Password is required");
    }
    let creds = Credentials { username, password };
    remote::verify_login(&server, &creds, &a.insecure)
        .with_context(|| format!("login {server}"))?;
    match remote::auth::store(&server, &creds).with_context(|| format!("login {server}"))? {
        remote::auth::Stored::File(file) => {
            eprintln!(
                "WARNING! Your credentials are stored unencrypted in '{}'.",
                file.display()
            );
            eprintln!("Configure a credential helper to remove this warning. See");
            eprintln!("https://docs.docker.com/go/credential-store/");
        }
        remote::auth::Stored::Helper(h) => eprintln!("Credentials stored with {h}"),
    }
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// One line typed at the terminal after `prompt` (shown on stdout, as docker login does).
fn prompt_line(prompt: &str) -> Result<String> {
    use std::io::{BufRead, Write};
    print!("{prompt}");
    io::stdout().flush().ok();
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the username")?;
    Ok(line.trim().to_string())
}

pub fn logout(a: LogoutArgs) -> Result<ExitCode> {
    let server = a.server.unwrap_or_else(|| "docker.io".to_string());
    let shown = remote::endpoint::canonical_domain(&server);
    if remote::auth::erase(&server).with_context(|| format!("logout {server}"))? {
        println!("Removing login credentials for {shown}");
    } else {
        println!("Not logged in to {shown}");
    }
    Ok(ExitCode::SUCCESS)
}

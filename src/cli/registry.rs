//! `berth registry …`: run the OCI distribution server, collect its garbage.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use berth_registry::config::StorageConfig;
use berth_registry::{Config, FileConfig};
use clap::{Args, Subcommand};

/// `serve --help`: a `[storage]` table of registry.toml for each kind of bucket.
const STORAGE_EXAMPLES: &str = r#"Storage in registry.toml (--config), one [storage] table per kind:

  [storage]                          # Amazon S3 or an S3-compatible server
  kind = "s3"
  bucket = "images"
  endpoint = "http://127.0.0.1:9000" # optional; region = "…" too
  part-size = 8388608                # 5 MiB to 5 GiB
  redirect = true                    # blob GETs: 307 to a presigned URL (false: stream)

  [storage]                          # Azure Blob Storage
  kind = "azure"
  container = "images"
  account = "mystorageaccount"       # or AZURE_STORAGE_ACCOUNT_NAME
  # use-emulator = true              # Azurite (AZURITE_BLOB_STORAGE_URL)
  part-size = 8388608                # 1 MiB to 4000 MiB
  redirect = true                    # blob GETs: 307 to a SAS URL (false: stream)

  [storage]                          # Google Cloud Storage
  kind = "gcs"
  bucket = "images"
  part-size = 8388608                # 5 MiB to 5 GiB

  [storage]                          # a directory
  kind = "fs"
  path = "/srv/registry"

Every bucket kind also takes prefix, endpoint, allow-http, max-retries, retry-timeout and
request-timeout. Credentials come from the environment as each provider's tools read it:
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY…; AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY,
AZURE_CLIENT_ID / AZURE_CLIENT_SECRET / AZURE_TENANT_ID…; GOOGLE_SERVICE_ACCOUNT,
GOOGLE_APPLICATION_CREDENTIALS…"#;

#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Serve the OCI distribution API
    #[command(after_long_help = STORAGE_EXAMPLES)]
    Serve(Box<ServeArgs>),
    /// Add or replace USER in an htpasswd file (bcrypt); the password is read from stdin
    Htpasswd(HtpasswdArgs),
    /// Delete blobs no manifest references and abandoned uploads (directory or bucket)
    Gc(GcArgs),
}

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Print what would be deleted, delete nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Storage directory, or s3://BUCKET[/PREFIX], az://CONTAINER[/PREFIX] (Azure Blob
    /// Storage), gs://BUCKET[/PREFIX] (Google Cloud Storage) [default: <root>/registry]
    #[arg(long, value_parser = StorageConfig::parse_flag)]
    pub storage: Option<StorageConfig>,
    /// Settings file (TOML); its `storage` is used unless --storage is given
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Keep anything written more recently than this, referenced or not, so a push racing the
    /// collection survives (e.g. 0s, 30m, 1h, 7d)
    #[arg(long, default_value = "1h", value_parser = berth_registry::gc::parse_duration)]
    pub grace: std::time::Duration,
}

#[derive(Args, Debug)]
pub struct HtpasswdArgs {
    /// User name
    pub user: String,
    /// htpasswd file to update [default: <root>/registry/htpasswd]
    #[arg(long)]
    pub file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port) [default: 127.0.0.1:5000]
    #[arg(long)]
    pub addr: Option<String>,
    /// Storage directory, or a bucket: s3://BUCKET[/PREFIX] (settings and credentials from
    /// AWS_* variables), az://CONTAINER[/PREFIX] (Azure Blob Storage; AZURE_STORAGE_ACCOUNT_NAME,
    /// AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_KEY, …), gs://BUCKET[/PREFIX] (Google
    /// Cloud Storage; GOOGLE_SERVICE_ACCOUNT or GOOGLE_APPLICATION_CREDENTIALS, …); or a
    /// [storage] table in --config with kind = "fs", "s3", "azure" or "gcs" (see the README)
    /// [default: <root>/registry]
    #[arg(long, value_parser = StorageConfig::parse_flag)]
    pub storage: Option<StorageConfig>,
    /// Settings file (TOML, keys named as these flags: addr, storage, read-only, htpasswd,
    /// auth-token-realm, …); flags override it
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Refuse every write (405 UNSUPPORTED)
    #[arg(long)]
    pub read_only: bool,
    /// Require basic auth from this htpasswd file (bcrypt entries)
    #[arg(long)]
    pub htpasswd: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key)
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Smallest chunk (bytes) clients are asked to PATCH, sent as OCI-Chunk-Min-Length when an
    /// upload opens; 0 sends none [default: 1048576]
    #[arg(long, value_name = "BYTES")]
    pub chunk_min_length: Option<u64>,
    /// Token auth: URL of the token server clients are sent to [default with --auth-token-key:
    /// this registry's /token]
    #[arg(long, value_name = "URL")]
    pub auth_token_realm: Option<String>,
    /// Token auth: the service name tokens must be issued for (`aud`) [default with
    /// --auth-token-key: berth-registry]
    #[arg(long, value_name = "NAME")]
    pub auth_token_service: Option<String>,
    /// Token auth: the issuer tokens must come from (`iss`) [default with --auth-token-key:
    /// berth-registry]
    #[arg(long, value_name = "NAME")]
    pub auth_token_issuer: Option<String>,
    /// Token auth: PEM certificates whose keys may sign tokens (RS256/ES256…)
    #[arg(long, value_name = "PEM")]
    pub auth_token_rootcert: Option<PathBuf>,
    /// Token auth with the built-in token server at /token: its PEM private key (RSA or EC);
    /// users are checked against --htpasswd
    #[arg(long, value_name = "PEM")]
    pub auth_token_key: Option<PathBuf>,
    /// Built-in token server: grant pull to clients without credentials
    #[arg(long)]
    pub auth_token_anonymous_pull: bool,
    /// Most connections open at once; beyond it new clients wait in the listen backlog while
    /// idle connections are closed to make room [default: half the open-file limit]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// A request's headers (and a TLS handshake) must arrive within this; on HTTP/1 it also
    /// bounds waiting for the next request on a kept-alive connection (e.g. 30s, 500ms)
    /// [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = berth_registry::gc::parse_duration)]
    pub header_timeout: Option<std::time::Duration>,
    /// A connection without a request in flight, or a request body sending nothing, for this
    /// long is closed [default: 2m]
    #[arg(long, value_name = "DURATION", value_parser = berth_registry::gc::parse_duration)]
    pub idle_timeout: Option<std::time::Duration>,
    /// A response write that the client takes no data of for this long ends the connection
    /// (a client that asks for a blob and never reads) [default: 1m]
    #[arg(long, value_name = "DURATION", value_parser = berth_registry::gc::parse_duration)]
    pub write_timeout: Option<std::time::Duration>,
}

pub fn run(root: &Path, c: RegistryCommand) -> Result<ExitCode> {
    match c {
        RegistryCommand::Serve(a) => serve(root, *a),
        RegistryCommand::Htpasswd(a) => htpasswd(root, a),
        RegistryCommand::Gc(a) => gc(root, a),
    }
}

fn gc(root: &Path, a: GcArgs) -> Result<ExitCode> {
    let file = match &a.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let storage = storage_setting(root, a.storage, file.storage)?;
    let opts = berth_registry::gc::Options {
        dry_run: a.dry_run,
        grace: a.grace,
    };
    let mut out = std::io::stdout().lock();
    let print = |s: &berth_registry::gc::Swept| {
        let _ = writeln!(out, "{}", s.line(opts.dry_run));
    };
    let summary = match &storage {
        StorageConfig::Fs(dir) => berth_registry::gc::collect_fs(dir, opts, print),
        StorageConfig::Bucket(c) => {
            let inv = berth_registry::storage::object_inventory::ObjectInventory::open_bucket(
                c, a.dry_run,
            )
            .with_context(|| format!("opening {storage}"))?;
            berth_registry::gc::collect(&inv, opts, print)
        }
    }
    .with_context(|| format!("collecting garbage in {storage}"))?;
    writeln!(out, "{}", summary.line(opts.dry_run))?;
    Ok(ExitCode::SUCCESS)
}

fn serve(root: &Path, a: ServeArgs) -> Result<ExitCode> {
    let file = match &a.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let htpasswd = a.htpasswd.or(file.htpasswd);
    let token = berth_registry::config::TokenConfig::assemble(
        a.auth_token_realm.or(file.auth_token_realm),
        a.auth_token_service.or(file.auth_token_service),
        a.auth_token_issuer.or(file.auth_token_issuer),
        a.auth_token_rootcert.or(file.auth_token_rootcert),
        a.auth_token_key.or(file.auth_token_key),
        a.auth_token_anonymous_pull || file.auth_token_anonymous_pull.unwrap_or(false),
        htpasswd.is_some(),
    )
    .map_err(anyhow::Error::msg)?;
    let cfg = Config {
        addr: a
            .addr
            .or(file.addr)
            .unwrap_or_else(|| "127.0.0.1:5000".to_string()),
        storage: storage_setting(root, a.storage, file.storage)?,
        read_only: a.read_only || file.read_only.unwrap_or(false),
        htpasswd,
        tls: match (a.tls_cert.or(file.tls_cert), a.tls_key.or(file.tls_key)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => anyhow::bail!("TLS needs both a certificate and a key (--tls-cert, --tls-key)"),
        },
        chunk_min_length_set: a.chunk_min_length.or(file.chunk_min_length).is_some(),
        chunk_min_length: a
            .chunk_min_length
            .or(file.chunk_min_length)
            .unwrap_or(berth_registry::config::DEFAULT_CHUNK_MIN_LENGTH),
        token,
        max_connections: match a
            .max_connections
            .map(|n| n as usize)
            .or(file.max_connections)
        {
            Some(0) => anyhow::bail!("max-connections must be at least 1"),
            n => n,
        },
        header_timeout: timeout_setting(
            "header-timeout",
            a.header_timeout,
            file.header_timeout.as_deref(),
            berth_registry::connections::DEFAULT_HEADER_TIMEOUT,
        )?,
        idle_timeout: timeout_setting(
            "idle-timeout",
            a.idle_timeout,
            file.idle_timeout.as_deref(),
            berth_registry::connections::DEFAULT_IDLE_TIMEOUT,
        )?,
        write_timeout: timeout_setting(
            "write-timeout",
            a.write_timeout,
            file.write_timeout.as_deref(),
            berth_registry::connections::DEFAULT_WRITE_TIMEOUT,
        )?,
    };
    let storage = cfg.storage.clone();
    berth_registry::serve_blocking(cfg, |addr, tls| {
        let mut out = std::io::stdout().lock();
        let scheme = if tls { "https" } else { "http" };
        let _ = writeln!(out, "listening on {scheme}://{addr}");
        let _ = out.flush();
    })
    .with_context(|| format!("registry with storage {storage}"))?;
    Ok(ExitCode::SUCCESS)
}

/// A timeout from its flag, else the file, else the default; zero would close every
/// connection at once.
fn timeout_setting(
    key: &str,
    flag: Option<std::time::Duration>,
    file: Option<&str>,
    default: std::time::Duration,
) -> Result<std::time::Duration> {
    let d = match (flag, file) {
        (Some(d), _) => d,
        (None, Some(s)) => berth_registry::gc::parse_duration(s)
            .map_err(|e| anyhow::anyhow!("{key} in the settings file: {e}"))?,
        (None, None) => default,
    };
    if d.is_zero() {
        anyhow::bail!("{key} must be longer than 0 (e.g. 30s)");
    }
    Ok(d)
}

/// `--storage`, else the file's `storage`, else `<root>/registry`.
fn storage_setting(
    root: &Path,
    flag: Option<StorageConfig>,
    file: Option<berth_registry::config::StorageSetting>,
) -> Result<StorageConfig> {
    if let Some(s) = flag {
        return Ok(s);
    }
    match file {
        Some(f) => f.resolve().map_err(anyhow::Error::msg),
        None => Ok(StorageConfig::Fs(root.join("registry"))),
    }
}

fn htpasswd(root: &Path, a: HtpasswdArgs) -> Result<ExitCode> {
    let file = a
        .file
        .unwrap_or_else(|| root.join("registry").join("htpasswd"));
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from stdin")?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!("empty password on stdin");
    }
    berth_registry::auth::set_password(&file, &a.user, password)?;
    eprintln!("set password for {} in {}", a.user, file.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_storage_example_of_the_help_is_a_valid_table() {
        let text = STORAGE_EXAMPLES
            .split_once(":\n")
            .map(|(_, t)| t)
            .unwrap()
            .split("\n\nEvery")
            .next()
            .unwrap();
        let tables: Vec<&str> = text.trim().split("\n\n").collect();
        assert_eq!(tables.len(), 4, "{text}");
        for t in tables {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), t).unwrap();
            let f = FileConfig::load(file.path()).unwrap_or_else(|e| panic!("{t}\n{e}"));
            let s = f
                .storage
                .unwrap()
                .resolve()
                .unwrap_or_else(|e| panic!("{t}\n{e}"));
            let kind = t.lines().nth(1).unwrap().trim();
            match s {
                StorageConfig::Fs(p) => {
                    assert_eq!((kind, p.to_str()), ("kind = \"fs\"", Some("/srv/registry")))
                }
                StorageConfig::Bucket(c) => {
                    assert_eq!(kind, format!("kind = \"{}\"", c.kind.name()));
                    assert_eq!((c.bucket.as_str(), c.part_size), ("images", 8 << 20));
                }
            }
        }
    }
}

//! Image commands: `images`, `import`, `tag`, `rmi`, `inspect`, `history`, `save`, `load`,
//! `image prune`, and the same under `berth image …`.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use berth_store::images::Image;
use berth_store::import::ImportOptions;
use berth_store::{Reference, Removal, Store};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::format::{Format, Row, go_time, human_size, print_rows, since};
use super::open_store;
use super::progress::ProgressReader;

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images
    #[command(alias = "list", name = "ls")]
    Ls(ListArgs),
    /// Import the contents of a tarball to create a filesystem image
    Import(ImportArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    #[command(alias = "remove", name = "rm")]
    Rm(RmArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Mount an image's filesystem read-only and print where
    Mount(MountArgs),
    /// Unmount images mounted with `image mount`
    #[command(alias = "umount")]
    Unmount(MountArgs),
}

pub fn run(root: &Path, c: ImageCommand) -> Result<ExitCode> {
    match c {
        ImageCommand::Ls(a) => list(root, a),
        ImageCommand::Import(a) => import(root, a),
        ImageCommand::Tag(a) => tag(root, a),
        ImageCommand::Rm(a) => rm(root, a),
        ImageCommand::Inspect(mut a) => {
            a.kind = Some("image".into());
            inspect(root, a)
        }
        ImageCommand::History(a) => history(root, a),
        ImageCommand::Save(a) => save(root, a),
        ImageCommand::Load(a) => load(root, a),
        ImageCommand::Prune(a) => prune(root, a),
        ImageCommand::Mount(a) => mount(root, a, true),
        ImageCommand::Unmount(a) => mount(root, a, false),
    }
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Show all images (berth keeps no intermediate images, so this changes nothing)
    #[arg(short, long)]
    all: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Filter output: dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// REPOSITORY[:TAG] to list
    reference: Option<String>,
}

/// `path.Match`-style glob: `*` and `?` do not cross `/`.
fn glob(pattern: &str, s: &str) -> bool {
    // Dynamic programming over (pattern, text) suffixes: linear in their product, where
    // backtracking on `*` would be exponential for hostile patterns.
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    // next[j]: does p[i+1..] match t[j..]
    let mut next = vec![false; t.len() + 1];
    next[t.len()] = true;
    for i in (0..p.len()).rev() {
        let mut cur = vec![false; t.len() + 1];
        for j in (0..=t.len()).rev() {
            cur[j] = match p[i] {
                '*' => next[j] || (j < t.len() && t[j] != '/' && cur[j + 1]),
                '?' => j < t.len() && t[j] != '/' && next[j + 1],
                c => j < t.len() && t[j] == c && next[j + 1],
            };
        }
        next = cur;
    }
    next[0]
}

#[cfg(test)]
mod glob_tests {
    use super::glob;

    #[test]
    fn matches_like_path_match() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("*/app", "team/app"));
        assert!(!glob("*", "team/app"));
        assert!(glob("b?sybox", "busybox"));
        assert!(!glob("b?sybox", "bsybox"));
        assert!(glob("", ""));
        assert!(!glob("x", ""));
        // Hostile patterns stay fast.
        let name = "a".repeat(60);
        assert!(!glob("*a*a*a*a*a*a*a*a*a*a*a*a*b", &name));
    }
}

fn reference_matches(pattern: &str, tag: &Reference) -> bool {
    let name = tag.familiar_name();
    let full = tag.familiar_string();
    if pattern.contains(':') || pattern.contains('@') {
        glob(pattern, &full) || glob(pattern, &tag.to_string())
    } else {
        glob(pattern, &name) || glob(pattern, &tag.repository())
    }
}

pub fn list(root: &Path, a: ListArgs) -> Result<ExitCode> {
    let store = open_store(root)?;
    let images = store.images()?;
    let mut filters: Vec<(String, String)> = Vec::new();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow!("bad format of filter (expected name=value): {f}"))?;
        match k {
            "dangling" | "reference" | "label" | "before" | "since" => {
                filters.push((k.to_string(), v.to_string()))
            }
            _ => bail!("invalid filter '{k}' (valid: dangling, reference, label, before, since)"),
        }
    }
    if let Some(r) = &a.reference {
        filters.push(("reference".into(), r.clone()));
    }
    let created_bound = |key: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        match filters.iter().find(|(k, _)| k == key) {
            Some((_, v)) => Ok(store.resolve_image(v)?.created_time()),
            None => Ok(None),
        }
    };
    let before = created_bound("before")?;
    let after = created_bound("since")?;
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for img in &images {
        if let Some((_, v)) = filters.iter().find(|(k, _)| k == "dangling") {
            let want = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!("invalid filter 'dangling={v}' (use true or false)"),
            };
            if img.is_dangling() != want {
                continue;
            }
        }
        if before
            .as_ref()
            .is_some_and(|b| img.created_time().as_ref() >= Some(b))
        {
            continue;
        }
        if after
            .as_ref()
            .is_some_and(|b| img.created_time().as_ref() <= Some(b))
        {
            continue;
        }
        let label_filters: Vec<&String> = filters
            .iter()
            .filter(|(k, _)| k == "label")
            .map(|(_, v)| v)
            .collect();
        if !label_filters.is_empty() {
            let labels = store
                .config(img)
                .ok()
                .and_then(|c| c.config().as_ref().and_then(|c| c.labels().clone()))
                .unwrap_or_default();
            let ok = label_filters.iter().all(|f| match f.split_once('=') {
                Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
                None => labels.contains_key(f.as_str()),
            });
            if !ok {
                continue;
            }
        }
        let ref_patterns: Vec<&String> = filters
            .iter()
            .filter(|(k, _)| k == "reference")
            .map(|(_, v)| v)
            .collect();
        // One row per tag; an image known only by registry digests gets one `REPO <none>` row
        // per repository, as Docker lists an image pulled by digest.
        let tags: Vec<Option<&Reference>> = if !img.tags.is_empty() {
            img.tags.iter().map(Some).collect()
        } else if !img.digests.is_empty() {
            img.digests.iter().map(Some).collect()
        } else {
            vec![None]
        };
        let mut shown = false;
        for t in tags {
            if !ref_patterns.is_empty()
                && !t.is_some_and(|t| ref_patterns.iter().any(|p| reference_matches(p, t)))
            {
                continue;
            }
            shown = true;
            if !a.quiet {
                rows.push(image_row(img, t, a.no_trunc));
            }
        }
        if shown && seen.insert(img.id.clone()) {
            ids.push(img.id.clone());
        }
    }
    let mut out = io::stdout().lock();
    if a.quiet {
        for id in ids {
            writeln!(
                out,
                "{}",
                if a.no_trunc {
                    id.to_string()
                } else {
                    id.digest()[..12].to_string()
                }
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut columns = vec![("Repository", "REPOSITORY"), ("Tag", "TAG")];
    if a.digests {
        columns.push(("Digest", "DIGEST"));
    }
    columns.extend([
        ("ID", "IMAGE ID"),
        ("CreatedSince", "CREATED"),
        ("Size", "SIZE"),
    ]);
    print_rows(
        &mut out,
        &Format::parse(a.format.as_deref()),
        &columns,
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// One line of `images`, with Docker's field names.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImageRow {
    containers: &'static str,
    created_at: String,
    created_since: String,
    digest: String,
    #[serde(rename = "ID")]
    id: String,
    repository: String,
    shared_size: &'static str,
    size: String,
    tag: String,
    unique_size: &'static str,
    virtual_size: String,
}

impl Row for ImageRow {
    fn cell(&self, field: &str) -> String {
        match field {
            "Repository" => self.repository.clone(),
            "Tag" => self.tag.clone(),
            "Digest" => self.digest.clone(),
            "ID" => self.id.clone(),
            "CreatedSince" => self.created_since.clone(),
            "CreatedAt" => self.created_at.clone(),
            "Size" => self.size.clone(),
            _ => String::new(),
        }
    }
}

fn image_row(img: &Image, tag: Option<&Reference>, no_trunc: bool) -> ImageRow {
    let (repository, tag_s) = match tag {
        Some(t) => (t.familiar_name(), t.tag().unwrap_or("<none>").to_string()),
        None => ("<none>".to_string(), "<none>".to_string()),
    };
    // DIGEST: the registry's digest for this repository (Docker's RepoDigests), else <none>.
    let digest = tag
        .and_then(|t| img.digest_in(&t.repository()))
        .and_then(|r| r.digest())
        .map_or_else(|| "<none>".to_string(), |d| d.to_string());
    let size = human_size(img.size);
    ImageRow {
        containers: "N/A",
        created_at: go_time(img.created.as_deref()),
        created_since: since(img.created.as_deref()),
        digest,
        id: if no_trunc {
            img.id.to_string()
        } else {
            img.id.digest()[..12].to_string()
        },
        repository,
        shared_size: "N/A",
        virtual_size: size.clone(),
        size,
        tag: tag_s,
        unique_size: "N/A",
    }
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    message: Option<String>,
    /// Set platform (only the host's linux platform is supported)
    #[arg(long)]
    platform: Option<String>,
    /// Tarball (plain, gzip or zstd), or - for STDIN
    file: String,
    /// REPOSITORY[:TAG] for the new image
    reference: Option<String>,
}

pub fn import(root: &Path, a: ImportArgs) -> Result<ExitCode> {
    let tag = a
        .reference
        .as_deref()
        .map(Reference::parse_normalized)
        .transpose()?;
    if let Some(p) = &a.platform {
        let host = format!("linux/{}", berth_store::import::host_arch());
        if p != &host && p != "linux" {
            bail!("platform {p:?} is not supported: berth imports for the host platform {host}");
        }
    }
    if a.file.starts_with("http://") || a.file.starts_with("https://") {
        bail!(
            "importing from a URL is not supported: download it first and pass the file (or `-` with the file on stdin)"
        );
    }
    let store = open_store(root)?;
    // A bad --change fails before any input is read.
    let mut config = serde_json::Map::new();
    berth_builder::change::apply_changes(&mut config, &a.change)?;
    let opts = ImportOptions {
        config,
        message: a.message,
        source: a.file.clone(),
    };
    let img = if a.file == "-" {
        let input = ProgressReader::new(io::stdin().lock(), None, "importing");
        store.import_rootfs(input, tag.as_ref(), &opts)?
    } else {
        let f = File::open(&a.file).with_context(|| format!("cannot open {}", a.file))?;
        let size = f.metadata().ok().map(|m| m.len());
        store.import_rootfs(
            ProgressReader::new(f, size, "importing"),
            tag.as_ref(),
            &opts,
        )?
    };
    println!("{}", img.id);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct TagArgs {
    /// SOURCE_IMAGE[:TAG]
    source: String,
    /// TARGET_IMAGE[:TAG]
    target: String,
}

pub fn tag(root: &Path, a: TagArgs) -> Result<ExitCode> {
    let target = Reference::parse_normalized(&a.target)?;
    let store = open_store(root)?;
    store.tag_image(&a.source, &target)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force removal of the image
    #[arg(short, long)]
    force: bool,
    /// Do not delete untagged parents (accepted for Docker compatibility)
    #[arg(long)]
    no_prune: bool,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

fn print_removals(out: &mut impl Write, events: &[Removal]) -> io::Result<()> {
    for e in events {
        match e {
            Removal::Untagged(r) => writeln!(out, "Untagged: {}", r.familiar_string())?,
            Removal::Deleted(d) => writeln!(out, "Deleted: {d}")?,
        }
    }
    Ok(())
}

pub fn rm(root: &Path, a: RmArgs) -> Result<ExitCode> {
    let store = open_store(root)?;
    let mut failed = false;
    for spec in &a.images {
        match store.remove_image(spec, a.force) {
            Ok(events) => print_removals(&mut io::stdout().lock(), &events)?,
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a Go template or json
    #[arg(short, long)]
    format: Option<String>,
    /// Only inspect objects of the given type: container or image
    #[arg(long = "type")]
    kind: Option<String>,
    /// Display total file sizes (accepted for Docker compatibility)
    #[arg(short, long)]
    size: bool,
    #[arg(required = true, value_name = "NAME|ID")]
    names: Vec<String>,
}

/// Docker's `image inspect` document.
pub fn inspect_json(store: &Store, img: &Image) -> Result<Value> {
    let cfg: Value = serde_json::from_slice(&store.config_bytes(img)?)
        .context("image config is not valid JSON")?;
    let mut config = json!({
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false, "AttachStdout": false,
        "AttachStderr": false, "Tty": false, "OpenStdin": false, "StdinOnce": false, "Env": null,
        "Cmd": null, "Image": "", "Volumes": null, "WorkingDir": "", "Entrypoint": null,
        "OnBuild": null, "Labels": null,
    });
    if let (Some(dst), Some(src)) = (
        config.as_object_mut(),
        cfg.get("config").and_then(Value::as_object),
    ) {
        for (k, v) in src {
            dst.insert(k.clone(), v.clone());
        }
    }
    let layers = cfg
        .pointer("/rootfs/diff_ids")
        .cloned()
        .unwrap_or(json!([]));
    let snapshots: Vec<String> = layers
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|d| {
                    store
                        .snapshots_dir()
                        .join(d.trim_start_matches("sha256:"))
                        .display()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "Id": img.id.to_string(),
        "RepoTags": img.tags.iter().map(|t| t.familiar_string()).collect::<Vec<_>>(),
        "RepoDigests": img.digests.iter().map(|t| t.familiar_string()).collect::<Vec<_>>(),
        "Parent": "",
        "Comment": cfg.pointer("/history/0/comment").cloned().unwrap_or(json!("")),
        "Created": cfg.get("created").cloned().unwrap_or(json!("")),
        "DockerVersion": cfg.get("docker_version").cloned().unwrap_or(json!("")),
        "Author": cfg.get("author").cloned().unwrap_or(json!("")),
        "Config": config,
        "Architecture": cfg.get("architecture").cloned().unwrap_or(json!("")),
        "Variant": cfg.get("variant").cloned(),
        "Os": cfg.get("os").cloned().unwrap_or(json!("")),
        "Size": img.size,
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDirs": snapshots.join(":")}},
        "RootFS": {"Type": "layers", "Layers": layers},
        "History": cfg.get("history").cloned().unwrap_or(json!([])),
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        "Descriptor": {"mediaType": img.manifest_media_type.to_string(), "digest": img.manifest.to_string(), "size": img.manifest_size},
    }))
}

pub fn inspect(root: &Path, a: InspectArgs) -> Result<ExitCode> {
    let (containers, images, others) = match a.kind.as_deref() {
        None => (true, true, true),
        Some("container") => (true, false, false),
        Some("image") => (false, true, false),
        Some("network") | Some("volume") => (false, false, true),
        Some(k) => bail!("unsupported --type {k:?}: use container, image, network or volume"),
    };
    let store = open_store(root)?;
    let mut docs = Vec::new();
    let mut failed = false;
    for n in &a.names {
        // Docker's `inspect` tries containers first, then images.
        if containers && let Some(doc) = super::container::find_for_inspect(root, n) {
            docs.push(doc);
            continue;
        }
        // Then networks and volumes, as Docker's does.
        if others
            && !(images && store.resolve_image(n).is_ok())
            && let Some(doc) = super::network::find_for_inspect(root, n, a.kind.as_deref())
        {
            docs.push(doc);
            continue;
        }
        if !images {
            eprintln!("Error: No such object: {n}");
            failed = true;
            continue;
        }
        match store
            .resolve_image(n)
            .map_err(anyhow::Error::from)
            .and_then(|img| inspect_json(&store, &img))
        {
            Ok(v) => docs.push(v),
            Err(e) => {
                if containers {
                    eprintln!("Error: No such object: {n}");
                } else {
                    eprintln!("Error: {e:#}");
                }
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
pub struct HistoryArgs {
    /// Format output: table, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    human: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    image: String,
}

pub fn history(root: &Path, a: HistoryArgs) -> Result<ExitCode> {
    let store = open_store(root)?;
    let img = store.resolve_image(&a.image)?;
    let cfg: Value = serde_json::from_slice(&store.config_bytes(&img)?)?;
    let manifest = store.manifest(&img.manifest)?;
    let mut layer_sizes = manifest.layers().iter().map(|l| l.size());
    let history = cfg
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut rows = Vec::new();
    for h in &history {
        let empty = h
            .get("empty_layer")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let size = if empty {
            0
        } else {
            layer_sizes.next().unwrap_or(0)
        };
        let created = h.get("created").and_then(Value::as_str);
        let mut created_by = h
            .get("created_by")
            .and_then(Value::as_str)
            .unwrap_or("")
            .replace('\t', " ");
        if !a.no_trunc && created_by.chars().count() > 45 {
            created_by = created_by.chars().take(44).collect::<String>() + "…";
        }
        rows.push(json!({
            "ID": "<missing>",
            "CreatedSince": if a.human { since(created) } else { created.unwrap_or("").to_string() },
            "CreatedAt": created.unwrap_or(""),
            "CreatedBy": created_by,
            "Size": if a.human { human_size(size) } else { size.to_string() },
            "Comment": h.get("comment").and_then(Value::as_str).unwrap_or(""),
        }));
    }
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top["ID"] = json!(if a.no_trunc {
            img.id.to_string()
        } else {
            img.id.digest()[..12].to_string()
        });
    }
    let mut out = io::stdout().lock();
    if a.quiet {
        for r in &rows {
            writeln!(out, "{}", r["ID"].as_str().unwrap_or(""))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let columns = [
        ("ID", "IMAGE"),
        ("CreatedSince", "CREATED"),
        ("CreatedBy", "CREATED BY"),
        ("Size", "SIZE"),
        ("Comment", "COMMENT"),
    ];
    print_rows(
        &mut out,
        &Format::parse(a.format.as_deref()),
        &columns,
        &rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn save(root: &Path, a: SaveArgs) -> Result<ExitCode> {
    let store = open_store(root)?;
    match &a.output {
        Some(path) => {
            super::outfile::write(path, "failed to save image", |w| {
                berth_store::archive::save(&store, &a.images, w).map(|_| ())
            })??;
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut w = io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
            berth_store::archive::save(&store, &a.images, &mut w)?;
            w.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

pub fn load(root: &Path, a: LoadArgs) -> Result<ExitCode> {
    let store = open_store(root)?;
    let mut input: Box<dyn Read> = match &a.input {
        Some(p) => {
            let f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            let size = f.metadata().ok().map(|m| m.len());
            Box::new(ProgressReader::new(f, size, "loading"))
        }
        None => {
            if io::stdin().is_terminal() {
                bail!(
                    "requested load from stdin, but stdin is empty; use -i FILE or redirect a file"
                );
            }
            Box::new(ProgressReader::new(io::stdin().lock(), None, "loading"))
        }
    };
    let loaded = berth_store::archive::load(&store, &mut input)?;
    if !a.quiet {
        let mut out = io::stdout().lock();
        for l in loaded {
            if l.tags.is_empty() {
                writeln!(out, "Loaded image ID: {}", l.id)?;
            }
            for t in l.tags {
                writeln!(out, "Loaded image: {}", t.familiar_string())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn prune(root: &Path, a: PruneArgs) -> Result<ExitCode> {
    if !a.force {
        let what = if a.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("Aborted.");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let store = open_store(root)?;
    let rep = store.prune_images(a.all)?;
    let mut out = io::stdout().lock();
    if !rep.removed.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for e in &rep.removed {
            match e {
                Removal::Untagged(r) => writeln!(out, "untagged: {}", r.familiar_string())?,
                Removal::Deleted(d) => writeln!(out, "deleted: {d}")?,
            }
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "Total reclaimed space: {}",
        human_size(rep.swept.bytes)
    )?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct MountArgs {
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn mount(root: &Path, a: MountArgs, mount: bool) -> Result<ExitCode> {
    let store = open_store(root)?;
    for spec in &a.images {
        let img = store.resolve_image(spec)?;
        if mount {
            println!("{}", store.mount_image(&img)?.display());
        } else if !store.unmount_image(&img)? {
            bail!("image {spec} is not mounted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `RUN --mount`: the front end's typed mounts turned into what a step's container gets, with
//! BuildKit's semantics, and the store of cache mounts.
//!
//! Planning (while the step's cache key is made) resolves `from=` and makes targets absolute;
//! a bind from the context adds the content hash of its source to the key, as BuildKit does,
//! while secrets and cache contents never enter it. Preparing (when the step runs) sets up the
//! host side inside the step's scratch directory — overlays of other stages' roots, a tmpfs
//! holding the secret copies, private copies of filtered or writable context sources — so it
//! all goes with the scratch directory; it also creates the mount points the root lacks and,
//! after the run, removes those left empty and restores their parents' times, so the layer
//! keeps no trace of them (BuildKit's mount stub cleaner, [`stubs`]).
//!
//! Cache mounts are kept across builds in the state root ([`cache`]); `berth builder prune`
//! removes the ones nobody holds.

mod cache;
mod stubs;

pub(crate) use cache::dir_size;
pub use cache::{CACHE_MOUNTS_DIR, prune_cache_mounts};
pub(crate) use stubs::drop_copied_up;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use berth_store::{Image, Store};
use sha2::{Digest, Sha256};

use crate::context::{HashMemo, Selected, SourceTree, join_rel};
use crate::error::BuildError;
use crate::exec::{Executor, RunMount};
use crate::frontend::mount::{Mount, MountType, Sharing};
use crate::ignore::Ignore;
use berth_store::inroot;

/// Where a secret's value comes from (`berth build --secret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    /// An environment variable of the `berth build` process.
    Env(String),
}

/// A `RUN --mount` that cannot be set up as written.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("reading the secret file {}: {source}", path.display())]
    SecretFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mount target is required (add target=PATH)")]
    NoTarget,
    #[error("invalid mount target {0:?}: cannot mount over /")]
    OverRoot(String),
    #[error("bind source {0:?} is outside the build context")]
    OutsideContext(String),
    #[error("bind source {bind:?}: {source}")]
    BindSource {
        bind: String,
        #[source]
        source: io::Error,
    },
    #[error("bind source {0:?} not found in the build context (or excluded by .dockerignore)")]
    NotInContext(String),
}

impl SecretSource {
    /// The value; `None` when the variable is unset.
    fn read(&self) -> Result<Option<Vec<u8>>, MountError> {
        match self {
            SecretSource::File(p) => {
                fs::read(p)
                    .map(Some)
                    .map_err(|source| MountError::SecretFile {
                        path: p.clone(),
                        source,
                    })
            }
            SecretSource::Env(v) => Ok(std::env::var_os(v).map(|v| v.into_encoded_bytes())),
        }
    }
}

/// What a build's mounts draw on besides the Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct MountSources {
    pub context: PathBuf,
    pub ignore: Ignore,
    /// `--secret`: id -> source.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--ssh`: id -> agent socket.
    pub ssh: BTreeMap<String, PathBuf>,
}

/// Where a bind or cache mount's content comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    Context,
    /// Another stage's or an image's root (`None`: an empty stage), named for messages.
    Root {
        image: Box<Option<Image>>,
        name: String,
    },
}

/// One mount of a step, planned.
#[derive(Debug, Clone)]
pub enum MountPlan {
    Bind {
        target: String,
        source: String,
        origin: Origin,
        read_only: bool,
    },
    Cache {
        target: String,
        /// The directory's name in the store (a hash of id, base, mode and owner).
        dir: String,
        sharing: Sharing,
        read_only: bool,
        mode: u32,
        owner: (u32, u32),
        /// `from=` and `source=`: the content a new cache directory starts with.
        base: Option<(Origin, String)>,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    Secret {
        id: String,
        target: Option<String>,
        env: Option<String>,
        required: bool,
        mode: u32,
        owner: (u32, u32),
    },
    Ssh {
        id: String,
        target: String,
        required: bool,
    },
}

/// `target` made absolute against the working directory and cleaned, as BuildKit does.
fn abs_target(workdir: &str, target: &str) -> Result<String, MountError> {
    if target.is_empty() {
        return Err(MountError::NoTarget);
    }
    let joined = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{workdir}/{target}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(MountError::OverRoot(target.to_string()));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// A context path as written, relative to the context root; an error when `..` leaves it.
fn context_rel(source: &str) -> Result<String, MountError> {
    let mut parts: Vec<&str> = Vec::new();
    for c in source.split('/') {
        match c {
            "" | "." => {}
            ".." if parts.pop().is_none() => {
                return Err(MountError::OutsideContext(source.to_string()));
            }
            ".." => {}
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// The selected context entry `source` names (symlinks followed inside the context), or an
/// error when it is missing or excluded by the ignore file.
fn context_entry(tree: &SourceTree, source: &str) -> Result<Selected, MountError> {
    let rel = context_rel(source)?;
    let host = inroot::resolve(&tree.root, &rel, true).map_err(|e| MountError::BindSource {
        bind: source.to_string(),
        source: e,
    })?;
    let rel = host
        .strip_prefix(&tree.root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or(rel);
    match fs::metadata(&host) {
        Ok(md) if rel.is_empty() || !tree.ignore.matches(&rel, md.is_dir()) => Ok(Selected {
            rel,
            is_dir: md.is_dir(),
        }),
        _ => Err(MountError::NotInContext(source.to_string())),
    }
}

/// Resolves a `from=` value to a root and its cache identity (a stage's key, an image's ID).
pub(crate) type ResolveFrom<'a> = dyn FnMut(&str) -> Result<(Origin, String), BuildError> + 'a;

/// Plans `mounts`; returns them and the environment they add (`SSH_AUTH_SOCK`). `from`
/// resolves a `from=` value to a root and its cache identity; a bind from the context puts
/// its source's content hashes into `files` (part of the step's key).
pub(crate) fn plan(
    mounts: &[Mount],
    workdir: &str,
    from: &mut ResolveFrom<'_>,
    context: &SourceTree,
    memo: &mut HashMemo,
    files: &mut BTreeMap<String, String>,
    err: &dyn Fn(String) -> BuildError,
) -> Result<(Vec<MountPlan>, Vec<String>), BuildError> {
    let mut out = Vec::new();
    let mut env = Vec::new();
    let mut ssh_count = 0;
    for m in mounts {
        let plan = match m.kind {
            MountType::Bind => {
                let target = abs_target(workdir, &m.target).map_err(|e| err(e.to_string()))?;
                let source = m.source.clone().unwrap_or_default();
                let origin = match &m.from {
                    None => {
                        let sel =
                            context_entry(context, &source).map_err(|e| err(e.to_string()))?;
                        let hashes = context.hash_selection(&sel, memo).map_err(|e| {
                            BuildError::io("reading", context.root.join(&sel.rel), e)
                        })?;
                        files.extend(hashes);
                        Origin::Context
                    }
                    Some(f) => {
                        let (origin, key) = from(f)?;
                        files.insert(format!("--mount from={f}"), key);
                        origin
                    }
                };
                MountPlan::Bind {
                    target,
                    source,
                    origin,
                    read_only: m.read_only,
                }
            }
            MountType::Cache => {
                let target = abs_target(workdir, &m.target).map_err(|e| err(e.to_string()))?;
                let id = m.id.clone().unwrap_or_else(|| target.clone());
                let mode = m.mode.unwrap_or(0o755);
                let owner = (m.uid.unwrap_or(0), m.gid.unwrap_or(0));
                let source = m.source.clone().unwrap_or_default();
                let base = match &m.from {
                    None => None,
                    Some(f) => Some((from(f)?, source)),
                };
                let mut h = Sha256::new();
                h.update(format!(
                    "berth-cache-mount\0{id}\0{mode:o}\0{}:{}\0",
                    owner.0, owner.1
                ));
                if let Some(((_, key), source)) = &base {
                    h.update(format!("{key}\0{source}\0"));
                }
                MountPlan::Cache {
                    target,
                    dir: hex::encode(h.finalize()),
                    sharing: m.sharing.unwrap_or(Sharing::Shared),
                    read_only: m.read_only,
                    mode,
                    owner,
                    base: base.map(|((origin, _), source)| (origin, source)),
                }
            }
            MountType::Tmpfs => MountPlan::Tmpfs {
                target: abs_target(workdir, &m.target).map_err(|e| err(e.to_string()))?,
                size: m.size,
            },
            MountType::Secret => MountPlan::Secret {
                id: m.id.clone().unwrap_or_default(),
                target: (!m.target.is_empty())
                    .then(|| abs_target(workdir, &m.target))
                    .transpose()
                    .map_err(|e| err(e.to_string()))?,
                env: m.env.clone(),
                required: m.required,
                mode: m.mode.unwrap_or(0o400),
                owner: (m.uid.unwrap_or(0), m.gid.unwrap_or(0)),
            },
            MountType::Ssh => {
                let target = if m.target.is_empty() {
                    format!("/run/buildkit/ssh_agent.{ssh_count}")
                } else {
                    abs_target(workdir, &m.target).map_err(|e| err(e.to_string()))?
                };
                if ssh_count == 0 {
                    env.push(format!("SSH_AUTH_SOCK={target}"));
                }
                ssh_count += 1;
                MountPlan::Ssh {
                    id: m.id.clone().unwrap_or_else(|| "default".into()),
                    target,
                    required: m.required,
                }
            }
        };
        out.push(plan);
    }
    Ok((out, env))
}

/// A mount point made for a step, with its parent's times before and right after.
struct Stub {
    path: PathBuf,
    parent_before: Option<(SystemTime, SystemTime)>,
    parent_after: Option<SystemTime>,
}

/// The host side of a step's mounts; [`Prepared::finish`] (or drop) undoes it.
pub(crate) struct Prepared<'a> {
    pub mounts: Vec<RunMount>,
    /// `NAME=value` for secrets exposed as variables.
    pub env: Vec<String>,
    stubs: Vec<Stub>,
    /// Host mounts in the scratch directory, in the order made.
    host: Vec<PathBuf>,
    exec: &'a dyn Executor,
    /// Cache directories taken by this step (store name -> path), with their locks.
    caches: BTreeMap<String, PathBuf>,
    _locks: Vec<File>,
    secrets: Option<PathBuf>,
    /// A secret is exposed as an environment variable.
    env_secrets: bool,
}

impl Drop for Prepared<'_> {
    fn drop(&mut self) {
        for m in self.host.iter().rev() {
            let _ = self.exec.unmount(m);
        }
    }
}

fn set_owner_mode(p: &Path, mode: u32, owner: (u32, u32)) -> io::Result<()> {
    lchown(p, Some(owner.0), Some(owner.1))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
}

/// Copies the entry `src` to `dst`, keeping type, mode, owner and times; a file is hard-linked
/// when `link` and the file system allows it.
fn copy_entry(src: &Path, dst: &Path, link: bool) -> io::Result<()> {
    let md = fs::symlink_metadata(src)?;
    let ft = md.file_type();
    if ft.is_dir() {
        fs::create_dir(dst)?;
    } else if ft.is_symlink() {
        symlink(fs::read_link(src)?, dst)?;
        return lchown(dst, Some(md.uid()), Some(md.gid()));
    } else if ft.is_file() {
        if link && fs::hard_link(src, dst).is_ok() {
            return Ok(());
        }
        fs::copy(src, dst)?;
    } else {
        // Sockets, fifos and devices are not copied (BuildKit's context has none either).
        return Ok(());
    }
    set_owner_mode(dst, md.mode() & 0o7777, (md.uid(), md.gid()))?;
    File::open(dst)?.set_times(
        fs::FileTimes::new()
            .set_accessed(md.accessed()?)
            .set_modified(md.modified()?),
    )
}

/// Copies what `tree` keeps of the directory `rel` (itself included) to `dst`.
fn copy_tree(tree: &SourceTree, rel: &str, dst: &Path, link: bool) -> io::Result<()> {
    copy_entry(&tree.root.join(rel), dst, false)?;
    for r in tree.walk(rel)? {
        let sub = r[rel.len()..].trim_start_matches('/');
        let target = dst.join(sub);
        // A directory excluded but holding a re-included entry still needs to exist.
        if let Some(parent) = target.parent()
            && !parent.exists()
        {
            fs::create_dir_all(parent)?;
        }
        copy_entry(&tree.root.join(&r), &target, link)?;
    }
    Ok(())
}

/// Whether the ignore file excludes anything under the directory `rel`.
fn filters_anything(tree: &SourceTree, rel: &str) -> io::Result<bool> {
    if tree.ignore.is_empty() {
        return Ok(false);
    }
    let mut stack = vec![rel.to_string()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(tree.root.join(&dir))? {
            let e = e?;
            let r = join_rel(&dir, &e.file_name().to_string_lossy());
            let is_dir = e.file_type()?.is_dir();
            if tree.ignore.matches(&r, is_dir) {
                return Ok(true);
            }
            if is_dir {
                stack.push(r);
            }
        }
    }
    Ok(false)
}

/// What preparing a step's mounts needs.
pub(crate) struct StepDirs<'a> {
    pub store: &'a Store,
    pub exec: &'a dyn Executor,
    pub scratch: &'a Path,
    pub rootfs: &'a Path,
}

impl<'a> Prepared<'a> {
    /// Sets up `plans` for a step (see the module comment).
    pub(crate) fn new(
        dirs: &StepDirs<'a>,
        plans: &[MountPlan],
        sources: &MountSources,
        err: &dyn Fn(String) -> BuildError,
    ) -> Result<Prepared<'a>, BuildError> {
        let mut p = Prepared {
            mounts: Vec::new(),
            env: Vec::new(),
            stubs: Vec::new(),
            host: Vec::new(),
            exec: dirs.exec,
            caches: BTreeMap::new(),
            _locks: Vec::new(),
            secrets: None,
            env_secrets: false,
        };
        let io_err = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |e| BuildError::io(what, path, e)
        };
        // Cache mounts are locked first, in one global order (by directory), so two steps or
        // builds naming the same locked caches in different orders cannot deadlock.
        let mut caches: Vec<(usize, &MountPlan)> = plans
            .iter()
            .enumerate()
            .filter(|(_, m)| matches!(m, MountPlan::Cache { .. }))
            .collect();
        caches.sort_by(|a, b| match (a.1, b.1) {
            (MountPlan::Cache { dir: x, .. }, MountPlan::Cache { dir: y, .. }) => x.cmp(y),
            _ => std::cmp::Ordering::Equal,
        });
        for (i, plan) in caches {
            if let MountPlan::Cache {
                dir,
                sharing,
                mode,
                owner,
                base,
                ..
            } = plan
            {
                p.cache_dir(dirs, dir, *sharing, *mode, *owner, base.as_ref(), i, err)?;
            }
        }
        for (i, plan) in plans.iter().enumerate() {
            match plan {
                MountPlan::Bind {
                    target,
                    source,
                    origin,
                    read_only,
                } => {
                    let host = match origin {
                        Origin::Context => {
                            p.context_source(dirs, sources, source, *read_only, i, err)?
                        }
                        Origin::Root { image, name } => {
                            let root =
                                p.overlay(dirs, image.as_ref().as_ref(), &format!("mnt-{i}"))?;
                            let host = inroot::resolve(&root, source, true).map_err(|e| {
                                err(format!("bind source {source:?} in {name}: {e}"))
                            })?;
                            if fs::symlink_metadata(&host).is_err() {
                                return Err(err(format!(
                                    "bind source {source:?} not found in {name}"
                                )));
                            }
                            host
                        }
                    };
                    p.mounts.push(RunMount::Bind {
                        target: target.clone(),
                        source: host,
                        read_only: *read_only,
                    });
                }
                MountPlan::Cache {
                    target,
                    dir,
                    sharing,
                    read_only,
                    mode,
                    owner,
                    base,
                } => {
                    let data =
                        p.cache_dir(dirs, dir, *sharing, *mode, *owner, base.as_ref(), i, err)?;
                    p.mounts.push(RunMount::Bind {
                        target: target.clone(),
                        source: data,
                        read_only: *read_only,
                    });
                }
                MountPlan::Tmpfs { target, size } => p.mounts.push(RunMount::Tmpfs {
                    target: target.clone(),
                    size: *size,
                }),
                MountPlan::Secret {
                    id,
                    target,
                    env,
                    required,
                    mode,
                    owner,
                } => {
                    let value = match sources.secrets.get(id) {
                        Some(s) => s.read().map_err(|e| err(e.to_string()))?,
                        None => None,
                    };
                    let Some(value) = value else {
                        if *required {
                            return Err(err(format!(
                                "secret {id} not found: pass it with --secret id={id},src=FILE (or env=VARIABLE)"
                            )));
                        }
                        continue;
                    };
                    if let Some(name) = env {
                        p.env
                            .push(format!("{name}={}", String::from_utf8_lossy(&value)));
                        // The step's bundle (whose config.json holds the variable) goes on the
                        // secrets tmpfs too, never on disk.
                        p.secrets_dir(dirs)?;
                        p.env_secrets = true;
                    }
                    if let Some(target) = target {
                        let dir = p.secrets_dir(dirs)?;
                        let file = dir.join(i.to_string());
                        fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(0o600)
                            .open(&file)
                            .and_then(|mut f| io::Write::write_all(&mut f, &value))
                            .and_then(|_| set_owner_mode(&file, *mode, *owner))
                            .map_err(io_err("writing a secret to", &file))?;
                        p.mounts.push(RunMount::Bind {
                            target: target.clone(),
                            source: file,
                            read_only: true,
                        });
                    }
                }
                MountPlan::Ssh {
                    id,
                    target,
                    required,
                } => match sources.ssh.get(id) {
                    Some(sock) if sock.exists() => p.mounts.push(RunMount::Bind {
                        target: target.clone(),
                        source: sock.clone(),
                        read_only: true,
                    }),
                    Some(sock) => {
                        return Err(err(format!(
                            "the SSH agent socket {} given for ssh id {id} does not exist",
                            sock.display()
                        )));
                    }
                    None if *required => {
                        return Err(err(format!(
                            "no SSH agent for ssh id {id}: pass --ssh {id}[=SOCKET] (default: $SSH_AUTH_SOCK)"
                        )));
                    }
                    None => {}
                },
            }
        }
        // Parents before children, for the stubs and for the runtime.
        p.mounts
            .sort_by_key(|m| m.target().split('/').filter(|c| !c.is_empty()).count());
        for m in p.mounts.clone() {
            let file = match &m {
                RunMount::Bind { source, .. } => !source.is_dir(),
                RunMount::Tmpfs { .. } => false,
            };
            p.stub(dirs.rootfs, m.target(), file)
                .map_err(io_err("creating the mount point in", dirs.rootfs))
                .map_err(|e| err(format!("mount point {}: {e}", m.target())))?;
        }
        Ok(p)
    }

    /// Mounts `image`'s root (an empty one for `None`) over a private upper at `scratch/name`.
    fn overlay(
        &mut self,
        dirs: &StepDirs<'_>,
        image: Option<&Image>,
        name: &str,
    ) -> Result<PathBuf, BuildError> {
        let lowers = match image {
            Some(img) => dirs.store.ensure_snapshots(img)?,
            None => Vec::new(),
        };
        self.overlay_dirs(dirs, &lowers, name)
    }

    fn overlay_dirs(
        &mut self,
        dirs: &StepDirs<'_>,
        lowers: &[PathBuf],
        name: &str,
    ) -> Result<PathBuf, BuildError> {
        let target = dirs.scratch.join(name);
        let upper = dirs.scratch.join(format!("{name}-upper"));
        let work = dirs.scratch.join(format!("{name}-work"));
        dirs.exec.mount(lowers, &upper, &work, &target)?;
        self.host.push(target.clone());
        Ok(target)
    }

    /// The host path a context bind mounts: the context entry itself when it can be shown as
    /// is (read-only and nothing under it excluded), else a copy in scratch (hard links where
    /// possible), under an overlay when writable so writes never reach the context.
    fn context_source(
        &mut self,
        dirs: &StepDirs<'_>,
        sources: &MountSources,
        source: &str,
        read_only: bool,
        i: usize,
        err: &dyn Fn(String) -> BuildError,
    ) -> Result<PathBuf, BuildError> {
        let tree = SourceTree {
            root: sources.context.clone(),
            ignore: sources.ignore.clone(),
            what: "build context".into(),
        };
        let sel = context_entry(&tree, source).map_err(|e| err(e.to_string()))?;
        let host = tree.root.join(&sel.rel);
        let copy = dirs.scratch.join(format!("ctx-{i}"));
        let io = |e| BuildError::io("copying the bind source to", &copy, e);
        if !sel.is_dir {
            if read_only {
                return Ok(host);
            }
            fs::copy(&host, &copy).map_err(io)?;
            return Ok(copy);
        }
        let lower = if filters_anything(&tree, &sel.rel).map_err(io)? {
            copy_tree(&tree, &sel.rel, &copy, true).map_err(io)?;
            copy
        } else {
            host
        };
        if read_only {
            return Ok(lower);
        }
        self.overlay_dirs(dirs, &[lower], &format!("rw-{i}"))
    }

    /// Where the step's bundle must be written: on the secrets tmpfs when a secret is exposed
    /// as an environment variable (the bundle's config.json then holds it), else None.
    pub(crate) fn private_bundle_dir(&self) -> Option<PathBuf> {
        self.env_secrets
            .then(|| self.secrets.as_ref().map(|d| d.join("bundle")))
            .flatten()
    }

    /// A tmpfs in scratch for this step's secret copies (never on disk).
    fn secrets_dir(&mut self, dirs: &StepDirs<'_>) -> Result<PathBuf, BuildError> {
        if let Some(d) = &self.secrets {
            return Ok(d.clone());
        }
        use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_change};
        let dir = dirs.scratch.join("secrets");
        let io = |e: io::Error| BuildError::io("mounting a tmpfs for secrets at", &dir, e);
        fs::create_dir_all(&dir).map_err(io)?;
        mount(
            "tmpfs",
            &dir,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            Some(c"mode=0700"),
        )
        .map_err(|e| io(e.into()))?;
        self.host.push(dir.clone());
        let _ = mount_change(&dir, MountPropagationFlags::PRIVATE);
        self.secrets = Some(dir.clone());
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_absolute_and_clean() {
        assert_eq!(abs_target("/app", "cache").unwrap(), "/app/cache");
        assert_eq!(abs_target("/app", "/x/../y/").unwrap(), "/y");
        assert!(abs_target("/", "").is_err());
        assert!(abs_target("/app", "..").is_err());
        assert!(context_rel("../etc").is_err());
        assert_eq!(context_rel("./a/../b").unwrap(), "b");
    }
}

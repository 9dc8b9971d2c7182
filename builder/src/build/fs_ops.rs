//! Turning COPY/ADD and `RUN --mount` into the filesystem operations [`crate::fs_step`]
//! carries out, each adding what it reads to the step's cache key.

use std::collections::BTreeMap;

use berth_store::Image;

use super::{Builder, StageResult};
use crate::cache::KeyInputs;
use crate::error::BuildError;
use crate::frontend::mount::Mount;
use crate::frontend::{Copy, Instruction, Source};
use crate::fs_step::FsOp;
use crate::run_mounts::{MountPlan, Origin};

impl Builder<'_> {
    /// `RUN --mount`s planned (see [`crate::run_mounts`]); binds from the context and
    /// `from=` roots add to the step's key.
    pub(super) fn plan_mounts(
        &mut self,
        mounts: &[Mount],
        cwd: &str,
        results: &[Option<StageResult>],
        bases: &BTreeMap<String, Image>,
        ins: &Instruction,
        inputs: &mut KeyInputs,
    ) -> Result<(Vec<MountPlan>, Vec<String>), BuildError> {
        if mounts.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let err = |message: String| BuildError::Step {
            line: ins.start_line,
            instruction: ins.original.trim().to_string(),
            message,
        };
        let store = self.store;
        let stage_names = &self.stage_names;
        let mut from = |f: &str| -> Result<(Origin, String), BuildError> {
            let lower = f.to_ascii_lowercase();
            let index = stage_names
                .iter()
                .position(|n| n.as_deref() == Some(lower.as_str()))
                .or_else(|| f.parse::<usize>().ok());
            if let Some(r) = index.and_then(|i| results.get(i).cloned().flatten()) {
                let name = format!("stage {f}");
                return Ok((
                    Origin::Root {
                        image: Box::new(r.image),
                        name,
                    },
                    r.key,
                ));
            }
            let img = match bases.get(f) {
                Some(i) => i.clone(),
                None => store
                    .resolve_image(f)
                    .map_err(|e| BuildError::MissingImage {
                        reference: f.to_string(),
                        line: ins.start_line,
                        reason: e.to_string(),
                    })?,
            };
            let key = img.id.to_string();
            let name = format!("image {f}");
            Ok((
                Origin::Root {
                    image: Box::new(Some(img)),
                    name,
                },
                key,
            ))
        };
        crate::run_mounts::plan(
            mounts,
            cwd,
            &mut from,
            &self.context,
            &mut self.memo.lock().unwrap_or_else(|e| e.into_inner()),
            &mut inputs.files,
            &err,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_op(
        &mut self,
        cur: &StageResult,
        c: &Copy,
        is_add: bool,
        ins: &Instruction,
        results: &[Option<StageResult>],
        bases: &BTreeMap<String, Image>,
        inputs: &mut KeyInputs,
    ) -> Result<FsOp, BuildError> {
        let err = |message: String| BuildError::Step {
            line: ins.start_line,
            instruction: ins.original.trim().to_string(),
            message,
        };
        // Sources by kind: context (or --from) paths, URLs and git repositories (ADD only),
        // and heredoc bodies.
        let mut paths: Vec<&str> = Vec::new();
        let mut remote_srcs: Vec<(&str, Option<crate::fetch::GitRef>)> = Vec::new();
        for s in &c.sources {
            let Source::Path(p) = s else { continue };
            use crate::fetch::SourceKind;
            match crate::fetch::classify(p).map_err(|m| err(format!("{p}: {m}")))? {
                SourceKind::Local => paths.push(p),
                SourceKind::Http if !is_add => {
                    return Err(err(format!(
                        "source can't be a URL for COPY ({p}): use ADD to download it"
                    )));
                }
                SourceKind::Git(_) if !is_add => {
                    return Err(err(format!(
                        "source can't be a git ref for COPY ({p}): use ADD to fetch it"
                    )));
                }
                SourceKind::Http => remote_srcs.push((p, None)),
                SourceKind::Git(g) => remote_srcs.push((p, Some(g))),
                // COPY reads any other string as a path, as BuildKit does.
                SourceKind::BadScheme(_) if !is_add => paths.push(p),
                SourceKind::BadScheme(scheme) => {
                    return Err(err(format!(
                        "unsupported URL scheme {scheme:?} in source {p:?}: ADD fetches http:// and https:// files and git repositories (git://, ssh://, git@host:path, https://host/repo.git)"
                    )));
                }
            }
        }
        if c.checksum.is_some() {
            let n = c
                .sources
                .iter()
                .filter(|s| matches!(s, Source::Path(_)))
                .count();
            if n != 1 {
                return Err(err(
                    "checksum can't be specified for multiple sources".into()
                ));
            }
            if remote_srcs.is_empty() {
                return Err(err(
                    "checksum requires HTTP(S) or Git sources: --checksum verifies a download, not a context file".into(),
                ));
            }
        }
        let mut remote = Vec::with_capacity(remote_srcs.len());
        for (src, git) in remote_srcs {
            let r = match git {
                None => {
                    // Downloads wait in the builder's own temp directory: the store's is
                    // swept by `image prune` as abandoned.
                    let dl = self.store.root().join("builder").join("tmp");
                    std::fs::create_dir_all(&dl).map_err(|e| BuildError::io("creating", &dl, e))?;
                    crate::fetch::Remote::http(
                        src,
                        c.checksum.as_deref(),
                        c.unpack.unwrap_or(false),
                        &self.store.root().join("builder").join("http"),
                        &dl,
                    )
                    .map_err(|e| err(e.to_string()))?
                }
                Some(mut g) => {
                    if c.keep_git_dir && g.keep_git_dir == Some(false) {
                        return Err(err("inconsistent keep-git-dir configuration".into()));
                    }
                    if let (Some(a), Some(b)) = (&c.checksum, &g.checksum)
                        && a != b
                    {
                        return Err(err(format!("checksum mismatch {a:?} != {b:?}")));
                    }
                    if let Some(cs) = &c.checksum {
                        g.checksum = Some(cs.clone());
                        if g.reference.is_none() {
                            g.reference = Some(cs.clone());
                        }
                    }
                    let res = crate::fetch::git::resolve(&g).map_err(|e| err(e.to_string()))?;
                    crate::fetch::Remote::Git {
                        keep_git_dir: g.keep_git_dir.unwrap_or(c.keep_git_dir),
                        git: g,
                        commit: res.commit,
                        refname: res.refname,
                    }
                }
            };
            inputs.files.insert(src.to_string(), r.key());
            remote.push(r);
        }
        let inline: Vec<(String, String)> = c
            .sources
            .iter()
            .filter_map(|s| match s {
                Source::Heredoc(h) => Some((h.name.clone(), h.data())),
                Source::Path(_) => None,
            })
            .collect();
        if c.sources.len() > 1 && !c.dest.ends_with('/') {
            return Err(err(
                "When using COPY with more than one source file, the destination must be a directory and end with a /".into(),
            ));
        }
        let chmod = c
            .chmod
            .as_deref()
            .map(crate::copy::parse_chmod)
            .transpose()
            .map_err(|e| err(e.to_string()))?;
        let dest = if c.dest.starts_with('/') {
            c.dest.clone()
        } else {
            let wd = cur.config.workdir();
            let mut d = format!("{}/{}", wd.trim_end_matches('/'), c.dest);
            if c.dest == "." || c.dest.ends_with('/') {
                d.push('/');
            }
            d
        };
        // Where the sources come from: the context, or another stage's or image's root.
        let from = match &c.from {
            None => None,
            Some(f) => {
                let lower = f.to_ascii_lowercase();
                let index = self
                    .stage_names
                    .iter()
                    .position(|n| n.as_deref() == Some(lower.as_str()))
                    .or_else(|| f.parse::<usize>().ok());
                let found = index.and_then(|i| results.get(i).cloned().flatten());
                match found {
                    Some(r) => {
                        inputs.files.insert("--from".into(), r.key.clone());
                        Some(r.image)
                    }
                    None => {
                        let img = match bases.get(f) {
                            Some(i) => i.clone(),
                            None => self.store.resolve_image(f).map_err(|e| {
                                BuildError::MissingImage {
                                    reference: f.clone(),
                                    line: ins.start_line,
                                    reason: e.to_string(),
                                }
                            })?,
                        };
                        inputs.files.insert("--from".into(), img.id.to_string());
                        Some(Some(img))
                    }
                }
            }
        };
        if from.is_none() {
            for p in &paths {
                let selected = self.context.select(p)?;
                for sel in &selected {
                    let hashes = self
                        .context
                        .hash_selection(
                            sel,
                            &mut self.memo.lock().unwrap_or_else(|e| e.into_inner()),
                        )
                        .map_err(|e| {
                            BuildError::io("reading", self.context.root.join(&sel.rel), e)
                        })?;
                    inputs.files.extend(hashes);
                }
            }
        }
        Ok(FsOp::Copy {
            sources: paths.iter().map(|s| s.to_string()).collect(),
            from,
            dest,
            chown: c.chown.clone(),
            chmod,
            unpack: is_add && c.unpack.unwrap_or(true),
            context_root: self.context.root.clone(),
            ignore: self.context.ignore.clone(),
            inline,
            remote,
        })
    }
}

//! ADD's remote sources, read as BuildKit reads them: which source strings are http(s) files
//! and which are git repositories (dfgitutil's rules: `git://`, `ssh://`, `user@host:path`, and
//! http(s) URLs whose path ends in `.git`), what a step fetches from them ([`Remote`]), and
//! how the fetched content lands in the step's root. [`http`] downloads, [`git`] clones.

pub mod git;
pub mod http;

use std::path::Path;
use std::sync::Arc;

pub use git::{GitError, GitRef};

/// What stops a remote source from being fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error("{url}: the server answered 304 Not Modified to a plain GET")]
    NotModified { url: String },
    #[error("digest mismatch for {url}: {actual} (expected: {expected})")]
    DigestMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("git subdirectory {subdir:?}: {source}")]
    Subdir {
        subdir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("subdirectory {subdir:?} not found in {remote} at {commit}")]
    SubdirNotFound {
        subdir: String,
        remote: String,
        commit: String,
    },
}

/// What a COPY/ADD source string names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A path in the context (or the `--from` root).
    Local,
    /// An http(s) file.
    Http,
    /// A git repository.
    Git(GitRef),
    /// `scheme://…` with a scheme no source type reads (`ftp://`, `file://`).
    BadScheme(String),
}

/// The `scheme` of `scheme://…` (BuildKit's `^[a-zA-Z0-9]+://`), lower-cased.
fn scheme_of(src: &str) -> Option<String> {
    let (scheme, _) = src.split_once("://")?;
    (!scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| scheme.to_ascii_lowercase())
}

/// Classifies a source string. Fails only on a git address whose options cannot be read.
pub fn classify(src: &str) -> Result<SourceKind, GitError> {
    if src.starts_with("./") || src.starts_with("../") || src.starts_with("github.com/") {
        // `github.com/x/y` is indistinguishable from a local path: BuildKit reads it as one
        // (it accepts that form only for build contexts).
        return Ok(SourceKind::Local);
    }
    match scheme_of(src).as_deref() {
        Some("http" | "https") => match git::parse(src)? {
            Some(g) => Ok(SourceKind::Git(g)),
            None => Ok(SourceKind::Http),
        },
        Some("git" | "ssh") => Ok(git::parse(src)?.map_or(SourceKind::Local, SourceKind::Git)),
        Some(other) => Ok(SourceKind::BadScheme(other.to_string())),
        None if git::is_scp_style(src) => {
            Ok(git::parse(src)?.map_or(SourceKind::Local, SourceKind::Git))
        }
        None => Ok(SourceKind::Local),
    }
}

/// A remote source of a step, resolved far enough for the cache key: an http file's content
/// digest (downloaded already, or known from `--checksum` or an unchanged ETag) or a git
/// ref's commit.
#[derive(Debug, Clone)]
pub enum Remote {
    Http {
        url: String,
        /// The file name (from the URL path).
        name: String,
        /// `sha256:…` the content has (or must have).
        digest: String,
        /// `Last-Modified`, which becomes the file's mtime (else the epoch, as BuildKit).
        last_modified: Option<String>,
        /// The downloaded content, when the key needed it; fetched again otherwise.
        file: Option<Arc<tempfile::TempPath>>,
        /// `ADD --unpack=true`: an archive is unpacked instead of copied.
        unpack: bool,
    },
    Git {
        git: GitRef,
        commit: String,
        /// The full ref name `ls-remote` resolved (`refs/heads/main`), fetched by name.
        refname: Option<String>,
        keep_git_dir: bool,
    },
}

impl Remote {
    /// An http source of ADD, resolved for the cache key ([`http::resolve`]).
    pub fn http(
        url: &str,
        checksum: Option<&str>,
        unpack: bool,
        state: &Path,
        tmp: &Path,
    ) -> Result<Remote, http::HttpError> {
        let r = http::resolve(url, checksum, state, tmp)?;
        Ok(Remote::Http {
            url: url.to_string(),
            name: http::file_name(url),
            digest: r.digest,
            last_modified: r.last_modified,
            file: r.file.map(Arc::new),
            unpack,
        })
    }

    /// The cache key part: what the content is, never where it was fetched to.
    pub fn key(&self) -> String {
        match self {
            Remote::Http {
                name,
                digest,
                last_modified,
                ..
            } => format!(
                "url {digest} {name} {}",
                last_modified.as_deref().unwrap_or("")
            ),
            Remote::Git {
                git,
                commit,
                keep_git_dir,
                ..
            } => format!(
                "git {commit} subdir={} keep-git-dir={keep_git_dir}",
                git.subdir.as_deref().unwrap_or("")
            ),
        }
    }

    /// Makes the content available on the host: an http file (downloaded into `tmp` now when
    /// the key did not need it, and checked against the digest) or a tree checked out in
    /// `dir` (which must not exist).
    pub fn fetch(&self, dir: &Path, tmp: &Path) -> Result<Fetched, FetchError> {
        match self {
            Remote::Http {
                url,
                digest,
                file,
                last_modified,
                ..
            } => {
                if let Some(f) = file {
                    return Ok(Fetched::File {
                        path: f.to_path_buf(),
                        _keep: None,
                        mtime: http::mtime(last_modified.as_deref()),
                    });
                }
                let d = http::download(url, tmp, None)?
                    .ok_or_else(|| FetchError::NotModified { url: url.clone() })?;
                if &d.digest != digest {
                    return Err(FetchError::DigestMismatch {
                        url: url.clone(),
                        expected: digest.clone(),
                        actual: d.digest.clone(),
                    });
                }
                Ok(Fetched::File {
                    path: d.file.to_path_buf(),
                    mtime: http::mtime(d.last_modified.as_deref().or(last_modified.as_deref())),
                    _keep: Some(d.file),
                })
            }
            Remote::Git {
                git,
                commit,
                refname,
                keep_git_dir,
            } => {
                let dir = dir.to_path_buf();
                git::checkout(git, commit, refname.as_deref(), &dir)?;
                let root = match &git.subdir {
                    Some(s) => {
                        let sub = crate::context::clean_rel(s);
                        // Symlinks in the subdirectory's path are followed inside the
                        // checkout only, never onto the host.
                        let p =
                            berth_store::inroot::resolve(&dir, &sub, true).map_err(|source| {
                                FetchError::Subdir {
                                    subdir: s.clone(),
                                    source,
                                }
                            })?;
                        if sub.is_empty() {
                            dir.clone()
                        } else if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                            p
                        } else {
                            return Err(FetchError::SubdirNotFound {
                                subdir: s.clone(),
                                remote: git.remote.clone(),
                                commit: commit.clone(),
                            });
                        }
                    }
                    None => dir.clone(),
                };
                Ok(Fetched::Tree {
                    root,
                    keep_git_dir: *keep_git_dir,
                })
            }
        }
    }
}

/// Fetched content on the host.
pub enum Fetched {
    File {
        path: std::path::PathBuf,
        mtime: std::time::SystemTime,
        /// A download that lives as long as this.
        _keep: Option<tempfile::TempPath>,
    },
    Tree {
        root: std::path::PathBuf,
        keep_git_dir: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_kinds_follow_buildkit() {
        assert_eq!(classify("a.txt").unwrap(), SourceKind::Local);
        assert_eq!(classify("./x.git").unwrap(), SourceKind::Local);
        assert_eq!(
            classify("github.com/moby/buildkit").unwrap(),
            SourceKind::Local
        );
        assert_eq!(
            classify("https://example.com/f.tar.gz").unwrap(),
            SourceKind::Http
        );
        assert_eq!(classify("HTTP://example.com/a").unwrap(), SourceKind::Http);
        assert!(matches!(
            classify("https://example.com/r.git#v1:sub").unwrap(),
            SourceKind::Git(g) if g.remote == "https://example.com/r.git"
                && g.reference.as_deref() == Some("v1")
                && g.subdir.as_deref() == Some("sub")
        ));
        assert!(matches!(
            classify("git://127.0.0.1/r").unwrap(),
            SourceKind::Git(_)
        ));
        assert!(matches!(
            classify("git@github.com:moby/buildkit.git#main").unwrap(),
            SourceKind::Git(g) if g.remote == "git@github.com:moby/buildkit.git"
        ));
        assert_eq!(
            classify("ftp://example.com/f").unwrap(),
            SourceKind::BadScheme("ftp".into())
        );
        assert_eq!(
            classify("file:///etc/passwd").unwrap(),
            SourceKind::BadScheme("file".into())
        );
    }
}

//! `ADD <git address>[#ref[:subdir]] dest`: the address read as BuildKit reads it (fragment
//! `#ref:subdir` or `##ref=…,subdir=…`, query options `?ref=&tag=&branch=&subdir=&checksum=
//! &keep-git-dir&submodules=`), the ref resolved to a commit with `git ls-remote` (the cache
//! key), and a shallow fetch of that commit with the `git` binary when the step runs.

use std::path::Path;
use std::process::{Command, Stdio};

/// What stops a git source: an address that does not read, or a `git` command that failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("invalid field '{field}' must be a key=value pair")]
    FieldNotKeyValue { field: String },
    #[error("unexpected key '{key}' in '{field}' (supported keys: ref, commit, subdir)")]
    UnexpectedKey { key: String, field: String },
    #[error("invalid {key} value: {value:?}")]
    InvalidBool { key: String, value: String },
    /// The same option given twice with different values (`#ref` and `?ref=`).
    #[error("{what} conflicts: {first:?} vs {second:?}")]
    Conflict {
        what: &'static str,
        first: String,
        second: String,
    },
    #[error("unexpected query {key:?} in git address {address}")]
    UnexpectedQuery { key: String, address: String },
    #[error("branch conflicts with tag")]
    BranchAndTag,
    #[error("ADD from a git repository needs the git binary: install git")]
    GitMissing,
    #[error("running git: {0}")]
    Spawn(#[source] std::io::Error),
    /// A `git` command that failed, with the last lines of its stderr.
    #[error("git {command}: {tail}")]
    Command { command: String, tail: String },
    #[error("failed to resolve {want:?} in {remote}: {source}")]
    Resolve {
        want: String,
        remote: String,
        #[source]
        source: Box<GitError>,
    },
    #[error(
        "git ref {want:?} not found in {remote}: name a branch, tag or full commit that exists there"
    )]
    RefNotFound { want: String, remote: String },
    #[error("expected checksum to match {checksum}, got {commit}")]
    Checksum { checksum: String, commit: String },
    #[error("creating {}: {source}", path.display())]
    CreateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to fetch {target} from {remote}: {source}")]
    Fetch {
        target: String,
        remote: String,
        #[source]
        source: Box<GitError>,
    },
    #[error("commit {commit} not found in {remote}: {source}")]
    Checkout {
        commit: String,
        remote: String,
        #[source]
        source: Box<GitError>,
    },
    #[error("checking out the submodules of {remote}: {source}")]
    Submodules {
        remote: String,
        #[source]
        source: Box<GitError>,
    },
}

/// A git source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    /// What `git` is given: the address without fragment and BuildKit's query options.
    pub remote: String,
    /// A branch, tag, full ref name or commit; the remote's HEAD when `None`.
    pub reference: Option<String>,
    /// A directory of the repository whose contents are copied instead of the whole tree.
    pub subdir: Option<String>,
    /// `?keep-git-dir=…` in the address.
    pub keep_git_dir: Option<bool>,
    /// `?checksum=` / `?commit=`: the commit the ref must resolve to (a prefix of it).
    pub checksum: Option<String>,
    /// Whether submodules are checked out too (BuildKit's default: yes).
    pub submodules: bool,
}

/// BuildKit's implicit ssh form, `user@host:path`.
pub fn is_scp_style(s: &str) -> bool {
    let Some((user, rest)) = s.split_once('@') else {
        return false;
    };
    let Some((host, _)) = rest.split_once(':') else {
        return false;
    };
    !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn parse_bool(key: &str, v: &str) -> Result<bool, GitError> {
    match v {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(GitError::InvalidBool {
            key: key.to_string(),
            value: v.to_string(),
        }),
    }
}

/// Reads a git address; `None` for an http(s) URL whose path does not end in `.git` (a file).
pub fn parse(src: &str) -> Result<Option<GitRef>, GitError> {
    let (base, fragment) = match src.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (src, None),
    };
    let scheme = base.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let (remote, query) = match (&scheme, base.split_once('?')) {
        (Some(_), Some((r, q))) => (r, Some(q)),
        _ => (base, None),
    };
    if let Some(s) = &scheme
        && (s == "http" || s == "https")
    {
        let after = &remote[s.len() + 3..];
        let path = after.find('/').map_or("", |i| &after[i..]);
        if !path.ends_with(".git") {
            return Ok(None);
        }
    }
    let mut g = GitRef {
        remote: remote.to_string(),
        reference: None,
        subdir: None,
        keep_git_dir: None,
        checksum: None,
        submodules: true,
    };
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    match fragment {
        Some(f) if f.starts_with('#') => {
            for field in f[1..].split(',').filter(|f| !f.is_empty()) {
                let (k, v) = field
                    .split_once('=')
                    .ok_or_else(|| GitError::FieldNotKeyValue {
                        field: field.to_string(),
                    })?;
                match k.to_ascii_lowercase().as_str() {
                    "ref" => g.reference = some(v),
                    "commit" => g.checksum = some(v),
                    "subdir" => g.subdir = some(v),
                    other => {
                        return Err(GitError::UnexpectedKey {
                            key: other.to_string(),
                            field: field.to_string(),
                        });
                    }
                }
            }
        }
        Some(f) => {
            let (r, sub) = f.split_once(':').unwrap_or((f, ""));
            g.reference = some(r);
            g.subdir = some(sub);
        }
        None => {}
    }
    let (mut tag, mut branch) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let conflict = |what: &'static str, a: &Option<String>| match a {
            Some(a) if a != v => Err(GitError::Conflict {
                what,
                first: a.clone(),
                second: v.to_string(),
            }),
            _ => Ok(()),
        };
        match k {
            "ref" => {
                conflict("ref", &g.reference)?;
                g.reference = some(v);
            }
            "tag" => tag = some(v),
            "branch" => branch = some(v),
            "subdir" => {
                conflict("subdir", &g.subdir)?;
                g.subdir = some(v);
            }
            "checksum" | "commit" => g.checksum = some(v),
            "keep-git-dir" => g.keep_git_dir = Some(parse_bool(k, v)?),
            "submodules" => g.submodules = parse_bool(k, v)?,
            _ => {
                return Err(GitError::UnexpectedQuery {
                    key: k.to_string(),
                    address: src.to_string(),
                });
            }
        }
    }
    if tag.is_some() && branch.is_some() {
        return Err(GitError::BranchAndTag);
    }
    let named = tag
        .map(|t| with_prefix("refs/tags/", t))
        .or_else(|| branch.map(|b| with_prefix("refs/heads/", b)));
    if let Some(n) = named {
        if let Some(r) = &g.reference
            && *r != n
        {
            return Err(GitError::Conflict {
                what: "ref",
                first: r.clone(),
                second: n,
            });
        }
        g.reference = Some(n);
    }
    if g.reference.is_none() {
        g.reference = g.checksum.clone();
    }
    Ok(Some(g))
}

fn with_prefix(prefix: &str, s: String) -> String {
    if s.starts_with(prefix) {
        s
    } else {
        format!("{prefix}{s}")
    }
}

fn is_full_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Runs `git` without prompts or system config; Ok(stdout) or the last lines of stderr.
fn git(dir: Option<&Path>, args: &[&str]) -> Result<String, GitError> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                GitError::GitMissing
            } else {
                GitError::Spawn(e)
            }
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join("; ");
    Err(GitError::Command {
        command: args[0].to_string(),
        tail: tail.trim().to_string(),
    })
}

/// A ref resolved on the remote.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub commit: String,
    /// The full name fetched (`refs/tags/v1`); `None` when a commit was given.
    pub refname: Option<String>,
}

/// Resolves the ref to a commit with `git ls-remote`, as BuildKit does for its cache key.
pub fn resolve(g: &GitRef) -> Result<Resolved, GitError> {
    let want = g.reference.as_deref().unwrap_or("HEAD");
    let resolved = if is_full_commit(want) {
        Resolved {
            commit: want.to_ascii_lowercase(),
            refname: None,
        }
    } else {
        let out =
            git(None, &["ls-remote", "--", &g.remote, want]).map_err(|e| GitError::Resolve {
                want: want.to_string(),
                remote: g.remote.clone(),
                source: Box::new(e),
            })?;
        let refs: Vec<(&str, &str)> = out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(sha, name)| (sha.trim(), name.trim()))
            .collect();
        let pick = |name: &str| refs.iter().find(|(_, n)| *n == name).map(|(s, _)| *s);
        let peeled_tag = format!("refs/tags/{want}^{{}}");
        let tag = format!("refs/tags/{want}");
        let head = format!("refs/heads/{want}");
        let found = pick(want)
            .map(|s| (s, want.to_string()))
            .or_else(|| pick(&peeled_tag).map(|s| (s, tag.clone())))
            .or_else(|| pick(&tag).map(|s| (s, tag.clone())))
            .or_else(|| pick(&head).map(|s| (s, head.clone())));
        let Some((sha, name)) = found else {
            return Err(GitError::RefNotFound {
                want: want.to_string(),
                remote: g.remote.clone(),
            });
        };
        Resolved {
            commit: sha.to_ascii_lowercase(),
            refname: Some(name),
        }
    };
    if let Some(c) = &g.checksum
        && !resolved.commit.starts_with(&c.to_ascii_lowercase())
    {
        return Err(GitError::Checksum {
            checksum: c.clone(),
            commit: resolved.commit,
        });
    }
    Ok(resolved)
}

/// Checks out `commit` of `g` in `dir` (created), fetching as little as the server allows:
/// a shallow fetch of the ref, else a full fetch (dumb http cannot do shallow ones).
pub fn checkout(
    g: &GitRef,
    commit: &str,
    refname: Option<&str>,
    dir: &Path,
) -> Result<(), GitError> {
    std::fs::create_dir_all(dir).map_err(|source| GitError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    git(Some(dir), &["init", "-q"])?;
    git(Some(dir), &["remote", "add", "origin", &g.remote])?;
    let target = refname.unwrap_or(commit);
    let fetched = git(
        Some(dir),
        &["fetch", "-q", "--depth=1", "--no-tags", "origin", target],
    )
    .or_else(|_| git(Some(dir), &["fetch", "-q", "--no-tags", "origin", target]))
    .or_else(|e| match refname {
        // A commit the server does not let us ask for by name: fetch everything.
        None => git(Some(dir), &["fetch", "-q", "origin"]),
        Some(_) => Err(e),
    });
    fetched.map_err(|e| GitError::Fetch {
        target: target.to_string(),
        remote: g.remote.clone(),
        source: Box::new(e),
    })?;
    git(
        Some(dir),
        &["-c", "advice.detachedHead=false", "checkout", "-q", commit],
    )
    .map_err(|e| GitError::Checkout {
        commit: commit.to_string(),
        remote: g.remote.clone(),
        source: Box::new(e),
    })?;
    if g.submodules && dir.join(".gitmodules").is_file() {
        git(
            Some(dir),
            &[
                "submodule",
                "update",
                "-q",
                "--init",
                "--recursive",
                "--depth=1",
            ],
        )
        .map_err(|e| GitError::Submodules {
            remote: g.remote.clone(),
            source: Box::new(e),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_and_queries() {
        let g = parse("https://h/r.git##ref=v1,subdir=d").unwrap().unwrap();
        assert_eq!(
            (g.reference.as_deref(), g.subdir.as_deref()),
            (Some("v1"), Some("d"))
        );
        let g = parse("https://h/r.git?branch=dev&keep-git-dir=true")
            .unwrap()
            .unwrap();
        assert_eq!(g.remote, "https://h/r.git");
        assert_eq!(g.reference.as_deref(), Some("refs/heads/dev"));
        assert_eq!(g.keep_git_dir, Some(true));
        assert!(matches!(
            parse("https://h/r.git?nope=1"),
            Err(GitError::UnexpectedQuery { .. })
        ));
        assert!(matches!(
            parse("https://h/r.git?tag=a&branch=b"),
            Err(GitError::BranchAndTag)
        ));
        assert_eq!(
            parse("https://h/r.git?ref=v2#v1").unwrap_err().to_string(),
            "ref conflicts: \"v1\" vs \"v2\""
        );
        assert!(parse("https://h/file.txt").unwrap().is_none());
        assert!(is_scp_style("git@github.com:a/b.git"));
        assert!(!is_scp_style("a.txt"));
        assert!(!is_scp_style("me@host"));
    }
}

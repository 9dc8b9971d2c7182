//! htpasswd basic auth: bcrypt entries (`user:$2y$…`), checked on every `/v2` request. A bcrypt
//! check costs tens of milliseconds, so a successful (user, password) pair is remembered by its
//! sha256 for the life of the process.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

pub const REALM: &str = "berth-registry";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected `user:bcrypt-hash`")]
    BadLine { path: PathBuf, line: usize },
    #[error("user name {0:?} must be non-empty and contain no `:` or whitespace")]
    BadUser(String),
    #[error("hashing the password: {0}")]
    Hash(#[from] bcrypt::BcryptError),
}

pub struct Htpasswd {
    users: HashMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Arc<Htpasswd>, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (u, h) = line
                .split_once(':')
                .filter(|(u, h)| !u.is_empty() && h.starts_with("$2"))
                .ok_or(AuthError::BadLine {
                    path: path.to_path_buf(),
                    line: i + 1,
                })?;
            users.insert(u.to_string(), h.to_string());
        }
        Ok(Arc::new(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        }))
    }

    /// Whether these credentials were already verified: true means valid; false means a bcrypt
    /// check ([`Htpasswd::check`]) is needed.
    pub fn known_good(&self, authorization: Option<&str>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let Some(hash) = self.users.get(&user) else {
            return false;
        };
        let key = cache_key(&user, &password, hash);
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
    }

    /// Whether `user` has a line in the file.
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Whether an `Authorization` header value carries valid basic credentials.
    pub fn check(&self, authorization: Option<&str>) -> bool {
        self.authenticate(authorization).is_some()
    }

    /// The user whose valid basic credentials an `Authorization` header value carries.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<String> {
        let (user, password) = authorization.and_then(parse_basic)?;
        let hash = self.users.get(&user)?;
        let key = cache_key(&user, &password, hash);
        if self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return Some(user);
        }
        if !bcrypt::verify(&password, hash).unwrap_or(false) {
            return None;
        }
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key);
        Some(user)
    }
}

fn cache_key(user: &str, password: &str, hash: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(user.as_bytes())
        .chain_update([0])
        .chain_update(password.as_bytes())
        .chain_update([0])
        .chain_update(hash.as_bytes())
        .finalize()
        .into()
}

fn parse_basic(h: &str) -> Option<(String, String)> {
    let (scheme, rest) = h.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Add `user` with `password` to the htpasswd file at `path`, replacing an existing line for
/// that user; the file is rewritten atomically (created when missing).
pub fn set_password(path: &Path, user: &str, password: &str) -> Result<(), AuthError> {
    if user.is_empty() || user.contains(':') || user.chars().any(char::is_whitespace) {
        return Err(AuthError::BadUser(user.to_string()));
    }
    let io = |source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    };
    let hash = bcrypt::hash_with_result(password, bcrypt::DEFAULT_COST)?
        .format_for_version(bcrypt::Version::TwoY);
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let mut out: String = old
        .lines()
        .filter(|l| l.split_once(':').map(|(u, _)| u) != Some(user))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("{user}:{hash}\n"));
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(out.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    }

    #[test]
    fn set_check_and_replace() {
        let dir = tempfile::TempDir::new().unwrap();
        let f = dir.path().join("htpasswd");
        set_password(&f, "alice", "s3cret").unwrap();
        set_password(&f, "bob", "pw").unwrap();
        set_password(&f, "alice", "new:pass").unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(
            text.lines().filter(|l| l.starts_with("alice:$2y$")).count(),
            1,
            "{text}"
        );
        let h = Htpasswd::load(&f).unwrap();
        assert!(!h.known_good(Some(&basic("alice", "new:pass"))));
        assert!(h.check(Some(&basic("alice", "new:pass"))));
        assert!(
            h.known_good(Some(&basic("alice", "new:pass"))),
            "remembered"
        );
        assert!(h.check(Some(&basic("alice", "new:pass"))));
        assert!(!h.check(Some(&basic("alice", "s3cret"))));
        assert!(h.check(Some(&basic("bob", "pw"))));
        assert_eq!(
            h.authenticate(Some(&basic("bob", "pw"))).as_deref(),
            Some("bob")
        );
        assert_eq!(h.authenticate(Some(&basic("bob", "nope"))), None);
        assert!(!h.check(Some(&basic("carol", "pw"))));
        assert!(!h.check(None));
        assert!(!h.check(Some("Bearer x")));
        assert!(!h.check(Some("Basic !!!")));
        assert!(set_password(&f, "a:b", "x").is_err());
    }

    #[test]
    fn rejects_malformed_files() {
        let dir = tempfile::TempDir::new().unwrap();
        let f = dir.path().join("htpasswd");
        std::fs::write(&f, "alice:plaintext\n").unwrap();
        assert!(matches!(
            Htpasswd::load(&f),
            Err(AuthError::BadLine { line: 1, .. })
        ));
    }
}

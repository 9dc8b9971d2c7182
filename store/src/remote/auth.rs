//! Registry credentials: berth's own file (`$BERTH_AUTH_FILE`, else
//! `~/.config/berth/auth.json`) in Docker's `config.json` shape (`{"auths": {"host": {"auth":
//! base64("user:pass")}}}`), read first, then Docker's `~/.docker/config.json` (read only).
//!
//! Either file may name credential helpers as Docker's does: `credHelpers` (registry → helper)
//! and `credsStore` (the helper for every other registry). A helper is the program
//! `docker-credential-<name>` on the PATH, spoken to with Docker's protocol: `get` / `store` /
//! `erase` with the server URL (or a JSON record) on stdin. In a file that names helpers, a
//! helper's answer wins over an `auths` entry, as in Docker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::endpoint::{DOCKER_HUB_AUTH_KEY, canonical_domain};
use super::error::RemoteError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Where `login` writes.
pub fn auth_file() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_AUTH_FILE") {
        return PathBuf::from(p);
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("/root/.config"));
    config.join("berth").join("auth.json")
}

/// Docker's client config, read for credentials `docker login` stored.
fn docker_config_file() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
}

/// The key an `auths` entry is stored under: Docker's legacy URL for Hub, `host[:port]` else.
pub fn auth_key(server: &str) -> String {
    let d = canonical_domain(server);
    if d == "docker.io" {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        d
    }
}

/// Decode one `auths` entry: `auth` (base64 `user:pass`) or `username`/`password` fields.
fn decode_entry(v: &Value) -> Option<Credentials> {
    if let Some(a) = v
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let raw = STANDARD.decode(a.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        return Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        });
    }
    let u = v.get("username")?.as_str()?;
    let p = v.get("password")?.as_str()?;
    Some(Credentials {
        username: u.to_string(),
        password: p.to_string(),
    })
}

/// Find credentials for registry `domain` in a parsed config: keys are compared after folding
/// scheme, path and Hub aliases (`https://index.docker.io/v1/` ≡ `docker.io`).
pub fn find_in(config: &Value, domain: &str) -> Option<Credentials> {
    let want = canonical_domain(domain);
    let auths = config.get("auths")?.as_object()?;
    auths
        .iter()
        .find(|(k, _)| canonical_domain(k) == want)
        .and_then(|(_, v)| decode_entry(v))
}

fn read_json(p: &Path) -> Result<Option<Value>, RemoteError> {
    match std::fs::read(p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| RemoteError::Config(format!("{}: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RemoteError::Config(format!("{}: {e}", p.display()))),
    }
}

/// Credentials for `domain`: berth's file first, then Docker's; in each, its credential helper
/// for the registry (if it names one) before its `auths` entry.
pub fn lookup(domain: &str) -> Result<Option<Credentials>, RemoteError> {
    for p in std::iter::once(auth_file()).chain(docker_config_file()) {
        let Some(v) = read_json(&p)? else { continue };
        if let Some(helper) = helper_for(&v, domain)
            && let Some(c) = helper_get(&helper, domain)?
        {
            return Ok(Some(c));
        }
        if let Some(c) = find_in(&v, domain) {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// The credential helper a config names for `domain`: its `credHelpers` entry, else
/// `credsStore`.
pub fn helper_for(config: &Value, domain: &str) -> Option<String> {
    let want = canonical_domain(domain);
    config
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| canonical_domain(k) == want)
                .and_then(|(_, v)| v.as_str())
        })
        .or_else(|| config.get("credsStore").and_then(Value::as_str))
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// What a helper is given as the server: Docker's legacy URL for Hub, `host[:port]` else.
fn helper_server(domain: &str) -> String {
    auth_key(domain)
}

/// Run `docker-credential-<helper> <action>` with `input` on stdin; its stdout, or an error
/// naming the helper and what it said.
fn run_helper(helper: &str, action: &str, input: &[u8]) -> Result<(bool, String), RemoteError> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let program = format!("docker-credential-{helper}");
    let fail = |e: String| RemoteError::Config(format!("credential helper {program}: {e}"));
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(if e.kind() == std::io::ErrorKind::NotFound {
                "not found on the PATH (install it, or remove credsStore/credHelpers from the \
                 config file)"
                    .to_string()
            } else {
                e.to_string()
            })
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let said = if stdout.is_empty() {
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    } else {
        stdout.clone()
    };
    Ok((
        out.status.success(),
        if out.status.success() { stdout } else { said },
    ))
}

/// `get` from a helper: None when it has nothing for the server (Docker's "credentials not
/// found" answer).
pub fn helper_get(helper: &str, domain: &str) -> Result<Option<Credentials>, RemoteError> {
    let (ok, out) = run_helper(helper, "get", helper_server(domain).as_bytes())?;
    if !ok {
        if out.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(RemoteError::Config(format!(
            "credential helper docker-credential-{helper} get: {out}"
        )));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        #[serde(default)]
        username: String,
        #[serde(default)]
        secret: String,
    }
    let a: Answer = serde_json::from_str(&out).map_err(|e| {
        RemoteError::Config(format!(
            "credential helper docker-credential-{helper} get: not its JSON answer: {e}"
        ))
    })?;
    if a.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: a.username,
        password: a.secret,
    }))
}

fn helper_store(helper: &str, server: &str, c: &Credentials) -> Result<(), RemoteError> {
    let input = serde_json::json!({
        "ServerURL": helper_server(server),
        "Username": c.username,
        "Secret": c.password,
    });
    let (ok, out) = run_helper(helper, "store", input.to_string().as_bytes())?;
    if ok {
        Ok(())
    } else {
        Err(RemoteError::Config(format!(
            "credential helper docker-credential-{helper} store: {out}"
        )))
    }
}

fn helper_erase(helper: &str, server: &str) -> Result<(), RemoteError> {
    let (ok, out) = run_helper(helper, "erase", helper_server(server).as_bytes())?;
    if ok || out.to_ascii_lowercase().contains("credentials not found") {
        Ok(())
    } else {
        Err(RemoteError::Config(format!(
            "credential helper docker-credential-{helper} erase: {out}"
        )))
    }
}

/// Add or replace `server`'s entry in `config` (other keys and entries kept).
pub fn set_in(config: &mut Value, server: &str, c: &Credentials) {
    if !config.is_object() {
        *config = Value::Object(Map::new());
    }
    let obj = config.as_object_mut().expect("made an object above");
    let auths = obj
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let auths = auths.as_object_mut().expect("made an object above");
    let want = canonical_domain(server);
    auths.retain(|k, _| canonical_domain(k) != want);
    let token = STANDARD.encode(format!("{}:{}", c.username, c.password));
    let mut entry = Map::new();
    entry.insert("auth".into(), Value::String(token));
    auths.insert(auth_key(server), Value::Object(entry));
}

/// Remove `server`'s entry; true when there was one.
pub fn remove_in(config: &mut Value, server: &str) -> bool {
    let want = canonical_domain(server);
    match config.get_mut("auths").and_then(Value::as_object_mut) {
        Some(auths) => {
            let before = auths.len();
            auths.retain(|k, _| canonical_domain(k) != want);
            auths.len() != before
        }
        None => false,
    }
}

fn write_config(p: &Path, v: &Value) -> Result<(), RemoteError> {
    let err = |e: std::io::Error| RemoteError::Config(format!("writing {}: {e}", p.display()));
    let dir = p.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    // Credentials: readable by the owner only.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    let bytes = serde_json::to_vec_pretty(v).expect("JSON values serialize");
    std::io::Write::write_all(&mut tmp, &bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(p).map_err(|e| err(e.error))?;
    Ok(())
}

/// Where `store` put credentials.
pub enum Stored {
    File(PathBuf),
    Helper(String),
}

/// Store credentials for `server`: with the credential helper berth's auth file names for it
/// (the file then keeps an empty `auths` entry, as Docker's does), else in the file itself.
pub fn store(server: &str, c: &Credentials) -> Result<Stored, RemoteError> {
    let p = auth_file();
    let mut v = read_json(&p)?.unwrap_or_else(|| Value::Object(Map::new()));
    let helper = helper_for(&v, server);
    if let Some(h) = &helper {
        helper_store(h, server, c)?;
    }
    set_in(&mut v, server, c);
    if helper.is_some()
        && let Some(entry) = v.get_mut("auths").and_then(|a| a.get_mut(auth_key(server)))
    {
        *entry = Value::Object(Map::new());
    }
    write_config(&p, &v)?;
    Ok(match helper {
        Some(h) => Stored::Helper(format!("docker-credential-{h}")),
        None => Stored::File(p),
    })
}

/// Forget `server` in berth's auth file (and its credential helper); false when it was not
/// there.
pub fn erase(server: &str) -> Result<bool, RemoteError> {
    let p = auth_file();
    let Some(mut v) = read_json(&p)? else {
        return Ok(false);
    };
    if let Some(h) = helper_for(&v, server) {
        helper_erase(&h, server)?;
    }
    let removed = remove_in(&mut v, server);
    if removed {
        write_config(&p, &v)?;
    }
    Ok(removed)
}

/// Registries with stored credentials (for messages).
pub fn known_servers(config: &Value) -> BTreeMap<String, ()> {
    config
        .get("auths")
        .and_then(Value::as_object)
        .map(|a| a.keys().map(|k| (canonical_domain(k), ())).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_style_entries_under_any_key_form() {
        let v: Value = serde_json::from_str(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
                "http://reg.lan:5000/v2/": {"username": "u2", "password": "p2"},
                "empty.lan": {"auth": ""}
            }, "credsStore": "desktop"}"#,
        )
        .unwrap();
        let hub = find_in(&v, "docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "pa:ss")
        );
        assert_eq!(find_in(&v, "registry-1.docker.io"), Some(hub));
        assert_eq!(find_in(&v, "reg.lan:5000").unwrap().username, "u2");
        assert_eq!(find_in(&v, "reg.lan"), None);
        assert_eq!(find_in(&v, "empty.lan"), None);
    }

    #[test]
    fn set_and_remove_keep_other_entries() {
        let mut v: Value =
            serde_json::from_str(r#"{"auths": {"a.lan": {"auth": "eDp5"}}, "other": 1}"#).unwrap();
        let c = Credentials {
            username: "me".into(),
            password: "secret".into(),
        };
        set_in(&mut v, "https://B.lan:5000", &c);
        set_in(&mut v, "docker.io", &c);
        assert_eq!(
            v["auths"]["b.lan:5000"]["auth"],
            STANDARD.encode("me:secret")
        );
        assert!(v["auths"][DOCKER_HUB_AUTH_KEY].is_object());
        assert_eq!(find_in(&v, "a.lan").unwrap().username, "x");
        assert_eq!(v["other"], 1);
        assert!(remove_in(&mut v, "b.lan:5000"));
        assert!(!remove_in(&mut v, "b.lan:5000"));
        assert!(remove_in(&mut v, "index.docker.io"));
        assert_eq!(known_servers(&v).len(), 1);
    }

    #[test]
    fn store_and_erase_roundtrip_in_a_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("auth.json");
        let c = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        let mut v = Value::Null;
        set_in(&mut v, "reg.lan", &c);
        write_config(&p, &v).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back = read_json(&p).unwrap().unwrap();
        assert_eq!(find_in(&back, "reg.lan"), Some(c));
    }
}

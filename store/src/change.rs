//! Superseded by `berth_builder::change` (the builder's front end reads the instructions and
//! expands `$VAR` as Docker does), which `import` uses. Left only for `commit` in
//! `src/cli/container_fs.rs` until it calls `berth_builder::change::apply_changes`; delete this
//! file then.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::error::{Result, StoreError};

fn bad(change: &str, reason: impl Into<String>) -> StoreError {
    StoreError::invalid(format!("--change {change:?}"), reason)
}

/// Split a shell-form argument list into words: whitespace separates, quotes group, a backslash
/// escapes the next character (outside single quotes).
pub fn split_words(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => cur.push(ch),
                            Some(ch) => {
                                cur.push('\\');
                                cur.push(ch);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(ch) => cur.push(ch),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(ch) = chars.next() {
                    cur.push(ch);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// `["a","b"]` (exec form) or shell form, which runs under `/bin/sh -c`.
fn command(change: &str, rest: &str) -> Result<Vec<String>> {
    let t = rest.trim();
    // Docker falls back to shell form when the JSON does not parse.
    if t.starts_with('[')
        && let Ok(v) = serde_json::from_str::<Vec<String>>(t)
    {
        return Ok(v);
    }
    if t.is_empty() {
        return Err(bad(change, "missing command"));
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), t.to_string()])
}

/// `K=V K2="v 2"` pairs, or the legacy `K V…` form (one pair, value is the rest).
fn pairs(change: &str, rest: &str) -> Result<Vec<(String, String)>> {
    let t = rest.trim();
    if t.is_empty() {
        return Err(bad(change, "needs at least one KEY=VALUE"));
    }
    let first = t.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (k, v) = t
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad(change, "needs KEY=VALUE or KEY VALUE"))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    for w in split_words(t).map_err(|e| bad(change, e))? {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| bad(change, format!("{w:?} is not KEY=VALUE")))?;
        if k.is_empty() {
            return Err(bad(change, format!("{w:?} has an empty key")));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn port(change: &str, p: &str) -> Result<String> {
    let (num, proto) = match p.split_once('/') {
        Some((n, pr)) => (n, pr.to_ascii_lowercase()),
        None => (p, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad(
            change,
            format!("invalid protocol {proto:?} in {p:?} (tcp, udp or sctp)"),
        ));
    }
    let valid = |s: &str| s.parse::<u16>().map(|n| n > 0).unwrap_or(false);
    let ok = match num.split_once('-') {
        Some((a, b)) => valid(a) && valid(b),
        None => valid(num),
    };
    if !ok {
        return Err(bad(change, format!("invalid port {p:?}")));
    }
    Ok(format!("{num}/{proto}"))
}

/// Apply `changes` to a Docker/OCI `config` object (the image config's `config` member).
pub fn apply_changes(config: &mut Map<String, Value>, changes: &[String]) -> Result<()> {
    let mut cmd_set = false;
    for change in changes {
        let t = change.trim();
        let (instr, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
        let rest = rest.trim();
        match instr.to_ascii_uppercase().as_str() {
            "CMD" => {
                config.insert("Cmd".into(), json!(command(change, rest)?));
                cmd_set = true;
            }
            "ENTRYPOINT" => {
                config.insert("Entrypoint".into(), json!(command(change, rest)?));
                // As in a Dockerfile, a new ENTRYPOINT resets an inherited CMD, but not one
                // these changes set.
                if !cmd_set {
                    config.remove("Cmd");
                }
            }
            "ENV" => {
                let mut env: Vec<String> = config
                    .get("Env")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                for (k, v) in pairs(change, rest)? {
                    env.retain(|e| e.split('=').next() != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                }
                config.insert("Env".into(), json!(env));
            }
            "LABEL" => {
                let mut labels: HashMap<String, String> = config
                    .get("Labels")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                labels.extend(pairs(change, rest)?);
                config.insert("Labels".into(), json!(labels));
            }
            "EXPOSE" => {
                let mut ports: Map<String, Value> = config
                    .get("ExposedPorts")
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default();
                let words = split_words(rest).map_err(|e| bad(change, e))?;
                if words.is_empty() {
                    return Err(bad(change, "EXPOSE needs at least one port"));
                }
                for w in words {
                    ports.insert(port(change, &w)?, json!({}));
                }
                config.insert("ExposedPorts".into(), Value::Object(ports));
            }
            "VOLUME" => {
                let list: Vec<String> = if rest.starts_with('[') {
                    serde_json::from_str(rest)
                        .map_err(|e| bad(change, format!("invalid JSON list: {e}")))?
                } else {
                    split_words(rest).map_err(|e| bad(change, e))?
                };
                if list.is_empty() {
                    return Err(bad(change, "VOLUME needs a path"));
                }
                let mut vols = config
                    .get("Volumes")
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default();
                for v in list {
                    vols.insert(v, json!({}));
                }
                config.insert("Volumes".into(), Value::Object(vols));
            }
            "USER" | "STOPSIGNAL" | "WORKDIR" => {
                if rest.is_empty() {
                    return Err(bad(change, format!("{instr} needs a value")));
                }
                let key = match instr.to_ascii_uppercase().as_str() {
                    "USER" => "User",
                    "STOPSIGNAL" => "StopSignal",
                    _ => "WorkingDir",
                };
                let value = if key == "WorkingDir" && !rest.starts_with('/') {
                    let base = config
                        .get("WorkingDir")
                        .and_then(Value::as_str)
                        .unwrap_or("/");
                    format!("{}/{}", base.trim_end_matches('/'), rest)
                } else {
                    rest.to_string()
                };
                config.insert(key.into(), json!(value));
            }
            "ONBUILD" => {
                if rest.is_empty() {
                    return Err(bad(change, "ONBUILD needs an instruction"));
                }
                let mut list: Vec<String> = config
                    .get("OnBuild")
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                list.push(rest.to_string());
                config.insert("OnBuild".into(), json!(list));
            }
            "" => return Err(bad(change, "empty change")),
            other => {
                return Err(bad(
                    change,
                    format!(
                        "{other} cannot be used with --change; supported: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR"
                    ),
                ));
            }
        }
    }
    Ok(())
}

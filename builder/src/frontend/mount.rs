//! `RUN --mount=type=cache|bind|secret|tmpfs|ssh,key=value,…` into a typed mount, with
//! BuildKit's keys, aliases, defaults and checks.

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    fn parse(s: &str) -> Option<MountType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "bind" => MountType::Bind,
            "cache" => MountType::Cache,
            "tmpfs" => MountType::Tmpfs,
            "secret" => MountType::Secret,
            "ssh" => MountType::Ssh,
            _ => return None,
        })
    }

    /// The name used in `type=`.
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    /// Where it appears in the container; secret mounts get a default. Empty when not given:
    /// BuildKit's parser accepts that (`RUN --mount=type=bind <<EOF`) and leaves the choice
    /// to the step.
    pub target: String,
    /// `source`/`src`: path in the context, stage or image (bind, cache).
    pub source: Option<String>,
    /// `from`: a stage name or index, or an image.
    pub from: Option<String>,
    pub read_only: bool,
    /// `id` (cache, secret, ssh); secret ids default to the target's file name, ssh to
    /// `default`.
    pub id: Option<String>,
    /// Cache sharing mode (cache only; `shared` by default).
    pub sharing: Option<Sharing>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Secret/ssh: fail the step when the secret or agent is missing.
    pub required: bool,
    /// Tmpfs size limit in bytes.
    pub size: Option<u64>,
    /// Secret: expose it as this environment variable.
    pub env: Option<String>,
}

/// Splits one CSV record as Go's `encoding/csv` reads it: `,` separates, a field that starts
/// with `"` is quoted and `""` inside is a quote.
/// A `--mount` value that does not read (BuildKit's words where it has them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountSpecError {
    #[error("failed to parse csv mounts: {0}")]
    Csv(CsvError),
    #[error("invalid field '{0}': it must be a key=value pair")]
    NotKeyValue(String),
    /// A value whose variables do not expand (the expander's message).
    #[error("{0}")]
    Expand(String),
    #[error("unsupported mount type {0:?} (use bind, cache, tmpfs, secret or ssh)")]
    UnsupportedType(String),
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    KeyNotForType {
        key: &'static str,
        kind: &'static str,
    },
    #[error("invalid value for {key}: {value:?} (use true or false)")]
    InvalidBool { key: String, value: String },
    #[error("invalid value for {key}: {value:?} (expected {what})")]
    InvalidNumber {
        key: String,
        value: String,
        what: &'static str,
    },
    #[error("unsupported sharing value {0:?} (use shared, private or locked)")]
    UnsupportedSharing(String),
    #[error("invalid size {0:?} (e.g. 64m, 1g)")]
    InvalidSize(String),
    #[error("unexpected key '{key}' in '{field}'")]
    UnexpectedKey { key: String, field: String },
    #[error("{name} not allowed for {kind:?} type mounts")]
    FileInfoNotAllowed {
        name: &'static str,
        kind: &'static str,
    },
    #[error("invalid cache sharing set for {0} mount")]
    SharingNotCache(&'static str),
    #[error("secret mounts can't be from images or stages")]
    SecretFrom,
    #[error("secret mount needs an id, a target or an env")]
    SecretWithoutName,
    #[error("ssh mounts can't be from images or stages")]
    SshFrom,
}

/// Quoting that Go's csv reader refuses in a `--mount` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("extraneous or missing \" in quoted field of {0:?}")]
    UnclosedQuote(String),
    #[error("extraneous \" in field of {0:?}")]
    ExtraQuote(String),
    #[error("bare \" in non-quoted field of {0:?}")]
    BareQuote(String),
}

fn csv_fields(s: &str) -> Result<Vec<String>, CsvError> {
    let chars: Vec<char> = s.chars().collect();
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(CsvError::UnclosedQuote(s.to_string()));
                    }
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        field.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        field.push(c);
                        i += 1;
                    }
                }
            }
            match chars.get(i) {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => i += 1,
                Some(_) => return Err(CsvError::ExtraQuote(s.to_string())),
            }
        } else {
            loop {
                match chars.get(i) {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => {
                        i += 1;
                        break;
                    }
                    Some('"') => return Err(CsvError::BareQuote(s.to_string())),
                    Some(&c) => {
                        field.push(c);
                        i += 1;
                    }
                }
            }
        }
        fields.push(field);
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, MountSpecError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(MountSpecError::InvalidBool {
            key: key.to_string(),
            value: v.to_string(),
        }),
    }
}

fn parse_u32(key: &str, v: &str, radix: u32) -> Result<u32, MountSpecError> {
    u32::from_str_radix(v, radix).map_err(|_| MountSpecError::InvalidNumber {
        key: key.to_string(),
        value: v.to_string(),
        what: if radix == 8 {
            "an octal number"
        } else {
            "a number"
        },
    })
}

/// Docker's `RAMInBytes`: `64m`, `1.5g`, `512k`, `100` (bytes); units are powers of 1024.
pub(crate) fn parse_size(v: &str) -> Option<u64> {
    let s = v.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(num_end);
    let n: f64 = num.parse().ok()?;
    let unit = unit.to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    let bytes = n * mult;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Parses one `--mount` value; `expand` is applied to every value but `type`'s. With
/// `skip_bare`, fields without `=` are ignored, as BuildKit's parser does before expansion
/// (they are judged when the mount is parsed again with variables expanded).
pub fn parse_mount(
    spec: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
    skip_bare: bool,
) -> Result<Mount, MountSpecError> {
    let fields = csv_fields(spec).map_err(MountSpecError::Csv)?;
    let mut m = Mount {
        kind: MountType::Bind,
        target: String::new(),
        source: None,
        from: None,
        read_only: false,
        id: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        size: None,
        env: None,
    };
    let mut ro_auto = true;
    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(value) = value else {
            if skip_bare {
                continue;
            }
            match key.as_str() {
                "readonly" | "ro" => {
                    m.read_only = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.read_only = false;
                    ro_auto = false;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true;
                }
                "required" => {
                    return Err(MountSpecError::KeyNotForType {
                        key: "required",
                        kind: m.kind.as_str(),
                    });
                }
                _ => return Err(MountSpecError::NotKeyValue(field.to_string())),
            }
            continue;
        };
        let value = if key == "type" {
            value.to_string()
        } else {
            expand(value).map_err(MountSpecError::Expand)?
        };
        match key.as_str() {
            "type" => {
                m.kind = MountType::parse(&value)
                    .ok_or_else(|| MountSpecError::UnsupportedType(value.clone()))?;
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = value,
            "readonly" | "ro" => {
                m.read_only = parse_bool(&key, &value)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.read_only = !parse_bool(&key, &value)?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(MountSpecError::KeyNotForType {
                        key: "required",
                        kind: m.kind.as_str(),
                    });
                }
                m.required = parse_bool(&key, &value)?;
            }
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = match value.to_ascii_lowercase().as_str() {
                    "" => None,
                    "shared" => Some(Sharing::Shared),
                    "private" => Some(Sharing::Private),
                    "locked" => Some(Sharing::Locked),
                    _ => return Err(MountSpecError::UnsupportedSharing(value.clone())),
                }
            }
            "mode" => m.mode = Some(parse_u32(&key, &value, 8)?),
            "uid" => m.uid = Some(parse_u32(&key, &value, 10)?),
            "gid" => m.gid = Some(parse_u32(&key, &value, 10)?),
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(MountSpecError::KeyNotForType {
                        key: "size",
                        kind: m.kind.as_str(),
                    });
                }
                m.size = Some(
                    parse_size(&value).ok_or_else(|| MountSpecError::InvalidSize(value.clone()))?,
                );
            }
            "env" => m.env = Some(value),
            _ => {
                return Err(MountSpecError::UnexpectedKey {
                    key,
                    field: field.clone(),
                });
            }
        }
    }

    let file_info_allowed = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info_allowed {
        for (name, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(MountSpecError::FileInfoNotAllowed {
                    name,
                    kind: m.kind.as_str(),
                });
            }
        }
    }
    if ro_auto {
        m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(MountSpecError::SharingNotCache(m.kind.as_str()));
    }
    match m.kind {
        MountType::Cache if m.sharing.is_none() => m.sharing = Some(Sharing::Shared),
        MountType::Secret => {
            if m.from.is_some() {
                return Err(MountSpecError::SecretFrom);
            }
            if m.id.is_none() {
                if m.target.is_empty() {
                    if m.env.is_none() {
                        return Err(MountSpecError::SecretWithoutName);
                    }
                } else {
                    let base = m.target.rsplit('/').next().unwrap_or_default();
                    m.id = Some(base.to_string());
                }
            }
            if m.target.is_empty() && m.env.is_none() {
                m.target = format!("/run/secrets/{}", m.id.as_deref().unwrap_or_default());
            }
        }
        MountType::Ssh => {
            if m.from.is_some() {
                return Err(MountSpecError::SshFrom);
            }
            if m.id.is_none() {
                m.id = Some("default".into());
            }
        }
        _ => {}
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Mount, MountSpecError> {
        parse_mount(s, &mut |v| Ok(v.to_string()), false)
    }

    #[test]
    fn cache_defaults() {
        let m = parse("type=cache,target=/root/.cache,id=pip").unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target, "/root/.cache");
        assert_eq!(m.sharing, Some(Sharing::Shared));
        assert!(!m.read_only);
        assert_eq!(m.id.as_deref(), Some("pip"));
    }

    #[test]
    fn bind_is_read_only_unless_rw() {
        let m = parse("target=/src,from=build,source=/out").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.read_only);
        assert_eq!(m.from.as_deref(), Some("build"));
        assert!(!parse("type=bind,target=/src,rw").unwrap().read_only);
    }

    #[test]
    fn secrets_and_ssh() {
        let m = parse("type=secret,id=npmrc,target=/root/.npmrc,required").unwrap();
        assert!(m.required);
        let m = parse("type=secret,id=tok").unwrap();
        assert_eq!(m.target, "/run/secrets/tok");
        let m = parse("type=secret,target=/x/aws").unwrap();
        assert_eq!(m.id.as_deref(), Some("aws"));
        let m = parse("type=ssh").unwrap();
        assert_eq!(m.id.as_deref(), Some("default"));
    }

    #[test]
    fn tmpfs_size_and_errors() {
        assert_eq!(
            parse("type=tmpfs,target=/t,size=64m").unwrap().size,
            Some(64 << 20)
        );
        assert_eq!(
            parse("type=nfs,target=/x").unwrap_err().to_string(),
            "unsupported mount type \"nfs\" (use bind, cache, tmpfs, secret or ssh)"
        );
        assert_eq!(
            parse("type=bind,target=\"/x").unwrap_err().to_string(),
            "failed to parse csv mounts: bare \" in non-quoted field of \"type=bind,target=\\\"/x\""
        );
        assert!(parse("type=bind,target=/x,mode=0644").is_err());
        assert_eq!(parse("type=bind").unwrap().target, "");
        assert!(parse("").is_err());
        assert!(parse("type=cache,target=/x,z").is_err());
        assert!(parse_mount("type=cache,target=/x,z", &mut |v| Ok(v.into()), true).is_ok());
        assert!(parse_mount("ro", &mut |v| Ok(v.into()), true).is_ok());
        assert!(parse("type=cache,target=/x,sharing=weird").is_err());
        assert!(parse("type=cache,target=/x,bogus=1").is_err());
        assert!(parse("type=cache,target=/x,uid=abc").is_err());
        assert_eq!(
            parse("type=cache,target=/x,mode=0755").unwrap().mode,
            Some(0o755)
        );
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_fields(r#"a,"b,c",d"#).unwrap(), vec!["a", "b,c", "d"]);
        assert!(csv_fields(r#"a"b"#).is_err());
    }
}

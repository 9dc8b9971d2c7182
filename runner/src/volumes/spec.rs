//! The mount syntaxes of `run`/`create`, parsed with Docker's rules and worded with its errors:
//! `-v SRC:DST[:MODE]` (moby's linux parser), `--mount k=v,…` (the CLI's opts/mount.go, then the
//! daemon's validation), `--tmpfs DST[:OPTS]` and `--volumes-from CONTAINER[:ro|rw]`.

use std::collections::BTreeMap;

use crate::error::{Result, RunnerError};

/// A mount as requested, before volumes are created.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spec {
    /// bind, volume or tmpfs.
    pub kind: String,
    /// Host path (bind), volume name (volume; empty for an anonymous one).
    pub source: String,
    /// Cleaned absolute path in the container.
    pub target: String,
    pub read_only: bool,
    /// The raw `-v` mode (`ro,nocopy`), as inspect shows it.
    pub mode: String,
    pub propagation: String,
    pub no_copy: bool,
    /// tmpfs mount data (`size=64m,mode=755`).
    pub tmpfs_data: String,
    pub volume_labels: BTreeMap<String, String>,
    pub volume_driver: String,
}

const PROPAGATION: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

fn invalid_spec(raw: &str) -> RunnerError {
    RunnerError::invalid("volume specification", format!("'{raw}'"))
}

fn mount_config(kind: &str, reason: impl Into<String>) -> RunnerError {
    RunnerError::invalid(format!("mount config for type {kind:?}"), reason)
}

/// Go's `path.Clean` for absolute paths.
pub fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// moby's `linuxValidMountMode`: at most one of each kind of mode.
fn valid_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let mut counts = [0u8; 5];
    for o in mode.split(',') {
        let i = match o {
            "rw" | "ro" => 0,
            "z" | "Z" => 1,
            o if PROPAGATION.contains(&o) => 2,
            "nocopy" => 3,
            "consistent" | "cached" | "delegated" => 4,
            _ => return false,
        };
        counts[i] += 1;
    }
    counts.iter().all(|&n| n <= 1)
}

fn check_target(kind: &str, target: &str) -> Result<()> {
    if target.is_empty() {
        return Err(mount_config(kind, "field Target must not be empty"));
    }
    check_abs_not_root(target).map_err(|r| mount_config(kind, r))
}

fn check_abs_not_root(target: &str) -> Result<(), String> {
    if clean(target) == "/" {
        return Err("invalid specification: destination can't be '/'".into());
    }
    if !target.starts_with('/') {
        return Err(format!(
            "invalid mount path: '{target}' mount path must be absolute"
        ));
    }
    Ok(())
}

/// `-v`/`--volume`, as moby's `ParseMountRaw`.
pub fn parse_volume_flag(raw: &str) -> Result<Spec> {
    let arr: Vec<&str> = raw.splitn(4, ':').collect();
    if arr[0].is_empty() {
        return Err(invalid_spec(raw));
    }
    let (source, target, mode) = match arr.as_slice() {
        [t] => ("", *t, ""),
        [_, m] if valid_mode(m) => return Err(invalid_spec(raw)),
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => return Err(invalid_spec(raw)),
    };
    if !valid_mode(mode) {
        return Err(RunnerError::invalid("mode", mode));
    }
    let kind = if source.starts_with('/') {
        "bind"
    } else {
        "volume"
    };
    let opts: Vec<&str> = mode.split(',').filter(|o| !o.is_empty()).collect();
    let read_only = opts.contains(&"ro");
    let propagation = opts
        .iter()
        .find(|o| PROPAGATION.contains(o))
        .map(|p| p.to_string());
    let wrap =
        |e: RunnerError| RunnerError::invalid("volume specification", format!("'{raw}': {e}"));
    check_target(kind, target).map_err(wrap)?;
    if kind == "volume" && propagation.is_some() {
        return Err(wrap(mount_config(
            kind,
            "field BindOptions must not be specified",
        )));
    }
    Ok(Spec {
        kind: kind.into(),
        source: if kind == "bind" {
            clean(source)
        } else {
            source.into()
        },
        target: clean(target),
        read_only,
        mode: mode.into(),
        propagation: match kind {
            "bind" => propagation.unwrap_or_else(|| "rprivate".into()),
            _ => String::new(),
        },
        no_copy: opts.contains(&"nocopy"),
        ..Spec::default()
    })
}

fn parse_bool(key: &str, val: &str) -> Result<bool, String> {
    match val.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(format!("invalid value for {key}: {val}")),
    }
}

/// `--mount`: the CLI's CSV syntax, then the daemon's validation (a bind source must exist).
pub fn parse_mount_flag(raw: &str) -> Result<Spec> {
    let flag_err = |reason: String| {
        RunnerError::invalid(format!("argument {raw:?} for \"--mount\" flag"), reason)
    };
    let mut s = Spec {
        kind: "volume".into(),
        ..Spec::default()
    };
    let (mut volume_opts, mut bind_opts, mut tmpfs_opts) = (false, false, false);
    let (mut size, mut mode): (Option<i64>, Option<u32>) = (None, None);
    for field in split_csv(raw).map_err(flag_err)? {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
            None => {
                match field.to_ascii_lowercase().as_str() {
                    "readonly" | "ro" => s.read_only = true,
                    "volume-nocopy" => {
                        volume_opts = true;
                        s.no_copy = true;
                    }
                    "bind-nonrecursive" => bind_opts = true,
                    _ => {
                        return Err(flag_err(format!(
                            "invalid field '{field}' must be a key=value pair"
                        )));
                    }
                }
                continue;
            }
        };
        match key.as_str() {
            "type" => s.kind = val.to_ascii_lowercase(),
            "source" | "src" => {
                s.source = if val == "." || val.starts_with("./") {
                    std::env::current_dir()
                        .map(|d| d.join(&val).display().to_string())
                        .unwrap_or(val)
                } else {
                    val
                }
            }
            "target" | "dst" | "destination" => s.target = val,
            "readonly" | "ro" => s.read_only = parse_bool(&key, &val).map_err(flag_err)?,
            "consistency" => {}
            "bind-propagation" => {
                bind_opts = true;
                s.propagation = val.to_ascii_lowercase();
            }
            "bind-nonrecursive" | "bind-create-mountpoint" => bind_opts = true,
            "volume-driver" => {
                volume_opts = true;
                s.volume_driver = val;
            }
            "volume-label" => {
                volume_opts = true;
                let (k, v) = val.split_once('=').unwrap_or((val.as_str(), ""));
                s.volume_labels.insert(k.into(), v.into());
            }
            "volume-nocopy" => {
                volume_opts = true;
                s.no_copy = parse_bool(&key, &val).map_err(flag_err)?;
            }
            "volume-opt" => volume_opts = true,
            "tmpfs-size" => {
                tmpfs_opts = true;
                size = Some(
                    crate::container::parse_bytes(&val)
                        .map_err(|_| flag_err(format!("invalid value for {key}: {val}")))?,
                );
            }
            "tmpfs-mode" => {
                tmpfs_opts = true;
                mode = Some(
                    u32::from_str_radix(&val, 8)
                        .map_err(|_| flag_err(format!("invalid value for {key}: {val}")))?,
                );
            }
            _ => return Err(flag_err(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    if s.kind.is_empty() {
        return Err(flag_err("type is required".into()));
    }
    if s.target.is_empty() {
        return Err(flag_err("target is required".into()));
    }
    for (set, family, kind) in [
        (volume_opts, "volume-*", "volume"),
        (bind_opts, "bind-*", "bind"),
        (tmpfs_opts, "tmpfs-*", "tmpfs"),
    ] {
        if set && s.kind != kind {
            return Err(flag_err(format!(
                "cannot mix '{family}' options with mount type '{}'",
                s.kind
            )));
        }
    }

    // The daemon's validateMountConfig.
    let kind = s.kind.clone();
    check_target(&kind, &s.target)?;
    match kind.as_str() {
        "bind" => {
            if s.source.is_empty() {
                return Err(mount_config(&kind, "field Source must not be empty"));
            }
            if !s.propagation.is_empty() && !PROPAGATION.contains(&s.propagation.as_str()) {
                return Err(mount_config(
                    &kind,
                    format!("invalid propagation mode: {}", s.propagation),
                ));
            }
            if !s.source.starts_with('/') {
                return Err(mount_config(
                    &kind,
                    format!(
                        "invalid mount path: '{}' mount path must be absolute",
                        s.source
                    ),
                ));
            }
            if std::fs::symlink_metadata(&s.source).is_err() {
                return Err(mount_config(
                    &kind,
                    format!("bind source path does not exist: {}", s.source),
                ));
            }
            s.source = clean(&s.source);
            if s.propagation.is_empty() {
                s.propagation = "rprivate".into();
            }
        }
        "volume" => {
            if s.read_only && s.source.is_empty() {
                return Err(mount_config(
                    &kind,
                    "must not set ReadOnly mode when using anonymous volumes",
                ));
            }
        }
        "tmpfs" => {
            if !s.source.is_empty() {
                return Err(mount_config(&kind, "field Source must not be specified"));
            }
            let mut data = Vec::new();
            if s.read_only {
                data.push("ro".to_string());
            }
            if let Some(m) = mode.filter(|m| *m != 0) {
                data.push(format!("mode={m:o}"));
            }
            if let Some(sz) = size.filter(|s| *s != 0) {
                data.push(format!("size={}", size_suffix(sz)));
            }
            s.tmpfs_data = data.join(",");
        }
        _ => return Err(mount_config(&kind, "mount type unknown")),
    }
    s.target = clean(&s.target);
    Ok(s)
}

/// The largest of g, m, k that divides `n` evenly (moby's ConvertTmpfsOptions).
fn size_suffix(n: i64) -> String {
    for (suffix, div) in [("g", 1i64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
        if n % div == 0 {
            return format!("{}{suffix}", n / div);
        }
    }
    n.to_string()
}

/// Go's encoding/csv for one record: fields split on commas, `"…"` quoting with `""` escapes.
fn split_csv(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            }
            '"' if at_start => quoted = true,
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
                continue;
            }
            c => cur.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err("extraneous or missing \" in quoted-field".into());
    }
    out.push(cur);
    Ok(out)
}

/// `--tmpfs DST[:OPTS]`: the destination and Docker's checks of the options.
pub fn parse_tmpfs(dest: &str, opts: &str) -> Result<String> {
    check_abs_not_root(dest).map_err(|r| mount_config("tmpfs", r))?;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        tmpfs_option_key(o)?;
    }
    Ok(clean(dest))
}

/// Mount flags a tmpfs accepts, grouped by the flag they set (a later one overrides an earlier
/// one of its group), as moby/sys/mount's table.
const FLAG_GROUPS: &[&[&str]] = &[
    &["ro", "rw"],
    &["nodev", "dev"],
    &["nosuid", "suid"],
    &["noexec", "exec"],
    &["sync", "async"],
    &["dirsync"],
    &["remount"],
    &["mand", "nomand"],
    &["atime", "noatime"],
    &["diratime", "nodiratime"],
    &["bind", "rbind"],
    &[
        "unbindable",
        "runbindable",
        "private",
        "rprivate",
        "shared",
        "rshared",
        "slave",
        "rslave",
    ],
    &["relatime", "norelatime"],
    &["strictatime", "nostrictatime"],
];

const DATA_KEYS: &[&str] = &[
    "size",
    "mode",
    "uid",
    "gid",
    "nr_inodes",
    "nr_blocks",
    "mpol",
];

/// The collision key of one tmpfs option: a flag's group, or a data option's name.
fn tmpfs_option_key(o: &str) -> Result<String> {
    if let Some(i) = FLAG_GROUPS.iter().position(|g| g.contains(&o)) {
        return Ok(format!("flag{i}"));
    }
    let key = o.split('=').next().unwrap_or("");
    if o.contains('=') && DATA_KEYS.contains(&key) {
        return Ok(key.to_string());
    }
    Err(RunnerError::invalid("tmpfs option", format!("{key:?}")))
}

/// moby's MergeTmpfsOptions: Docker's defaults, then the user's, the last of each kind winning.
pub fn tmpfs_options(data: &str) -> Result<Vec<String>> {
    let all: Vec<&str> = ["noexec", "nosuid", "nodev", "rprivate"]
        .into_iter()
        .chain(
            data.split(',')
                .filter(|o| !o.is_empty() && *o != "defaults"),
        )
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for o in all.iter().rev() {
        if seen.insert(tmpfs_option_key(o)?) {
            out.push(o.to_string());
        }
    }
    out.reverse();
    Ok(out)
}

/// `--volumes-from CONTAINER[:MODE]`: the container and whether its mounts stay writable.
pub fn parse_volumes_from(spec: &str) -> Result<(String, bool)> {
    if spec.is_empty() {
        return Err(RunnerError::invalid(
            "volumes-from",
            "specification cannot be an empty string",
        ));
    }
    let (id, mode) = spec.split_once(':').unwrap_or((spec, ""));
    if mode.is_empty() {
        return Ok((id.into(), true));
    }
    if !valid_mode(mode) {
        return Err(RunnerError::invalid("mode", mode));
    }
    let opts: Vec<&str> = mode.split(',').collect();
    if opts.iter().any(|o| PROPAGATION.contains(o)) {
        return Err(RunnerError::invalid(
            "argument",
            format!("{mode:?}, only \"ro\" or \"rw\" may be used with volumes-from"),
        ));
    }
    if opts.contains(&"nocopy") {
        return Err(RunnerError::invalid(
            "argument",
            format!("{mode:?}, copy mode not supported with volumes-from"),
        ));
    }
    Ok((id.into(), !opts.contains(&"ro")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flags_parse_as_docker() {
        let s = parse_volume_flag("data:/srv/data:ro").unwrap();
        assert_eq!((s.kind.as_str(), s.source.as_str()), ("volume", "data"));
        assert_eq!(s.target, "/srv/data");
        assert!(s.read_only);
        let s = parse_volume_flag("/host//x/:/y").unwrap();
        assert_eq!((s.kind.as_str(), s.source.as_str()), ("bind", "/host/x"));
        assert_eq!(s.propagation, "rprivate");
        let s = parse_volume_flag("/anon").unwrap();
        assert_eq!((s.kind.as_str(), s.source.as_str()), ("volume", ""));
        assert!(parse_volume_flag("v:/x:nocopy").unwrap().no_copy);
        for (bad, msg) in [
            ("", "invalid volume specification: ''"),
            (":/x", "invalid volume specification: ':/x'"),
            ("/x:rw", "invalid volume specification: '/x:rw'"),
            ("a:b:c:d", "invalid volume specification: 'a:b:c:d'"),
            ("v:/x:bogus", "invalid mode: bogus"),
            ("v:/x:ro,rw", "invalid mode: ro,rw"),
            (
                "v:rel",
                "invalid volume specification: 'v:rel': invalid mount config for type \"volume\": invalid mount path: 'rel' mount path must be absolute",
            ),
            (
                "/h:/",
                "invalid volume specification: '/h:/': invalid mount config for type \"bind\": invalid specification: destination can't be '/'",
            ),
        ] {
            assert_eq!(
                parse_volume_flag(bad).unwrap_err().to_string(),
                msg,
                "{bad}"
            );
        }
    }

    #[test]
    fn mount_flags_parse_as_docker() {
        let s = parse_mount_flag("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        assert_eq!(s.tmpfs_data, "mode=1770,size=64m");
        let s = parse_mount_flag("target=/v,source=data,volume-nocopy,volume-label=a=b").unwrap();
        assert_eq!(s.kind, "volume");
        assert!(s.no_copy);
        assert_eq!(s.volume_labels["a"], "b");
        let s = parse_mount_flag("type=bind,src=/,dst=/h,readonly=true").unwrap();
        assert!(s.read_only);
        for (bad, msg) in [
            (
                "type=bind,source=/tmp",
                "invalid argument \"type=bind,source=/tmp\" for \"--mount\" flag: target is required",
            ),
            (
                "type=bind,source=/definitely/not/here,target=/x",
                "invalid mount config for type \"bind\": bind source path does not exist: /definitely/not/here",
            ),
            (
                "type=volume,target=/x,readonly",
                "invalid mount config for type \"volume\": must not set ReadOnly mode when using anonymous volumes",
            ),
            (
                "type=weird,target=/x",
                "invalid mount config for type \"weird\": mount type unknown",
            ),
            (
                "type=bind,target=/x,tmpfs-size=1m",
                "invalid argument \"type=bind,target=/x,tmpfs-size=1m\" for \"--mount\" flag: cannot mix 'tmpfs-*' options with mount type 'bind'",
            ),
            (
                "type=tmpfs,target=/x,bogus=1",
                "invalid argument \"type=tmpfs,target=/x,bogus=1\" for \"--mount\" flag: unexpected key 'bogus' in 'bogus=1'",
            ),
        ] {
            assert_eq!(parse_mount_flag(bad).unwrap_err().to_string(), msg, "{bad}");
        }
    }

    #[test]
    fn tmpfs_options_merge_with_docker_defaults() {
        assert_eq!(
            tmpfs_options("exec,size=1m,size=2m").unwrap(),
            vec!["nosuid", "nodev", "rprivate", "exec", "size=2m"]
        );
        assert!(tmpfs_options("bogus").is_err());
        assert!(parse_tmpfs("rel", "").is_err());
        assert_eq!(parse_tmpfs("/run/", "size=1m").unwrap(), "/run");
    }

    #[test]
    fn volumes_from_modes() {
        assert_eq!(parse_volumes_from("c").unwrap(), ("c".into(), true));
        assert_eq!(parse_volumes_from("c:ro").unwrap(), ("c".into(), false));
        assert!(parse_volumes_from("c:shared").is_err());
        assert!(parse_volumes_from("c:nocopy").is_err());
        assert!(parse_volumes_from("").is_err());
    }
}

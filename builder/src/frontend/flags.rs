//! Instruction flags (`--name=value`, `--name` for booleans) checked the way BuildKit's
//! `BFlags` checks them, and Go's duration syntax for HEALTHCHECK's flag values.

use std::collections::HashMap;
use std::time::Duration;

use super::instruction::Keyword;

/// What a flag takes.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum FlagKind {
    Bool,
    String,
    Strings,
}

/// Flags after checking, by name.
#[derive(Default)]
pub(crate) struct Flags {
    values: HashMap<&'static str, Vec<String>>,
    /// What is wrong with the flags. BuildKit's parser accepts any flag; it is the build that
    /// rejects them, so these surface from the plan, not from `parse`.
    pub(crate) problems: Vec<String>,
}

impl Flags {
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last().cloned())
    }

    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    pub(crate) fn bool(&self, name: &str) -> bool {
        self.string(name).as_deref() == Some("true")
    }

    pub(crate) fn opt_bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }
}

/// BuildKit's `BFlags.Parse`; a bad flag is recorded in `problems` and otherwise ignored.
pub(crate) fn parse_flags(
    keyword: Keyword,
    raw: &[String],
    allowed: &[(&'static str, FlagKind)],
) -> Flags {
    let mut flags = Flags::default();
    for arg in raw {
        if let Err(p) = parse_flag(keyword, arg, allowed, &mut flags) {
            flags.problems.push(p);
        }
    }
    flags
}

fn parse_flag(
    keyword: Keyword,
    arg: &str,
    allowed: &[(&'static str, FlagKind)],
    flags: &mut Flags,
) -> Result<(), String> {
    {
        let Some(arg) = arg.strip_prefix("--") else {
            return Err(format!("{keyword}: flag should start with -- : {arg}"));
        };
        if arg.is_empty() {
            return Ok(());
        }
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg, None),
        };
        let Some(&(key, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
            let known: Vec<String> = allowed.iter().map(|(n, _)| format!("--{n}")).collect();
            let hint = if known.is_empty() {
                format!("{keyword} takes no flags")
            } else {
                format!("{keyword} accepts {}", known.join(", "))
            };
            return Err(format!("{keyword}: unknown flag: --{name} ({hint})"));
        };
        if kind != FlagKind::Strings && flags.values.contains_key(key) {
            return Err(format!("{keyword}: duplicate flag specified: --{name}"));
        }
        let stored = match kind {
            FlagKind::Bool => match value {
                Some("") => return Err(format!("{keyword}: missing a value on flag: --{name}")),
                None => "true".to_string(),
                Some(v) => match v.to_ascii_lowercase().as_str() {
                    l @ ("true" | "false") => l.to_string(),
                    _ => {
                        return Err(format!(
                            "{keyword}: expecting boolean value for flag --{name}, not: {v}"
                        ));
                    }
                },
            },
            FlagKind::String | FlagKind::Strings => match value {
                Some(v) => v.to_string(),
                None => {
                    return Err(format!(
                        "{keyword}: missing a value on flag: --{name} (write --{name}=<value>)"
                    ));
                }
            },
        };
        flags.values.entry(key).or_default().push(stored);
    }
    Ok(())
}

/// Go's `time.ParseDuration` for the non-negative durations HEALTHCHECK takes.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
        total += value * nanos;
    }
    (total.is_finite() && total < u64::MAX as f64).then(|| Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("5x"), None);
    }
}

//! Output formatting shared by every listing command: Docker's `--format` (`table`, `json`, a Go
//! template, `table <template>`), human sizes and "2 weeks ago" durations as Docker prints them.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{Result, anyhow};
use gtmpl::{Context as TmplContext, Func, FuncError, Template};
use gtmpl_value::{Number, Value as TVal};
use serde_json::Value;

/// What `--format` asked for.
pub enum Format {
    /// The command's default table (or `table` alone).
    Table,
    Json,
    /// A Go template per row; `table` says whether to print a header row first.
    Template {
        tmpl: String,
        table: bool,
    },
}

impl Format {
    pub fn parse(s: Option<&str>) -> Format {
        match s.map(str::trim) {
            None | Some("") | Some("table") => Format::Table,
            Some("json") => Format::Json,
            Some(t) => match t.strip_prefix("table ") {
                Some(rest) => Format::Template {
                    tmpl: unescape(rest),
                    table: true,
                },
                None => Format::Template {
                    tmpl: unescape(t),
                    table: false,
                },
            },
        }
    }
}

/// Docker users write `\t` and `\n` literally in `--format` strings.
fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

pub fn to_tmpl(v: &Value) -> TVal {
    match v {
        Value::Null => TVal::Nil,
        Value::Bool(b) => TVal::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                TVal::Number(Number::from(u))
            } else if let Some(i) = n.as_i64() {
                TVal::Number(Number::from(i))
            } else {
                TVal::Number(Number::from(n.as_f64().unwrap_or(0.0)))
            }
        }
        Value::String(s) => TVal::String(s.clone()),
        Value::Array(a) => TVal::Array(a.iter().map(to_tmpl).collect()),
        Value::Object(o) => TVal::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_tmpl(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn from_tmpl(v: &TVal) -> Value {
    match v {
        TVal::NoValue | TVal::Nil | TVal::Function(_) => Value::Null,
        TVal::Bool(b) => Value::Bool(*b),
        TVal::String(s) => Value::String(s.clone()),
        TVal::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        TVal::Array(a) => Value::Array(a.iter().map(from_tmpl).collect()),
        TVal::Object(o) | TVal::Map(o) => {
            let sorted: std::collections::BTreeMap<_, _> =
                o.iter().map(|(k, v)| (k.clone(), from_tmpl(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
    }
}

fn arg_str(args: &[TVal], i: usize) -> Result<String, FuncError> {
    match args.get(i) {
        Some(TVal::String(s)) => Ok(s.clone()),
        Some(v) => Ok(v.to_string()),
        None => Err(FuncError::AtLeastXArgs("function".into(), i + 1)),
    }
}

fn f_json(args: &[TVal]) -> Result<TVal, FuncError> {
    let v = args.first().map(from_tmpl).unwrap_or(Value::Null);
    Ok(TVal::String(serde_json::to_string(&v).unwrap_or_default()))
}
fn f_upper(args: &[TVal]) -> Result<TVal, FuncError> {
    Ok(TVal::String(arg_str(args, 0)?.to_uppercase()))
}
fn f_lower(args: &[TVal]) -> Result<TVal, FuncError> {
    Ok(TVal::String(arg_str(args, 0)?.to_lowercase()))
}
fn f_title(args: &[TVal]) -> Result<TVal, FuncError> {
    let s = arg_str(args, 0)?;
    let mut c = s.chars();
    Ok(TVal::String(
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default(),
    ))
}
fn f_join(args: &[TVal]) -> Result<TVal, FuncError> {
    let sep = arg_str(args, 1)?;
    let items = match args.first() {
        Some(TVal::Array(a)) => a
            .iter()
            .map(|v| match v {
                TVal::String(s) => s.clone(),
                o => o.to_string(),
            })
            .collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    Ok(TVal::String(items.join(&sep)))
}
fn f_split(args: &[TVal]) -> Result<TVal, FuncError> {
    let s = arg_str(args, 0)?;
    let sep = arg_str(args, 1)?;
    Ok(TVal::Array(
        s.split(sep.as_str())
            .map(|p| TVal::String(p.to_string()))
            .collect(),
    ))
}
fn f_truncate(args: &[TVal]) -> Result<TVal, FuncError> {
    let s = arg_str(args, 0)?;
    let n = match args.get(1) {
        Some(TVal::Number(n)) => n.as_u64().unwrap_or(0) as usize,
        _ => return Err(FuncError::AtLeastXArgs("truncate".into(), 2)),
    };
    Ok(TVal::String(s.chars().take(n).collect()))
}
fn f_println(args: &[TVal]) -> Result<TVal, FuncError> {
    let parts: Vec<String> = args
        .iter()
        .map(|a| match a {
            TVal::String(s) => s.clone(),
            o => o.to_string(),
        })
        .collect();
    Ok(TVal::String(format!("{}\n", parts.join(" "))))
}

pub fn template(text: &str) -> Result<Template> {
    let mut t = Template::default();
    let funcs: [(&str, Func); 8] = [
        ("json", f_json),
        ("upper", f_upper),
        ("lower", f_lower),
        ("title", f_title),
        ("join", f_join),
        ("split", f_split),
        ("truncate", f_truncate),
        ("println", f_println),
    ];
    t.add_funcs(&funcs);
    t.parse(text)
        .map_err(|e| anyhow!("template parsing error: {e}"))?;
    Ok(t)
}

pub fn render(t: &Template, v: &Value) -> Result<String> {
    t.render(&TmplContext::from(to_tmpl(v)))
        .map_err(|e| anyhow!("template: {e}"))
}

/// A row of a listing: serialisable for `json` and templates, and able to give one column's text
/// for the default table without building a JSON object.
pub trait Row: serde::Serialize {
    fn cell(&self, field: &str) -> String;
}

impl Row for Value {
    fn cell(&self, field: &str) -> String {
        cell(&self[field])
    }
}

/// Print rows of `columns` (field, header) the way `--format` asks.
pub fn print_rows<R: Row>(
    out: &mut impl Write,
    format: &Format,
    columns: &[(&str, &str)],
    rows: &[R],
) -> Result<()> {
    match format {
        Format::Json => {
            for r in rows {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
        }
        Format::Table => {
            let mut lines = vec![
                columns
                    .iter()
                    .map(|(_, h)| h.to_string())
                    .collect::<Vec<_>>()
                    .join("\t"),
            ];
            for r in rows {
                lines.push(
                    columns
                        .iter()
                        .map(|(f, _)| r.cell(f))
                        .collect::<Vec<_>>()
                        .join("\t"),
                );
            }
            write_aligned(out, &lines)?;
        }
        Format::Template { tmpl, table } => {
            let t = template(tmpl)?;
            let mut lines = Vec::new();
            if *table {
                // Docker renders the header by running the template over the column headers.
                let mut names = header_names();
                names.retain(|(k, _)| !columns.iter().any(|(f, _)| f == k));
                names.extend(columns.iter().copied());
                let headers: serde_json::Map<String, Value> = names
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                    .collect();
                lines.push(render(&t, &Value::Object(headers))?);
            }
            for r in rows {
                lines.push(render(&t, &serde_json::to_value(r)?)?);
            }
            if *table {
                write_aligned(out, &lines)?;
            } else {
                for l in lines {
                    writeln!(out, "{l}")?;
                }
            }
        }
    }
    Ok(())
}

fn header_names() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Repository", "REPOSITORY"),
        ("Tag", "TAG"),
        ("ID", "IMAGE ID"),
        ("Digest", "DIGEST"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("Size", "SIZE"),
        ("VirtualSize", "SIZE"),
        ("SharedSize", "SHARED SIZE"),
        ("UniqueSize", "UNIQUE SIZE"),
        ("Containers", "CONTAINERS"),
        ("CreatedBy", "CREATED BY"),
        ("Comment", "COMMENT"),
    ]
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        o => o.to_string(),
    }
}

/// Columns separated by tabs, aligned as Docker's tabwriter (min width 10, padding 3).
fn write_aligned(out: &mut impl Write, lines: &[String]) -> Result<()> {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let ncol = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; ncol];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let w = (widths[i] + 3).max(10);
                line.push_str(c);
                line.extend(std::iter::repeat_n(' ', w - c.chars().count()));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// go-units `HumanSizeWithPrecision(size, 3)`: decimal units, three significant digits.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g3(v), UNITS[i])
}

/// Go's `%.3g` for the values sizes produce (0 ≤ v < 1000).
fn go_g3(v: f64) -> String {
    let digits_before = if v < 1.0 {
        1
    } else {
        (v.log10().floor() as i32) + 1
    };
    let decimals = (3 - digits_before).max(0) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    // Rounding can carry into a fourth digit (999.5 -> "1000"); Go would print 1e+03.
    if s.len() > 3 && !s.contains('.') && v >= 999.5 {
        "1e+03".into()
    } else {
        s
    }
}

/// go-units `HumanDuration`.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let mins = d.num_minutes();
    if mins == 1 {
        return "About a minute".into();
    }
    if mins < 60 {
        return format!("{mins} minutes");
    }
    let hours = ((d.num_seconds() as f64) / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", hours / 24 / 365)
}

pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

pub fn since(created: Option<&str>) -> String {
    match created.and_then(parse_time) {
        Some(t) => format!("{} ago", human_duration(chrono::Utc::now() - t)),
        None => "N/A".into(),
    }
}

/// Go's `time.Time.String()` in UTC, as Docker prints `CreatedAt`.
pub fn go_time(created: Option<&str>) -> String {
    match created.and_then(parse_time) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(4_261_550), "4.26MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(1_073_741_824), "1.07GB");
    }

    #[test]
    fn durations_as_docker_prints_them() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(0)), "Less than a second");
        assert_eq!(human_duration(d(30)), "30 seconds");
        assert_eq!(human_duration(d(90)), "About a minute");
        assert_eq!(human_duration(d(3600)), "About an hour");
        assert_eq!(human_duration(d(3 * 86400)), "3 days");
        assert_eq!(human_duration(d(20 * 86400)), "2 weeks");
    }

    #[test]
    fn templates_with_functions() {
        let v = serde_json::json!({"Id": "sha256:abc", "Config": {"Cmd": ["sh", "-c"], "Env": null}, "RepoTags": ["a:b"]});
        let t =
            template("{{.Id}} {{json .Config}} {{join .RepoTags \",\"}} {{upper \"x\"}}").unwrap();
        assert_eq!(
            render(&t, &v).unwrap(),
            r#"sha256:abc {"Cmd":["sh","-c"],"Env":null} a:b X"#
        );
    }
}

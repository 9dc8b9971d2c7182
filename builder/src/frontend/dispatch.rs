//! From a logical line to a typed [`Instruction`]: each keyword reads its arguments the way
//! BuildKit's line parsers and `instructions` package do (JSON or shell form, whitespace words,
//! `key=value` pairs, one string), and its flags are checked against the ones it accepts.

use std::collections::HashMap;
use std::time::Duration;

use super::error::{self, ParseError, ParseErrorKind};
use super::flags::{FlagKind, Flags, parse_duration, parse_flags};
use super::heredoc::{self, Heredoc};
use super::instruction::{
    Arg, ArgDecl, Command, CommandLine, Copy, From, Healthcheck, Instruction, KeyValue, Keyword,
    Network, Onbuild, Run, Security, Source,
};
use super::mount;
use super::parser::{RawLine, split_command};
use super::words::{self, Json};

fn at_least_one(k: Keyword) -> String {
    format!("{k} requires at least one argument")
}

fn exactly_one(k: Keyword) -> String {
    format!("{k} requires exactly one argument")
}

/// Shell or exec form (BuildKit's `parseMaybeJSON`).
fn command_line(k: Keyword, args: &str) -> Result<CommandLine, String> {
    if args.is_empty() {
        return Ok(CommandLine::Shell(String::new()));
    }
    match words::parse_json(args) {
        Json::Strings(v) => Ok(CommandLine::Exec(v)),
        Json::NotStrings => Err(format!(
            "{k}: when using JSON array syntax, arrays must be comprised of strings only"
        )),
        Json::No => Ok(CommandLine::Shell(args.to_string())),
    }
}

/// JSON array or whitespace-separated words (BuildKit's `parseMaybeJSONToList`).
fn json_or_words(k: Keyword, args: &str) -> Result<(Vec<String>, bool), String> {
    match words::parse_json(args) {
        Json::Strings(v) => Ok((v, true)),
        Json::NotStrings => Err(format!(
            "{k}: when using JSON array syntax, arrays must be comprised of strings only"
        )),
        Json::No => Ok((words::split_whitespace(args), false)),
    }
}

/// ENV and LABEL: `k=v …`, or the legacy `k v` where the value is the rest of the line.
fn name_values(k: Keyword, args: &str, escape: char) -> Result<Vec<KeyValue>, String> {
    let ws = words::parse_words(args, escape);
    if ws.is_empty() {
        return Err(at_least_one(k));
    }
    let mut out = Vec::new();
    if !ws[0].contains('=') {
        let (key, value) = words::split_once_whitespace(args);
        let Some(value) = value else {
            return Err(format!(
                "{k} must have two arguments: write {k} {key}=<value> (or {k} {key} <value>)"
            ));
        };
        out.push(KeyValue {
            key: key.to_string(),
            value: value.to_string(),
        });
    } else {
        for w in ws {
            let Some((key, value)) = w.split_once('=') else {
                return Err(format!(
                    "{k}: syntax error - can't find = in {w:?}. Must be of the form: name=value"
                ));
            };
            out.push(KeyValue {
                key: key.to_string(),
                value: value.to_string(),
            });
        }
    }
    if out.iter().any(|kv| kv.key.is_empty()) {
        return Err(format!("{k} names can not be blank"));
    }
    Ok(out)
}

fn one_string(k: Keyword, args: &str) -> Result<String, String> {
    if args.is_empty() {
        return Err(exactly_one(k));
    }
    Ok(args.to_string())
}

const STAGE_NAME_HINT: &str =
    "a stage name starts with a letter and has only letters, digits, '-', '_' and '.'";

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn copy_args(k: Keyword, line: &RawLine, flags: &Flags) -> Result<Copy, String> {
    let (mut args, json) = json_or_words(k, &line.args)?;
    if args.len() < 2 {
        return Err(format!(
            "{k} requires at least two arguments, but only {} provided. Destination could not be determined.",
            if args.is_empty() {
                "none was"
            } else {
                "one was"
            }
        ));
    }
    let dest = args.pop().unwrap_or_default();
    if !json && heredoc::parse_marker(&dest).is_some() {
        return Err(format!("{k} cannot accept a heredoc as a destination"));
    }
    let docs: HashMap<&str, &Heredoc> =
        line.heredocs.iter().map(|h| (h.name.as_str(), h)).collect();
    let sources = args
        .into_iter()
        .map(|src| {
            let marker = if json {
                None
            } else {
                heredoc::parse_marker(&src)
            };
            match marker {
                Some(mut doc) => {
                    if let Some(found) = docs.get(doc.name.as_str()) {
                        doc.content = found.content.clone();
                    }
                    Source::Heredoc(doc)
                }
                None => Source::Path(src),
            }
        })
        .collect();
    Ok(Copy {
        sources,
        dest,
        json,
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        parents: flags.bool("parents"),
        exclude: flags.strings("exclude"),
        checksum: flags.string("checksum"),
        keep_git_dir: flags.bool("keep-git-dir"),
        unpack: flags.opt_bool("unpack"),
    })
}

fn command(
    k: Keyword,
    line: &RawLine,
    escape: char,
    problems: &mut Vec<String>,
) -> Result<Command, String> {
    use FlagKind::*;
    let args = line.args.as_str();
    let mut take = |flags: Flags| {
        problems.extend(flags.problems.iter().cloned());
        flags
    };
    let no_flags = |line: &RawLine| parse_flags(k, &line.flags, &[]);
    Ok(match k {
        Keyword::From => {
            let flags = take(parse_flags(k, &line.flags, &[("platform", String)]));
            let ws = words::split_whitespace(args);
            let name = match ws.len() {
                1 => None,
                3 if ws[1].eq_ignore_ascii_case("as") => {
                    let name = ws[2].to_ascii_lowercase();
                    if !valid_stage_name(&name) {
                        return Err(format!(
                            "invalid name for build stage: {:?}, name can't start with a number or contain symbols ({STAGE_NAME_HINT})",
                            ws[2]
                        ));
                    }
                    Some(name)
                }
                _ => {
                    return Err(
                        "FROM requires either one or three arguments (FROM <image> [AS <name>])"
                            .into(),
                    );
                }
            };
            Command::From(From {
                image: ws[0].clone(),
                name,
                platform: flags.string("platform"),
            })
        }
        Keyword::Run => {
            let flags = take(parse_flags(
                k,
                &line.flags,
                &[
                    ("mount", Strings),
                    ("network", String),
                    ("security", String),
                ],
            ));
            if args.is_empty() {
                return Err("RUN requires at least one argument: the command to run".into());
            }
            let mount_specs = flags.strings("mount");
            let mut mounts = Vec::new();
            for spec in &mount_specs {
                // A spec with variables is typed after expansion, in the plan.
                if spec.contains('$') {
                    continue;
                }
                // Bare keys are only judged once expanded (BuildKit skips them here), and a
                // bad mount is the build's error, not the parser's.
                match mount::parse_mount(spec, &mut |v| Ok(v.to_string()), true) {
                    Ok(m) => mounts.push(m),
                    Err(e) => problems.push(format!("RUN --mount={spec}: {e}")),
                }
            }
            let network = match flags.string("network").as_deref() {
                None => None,
                Some("default") => Some(Network::Default),
                Some("none") => Some(Network::None),
                Some("host") => Some(Network::Host),
                Some(other) => {
                    problems.push(format!(
                        "RUN: unsupported network mode {other:?} (use default, none or host)"
                    ));
                    None
                }
            };
            let security = match flags.string("security").as_deref() {
                None => None,
                Some("sandbox") => Some(Security::Sandbox),
                Some("insecure") => Some(Security::Insecure),
                Some(other) => {
                    problems.push(format!(
                        "RUN: unsupported security mode {other:?} (use sandbox or insecure)"
                    ));
                    None
                }
            };
            Command::Run(Run {
                command: command_line(k, args)?,
                mount_specs,
                mounts,
                network,
                security,
            })
        }
        Keyword::Cmd => {
            take(no_flags(line));
            Command::Cmd(command_line(k, args)?)
        }
        Keyword::Entrypoint => {
            take(no_flags(line));
            Command::Entrypoint(command_line(k, args)?)
        }
        Keyword::Shell => {
            take(no_flags(line));
            match words::parse_json(args) {
                Json::Strings(v) if !v.is_empty() => Command::Shell(v),
                Json::Strings(_) => return Err(at_least_one(k)),
                Json::NotStrings => {
                    return Err(
                        "SHELL: when using JSON array syntax, arrays must be comprised of strings only"
                            .into(),
                    );
                }
                Json::No if args.is_empty() => return Err(at_least_one(k)),
                Json::No => {
                    return Err(format!(
                        "SHELL requires the arguments to be in JSON form: SHELL [\"executable\", \"param\"], not SHELL {args}"
                    ));
                }
            }
        }
        Keyword::Env | Keyword::Label => {
            take(no_flags(line));
            let kvs = name_values(k, args, escape)?;
            if k == Keyword::Env {
                Command::Env(kvs)
            } else {
                Command::Label(kvs)
            }
        }
        Keyword::Arg => {
            let flags = take(parse_flags(k, &line.flags, &[("required", Bool)]));
            let ws = words::parse_words(args, escape);
            if ws.is_empty() {
                return Err(at_least_one(k));
            }
            let mut decls = Vec::new();
            for w in ws {
                let decl = match w.split_once('=') {
                    Some((name, value)) => ArgDecl {
                        name: name.to_string(),
                        default: Some(value.to_string()),
                    },
                    None => ArgDecl {
                        name: w,
                        default: None,
                    },
                };
                if decl.name.is_empty() {
                    return Err("ARG names can not be blank".into());
                }
                decls.push(decl);
            }
            Command::Arg(Arg {
                args: decls,
                required: flags.bool("required"),
            })
        }
        Keyword::Maintainer => {
            take(no_flags(line));
            Command::Maintainer(one_string(k, args)?)
        }
        Keyword::User => {
            take(no_flags(line));
            Command::User(one_string(k, args)?)
        }
        Keyword::Workdir => {
            take(no_flags(line));
            Command::Workdir(one_string(k, args)?)
        }
        Keyword::Stopsignal => {
            take(no_flags(line));
            Command::Stopsignal(one_string(k, args)?)
        }
        Keyword::Expose => {
            take(no_flags(line));
            let ports = words::split_whitespace(args);
            if ports.is_empty() {
                return Err(at_least_one(k));
            }
            Command::Expose(ports)
        }
        Keyword::Volume => {
            take(no_flags(line));
            let (vols, _) = json_or_words(k, args)?;
            if vols.is_empty() {
                return Err(at_least_one(k));
            }
            if vols.iter().any(|v| v.trim().is_empty()) {
                return Err("VOLUME specified can not be an empty string".into());
            }
            Command::Volume(vols.into_iter().map(|v| v.trim().to_string()).collect())
        }
        Keyword::Copy => {
            let flags = take(parse_flags(
                k,
                &line.flags,
                &[
                    ("from", String),
                    ("chown", String),
                    ("chmod", String),
                    ("link", Bool),
                    ("parents", Bool),
                    ("exclude", Strings),
                ],
            ));
            Command::Copy(copy_args(k, line, &flags)?)
        }
        Keyword::Add => {
            let flags = take(parse_flags(
                k,
                &line.flags,
                &[
                    ("chown", String),
                    ("chmod", String),
                    ("link", Bool),
                    ("keep-git-dir", Bool),
                    ("checksum", String),
                    ("unpack", Bool),
                    ("exclude", Strings),
                ],
            ));
            Command::Add(copy_args(k, line, &flags)?)
        }
        Keyword::Healthcheck => healthcheck(line, problems)?,
        Keyword::Onbuild => {
            take(no_flags(line));
            if args.is_empty() {
                return Err(at_least_one(k));
            }
            let (child_kw, child_flags, child_args) = split_command(args);
            match child_kw.to_ascii_uppercase().as_str() {
                "ONBUILD" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into());
                }
                t @ ("MAINTAINER" | "FROM") => {
                    return Err(format!("{t} isn't allowed as an ONBUILD trigger"));
                }
                _ => {}
            }
            let child = RawLine {
                keyword: child_kw,
                flags: child_flags,
                args: child_args,
                original: args.to_string(),
                ..line.clone()
            };
            // BuildKit stores the trigger as text and only reads it when an image built on
            // this one runs it, so a bad trigger is not an error here.
            let trigger = instruction(&child, escape)
                .map(Box::new)
                .map_err(|e| e.kind.to_string());
            Command::Onbuild(Onbuild {
                expression: args.to_string(),
                trigger,
            })
        }
    })
}

fn healthcheck(line: &RawLine, problems: &mut Vec<String>) -> Result<Command, String> {
    let k = Keyword::Healthcheck;
    let args = line.args.as_str();
    if args.is_empty() {
        return Err("HEALTHCHECK requires at least one argument: NONE, or CMD <command>".into());
    }
    let (typ, rest) = words::split_once_whitespace(args);
    let typ = typ.to_ascii_uppercase();
    let rest = rest.unwrap_or("");
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".into());
        }
        return Ok(Command::Healthcheck(Healthcheck::None));
    }
    use FlagKind::String;
    let flags = parse_flags(
        k,
        &line.flags,
        &[
            ("interval", String),
            ("timeout", String),
            ("start-period", String),
            ("start-interval", String),
            ("retries", String),
        ],
    );
    problems.extend(flags.problems.iter().cloned());
    if typ != "CMD" {
        return Err(format!("Unknown type {typ:?} in HEALTHCHECK (try CMD)"));
    }
    let command = command_line(k, rest)?;
    if matches!(&command, CommandLine::Shell(s) if s.is_empty())
        || matches!(&command, CommandLine::Exec(v) if v.is_empty())
    {
        return Err("Missing command after HEALTHCHECK CMD".into());
    }
    let mut duration = |name: &str| -> Option<Duration> {
        let v = flags.string(name).filter(|v| !v.is_empty())?;
        match parse_duration(&v) {
            None => {
                problems.push(format!(
                    "HEALTHCHECK --{name}: invalid duration {v:?} (e.g. 30s, 1m30s)"
                ));
                None
            }
            Some(d) if d.is_zero() => None,
            Some(d) if d < Duration::from_millis(1) => {
                problems.push(format!(
                    "HEALTHCHECK: Interval \"{name}\" cannot be less than 1ms"
                ));
                None
            }
            Some(d) => Some(d),
        }
    };
    let interval = duration("interval");
    let timeout = duration("timeout");
    let start_period = duration("start-period");
    let start_interval = duration("start-interval");
    let retries = match flags.string("retries").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 && n <= i64::from(u32::MAX) => Some(n as u32),
            Ok(n) if n < 0 => {
                problems.push(format!("HEALTHCHECK --retries cannot be negative ({n})"));
                None
            }
            _ => {
                problems.push(format!("HEALTHCHECK --retries: {v:?} is not a valid count"));
                None
            }
        },
    };
    Ok(Command::Healthcheck(Healthcheck::Cmd {
        command,
        interval,
        timeout,
        start_period,
        start_interval,
        retries,
    }))
}

/// Types one logical line.
pub(crate) fn instruction(line: &RawLine, escape: char) -> Result<Instruction, ParseError> {
    let fail = |kind| ParseError {
        line: line.start_line,
        column: line.column,
        kind,
    };
    let Some(k) = Keyword::parse(&line.keyword) else {
        return Err(fail(ParseErrorKind::UnknownInstruction {
            name: line.keyword.to_uppercase(),
            suggestion: error::suggest(&line.keyword),
        }));
    };
    let mut problems = Vec::new();
    let command = command(k, line, escape, &mut problems)
        .map_err(|m| fail(ParseErrorKind::Instruction(m)))?;
    Ok(Instruction {
        start_line: line.start_line,
        end_line: line.end_line,
        column: line.column,
        original: line.original.clone(),
        flags: line.flags.clone(),
        args: line.args.clone(),
        heredocs: line.heredocs.clone(),
        command,
        flag_errors: problems,
    })
}

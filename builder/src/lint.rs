//! Build checks (`build --check`, and the warnings every build prints at its end): BuildKit's
//! Dockerfile linter rules that need no base image, with its names, URLs and messages, and its
//! configuration (`# check=skip=A,B;error=true;experimental=C` or the build arg
//! `BUILDKIT_DOCKERFILE_CHECK`). Rules that depend on a base image's environment
//! (`UndefinedVar`) only judge stages whose environment is known without pulling anything.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use crate::frontend::lex::Lexer;
use crate::frontend::{Command, CommandLine, Dockerfile, Instruction, Keyword, Source};
use crate::ignore::Ignore;

mod rules;

pub use rules::*;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub rule: &'static Rule,
    pub detail: String,
    /// 1-based first and last line of the instruction concerned.
    pub start_line: usize,
    pub end_line: usize,
}

/// What the linter knows beside the Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct LintOptions {
    /// `--build-arg`s (they give FROM's ARGs values, and may carry `BUILDKIT_DOCKERFILE_CHECK`).
    pub build_args: BTreeMap<String, String>,
    /// Environments of base images known without pulling (by reference as written in FROM).
    pub image_env: BTreeMap<String, Vec<(String, String)>>,
    /// The context's ignore rules, for `CopyIgnoredFile`.
    pub ignore: Option<Ignore>,
}

/// The checks' outcome.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub warnings: Vec<Warning>,
    /// `error=true`: warnings fail the build.
    pub error: bool,
}

impl Report {
    /// BuildKit's error when `error=true` and something was found.
    pub fn violation(&self) -> Option<String> {
        if !self.error || self.warnings.is_empty() {
            return None;
        }
        let names: BTreeSet<&str> = self.warnings.iter().map(|w| w.rule.name).collect();
        Some(format!(
            "lint violation found for rules: {}",
            names.into_iter().collect::<Vec<_>>().join(", ")
        ))
    }
}

/// The `check` configuration.
#[derive(Debug, Default)]
struct Config {
    skip_all: bool,
    skip: BTreeSet<String>,
    experimental_all: bool,
    experimental: BTreeSet<String>,
    error: bool,
}

impl Config {
    fn parse(text: &str) -> Config {
        let mut c = Config::default();
        for part in text.split(';') {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            let list = || v.split(',').map(|s| s.trim().to_string());
            match k.trim() {
                "skip" if v.trim() == "all" => c.skip_all = true,
                "skip" => c.skip.extend(list()),
                "experimental" if v.trim() == "all" => c.experimental_all = true,
                "experimental" => c.experimental.extend(list()),
                "error" => c.error = v.trim().eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        c
    }

    fn enabled(&self, r: &Rule) -> bool {
        if self.skip_all || self.skip.contains(r.name) {
            return false;
        }
        !r.experimental || self.experimental_all || self.experimental.contains(r.name)
    }
}

/// Platform ARGs BuildKit defines for FROM without a declaration.
const AUTO_FROM_ARGS: [&str; 8] = [
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

struct Linter<'a> {
    config: Config,
    out: Vec<Warning>,
    opts: &'a LintOptions,
    lexer: Lexer,
}

impl Linter<'_> {
    fn warn(&mut self, rule: &'static Rule, ins: &Instruction, detail: String) {
        self.warn_at(rule, ins.start_line, ins.end_line, detail);
    }

    fn warn_at(&mut self, rule: &'static Rule, start: usize, end: usize, detail: String) {
        if self.config.enabled(rule) {
            self.out.push(Warning {
                rule,
                detail,
                start_line: start,
                end_line: end,
            });
        }
    }

    /// Names a word references that `env` does not set.
    fn unset_in(&self, word: &str, env: &dyn crate::frontend::lex::Env) -> BTreeSet<String> {
        self.lexer
            .process(word, env)
            .map(|e| e.unmatched)
            .unwrap_or_default()
    }
}

/// The keyword as written.
fn keyword_text(ins: &Instruction) -> &str {
    ins.original.split_whitespace().next().unwrap_or_default()
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let parts: Vec<&str> = k.split('_').collect();
    if parts.contains(&"public") {
        return false;
    }
    const DENY: [&str; 11] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
        "pass",
    ];
    parts.iter().any(|p| DENY.contains(p))
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn suggest<'s>(name: &str, options: impl Iterator<Item = &'s str>) -> String {
    let mut best: Option<(usize, &str)> = None;
    for o in options {
        let d = if o.eq_ignore_ascii_case(name) {
            0
        } else {
            distance(name, o)
        };
        if d <= 2.min(name.len() / 2 + 1) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, o));
        }
    }
    best.map(|(_, o)| o.to_string()).unwrap_or_default()
}

/// Runs every enabled rule over `df`.
pub fn lint(df: &Dockerfile, opts: &LintOptions) -> Report {
    let mut text = df.directives.check().unwrap_or_default().to_string();
    if let Some(v) = opts.build_args.get("BUILDKIT_DOCKERFILE_CHECK") {
        text = v.clone();
    }
    let mut l = Linter {
        config: Config::parse(&text),
        out: Vec::new(),
        opts,
        lexer: Lexer::new(df.escape()),
    };
    for w in &df.warnings {
        l.warn_at(
            &NO_EMPTY_CONTINUATION,
            w.line,
            w.line,
            "Empty continuation line".into(),
        );
    }
    casing(&mut l, df);
    stages(&mut l, df);
    let error = l.config.error;
    let mut warnings = l.out;
    warnings.sort_by_key(|w| w.start_line);
    Report { warnings, error }
}

fn casing(l: &mut Linter<'_>, df: &Dockerfile) {
    let (mut lower, mut upper) = (0, 0);
    for ins in &df.instructions {
        let k = keyword_text(ins);
        if k.to_lowercase() == k {
            lower += 1;
        } else if k.to_uppercase() == k {
            upper += 1;
        }
    }
    let majority_lower = lower > upper;
    for ins in &df.instructions {
        let k = keyword_text(ins);
        let correct = if majority_lower && k.to_lowercase() != k {
            "lowercase"
        } else if !majority_lower && k.to_uppercase() != k {
            "uppercase"
        } else {
            continue;
        };
        l.warn(
            &CONSISTENT_INSTRUCTION_CASING,
            ins,
            format!("Command '{k}' should match the case of the command majority ({correct})"),
        );
    }
}

/// What a stage's environment is known to hold.
#[derive(Clone)]
struct StageEnv {
    /// Variables set (ENV, base image) or declared (ARG).
    vars: Vec<(String, String)>,
    /// Whether the base's environment is known (scratch, a known image, a known stage).
    known: bool,
    /// Whether an absolute WORKDIR was set in this build.
    abs_workdir: bool,
}

fn stages(l: &mut Linter<'_>, df: &Dockerfile) {
    // Global ARGs: declared names with their values (build arg over default).
    let mut globals: Vec<(String, String)> = Vec::new();
    let mut global_defaults: Vec<(String, String)> = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut stage_envs: BTreeMap<String, StageEnv> = BTreeMap::new();
    let mut cur: Option<StageEnv> = None;
    let mut counts: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
    let mut stage_start = 0usize;
    let instrs = &df.instructions;
    let flush_counts = |l: &mut Linter<'_>, counts: &mut BTreeMap<&'static str, Vec<usize>>| {
        for (name, idx) in std::mem::take(counts) {
            if idx.len() > 1 {
                for &i in &idx[..idx.len() - 1] {
                    l.warn(
                        &MULTIPLE_INSTRUCTIONS_DISALLOWED,
                        &instrs[i],
                        format!("Multiple {name} instructions should not be used in the same stage because only the last one will be used"),
                    );
                }
            }
        }
    };
    for (i, ins) in instrs.iter().enumerate() {
        match &ins.command {
            Command::From(f) => {
                flush_counts(l, &mut counts);
                let _ = stage_start;
                stage_start = i;
                from(l, ins, f, &globals, &global_defaults);
                let mut words = ins.args.split_whitespace();
                let _image = words.next();
                let (as_word, raw_name) = (words.next(), words.next());
                if let (Some(a), Some(n)) = (as_word, raw_name) {
                    let k = keyword_text(ins);
                    let (fu, fl) = (k.to_uppercase() == k, k.to_lowercase() == k);
                    if (fu && a.to_uppercase() != a) || (fl && a.to_lowercase() != a) {
                        l.warn(
                            &FROM_AS_CASING,
                            ins,
                            format!("'{a}' and '{k}' keywords' casing do not match"),
                        );
                    }
                    if n.to_lowercase() != n {
                        l.warn(
                            &STAGE_NAME_CASING,
                            ins,
                            format!("Stage name '{n}' should be lowercase"),
                        );
                    }
                }
                if let Some(name) = &f.name {
                    if names.insert(name.clone(), i).is_some() {
                        l.warn(
                            &DUPLICATE_STAGE_NAME,
                            ins,
                            format!("Duplicate stage name {name:?}, stage names should be unique"),
                        );
                    }
                    if matches!(name.as_str(), "scratch" | "context") {
                        l.warn(
                            &RESERVED_STAGE_NAME,
                            ins,
                            format!(
                                "Stage name should not use the same name as reserved stage {name:?}"
                            ),
                        );
                    }
                }
                // The base's environment.
                let image = l
                    .lexer
                    .process_word(&f.image, &globals)
                    .unwrap_or_else(|_| f.image.clone());
                let base = if image.eq_ignore_ascii_case("scratch") {
                    Some(StageEnv {
                        vars: Vec::new(),
                        known: true,
                        abs_workdir: false,
                    })
                } else if let Some(s) = stage_envs.get(&image.to_ascii_lowercase()) {
                    Some(s.clone())
                } else {
                    l.opts.image_env.get(&image).map(|env| StageEnv {
                        vars: env.clone(),
                        known: true,
                        abs_workdir: false,
                    })
                };
                cur = Some(base.unwrap_or(StageEnv {
                    vars: Vec::new(),
                    known: false,
                    abs_workdir: false,
                }));
                if let Some(name) = &f.name
                    && let Some(c) = &cur
                {
                    stage_envs.insert(name.clone(), c.clone());
                }
            }
            Command::Arg(a) => {
                for d in &a.args {
                    if is_secret_key(&d.name) {
                        l.warn(
                            &SECRETS_USED_IN_ARG_OR_ENV,
                            ins,
                            format!(
                                "Do not use ARG or ENV instructions for sensitive data (ARG {:?})",
                                d.name
                            ),
                        );
                    }
                    match &mut cur {
                        None => {
                            let value = l
                                .opts
                                .build_args
                                .get(&d.name)
                                .cloned()
                                .or_else(|| d.default.clone())
                                .unwrap_or_default();
                            globals.push((d.name.clone(), value));
                            global_defaults
                                .push((d.name.clone(), d.default.clone().unwrap_or_default()));
                        }
                        Some(s) => {
                            if let Some(def) = &d.default
                                && s.known
                            {
                                undefined_vars(l, ins, def, &s.vars);
                            }
                            s.vars
                                .push((d.name.clone(), d.default.clone().unwrap_or_default()));
                        }
                    }
                }
            }
            _ => {
                let Some(s) = cur.as_mut() else {
                    continue;
                };
                let snapshot = s.clone();
                stage_instruction(l, ins, &snapshot, &mut counts, i);
                let s = cur.as_mut().expect("inside a stage");
                match &ins.command {
                    Command::Env(kvs) => {
                        for kv in kvs {
                            s.vars.push((kv.key.clone(), kv.value.clone()));
                        }
                    }
                    Command::Workdir(p) if p.starts_with('/') || p.starts_with('$') => {
                        s.abs_workdir = true;
                    }
                    _ => {}
                }
                if let Some(Command::From(f)) = instrs.get(stage_start).map(|i| &i.command)
                    && let Some(name) = &f.name
                {
                    stage_envs.insert(name.clone(), s.clone());
                }
            }
        }
    }
    flush_counts(l, &mut counts);
}

fn from(
    l: &mut Linter<'_>,
    ins: &Instruction,
    f: &crate::frontend::From,
    globals: &[(String, String)],
    defaults: &[(String, String)],
) {
    let mut env = globals.to_vec();
    for a in AUTO_FROM_ARGS {
        env.push((a.to_string(), String::new()));
    }
    let mut words = vec![f.image.as_str()];
    if let Some(p) = &f.platform {
        words.push(p);
    }
    for w in &words {
        for name in l.unset_in(w, &env) {
            let s = suggest(&name, globals.iter().map(|(k, _)| k.as_str()));
            let mut msg = format!("FROM argument '{name}' is not declared");
            if !s.is_empty() {
                msg.push_str(&format!(" (did you mean {s}?)"));
            }
            l.warn(&UNDEFINED_ARG_IN_FROM, ins, msg);
        }
    }
    // With only the defaults, the base must still be a valid name.
    if f.image.contains('$') {
        let mut denv = defaults.to_vec();
        for a in AUTO_FROM_ARGS {
            denv.push((a.to_string(), "linux/amd64".into()));
        }
        let image = l.lexer.process_word(&f.image, &denv).unwrap_or_default();
        if image.is_empty() || berth_store::Reference::parse(&image).is_err() {
            l.warn(
                &INVALID_DEFAULT_ARG_IN_FROM,
                ins,
                format!(
                    "Default value for ARG {} results in empty or invalid base image name",
                    f.image
                ),
            );
        }
    }
    if let Some(p) = &f.platform {
        if !p.contains('$') {
            let arch = p.split('/').nth(1).unwrap_or_default();
            let named_for_it = f
                .name
                .as_deref()
                .is_some_and(|n| !arch.is_empty() && n.contains(arch));
            if !named_for_it {
                l.warn(
                    &FROM_PLATFORM_FLAG_CONST_DISALLOWED,
                    ins,
                    format!("FROM --platform flag should not use constant value {p:?}"),
                );
            }
        } else if p == "$TARGETPLATFORM" || p == "${TARGETPLATFORM}" {
            l.warn(
                &REDUNDANT_TARGET_PLATFORM,
                ins,
                format!(
                    "Setting platform to predefined {p} in FROM is redundant as this is the default behavior"
                ),
            );
        }
    }
}

fn undefined_vars(l: &mut Linter<'_>, ins: &Instruction, word: &str, env: &[(String, String)]) {
    let owned = env.to_vec();
    for name in l.unset_in(word, &owned) {
        let s = suggest(&name, env.iter().map(|(k, _)| k.as_str()));
        let mut msg = format!("Usage of undefined variable '${name}'");
        if !s.is_empty() {
            msg.push_str(&format!(" (did you mean ${s}?)"));
        }
        l.warn(&UNDEFINED_VAR, ins, msg);
    }
}

fn stage_instruction(
    l: &mut Linter<'_>,
    ins: &Instruction,
    s: &StageEnv,
    counts: &mut BTreeMap<&'static str, Vec<usize>>,
    index: usize,
) {
    let kw = ins.keyword();
    match &ins.command {
        Command::Cmd(c) | Command::Entrypoint(c) => {
            let name = if kw == Keyword::Cmd {
                "CMD"
            } else {
                "ENTRYPOINT"
            };
            counts.entry(name).or_default().push(index);
            if matches!(c, CommandLine::Shell(_)) {
                l.warn(
                    &JSON_ARGS_RECOMMENDED,
                    ins,
                    format!("JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"),
                );
            }
        }
        Command::Healthcheck(_) => counts.entry("HEALTHCHECK").or_default().push(index),
        Command::Maintainer(_) => l.warn(
            &MAINTAINER_DEPRECATED,
            ins,
            "Maintainer instruction is deprecated in favor of using label".into(),
        ),
        Command::Env(kvs) | Command::Label(kvs) => {
            let name = if kw == Keyword::Env { "ENV" } else { "LABEL" };
            let first = ins.args.split_whitespace().next().unwrap_or_default();
            if !first.contains('=') {
                l.warn(
                    &LEGACY_KEY_VALUE_FORMAT,
                    ins,
                    format!("\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"),
                );
            }
            if kw == Keyword::Env {
                for kv in kvs {
                    if is_secret_key(&kv.key) {
                        l.warn(
                            &SECRETS_USED_IN_ARG_OR_ENV,
                            ins,
                            format!(
                                "Do not use ARG or ENV instructions for sensitive data (ENV {:?})",
                                kv.key
                            ),
                        );
                    }
                }
            }
        }
        Command::Workdir(p) if !s.abs_workdir && !p.starts_with('/') && !p.starts_with('$') => {
            l.warn(
                &WORKDIR_RELATIVE_PATH,
                ins,
                format!(
                    "Relative workdir {p:?} can have unexpected results if the base image changes"
                ),
            );
        }
        Command::Copy(c) | Command::Add(c) => {
            if c.from.is_none()
                && let Some(ig) = &l.opts.ignore
            {
                let cmd = if kw == Keyword::Copy { "Copy" } else { "Add" };
                for src in &c.sources {
                    if let Source::Path(p) = src
                        && !p.contains("://")
                        && !p.contains(['*', '?', '['])
                        && ig.matches(p, false)
                    {
                        l.warn(
                            &COPY_IGNORED_FILE,
                            ins,
                            format!(
                                "Attempting to {cmd} file {p:?} that is excluded by .dockerignore"
                            ),
                        );
                    }
                }
            }
        }
        _ => {}
    }
    // UndefinedVar: on the words BuildKit expands, where the environment is known.
    if s.known {
        let words: Vec<&str> = match kw {
            Keyword::Env
            | Keyword::Label
            | Keyword::Workdir
            | Keyword::User
            | Keyword::Expose
            | Keyword::Volume
            | Keyword::Stopsignal
            | Keyword::Copy
            | Keyword::Add => vec![ins.args.as_str()],
            _ => Vec::new(),
        };
        for w in words {
            // ENV's own keys are defined by the time their values are read (per line).
            let mut env = s.vars.clone();
            if let Command::Env(kvs) = &ins.command {
                for kv in kvs.iter().take(kvs.len().saturating_sub(1)) {
                    env.push((kv.key.clone(), kv.value.clone()));
                }
            }
            undefined_vars(l, ins, w, &env);
        }
    }
}

/// BuildKit's source excerpt: the lines of the instruction with a few around, `>>>` marking it.
fn print_source(w: &mut dyn Write, file: &str, lines: &[&str], start: usize, end: usize) {
    if start < 1 || start > lines.len() {
        return;
    }
    let (mut s, mut e) = (start, end.min(lines.len()));
    let pad = if s == e { 4 } else { 2 };
    let mut p = 0;
    while p < pad {
        if s > 1 {
            s -= 1;
            p += 1;
        }
        if e != lines.len() {
            e += 1;
            p += 1;
        }
        p += 1;
    }
    let _ = writeln!(w, "{file}:{start}\n--------------------");
    for i in s..=e {
        let pfx = if (start..=end).contains(&i) {
            ">>>"
        } else {
            "   "
        };
        let _ = writeln!(w, " {i:3} | {pfx} {}", lines[i - 1]);
    }
    let _ = writeln!(w, "--------------------");
}

/// `build --check`'s report, as `docker build --check` prints it.
pub fn print_check(w: &mut dyn Write, report: &Report, source: &str, file: &str) {
    let lines: Vec<&str> = source.split('\n').collect();
    match report.warnings.len() {
        0 => {
            let _ = writeln!(w, "Check complete, no warnings found.");
            return;
        }
        1 => {
            let _ = writeln!(w, "Check complete, 1 warning has been found!");
        }
        n => {
            let _ = writeln!(w, "Check complete, {n} warnings have been found!");
        }
    }
    for x in &report.warnings {
        let _ = writeln!(w, "\nWARNING: {} - {}", x.rule.name, x.rule.url);
        let _ = writeln!(w, "{}", x.detail);
        print_source(w, file, &lines, x.start_line, x.end_line);
    }
}

/// The summary a build prints at its end.
pub fn summary(report: &Report) -> Option<String> {
    let n = report.warnings.len();
    if n == 0 {
        return None;
    }
    let mut s = if n == 1 {
        " 1 warning found:".to_string()
    } else {
        format!(" {n} warnings found:")
    };
    for x in &report.warnings {
        s.push_str(&format!(
            "\n - {}: {} (line {})",
            x.rule.name, x.detail, x.start_line
        ));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontend::parse;

    fn names(src: &str) -> Vec<(&'static str, usize)> {
        let df = parse(src).unwrap();
        lint(&df, &LintOptions::default())
            .warnings
            .iter()
            .map(|w| (w.rule.name, w.start_line))
            .collect()
    }

    #[test]
    fn a_clean_file_has_no_warnings() {
        assert!(
            names("FROM scratch AS base\nENV A=1\nWORKDIR /app\nCOPY . .\nCMD [\"x\"]\n")
                .is_empty()
        );
    }

    #[test]
    fn each_rule_fires_where_buildkit_does() {
        let src = "ARG TAG\nFROM busybox:${TAGG} AS Build\nFROM --platform=linux/amd64 scratch as base\n\
                   MAINTAINER me\nENV PATH /bin\nWORKDIR rel\nCMD echo hi\nCMD [\"a\"]\n\
                   ARG API_TOKEN\nCOPY $NOPE /x\nfrom scratch AS base\n";
        let got = names(src);
        for want in [
            ("UndefinedArgInFrom", 2),
            ("StageNameCasing", 2),
            ("FromAsCasing", 3),
            ("FromPlatformFlagConstDisallowed", 3),
            ("MaintainerDeprecated", 4),
            ("LegacyKeyValueFormat", 5),
            ("WorkdirRelativePath", 6),
            ("JSONArgsRecommended", 7),
            ("MultipleInstructionsDisallowed", 7),
            ("SecretsUsedInArgOrEnv", 9),
            ("UndefinedVar", 10),
            ("ConsistentInstructionCasing", 11),
            ("DuplicateStageName", 11),
        ] {
            assert!(got.contains(&want), "{want:?} missing from {got:?}");
        }
        // The FROM on line 2 suggests the declared name.
        let df = parse(src).unwrap();
        let r = lint(&df, &LintOptions::default());
        assert!(
            r.warnings
                .iter()
                .any(|w| w.detail == "FROM argument 'TAGG' is not declared (did you mean TAG?)")
        );
    }

    #[test]
    fn check_directive_skips_and_makes_errors() {
        let df = parse(
            "# check=skip=JSONArgsRecommended;error=true\nFROM scratch\nCMD x\nMAINTAINER m\n",
        )
        .unwrap();
        let r = lint(&df, &LintOptions::default());
        let got: Vec<&str> = r.warnings.iter().map(|w| w.rule.name).collect();
        assert_eq!(got, ["MaintainerDeprecated"]);
        assert_eq!(
            r.violation().as_deref(),
            Some("lint violation found for rules: MaintainerDeprecated")
        );
    }

    #[test]
    fn invalid_default_and_reserved_names() {
        let got = names("ARG IMG=\nFROM ${IMG} AS scratch\n");
        assert!(got.contains(&("InvalidDefaultArgInFrom", 2)), "{got:?}");
        assert!(got.contains(&("ReservedStageName", 2)), "{got:?}");
    }

    #[test]
    fn the_report_prints_as_docker_does() {
        let src = "FROM scratch\nCMD echo hi\n";
        let df = parse(src).unwrap();
        let r = lint(&df, &LintOptions::default());
        let mut out = Vec::new();
        print_check(&mut out, &r, src, "Dockerfile");
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("Check complete, 1 warning has been found!\n\nWARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\nJSON arguments recommended for CMD"), "{s}");
        assert!(s.contains("Dockerfile:2\n--------------------\n   1 |     FROM scratch\n   2 | >>> CMD echo hi\n"), "{s}");
    }
}

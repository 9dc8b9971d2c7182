//! Expanding one stage's instructions: which parts of each instruction BuildKit expands,
//! with which variables (ENV first, then declared ARGs), how ARG declarations take their
//! values, and which stages and images `--from` values point to.

use std::collections::BTreeSet;

use super::model::{PROXY_ARGS, PlanError, PlanOptions, Step};
use crate::frontend::instruction::{
    Arg, ArgDecl, Command, Copy, Instruction, KeyValue, Run, Source,
};
use crate::frontend::lex::{Env, LexError, Lexer};
use crate::frontend::mount::{Mount, parse_mount};

/// Variables visible to an instruction: ENV first (it wins), then ARGs.
pub(super) struct Scope<'a> {
    pub(super) env: &'a [(String, String)],
    pub(super) args: &'a [(String, String)],
}

impl Env for Scope<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.env.lookup(name).or_else(|| self.args.lookup(name))
    }
}

/// Sets `name` in an ordered list of variables, replacing an earlier value.
pub(super) fn set_var(list: &mut Vec<(String, String)>, name: &str, value: String) {
    match list.iter_mut().find(|(k, _)| k == name) {
        Some(slot) => slot.1 = value,
        None => list.push((name.to_string(), value)),
    }
}

pub(super) fn at(ins: &Instruction, message: impl Into<String>) -> PlanError {
    PlanError::Instruction {
        line: ins.start_line,
        column: ins.column,
        message: message.into(),
    }
}

pub(super) fn lex_err(ins: &Instruction, e: LexError) -> PlanError {
    at(ins, format!("{}: {e}", ins.keyword()))
}

/// Where a `--from` value points.
pub(super) enum FromRef {
    Stage(usize),
    Image(String),
}

/// Planning state for one stage while its instructions are walked.
pub(super) struct StageWork {
    pub(super) env: Vec<(String, String)>,
    pub(super) args: Vec<(String, String)>,
    pub(super) steps: Vec<Step>,
    pub(super) depends_on: Vec<usize>,
    pub(super) images: Vec<String>,
    pub(super) declared: BTreeSet<String>,
}

pub(super) struct Planner<'a> {
    pub(super) lex: Lexer,
    pub(super) options: &'a PlanOptions,
    /// Global args with values.
    pub(super) meta: Vec<(String, String)>,
    /// Global args declared, with or without a value.
    pub(super) meta_declared: BTreeSet<String>,
    pub(super) auto: Vec<(String, String)>,
    pub(super) names: Vec<Option<String>>,
}

impl Planner<'_> {
    pub(super) fn word(
        &self,
        ins: &Instruction,
        w: &str,
        scope: &Scope,
    ) -> Result<String, PlanError> {
        self.lex.process_word(w, scope).map_err(|e| lex_err(ins, e))
    }

    pub(super) fn opt_word(
        &self,
        ins: &Instruction,
        w: &Option<String>,
        scope: &Scope,
    ) -> Result<Option<String>, PlanError> {
        w.as_ref().map(|w| self.word(ins, w, scope)).transpose()
    }

    fn resolve_from(
        &self,
        ins: &Instruction,
        current: usize,
        from: &str,
    ) -> Result<FromRef, PlanError> {
        let lower = from.to_ascii_lowercase();
        if let Some(i) = self
            .names
            .iter()
            .position(|n| n.as_deref() == Some(lower.as_str()))
        {
            if i == current {
                return Err(at(
                    ins,
                    format!(
                        "circular dependency detected on stage: {lower} (a stage cannot copy or mount from itself)"
                    ),
                ));
            }
            return Ok(FromRef::Stage(i));
        }
        if let Ok(i) = from.parse::<usize>() {
            if i >= current {
                return Err(at(
                    ins,
                    format!(
                        "invalid from flag value {from}: refers to the current or a later build stage (stage {current} can only use stages 0 to {})",
                        current.saturating_sub(1)
                    ),
                ));
            }
            return Ok(FromRef::Stage(i));
        }
        Ok(FromRef::Image(from.to_string()))
    }

    fn add_from(
        &self,
        work: &mut StageWork,
        ins: &Instruction,
        current: usize,
        from: &str,
    ) -> Result<(), PlanError> {
        match self.resolve_from(ins, current, from)? {
            FromRef::Stage(i) => {
                if !work.depends_on.contains(&i) {
                    work.depends_on.push(i);
                }
            }
            FromRef::Image(r) => {
                if !work.images.contains(&r) {
                    work.images.push(r);
                }
            }
        }
        Ok(())
    }

    /// Expands one instruction of stage `current` and applies its effect on the scope.
    pub(super) fn step(
        &self,
        work: &mut StageWork,
        ins: &Instruction,
        current: usize,
    ) -> Result<(), PlanError> {
        let env_snapshot = work.env.clone();
        let args_snapshot = work.args.clone();
        let scope = Scope {
            env: &env_snapshot,
            args: &args_snapshot,
        };
        let mut out = ins.clone();
        match &ins.command {
            Command::Env(kvs) | Command::Label(kvs) => {
                let mut expanded = Vec::with_capacity(kvs.len());
                for kv in kvs {
                    expanded.push(KeyValue {
                        key: self.word(ins, &kv.key, &scope)?,
                        value: self.word(ins, &kv.value, &scope)?,
                    });
                }
                if matches!(ins.command, Command::Env(_)) {
                    for kv in &expanded {
                        set_var(&mut work.env, &kv.key, kv.value.clone());
                    }
                    out.command = Command::Env(expanded);
                } else {
                    out.command = Command::Label(expanded);
                }
            }
            Command::Arg(arg) => {
                let mut decls = Vec::with_capacity(arg.args.len());
                for decl in &arg.args {
                    let name = self.word(ins, &decl.name, &scope)?;
                    let default = self.opt_word(ins, &decl.default, &scope)?;
                    let value = self
                        .options
                        .build_args
                        .get(&name)
                        .cloned()
                        .or_else(|| default.clone())
                        .or_else(|| self.meta.lookup(&name).map(str::to_string))
                        .or_else(|| self.auto.lookup(&name).map(str::to_string));
                    work.declared.insert(name.clone());
                    match value {
                        Some(v) => set_var(&mut work.args, &name, v),
                        None if arg.required => {
                            return Err(at(
                                ins,
                                format!("ARG {name} is required: pass --build-arg {name}=<value>"),
                            ));
                        }
                        None => work.args.retain(|(k, _)| *k != name),
                    }
                    decls.push(ArgDecl { name, default });
                }
                out.command = Command::Arg(Arg {
                    args: decls,
                    required: arg.required,
                });
            }
            Command::Copy(c) | Command::Add(c) => {
                let mut c2: Copy = c.clone();
                for s in &mut c2.sources {
                    match s {
                        Source::Path(p) => *p = self.word(ins, p, &scope)?,
                        // An unquoted heredoc terminator means its content is expanded, with
                        // quotes left alone (BuildKit's raw expansion, always with `\`).
                        Source::Heredoc(h) if h.expand => {
                            let mut raw = Lexer::new('\\');
                            raw.skip_process_quotes = true;
                            h.content = raw
                                .process_word(&h.content, &scope)
                                .map_err(|e| lex_err(ins, e))?;
                        }
                        Source::Heredoc(_) => {}
                    }
                }
                c2.dest = self.word(ins, &c.dest, &scope)?;
                c2.from = self.opt_word(ins, &c.from, &scope)?;
                c2.chown = self.opt_word(ins, &c.chown, &scope)?;
                c2.chmod = self.opt_word(ins, &c.chmod, &scope)?;
                c2.checksum = self.opt_word(ins, &c.checksum, &scope)?;
                c2.exclude = c
                    .exclude
                    .iter()
                    .map(|e| self.word(ins, e, &scope))
                    .collect::<Result<_, _>>()?;
                if let Some(from) = &c2.from {
                    self.add_from(work, ins, current, from)?;
                }
                out.command = if matches!(ins.command, Command::Copy(_)) {
                    Command::Copy(c2)
                } else {
                    Command::Add(c2)
                };
            }
            Command::Expose(ports) => {
                let mut all = Vec::new();
                for p in ports {
                    all.extend(
                        self.lex
                            .process_words(p, &scope)
                            .map_err(|e| lex_err(ins, e))?,
                    );
                }
                out.command = Command::Expose(all);
            }
            Command::Volume(vols) => {
                out.command = Command::Volume(
                    vols.iter()
                        .map(|v| self.word(ins, v, &scope))
                        .collect::<Result<_, _>>()?,
                );
            }
            Command::User(s) => out.command = Command::User(self.word(ins, s, &scope)?),
            Command::Workdir(s) => out.command = Command::Workdir(self.word(ins, s, &scope)?),
            Command::Stopsignal(s) => out.command = Command::Stopsignal(self.word(ins, s, &scope)?),
            Command::Run(run) => {
                let mut mounts: Vec<Mount> = Vec::with_capacity(run.mount_specs.len());
                for spec in &run.mount_specs {
                    let m = parse_mount(
                        spec,
                        &mut |v| self.lex.process_word(v, &scope).map_err(|e| e.to_string()),
                        false,
                    )
                    .map_err(|e| at(ins, format!("RUN --mount={spec}: {e}")))?;
                    if let Some(from) = &m.from {
                        self.add_from(work, ins, current, from)?;
                    }
                    mounts.push(m);
                }
                out.command = Command::Run(Run {
                    mounts,
                    ..run.clone()
                });
            }
            // Not expanded by the front end.
            Command::Cmd(_)
            | Command::Entrypoint(_)
            | Command::Shell(_)
            | Command::Healthcheck(_)
            | Command::Maintainer(_)
            | Command::Onbuild(_) => {}
            // FROM starts a stage and never reaches here.
            Command::From(_) => {}
        }
        let mut args = work.args.clone();
        for p in PROXY_ARGS {
            if work.declared.contains(p) {
                continue;
            }
            if let Some(v) = self.options.build_args.get(p) {
                args.push((p.to_string(), v.clone()));
            }
        }
        work.steps.push(Step {
            instruction: out,
            args,
        });
        Ok(())
    }
}

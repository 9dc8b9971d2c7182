//! From a parsed Dockerfile to a build plan: stages with their bases, instructions with
//! variables expanded where BuildKit expands them, ARG scoping, `--build-arg`, `--target`, and
//! which stages the target needs.
//!
//! Scoping follows BuildKit: ARGs before the first FROM ("global" or meta args) are visible
//! only in FROM lines unless a stage declares them again (`ARG NAME` takes the global value);
//! `--build-arg` overrides any default; the platform ARGs (`TARGETPLATFORM`, `BUILDARCH`, …)
//! are set automatically in the global scope and in a stage once declared; the proxy ARGs
//! (`HTTP_PROXY`, …) reach RUN steps without being declared. ENV wins over an ARG of the
//! same name.
//!
//! Expanded, as BuildKit expands them: ENV and LABEL keys and values, ARG names and defaults,
//! FROM's image and `--platform` (global scope only), COPY/ADD sources, destination,
//! `--from`, `--chown`, `--chmod`, `--checksum`, `--exclude` and unquoted heredoc contents,
//! EXPOSE (split into words), VOLUME, USER, WORKDIR, STOPSIGNAL, and RUN `--mount` values.
//! RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER and ONBUILD are not expanded here
//! (the shell or a later build does that).
//!
//! ONBUILD triggers, as BuildKit runs them: a stage on an image runs the image's `OnBuild`
//! triggers, a stage on an earlier stage runs that stage's ONBUILD instructions; each is read
//! with the front end and placed right after FROM (its line is FROM's), expanded in the
//! stage's scope like any instruction. ONBUILD, FROM and MAINTAINER are refused as triggers.

use std::collections::BTreeSet;

mod expand;
mod model;

use expand::{Planner, Scope, StageWork, at, set_var};

use super::Dockerfile;
use super::instruction::{Command, Instruction, Keyword};
use super::lex::Lexer;
pub use model::{Base, PROXY_ARGS, Plan, PlanError, PlanOptions, Stage, Step};

/// The platform ARGs BuildKit defines for `platform` (target) and the build host.
fn platform_args(target: &str) -> Vec<(String, String)> {
    fn parts(p: &str) -> (String, String, String) {
        let mut it = p.split('/');
        let os = it.next().unwrap_or_default().to_string();
        let arch = it.next().unwrap_or_default().to_string();
        let variant = it.next().unwrap_or_default().to_string();
        (os, arch, variant)
    }
    let build = "linux/amd64";
    let (tos, tarch, tvar) = parts(target);
    let (bos, barch, bvar) = parts(build);
    vec![
        ("TARGETPLATFORM".into(), target.to_string()),
        ("TARGETOS".into(), tos),
        ("TARGETARCH".into(), tarch),
        ("TARGETVARIANT".into(), tvar),
        ("BUILDPLATFORM".into(), build.to_string()),
        ("BUILDOS".into(), bos),
        ("BUILDARCH".into(), barch),
        ("BUILDVARIANT".into(), bvar),
    ]
}

/// Reads an ONBUILD trigger as the instruction it runs as, placed at the FROM line.
fn trigger(text: &str, from: &Instruction) -> Result<Instruction, PlanError> {
    let fail = |m: String| at(from, format!("ONBUILD trigger {text:?}: {m}"));
    let lines = super::parser::parse_lines(text).map_err(|e| fail(e.kind.to_string()))?;
    let [line] = lines.lines.as_slice() else {
        return Err(fail("onbuild trigger should be a single expression".into()));
    };
    let mut ins = super::dispatch::instruction(line, '\\').map_err(|e| fail(e.kind.to_string()))?;
    match ins.keyword() {
        Keyword::Onbuild => {
            return Err(fail(
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
            ));
        }
        k @ (Keyword::From | Keyword::Maintainer) => {
            return Err(fail(format!("{k} isn't allowed as an ONBUILD trigger")));
        }
        _ => {}
    }
    if !ins.flag_errors.is_empty() {
        return Err(fail(ins.flag_errors.join("; ")));
    }
    ins.start_line = from.start_line;
    ins.end_line = from.end_line;
    ins.column = from.column;
    ins.original = format!("ONBUILD {}", ins.original.trim());
    Ok(ins)
}

/// Expands instructions outside a build (`import`/`commit --change`) as a stage expands them,
/// with `env` (the image's environment) in scope and no ARGs; an ENV changes what the later
/// instructions see.
pub fn expand_in_env(
    df: &Dockerfile,
    env: Vec<(String, String)>,
) -> Result<Vec<Instruction>, PlanError> {
    if let Some(ins) = df.instructions.iter().find(|i| !i.flag_errors.is_empty()) {
        return Err(at(ins, ins.flag_errors.join("; ")));
    }
    let options = PlanOptions::default();
    let planner = Planner {
        lex: Lexer::new(df.escape()),
        options: &options,
        meta: Vec::new(),
        meta_declared: BTreeSet::new(),
        auto: Vec::new(),
        names: Vec::new(),
    };
    let mut work = StageWork {
        env,
        args: Vec::new(),
        steps: Vec::new(),
        depends_on: Vec::new(),
        images: Vec::new(),
        declared: BTreeSet::new(),
    };
    for ins in &df.instructions {
        planner.step(&mut work, ins, 0)?;
    }
    Ok(work.steps.into_iter().map(|s| s.instruction).collect())
}

/// Plans a parsed Dockerfile. See the module documentation for the rules.
pub fn plan(df: &Dockerfile, options: &PlanOptions) -> Result<Plan, PlanError> {
    let platform = options
        .platform
        .clone()
        .unwrap_or_else(|| "linux/amd64".to_string());
    let mut auto = platform_args(&platform);
    for (k, v) in auto.iter_mut() {
        if let Some(o) = options.build_args.get(k.as_str()) {
            *v = o.clone();
        }
    }
    // BuildKit rejects bad flags when it reads the instructions for a build, in every stage.
    if let Some(ins) = df.instructions.iter().find(|i| !i.flag_errors.is_empty()) {
        return Err(at(ins, ins.flag_errors.join("; ")));
    }
    let lex = Lexer::new(df.escape());
    let mut planner = Planner {
        lex,
        options,
        meta: Vec::new(),
        meta_declared: BTreeSet::new(),
        auto,
        names: Vec::new(),
    };

    // Global args, then the stage list.
    let first_from = df
        .instructions
        .iter()
        .position(|i| matches!(i.command, Command::From(_)))
        .unwrap_or(df.instructions.len());
    for ins in &df.instructions[..first_from] {
        let Command::Arg(arg) = &ins.command else {
            continue;
        };
        for decl in &arg.args {
            let scope_args: Vec<(String, String)> = planner
                .meta
                .iter()
                .chain(planner.auto.iter())
                .cloned()
                .collect();
            let scope = Scope {
                env: &[],
                args: &scope_args,
            };
            let name = planner.word(ins, &decl.name, &scope)?;
            let default = planner.opt_word(ins, &decl.default, &scope)?;
            planner.meta_declared.insert(name.clone());
            match options.build_args.get(&name).cloned().or(default) {
                Some(v) => set_var(&mut planner.meta, &name, v),
                None if arg.required => {
                    return Err(at(
                        ins,
                        format!("ARG {name} is required: pass --build-arg {name}=<value>"),
                    ));
                }
                None => planner.meta.retain(|(k, _)| *k != name),
            }
        }
    }
    let stage_bounds: Vec<usize> = df
        .instructions
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i.command, Command::From(_)))
        .map(|(n, _)| n)
        .collect();
    planner.names = stage_bounds
        .iter()
        .map(|&n| match &df.instructions[n].command {
            Command::From(f) => f.name.clone(),
            _ => None,
        })
        .collect();

    let mut stages: Vec<Stage> = Vec::with_capacity(stage_bounds.len());
    let mut errors: Vec<Option<PlanError>> = Vec::with_capacity(stage_bounds.len());
    // What each stage declared, for the unconsumed-args check.
    let mut stage_declared: Vec<BTreeSet<String>> = Vec::with_capacity(stage_bounds.len());
    let from_scope_args: Vec<(String, String)> = planner
        .meta
        .iter()
        .chain(planner.auto.iter())
        .cloned()
        .collect();
    for (index, &start) in stage_bounds.iter().enumerate() {
        let end = stage_bounds
            .get(index + 1)
            .copied()
            .unwrap_or(df.instructions.len());
        let from_ins = &df.instructions[start];
        let Command::From(from) = &from_ins.command else {
            continue;
        };
        let scope = Scope {
            env: &[],
            args: &from_scope_args,
        };
        let image = planner.word(from_ins, &from.image, &scope)?;
        if image.is_empty() {
            return Err(at(
                from_ins,
                format!(
                    "base name ({}) should not be blank: give the variable a value with ARG before FROM or --build-arg",
                    from.image
                ),
            ));
        }
        let stage_platform = planner.opt_word(from_ins, &from.platform, &scope)?;
        let lower = image.to_ascii_lowercase();
        let (base, mut env, depends_on, images) = if lower == "scratch" {
            (Base::Scratch, Vec::new(), Vec::new(), Vec::new())
        } else if let Some(i) = planner.names[..index]
            .iter()
            .position(|n| n.as_deref() == Some(lower.as_str()))
        {
            (Base::Stage(i), stages[i].env.clone(), vec![i], Vec::new())
        } else {
            let env = options.image_env.get(&image).cloned().unwrap_or_default();
            (
                Base::Image(image.clone()),
                env,
                Vec::new(),
                vec![image.clone()],
            )
        };
        env.dedup_by(|a, b| a.0 == b.0);
        let mut expanded_from = from_ins.clone();
        expanded_from.command = Command::From(super::instruction::From {
            image: image.clone(),
            name: from.name.clone(),
            platform: stage_platform.clone(),
        });
        let mut work = StageWork {
            env,
            args: Vec::new(),
            steps: Vec::new(),
            depends_on,
            images,
            declared: BTreeSet::new(),
        };
        let mut error = None;
        let trigger_texts: Vec<String> = match &base {
            Base::Image(r) => options.image_onbuild.get(r).cloned().unwrap_or_default(),
            Base::Stage(i) => {
                let from = stage_bounds[*i] + 1;
                let to = stage_bounds.get(i + 1).copied().unwrap_or(start);
                df.instructions[from..to]
                    .iter()
                    .filter_map(|ins| match &ins.command {
                        Command::Onbuild(o) => Some(o.expression.clone()),
                        _ => None,
                    })
                    .collect()
            }
            Base::Scratch => Vec::new(),
        };
        let mut triggers = Vec::with_capacity(trigger_texts.len());
        for t in &trigger_texts {
            match trigger(t, from_ins) {
                Ok(ins) => triggers.push(ins),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let own = if error.is_some() {
            &[][..]
        } else {
            &df.instructions[start + 1..end]
        };
        for ins in triggers.iter().chain(own) {
            if let Err(e) = planner.step(&mut work, ins, index) {
                error = Some(e);
                break;
            }
        }
        errors.push(error);
        stages.push(Stage {
            index,
            name: from.name.clone(),
            from: expanded_from,
            base,
            platform: stage_platform,
            steps: work.steps,
            depends_on: work.depends_on,
            images: work.images,
            used: false,
            env: work.env,
        });
        stage_declared.push(work.declared);
    }

    let target = match &options.target {
        None => stages.len().saturating_sub(1),
        Some(t) => {
            let lower = t.to_ascii_lowercase();
            match stages
                .iter()
                .position(|s| s.name.as_deref() == Some(lower.as_str()))
            {
                Some(i) => i,
                None => {
                    let names: Vec<&str> =
                        stages.iter().filter_map(|s| s.name.as_deref()).collect();
                    return Err(PlanError::UnknownTarget {
                        target: t.clone(),
                        available: if names.is_empty() {
                            "(none is named; name one with FROM <image> AS <name>)".into()
                        } else {
                            names.join(", ")
                        },
                    });
                }
            }
        }
    };

    // Mark what the target needs, detecting cycles through later-stage references.
    let mut state = vec![0u8; stages.len()]; // 0 new, 1 in progress, 2 done
    let mut stack = vec![(target, 0usize)];
    while let Some((s, next)) = stack.pop() {
        if next == 0 {
            if state[s] == 2 {
                continue;
            }
            state[s] = 1;
            stages[s].used = true;
        }
        if let Some(&d) = stages[s].depends_on.get(next) {
            stack.push((s, next + 1));
            match state.get(d) {
                Some(1) => {
                    return Err(at(
                        &stages[s].from,
                        format!(
                            "circular dependency detected on stage: {}",
                            stages[d].name.clone().unwrap_or_else(|| d.to_string())
                        ),
                    ));
                }
                Some(0) => stack.push((d, 0)),
                _ => {}
            }
        } else {
            state[s] = 2;
        }
    }
    for (s, e) in stages.iter().zip(errors) {
        if let Some(e) = e.filter(|_| s.used) {
            return Err(e);
        }
    }

    let unconsumed_build_args = options
        .build_args
        .keys()
        .filter(|k| !PROXY_ARGS.contains(&k.as_str()))
        .filter(|k| {
            !planner.meta_declared.contains(k.as_str())
                && !stages
                    .iter()
                    .zip(&stage_declared)
                    .any(|(s, d)| s.used && d.contains(k.as_str()))
        })
        .cloned()
        .collect();

    Ok(Plan {
        stages,
        target,
        global_args: planner.meta,
        unconsumed_build_args,
        platform,
    })
}

#[cfg(test)]
mod tests;

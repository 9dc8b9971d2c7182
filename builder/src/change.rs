//! `--change` (`import`, `commit`): Dockerfile instructions that only edit an image config,
//! read by the front end and expanded against the image's environment as a build step would
//! be (Docker's `BuildFromConfig`: `--change 'ENV PATH=/x:$PATH'` extends the image's PATH),
//! then applied with the same [`StageConfig`] edits a build makes.

use serde_json::{Map, Value};

use crate::config::StageConfig;
use crate::frontend::plan::{PlanError, expand_in_env};
use crate::frontend::{Command, Keyword, ParseErrorKind, parse_instructions};

/// The instructions a change may be (Docker's `validCommitCommands`).
const VALID: [Keyword; 11] = [
    Keyword::Cmd,
    Keyword::Entrypoint,
    Keyword::Env,
    Keyword::Expose,
    Keyword::Healthcheck,
    Keyword::Label,
    Keyword::Onbuild,
    Keyword::Stopsignal,
    Keyword::User,
    Keyword::Volume,
    Keyword::Workdir,
];

/// A `--change` that cannot be applied, with the change as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --change {change:?}: {problem}")]
pub struct ChangeError {
    pub change: String,
    pub problem: ChangeProblem,
}

/// What is wrong with a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeProblem {
    /// An instruction Docker does not take as a change (RUN, COPY, FROM, …), in Docker's words.
    #[error(
        "{keyword} is not a valid change command (use CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR)"
    )]
    NotValid { keyword: String },
    /// The instruction does not read (arguments, flags, quoting).
    #[error("{0}")]
    Syntax(ParseErrorKind),
    /// A variable reference that does not expand.
    #[error("{0}")]
    Expand(String),
    /// The instruction's value is wrong (a port, an empty volume).
    #[error(transparent)]
    Value(#[from] crate::config::ConfigError),
}

/// The store reports a bad change as it reports any bad input (`commit` checks changes
/// through the store's error type).
impl From<ChangeError> for berth_store::StoreError {
    fn from(e: ChangeError) -> Self {
        berth_store::StoreError::invalid(format!("--change {:?}", e.change), e.problem.to_string())
    }
}

/// Apply `changes` in order to `config` (the image config's `config` object); each sees the
/// environment the ones before it left.
pub fn apply_changes(
    config: &mut Map<String, Value>,
    changes: &[String],
) -> Result<(), ChangeError> {
    let mut stage = StageConfig {
        config: std::mem::take(config),
        cmd_set: false,
        author: None,
    };
    let applied = changes.iter().try_for_each(|c| {
        apply_one(&mut stage, c).map_err(|problem| ChangeError {
            change: c.clone(),
            problem,
        })
    });
    *config = stage.config;
    applied
}

fn apply_one(stage: &mut StageConfig, change: &str) -> Result<(), ChangeProblem> {
    // Docker refuses the instruction before it reads its arguments.
    if let Some(word) = change.split_whitespace().next()
        && !Keyword::parse(word).is_some_and(|k| VALID.contains(&k))
    {
        return Err(ChangeProblem::NotValid {
            keyword: word.to_ascii_lowercase(),
        });
    }
    let df = parse_instructions(change).map_err(|e| ChangeProblem::Syntax(e.kind))?;
    let expanded = expand_in_env(&df, stage.env()).map_err(|e| match e {
        PlanError::Instruction { message, .. } => ChangeProblem::Expand(message),
        other => ChangeProblem::Expand(other.to_string()),
    })?;
    for ins in expanded {
        match &ins.command {
            Command::Env(kvs) => {
                for kv in kvs {
                    stage.set_env(&kv.key, &kv.value);
                }
            }
            Command::Label(kvs) => {
                for kv in kvs {
                    stage.add_label(&kv.key, &kv.value);
                }
            }
            Command::Expose(ports) => {
                stage.expose(ports).map_err(ChangeProblem::Value)?;
            }
            Command::Volume(v) => {
                stage.add_volumes(v).map_err(ChangeProblem::Value)?;
            }
            Command::User(u) => stage.set_str("User", u),
            Command::Stopsignal(s) => stage.set_str("StopSignal", s),
            Command::Cmd(c) => {
                stage.set_cmd(c);
            }
            Command::Entrypoint(c) => {
                stage.set_entrypoint(c);
            }
            Command::Healthcheck(h) => {
                stage.set_healthcheck(h);
            }
            Command::Onbuild(o) => stage.add_onbuild(&o.expression),
            Command::Workdir(p) => {
                stage.set_workdir(p);
            }
            // Refused above; a line the keyword check did not see (a change holding several).
            _ => {
                return Err(ChangeProblem::NotValid {
                    keyword: ins.keyword().to_string().to_ascii_lowercase(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn apply_to(mut m: Map<String, Value>, ch: &[&str]) -> Result<Map<String, Value>, ChangeError> {
        apply_changes(
            &mut m,
            &ch.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )?;
        Ok(m)
    }

    fn apply(ch: &[&str]) -> Result<Map<String, Value>, ChangeError> {
        apply_to(Map::new(), ch)
    }

    #[test]
    fn cmd_forms() {
        let m = apply(&[r#"CMD ["sh", "-c", "echo hi"]"#]).unwrap();
        assert_eq!(m["Cmd"], json!(["sh", "-c", "echo hi"]));
        let m = apply(&["CMD echo hi there"]).unwrap();
        assert_eq!(m["Cmd"], json!(["/bin/sh", "-c", "echo hi there"]));
        let m = apply(&["cmd [not json"]).unwrap();
        assert_eq!(m["Cmd"], json!(["/bin/sh", "-c", "[not json"]));
    }

    #[test]
    fn env_label_expose_user_workdir() {
        let m = apply(&[
            r#"ENV A=1 B="two words""#,
            "ENV C three four",
            "ENV A=9",
            r#"LABEL org.x="y z""#,
            "EXPOSE 80 53/udp 8000-8001",
            "USER app:app",
            "WORKDIR /srv",
            "WORKDIR data",
            "VOLUME /data /cache",
            "STOPSIGNAL SIGINT",
        ])
        .unwrap();
        assert_eq!(m["Env"], json!(["A=9", "B=two words", "C=three four"]));
        assert_eq!(m["Labels"], json!({"org.x": "y z"}));
        assert_eq!(
            m["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}})
        );
        assert_eq!(m["User"], json!("app:app"));
        assert_eq!(m["WorkingDir"], json!("/srv/data"));
        assert_eq!(m["Volumes"], json!({"/data": {}, "/cache": {}}));
        assert_eq!(m["StopSignal"], json!("SIGINT"));
    }

    #[test]
    fn variables_expand_against_the_image_environment() {
        let mut image = Map::new();
        image.insert("Env".into(), json!(["PATH=/usr/bin:/bin", "HOME=/root"]));
        let m = apply_to(
            image,
            &[
                "ENV PATH=/x:$PATH",
                "ENV D=${HOME}/data",
                "WORKDIR $D",
                "LABEL home=$HOME",
                "CMD echo $HOME",
            ],
        )
        .unwrap();
        assert_eq!(
            m["Env"],
            json!(["PATH=/x:/usr/bin:/bin", "HOME=/root", "D=/root/data"])
        );
        assert_eq!(m["WorkingDir"], json!("/root/data"));
        assert_eq!(m["Labels"], json!({"home": "/root"}));
        // CMD is not expanded (the shell does that when it runs).
        assert_eq!(m["Cmd"], json!(["/bin/sh", "-c", "echo $HOME"]));
    }

    #[test]
    fn entrypoint_resets_only_an_inherited_cmd() {
        let m = apply(&[r#"CMD ["-v"]"#, r#"ENTRYPOINT ["/bin/app"]"#]).unwrap();
        assert_eq!(m["Cmd"], json!(["-v"]));
        assert_eq!(m["Entrypoint"], json!(["/bin/app"]));
        let mut inherited = Map::new();
        inherited.insert("Cmd".into(), json!(["sh"]));
        let m = apply_to(inherited, &[r#"ENTRYPOINT ["/bin/app"]"#]).unwrap();
        assert!(m.get("Cmd").is_none());
    }

    #[test]
    fn bad_changes_are_clear_errors() {
        for (c, frag) in [
            ("RUN echo", "run is not a valid change command"),
            ("FROM busybox", "from is not a valid change command"),
            ("BOGUS x", "bogus is not a valid change command"),
            ("EXPOSE 99999", "invalid containerPort"),
            ("ENV", "ENV"),
            ("USER", "USER"),
            (r#"ENV A="unterminated"#, "ENV"),
        ] {
            let e = apply(&[c]).unwrap_err();
            assert_eq!(e.change, c);
            let text = e.to_string();
            assert!(text.contains(frag), "{c:?}: {text}");
            assert!(text.starts_with("invalid --change"), "{c:?}: {text}");
        }
        // A failed change leaves the config as the ones before it made it.
        let mut m = Map::new();
        let r = apply_changes(&mut m, &["ENV A=1".to_string(), "RUN x".to_string()]);
        assert!(r.is_err());
        assert_eq!(m["Env"], json!(["A=1"]));
    }
}

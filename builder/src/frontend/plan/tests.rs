use super::*;
use crate::frontend::{Command, CommandLine, Run, Source, parse};

fn plan_with(src: &str, args: &[(&str, &str)], target: Option<&str>) -> Result<Plan, PlanError> {
    let df = parse(src).expect("test Dockerfile parses");
    let options = PlanOptions {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target: target.map(str::to_string),
        ..PlanOptions::default()
    };
    plan(&df, &options)
}

fn ok(src: &str) -> Plan {
    plan_with(src, &[], None).expect("plans")
}

/// The value of `key` in the first LABEL of the stage.
fn label(stage: &Stage, key: &str) -> String {
    for step in &stage.steps {
        if let Command::Label(kvs) = &step.instruction.command
            && let Some(kv) = kvs.iter().find(|kv| kv.key == key)
        {
            return kv.value.clone();
        }
    }
    panic!("no LABEL {key}");
}

fn env(stage: &Stage, key: &str) -> Option<String> {
    stage
        .env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

#[test]
fn global_args_are_for_from_lines_only_unless_redeclared() {
    let src = "ARG V=3.19\nFROM alpine:$V\nLABEL a=\"[$V]\"\nARG V\nLABEL b=\"[$V]\"\n";
    let p = ok(src);
    assert_eq!(p.stages[0].base, Base::Image("alpine:3.19".into()));
    let s = &p.stages[0];
    let labels: Vec<_> = s
        .steps
        .iter()
        .filter_map(|st| match &st.instruction.command {
            Command::Label(kv) => Some(kv[0].value.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(labels, vec!["[]", "[3.19]"]);
    assert_eq!(p.global_args, vec![("V".to_string(), "3.19".to_string())]);
}

#[test]
fn build_args_override_defaults_everywhere() {
    let src = "ARG V=1\nFROM alpine:$V\nARG V\nARG W=x\nLABEL v=$V w=$W\n";
    let p = plan_with(src, &[("V", "2"), ("W", "y")], None).unwrap();
    assert_eq!(p.stages[0].base, Base::Image("alpine:2".into()));
    assert_eq!(label(&p.stages[0], "v"), "2");
    assert_eq!(label(&p.stages[0], "w"), "y");
    assert!(p.unconsumed_build_args.is_empty());
}

#[test]
fn global_arg_defaults_see_earlier_global_args() {
    let p = ok("ARG A=1\nARG B=${A}.2\nFROM img:$B\n");
    assert_eq!(p.stages[0].base, Base::Image("img:1.2".into()));
}

#[test]
fn platform_args_are_automatic_in_from_and_declared_in_stages() {
    let src = "FROM --platform=$BUILDPLATFORM golang AS b\nLABEL before=\"[$TARGETARCH]\"\nARG TARGETARCH\nARG TARGETVARIANT\nLABEL a=$TARGETARCH v=$TARGETVARIANT\n";
    let p = ok(src);
    assert_eq!(p.stages[0].platform.as_deref(), Some("linux/amd64"));
    assert_eq!(label(&p.stages[0], "before"), "[]");
    assert_eq!(label(&p.stages[0], "a"), "amd64");
    let df = parse(src).unwrap();
    let options = PlanOptions {
        platform: Some("linux/arm64/v8".into()),
        ..PlanOptions::default()
    };
    let p = plan(&df, &options).unwrap();
    assert_eq!(label(&p.stages[0], "a"), "arm64");
    assert_eq!(label(&p.stages[0], "v"), "v8");
    assert_eq!(
        p.stages[0].platform.as_deref(),
        Some("linux/amd64"),
        "BUILDPLATFORM is the host"
    );
}

#[test]
fn proxy_args_reach_run_undeclared_and_are_never_unconsumed() {
    let src = "FROM alpine\nARG DECLARED\nRUN env\n";
    let p = plan_with(
        src,
        &[
            ("HTTP_PROXY", "http://p:3128"),
            ("DECLARED", "1"),
            ("EXTRA", "x"),
        ],
        None,
    )
    .unwrap();
    let run = &p.stages[0].steps[1];
    assert!(
        run.args
            .contains(&("HTTP_PROXY".to_string(), "http://p:3128".to_string()))
    );
    assert!(
        run.args
            .contains(&("DECLARED".to_string(), "1".to_string()))
    );
    assert_eq!(p.unconsumed_build_args, vec!["EXTRA"]);
    assert_eq!(
        p.unconsumed_warning().unwrap(),
        "[Warning] One or more build-args [EXTRA] were not consumed"
    );
}

#[test]
fn args_declared_only_in_unused_stages_are_unconsumed() {
    let src = "FROM a AS one\nARG ONLY_ONE\nFROM b AS two\n";
    let p = plan_with(src, &[("ONLY_ONE", "1")], Some("two")).unwrap();
    assert_eq!(p.unconsumed_build_args, vec!["ONLY_ONE"]);
    let p = plan_with(src, &[("ONLY_ONE", "1")], Some("one")).unwrap();
    assert!(p.unconsumed_build_args.is_empty());
}

#[test]
fn env_wins_over_arg_and_env_values_expand_before_applying() {
    let p = ok("FROM a\nARG X=arg\nENV X=env\nLABEL x=$X\nENV a=1\nENV a=2 b=$a\n");
    assert_eq!(label(&p.stages[0], "x"), "env");
    assert_eq!(env(&p.stages[0], "a").as_deref(), Some("2"));
    assert_eq!(env(&p.stages[0], "b").as_deref(), Some("1"));
}

#[test]
fn legacy_env_form_and_quotes() {
    let p = ok("FROM a\nENV PATH /opt/bin:$PATH\nENV Q=\"a b\" R='$x' S=a\\ b\n");
    let s = &p.stages[0];
    assert_eq!(env(s, "PATH").as_deref(), Some("/opt/bin:"));
    assert_eq!(env(s, "Q").as_deref(), Some("a b"));
    assert_eq!(env(s, "R").as_deref(), Some("$x"));
    assert_eq!(env(s, "S").as_deref(), Some("a b"));
}

#[test]
fn run_cmd_entrypoint_are_not_expanded() {
    let p = ok("FROM a\nENV X=1\nRUN echo $X\nCMD [\"echo\", \"$X\"]\nWORKDIR /w/$X\n");
    let s = &p.stages[0];
    assert_eq!(
        s.steps[1].instruction.command,
        Command::Run(Run {
            command: CommandLine::Shell("echo $X".into()),
            mount_specs: vec![],
            mounts: vec![],
            network: None,
            security: None,
        })
    );
    assert_eq!(
        s.steps[2].instruction.command,
        Command::Cmd(CommandLine::Exec(vec!["echo".into(), "$X".into()]))
    );
    assert_eq!(
        s.steps[3].instruction.command,
        Command::Workdir("/w/1".into())
    );
}

#[test]
fn copy_expose_volume_user_are_expanded() {
    let src = "FROM a\nARG P=\"80 443\"\nARG D=/app\nARG U=app\nCOPY --chown=$U:$U --chmod=755 src/${U}.txt $D/\nEXPOSE $P 8080/tcp\nVOLUME $D/data\nUSER $U\nSTOPSIGNAL SIG${U}\n";
    let p = ok(src);
    let cmds: Vec<&Command> = p.stages[0]
        .steps
        .iter()
        .map(|s| &s.instruction.command)
        .collect();
    let Command::Copy(c) = cmds[3] else {
        panic!("COPY")
    };
    assert_eq!(c.sources, vec![Source::Path("src/app.txt".into())]);
    assert_eq!(c.dest, "/app/");
    assert_eq!(c.chown.as_deref(), Some("app:app"));
    assert_eq!(
        cmds[4],
        &Command::Expose(vec!["80".into(), "443".into(), "8080/tcp".into()])
    );
    assert_eq!(cmds[5], &Command::Volume(vec!["/app/data".into()]));
    assert_eq!(cmds[6], &Command::User("app".into()));
    assert_eq!(cmds[7], &Command::Stopsignal("SIGapp".into()));
}

#[test]
fn run_mounts_are_expanded_and_typed() {
    let src = "FROM a AS deps\nFROM b\nARG CACHE=/root/.cache\nARG SRC=deps\nRUN --mount=type=cache,target=$CACHE,id=c --mount=from=$SRC,target=/d make\n";
    let p = ok(src);
    let Command::Run(run) = &p.stages[1].steps[2].instruction.command else {
        panic!("RUN")
    };
    assert_eq!(run.mounts.len(), 2);
    assert_eq!(run.mounts[0].target, "/root/.cache");
    assert_eq!(run.mounts[1].from.as_deref(), Some("deps"));
    assert_eq!(p.stages[1].depends_on, vec![0]);
    assert!(p.stages[0].used);
}

#[test]
fn stages_target_and_unused() {
    let src = "\
FROM golang AS build
RUN go build
FROM alpine AS tools
FROM build AS test
FROM scratch AS final
COPY --from=build /out /
COPY --from=1 /bin /bin
COPY --from=nginx:1 /etc/nginx /etc/nginx
";
    let p = ok(src);
    assert_eq!(p.target, 3);
    let names: Vec<_> = p
        .stages
        .iter()
        .map(|s| (s.name.clone().unwrap(), s.used))
        .collect();
    assert_eq!(
        names,
        vec![
            ("build".into(), true),
            ("tools".into(), true),
            ("test".into(), false),
            ("final".into(), true)
        ]
    );
    assert_eq!(p.stages[2].base, Base::Stage(0));
    assert_eq!(p.stages[3].base, Base::Scratch);
    assert_eq!(p.stages[3].depends_on, vec![0, 1]);
    assert_eq!(p.stages[3].images, vec!["nginx:1"]);

    let p = plan_with(src, &[], Some("TEST")).unwrap();
    assert_eq!(p.target, 2);
    let used: Vec<bool> = p.stages.iter().map(|s| s.used).collect();
    assert_eq!(used, vec![true, false, true, false]);

    let e = plan_with(src, &[], Some("nope")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "target stage \"nope\" could not be found; the stages are: build, tools, test, final"
    );
}

#[test]
fn stage_env_is_inherited_by_a_child_stage() {
    let p = ok("FROM a AS base\nENV GOPATH=/go\nFROM base\nWORKDIR $GOPATH/src\n");
    assert_eq!(
        p.stages[1].steps[0].instruction.command,
        Command::Workdir("/go/src".into())
    );
}

#[test]
fn image_env_is_used_when_known() {
    let df = parse("FROM golang:1\nWORKDIR $GOPATH/src\n").unwrap();
    let mut options = PlanOptions::default();
    options
        .image_env
        .insert("golang:1".into(), vec![("GOPATH".into(), "/go".into())]);
    let p = plan(&df, &options).unwrap();
    assert_eq!(
        p.stages[0].steps[0].instruction.command,
        Command::Workdir("/go/src".into())
    );
}

#[test]
fn a_stage_named_like_its_image_is_not_its_own_base() {
    let p = ok("FROM ubuntu AS ubuntu\nFROM UBUNTU\n");
    assert_eq!(p.stages[0].base, Base::Image("ubuntu".into()));
    assert_eq!(p.stages[1].base, Base::Stage(0));
}

#[test]
fn bad_references_are_errors_with_lines() {
    let e = plan_with("FROM a\nCOPY --from=0 / /\n", &[], None).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Dockerfile:2:1: invalid from flag value 0"),
        "{e}"
    );
    let e = plan_with("FROM a AS x\nCOPY --from=x / /\n", &[], None).unwrap_err();
    assert!(e.to_string().contains("circular dependency"), "{e}");
    let e = plan_with("FROM a AS x\nCOPY --from=y / /\nFROM x AS y\n", &[], None).unwrap_err();
    assert!(e.to_string().contains("circular dependency"), "{e}");
    let e = plan_with("ARG IMG\nFROM $IMG\n", &[], None).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Dockerfile:2:1: base name ($IMG) should not be blank"),
        "{e}"
    );
    assert!(plan_with("ARG IMG\nFROM $IMG\n", &[("IMG", "alpine")], None).is_ok());
}

#[test]
fn expansion_errors_count_only_in_needed_stages() {
    let src = "FROM a AS broken\nWORKDIR ${X:?must be set}\nFROM b AS fine\n";
    let e = plan_with(src, &[], Some("broken")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile:2:1: WORKDIR: failed to process \"${X:?must be set}\": X: must be set"
    );
    assert!(plan_with(src, &[], Some("fine")).is_ok());
}

#[test]
fn flag_problems_surface_from_the_plan() {
    let df = parse("FROM a\nCOPY --user=me a b\n").unwrap();
    let e = plan(&df, &PlanOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Dockerfile:2:1: COPY: unknown flag: --user"),
        "{e}"
    );
    let df = parse("FROM a\nRUN --mount=type=cache,target=/c,z true\n").unwrap();
    assert!(plan(&df, &PlanOptions::default()).is_err());
}

#[test]
fn required_args() {
    let src = "FROM a\nARG --required TOKEN\n";
    let e = plan_with(src, &[], None).unwrap_err();
    assert!(e.to_string().contains("ARG TOKEN is required"), "{e}");
    assert!(plan_with(src, &[("TOKEN", "t")], None).is_ok());
}

#[test]
fn backtick_escape_applies_to_expansion() {
    let p = ok("# escape=`\nFROM a\nENV P=C:\\dir D=`$HOME\n");
    assert_eq!(env(&p.stages[0], "P").as_deref(), Some("C:\\dir"));
    assert_eq!(env(&p.stages[0], "D").as_deref(), Some("$HOME"));
}

#[test]
fn copy_heredoc_content_is_expanded_unless_quoted() {
    let src = "FROM a\nARG NAME=world\nCOPY <<A <<'B' /d/\nhello \"$NAME\"\nA\nraw $NAME\nB\n";
    let p = ok(src);
    let Command::Copy(c) = &p.stages[0].steps[1].instruction.command else {
        panic!("COPY")
    };
    let contents: Vec<String> = c
        .sources
        .iter()
        .map(|s| match s {
            Source::Heredoc(h) => h.content.clone(),
            Source::Path(p) => p.clone(),
        })
        .collect();
    assert_eq!(contents, vec!["hello \"world\"\n", "raw $NAME\n"]);
}

#[test]
fn onbuild_triggers_run_first_at_the_from_line() {
    let df = parse("FROM base:1\nARG X=1\nRUN echo own\n").unwrap();
    let mut options = PlanOptions::default();
    options.image_onbuild.insert(
        "base:1".into(),
        vec!["COPY --from=tools:2 /t /t".into(), "ENV T=$X".into()],
    );
    let p = plan(&df, &options).unwrap();
    let steps = &p.stages[0].steps;
    assert_eq!(steps.len(), 4);
    assert_eq!(
        steps[0].instruction.original,
        "ONBUILD COPY --from=tools:2 /t /t"
    );
    assert_eq!(steps[0].instruction.start_line, 1);
    // A trigger's --from image becomes one the stage reads.
    assert_eq!(p.stages[0].images, vec!["base:1", "tools:2"]);
    // Expanded in the stage's scope, before the stage's own ARG.
    assert_eq!(env(&p.stages[0], "T").as_deref(), Some(""));

    for (t, want) in [
        ("ONBUILD RUN x", "Chaining ONBUILD"),
        ("FROM x", "FROM isn't allowed as an ONBUILD trigger"),
        (
            "MAINTAINER me",
            "MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        ("RUNN x", "unknown instruction"),
    ] {
        options
            .image_onbuild
            .insert("base:1".into(), vec![t.into()]);
        let e = plan(&df, &options).unwrap_err().to_string();
        assert!(
            e.starts_with("Dockerfile:1:") && e.contains(want),
            "{t}: {e}"
        );
    }
}

#[test]
fn a_stage_runs_its_base_stages_onbuild_instructions() {
    let p = ok("FROM scratch AS a\nONBUILD LABEL from=a\nFROM a\nLABEL own=1\n");
    assert_eq!(label(&p.stages[1], "from"), "a");
    assert_eq!(p.stages[1].steps.len(), 2);
    assert!(p.stages[0].steps.len() == 1);
}

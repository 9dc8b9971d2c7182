use super::*;
use std::time::Duration;

fn one(src: &str) -> Instruction {
    let df = parse(&format!("FROM base\n{src}")).expect("parses");
    df.instructions[1].clone()
}

fn err(src: &str) -> ParseError {
    parse(src).expect_err("must be rejected")
}

#[test]
fn from_forms() {
    let df = parse("ARG V=1\nFROM --platform=linux/arm64 img:$V AS Build\nFROM scratch\n").unwrap();
    assert_eq!(df.instructions.len(), 3);
    assert_eq!(
        df.instructions[1].command,
        Command::From(From {
            image: "img:$V".into(),
            name: Some("build".into()),
            platform: Some("linux/arm64".into()),
        })
    );
    assert!(parse("FROM a AS 1x\n").is_err());
    assert!(parse("FROM a b\n").is_err());
    assert!(parse("FROM\n").is_err());
}

#[test]
fn run_shell_exec_and_flags() {
    let i =
        one("RUN --network=none --security=insecure --mount=type=cache,target=/c apt-get update");
    let Command::Run(r) = &i.command else {
        panic!()
    };
    assert_eq!(r.command, CommandLine::Shell("apt-get update".into()));
    assert_eq!(r.network, Some(Network::None));
    assert_eq!(r.security, Some(Security::Insecure));
    assert_eq!(r.mounts[0].target, "/c");
    let i = one("RUN [\"/bin/sh\", \"-c\", \"echo hi\"]");
    let Command::Run(r) = &i.command else {
        panic!()
    };
    assert_eq!(
        r.command,
        CommandLine::Exec(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
    );
    // Not valid JSON: shell form.
    let i = one("RUN [\"a\", b]");
    let Command::Run(r) = &i.command else {
        panic!()
    };
    assert_eq!(r.command, CommandLine::Shell("[\"a\", b]".into()));
    assert!(parse("FROM a\nRUN [1, 2]\n").is_err());
    assert!(parse("FROM a\nRUN\n").is_err());
}

#[test]
fn env_label_arg() {
    assert_eq!(
        one("ENV A=1 B=\"two words\"").command,
        Command::Env(vec![
            KeyValue {
                key: "A".into(),
                value: "1".into()
            },
            KeyValue {
                key: "B".into(),
                value: "\"two words\"".into()
            },
        ])
    );
    assert_eq!(
        one("ENV PATH /usr/bin:$PATH more").command,
        Command::Env(vec![KeyValue {
            key: "PATH".into(),
            value: "/usr/bin:$PATH more".into()
        }])
    );
    assert_eq!(
        one("LABEL k v w").command,
        Command::Label(vec![KeyValue {
            key: "k".into(),
            value: "v w".into()
        }])
    );
    assert_eq!(
        one("ARG A B=2 C=").command,
        Command::Arg(Arg {
            args: vec![
                ArgDecl {
                    name: "A".into(),
                    default: None
                },
                ArgDecl {
                    name: "B".into(),
                    default: Some("2".into())
                },
                ArgDecl {
                    name: "C".into(),
                    default: Some(String::new())
                },
            ],
            required: false,
        })
    );
    assert!(parse("FROM a\nENV A\n").is_err());
    assert!(parse("FROM a\nENV A=1 B\n").is_err());
    assert!(parse("FROM a\nENV =1\n").is_err());
    assert!(parse("FROM a\nARG\n").is_err());
}

#[test]
fn copy_and_add() {
    let i =
        one("COPY --from=build --chown=1:1 --chmod=644 --link --parents --exclude=*.md a b /dst/");
    let Command::Copy(c) = &i.command else {
        panic!()
    };
    assert_eq!(
        c.sources,
        vec![Source::Path("a".into()), Source::Path("b".into())]
    );
    assert_eq!(c.dest, "/dst/");
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("1:1"));
    assert_eq!(c.chmod.as_deref(), Some("644"));
    assert!(c.link && c.parents);
    assert_eq!(c.exclude, vec!["*.md"]);
    let i = one("COPY [\"a b\", \"/c d/\"]");
    let Command::Copy(c) = &i.command else {
        panic!()
    };
    assert!(c.json);
    assert_eq!(c.sources, vec![Source::Path("a b".into())]);
    let i = one("ADD --checksum=sha256:abc --keep-git-dir=true https://x/y.tar /y");
    let Command::Add(c) = &i.command else {
        panic!()
    };
    assert_eq!(c.checksum.as_deref(), Some("sha256:abc"));
    assert!(c.keep_git_dir);
    let e = err("FROM a\nCOPY onlyone\n");
    assert_eq!(e.line, 2);
    assert!(
        e.to_string().contains("requires at least two arguments"),
        "{e}"
    );
}

#[test]
fn copy_heredoc_sources() {
    let df = parse("FROM a\nCOPY <<one <<'two' /dest/\nhello $X\none\nraw $X\ntwo\n").unwrap();
    let ins = &df.instructions[1];
    assert_eq!((ins.start_line, ins.end_line), (2, 6));
    let Command::Copy(c) = &ins.command else {
        panic!()
    };
    let Source::Heredoc(h1) = &c.sources[0] else {
        panic!()
    };
    let Source::Heredoc(h2) = &c.sources[1] else {
        panic!()
    };
    assert_eq!(
        (h1.name.as_str(), h1.content.as_str(), h1.expand),
        ("one", "hello $X\n", true)
    );
    assert_eq!(
        (h2.name.as_str(), h2.content.as_str(), h2.expand),
        ("two", "raw $X\n", false)
    );
    assert!(
        parse("FROM a\nCOPY x <<EOF\nbody\nEOF\n").is_err(),
        "heredoc destination"
    );
}

#[test]
fn run_heredocs_several_and_tab_stripped() {
    let df = parse("FROM a\nRUN <<-A cat > /f && cat <<B\n\t\tline\n\tA\nb\nB\nCMD x\n").unwrap();
    let run = &df.instructions[1];
    assert_eq!(run.heredocs.len(), 2);
    assert_eq!(run.heredocs[0].data(), "line\n");
    assert_eq!(run.heredocs[1].content, "b\n");
    assert_eq!(run.end_line, 6);
    assert_eq!(df.instructions[2].start_line, 7);
}

#[test]
fn onbuild() {
    let i = one("ONBUILD RUN echo hi");
    let Command::Onbuild(o) = &i.command else {
        panic!()
    };
    assert_eq!(o.expression, "RUN echo hi");
    assert_eq!(o.trigger.as_ref().unwrap().keyword(), Keyword::Run);
    let i = one("onbuild copy --from=x a b");
    let Command::Onbuild(o) = &i.command else {
        panic!()
    };
    let Command::Copy(c) = &o.trigger.as_ref().unwrap().command else {
        panic!()
    };
    assert_eq!(c.from.as_deref(), Some("x"));
    for bad in [
        "ONBUILD ONBUILD RUN x",
        "ONBUILD FROM a",
        "ONBUILD MAINTAINER me",
        "ONBUILD",
    ] {
        assert!(parse(&format!("FROM a\n{bad}\n")).is_err(), "{bad}");
    }
    // A trigger BuildKit would only read later is kept, with what is wrong with it.
    let Command::Onbuild(o) = one("ONBUILD RUNN x").command else {
        panic!()
    };
    assert!(o.trigger.unwrap_err().contains("unknown instruction: RUNN"));
}

#[test]
fn healthcheck() {
    assert_eq!(
        one("HEALTHCHECK NONE").command,
        Command::Healthcheck(Healthcheck::None)
    );
    let i = one(
        "HEALTHCHECK --interval=30s --timeout=5s --start-period=1m --start-interval=2s --retries=3 CMD curl -f http://localhost/",
    );
    assert_eq!(
        i.command,
        Command::Healthcheck(Healthcheck::Cmd {
            command: CommandLine::Shell("curl -f http://localhost/".into()),
            interval: Some(Duration::from_secs(30)),
            timeout: Some(Duration::from_secs(5)),
            start_period: Some(Duration::from_secs(60)),
            start_interval: Some(Duration::from_secs(2)),
            retries: Some(3),
        })
    );
    let i = one("HEALTHCHECK CMD [\"/bin/check\"]");
    let Command::Healthcheck(Healthcheck::Cmd { command, .. }) = &i.command else {
        panic!()
    };
    assert_eq!(command, &CommandLine::Exec(vec!["/bin/check".into()]));
    for bad in [
        "HEALTHCHECK",
        "HEALTHCHECK NONE x",
        "HEALTHCHECK CMD",
        "HEALTHCHECK FOO bar",
    ] {
        assert!(parse(&format!("FROM a\n{bad}\n")).is_err(), "{bad}");
    }
    // A bad duration is the build's error, reported by the plan.
    let df = parse("FROM a\nHEALTHCHECK --interval=soon CMD true\n").unwrap();
    assert!(!df.instructions[1].flag_errors.is_empty());
}

#[test]
fn other_instructions() {
    assert_eq!(
        one("SHELL [\"powershell\", \"-c\"]").command,
        Command::Shell(vec!["powershell".into(), "-c".into()])
    );
    assert!(parse("FROM a\nSHELL /bin/bash -c\n").is_err());
    assert_eq!(
        one("CMD echo $HOME").command,
        Command::Cmd(CommandLine::Shell("echo $HOME".into()))
    );
    assert_eq!(
        one("ENTRYPOINT []").command,
        Command::Entrypoint(CommandLine::Exec(vec![]))
    );
    assert_eq!(
        one("EXPOSE 80/tcp 443").command,
        Command::Expose(vec!["80/tcp".into(), "443".into()])
    );
    assert_eq!(
        one("VOLUME [\"/a\", \"/b\"]").command,
        Command::Volume(vec!["/a".into(), "/b".into()])
    );
    assert_eq!(
        one("VOLUME /a /b").command,
        Command::Volume(vec!["/a".into(), "/b".into()])
    );
    assert_eq!(one("USER app:app").command, Command::User("app:app".into()));
    assert_eq!(
        one("WORKDIR /my dir").command,
        Command::Workdir("/my dir".into())
    );
    assert_eq!(
        one("STOPSIGNAL SIGTERM").command,
        Command::Stopsignal("SIGTERM".into())
    );
    assert_eq!(
        one("MAINTAINER Jane <j@x>").command,
        Command::Maintainer("Jane <j@x>".into())
    );
    assert_eq!(one("run echo lower").keyword(), Keyword::Run);
    for bad in [
        "USER",
        "WORKDIR",
        "EXPOSE",
        "VOLUME",
        "STOPSIGNAL",
        "MAINTAINER",
        "LABEL",
        "VOLUME [\"\"]",
    ] {
        assert!(parse(&format!("FROM a\n{bad}\n")).is_err(), "{bad}");
    }
}

#[test]
fn directives() {
    let df =
        parse("# syntax=docker/dockerfile:1\n#CHECK=skip=all\n# escape=`\nFROM a\nRUN a `\n  b\n")
            .unwrap();
    assert_eq!(df.directives.syntax(), Some("docker/dockerfile:1"));
    assert_eq!(df.directives.check(), Some("skip=all"));
    assert_eq!(df.escape(), '`');
    assert_eq!(
        (df.instructions[1].start_line, df.instructions[1].end_line),
        (5, 6)
    );
    // After an instruction or a plain comment, it is only a comment.
    let df = parse("FROM a\n# escape=`\nRUN a `\n").unwrap();
    assert_eq!(df.escape(), '\\');
    let df = parse("\n# escape=`\nFROM a\n").unwrap();
    assert_eq!(df.escape(), '\\', "a blank line ends the directives");
    let e = err("# escape=`\n# ESCAPE=`\nFROM a\n");
    assert_eq!(e.line, 2);
    assert!(
        e.to_string().contains("only one escape parser directive"),
        "{e}"
    );
    assert!(
        err("# escape=x\nFROM a\n")
            .to_string()
            .contains("invalid escape token")
    );
}

#[test]
fn errors_have_location_and_advice() {
    let e = err("FROM a\n\n  RUNN echo\n");
    assert_eq!(
        e.to_string(),
        "Dockerfile:3:3: unknown instruction: RUNN (did you mean RUN?)"
    );
    let e = err("WRONG a\n");
    assert_eq!(e.to_string(), "Dockerfile:1:1: unknown instruction: WRONG");
    let e = err("# just a comment\n\n");
    assert_eq!(e.kind, ParseErrorKind::NoInstructions);
    let e = err("ARG A\n");
    assert_eq!(e.kind, ParseErrorKind::NoFrom);
    let e = err("ARG A\nRUN x\nFROM a\n");
    assert_eq!(
        e.to_string(),
        "Dockerfile:2:1: RUN before the first FROM: only ARG may come before FROM; add a FROM line above it"
    );
    let e = err("FROM a\nRUN <<EOF\nnever closed\n");
    assert_eq!(e.line, 2);
    assert!(e.to_string().contains("unterminated heredoc"), "{e}");
    let e = err("FROM a\nRUN x\n\\\n");
    assert_eq!(e.kind, ParseErrorKind::EmptyContinuation);
}

#[test]
fn bom_crlf_and_empty_continuation_warning() {
    let df = parse("\u{feff}FROM a\r\nRUN a \\\r\n\r\n  b\r\n").unwrap();
    assert_eq!(df.instructions[1].args, "a   b");
    assert_eq!(df.instructions[1].end_line, 4);
    assert_eq!(df.warnings.len(), 1);
}

mod no_panic {
    use super::super::plan::{PlanOptions, plan};
    use super::parse;
    use proptest::prelude::*;

    fn line() -> impl Strategy<Value = String> {
        let keyword = prop::sample::select(vec![
            "FROM",
            "RUN",
            "COPY",
            "ADD",
            "ENV",
            "ARG",
            "LABEL",
            "ONBUILD",
            "HEALTHCHECK",
            "SHELL",
            "CMD",
            "EXPOSE",
            "VOLUME",
            "USER",
            "WORKDIR",
            "STOPSIGNAL",
            "MAINTAINER",
            "ENTRYPOINT",
            "# escape=`",
            "# syntax=x",
            "",
            "\\",
            "`",
            "EOF",
            "<<EOF",
            "#",
        ]);
        let word = prop::sample::select(vec![
            "a",
            "$A",
            "${A:-b}",
            "${A#*}",
            "${A/x/y}",
            "${",
            "\"",
            "'",
            "\\",
            "`",
            "<<EOF",
            "<<-'E'",
            "--from=0",
            "--mount=type=cache,target=/x",
            "--mount=",
            "[\"x\"]",
            "[1]",
            "AS",
            "x",
            "=",
            "A=1",
            "--platform=$P",
            "NONE",
            "CMD",
            "--",
            "\t",
            "0",
        ]);
        (keyword, prop::collection::vec(word, 0..6))
            .prop_map(|(k, ws)| format!("{k} {}", ws.join(" ")))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let src = String::from_utf8_lossy(&bytes);
            if let Ok(df) = parse(&src) {
                let _ = plan(&df, &PlanOptions::default());
            }
        }

        #[test]
        fn random_dockerfile_lines_never_panic(lines in prop::collection::vec(line(), 1..12)) {
            let src = format!("FROM a AS s\n{}\n", lines.join("\n"));
            if let Ok(df) = parse(&src) {
                let options = PlanOptions {
                    target: Some("s".into()),
                    ..PlanOptions::default()
                };
                let _ = plan(&df, &options);
            }
        }
    }
}

//! The typed instructions of a Dockerfile, as written (before variable expansion): what each
//! keyword takes, its flags, and where it sits in the file.

use std::time::Duration;

use super::heredoc::Heredoc;
use super::mount::Mount;

/// An instruction keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Keyword {
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
}

impl Keyword {
    /// The keyword from its name, case-insensitively.
    pub fn parse(name: &str) -> Option<Keyword> {
        Some(match name.to_ascii_lowercase().as_str() {
            "add" => Keyword::Add,
            "arg" => Keyword::Arg,
            "cmd" => Keyword::Cmd,
            "copy" => Keyword::Copy,
            "entrypoint" => Keyword::Entrypoint,
            "env" => Keyword::Env,
            "expose" => Keyword::Expose,
            "from" => Keyword::From,
            "healthcheck" => Keyword::Healthcheck,
            "label" => Keyword::Label,
            "maintainer" => Keyword::Maintainer,
            "onbuild" => Keyword::Onbuild,
            "run" => Keyword::Run,
            "shell" => Keyword::Shell,
            "stopsignal" => Keyword::Stopsignal,
            "user" => Keyword::User,
            "volume" => Keyword::Volume,
            "workdir" => Keyword::Workdir,
            _ => return None,
        })
    }

    /// The upper-case name (`RUN`).
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::Add => "ADD",
            Keyword::Arg => "ARG",
            Keyword::Cmd => "CMD",
            Keyword::Copy => "COPY",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Env => "ENV",
            Keyword::Expose => "EXPOSE",
            Keyword::From => "FROM",
            Keyword::Healthcheck => "HEALTHCHECK",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::Onbuild => "ONBUILD",
            Keyword::Run => "RUN",
            Keyword::Shell => "SHELL",
            Keyword::Stopsignal => "STOPSIGNAL",
            Keyword::User => "USER",
            Keyword::Volume => "VOLUME",
            Keyword::Workdir => "WORKDIR",
        }
    }
}

impl std::fmt::Display for Keyword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One instruction and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based first line (the keyword's line).
    pub start_line: usize,
    /// 1-based last line, continuation lines and heredoc bodies included.
    pub end_line: usize,
    /// 1-based column of the keyword.
    pub column: usize,
    /// The logical line: continuations joined, comment lines dropped.
    pub original: String,
    /// The flags as given (`--from=build`), quotes removed.
    pub flags: Vec<String>,
    /// The arguments after the flags, unexpanded.
    pub args: String,
    /// Heredocs read after the line.
    pub heredocs: Vec<Heredoc>,
    /// What the instruction does.
    pub command: Command,
    /// Unknown flags and bad flag values (including `--mount` specs). BuildKit's parser
    /// accepts these and the build rejects them, so [`parse`](super::parse) keeps them here
    /// and [`plan`](super::plan::plan) reports them.
    pub flag_errors: Vec<String>,
}

impl Instruction {
    /// The instruction's keyword.
    pub fn keyword(&self) -> Keyword {
        self.command.keyword()
    }
}

/// The typed meaning of an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell(Vec<String>),
    Env(Vec<KeyValue>),
    Arg(Arg),
    Label(Vec<KeyValue>),
    Maintainer(String),
    Expose(Vec<String>),
    User(String),
    Workdir(String),
    Volume(Vec<String>),
    Copy(Copy),
    Add(Copy),
    Onbuild(Onbuild),
    Healthcheck(Healthcheck),
    Stopsignal(String),
}

impl Command {
    /// The keyword this command is written with.
    pub fn keyword(&self) -> Keyword {
        match self {
            Command::From(_) => Keyword::From,
            Command::Run(_) => Keyword::Run,
            Command::Cmd(_) => Keyword::Cmd,
            Command::Entrypoint(_) => Keyword::Entrypoint,
            Command::Shell(_) => Keyword::Shell,
            Command::Env(_) => Keyword::Env,
            Command::Arg(_) => Keyword::Arg,
            Command::Label(_) => Keyword::Label,
            Command::Maintainer(_) => Keyword::Maintainer,
            Command::Expose(_) => Keyword::Expose,
            Command::User(_) => Keyword::User,
            Command::Workdir(_) => Keyword::Workdir,
            Command::Volume(_) => Keyword::Volume,
            Command::Copy(_) => Keyword::Copy,
            Command::Add(_) => Keyword::Add,
            Command::Onbuild(_) => Keyword::Onbuild,
            Command::Healthcheck(_) => Keyword::Healthcheck,
            Command::Stopsignal(_) => Keyword::Stopsignal,
        }
    }
}

/// `FROM [--platform=P] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The base: an image reference, `scratch`, or an earlier stage's name.
    pub image: String,
    /// The stage name, lower-cased.
    pub name: Option<String>,
    /// `--platform`.
    pub platform: Option<String>,
}

/// A command in shell form (run through the SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// The text given to the shell.
    Shell(String),
    /// argv.
    Exec(Vec<String>),
}

/// `RUN --network=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Default,
    None,
    Host,
}

/// `RUN --security=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Sandbox,
    Insecure,
}

/// `RUN [--mount=…] [--network=…] [--security=…] command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: CommandLine,
    /// The `--mount` values as written.
    pub mount_specs: Vec<String>,
    /// The mounts, typed. A mount whose spec uses variables is typed only after expansion
    /// (by the plan); before that it is missing here.
    pub mounts: Vec<Mount>,
    pub network: Option<Network>,
    pub security: Option<Security>,
}

/// A `key=value` of ENV or LABEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// One name of an ARG line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    /// The default, when `name=value` was given.
    pub default: Option<String>,
}

/// `ARG [--required] name[=default] …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    pub args: Vec<ArgDecl>,
    pub required: bool,
}

/// A COPY/ADD source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path (or URL / git address for ADD).
    Path(String),
    /// A heredoc: a file with this content.
    Heredoc(Heredoc),
}

/// COPY and ADD; the ADD-only fields stay empty for COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub sources: Vec<Source>,
    pub dest: String,
    /// Whether the arguments were a JSON array.
    pub json: bool,
    /// `--from` (COPY only): a stage name, stage index or image.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// `--parents` (COPY only).
    pub parents: bool,
    pub exclude: Vec<String>,
    /// `--checksum` (ADD only).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD only).
    pub keep_git_dir: bool,
    /// `--unpack` (ADD only), when given.
    pub unpack: Option<bool>,
}

/// `ONBUILD <instruction>`: a trigger recorded in the image for builds that start from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger as written (what the image config stores).
    pub expression: String,
    /// The trigger read as an instruction, or why it cannot be (which only matters when a
    /// later build runs it).
    pub trigger: Result<Box<Instruction>, String>,
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [options] CMD command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    None,
    Cmd {
        command: CommandLine,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

//! What a plan is made of: the options that shape it, its stages and steps, and why a
//! Dockerfile cannot be planned.

use std::collections::BTreeMap;

use crate::frontend::instruction::Instruction;

/// Options of a build that shape its plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--build-arg NAME=VALUE`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build; the last stage when `None`.
    pub target: Option<String>,
    /// `--platform` (`os/arch[/variant]`); `linux/amd64` when `None`.
    pub platform: Option<String>,
    /// The configured environment of base images, by reference as written in FROM after
    /// expansion, when the caller knows it (variables an image defines can then be used in
    /// its stage, as with BuildKit, which reads the image config first).
    pub image_env: BTreeMap<String, Vec<(String, String)>>,
    /// The `OnBuild` triggers of base images, by reference as in `image_env`: they run right
    /// after the FROM of a stage built on the image, as if written there.
    pub image_onbuild: BTreeMap<String, Vec<String>>,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An image reference, as written after expansion.
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// One instruction of a stage, expanded, with the build args in scope at that point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The instruction with its expandable parts expanded.
    pub instruction: Instruction,
    /// Declared build args with a value at this point, plus proxy args given on the command
    /// line: what a RUN here sees in its environment besides ENV.
    pub args: Vec<(String, String)>,
}

/// A build stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages (what `COPY --from=0` means).
    pub index: usize,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The FROM instruction, expanded.
    pub from: Instruction,
    pub base: Base,
    /// `FROM --platform=…`, expanded.
    pub platform: Option<String>,
    /// The instructions after FROM.
    pub steps: Vec<Step>,
    /// Stages this one reads from: its base, `COPY --from`, `RUN --mount=from=`.
    pub depends_on: Vec<usize>,
    /// Images this one reads from (its base and `--from` images).
    pub images: Vec<String>,
    /// Whether the target needs this stage.
    pub used: bool,
    /// ENV at the end of the stage (inherited from a base stage or `image_env`, then ENV).
    pub env: Vec<(String, String)>,
}

/// The build plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub stages: Vec<Stage>,
    /// Index of the stage to build.
    pub target: usize,
    /// Global ARGs with their values (only those that have one).
    pub global_args: Vec<(String, String)>,
    /// `--build-arg`s no ARG declares (Docker warns: "One or more build-args [...] were not
    /// consumed"); proxy args are never listed.
    pub unconsumed_build_args: Vec<String>,
    /// The target platform.
    pub platform: String,
}

impl Plan {
    /// The warning Docker prints for unconsumed build args, if any.
    pub fn unconsumed_warning(&self) -> Option<String> {
        (!self.unconsumed_build_args.is_empty()).then(|| {
            format!(
                "[Warning] One or more build-args [{}] were not consumed",
                self.unconsumed_build_args.join(" ")
            )
        })
    }
}

/// A Dockerfile that parses but cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found; the stages are: {available}")]
    UnknownTarget {
        target: String,
        /// The named stages, comma-separated.
        available: String,
    },
    /// An instruction that cannot be expanded or resolved.
    #[error("Dockerfile:{line}:{column}: {message}")]
    Instruction {
        line: usize,
        column: usize,
        message: String,
    },
}

/// Args that reach RUN without being declared and stay out of the image history.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

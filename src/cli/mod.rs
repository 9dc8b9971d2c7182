//! The command line: Docker's command and flag names, dispatched to the library crates.

mod build;
mod build_output;
mod build_sandbox;
mod container;
mod container_fs;
mod container_inspect;
mod container_ps;
mod format;
mod image;
mod network;
mod outfile;
mod progress;
mod registry;
mod remote;
mod setup;
mod system;
mod volume;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

// What every command does first, in its own file so that the commands do not import this one.
pub use setup::{init_logging, open_store};

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "A daemonless container toolchain: build images, host registries, run containers",
    propagate_version = true,
    help_template = "{about}\n\nUsage: {usage}\n\n{all-args}\n\nImage commands also live under `berth image`. Run `berth COMMAND --help` for more on a command."
)]
pub struct Cli {
    /// State root (images, snapshots, containers)
    #[arg(long, global = true, env = "BERTH_ROOT", default_value = berth_store::root::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Log level: trace, debug, info, warn, error (or RUST_LOG)
    #[arg(short = 'l', long)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Manage builds
    #[command(subcommand)]
    Builder(build::BuilderCommand),
    /// Manage images
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Manage berth's state
    #[command(subcommand)]
    System(system::SystemCommand),
    /// List images
    #[command(alias = "list")]
    Images(image::ListArgs),
    /// Import the contents of a tarball to create a filesystem image
    Import(image::ImportArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(image::TagArgs),
    /// Remove one or more images
    Rmi(image::RmArgs),
    /// Return low-level information on images
    Inspect(image::InspectArgs),
    /// Show the history of an image
    History(image::HistoryArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(image::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(image::LoadArgs),
    /// Run or manage an OCI registry
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Upload an image to a registry
    Push(remote::PushArgs),
    /// Download an image from a registry
    Pull(remote::PullArgs),
    /// Search a registry for images
    Search(remote::SearchArgs),
    /// Log in to a registry
    Login(remote::LoginArgs),
    /// Log out from a registry
    Logout(remote::LogoutArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(container::ContainerCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// List port mappings or a specific mapping for the container
    Port(network::PortArgs),
    /// Pause all processes within one or more containers
    Pause(container::PauseArgs),
    /// Unpause all processes within one or more containers
    Unpause(container::PauseArgs),
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(container::RunArgs),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(container::CreateArgs),
    /// Start one or more stopped containers
    Start(container::StartArgs),
    /// Stop one or more running containers
    Stop(container::StopArgs),
    /// Restart one or more containers
    Restart(container::StopArgs),
    /// Kill one or more running containers
    Kill(container::KillArgs),
    /// Remove one or more containers
    Rm(container::RmArgs),
    /// List containers
    Ps(container::PsArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(container::WaitArgs),
    /// Fetch the logs of a container
    Logs(container::LogsArgs),
    /// Execute a command in a running container
    Exec(container::ExecArgs),
    /// Rename a container
    Rename(container::RenameArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(container_fs::CpArgs),
    /// Export a container's filesystem as a tar archive
    Export(container_fs::ExportArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(container_fs::DiffArgs),
    /// Create a new image from a container's changes
    Commit(container_fs::CommitArgs),
    /// Display the running processes of a container
    Top(container_fs::TopArgs),
    #[command(name = "__supervise", hide = true)]
    Supervise(container::SuperviseArgs),
    #[command(name = "__build-run", hide = true)]
    BuildRun(build_sandbox::BuildRunArgs),
    #[command(name = "__sandbox-start", hide = true)]
    SandboxStart(container::SandboxStartArgs),
    /// Display system-wide information
    Info(system::InfoArgs),
    /// Show the berth version information
    Version(system::VersionArgs),
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let root = cli.root;
    match cli.command {
        Command::Build(a) => build::build(&root, a),
        Command::Builder(c) => build::builder(&root, c),
        Command::Image(c) => image::run(&root, c),
        Command::System(c) => system::run(&root, c),
        Command::Images(a) => image::list(&root, a),
        Command::Import(a) => image::import(&root, a),
        Command::Tag(a) => image::tag(&root, a),
        Command::Rmi(a) => image::rm(&root, a),
        Command::Inspect(a) => image::inspect(&root, a),
        Command::History(a) => image::history(&root, a),
        Command::Save(a) => image::save(&root, a),
        Command::Load(a) => image::load(&root, a),
        Command::Registry(c) => registry::run(&root, c),
        Command::Push(a) => remote::push(&root, a),
        Command::Pull(a) => remote::pull(&root, a),
        Command::Search(a) => remote::search(&root, a),
        Command::Login(a) => remote::login(a),
        Command::Logout(a) => remote::logout(a),
        Command::Container(c) => container::run_group(&root, c),
        Command::Volume(c) => volume::run(&root, c),
        Command::Network(c) => network::run(&root, c),
        Command::Port(a) => network::port(&root, a),
        Command::Pause(a) => container::pause(&root, a),
        Command::Unpause(a) => container::unpause(&root, a),
        Command::Run(a) => container::run(&root, a),
        Command::Create(a) => container::create(&root, a),
        Command::Start(a) => container::start(&root, a),
        Command::Stop(a) => container::stop(&root, a),
        Command::Restart(a) => container::restart(&root, a),
        Command::Kill(a) => container::kill(&root, a),
        Command::Rm(a) => container::rm(&root, a),
        Command::Ps(a) => container::ps(&root, a),
        Command::Wait(a) => container::wait(&root, a),
        Command::Logs(a) => container::logs(&root, a),
        Command::Exec(a) => container::exec(&root, a),
        Command::Rename(a) => container::rename(&root, a),
        Command::Cp(a) => container_fs::cp(&root, a),
        Command::Export(a) => container_fs::export(&root, a),
        Command::Diff(a) => container_fs::diff(&root, a),
        Command::Commit(a) => container_fs::commit(&root, a),
        Command::Top(a) => container_fs::top(&root, a),
        Command::Supervise(a) => container::supervise(&root, a),
        Command::BuildRun(a) => build_sandbox::build_run(&root, a),
        Command::SandboxStart(a) => container::sandbox_start(a),
        Command::Info(a) => system::info(&root, a),
        Command::Version(a) => system::version(a),
    }
}

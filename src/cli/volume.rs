//! `volume create|ls|inspect|rm|prune` (being written).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {}

pub fn run(_root: &Path, c: VolumeCommand) -> Result<ExitCode> {
    match c {}
}

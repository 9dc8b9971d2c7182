//! `berth registry …`: the OCI distribution server (being written).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Serve the OCI distribution API
    Serve,
}

pub fn run(_root: &Path, c: RegistryCommand) -> Result<ExitCode> {
    match c {
        RegistryCommand::Serve => bail!("berth registry serve is not implemented yet"),
    }
}

//! `push`, `pull`, `login`, `logout` (being written).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct PushArgs {
    /// NAME[:TAG]
    image: String,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// NAME[:TAG|@DIGEST]
    image: String,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry server
    server: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry server
    server: Option<String>,
}

pub fn push(_root: &Path, a: PushArgs) -> Result<ExitCode> {
    bail!("push {} : not implemented yet", a.image)
}
pub fn pull(_root: &Path, a: PullArgs) -> Result<ExitCode> {
    bail!("pull {}: not implemented yet", a.image)
}
pub fn login(a: LoginArgs) -> Result<ExitCode> {
    bail!("login {:?}: not implemented yet", a.server)
}
pub fn logout(a: LogoutArgs) -> Result<ExitCode> {
    bail!("logout {:?}: not implemented yet", a.server)
}

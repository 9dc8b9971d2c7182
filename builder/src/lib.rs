//! berth-builder: turns a Dockerfile and its build context into an image.
//!
//! [`frontend`] reads a Dockerfile exactly as BuildKit does (syntax, parser directives,
//! heredocs, the shell-word lexer and variable expansion, ARG scoping, stages and `--target`);
//! [`ignore`] implements `.dockerignore` matching. [`build::build`] executes a plan: metadata
//! instructions change the config, RUN runs through an [`exec::Executor`] (the CLI plugs the
//! runner's sandbox in), COPY/ADD/WORKDIR write into an overlay whose upper directory becomes
//! the layer, and every step is cached by content ([`cache`], [`context`]).

#![forbid(unsafe_code)]

mod base;
pub mod build;
pub mod cache;
pub mod cache_io;
pub mod change;
pub mod config;
pub mod context;
pub mod copy;
pub mod error;
pub mod exec;
pub mod fetch;
pub mod frontend;
mod fs_step;
pub mod ignore;
pub mod lint;
mod lock;
pub mod progress;
pub mod prune;
pub mod run_mounts;

pub use build::{BuildOptions, build};
pub use error::BuildError;
pub use exec::{ExecError, Executor, NetworkMode, RunMount, RunSpec};
pub use fs_step::{ScratchDir, scratch_dir};

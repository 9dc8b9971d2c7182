//! berth-runner: containers from images.
//!
//! A container is a directory `ROOT/containers/<id>/` holding its configuration (`config.json`,
//! Docker-shaped), its state (`state.json`), the image it was made from (`image`, which the store
//! reads to refuse removing an image in use), its filesystem (`upper/`, `work/`, mounted at
//! `rootfs/`), its runtime bundle (`bundle/config.json`) and its log. A detached container is
//! watched by a supervisor (berth re-executed); the sandbox that actually starts processes lives in
//! `sandbox`, the only module with `unsafe`.

// Unsafe code lives in one module, the sandbox (fork/exec around libcontainer); anything else
// that needs the kernel goes through rustix's safe calls.
#![deny(unsafe_code)]

pub mod bundle;
pub mod caps;
pub mod cgroups;
pub mod container;
pub mod copy;
pub mod error;
pub mod exec;
pub mod fsview;
pub mod logs;
pub mod names;
pub mod network;
pub mod persist;
pub mod process;
pub mod rootfs;
#[allow(unsafe_code)]
pub mod sandbox;
pub mod seccomp;
pub mod signal;
pub mod state;
pub mod stdio;
pub mod supervisor;
pub mod terminal;
pub mod top;
pub mod user;
pub mod volumes;

pub use container::{Container, Runner};
pub use error::{ErrorKind, Result, RunnerError};

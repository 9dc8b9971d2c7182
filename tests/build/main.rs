//! The build integration tests, one binary (issue 16: few binaries sharing
//! tests/common).

#[path = "../common/mod.rs"]
mod common;
#[path = "../registry_client.rs"]
mod registry_client;

mod add;
mod cache;
mod cli;
mod escape;
mod interop;
mod mounts;
mod output;

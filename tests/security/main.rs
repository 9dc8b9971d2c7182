//! The security integration tests, one binary (issue 16: few binaries sharing
//! tests/common).

#[path = "../common/mod.rs"]
mod common;
#[path = "../registry_client.rs"]
mod registry_client;

mod cgroup;
mod cli;
mod network;
mod paths;
mod registry;
mod seccomp;
mod seccomp_cache;
mod store;

//! The containers integration tests, one binary (issue 16: few binaries sharing
//! tests/common).

#[path = "../common/mod.rs"]
mod common;

mod container_fs;
mod network;
mod run;
mod snapshots;
mod volumes;

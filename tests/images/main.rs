//! The images integration tests, one binary (issue 16: few binaries sharing
//! tests/common).

#[path = "../common/mod.rs"]
mod common;
#[path = "../registry_client.rs"]
mod registry_client;

mod image;
mod interop;
mod remote;
mod remote_resume;
mod remote_tls;
mod remote_upload;

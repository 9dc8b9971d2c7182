//! The registry integration tests, one binary (issue 16: few binaries sharing tests/common).
//! The storage backend is each test's argument: `api::s3::x` runs body `api::x` on this
//! process's moto, `api::azure::x` on its Azurite, `api::fs::x` on a directory.

#[path = "../common/mod.rs"]
mod common;
// First, so `per_backend!` is in scope in the modules below.
#[macro_use]
#[path = "../registry_client.rs"]
mod client;

mod api;
mod azure;
mod conformance;
mod gc;
mod gcs;
mod interop;
mod load;
mod podman;
mod replicas;
mod roundtrip;
mod s3;
mod s3_redirect;
mod token;

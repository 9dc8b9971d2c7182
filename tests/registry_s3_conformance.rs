//! The registry conformance checks (`registry_conformance.rs`) again, on the S3 backend (moto):
//! `registry_client.rs` picks the backend from this binary's name.

#[path = "registry_conformance.rs"]
mod suite;

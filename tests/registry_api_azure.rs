//! The whole registry API suite (`registry_api.rs`) again, on Azure Blob Storage: each server
//! gets its own container on this process's Azurite (see `registry_client.rs`, which picks the
//! backend from this binary's name).

#[path = "registry_api.rs"]
mod suite;

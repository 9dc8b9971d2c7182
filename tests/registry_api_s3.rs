//! The whole registry API suite (`registry_api.rs`) again, on the object-storage backend: each
//! server gets its own bucket on this process's moto (see `registry_client.rs`, which picks the
//! backend from this binary's name).

#[path = "registry_api.rs"]
mod suite;

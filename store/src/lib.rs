//! berth-store: the local state every other part of berth stands on.
//!
//! The image part of the state root is an OCI image layout (`images/`): content-addressed blobs,
//! `index.json` whose `org.opencontainers.image.ref.name` annotations are the tags. Layers are
//! unpacked once into `snapshots/<diffid>/` and shared read-only.

#![forbid(unsafe_code)]

pub mod archive;
pub mod blobs;
pub mod check;
pub mod commit;
pub mod compression;
pub mod daemon_json;
pub mod digest;
pub mod epoch;
pub mod error;
pub mod extract;
pub mod gc;
pub mod images;
pub mod import;
pub mod inroot;
pub mod layers;
pub mod mount;
pub mod reference;
pub mod remote;
pub mod root;

pub use error::{Result, StoreError};
pub use images::{Image, NewImage, Removal};
pub use oci_spec;
pub use reference::Reference;
pub use root::Store;

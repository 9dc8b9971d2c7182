//! The fd-based tar writer moved into the store ([`berth_store::layers::tree`]); `cp`, `export`
//! and the container filesystem views use it from there.

pub use berth_store::layers::tree::*;

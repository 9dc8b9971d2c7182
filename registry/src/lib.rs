//! berth-registry: an OCI distribution server. `endpoint` parses paths into typed endpoints,
//! `routes` holds the thin handlers, `storage` the trait and its filesystem backend, `manifest`
//! the push-time validation, `gc` the mark-and-sweep of unreferenced blobs, `error` the one table
//! of error codes and statuses, `connections` the accept loop with its limits and timeouts, `linger` what it does
//! with request bodies a handler answered without reading. `auth` is htpasswd basic auth; `token` (checking tokens), `keys`
//! (their key material), `scope` and `issuer` are bearer-token auth and the built-in token
//! server.

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod connections;
pub mod endpoint;
pub mod error;
pub mod gc;
pub mod issuer;
pub mod keys;
pub mod linger;
pub mod manifest;
pub mod range;
pub mod routes;
pub mod scope;
pub mod server;
pub mod storage;
pub mod token;

pub use config::{Config, FileConfig};
pub use server::{ServeError, serve, serve_blocking};

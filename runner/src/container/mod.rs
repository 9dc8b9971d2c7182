//! Containers: records on disk ([`store`]: a container's files, lookup by ID, name or ID
//! prefix, the locks), what makes one ([`create`]: Docker's rules for entrypoint, command,
//! environment, limits and networks), the transitions that do not need the supervisor
//! ([`lifecycle`]: stop, kill, pause, rm, restart) and Docker's flag grammar parsed into typed
//! values at the edge ([`options`], and [`filter`] for `--filter`).

pub mod conflict;
pub mod create;
pub mod filter;
pub mod lifecycle;
pub mod options;
pub mod record;
pub mod store;

pub use options::{CreateOptions, DEFAULT_PATH, parse_bytes, parse_restart, read_env_file};
pub use record::{Container, Containers};
pub use store::Runner;

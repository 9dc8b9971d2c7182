//! What every command does first: logging set up from `--log-level`/`RUST_LOG`, the state root
//! opened with an error that names it.

use anyhow::{Context, Result};
use berth_store::Store;

pub fn init_logging(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(if l == "fatal" { "error" } else { l }),
        // libcontainer logs its own view of failures that berth reports in one line.
        None => EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("warn,libcontainer=off,libcgroups=off")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

pub fn open_store(root: &std::path::Path) -> Result<Store> {
    Store::open(root).with_context(|| format!("cannot open state root {}", root.display()))
}

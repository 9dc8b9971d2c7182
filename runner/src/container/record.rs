//! One container as the rest of the runner sees it: its record, its state and where it lives.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::state::{ContainerPaths, ContainerRecord, State, Status};

/// One container: its record, its state and where it lives.
#[derive(Debug, Clone)]
pub struct Container {
    pub record: ContainerRecord,
    pub state: State,
    pub paths: ContainerPaths,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.record.id
    }
    pub fn short_id(&self) -> &str {
        &self.record.id[..12.min(self.record.id.len())]
    }
    pub fn name(&self) -> &str {
        &self.record.name
    }
    pub fn is_running(&self) -> bool {
        matches!(
            self.state.status,
            Status::Running | Status::Restarting | Status::Paused
        )
    }
    pub fn log_path(&self) -> PathBuf {
        self.paths.log(&self.record.id)
    }
}

/// What volumes and networks need of the containers of a state root: where the root is, lookup,
/// the list, and a state change under the container's lock. A narrow handle, so they are used
/// (and tested) without a whole [`Runner`](super::Runner), which implements it.
pub trait Containers {
    /// The state root.
    fn root(&self) -> &Path;
    /// A container by full ID, name or unique ID prefix.
    fn get(&self, spec: &str) -> Result<Container>;
    /// Every container, its state corrected for dead processes.
    fn list(&self) -> Result<Vec<Container>>;
    /// Change a container's state under its lock.
    fn update_state(&self, c: &mut Container, f: impl FnOnce(&mut State)) -> Result<()>;
}

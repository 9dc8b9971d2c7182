//! One container as the rest of the runner sees it: its record, its state and where it lives.

use std::path::PathBuf;

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

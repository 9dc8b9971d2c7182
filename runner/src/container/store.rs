//! Containers as records on disk: load, list, look up by ID, name or unique ID prefix, and the
//! locks. A state that names a dead supervisor or a dead init is corrected on read, so `ps` tells
//! the truth after a crash.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_store::Store;

use super::record::{Container, Containers};
use crate::error::{IoContext, Result, RunnerError};
use crate::persist::{FileLock, read_json, write_json, write_json_with};
use crate::process::process_alive;
use crate::state::{ContainerPaths, ContainerRecord, State, Status, now_rfc3339};

/// The lock over the containers of a state root as a set: names (create, rename) and the
/// volumes they mount (create, `volume rm`, `volume prune`) change under it.
pub fn containers_lock(root: &Path) -> Result<FileLock> {
    let locks = root.join("locks");
    fs::create_dir_all(&locks).ctx("creating", &locks)?;
    FileLock::acquire(&locks.join("containers.lock"))
}

/// The container half of the state root.
pub struct Runner {
    pub(super) store: Store,
    pub(super) dir: PathBuf,
}

impl Runner {
    pub fn open(store: Store) -> Result<Runner> {
        let dir = store.root().join("containers");
        fs::create_dir_all(&dir).ctx("creating", &dir)?;
        Ok(Runner { store, dir })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn root(&self) -> &Path {
        self.store.root()
    }

    pub fn paths(&self, id: &str) -> ContainerPaths {
        ContainerPaths {
            dir: self.dir.join(id),
        }
    }

    /// Load one container by its full ID (no liveness correction).
    pub(super) fn load(&self, id: &str) -> Result<Container> {
        let paths = self.paths(id);
        let record: ContainerRecord = read_json(&paths.config())?;
        let state: State = match read_json(&paths.state()) {
            Ok(s) => s,
            Err(_) if !paths.state().exists() => State::default(),
            Err(e) => return Err(e),
        };
        Ok(Container {
            record,
            state,
            paths,
        })
    }

    /// Every container, its state corrected for dead processes.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.dir).ctx("listing", &self.dir)?;
        for e in rd {
            let e = e.ctx("listing", &self.dir)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // A create or rm that was killed half-way leaves a `.tmp-`/`.rm-` directory;
                // one untouched for a minute is nobody's any more.
                let stale = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(60));
                if stale && (name.starts_with(".tmp-") || name.starts_with(".rm-")) {
                    let _ = crate::rootfs::unmount_all_under(&e.path());
                    let _ = fs::remove_dir_all(e.path());
                }
                continue;
            }
            match self.load(&name) {
                Ok(mut c) => {
                    self.refresh(&mut c)?;
                    out.push(c);
                }
                // Removed while we listed.
                Err(RunnerError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!("skipping container {name}: {e}");
                }
            }
        }
        out.sort_by(|a, b| b.record.created.cmp(&a.record.created));
        Ok(out)
    }

    /// Find a container by full ID, name, or unique ID prefix.
    pub fn get(&self, spec: &str) -> Result<Container> {
        let spec = spec.trim_start_matches('/');
        if spec.is_empty() {
            return Err(RunnerError::NotFound(spec.to_string()));
        }
        if spec.len() == 64 && self.paths(spec).config().exists() {
            let mut c = self.load(spec)?;
            self.refresh(&mut c)?;
            return Ok(c);
        }
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.record.name == spec) {
            return Ok(c.clone());
        }
        let matches: Vec<&Container> = all
            .iter()
            .filter(|c| c.record.id.starts_with(spec))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(RunnerError::NotFound(spec.to_string())),
            many => Err(RunnerError::Ambiguous {
                input: spec.to_string(),
                count: many.len(),
            }),
        }
    }

    /// Re-read a container's state from disk (and correct it).
    pub fn reload(&self, c: &mut Container) -> Result<()> {
        let fresh = self.load(&c.record.id)?;
        *c = fresh;
        self.refresh(c)
    }

    /// Correct a state that claims a process which is gone (a supervisor or init killed with -9).
    fn refresh(&self, c: &mut Container) -> Result<()> {
        if !matches!(
            c.state.status,
            Status::Running | Status::Restarting | Status::Paused
        ) {
            return Ok(());
        }
        let sup_alive = process_alive(
            c.state.internal.supervisor_pid,
            c.state.internal.supervisor_start,
        );
        let init_alive = c.state.status == Status::Running
            && process_alive(c.state.pid, c.state.internal.pid_start);
        if sup_alive || init_alive {
            return Ok(());
        }
        // Both are gone: nobody will record the exit, so record what is known now.
        let _lock = FileLock::acquire(&c.paths.lock())?;
        let mut st: State = read_json(&c.paths.state())?;
        if st.internal.supervisor_pid != c.state.internal.supervisor_pid
            || st.status != c.state.status
        {
            c.state = st;
            return Ok(());
        }
        let oom = crate::cgroups::oom_kills(&st.internal.cgroup) > 0;
        st.set_exited(if oom { 137 } else { 255 }, oom, &now_rfc3339());
        st.error = "the container's supervisor exited unexpectedly".into();
        st.internal.supervisor_pid = 0;
        st.internal.supervisor_start = 0;
        write_json(&c.paths.state(), &st)?;
        c.state = st;
        drop(_lock);
        // Its network goes now (addresses, NAT entries); its runtime state, cgroup and mounts
        // are released on the next start or on rm.
        self.release_network(c);
        self.reload_quiet(c);
        Ok(())
    }

    fn reload_quiet(&self, c: &mut Container) {
        if let Ok(fresh) = self.load(&c.record.id) {
            c.state = fresh.state;
        }
    }

    /// Change a container's state under its lock.
    pub fn update_state(&self, c: &mut Container, f: impl FnOnce(&mut State)) -> Result<()> {
        let _lock = FileLock::acquire(&c.paths.lock())?;
        let mut st: State = read_json(&c.paths.state())?;
        f(&mut st);
        write_json_with(&c.paths.state(), &st, !c.record.host_config.auto_remove)?;
        c.state = st;
        Ok(())
    }
}

impl Containers for Runner {
    fn root(&self) -> &Path {
        Runner::root(self)
    }
    fn get(&self, spec: &str) -> Result<Container> {
        Runner::get(self, spec)
    }
    fn list(&self) -> Result<Vec<Container>> {
        Runner::list(self)
    }
    fn update_state(&self, c: &mut Container, f: impl FnOnce(&mut State)) -> Result<()> {
        Runner::update_state(self, c, f)
    }
}

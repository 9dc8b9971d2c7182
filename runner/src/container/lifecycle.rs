//! The transitions of a container that do not need its supervisor: signal, pause, kill, stop,
//! wait, rm (and the release of what a stopped container holds on the host), rename, restart,
//! and starting the supervisor that runs it.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::conflict::StateConflict;
use super::record::Container;
use super::store::Runner;
use crate::error::{IoContext, Result, RunnerError};
use crate::names;
use crate::persist::{FileLock, read_json, write_json};
use crate::process::process_alive;
use crate::state::{ContainerRecord, State, Status};

impl Runner {
    /// Send `signal` to the container's init (only if it is still the same process).
    pub fn signal(&self, c: &Container, signal: i32) -> Result<bool> {
        if !matches!(c.state.status, Status::Running | Status::Paused)
            || !process_alive(c.state.pid, c.state.internal.pid_start)
        {
            return Ok(false);
        }
        crate::signal::send(c.state.pid, signal)?;
        if c.state.status == Status::Paused {
            // A frozen container only receives the signal once thawed (Docker's stop and kill
            // of a paused container do the same).
            let mut c = c.clone();
            self.set_paused(&mut c, false)?;
        }
        Ok(true)
    }

    /// Docker's `pause`: freeze every process of a running container.
    pub fn pause(&self, c: &mut Container) -> Result<()> {
        match c.state.status {
            Status::Paused => Err(StateConflict::AlreadyPaused { id: c.id().into() }.into()),
            Status::Running => self.set_paused(c, true),
            _ => Err(StateConflict::NotRunning { id: c.id().into() }.into()),
        }
    }

    /// Docker's `unpause`.
    pub fn unpause(&self, c: &mut Container) -> Result<()> {
        if c.state.status != Status::Paused {
            return Err(StateConflict::NotPaused { id: c.id().into() }.into());
        }
        self.set_paused(c, false)
    }

    fn set_paused(&self, c: &mut Container, paused: bool) -> Result<()> {
        let cg = if c.state.internal.cgroup.is_empty() {
            crate::cgroups::path_for(c.id())
        } else {
            c.state.internal.cgroup.clone()
        };
        crate::cgroups::freeze(&cg, paused).map_err(|e| {
            RunnerError::Sandbox(format!(
                "{} container {}: {e}",
                if paused { "pausing" } else { "unpausing" },
                c.name()
            ))
        })?;
        self.update_state(c, |s| {
            if paused && s.status == Status::Running {
                s.status = Status::Paused;
                s.paused = true;
            } else if !paused && s.status == Status::Paused {
                s.status = Status::Running;
                s.paused = false;
            }
        })
    }

    /// Docker's `kill`: send a signal to a running container.
    pub fn kill(&self, c: &mut Container, signal: i32) -> Result<()> {
        if !c.is_running() {
            return Err(StateConflict::KillNotRunning {
                name: c.name().into(),
                id: c.id().into(),
            }
            .into());
        }
        let stop_signal =
            crate::signal::parse(c.record.config.stop_signal.as_deref().unwrap_or("SIGTERM"))?;
        if signal == crate::signal::SIGKILL || signal == stop_signal {
            self.update_state(c, |s| s.internal.manually_stopped = true)?;
        }
        self.signal(c, signal)?;
        if signal == crate::signal::SIGKILL {
            self.wait_stopped(c, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Docker's `stop`: the stop signal, then SIGKILL after the timeout.
    pub fn stop(&self, c: &mut Container, timeout: Option<i64>) -> Result<()> {
        self.update_state(c, |s| s.internal.manually_stopped = true)?;
        if !c.is_running() {
            return Ok(());
        }
        let sig =
            crate::signal::parse(c.record.config.stop_signal.as_deref().unwrap_or("SIGTERM"))?;
        let secs = timeout.or(c.record.config.stop_timeout).unwrap_or(10);
        self.signal(c, sig)?;
        if secs < 0 || !self.wait_stopped(c, Duration::from_secs(secs as u64))? {
            self.signal(c, crate::signal::SIGKILL)?;
            self.wait_stopped(c, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Docker's `stop --signal`: `signal` instead of the container's stop signal, then SIGKILL
    /// after the timeout.
    pub fn stop_with_signal(
        &self,
        c: &mut Container,
        signal: i32,
        timeout: Option<i64>,
    ) -> Result<()> {
        self.update_state(c, |st| st.internal.manually_stopped = true)?;
        self.signal(c, signal)?;
        let secs = timeout.or(c.record.config.stop_timeout).unwrap_or(10);
        if secs < 0 || !self.wait_stopped(c, Duration::from_secs(secs as u64))? {
            self.signal(c, crate::signal::SIGKILL)?;
            self.wait_stopped(c, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Docker's `restart`: stop, then start detached.
    pub fn restart(&self, c: &mut Container, timeout: Option<i64>) -> Result<()> {
        self.stop(c, timeout)?;
        self.reload(c)?;
        self.spawn_supervisor(c, false).map(|_| ())
    }

    /// Wait until the container is no longer running (as its supervisor records it); `false` on
    /// timeout.
    pub fn wait_stopped(&self, c: &mut Container, timeout: Duration) -> Result<bool> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(2);
        loop {
            match self.reload(c) {
                Ok(()) => {}
                // Removed meanwhile (`--rm`, whose supervisor removes it as it stops).
                Err(RunnerError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
            if !matches!(c.state.status, Status::Running | Status::Restarting) {
                return Ok(true);
            }
            // Init gone and the supervisor is still writing its exit: keep waiting briefly.
            if start.elapsed() >= timeout {
                return Ok(false);
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    /// Block until the container stops; its exit code (Docker's `wait`).
    pub fn wait(&self, c: &mut Container) -> Result<i32> {
        loop {
            if self.wait_stopped(c, Duration::from_secs(3600))? {
                // A restart policy may bring it back; `wait` returns at the first exit.
                return Ok(c.state.exit_code);
            }
        }
    }

    /// Docker's `rm`.
    pub fn remove(&self, c: &mut Container, force: bool, volumes: bool) -> Result<()> {
        if c.is_running() {
            if !force {
                return Err(StateConflict::RemoveRunning {
                    name: c.name().into(),
                }
                .into());
            }
            self.update_state(c, |s| s.internal.manually_stopped = true)?;
            self.signal(c, crate::signal::SIGKILL)?;
            self.wait_stopped(c, Duration::from_secs(10))?;
            if !c.paths.config().exists() {
                // A `--rm` container: its supervisor removed it.
                return Ok(());
            }
        }
        // A supervisor between restarts, or still writing the exit: let it finish.
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_alive(
            c.state.internal.supervisor_pid,
            c.state.internal.supervisor_start,
        ) && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
            match self.load(&c.record.id) {
                Ok(fresh) => *c = fresh,
                Err(_) => return Ok(()),
            }
        }
        self.destroy(c, volumes)
    }

    /// Remove a stopped container's host resources and directory (the supervisor's `--rm`, which
    /// also removes its anonymous volumes).
    pub fn destroy(&self, c: &Container, volumes: bool) -> Result<()> {
        self.cleanup(c)?;
        self.remove_released(c, volumes)
    }

    /// The second half of [`Runner::destroy`], for a caller that has just run
    /// [`Runner::cleanup`] itself (the supervisor, after the container exited): volumes and the
    /// container's directory.
    pub fn remove_released(&self, c: &Container, volumes: bool) -> Result<()> {
        match self.unlist_released(c, volumes)? {
            Some(doomed) => fs::remove_dir_all(&doomed).ctx("removing", &doomed),
            None => Ok(()),
        }
    }

    /// [`Runner::remove_released`] for `--rm`, whose caller is waiting: once the container is
    /// unlisted (renamed to `.rm-ID`; its name, volumes, mounts and cgroup already free) the
    /// files are deleted by a detached `berth __supervise ID --reap`. Deleting a directory tree
    /// costs a synchronous discard per freed block on a disk mounted with `discard`, tens of
    /// milliseconds per container on a busy host. A reaper that never runs leaves `.rm-ID`,
    /// which [`Runner::list`] deletes a minute later.
    pub fn remove_released_deferred(&self, c: &Container, volumes: bool) -> Result<()> {
        let Some(doomed) = self.unlist_released(c, volumes)? else {
            return Ok(());
        };
        if crate::supervisor::spawn_reaper(self.root(), c.id()).is_err() {
            fs::remove_dir_all(&doomed).ctx("removing", &doomed)?;
        }
        Ok(())
    }

    /// Release the volumes and rename the directory out of the listing; `.rm-ID`, or `None`
    /// when it was already gone.
    fn unlist_released(&self, c: &Container, volumes: bool) -> Result<Option<PathBuf>> {
        crate::volumes::release(self, c, volumes)?;
        let dir = &c.paths.dir;
        // Renamed first, so a concurrent `ps` never reads half a directory.
        let doomed = self.removed_dir(c.id());
        match fs::rename(dir, &doomed) {
            Ok(()) => Ok(Some(doomed)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RunnerError::io("removing", dir, e)),
        }
    }

    /// Where a removed container's files wait for deletion.
    pub fn removed_dir(&self, id: &str) -> PathBuf {
        self.dir.join(format!(".rm-{id}"))
    }

    /// Release everything a stopped container holds on the host: runtime state, cgroup, mounts.
    pub fn cleanup(&self, c: &Container) -> Result<()> {
        if let Ok(sandbox) = crate::sandbox::for_runtime(self.root(), &c.record.runtime_path)
            && let Err(e) = sandbox.delete(&c.record.id)
        {
            tracing::warn!("releasing the runtime state of {}: {e}", c.short_id());
        }
        tracing::debug!("cleanup: runtime state released");
        crate::cgroups::remove(&crate::cgroups::path_for(&c.record.id));
        tracing::debug!("cleanup: cgroups removed");
        crate::rootfs::unmount_all_under(&c.paths.dir)?;
        tracing::debug!("cleanup: unmounted");
        self.release_network(c);
        Ok(())
    }

    /// Release a stopped container's network: its endpoints (addresses, veths) and the NAT
    /// entries of its published ports that nobody holds any more (a supervisor that died
    /// without cleaning up; a live one removes its own).
    pub fn release_network(&self, c: &Container) {
        if let Ok(nets) = crate::network::Networks::open(self.root())
            && let Err(e) = nets.release_all(c.id())
        {
            tracing::warn!("releasing the network of {}: {e}", c.short_id());
        }
        let Ok(mut st) = read_json::<State>(&c.paths.state()) else {
            return;
        };
        if st.internal.published.is_empty() && st.networks.is_empty() && st.ports.is_empty() {
            return;
        }
        let stale: Vec<crate::state::Published> = st
            .internal
            .published
            .iter()
            .filter(|p| crate::network::ports::is_free(p))
            .cloned()
            .collect();
        let table = crate::network::nft::table_name(self.root());
        crate::network::nft::remove_ports(&table, &stale);
        let _lock = FileLock::acquire(&c.paths.lock());
        if let Ok(fresh) = read_json::<State>(&c.paths.state()) {
            st = fresh;
        }
        if st.running && process_alive(st.internal.supervisor_pid, st.internal.supervisor_start) {
            return;
        }
        st.internal.published.clear();
        st.networks.clear();
        st.ports.clear();
        let _ = write_json(&c.paths.state(), &st);
    }

    /// Docker's `rename`.
    pub fn rename(&self, c: &mut Container, new_name: &str) -> Result<()> {
        names::validate_name(new_name).map_err(|r| RunnerError::invalid("container name", r))?;
        let new_name = new_name.trim_start_matches('/');
        let _lock = super::store::containers_lock(self.root())?;
        if let Some(other) = self.list()?.into_iter().find(|o| o.record.name == new_name) {
            return Err(RunnerError::NameInUse {
                name: new_name.to_string(),
                id: other.record.id,
            });
        }
        let _clock = FileLock::acquire(&c.paths.lock())?;
        let mut rec: ContainerRecord = read_json(&c.paths.config())?;
        rec.name = new_name.to_string();
        write_json(&c.paths.config(), &rec)?;
        if let Ok(nets) = crate::network::Networks::open(self.root()) {
            let _ = nets.rename(&rec.id, new_name);
        }
        c.record = rec;
        Ok(())
    }

    /// Start a supervisor for `c`. Detached: returns once the container runs (or failed to);
    /// attached: the supervisor shares this process's stdio, and its exit code is returned.
    pub fn spawn_supervisor(&self, c: &Container, attach: bool) -> Result<i32> {
        crate::supervisor::spawn(self.root(), c, attach)
    }

    /// [`Runner::spawn_supervisor`] as decided (and primed) before the container was created.
    pub fn spawn_supervisor_with(
        &self,
        c: &Container,
        launch: crate::supervisor::Launch,
    ) -> Result<i32> {
        crate::supervisor::spawn_with(self.root(), c, launch)
    }
}

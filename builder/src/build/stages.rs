//! Running a build's stages: each on its own thread once the stages it needs are built, the
//! progress display shared between them, and the base images pinned while the build runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use berth_store::{Image, Store};

use crate::error::BuildError;
use crate::frontend::plan::Stage;
use crate::progress::Progress;

/// Pins of this build's base images (holder `build-<pid>`), dropped when the build ends.
pub(super) struct BasePins<'a> {
    store: &'a Store,
    holder: String,
}

impl<'a> BasePins<'a> {
    pub(super) fn new(
        store: &'a Store,
        bases: &BTreeMap<String, Image>,
    ) -> Result<Self, BuildError> {
        for h in store.pin_holders() {
            let dead = h
                .strip_prefix("build-")
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
            if dead {
                let _ = store.unpin_all(&h);
            }
        }
        let holder = format!("build-{}", std::process::id());
        for img in bases.values() {
            store.pin(&holder, &img.manifest)?;
        }
        Ok(BasePins { store, holder })
    }
}

impl Drop for BasePins<'_> {
    fn drop(&mut self) {
        let _ = self.store.unpin_all(&self.holder);
    }
}

/// The build's progress, shared by the stages building at once.
pub(super) type SharedProgress<'p> = Mutex<&'p mut (dyn Progress + Send)>;

/// One stage's view of the shared progress.
pub(super) struct ProgressHandle<'s, 'p>(pub(super) &'s SharedProgress<'p>);

impl ProgressHandle<'_, '_> {
    fn with(&self, f: impl FnOnce(&mut dyn Progress)) {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut **p);
    }
}

impl Progress for ProgressHandle<'_, '_> {
    fn start(&mut self, n: usize, title: &str) {
        self.with(|p| p.start(n, title));
    }
    fn cached(&mut self, n: usize) {
        self.with(|p| p.cached(n));
    }
    fn miss(&mut self, n: usize, reason: Option<&str>) {
        self.with(|p| p.miss(n, reason));
    }
    fn output(&mut self, n: usize, bytes: &[u8]) {
        self.with(|p| p.output(n, bytes));
    }
    fn done(&mut self, n: usize) {
        self.with(|p| p.done(n));
    }
    fn error(&mut self, n: usize, message: &str) {
        self.with(|p| p.error(n, message));
    }
    fn note(&mut self, text: &str) {
        self.with(|p| p.note(text));
    }
    fn finish(&mut self) {
        self.with(|p| p.finish());
    }
    fn tick(&mut self) {
        self.with(|p| p.tick());
    }
}

/// Stages building at once, at most (more only wait on each other for the machine's cores).
fn stage_parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// Builds the used stages, each on its own thread as soon as the stages it depends on are
/// built (so independent stages build in parallel, as BuildKit's solver runs independent
/// vertices), at most [`stage_parallelism`] at a time. `run(stage, results, first_step_no)`
/// builds one stage; step numbers follow the Dockerfile's order whatever the schedule. The
/// first failure stops the others (`abort` at their next step, `cancel` for the processes
/// they run now) and is the one returned.
pub(super) fn build_stages<F, R: Clone + Send>(
    stages: &[Stage],
    run: F,
    abort: &AtomicBool,
    cancel: &(dyn Fn() + Sync),
) -> Result<Vec<Option<R>>, BuildError>
where
    F: Fn(&Stage, &[Option<R>], usize) -> Result<R, BuildError> + Sync,
{
    struct State<R> {
        results: Vec<Option<R>>,
        error: Option<BuildError>,
        running: usize,
    }
    let used: Vec<&Stage> = stages.iter().filter(|s| s.used).collect();
    let mut first_no = vec![0; stages.len()];
    let mut n = 0;
    for s in &used {
        first_no[s.index] = n;
        n += s.steps.len() + 1;
    }
    let state = Mutex::new(State {
        results: vec![None; stages.len()],
        error: None,
        running: 0,
    });
    let changed = Condvar::new();
    let limit = stage_parallelism();
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::scope(|scope| {
        for stage in &used {
            let (run, lock, changed, first) = (&run, &lock, &changed, first_no[stage.index]);
            let cancel = &cancel;
            scope.spawn(move || {
                // Wait for the stages this one reads from, and for a free slot.
                let results = {
                    let mut st = lock();
                    loop {
                        if st.error.is_some() {
                            return;
                        }
                        let missing = stage.depends_on.iter().find(|d| {
                            !stages.get(**d).is_some_and(|s| s.used)
                                && st.results.get(**d).is_none_or(Option::is_none)
                        });
                        if let Some(d) = missing {
                            st.error = Some(BuildError::Step {
                                line: stage.from.start_line,
                                instruction: stage.from.original.trim().to_string(),
                                message: format!("stage {d} is needed but not built"),
                            });
                            changed.notify_all();
                            return;
                        }
                        let ready = stage.depends_on.iter().all(|d| st.results[*d].is_some());
                        if ready && st.running < limit {
                            st.running += 1;
                            break st.results.clone();
                        }
                        st = changed.wait(st).unwrap_or_else(|e| e.into_inner());
                    }
                };
                // A panic must still free the slot and wake the others (or they wait forever).
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(stage, &results, first)
                }))
                .unwrap_or_else(|_| {
                    Err(BuildError::Step {
                        line: stage.from.start_line,
                        instruction: stage.from.original.trim().to_string(),
                        message: "internal error: building this stage panicked".into(),
                    })
                });
                let mut st = lock();
                st.running -= 1;
                match r {
                    Ok(r) => st.results[stage.index] = Some(r),
                    Err(e) => {
                        abort.store(true, Ordering::SeqCst);
                        // An incomplete imported cache means building again: the other
                        // stages stop at their next step, their running processes are left
                        // to finish (a cancel would stop the second attempt too).
                        if !matches!(e, BuildError::CacheIncomplete { .. }) {
                            cancel();
                        }
                        // The first failure is the build's; later ones are its consequences.
                        if st.error.is_none() {
                            st.error = Some(e);
                        }
                    }
                }
                changed.notify_all();
            });
        }
    });
    let st = state.into_inner().unwrap_or_else(|e| e.into_inner());
    match st.error {
        Some(e) => Err(e),
        None => Ok(st.results),
    }
}

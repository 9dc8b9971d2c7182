//! The cgroup code against fake v1 and v2 trees in temp directories (the files the kernel
//! would show, and a thread standing in for the kernel where a write must be answered), and
//! against a real cgroup2 hierarchy when the host has one to spare.

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const REL: &str = "/berth/0123abcd";

fn write(p: &Path, text: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// A unified tree: `cgroup.controllers` at the top marks it.
fn fake_v2() -> (tempfile::TempDir, Cgroups) {
    let t = tempfile::tempdir().unwrap();
    write(&t.path().join("cgroup.controllers"), "cpu memory pids\n");
    let d = t.path().join("berth/0123abcd");
    fs::create_dir_all(&d).unwrap();
    let cg = Cgroups::at(t.path());
    (t, cg)
}

/// A v1 tree: one directory per controller, as on this project's hybrid VM.
fn fake_v1() -> (tempfile::TempDir, Cgroups) {
    let t = tempfile::tempdir().unwrap();
    for ctrl in ["memory", "cpu", "pids", "freezer", "devices"] {
        fs::create_dir_all(t.path().join(ctrl).join("berth/0123abcd")).unwrap();
    }
    // A cgroup made elsewhere must not be found for ours.
    fs::create_dir_all(t.path().join("blkio/other")).unwrap();
    let cg = Cgroups::at(t.path());
    (t, cg)
}

#[test]
fn the_layout_is_read_from_the_root() {
    let (_t2, v2) = fake_v2();
    let (_t1, v1) = fake_v1();
    assert!(v2.is_v2());
    assert!(!v1.is_v2());
    assert_eq!(v2.dirs(REL), vec![_t2.path().join("berth/0123abcd")]);
    let mut d1 = v1.dirs(REL);
    d1.sort();
    assert_eq!(d1.len(), 5, "{d1:?}");
    assert!(d1.contains(&_t1.path().join("memory/berth/0123abcd")));
    assert!(v2.dirs("/berth/none").is_empty());
}

#[test]
fn v2_oom_kills_come_from_memory_events() {
    let (t, cg) = fake_v2();
    assert_eq!(cg.oom_kills(REL), 0, "no file yet");
    write(
        &t.path().join("berth/0123abcd/memory.events"),
        "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
    );
    assert_eq!(cg.oom_kills(REL), 1);
}

#[test]
fn v1_oom_kills_come_from_memory_oom_control() {
    let (t, cg) = fake_v1();
    write(
        &t.path().join("memory/berth/0123abcd/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    );
    assert_eq!(cg.oom_kills(REL), 3);
}

#[test]
fn v2_limits_are_read_from_memory_max_cpu_max_and_pids_max() {
    let (t, cg) = fake_v2();
    let d = t.path().join("berth/0123abcd");
    write(&d.join("memory.max"), "16777216\n");
    write(&d.join("cpu.max"), "50000 100000\n");
    write(&d.join("pids.max"), "20\n");
    assert_eq!(
        cg.limits(REL),
        Limits {
            memory: Some(16 << 20),
            cpu_quota: Some((50_000, 100_000)),
            pids: Some(20),
        }
    );
    // What an unlimited cgroup shows.
    write(&d.join("memory.max"), "max\n");
    write(&d.join("cpu.max"), "max 100000\n");
    write(&d.join("pids.max"), "max\n");
    assert_eq!(cg.limits(REL), Limits::default());
}

#[test]
fn v1_limits_are_read_per_controller() {
    let (t, cg) = fake_v1();
    write(
        &t.path().join("memory/berth/0123abcd/memory.limit_in_bytes"),
        "16777216\n",
    );
    write(
        &t.path().join("cpu/berth/0123abcd/cpu.cfs_quota_us"),
        "150000\n",
    );
    write(
        &t.path().join("cpu/berth/0123abcd/cpu.cfs_period_us"),
        "100000\n",
    );
    write(&t.path().join("pids/berth/0123abcd/pids.max"), "7\n");
    assert_eq!(
        cg.limits(REL),
        Limits {
            memory: Some(16 << 20),
            cpu_quota: Some((150_000, 100_000)),
            pids: Some(7),
        }
    );
    write(
        &t.path().join("memory/berth/0123abcd/memory.limit_in_bytes"),
        "9223372036854771712\n",
    );
    write(
        &t.path().join("cpu/berth/0123abcd/cpu.cfs_quota_us"),
        "-1\n",
    );
    write(&t.path().join("pids/berth/0123abcd/pids.max"), "max\n");
    assert_eq!(cg.limits(REL), Limits::default());
}

#[test]
fn pids_include_sub_cgroups_on_both_layouts() {
    let (t, cg) = fake_v2();
    write(&t.path().join("berth/0123abcd/cgroup.procs"), "10\n11\n");
    write(&t.path().join("berth/0123abcd/exec-1/cgroup.procs"), "12\n");
    assert_eq!(cg.pids(REL), BTreeSet::from([10, 11, 12]));

    let (t, cg) = fake_v1();
    write(&t.path().join("memory/berth/0123abcd/cgroup.procs"), "10\n");
    write(
        &t.path().join("pids/berth/0123abcd/cgroup.procs"),
        "10\n13\n",
    );
    assert_eq!(cg.pids(REL), BTreeSet::from([10, 13]));
}

#[test]
fn removal_takes_sub_cgroups_first_everywhere() {
    // rmdir on cgroupfs removes a cgroup with its interface files; empty directories stand in.
    let (t, cg) = fake_v2();
    fs::create_dir_all(t.path().join("berth/0123abcd/exec-1/deeper")).unwrap();
    cg.remove(REL);
    assert!(!t.path().join("berth/0123abcd").exists());
    assert!(t.path().join("berth").exists(), "the parent stays");

    let (t, cg) = fake_v1();
    fs::create_dir_all(t.path().join("cpu/berth/0123abcd/exec-1")).unwrap();
    cg.remove(REL);
    for ctrl in ["memory", "cpu", "pids", "freezer", "devices"] {
        assert!(
            !t.path().join(ctrl).join("berth/0123abcd").exists(),
            "{ctrl}"
        );
    }
    assert!(t.path().join("blkio/other").exists());
}

/// Stands in for the kernel: whenever `request` holds one of `answers`' keys, `report` is
/// rewritten with its value (after a delay, as a real freeze takes time).
fn fake_kernel(
    request: PathBuf,
    report: PathBuf,
    answers: Vec<(&'static str, &'static str)>,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            if let Ok(req) = fs::read_to_string(&request) {
                for (k, v) in &answers {
                    if req.trim() == *k {
                        std::thread::sleep(Duration::from_millis(20));
                        let _ = fs::write(&report, v);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (stop, h)
}

#[test]
fn v2_freeze_writes_cgroup_freeze_and_waits_for_cgroup_events() {
    let (t, cg) = fake_v2();
    let d = t.path().join("berth/0123abcd");
    write(&d.join("cgroup.events"), "populated 1\nfrozen 0\n");
    let (stop, h) = fake_kernel(
        d.join("cgroup.freeze"),
        d.join("cgroup.events"),
        vec![
            ("1", "populated 1\nfrozen 1\n"),
            ("0", "populated 1\nfrozen 0\n"),
        ],
    );
    cg.freeze(REL, true).unwrap();
    assert_eq!(fs::read_to_string(d.join("cgroup.freeze")).unwrap(), "1");
    assert!(
        fs::read_to_string(d.join("cgroup.events"))
            .unwrap()
            .contains("frozen 1")
    );
    cg.freeze(REL, false).unwrap();
    assert_eq!(fs::read_to_string(d.join("cgroup.freeze")).unwrap(), "0");
    stop.store(true, Ordering::SeqCst);
    h.join().unwrap();
}

#[test]
fn v2_freeze_that_never_completes_is_an_error() {
    let (t, cg) = fake_v2();
    let cg = cg.with_freeze_timeout(Duration::from_millis(100));
    write(
        &t.path().join("berth/0123abcd/cgroup.events"),
        "populated 1\nfrozen 0\n",
    );
    let e = cg.freeze(REL, true).unwrap_err();
    assert!(e.to_string().contains("frozen 1"), "{e}");
    // A cgroup that is gone: the write fails, clearly.
    assert!(cg.freeze("/berth/none", true).is_err());
}

#[test]
fn v1_freeze_uses_the_freezer_controller() {
    let (t, cg) = fake_v1();
    let state = t.path().join("freezer/berth/0123abcd/freezer.state");
    write(&state, "THAWED\n");
    // v1 reports FREEZING until every task is frozen; berth writes again until FROZEN.
    let (stop, h) = fake_kernel(state.clone(), state.clone(), vec![("FROZEN", "FROZEN\n")]);
    cg.freeze(REL, true).unwrap();
    assert_eq!(fs::read_to_string(&state).unwrap().trim(), "FROZEN");
    cg.freeze(REL, false).unwrap();
    assert_eq!(fs::read_to_string(&state).unwrap().trim(), "THAWED");
    stop.store(true, Ordering::SeqCst);
    h.join().unwrap();
}

/// A real cgroup2 hierarchy for a test: a fresh `mount -t cgroup2` on a temp directory
/// (unmounted on drop), else the host's unified mount. On a hybrid host the controllers stay
/// bound to v1, so only the core files exist (cgroup.procs, cgroup.freeze, cgroup.events).
struct RealV2 {
    mount: Option<tempfile::TempDir>,
    root: PathBuf,
}

impl RealV2 {
    fn find() -> Option<RealV2> {
        if rustix::process::geteuid().as_raw() != 0 {
            return None;
        }
        let base = std::env::var_os("BERTH_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        if let Ok(t) = tempfile::Builder::new()
            .prefix("berth-test-cg2")
            .tempdir_in(base)
            && rustix::mount::mount(
                "none",
                t.path(),
                "cgroup2",
                rustix::mount::MountFlags::empty(),
                None::<&std::ffi::CStr>,
            )
            .is_ok()
        {
            let root = t.path().to_path_buf();
            return Some(RealV2 {
                mount: Some(t),
                root,
            });
        }
        ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("cgroup.controllers").exists())
            .map(|root| RealV2 { mount: None, root })
    }
}

impl Drop for RealV2 {
    fn drop(&mut self) {
        if let Some(t) = &self.mount {
            let _ = rustix::mount::unmount(t.path(), rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// A process in a test cgroup; killed, reaped and its cgroup removed on drop.
struct Member {
    child: std::process::Child,
    dir: PathBuf,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::write(self.dir.join("cgroup.freeze"), "0");
        let _ = fs::remove_dir(&self.dir);
    }
}

#[test]
fn a_real_cgroup2_hierarchy_lists_freezes_thaws_and_removes() {
    let Some(real) = RealV2::find() else {
        eprintln!("skipped: no cgroup2 hierarchy (or not root)");
        return;
    };
    let cg = Cgroups::at(&real.root);
    assert!(cg.is_v2());
    let rel = format!("/berth-unit-{}", std::process::id());
    let dir = real.root.join(rel.trim_start_matches('/'));
    fs::create_dir(&dir).unwrap();
    let child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let member = Member {
        child,
        dir: dir.clone(),
    };
    fs::write(dir.join("cgroup.procs"), pid.to_string()).unwrap();
    assert_eq!(cg.pids(&rel), BTreeSet::from([pid]));
    // The kernel only reports `frozen 1` once every task in the cgroup is frozen.
    cg.freeze(&rel, true).unwrap();
    assert!(
        fs::read_to_string(dir.join("cgroup.events"))
            .unwrap()
            .contains("frozen 1")
    );
    cg.freeze(&rel, false).unwrap();
    assert!(
        fs::read_to_string(dir.join("cgroup.events"))
            .unwrap()
            .contains("frozen 0")
    );
    // Populated: the kernel refuses the removal, and berth does not force it.
    cg.remove(&rel);
    assert!(dir.exists());
    drop(member);
    assert!(!dir.exists(), "the guard removed the emptied cgroup");
    fs::create_dir(&dir).unwrap();
    fs::create_dir(dir.join("exec-1")).unwrap();
    cg.remove(&rel);
    assert!(!dir.exists(), "removed with its sub-cgroup");
    assert_eq!(cg.oom_kills(&rel), 0);
}

#[test]
fn the_primer_finds_this_process_cgroup_on_both_layouts() {
    let (t2, _) = fake_v2();
    write(&t2.path().join("berth/0123abcd/cgroup.procs"), "");
    assert_eq!(
        own_procs_file_in(t2.path(), "0::/berth/0123abcd\n"),
        Some(t2.path().join("berth/0123abcd/cgroup.procs"))
    );
    // v1: the first hierarchy that is mounted, a named one included; the hybrid host's
    // controller-less unified line is not a v1 directory.
    let (t1, _) = fake_v1();
    write(&t1.path().join("pids/berth/0123abcd/cgroup.procs"), "");
    write(&t1.path().join("systemd/user/cgroup.procs"), "");
    let own = "10:net_cls:/x\n9:pids:/berth/0123abcd\n1:name=systemd:/user\n0::/\n";
    assert_eq!(
        own_procs_file_in(t1.path(), own),
        Some(t1.path().join("pids/berth/0123abcd/cgroup.procs"))
    );
    assert_eq!(
        own_procs_file_in(t1.path(), "1:name=systemd:/user\n"),
        Some(t1.path().join("systemd/user/cgroup.procs"))
    );
    assert_eq!(own_procs_file_in(t1.path(), "0::/\n"), None);
}

/// On the real host: priming moves nothing (the process stays in every cgroup it was in).
#[test]
fn the_primer_leaves_this_process_where_it_was() {
    let before = fs::read_to_string("/proc/self/cgroup").unwrap();
    MigrationPrimer::start().finish();
    assert_eq!(fs::read_to_string("/proc/self/cgroup").unwrap(), before);
}

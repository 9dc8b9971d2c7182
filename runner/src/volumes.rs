//! Volumes: named volumes under `ROOT/volumes/<name>/_data`, anonymous volumes for the image's
//! VOLUME paths and `-v /path`, bind mounts, tmpfs and `--volumes-from`, with Docker's rules.
//!
//! Three hooks: `plan` at create (parse and check everything first, then create the volumes, so
//! bad input leaves nothing behind), `prepare` at each start (mount points made inside the rootfs,
//! copy-up of image content into empty volumes at the first start, the runtime mounts) and
//! `release` at `rm -v`/`--rm` (anonymous volumes no other container uses).

pub mod conflict;
pub mod copy;
pub mod spec;
pub mod store;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;

use crate::bundle::ExtraMount;
use crate::container::{Container, Containers, CreateOptions};
use crate::error::{IoContext, Result, RunnerError};
use crate::persist::FileLock;
use crate::state::{MountPoint, MountRequest, VolumeOptions, ZERO_TIME};
use spec::{Spec, clean};

enum Planned {
    /// Taken over from `--volumes-from`.
    Existing(MountPoint),
    /// From `-v`, `--mount` or an image VOLUME.
    New(Spec, Origin),
}

#[derive(Clone, Copy, PartialEq)]
enum Origin {
    VolumeFlag,
    MountFlag,
    Image,
}

fn duplicate(dest: &str) -> RunnerError {
    conflict::VolumeConflict::DuplicateMountPoint {
        destination: dest.to_string(),
    }
    .into()
}

/// At create: validate `-v`, `--mount`, `--tmpfs`, `--volumes-from` and the image's VOLUMEs, create
/// named/anonymous volumes, and return what the record keeps: the mount points `inspect` shows
/// and the requests (HostConfig.Mounts). The caller holds the containers lock.
pub fn plan(
    runner: &impl Containers,
    opts: &CreateOptions,
    image_volumes: &[String],
) -> Result<(Vec<MountPoint>, Vec<MountRequest>)> {
    let binds: Vec<Spec> = opts
        .volumes
        .iter()
        .map(|v| spec::parse_volume_flag(v))
        .collect::<Result<_>>()?;
    let mounts: Vec<Spec> = opts
        .mounts
        .iter()
        .map(|m| spec::parse_mount_flag(m))
        .collect::<Result<_>>()?;
    let tmpfs: Vec<String> = opts
        .tmpfs
        .iter()
        .map(|t| {
            let (d, o) = t.split_once(':').unwrap_or((t.as_str(), ""));
            spec::parse_tmpfs(d, o)
        })
        .collect::<Result<_>>()?;
    for s in binds.iter().chain(&mounts) {
        if s.kind != "volume" {
            continue;
        }
        if !s.source.is_empty() {
            store::validate_name(&s.source)?;
        }
        if !matches!(s.volume_driver.as_str(), "" | "local") {
            return Err(RunnerError::Unsupported(format!(
                "error looking up volume plugin {0}: plugin {0:?} not found",
                s.volume_driver
            )));
        }
    }
    let mut from = Vec::new();
    for v in &opts.volumes_from {
        let (id, rw) = spec::parse_volumes_from(v)?;
        from.push((runner.get(&id)?, rw));
    }

    // Docker's precedence: --volumes-from, overridden by -v and --mount; image VOLUMEs fill in
    // what nothing else (tmpfs included) mounts.
    let mut planned: BTreeMap<String, Planned> = BTreeMap::new();
    for (c, rw) in from {
        for m in &c.record.mounts {
            let mut m = m.clone();
            m.rw = m.rw && rw;
            planned.insert(m.destination.clone(), Planned::Existing(m));
        }
    }
    let mut explicit = HashSet::new();
    for (s, origin) in binds
        .into_iter()
        .map(|s| (s, Origin::VolumeFlag))
        .chain(mounts.into_iter().map(|s| (s, Origin::MountFlag)))
    {
        if !explicit.insert(s.target.clone()) || tmpfs.contains(&s.target) {
            return Err(duplicate(&s.target));
        }
        planned.insert(s.target.clone(), Planned::New(s, origin));
    }
    if tmpfs.len() != tmpfs.iter().collect::<HashSet<_>>().len() {
        return Err(RunnerError::invalid(
            "--tmpfs",
            "the same destination twice",
        ));
    }
    for v in image_volumes {
        let d = clean(v);
        if d == "/" || planned.contains_key(&d) || tmpfs.contains(&d) {
            continue;
        }
        let s = Spec {
            kind: "volume".into(),
            target: d.clone(),
            ..Spec::default()
        };
        planned.insert(d, Planned::New(s, Origin::Image));
    }

    // Everything checked: now make the volumes, undoing them if one fails.
    let root = runner.root();
    let mut made: Vec<store::Volume> = Vec::new();
    let result = (|| {
        let mut points = Vec::new();
        let mut requests = Vec::new();
        for (dest, p) in &planned {
            let (s, origin) = match p {
                Planned::Existing(m) => {
                    if m.kind == "volume" {
                        store::get(root, &m.name)?;
                    }
                    points.push(m.clone());
                    continue;
                }
                Planned::New(s, o) => (s, *o),
            };
            if origin == Origin::MountFlag {
                requests.push(MountRequest {
                    kind: s.kind.clone(),
                    source: s.source.clone(),
                    target: s.target.clone(),
                    read_only: s.read_only,
                    tmpfs_options: (s.kind == "tmpfs").then(|| s.tmpfs_data.clone()),
                    volume_options: (s.no_copy || !s.volume_labels.is_empty()).then(|| {
                        VolumeOptions {
                            no_copy: s.no_copy,
                            labels: s.volume_labels.clone(),
                        }
                    }),
                });
            }
            let mut mp = MountPoint {
                kind: s.kind.clone(),
                destination: dest.clone(),
                mode: s.mode.clone(),
                rw: !s.read_only,
                propagation: s.propagation.clone(),
                ..MountPoint::default()
            };
            match s.kind.as_str() {
                "bind" => mp.source = s.source.clone(),
                "volume" => {
                    let name = (!s.source.is_empty()).then_some(s.source.as_str());
                    let (v, new) =
                        store::create(root, name, s.volume_labels.clone(), BTreeMap::new())?;
                    mp.name = v.name.clone();
                    mp.source = v.data().display().to_string();
                    mp.driver = "local".into();
                    if origin != Origin::Image && mp.mode.is_empty() {
                        mp.mode = "z".into();
                    }
                    if new {
                        made.push(v);
                    }
                }
                _ => {}
            }
            points.push(mp);
        }
        Ok((points, requests))
    })();
    if result.is_err() {
        for v in &made {
            let _ = store::delete(root, v);
        }
    }
    result
}

/// Create the mount point `dest` inside the rootfs (through the overlay) when missing: a
/// directory, or an empty file for a bind of a file. Returns the symlink-free container path.
fn ensure_target(rootfs: &Path, dest: &str, dir: bool) -> Result<String> {
    let p =
        berth_store::inroot::resolve(rootfs, dest, true).ctx("resolving the mount point", dest)?;
    match fs::symlink_metadata(&p) {
        Ok(m) if dir && !m.is_dir() => {
            return Err(RunnerError::invalid(
                "mount",
                format!("cannot mount a directory over existing file, file exists {dest}"),
            ));
        }
        Ok(m) if !dir && m.is_dir() => {
            return Err(RunnerError::invalid(
                "mount",
                format!("cannot mount a file over existing directory {dest}"),
            ));
        }
        Ok(_) => {}
        Err(_) if dir => fs::create_dir_all(&p).ctx("creating the mount point", &p)?,
        Err(_) => {
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).ctx("creating the mount point", parent)?;
            }
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .ctx("creating the mount point", &p)?;
        }
    }
    Ok(copy::container_path(rootfs, &p))
}

/// Whether image content may be copied into the volume at `m` (not with `nocopy`).
fn copy_wanted(c: &Container, m: &MountPoint) -> bool {
    !m.mode.split(',').any(|o| o == "nocopy")
        && !c.record.host_config.mounts.iter().any(|r| {
            clean(&r.target) == m.destination
                && r.volume_options.as_ref().is_some_and(|o| o.no_copy)
        })
}

/// Docker's copy-up: an empty volume takes the image's content at its path.
fn copy_up(v: &store::Volume, rootfs: &Path, dest: &str) -> Result<()> {
    let _lock = FileLock::acquire(&v.dir.join("lock"))?;
    let data = v.data();
    if !copy::is_empty_dir(&data).ctx("reading", &data)? {
        return Ok(());
    }
    let src = berth_store::inroot::resolve(rootfs, dest, true).ctx("resolving", dest)?;
    match fs::symlink_metadata(&src) {
        Ok(m) if m.is_dir() => copy::copy_tree(&src, &data)
            .map_err(|e| RunnerError::io("copying the image's content into volume", &data, e)),
        _ => Ok(()),
    }
}

fn bind_options(ro: bool, propagation: &str) -> Vec<String> {
    let mut o = vec![
        "rbind".to_string(),
        if propagation.is_empty() {
            "rprivate".into()
        } else {
            propagation.to_string()
        },
    ];
    if ro {
        o.push("ro".into());
    }
    o
}

/// At each start, with the rootfs mounted at `rootfs`: fill new empty named/anonymous volumes
/// from the image's content at their path (Docker's copy-up, at the first start), and return
/// the runtime mounts, parents before children.
pub fn prepare(runner: &impl Containers, c: &Container, rootfs: &Path) -> Result<Vec<ExtraMount>> {
    let root = runner.root();
    let hc = &c.record.host_config;
    let first_start = c.state.started_at == ZERO_TIME || c.state.started_at.is_empty();
    // Mount points with, for `--tmpfs DST:OPTS`, the options.
    let mut items: Vec<(MountPoint, Option<String>)> =
        c.record.mounts.iter().map(|m| (m.clone(), None)).collect();
    for (d, o) in &hc.tmpfs {
        let m = MountPoint {
            kind: "tmpfs".into(),
            destination: clean(d),
            rw: true,
            ..MountPoint::default()
        };
        items.push((m, Some(o.clone())));
    }
    items.sort_by_key(|(m, _)| m.destination.split('/').filter(|s| !s.is_empty()).count());

    let mut out = Vec::new();
    for (m, tmpfs_data) in &items {
        let dest = &m.destination;
        match m.kind.as_str() {
            "bind" => {
                let src = Path::new(&m.source);
                if fs::symlink_metadata(src).is_err() {
                    let from_mount_flag = hc
                        .mounts
                        .iter()
                        .any(|r| r.kind == "bind" && clean(&r.target) == *dest);
                    if from_mount_flag {
                        return Err(RunnerError::invalid(
                            "mount config for type \"bind\"",
                            format!("bind source path does not exist: {}", m.source),
                        ));
                    }
                    // `-v /host:/ctr` makes a missing host directory, as Docker does.
                    fs::create_dir_all(src).ctx("creating mount source path", src)?;
                }
                let is_dir = fs::metadata(src).ctx("reading", src)?.is_dir();
                out.push(ExtraMount {
                    destination: ensure_target(rootfs, dest, is_dir)?,
                    kind: "bind".into(),
                    source: m.source.clone(),
                    options: bind_options(!m.rw, &m.propagation),
                });
            }
            "volume" => {
                let v = store::get(root, &m.name)?;
                let target = ensure_target(rootfs, dest, true)?;
                let device = v.meta.options.get("device");
                if first_start && device.is_none() && copy_wanted(c, m) {
                    copy_up(&v, rootfs, dest)?;
                }
                out.push(match (device, v.meta.options.get("type")) {
                    // A local volume with driver options mounts its device (`--opt type=…`).
                    (Some(dev), Some(t)) => {
                        let mut options: Vec<String> = v
                            .meta
                            .options
                            .get("o")
                            .map(|o| o.split(',').map(String::from).collect())
                            .unwrap_or_default();
                        if !m.rw {
                            options.push("ro".into());
                        }
                        let kind = if t == "none" { "bind" } else { t.as_str() };
                        ExtraMount {
                            destination: target,
                            kind: kind.into(),
                            source: dev.clone(),
                            options,
                        }
                    }
                    _ => ExtraMount {
                        destination: target,
                        kind: "bind".into(),
                        source: v.data().display().to_string(),
                        options: bind_options(!m.rw, ""),
                    },
                });
            }
            "tmpfs" => {
                let data = match tmpfs_data {
                    Some(d) => d.clone(),
                    None => hc
                        .mounts
                        .iter()
                        .find(|r| r.kind == "tmpfs" && clean(&r.target) == *dest)
                        .and_then(|r| r.tmpfs_options.clone())
                        .unwrap_or_else(|| if m.rw { String::new() } else { "ro".into() }),
                };
                out.push(ExtraMount {
                    destination: ensure_target(rootfs, dest, true)?,
                    kind: "tmpfs".into(),
                    source: "tmpfs".into(),
                    options: spec::tmpfs_options(&data)?,
                });
            }
            other => {
                return Err(RunnerError::invalid(
                    "mount",
                    format!("unknown mount type {other:?} at {dest}"),
                ));
            }
        }
    }
    Ok(out)
}

/// At `rm`: with `remove_anonymous` (`rm -v`, `--rm`), delete the container's anonymous volumes
/// unless another container uses them. Named volumes are never removed here.
pub fn release(runner: &impl Containers, c: &Container, remove_anonymous: bool) -> Result<()> {
    if !remove_anonymous || !c.record.mounts.iter().any(|m| m.kind == "volume") {
        return Ok(());
    }
    let root = runner.root();
    let _lock = crate::container::store::containers_lock(root)?;
    let users = store::users(runner)?;
    for m in c.record.mounts.iter().filter(|m| m.kind == "volume") {
        let Ok(v) = store::get(root, &m.name) else {
            continue;
        };
        let shared = users
            .get(&m.name)
            .is_some_and(|ids| ids.iter().any(|id| id != c.id()));
        if v.meta.anonymous && !shared {
            store::delete(root, &v)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::state::{ContainerPaths, ContainerRecord, State};

    /// A state root's containers without a Runner (no store, no images): what volumes need.
    struct Fake {
        root: PathBuf,
        containers: Vec<Container>,
    }

    impl Containers for Fake {
        fn root(&self) -> &Path {
            &self.root
        }
        fn get(&self, spec: &str) -> Result<Container> {
            self.containers
                .iter()
                .find(|c| c.name() == spec || c.id() == spec)
                .cloned()
                .ok_or_else(|| RunnerError::NotFound(spec.to_string()))
        }
        fn list(&self) -> Result<Vec<Container>> {
            Ok(self.containers.clone())
        }
        fn update_state(&self, c: &mut Container, f: impl FnOnce(&mut State)) -> Result<()> {
            f(&mut c.state);
            Ok(())
        }
    }

    fn container(id: &str, name: &str, mounts: Vec<MountPoint>) -> Container {
        Container {
            record: ContainerRecord {
                id: id.into(),
                name: name.into(),
                mounts,
                ..Default::default()
            },
            state: State::default(),
            paths: ContainerPaths {
                dir: PathBuf::from("/nonexistent"),
            },
        }
    }

    #[test]
    fn plan_makes_named_and_image_volumes_and_volumes_from_reuses_them_without_a_runner() {
        let tmp = tempfile::tempdir().unwrap();
        let mut h = Fake {
            root: tmp.path().to_path_buf(),
            containers: Vec::new(),
        };
        let opts = CreateOptions {
            volumes: vec!["data:/data:ro".into()],
            ..Default::default()
        };
        let (points, requests) = plan(&h, &opts, &["/cache".to_string()]).unwrap();
        assert!(requests.is_empty(), "only --mount makes requests");
        let data = points.iter().find(|m| m.destination == "/data").unwrap();
        assert_eq!((data.name.as_str(), data.rw), ("data", false));
        let cache = points.iter().find(|m| m.destination == "/cache").unwrap();
        assert_eq!(cache.name.len(), 64, "an anonymous volume: {cache:?}");
        assert!(store::get(tmp.path(), "data").is_ok());
        assert!(store::get(tmp.path(), &cache.name).is_ok());

        // Another container takes them over with --volumes-from.
        h.containers
            .push(container(&"a".repeat(64), "first", points.clone()));
        let from = CreateOptions {
            volumes_from: vec!["first".into()],
            ..Default::default()
        };
        let (taken, _) = plan(&h, &from, &[]).unwrap();
        assert_eq!(taken, points);
        let missing = CreateOptions {
            volumes_from: vec!["nobody".into()],
            ..Default::default()
        };
        assert!(matches!(
            plan(&h, &missing, &[]),
            Err(RunnerError::NotFound(n)) if n == "nobody"
        ));
    }

    #[test]
    fn volume_rm_refuses_a_volume_in_use_and_prune_keeps_it_without_a_runner() {
        let tmp = tempfile::tempdir().unwrap();
        let mut h = Fake {
            root: tmp.path().to_path_buf(),
            containers: Vec::new(),
        };
        let opts = CreateOptions {
            volumes: vec!["/anon".into()],
            ..Default::default()
        };
        let (points, _) = plan(&h, &opts, &[]).unwrap();
        let name = points[0].name.clone();
        h.containers
            .push(container(&"b".repeat(64), "user", points));
        let err = store::remove(&h, &name).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("remove {name}: volume is in use - [{}]", "b".repeat(64))
        );
        assert!(matches!(
            err,
            RunnerError::Volume(conflict::VolumeConflict::InUse { .. })
        ));
        assert!(store::prune(&h, false, &|_| false).unwrap().is_empty());
        h.containers.clear();
        let pruned = store::prune(&h, false, &|_| false).unwrap();
        assert_eq!(pruned.len(), 1);
        assert_eq!(pruned[0].0, name);
    }
}

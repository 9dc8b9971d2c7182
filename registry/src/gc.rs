//! Garbage collection (`berth registry gc`) for either backend, through its
//! [`Inventory`], as distribution's
//! `registry garbage-collect` with its default of keeping untagged manifests.
//!
//! Mark: every manifest linked into a repository (tagged or not) is live, and so is what it
//! reaches: an index's child manifests, a manifest's config and layers, and the manifests whose
//! `subject` is a live manifest (referrers). Sweep: every stored blob that is not marked goes,
//! with its links in every repository (on object storage: its descriptor and data object), and
//! so do upload sessions untouched for longer than the grace period and data objects that no
//! blob names (an upload that crashed while it finished).
//!
//! The grace period is what makes it safe to run next to a serving registry. Blobs and links are
//! listed only after the mark phase, and one whose mtime is within the grace period is kept even
//! when unmarked: a push that uploaded a blob while the mark ran has not put its manifest yet,
//! and must find the blob when it does. Manifests put within the grace period are marked from
//! once more just before the sweep, so a push that reused an old, unreferenced blob (HEAD said
//! it exists) while the mark ran keeps it too. What no grace can cover is a manifest put between
//! that last pass and the deletions (milliseconds); `--grace` must exceed the longest time a
//! client takes from uploading a blob to putting the manifest that references it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use oci_spec::image::Digest;
use serde_json::Value;
use uuid::Uuid;

use crate::endpoint::{Name, parse_digest};
use crate::storage::StorageError;
use crate::storage::inventory::{FsInventory, Inventory, Stamped};

/// The default `--grace`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("not a registry storage directory (no blobs/sha256/ or repositories/)")]
    NotStorage,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "manifest {digest} in repository {repo} is unreadable ({reason}); fix or delete it, nothing was deleted"
    )]
    Manifest {
        repo: Name,
        digest: Digest,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Report what would be deleted, delete nothing.
    pub dry_run: bool,
    /// Keep anything modified more recently than this, marked or not.
    pub grace: Duration,
}

/// One thing swept (or, in a dry run, that would be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swept {
    Blob(Digest),
    Upload {
        repo: Name,
        id: Uuid,
    },
    /// An object-storage data object no blob names (a crashed upload's), by key.
    Data(String),
}

impl Swept {
    /// The line printed for it, worded as distribution's garbage collector does.
    pub fn line(&self, dry_run: bool) -> String {
        match (self, dry_run) {
            (Swept::Blob(d), true) => format!("blob eligible for deletion: {d}"),
            (Swept::Blob(d), false) => format!("deleting blob: {d}"),
            (Swept::Upload { repo, id }, true) => {
                format!("upload eligible for deletion: {repo}/{}", id.hyphenated())
            }
            (Swept::Upload { repo, id }, false) => {
                format!("deleting upload: {repo}/{}", id.hyphenated())
            }
            (Swept::Data(k), true) => format!("orphaned data eligible for deletion: {k}"),
            (Swept::Data(k), false) => format!("deleting orphaned data: {k}"),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Stored blobs found live (manifests included).
    pub marked: usize,
    pub blobs_deleted: usize,
    pub uploads_purged: usize,
    /// Data objects of crashed uploads (object storage only).
    pub data_deleted: usize,
}

impl Summary {
    pub fn line(&self, dry_run: bool) -> String {
        let Summary {
            marked,
            blobs_deleted: b,
            uploads_purged: u,
            data_deleted: o,
        } = self;
        let mut line = if dry_run {
            format!(
                "{marked} blobs marked, {b} blobs eligible for deletion, {u} uploads eligible for purging"
            )
        } else {
            format!("{marked} blobs marked, {b} blobs deleted, {u} uploads purged")
        };
        if *o > 0 {
            line.push_str(&if dry_run {
                format!(", {o} orphaned data objects eligible for deletion")
            } else {
                format!(", {o} orphaned data objects deleted")
            });
        }
        line
    }
}

fn fresh(mtime: Option<SystemTime>, grace: Duration) -> bool {
    match mtime.map(|t| t.elapsed()) {
        Some(Ok(age)) => age < grace,
        // In the future: a clock step; keep it.
        Some(Err(_)) => true,
        // Vanished between listing and stat.
        None => false,
    }
}

/// Collect garbage in the filesystem storage at `root` (see [`collect`]).
pub fn collect_fs(
    root: &std::path::Path,
    opts: Options,
    on_swept: impl FnMut(&Swept),
) -> Result<Summary, GcError> {
    let inv = FsInventory::open(root).ok_or(GcError::NotStorage)?;
    collect(&inv, opts, on_swept)
}

/// Collect garbage in the storage `inv` shows, calling `on_swept` for each blob or upload
/// deleted (or that would be, in a dry run) as it goes.
pub fn collect(
    inv: &dyn Inventory,
    opts: Options,
    mut on_swept: impl FnMut(&Swept),
) -> Result<Summary, GcError> {
    let repos = inv.repositories()?;

    let mut marked = HashSet::new();
    for repo in &repos {
        let roots = inv.revisions(repo)?.into_iter().map(|s| s.item);
        let mut tagged = Vec::new();
        for d in inv.tag_targets(repo)? {
            if inv.has_revision(repo, &d)? {
                tagged.push(d);
            }
        }
        mark(inv, repo, roots.chain(tagged).collect(), &mut marked)?;
    }

    // Listed after the mark, so whatever a push wrote meanwhile carries a fresh mtime.
    let blobs = inv.blobs()?;
    let mut links: HashMap<Digest, Vec<(Name, Option<SystemTime>)>> = HashMap::new();
    for repo in &repos {
        for Stamped { item, mtime } in inv.links(repo)? {
            links.entry(item).or_default().push((repo.clone(), mtime));
        }
    }
    // Manifests put while the mark ran.
    for repo in inv.repositories()? {
        let recent: Vec<Digest> = inv
            .revisions(&repo)?
            .into_iter()
            .filter(|s| fresh(s.mtime, opts.grace))
            .map(|s| s.item)
            .collect();
        mark(inv, &repo, recent, &mut marked)?;
    }

    let mut summary = Summary::default();
    let stored: HashSet<&Digest> = blobs.iter().map(|b| &b.item).collect();
    summary.marked = marked.iter().filter(|d| stored.contains(d)).count();
    for b in &blobs {
        let d = &b.item;
        let repo_links = links.remove(d).unwrap_or_default();
        if marked.contains(d)
            || fresh(b.mtime, opts.grace)
            || repo_links.iter().any(|(_, t)| fresh(*t, opts.grace))
        {
            continue;
        }
        let swept = Swept::Blob(d.clone());
        if !opts.dry_run {
            // Links first: a crash in between leaves an unlinked blob the next run finds.
            for (repo, _) in &repo_links {
                inv.remove_link(repo, d)?;
            }
            inv.remove_blob(d)?;
        }
        on_swept(&swept);
        summary.blobs_deleted += 1;
    }
    // Links whose blob is not stored serve nothing; drop the old unmarked ones quietly.
    if !opts.dry_run {
        for (d, repo_links) in links {
            if marked.contains(&d) || repo_links.iter().any(|(_, t)| fresh(*t, opts.grace)) {
                continue;
            }
            for (repo, _) in repo_links {
                tracing::debug!("removing link to missing blob {d} from {repo}");
                inv.remove_link(&repo, &d)?;
            }
        }
    }

    for repo in &inv.upload_repositories()? {
        for up in inv.uploads(repo)? {
            if fresh(up.mtime, opts.grace) {
                continue;
            }
            if !opts.dry_run {
                inv.remove_upload(repo, up.item)?;
            }
            on_swept(&Swept::Upload {
                repo: repo.clone(),
                id: up.item,
            });
            summary.uploads_purged += 1;
        }
    }

    // Data objects of uploads that crashed between completing and publishing (kept while
    // fresh, like everything else: the grace also covers an inventory racing a finish).
    for o in inv.orphaned_data()? {
        if fresh(o.mtime, opts.grace) {
            continue;
        }
        if !opts.dry_run {
            inv.remove_data(&o.item)?;
        }
        on_swept(&Swept::Data(o.item));
        summary.data_deleted += 1;
    }
    Ok(summary)
}

/// Mark `roots` (manifests in `repo`) and everything they reach.
fn mark(
    inv: &dyn Inventory,
    repo: &Name,
    roots: Vec<Digest>,
    marked: &mut HashSet<Digest>,
) -> Result<(), GcError> {
    let mut seen = HashSet::new();
    let mut work = roots;
    while let Some(m) = work.pop() {
        if !seen.insert(m.clone()) {
            continue;
        }
        marked.insert(m.clone());
        for r in inv.referrers_of(repo, &m)? {
            if inv.has_revision(repo, &r)? {
                work.push(r);
            }
        }
        // A revision whose bytes are gone has nothing left to follow.
        let Some(bytes) = inv.read_blob(&m)? else {
            continue;
        };
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| GcError::Manifest {
            repo: repo.clone(),
            digest: m.clone(),
            reason: e.to_string(),
        })?;
        let digests = |key: &str| -> Vec<Digest> {
            v.get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(descriptor_digest)
                .collect()
        };
        work.extend(digests("manifests"));
        marked.extend(digests("layers"));
        marked.extend(digests("blobs"));
        marked.extend(v.get("config").and_then(descriptor_digest));
    }
    Ok(())
}

/// The digest of a descriptor; one this storage cannot hold (another algorithm) is skipped.
fn descriptor_digest(d: &Value) -> Option<Digest> {
    parse_digest(d.get("digest")?.as_str()?).ok()
}

/// Parse a duration such as `0s`, `90s`, `30m`, `1h`, `2h30m`, `7d`, `500ms` (or a bare `0`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("invalid duration {s:?}: {why} (e.g. 0s, 30m, 1h, 2h30m, 7d)");
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if n_end == 0 {
            return Err(bad("expected a number"));
        }
        let n: u64 = rest[..n_end].parse().map_err(|_| bad("number too large"))?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let millis_per = match &rest[..u_end] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad("unknown unit")),
        };
        rest = &rest[u_end..];
        let part = n
            .checked_mul(millis_per)
            .map(Duration::from_millis)
            .ok_or_else(|| bad("too long"))?;
        total = total.checked_add(part).ok_or_else(|| bad("too long"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h").unwrap(), DEFAULT_GRACE);
        assert_eq!(parse_duration("2h30m").unwrap(), Duration::from_secs(9000));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "h", "10", "1x", "1h-2m", "99999999999999999999s"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.starts_with("invalid duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn freshness() {
        let now = SystemTime::now();
        assert!(fresh(Some(now), DEFAULT_GRACE));
        assert!(!fresh(Some(now - Duration::from_secs(7200)), DEFAULT_GRACE));
        assert!(!fresh(Some(now - Duration::from_millis(5)), Duration::ZERO));
        assert!(fresh(Some(now + Duration::from_secs(60)), Duration::ZERO));
        assert!(!fresh(None, DEFAULT_GRACE));
    }

    #[test]
    fn refuses_a_directory_that_is_not_storage() {
        let dir = tempfile::TempDir::new().unwrap();
        let opts = Options {
            dry_run: true,
            grace: Duration::ZERO,
        };
        let e = collect_fs(dir.path(), opts, |_| {}).unwrap_err();
        assert!(
            e.to_string().contains("not a registry storage directory"),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    use crate::storage::fs::{FsStorage, from_hasher};
    use crate::storage::{NewManifest, Storage};
    use sha2::{Digest as _, Sha256};

    fn digest(b: &[u8]) -> Digest {
        let mut h = Sha256::new();
        h.update(b);
        from_hasher(h)
    }

    async fn put_blob(st: &FsStorage, repo: &Name, b: &[u8]) -> Digest {
        let d = digest(b);
        let bytes = bytes::Bytes::copy_from_slice(b);
        let body = Box::pin(futures::stream::once(async move { Ok(bytes) }));
        st.blob_put(repo, &d, body, None).await.unwrap();
        d
    }

    async fn put_manifest(
        st: &FsStorage,
        repo: &Name,
        json: &str,
        subject: Option<&Digest>,
    ) -> Digest {
        let d = digest(json.as_bytes());
        let subject = subject.map(|s| {
            let desc = oci_spec::image::Descriptor::new(
                oci_spec::image::MediaType::ImageManifest,
                json.len() as u64,
                d.clone(),
            );
            (s.clone(), desc)
        });
        let m = NewManifest {
            digest: d.clone(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            bytes: json.as_bytes().to_vec().into(),
            subject,
        };
        st.manifest_put(repo, m, vec![]).await.unwrap();
        d
    }

    fn image(config: &Digest, layer: &Digest, extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"a","digest":"{config}","size":1}},"layers":[{{"mediaType":"b","digest":"{layer}","size":1}}]{extra}}}"#
        )
    }

    #[tokio::test]
    async fn follows_indexes_and_referrers_and_sweeps_the_rest() {
        let dir = tempfile::TempDir::new().unwrap();
        let st = FsStorage::open(dir.path()).unwrap();
        let repo = Name::parse("multi/arch").unwrap();
        // A child manifest stored only as a blob (no revision): reachable through the index.
        let (c1, l1) = (
            put_blob(&st, &repo, b"c1").await,
            put_blob(&st, &repo, b"l1").await,
        );
        let child = image(&c1, &l1, "");
        let child_d = put_blob(&st, &repo, child.as_bytes()).await;
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"x","digest":"{child_d}","size":{}}}]}}"#,
            child.len()
        );
        let index_d = put_manifest(&st, &repo, &index, None).await;
        let (c2, l2) = (
            put_blob(&st, &repo, b"c2").await,
            put_blob(&st, &repo, b"l2").await,
        );
        let sig = image(
            &c2,
            &l2,
            &format!(r#","subject":{{"mediaType":"x","digest":"{index_d}","size":1}}"#),
        );
        let sig_d = put_manifest(&st, &repo, &sig, Some(&index_d)).await;
        let orphan = put_blob(&st, &repo, b"orphan").await;

        let opts = Options {
            dry_run: false,
            grace: Duration::ZERO,
        };
        let mut swept = Vec::new();
        let summary = collect_fs(dir.path(), opts, |s| swept.push(s.clone())).unwrap();
        assert_eq!(swept, vec![Swept::Blob(orphan.clone())]);
        assert_eq!(
            summary,
            Summary {
                marked: 7,
                blobs_deleted: 1,
                uploads_purged: 0,
                data_deleted: 0,
            }
        );
        let inv = FsInventory::open(dir.path()).unwrap();
        for d in [&c1, &l1, &child_d, &index_d, &c2, &l2, &sig_d] {
            assert!(inv.read_blob(d).unwrap().is_some(), "{d}");
        }
        assert!(inv.read_blob(&orphan).unwrap().is_none());

        // A live manifest that is not JSON stops the run before anything is deleted.
        let bad = "not json";
        let bad_d = digest(bad.as_bytes());
        st.manifest_put(
            &repo,
            NewManifest {
                digest: bad_d.clone(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                bytes: bad.as_bytes().to_vec().into(),
                subject: None,
            },
            vec![],
        )
        .await
        .unwrap();
        let extra = put_blob(&st, &repo, b"another orphan").await;
        let e = collect_fs(dir.path(), opts, |_| {}).unwrap_err();
        assert!(e.to_string().contains(&bad_d.to_string()), "{e}");
        assert!(inv.read_blob(&extra).unwrap().is_some());
    }
}

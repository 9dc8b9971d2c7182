//! The `storage` setting: a directory, a bucket URL (`s3://`, `az://`, `gs://`) or a
//! `[storage]` table (see `config.rs` for its keys), resolved into [`StorageConfig`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Where the registry keeps what it stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// A directory on this machine (the filesystem backend).
    Fs(PathBuf),
    /// A bucket (S3, GCS) or container (Azure): several replicas may serve the same one.
    Bucket(BucketConfig),
}

impl std::fmt::Display for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageConfig::Fs(p) => write!(f, "{}", p.display()),
            StorageConfig::Bucket(c) => {
                write!(f, "{}://{}", c.kind.scheme(), c.bucket)?;
                if !c.prefix.is_empty() {
                    write!(f, "/{}", c.prefix)?;
                }
                Ok(())
            }
        }
    }
}

/// Which object store a bucket is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketKind {
    /// Amazon S3 or an S3-compatible server.
    S3,
    /// Azure Blob Storage (or Azurite).
    Azure,
    /// Google Cloud Storage.
    Gcs,
}

impl BucketKind {
    pub const ALL: [BucketKind; 3] = [BucketKind::S3, BucketKind::Azure, BucketKind::Gcs];

    /// `kind = "…"` in the `[storage]` table.
    pub fn name(self) -> &'static str {
        match self {
            BucketKind::S3 => "s3",
            BucketKind::Azure => "azure",
            BucketKind::Gcs => "gcs",
        }
    }

    /// The `--storage` URL scheme (the ones the providers' own tools use).
    pub fn scheme(self) -> &'static str {
        match self {
            BucketKind::S3 => "s3",
            BucketKind::Azure => "az",
            BucketKind::Gcs => "gs",
        }
    }

    /// What the provider calls a bucket.
    pub fn noun(self) -> &'static str {
        match self {
            BucketKind::Azure => "container",
            BucketKind::S3 | BucketKind::Gcs => "bucket",
        }
    }

    /// The smallest and largest part size the provider's multipart upload takes, and why.
    ///
    /// S3 and GCS's XML multipart upload: parts of 5 MiB to 5 GiB (but for the last). Azure's
    /// blocks have no minimum but at most 50,000 make a blob, so parts under 1 MiB would cap a
    /// blob below 50 GB; a block is at most 4000 MiB.
    pub fn part_limits(self) -> (u64, u64, &'static str) {
        match self {
            BucketKind::S3 => (MIN_PART_SIZE, 5 << 30, "S3's part size is 5 MiB to 5 GiB"),
            BucketKind::Gcs => (
                MIN_PART_SIZE,
                5 << 30,
                "GCS's multipart part size is 5 MiB to 5 GiB",
            ),
            BucketKind::Azure => (
                1 << 20,
                4000 << 20,
                "an Azure block is at most 4000 MiB, and at most 50,000 of them make a blob, so berth takes 1 MiB to 4000 MiB",
            ),
        }
    }
}

/// The smallest part S3 accepts (but for the last one).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Part size of multipart uploads: the size of the chunks berth's own client sends, so each
/// PATCH becomes exactly one part.
pub const DEFAULT_PART_SIZE: u64 = 8 << 20;

/// A bucket of an object store. Settings that only one kind has are None for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketConfig {
    pub kind: BucketKind,
    /// The bucket (S3, GCS) or container (Azure).
    pub bucket: String,
    /// Key prefix, without leading or trailing `/` (empty: the bucket's root).
    pub prefix: String,
    /// S3: the server's URL; Azure: the account's blob service URL; GCS: the base URL.
    pub endpoint: Option<String>,
    /// S3 only.
    pub region: Option<String>,
    /// Azure only: the storage account.
    pub account: Option<String>,
    /// Azure only: Azurite (its well-known account and key unless set, at
    /// `AZURITE_BLOB_STORAGE_URL` or http://127.0.0.1:10000).
    pub use_emulator: Option<bool>,
    pub allow_http: Option<bool>,
    pub part_size: u64,
    pub max_retries: usize,
    pub retry_timeout: Duration,
    pub request_timeout: Duration,
    /// S3 and Azure: blob GETs are redirected to presigned URLs (distribution's default).
    pub redirect: bool,
}

impl BucketConfig {
    pub fn new(kind: BucketKind, bucket: &str, prefix: &str) -> BucketConfig {
        BucketConfig {
            kind,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: None,
            region: None,
            account: None,
            use_emulator: None,
            allow_http: None,
            part_size: DEFAULT_PART_SIZE,
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(60),
            redirect: matches!(kind, BucketKind::S3 | BucketKind::Azure),
        }
    }
}

/// The accepted `--storage` forms, for error messages.
const STORAGE_FORMS: &str =
    "s3://BUCKET[/PREFIX], az://CONTAINER[/PREFIX], gs://BUCKET[/PREFIX] or a directory";

impl StorageConfig {
    /// `--storage`: `s3://BUCKET[/PREFIX]`, `az://CONTAINER[/PREFIX]`, `gs://BUCKET[/PREFIX]`
    /// or a directory.
    pub fn parse_flag(s: &str) -> Result<StorageConfig, String> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Ok(StorageConfig::Fs(PathBuf::from(s)));
        };
        let Some(kind) = BucketKind::ALL.into_iter().find(|k| k.scheme() == scheme) else {
            return Err(format!(
                "storage {s:?}: {scheme}:// is not a storage URL: use {STORAGE_FORMS}"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            let noun = kind.noun();
            return Err(format!(
                "storage {s:?}: the URL names no {noun} ({scheme}://{}[/PREFIX])",
                noun.to_uppercase()
            ));
        }
        Ok(StorageConfig::Bucket(BucketConfig::new(
            kind, bucket, prefix,
        )))
    }
}

/// `storage` in the file: a directory, or a `[storage]` table.
#[derive(Debug, PartialEq)]
pub enum StorageSetting {
    Path(PathBuf),
    Table(Box<StorageTable>),
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StorageTable {
    pub kind: String,
    pub path: Option<PathBuf>,
    pub bucket: Option<String>,
    pub container: Option<String>,
    pub prefix: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub account: Option<String>,
    pub use_emulator: Option<bool>,
    pub allow_http: Option<bool>,
    pub part_size: Option<u64>,
    pub max_retries: Option<usize>,
    pub retry_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub redirect: Option<bool>,
}

impl<'de> Deserialize<'de> for StorageSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StorageSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a directory, or a table with kind = \"fs\", \"s3\", \"azure\" or \"gcs\"",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StorageSetting, E> {
                Ok(StorageSetting::Path(PathBuf::from(v)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<StorageSetting, A::Error> {
                StorageTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|t| StorageSetting::Table(Box::new(t)))
            }
        }
        d.deserialize_any(V)
    }
}

/// `kind` values, for error messages.
const KINDS: &str = "\"fs\", \"s3\", \"azure\" or \"gcs\"";

/// Quote and join kinds as a message names them: `"s3"`, `"s3" or "gcs"`, …
fn kinds_phrase(kinds: &[&str]) -> String {
    let q: Vec<String> = kinds.iter().map(|k| format!("\"{k}\"")).collect();
    match q.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => q.concat(),
    }
}

impl StorageSetting {
    pub fn resolve(self) -> Result<StorageConfig, String> {
        let t = match self {
            StorageSetting::Path(p) => return Ok(StorageConfig::Fs(p)),
            StorageSetting::Table(t) => *t,
        };
        let kind = match t.kind.as_str() {
            "fs" | "filesystem" => None,
            k => match BucketKind::ALL.into_iter().find(|b| b.name() == k) {
                Some(b) => Some(b),
                None => {
                    return Err(format!(
                        "[storage] kind = {k:?} is not a storage kind: use {KINDS}"
                    ));
                }
            },
        };
        const BUCKETS: &[&str] = &["s3", "azure", "gcs"];
        // Each setting and the kinds that have it.
        let owners: [(&str, bool, &[&str]); 14] = [
            ("path", t.path.is_some(), &["fs"]),
            ("bucket", t.bucket.is_some(), &["s3", "gcs"]),
            ("container", t.container.is_some(), &["azure"]),
            ("prefix", t.prefix.is_some(), BUCKETS),
            ("endpoint", t.endpoint.is_some(), BUCKETS),
            ("region", t.region.is_some(), &["s3"]),
            ("account", t.account.is_some(), &["azure"]),
            ("use-emulator", t.use_emulator.is_some(), &["azure"]),
            ("allow-http", t.allow_http.is_some(), BUCKETS),
            ("part-size", t.part_size.is_some(), BUCKETS),
            ("max-retries", t.max_retries.is_some(), BUCKETS),
            ("retry-timeout", t.retry_timeout.is_some(), BUCKETS),
            ("request-timeout", t.request_timeout.is_some(), BUCKETS),
            ("redirect", t.redirect.is_some(), &["s3", "azure"]),
        ];
        let this = kind.map_or("fs", BucketKind::name);
        if let Some((k, _, owners)) = owners
            .iter()
            .find(|(_, set, owners)| *set && !owners.contains(&this))
        {
            let hint = match (*k, kind) {
                ("bucket", Some(BucketKind::Azure)) => ": an Azure container is named by container",
                ("container", Some(_)) => ": a bucket is named by bucket",
                ("path", Some(_)) => ": a bucket takes bucket (and prefix)",
                _ => "",
            };
            return Err(format!(
                "[storage] {k} is a setting of kind = {}{hint}",
                kinds_phrase(owners)
            ));
        }
        let Some(kind) = kind else {
            return t
                .path
                .map(StorageConfig::Fs)
                .ok_or_else(|| "[storage] kind = \"fs\" needs path (a directory)".into());
        };
        let noun = kind.noun();
        let bucket = match kind {
            BucketKind::Azure => t.container,
            BucketKind::S3 | BucketKind::Gcs => t.bucket,
        }
        .filter(|b| !b.is_empty())
        .ok_or_else(|| format!("[storage] kind = \"{this}\" needs {noun}"))?;
        let mut c = BucketConfig::new(kind, &bucket, t.prefix.as_deref().unwrap_or(""));
        c.endpoint = t.endpoint;
        c.region = t.region;
        c.account = t.account;
        c.use_emulator = t.use_emulator;
        c.allow_http = t.allow_http;
        if c.use_emulator == Some(true) && c.endpoint.is_some() {
            return Err("[storage] use-emulator reaches Azurite at AZURITE_BLOB_STORAGE_URL (default http://127.0.0.1:10000) and ignores endpoint: set that variable, or leave use-emulator out and set endpoint to the account's URL (for Azurite http://HOST:PORT/devstoreaccount1) with account".into());
        }
        if let Some(p) = t.part_size {
            let (min, max, why) = kind.part_limits();
            if p < min {
                return Err(format!(
                    "[storage] part-size {p} is below the minimum part size of {min} bytes ({why})"
                ));
            }
            if p > max {
                return Err(format!(
                    "[storage] part-size {p} is above the maximum part size of {max} bytes ({why})"
                ));
            }
            c.part_size = p;
        }
        if let Some(n) = t.max_retries {
            c.max_retries = n;
        }
        if let Some(r) = t.redirect {
            c.redirect = r;
        }
        let dur = |v: Option<String>, key: &str, default: Duration| match v {
            None => Ok(default),
            Some(v) => crate::gc::parse_duration(&v).map_err(|e| format!("[storage] {key}: {e}")),
        };
        c.retry_timeout = dur(t.retry_timeout, "retry-timeout", c.retry_timeout)?;
        c.request_timeout = dur(t.request_timeout, "request-timeout", c.request_timeout)?;
        if c.request_timeout.is_zero() {
            return Err("[storage] request-timeout must be more than 0s".into());
        }
        Ok(StorageConfig::Bucket(c))
    }
}

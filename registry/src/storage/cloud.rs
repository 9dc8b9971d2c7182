//! Opening a bucket of a cloud object store — S3 (or S3-compatible), Azure Blob Storage, Google
//! Cloud Storage — as the object-storage backend: the client from the configuration and the
//! environment (as each provider's own tools read it), with the same bounded retries and
//! timeouts for all, and a probe at start-up so a missing bucket or container, refused
//! credentials or an unreachable endpoint stop the server with a clear message instead of
//! failing the first push.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::multipart::MultipartStore;
use object_store::path::Path as Key;
use object_store::signer::Signer;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, RetryConfig};

use super::object::{Bucket, ObjectStorage};
use crate::config::{BucketConfig, BucketKind};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("starting a runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{kind} settings: {why}")]
    Settings { kind: &'static str, why: String },
    #[error("{noun} {bucket:?}{at}: {why}")]
    Probe {
        noun: &'static str,
        bucket: String,
        at: String,
        why: String,
    },
}

impl OpenError {
    fn settings(cfg: &BucketConfig, e: impl std::fmt::Display) -> OpenError {
        OpenError::Settings {
            kind: provider(cfg.kind),
            why: e.to_string(),
        }
    }
}

/// The provider's name in messages.
fn provider(kind: BucketKind) -> &'static str {
    match kind {
        BucketKind::S3 => "S3",
        BucketKind::Azure => "Azure",
        BucketKind::Gcs => "GCS",
    }
}

/// The client settings every provider gets, as config keys so the environment's other client
/// settings (proxies, …) stay in force.
fn client_settings(cfg: &BucketConfig) -> [(ClientConfigKey, String); 2] {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    [
        (ClientConfigKey::Timeout, ms(cfg.request_timeout)),
        (
            ClientConfigKey::ConnectTimeout,
            ms(cfg.request_timeout.min(Duration::from_secs(5))),
        ),
    ]
}

fn retry(cfg: &BucketConfig) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: cfg.max_retries,
        retry_timeout: cfg.retry_timeout,
    }
}

/// `allow-http` as set, else true when the settings name an http:// endpoint (consent enough).
fn allow_http(cfg: &BucketConfig) -> Option<bool> {
    cfg.allow_http.or_else(|| {
        cfg.endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
            .then_some(true)
    })
}

/// The S3 client for `cfg`; settings it does not name come from `AWS_*` variables.
pub fn s3_client(cfg: &BucketConfig) -> Result<AmazonS3, OpenError> {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(&cfg.bucket);
    if let Some(e) = &cfg.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(r) = &cfg.region {
        b = b.with_region(r);
    }
    for (k, v) in client_settings(cfg) {
        b = b.with_config(AmazonS3ConfigKey::Client(k), v);
    }
    if let Some(h) = allow_http(cfg) {
        b = b.with_allow_http(h);
    }
    // Over TLS the payload's SHA-256 in the signature adds nothing TLS does not give already
    // (AWS's SDKs send UNSIGNED-PAYLOAD to S3 over HTTPS too) and costs a pass over every
    // byte — a quarter of our CPU on a push; over plain HTTP it is the only integrity check of
    // what reaches the store, so it stays. AWS_UNSIGNED_PAYLOAD decides when set.
    let tls = b
        .get_config_value(&AmazonS3ConfigKey::Endpoint)
        .is_none_or(|e| e.starts_with("https://"));
    if tls && std::env::var_os("AWS_UNSIGNED_PAYLOAD").is_none() {
        b = b.with_unsigned_payload(true);
    }
    b.with_retry(retry(cfg))
        .build()
        .map_err(|e| OpenError::settings(cfg, e))
}

/// The Azure Blob client for `cfg`; settings it does not name come from `AZURE_*` variables
/// (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`,
/// `AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`/`AZURE_TENANT_ID`, `AZURE_STORAGE_ENDPOINT`,
/// `AZURE_STORAGE_USE_EMULATOR`, …).
pub fn azure_client(cfg: &BucketConfig) -> Result<MicrosoftAzure, OpenError> {
    let mut b = MicrosoftAzureBuilder::from_env().with_container_name(&cfg.bucket);
    if let Some(a) = &cfg.account {
        b = b.with_account(a);
    }
    if let Some(e) = &cfg.endpoint {
        b = b.with_endpoint(e.clone());
    }
    if let Some(u) = cfg.use_emulator {
        b = b.with_use_emulator(u);
    }
    for (k, v) in client_settings(cfg) {
        b = b.with_config(AzureConfigKey::Client(k), v);
    }
    if let Some(h) = allow_http(cfg) {
        b = b.with_allow_http(h);
    }
    b.with_retry(retry(cfg))
        .build()
        .map_err(|e| OpenError::settings(cfg, e))
}

/// The GCS client for `cfg`; settings it does not name come from `GOOGLE_*` variables
/// (`GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_SERVICE_ACCOUNT_KEY`, `GOOGLE_APPLICATION_CREDENTIALS`,
/// `GOOGLE_BASE_URL`, …), else the application default credentials.
pub fn gcs_client(cfg: &BucketConfig) -> Result<GoogleCloudStorage, OpenError> {
    let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(&cfg.bucket);
    if let Some(e) = &cfg.endpoint {
        b = b.with_base_url(e);
    }
    for (k, v) in client_settings(cfg) {
        b = b.with_config(GoogleConfigKey::Client(k), v);
    }
    if let Some(h) = allow_http(cfg) {
        b = b.with_config(
            GoogleConfigKey::Client(ClientConfigKey::AllowHttp),
            h.to_string(),
        );
    }
    b.with_retry(retry(cfg))
        .build()
        .map_err(|e| OpenError::settings(cfg, e))
}

/// Open the bucket and check it answers: list the prefix, and (unless `read_only`) write and
/// delete a probe object, so missing write permission shows now too.
pub async fn open(cfg: &BucketConfig, read_only: bool) -> Result<ObjectStorage, OpenError> {
    fn both<T: ObjectStore + MultipartStore>(
        c: Arc<T>,
    ) -> (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>) {
        (c.clone(), c)
    }
    let mut signer: Option<Arc<dyn Signer>> = None;
    let (store, parts) = match cfg.kind {
        BucketKind::S3 => {
            let c = Arc::new(s3_client(cfg)?);
            if cfg.redirect {
                signer = Some(c.clone());
            }
            both(c)
        }
        BucketKind::Azure => {
            let c = Arc::new(azure_client(cfg)?);
            if cfg.redirect {
                // A service SAS, from the account key or a user delegation key.
                signer = Some(c.clone());
            }
            both(c)
        }
        BucketKind::Gcs => {
            let c = Arc::new(gcs_client(cfg)?);
            // signer: GoogleCloudStorage implements Signer too (V4, service-account key)
            both(c)
        }
    };
    let bucket = Bucket {
        store,
        parts,
        prefix: cfg.prefix.clone(),
        signer,
    };
    probe(&bucket, cfg, read_only).await?;
    let bucket = check_signer(bucket, cfg).await;
    Ok(ObjectStorage::new(bucket, cfg.part_size as usize))
}

/// Sign one URL now: credentials that cannot sign (an Azure SAS token, a managed identity
/// without the right to a user delegation key…) turn redirects off once, with a warning,
/// instead of failing to sign on every GET.
async fn check_signer(mut b: Bucket, cfg: &BucketConfig) -> Bucket {
    if let Some(s) = &b.signer {
        let key = b.key("_probe/redirect");
        if let Err(e) = s
            .signed_url(
                object_store::signer::Method::GET,
                &key,
                super::object::REDIRECT_VALIDITY,
            )
            .await
        {
            tracing::warn!(
                "{} cannot presign URLs with these credentials ({}): blob GETs stream through this replica (set redirect = false to silence this)",
                provider(cfg.kind),
                e
            );
            b.signer = None;
        }
    }
    b
}

async fn probe(b: &Bucket, cfg: &BucketConfig, read_only: bool) -> Result<(), OpenError> {
    let fail = |e: object_store::Error| OpenError::Probe {
        noun: cfg.kind.noun(),
        bucket: cfg.bucket.clone(),
        at: cfg
            .endpoint
            .as_deref()
            .map(|e| format!(" at {e}"))
            .unwrap_or_default(),
        why: explain(cfg.kind, &e),
    };
    let root = (!cfg.prefix.is_empty()).then(|| Key::from(cfg.prefix.as_str()));
    b.store
        .list_with_delimiter(root.as_ref())
        .await
        .map_err(fail)?;
    if !read_only {
        let key = b.key(&format!("_probe/{}", uuid::Uuid::new_v4().hyphenated()));
        b.store.put(&key, "probe".into()).await.map_err(fail)?;
        b.store.delete(&key).await.map_err(fail)?;
    }
    Ok(())
}

/// What went wrong, in the words a user can act on.
fn explain(kind: BucketKind, e: &object_store::Error) -> String {
    let text = format!("{e}");
    let mut chain = text.clone();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !chain.contains(&t) {
            chain.push_str(": ");
            chain.push_str(&t);
        }
        src = s.source();
    }
    // S3, Azure and GCS's XML API answer with an XML error body: keep its code, not the
    // document.
    if let Some(at) = chain.find("<?xml") {
        let code = chain
            .split("<Code>")
            .nth(1)
            .and_then(|c| c.split("</Code>").next())
            .map(str::to_string);
        chain.truncate(at);
        if let Some(c) = code {
            chain.push_str(&c);
        }
    }
    let missing = ["NoSuchBucket", "ContainerNotFound", "does not exist"];
    let denied = [
        "401 Unauthorized",
        "403 Forbidden",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "NoAuthenticationInformation",
    ];
    let unreachable = ["error sending request", "onnect", "timed out"];
    let any = |words: &[&str]| words.iter().any(|w| chain.contains(w));
    let hint = if any(&missing) {
        match kind {
            BucketKind::Azure => {
                "the container does not exist: create it, or fix container/account/endpoint"
            }
            BucketKind::S3 | BucketKind::Gcs => {
                "the bucket does not exist: create it, or fix bucket/endpoint"
            }
        }
    } else if any(&denied) {
        match kind {
            BucketKind::S3 => {
                "access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)"
            }
            BucketKind::Azure => {
                "access denied: check AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_SAS_KEY, or AZURE_CLIENT_ID / AZURE_CLIENT_SECRET / AZURE_TENANT_ID)"
            }
            BucketKind::Gcs => {
                "access denied: check GOOGLE_SERVICE_ACCOUNT (or GOOGLE_APPLICATION_CREDENTIALS) and that its account may read and write the bucket"
            }
        }
    } else if any(&unreachable) {
        match kind {
            BucketKind::S3 => {
                "the object store is unreachable: check endpoint (or AWS_ENDPOINT) and that it is up"
            }
            BucketKind::Azure => {
                "the object store is unreachable: check account and endpoint (or AZURE_STORAGE_ENDPOINT; AZURITE_BLOB_STORAGE_URL with use-emulator) and that it is up"
            }
            BucketKind::Gcs => {
                "the object store is unreachable: check endpoint (or GOOGLE_BASE_URL) and that it is up"
            }
        }
    } else {
        "the object store refused the probe"
    };
    format!("{hint} ({chain})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_builds_its_client_from_the_settings() {
        // No request is made: building only checks the settings.
        let mut c = BucketConfig::new(BucketKind::Azure, "c", "p");
        c.account = Some("acct".into());
        c.endpoint = Some("http://127.0.0.1:1/acct".into());
        assert!(azure_client(&c).is_ok());
        // An Azure account is needed (from the settings or AZURE_STORAGE_ACCOUNT_NAME).
        if std::env::var_os("AZURE_STORAGE_ACCOUNT_NAME").is_none() {
            let c = BucketConfig::new(BucketKind::Azure, "c", "");
            let e = azure_client(&c).unwrap_err().to_string();
            assert!(e.starts_with("Azure settings: "), "{e}");
            assert!(e.to_lowercase().contains("account"), "{e}");
        }
        let mut c = BucketConfig::new(BucketKind::S3, "b", "");
        c.endpoint = Some("http://127.0.0.1:1".into());
        assert!(s3_client(&c).is_ok());
    }

    #[test]
    fn explanations_name_the_providers_variables() {
        let e = |msg: &str| object_store::Error::Generic {
            store: "x",
            source: msg.to_string().into(),
        };
        let az = explain(
            BucketKind::Azure,
            &e(
                "Client error with status 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>long</Message></Error>",
            ),
        );
        assert!(
            az.starts_with("access denied: check AZURE_STORAGE_ACCOUNT_NAME"),
            "{az}"
        );
        assert!(
            az.ends_with("AuthenticationFailed)") && !az.contains("long"),
            "{az}"
        );
        let az = explain(
            BucketKind::Azure,
            &e(
                "404 Not Found: <?xml version=\"1.0\"?><Error><Code>ContainerNotFound</Code></Error>",
            ),
        );
        assert!(az.starts_with("the container does not exist"), "{az}");
        let gs = explain(BucketKind::Gcs, &e("error sending request for url"));
        assert!(gs.contains("GOOGLE_BASE_URL"), "{gs}");
        let gs = explain(BucketKind::Gcs, &e("status 401 Unauthorized"));
        assert!(gs.contains("GOOGLE_SERVICE_ACCOUNT"), "{gs}");
        let s3 = explain(BucketKind::S3, &e("NoSuchBucket"));
        assert!(s3.starts_with("the bucket does not exist"), "{s3}");
    }
}

//! Opening the S3 backend: the client from the configuration and the environment (as the AWS
//! tools read it), with bounded retries and timeouts, and a probe of the bucket at start-up so
//! a missing bucket or refused credentials stop the server with a clear message instead of
//! failing the first push.

use std::sync::Arc;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, RetryConfig};

use super::object::{Bucket, ObjectStorage};
use crate::config::S3Config;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("S3 settings: {0}")]
    Settings(String),
    #[error("bucket {bucket:?}{at}: {why}")]
    Probe {
        bucket: String,
        at: String,
        why: String,
    },
}

/// The S3 client for `cfg`; settings it does not name come from `AWS_*` variables.
pub fn client(cfg: &S3Config) -> Result<AmazonS3, OpenError> {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(&cfg.bucket);
    if let Some(e) = &cfg.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(r) = &cfg.region {
        b = b.with_region(r);
    }
    // Through config keys, so the client settings of the environment (AWS_ALLOW_HTTP, proxies…)
    // stay in force.
    let client = |k: ClientConfigKey, v: String| (AmazonS3ConfigKey::Client(k), v);
    let secs = |d: std::time::Duration| format!("{}ms", d.as_millis());
    for (k, v) in [
        client(ClientConfigKey::Timeout, secs(cfg.request_timeout)),
        client(
            ClientConfigKey::ConnectTimeout,
            secs(cfg.request_timeout.min(std::time::Duration::from_secs(5))),
        ),
    ] {
        b = b.with_config(k, v);
    }
    let allow_http = cfg.allow_http.or_else(|| {
        // An http:// endpoint written in the settings is consent enough.
        cfg.endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
            .then_some(true)
    });
    if let Some(h) = allow_http {
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
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: std::time::Duration::from_millis(50),
            max_backoff: std::time::Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: cfg.max_retries,
        retry_timeout: cfg.retry_timeout,
    };
    b.with_retry(retry)
        .build()
        .map_err(|e| OpenError::Settings(e.to_string()))
}

/// Open the bucket and check it answers: list the prefix, and (unless `read_only`) write and
/// delete a probe object, so missing write permission shows now too.
pub async fn open(cfg: &S3Config, read_only: bool) -> Result<ObjectStorage, OpenError> {
    let s3 = Arc::new(client(cfg)?);
    let bucket = Bucket {
        store: s3.clone() as Arc<dyn ObjectStore>,
        parts: s3.clone(),
        prefix: cfg.prefix.clone(),
        signer: cfg
            .redirect
            .then_some(s3 as Arc<dyn object_store::signer::Signer>),
    };
    probe(&bucket, cfg, read_only).await?;
    Ok(ObjectStorage::new(bucket, cfg.part_size as usize))
}

async fn probe(b: &Bucket, cfg: &S3Config, read_only: bool) -> Result<(), OpenError> {
    let fail = |e: object_store::Error| OpenError::Probe {
        bucket: cfg.bucket.clone(),
        at: cfg
            .endpoint
            .as_deref()
            .map(|e| format!(" at {e}"))
            .unwrap_or_default(),
        why: explain(&e),
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
fn explain(e: &object_store::Error) -> String {
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
    // An S3 error body is XML: keep its code, not the document.
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
    let hint = if chain.contains("NoSuchBucket") || chain.contains("does not exist") {
        "the bucket does not exist: create it, or fix bucket/endpoint"
    } else if chain.contains("403")
        || chain.contains("AccessDenied")
        || chain.contains("InvalidAccessKeyId")
        || chain.contains("SignatureDoesNotMatch")
    {
        "access denied: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)"
    } else if chain.contains("error sending request")
        || chain.contains("onnect")
        || chain.contains("timed out")
    {
        "the object store is unreachable: check endpoint (or AWS_ENDPOINT) and that it is up"
    } else {
        "the object store refused the probe"
    };
    format!("{hint} ({chain})")
}

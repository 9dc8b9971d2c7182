//! The GCS wiring of `berth registry serve` as far as it can be tested here: no emulator
//! installable from the package registries speaks the XML API object_store's GCS client uses
//! (see the README), so these tests check that the settings reach the client — bucket, prefix
//! and base URL in the request it makes — and what start-up says when the service refuses or
//! cannot be reached. The one canned answer per connection below is the service refusing.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::mpsc;

use tempfile::TempDir;

/// Service-account settings for a GCS emulator: no OAuth, so nothing but the endpoint is asked.
const NO_OAUTH: &str = r#"{"disable_oauth":true,"client_email":"test@example.invalid","private_key":"","private_key_id":""}"#;

fn berth(root: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .env("GOOGLE_SERVICE_ACCOUNT_KEY", NO_OAUTH)
        .envs(env.iter().copied())
        .args(["--root", root.to_str().unwrap()])
        .args(args)
        .output()
        .expect("run berth")
}

fn fails(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(out.stdout.is_empty(), "it never listened: {err}");
    assert!(!err.contains("<?xml"), "the XML body is boiled down: {err}");
    err
}

/// A loopback listener that answers every request with `status` and an XML error `code`, and
/// sends the request lines it saw.
fn refusing(status: &'static str, code: &'static str) -> (u16, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            // Read the head (the requests here have no body worth reading).
            let mut h = String::new();
            while r.read_line(&mut h).is_ok_and(|n| n > 2) {
                h.clear();
            }
            let _ = tx.send(line.trim().to_string());
            let body = format!(
                "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>refused</Message></Error>"
            );
            let _ = write!(
                c,
                "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, rx)
}

#[test]
fn gcs_settings_reach_the_client_and_refusals_are_explained() {
    let dir = TempDir::new().unwrap();
    // registry.toml: bucket, prefix and base URL show in the list request of the probe.
    let (port, seen) = refusing("403 Forbidden", "AccessDenied");
    let cfg = dir.path().join("registry.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\nkind = \"gcs\"\nbucket = \"imgs\"\nprefix = \"reg/a\"\nendpoint = \"http://127.0.0.1:{port}\"\nmax-retries = 0\n"
        ),
    )
    .unwrap();
    let err = fails(&berth(
        dir.path(),
        &[],
        &[
            "registry",
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--config",
            cfg.to_str().unwrap(),
        ],
    ));
    assert!(
        err.contains(&format!("bucket \"imgs\" at http://127.0.0.1:{port}: access denied: check GOOGLE_SERVICE_ACCOUNT")),
        "{err}"
    );
    assert!(err.contains("AccessDenied"), "{err}");
    let line = seen.recv().unwrap();
    assert!(
        line.starts_with("GET /imgs?")
            && line.contains("prefix=reg%2Fa")
            && line.contains("list-type=2"),
        "{line}"
    );

    // gs:// with the base URL from the environment; a missing bucket; `registry gc` too.
    let (port, seen) = refusing("404 Not Found", "NoSuchBucket");
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        &[
            "registry",
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--storage",
            "gs://gone",
        ][..],
        &["registry", "gc", "--storage", "gs://gone"][..],
    ] {
        let err = fails(&berth(dir.path(), &[("GOOGLE_BASE_URL", &url)], args));
        assert!(
            err.contains(
                "bucket \"gone\": the bucket does not exist: create it, or fix bucket/endpoint"
            ),
            "{err}"
        );
        assert!(seen.recv().unwrap().starts_with("GET /gone?"));
    }

    // Nothing listens at the endpoint.
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = free.local_addr().unwrap().port();
    drop(free);
    let url = format!("http://127.0.0.1:{closed}");
    let err = fails(&berth(
        dir.path(),
        &[("GOOGLE_BASE_URL", &url)],
        &[
            "registry",
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--storage",
            "gs://b",
        ],
    ));
    assert!(
        err.contains("the object store is unreachable: check endpoint (or GOOGLE_BASE_URL)"),
        "{err}"
    );
}

//! The object-storage backend on Azure Blob Storage (an Azurite per test process, see
//! `registry_client.rs`): what holds on any bucket (`replicas.rs`: two
//! replicas on one container, a tag race, gc racing a push), and here an upload continued on
//! the other replica, the account-URL settings a real Azure account uses, what start-up says
//! about a missing container, a wrong key or an unreachable service, one blob finished by two
//! sessions at once, a service outage (5xx, then recovery), and blob GET redirects to SAS URLs.

use std::process::{Command, Output};

use crate::client::*;
use crate::replicas::*;

use tempfile::TempDir;

/// `berth ARGS` with `env` (and nothing of the Azurite's emulator settings unless given).
fn berth(root: &std::path::Path, env: &[(&str, String)], args: &[&str]) -> Output {
    Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["--root", root.to_str().unwrap()])
        .args(args)
        .output()
        .expect("run berth")
}

fn serve_fails(root: &std::path::Path, env: &[(&str, String)], args: &[&str]) -> String {
    let mut all = vec!["registry", "serve", "--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let out = berth(root, env, &all);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(out.stdout.is_empty(), "it never listened: {err}");
    assert!(!err.contains("<?xml"), "the XML body is boiled down: {err}");
    err
}

#[test]
fn a_chunked_upload_is_continued_and_finished_on_the_other_replica() {
    let dir = TempDir::new().unwrap();
    let (a, b) = replicas(Backend::Azure, &dir);
    let c = a.bucket.clone().unwrap();
    let blob = data(20 << 20, 7);
    let d = digest_of(&blob);
    let (loc, at) = chunks_through_both_replicas(&a, &b, "up/load", &blob);
    assert_eq!(
        b.stored_blobs().len(),
        0,
        "nothing visible before the digest"
    );
    // Replica b knows where the session stands, takes the rest and finishes it.
    let r = b.get(&loc);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("range"), Some(format!("0-{}", at - 1).as_str()));
    let r = b.req(
        "PATCH",
        &loc,
        &[("Content-Range", &format!("{at}-{}", blob.len() - 1))],
        &blob[at..],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let r = b.req("PUT", &format!("{loc}?digest={d}"), &[], b"");
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(a.get(&format!("/v2/up/load/blobs/{d}")).body == blob);
    // Read across a block boundary through the replica that began it.
    let r = a.req(
        "GET",
        &format!("/v2/up/load/blobs/{d}"),
        &[("Range", "bytes=8388000-8389999")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert!(r.body == blob[8_388_000..8_390_000]);
    // Published by a descriptor over the committed block list; the session is gone.
    let az = Azurite::get();
    let hex = d.trim_start_matches("sha256:");
    assert_eq!(
        az.keys(&c, "blobs/ref/sha256/"),
        vec![format!("blobs/ref/sha256/{}/{hex}", &hex[..2])]
    );
    assert_eq!(az.keys(&c, "blobs/data/").len(), 1);
    assert!(az.keys(&c, "repositories/up/load/_uploads/").is_empty());
}

#[test]
fn an_account_url_and_key_from_the_environment_work_as_on_azure() {
    // What a real account looks like: account + endpoint in registry.toml, the key in
    // AZURE_STORAGE_ACCOUNT_KEY (no emulator mode), a prefix and its own part size.
    let dir = TempDir::new().unwrap();
    let az = Azurite::get();
    az.create_container("acct-url");
    let cfg = dir.path().join("registry.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\nkind = \"azure\"\ncontainer = \"acct-url\"\nprefix = \"reg/one\"\naccount = \"{AZURITE_ACCOUNT}\"\nendpoint = \"{}\"\npart-size = 5242880\n",
            az.account_url()
        ),
    )
    .unwrap();
    let env = [("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY.to_string())];
    let storage = dir.path().join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("berth"));
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("AZURE_STORAGE_USE_EMULATOR")
        .args(["--root", storage.join("root").to_str().unwrap()])
        .args(["registry", "serve", "--addr", "127.0.0.1:0"])
        .args(["--config", cfg.to_str().unwrap()]);
    let s = Server::spawn(cmd, &storage);
    let blob = data(6 << 20, 3);
    let r = s.req("POST", "/v2/k/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 202);
    assert_eq!(
        r.header("oci-chunk-min-length"),
        Some("5242880"),
        "the part size of the settings"
    );
    let loc = r.header("location").unwrap().to_string();
    let r = s.req("PATCH", &loc, &[], &blob);
    assert_eq!(r.status, 202, "{}", r.text());
    let loc = r.header("location").unwrap().to_string();
    let d = digest_of(&blob);
    assert_eq!(
        s.req("PUT", &format!("{loc}?digest={d}"), &[], b"").status,
        201
    );
    assert!(s.get(&format!("/v2/k/blobs/{d}")).body == blob);
    let keys = az.keys("acct-url", "");
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with("reg/one/")),
        "{keys:?}"
    );
}

#[test]
fn a_missing_container_a_wrong_key_and_no_service_stop_the_server_at_start_up() {
    let dir = TempDir::new().unwrap();
    let az = Azurite::get();
    let err = serve_fails(
        dir.path(),
        &az.env(),
        &["--storage", "az://no-such-container/x"],
    );
    assert!(
        err.contains("container \"no-such-container\"")
            && err.contains("the container does not exist: create it")
            && err.contains("ContainerNotFound"),
        "{err}"
    );

    az.create_container("locked");
    let cfg = dir.path().join("registry.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\nkind = \"azure\"\ncontainer = \"locked\"\naccount = \"{AZURITE_ACCOUNT}\"\nendpoint = \"{}\"\n",
            az.account_url()
        ),
    )
    .unwrap();
    // A well-formed key that is not the account's.
    let wrong = [(
        "AZURE_STORAGE_ACCOUNT_KEY",
        "d3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmc=".to_string(),
    )];
    let err = serve_fails(dir.path(), &wrong, &["--config", cfg.to_str().unwrap()]);
    assert!(
        err.contains("container \"locked\" at http://127.0.0.1:")
            && err.contains(
                "access denied: check AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCOUNT_KEY"
            )
            && err.contains("AuthorizationFailure") | err.contains("AuthenticationFailed"),
        "{err}"
    );
    // `registry gc` checks the same way before it lists anything.
    let out = berth(
        dir.path(),
        &wrong,
        &["registry", "gc", "--config", cfg.to_str().unwrap()],
    );
    let gerr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        gerr.contains("access denied: check AZURE_STORAGE_ACCOUNT_NAME"),
        "{gerr}"
    );

    // A key that is not base64 at all is a settings error, named as Azure's.
    let bad = [("AZURE_STORAGE_ACCOUNT_KEY", "not base64!".to_string())];
    let err = serve_fails(dir.path(), &bad, &["--config", cfg.to_str().unwrap()]);
    assert!(err.contains("Azure settings: "), "{err}");

    // Nothing listens there.
    let gone = [
        ("AZURE_STORAGE_USE_EMULATOR", "true".to_string()),
        ("AZURITE_BLOB_STORAGE_URL", "http://127.0.0.1:9".to_string()),
    ];
    let err = serve_fails(dir.path(), &gone, &["--storage", "az://c"]);
    assert!(
        err.contains("the object store is unreachable") && err.contains("AZURITE_BLOB_STORAGE_URL"),
        "{err}"
    );
}

#[test]
fn two_sessions_of_one_blob_finishing_at_once_leave_one_blob() {
    let dir = TempDir::new().unwrap();
    let (a, b, _, d) = two_sessions_finish_at_once(Backend::Azure, &dir);
    gc_deletes_the_unreferenced_blob(&a, &b, &d);
}

/// Blob GETs on a container are redirected to a service SAS URL of the object holding the
/// bytes, as on S3 (distribution's Azure driver does too); a suffix range, which Azure's blob
/// service refuses, is answered by the replica; `redirect = false` streams.
#[test]
fn blob_gets_redirect_to_a_sas_url_and_suffix_ranges_stay_with_the_replica() {
    let dir = TempDir::new().unwrap();
    let s = Server::start_on(Backend::Azure, &dir.path().join("storage"), &[]);
    let az = Azurite::get();
    // Larger than a part: stored by descriptor, read from its data object.
    let big = data(9 << 20, 5);
    let loc = patch_upload(&s, "sas/app", &big);
    let d = digest_of(&big);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = s.req("PUT", &format!("{loc}{sep}digest={d}"), &[], b"");
    assert_eq!(r.status, 201, "{}", r.text());

    let r = request_once(
        &format!("127.0.0.1:{}", s.port),
        "GET",
        &format!("/v2/sas/app/blobs/{d}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 307, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    let url = r.header("location").unwrap().to_string();
    assert!(url.starts_with(&az.account_url()), "{url}");
    assert!(url.contains("sig=") && url.contains("se="), "a SAS: {url}");
    assert!(
        fetch_url(&url, None) == big,
        "the whole blob through the SAS URL"
    );
    assert!(fetch_url(&url, Some("8388000-8389999")) == big[8_388_000..8_390_000]);
    // Followed as clients follow it, with a range across the part boundary.
    let r = s.req(
        "GET",
        &format!("/v2/sas/app/blobs/{d}"),
        &[("Range", "bytes=8388000-")],
        b"",
    );
    assert_eq!(r.redirected_from.as_ref().map(|r| r.status), Some(307));
    assert_eq!(r.status, 206);
    assert!(r.body == big[8_388_000..]);
    // A suffix range: the replica's own 206.
    let r = s.req(
        "GET",
        &format!("/v2/sas/app/blobs/{d}"),
        &[("Range", "bytes=-10")],
        b"",
    );
    assert!(r.redirected_from.is_none());
    assert_eq!(r.status, 206);
    assert!(r.body == big[big.len() - 10..]);

    // redirect = false: the replica streams.
    let storage = dir.path().join("plain");
    let container = bucket_for(&storage);
    az.create_container(&container);
    let cfg = dir.path().join("registry.toml");
    std::fs::write(
        &cfg,
        format!("[storage]\nkind = \"azure\"\ncontainer = {container:?}\nredirect = false\n"),
    )
    .unwrap();
    let p = Server::start_with_on(
        Backend::Azure,
        &["--config", cfg.to_str().unwrap()],
        &storage,
        &[],
    );
    let d = p.push_blob("plain/app", &big[..1000]);
    let r = p.get(&format!("/v2/plain/app/blobs/{d}"));
    assert!(r.redirected_from.is_none());
    assert_eq!((r.status, r.body.as_slice()), (200, &big[..1000]));
}

/// Credentials that cannot presign (an account SAS token instead of the key): the replica
/// says so once at start-up and streams blob GETs itself. (A read-only replica: Azurite answers
/// object_store's batch delete with 500 when it carries a SAS, so a writing replica's start-up
/// probe fails there; whether Azure itself does is not known here.)
#[test]
fn a_sas_token_serves_without_redirects_and_says_why() {
    let dir = TempDir::new().unwrap();
    let az = Azurite::get();
    let writer = Server::start_on(Backend::Azure, &dir.path().join("writer"), &[]);
    let container = writer.bucket.clone().unwrap();
    let blob = data(3 << 20, 9);
    let d = writer.push_blob("sas/app", &blob);

    let cfg = dir.path().join("registry.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\nkind = \"azure\"\ncontainer = {container:?}\naccount = \"{AZURITE_ACCOUNT}\"\nendpoint = \"{}\"\n",
            az.account_url()
        ),
    )
    .unwrap();
    let storage = dir.path().join("reader");
    std::fs::create_dir_all(&storage).unwrap();
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("berth"));
    cmd.env("AZURE_STORAGE_SAS_KEY", az.account_sas())
        .env_remove("AZURE_STORAGE_USE_EMULATOR")
        .env_remove("AZURE_STORAGE_ACCOUNT_KEY")
        .args(["--root", storage.join("root").to_str().unwrap()])
        .args(["registry", "serve", "--addr", "127.0.0.1:0", "--read-only"])
        .args(["--config", cfg.to_str().unwrap()]);
    let s = Server::spawn(cmd, &storage);
    for _ in 0..2 {
        let r = s.get(&format!("/v2/sas/app/blobs/{d}"));
        assert!(r.redirected_from.is_none(), "streamed, not redirected");
        assert_eq!(r.status, 200);
        assert!(r.body == blob);
    }
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert_eq!(
        log.matches("cannot presign URLs").count(),
        1,
        "one warning, at start-up: {log}"
    );
    assert!(log.contains("set redirect = false"), "{log}");
    // The writer, with the account key, redirects.
    let r = writer.get(&format!("/v2/sas/app/blobs/{d}"));
    assert_eq!(r.redirected_from.as_ref().map(|r| r.status), Some(307));
}

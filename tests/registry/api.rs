//! `berth registry serve` against the OCI distribution spec, endpoint by endpoint, over HTTP.

use crate::common;

use crate::client::*;
use tempfile::TempDir;

per_backend!(
    [fs: Fs, s3: S3, azure: Azure]
    [
        base_health_version_header_and_access_log,
        monolithic_post_then_put_and_blob_reads,
        single_post_with_digest_and_wrong_digests,
        chunked_upload_with_out_of_order_chunk,
        chunked_upload_closed_by_empty_put,
        cancel_upload,
        cross_repository_mount,
        repositories_are_isolated,
        blob_delete,
        manifests_by_tag_and_digest,
        manifest_refusals,
        push_with_tag_query_and_deletes,
        tags_and_catalog_pagination,
        referrers_api,
        referrers_too_large_for_one_index_are_paged_with_link,
        upload_sessions_announce_chunk_min_length,
        invalid_names,
        body_shorter_than_content_length_is_refused,
        concurrent_pushes_of_the_same_blob,
        upload_resumes_after_kill_9,
        read_only_mode_and_config_file,
        sigterm_lets_requests_in_flight_finish,
        htpasswd_basic_auth,
    ]
);

fn server(b: Backend) -> (TempDir, Server) {
    let dir = TempDir::new().expect("tempdir");
    let s = Server::start_on(b, &dir.path().join("storage"), &[]);
    (dir, s)
}

/// Push config + one layer + a manifest tagged `tag`; returns (manifest digest, manifest bytes).
fn push_image(
    s: &Server,
    repo: &str,
    tag: &str,
    layer: &[u8],
    media_type: &str,
) -> (String, String) {
    let cfg = config_blob();
    let cd = s.push_blob(repo, &cfg);
    let ld = s.push_blob(repo, layer);
    let m = manifest_json(media_type, (&cd, cfg.len()), &[(&ld, layer.len())], "");
    let r = s.req(
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", media_type)],
        m.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    (digest_of(m.as_bytes()), m)
}

fn base_health_version_header_and_access_log(b: Backend) {
    let (_d, s) = server(b);
    let r = s.get("/v2/");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert_eq!(s.get("/healthz").status, 200);
    let r = s.get("/v2/a/nothing-here");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    let r = s.req("POST", "/v2/_catalog", &[], b"");
    assert_eq!(r.status, 405);
    // Each access log line is written once its response is sent.
    let logged = |log: &str| {
        [
            "GET /v2/ 200 2 ",
            "GET /v2/a/nothing-here 404 ",
            "POST /v2/_catalog 405 ",
        ]
        .iter()
        .all(|p| log.lines().any(|l| l.starts_with(p)))
    };
    common::wait_for("the access log", std::time::Duration::from_secs(10), || {
        logged(&s.access_log())
    });
}

fn monolithic_post_then_put_and_blob_reads(b: Backend) {
    let (_d, s) = server(b);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let d = digest_of(&data);
    let r = s.req("POST", "/v2/a/b/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 202);
    let loc = r.header("location").unwrap().to_string();
    let uuid = r.header("docker-upload-uuid").unwrap().to_string();
    assert!(
        loc.ends_with(&uuid) && loc.starts_with("/v2/a/b/blobs/uploads/"),
        "{loc}"
    );
    assert_eq!(r.header("range"), Some("0-0"));
    assert_eq!(r.header("content-length"), Some("0"));

    let r = s.req(
        "PUT",
        &format!("{loc}?digest={d}"),
        &[("Content-Type", "application/octet-stream")],
        &data,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/a/b/blobs/{d}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    // the session is gone
    assert_eq!(s.get(&loc).status, 404);

    let r = s.get(&format!("/v2/a/b/blobs/{d}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    // On a bucket the registry's answer is the redirect, which carries the digest; the bytes
    // come from the object store.
    let answer = r.redirected_from.as_deref().unwrap_or(&r);
    assert_eq!(answer.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(r.header("content-length"), Some("100000"));

    let r = s.req("HEAD", &format!("/v2/a/b/blobs/{d}"), &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("100000"));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert!(r.body.is_empty());

    let r = s.req(
        "GET",
        &format!("/v2/a/b/blobs/{d}"),
        &[("Range", "bytes=10-19")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[10..20]);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/100000"));
    let r = s.req(
        "GET",
        &format!("/v2/a/b/blobs/{d}"),
        &[("Range", "bytes=-5")],
        b"",
    );
    assert_eq!((r.status, r.body.as_slice()), (206, &data[99_995..]));
    let r = s.req(
        "GET",
        &format!("/v2/a/b/blobs/{d}"),
        &[("Range", "bytes=100000-")],
        b"",
    );
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */100000"));

    let missing = digest_of(b"missing");
    let r = s.req("HEAD", &format!("/v2/a/b/blobs/{missing}"), &[], b"");
    assert_eq!(r.status, 404);
    let r = s.get(&format!("/v2/a/b/blobs/{missing}"));
    assert_eq!((r.status, r.code().as_str()), (404, "BLOB_UNKNOWN"));
}

fn single_post_with_digest_and_wrong_digests(b: Backend) {
    let (_d, s) = server(b);
    let data = b"single post body";
    let d = digest_of(data);
    let r = s.req(
        "POST",
        &format!("/v2/x/blobs/uploads/?digest={d}"),
        &[],
        data,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/x/blobs/{d}").as_str())
    );
    assert_eq!(s.get(&format!("/v2/x/blobs/{d}")).body, data);

    // A digest that does not match: refused, nothing stored.
    let before = s.stored_blobs().len();
    let wrong = digest_of(b"something else");
    let r = s.req(
        "POST",
        &format!("/v2/x/blobs/uploads/?digest={wrong}"),
        &[],
        b"other bytes",
    );
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));
    assert_eq!(
        s.req("HEAD", &format!("/v2/x/blobs/{wrong}"), &[], b"")
            .status,
        404
    );
    assert_eq!(s.stored_blobs().len(), before);

    let r = s.req("POST", "/v2/x/blobs/uploads/", &[], b"");
    let loc = r.header("location").unwrap().to_string();
    let r = s.req("PUT", &format!("{loc}?digest={wrong}"), &[], b"not it");
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));
    assert_eq!(s.stored_blobs().len(), before);
    let r = s.req("PUT", &loc, &[], b"");
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));
    let r = s.req("PUT", &format!("{loc}?digest=sha256:123"), &[], b"");
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));
    let r = s.req(
        "POST",
        "/v2/x/blobs/uploads/?digest-algorithm=md5",
        &[],
        b"",
    );
    assert_eq!(r.status, 400);
    let r = s.req(
        "POST",
        "/v2/x/blobs/uploads/?digest-algorithm=sha256",
        &[],
        b"",
    );
    assert_eq!(r.status, 202);
}

fn chunked_upload_with_out_of_order_chunk(b: Backend) {
    let (_d, s) = server(b);
    let data = b"0123456789abcdef";
    let d = digest_of(data);
    let r = s.req(
        "POST",
        "/v2/c/blobs/uploads/",
        &[("Content-Length", "0")],
        b"",
    );
    let loc = r.header("location").unwrap().to_string();

    let r = s.req(
        "PATCH",
        &loc,
        &[
            ("Content-Range", "0-5"),
            ("Content-Type", "application/octet-stream"),
        ],
        &data[..6],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("range"), Some("0-5"));
    assert_eq!(r.header("location"), Some(loc.as_str()));
    assert!(r.header("docker-upload-uuid").is_some());

    // A gap: 416 with the current range.
    let r = s.req("PATCH", &loc, &[("Content-Range", "8-9")], &data[8..10]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("range"), Some("0-5"));
    assert_eq!(r.header("location"), Some(loc.as_str()));
    // An overlap too.
    let r = s.req("PATCH", &loc, &[("Content-Range", "3-9")], &data[3..10]);
    assert_eq!(r.status, 416);
    // Content-Range and Content-Length disagree.
    let r = s.req("PATCH", &loc, &[("Content-Range", "6-9")], &data[6..9]);
    assert_eq!((r.status, r.code().as_str()), (400, "SIZE_INVALID"));
    // Malformed Content-Range.
    let r = s.req("PATCH", &loc, &[("Content-Range", "6-")], &data[6..9]);
    assert_eq!(r.status, 416);

    let r = s.get(&loc);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("range"), Some("0-5"));
    assert_eq!(r.header("location"), Some(loc.as_str()));

    let r = s.req("PATCH", &loc, &[("Content-Range", "6-9")], &data[6..10]);
    assert_eq!((r.status, r.header("range")), (202, Some("0-9")));
    // A chunk without Content-Range is appended (Docker's streamed PATCH).
    let r = s.req("PATCH", &loc, &[], &data[10..12]);
    assert_eq!((r.status, r.header("range")), (202, Some("0-11")));
    // The final chunk in the PUT, out of order first.
    let r = s.req(
        "PUT",
        &format!("{loc}?digest={d}"),
        &[("Content-Range", "13-15")],
        &data[13..],
    );
    assert_eq!(r.status, 416);
    let r = s.req(
        "PUT",
        &format!("{loc}?digest={d}"),
        &[("Content-Range", "12-15")],
        &data[12..],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.get(&format!("/v2/c/blobs/{d}")).body, data);
}

fn chunked_upload_closed_by_empty_put(b: Backend) {
    let (_d, s) = server(b);
    let data = vec![7u8; 3 << 20];
    let d = digest_of(&data);
    let r = s.req("POST", "/v2/c/blobs/uploads/", &[], b"");
    let loc = r.header("location").unwrap().to_string();
    let half = data.len() / 2;
    let r = s.req(
        "PATCH",
        &loc,
        &[("Content-Range", &format!("0-{}", half - 1))],
        &data[..half],
    );
    assert_eq!(r.status, 202);
    let r = s.req(
        "PATCH",
        &loc,
        &[("Content-Range", &format!("{half}-{}", data.len() - 1))],
        &data[half..],
    );
    assert_eq!(r.status, 202);
    let r = s.req("PUT", &format!("{loc}?digest={d}"), &[], b"");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.get(&format!("/v2/c/blobs/{d}")).body, data);
}

fn cancel_upload(b: Backend) {
    let (_d, s) = server(b);
    let r = s.req("POST", "/v2/c/blobs/uploads/", &[], b"");
    let loc = r.header("location").unwrap().to_string();
    assert_eq!(s.req("PATCH", &loc, &[], b"abc").status, 202);
    assert_eq!(s.req("DELETE", &loc, &[], b"").status, 204);
    let r = s.get(&loc);
    assert_eq!((r.status, r.code().as_str()), (404, "BLOB_UPLOAD_UNKNOWN"));
    assert_eq!(s.req("DELETE", &loc, &[], b"").status, 404);
    assert_eq!(s.req("PATCH", &loc, &[], b"abc").status, 404);
    // A session belongs to its repository.
    let r = s.req("POST", "/v2/c/blobs/uploads/", &[], b"");
    let loc = r.header("location").unwrap().to_string();
    assert_eq!(s.get(&loc.replace("/v2/c/", "/v2/other/")).status, 404);
    assert_eq!(s.get("/v2/c/blobs/uploads/not-a-uuid").status, 404);
}

fn cross_repository_mount(b: Backend) {
    let (_d, s) = server(b);
    let d = s.push_blob("src/repo", b"shared layer");
    let r = s.req(
        "POST",
        &format!("/v2/dst/blobs/uploads/?mount={d}&from=src/repo"),
        &[],
        b"",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/dst/blobs/{d}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(s.get(&format!("/v2/dst/blobs/{d}")).body, b"shared layer");

    // `from` lacks it: a new upload session instead.
    let r = s.req(
        "POST",
        &format!("/v2/dst2/blobs/uploads/?mount={d}&from=empty"),
        &[],
        b"",
    );
    assert_eq!(r.status, 202);
    assert!(
        r.header("location")
            .unwrap()
            .starts_with("/v2/dst2/blobs/uploads/")
    );
    // No `from`: no lookup elsewhere.
    let r = s.req(
        "POST",
        &format!("/v2/dst3/blobs/uploads/?mount={d}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 202);
    assert_eq!(
        s.req("HEAD", &format!("/v2/dst3/blobs/{d}"), &[], b"")
            .status,
        404
    );
    assert_eq!(s.stored_blobs().len(), 1, "stored once, linked twice");
}

fn repositories_are_isolated(b: Backend) {
    let (_d, s) = server(b);
    let d = s.push_blob("alice/private", b"secret layer");
    let r = s.get(&format!("/v2/bob/app/blobs/{d}"));
    assert_eq!((r.status, r.code().as_str()), (404, "BLOB_UNKNOWN"));
    assert_eq!(
        s.req("HEAD", &format!("/v2/bob/app/blobs/{d}"), &[], b"")
            .status,
        404
    );
    // Nor can a manifest in bob's repository pull it in.
    let cd = s.push_blob("bob/app", &config_blob());
    let m = manifest_json(OCI_MANIFEST, (&cd, config_blob().len()), &[(&d, 12)], "");
    let r = s.req(
        "PUT",
        "/v2/bob/app/manifests/v1",
        &[("Content-Type", OCI_MANIFEST)],
        m.as_bytes(),
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
    assert_eq!(s.get("/v2/bob/app/manifests/v1").status, 404);
}

fn blob_delete(b: Backend) {
    let (_d, s) = server(b);
    let d = s.push_blob("r", b"to delete");
    let r = s.req("DELETE", &format!("/v2/r/blobs/{d}"), &[], b"");
    assert_eq!(r.status, 202);
    assert_eq!(s.get(&format!("/v2/r/blobs/{d}")).status, 404);
    let r = s.req("DELETE", &format!("/v2/r/blobs/{d}"), &[], b"");
    assert_eq!((r.status, r.code().as_str()), (404, "BLOB_UNKNOWN"));
}

fn manifests_by_tag_and_digest(b: Backend) {
    let (_d, s) = server(b);
    let (md, m) = push_image(&s, "img/app", "v1", b"layer one", OCI_MANIFEST);
    for path in [
        "/v2/img/app/manifests/v1".to_string(),
        format!("/v2/img/app/manifests/{md}"),
    ] {
        let r = s.get(&path);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, m.as_bytes(), "stored byte for byte");
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(r.header("docker-content-digest"), Some(md.as_str()));
        let r = s.req("HEAD", &path, &[], b"");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-length"),
            Some(m.len().to_string().as_str())
        );
        assert_eq!(r.header("docker-content-digest"), Some(md.as_str()));
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
    }
    let r = s.get("/v2/img/app/manifests/nope");
    assert_eq!((r.status, r.code().as_str()), (404, "MANIFEST_UNKNOWN"));

    // Docker schema2 and its manifest list keep their media types.
    let (dd, _) = push_image(&s, "img/app", "docker", b"layer two", DOCKER_MANIFEST);
    assert_eq!(
        s.get("/v2/img/app/manifests/docker").header("content-type"),
        Some(DOCKER_MANIFEST)
    );
    let list = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{{"mediaType":"{DOCKER_MANIFEST}","digest":"{dd}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
    );
    let r = s.req(
        "PUT",
        "/v2/img/app/manifests/list",
        &[("Content-Type", DOCKER_LIST)],
        list.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        s.get("/v2/img/app/manifests/list").header("content-type"),
        Some(DOCKER_LIST)
    );
    // An OCI index over both, pushed by digest.
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{md}","size":{}}}]}}"#,
        m.len()
    );
    let id = digest_of(index.as_bytes());
    let r = s.req(
        "PUT",
        &format!("/v2/img/app/manifests/{id}"),
        &[("Content-Type", OCI_INDEX)],
        index.as_bytes(),
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/img/app/manifests/{id}").as_str())
    );
    assert_eq!(r.header("docker-content-digest"), Some(id.as_str()));
    // An index naming a manifest the repository lacks.
    let bad = index.replace(&md, &digest_of(b"absent"));
    let r = s.req(
        "PUT",
        "/v2/img/app/manifests/bad",
        &[("Content-Type", OCI_INDEX)],
        bad.as_bytes(),
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
    // A config that is not there.
    let bad = m.replace(&digest_of(&config_blob()), &digest_of(b"no config"));
    let r = s.req(
        "PUT",
        "/v2/img/app/manifests/bad",
        &[("Content-Type", OCI_MANIFEST)],
        bad.as_bytes(),
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
}

fn manifest_refusals(b: Backend) {
    let (_d, s) = server(b);
    let (_md, m) = push_image(&s, "v/r", "ok", b"l", OCI_MANIFEST);
    let put = |path: &str, ct: &str, body: &[u8]| s.req("PUT", path, &[("Content-Type", ct)], body);
    let r = put("/v2/v/r/manifests/t", OCI_MANIFEST, b"{not json");
    assert_eq!((r.status, r.code().as_str()), (400, "MANIFEST_INVALID"));
    let r = put("/v2/v/r/manifests/t", OCI_INDEX, m.as_bytes());
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "MANIFEST_INVALID"),
        "Content-Type and mediaType disagree"
    );
    let r = put(
        "/v2/v/r/manifests/t",
        "application/x-unknown",
        br#"{"schemaVersion":2}"#,
    );
    assert_eq!((r.status, r.code().as_str()), (400, "MANIFEST_INVALID"));
    let wrong = digest_of(b"another manifest");
    let r = put(
        &format!("/v2/v/r/manifests/{wrong}"),
        OCI_MANIFEST,
        m.as_bytes(),
    );
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));
    let big = format!(r#"{{"schemaVersion":2,"pad":"{}"}}"#, "x".repeat(4 << 20));
    let r = put("/v2/v/r/manifests/t", OCI_MANIFEST, big.as_bytes());
    assert_eq!(r.status, 413);
    let r = put("/v2/v/r/manifests/-bad-tag", OCI_MANIFEST, m.as_bytes());
    assert_eq!(r.status, 400);
    assert_eq!(
        s.get("/v2/v/r/manifests/t").status,
        404,
        "nothing was tagged"
    );
}

fn push_with_tag_query_and_deletes(b: Backend) {
    let (_d, s) = server(b);
    let (md, m) = push_image(&s, "d/r", "first", b"layer", OCI_MANIFEST);
    let r = s.req(
        "PUT",
        &format!("/v2/d/r/manifests/{md}?tag=1.0&tag=1&tag=latest"),
        &[("Content-Type", OCI_MANIFEST)],
        m.as_bytes(),
    );
    assert_eq!(r.status, 201);
    let tags: Vec<&str> = r
        .header_all("oci-tag")
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    assert_eq!(tags, ["1.0", "1", "latest"]);
    assert_eq!(
        s.get("/v2/d/r/tags/list").json()["tags"],
        serde_json::json!(["1", "1.0", "first", "latest"])
    );

    // Delete a tag: the manifest stays.
    assert_eq!(
        s.req("DELETE", "/v2/d/r/manifests/latest", &[], b"").status,
        202
    );
    assert_eq!(s.get("/v2/d/r/manifests/latest").status, 404);
    assert_eq!(s.get(&format!("/v2/d/r/manifests/{md}")).status, 200);
    let r = s.req("DELETE", "/v2/d/r/manifests/latest", &[], b"");
    assert_eq!((r.status, r.code().as_str()), (404, "MANIFEST_UNKNOWN"));
    // Delete by digest: its tags go with it.
    assert_eq!(
        s.req("DELETE", &format!("/v2/d/r/manifests/{md}"), &[], b"")
            .status,
        202
    );
    assert_eq!(s.get(&format!("/v2/d/r/manifests/{md}")).status, 404);
    assert_eq!(s.get("/v2/d/r/manifests/first").status, 404);
    assert_eq!(
        s.get("/v2/d/r/tags/list").json()["tags"],
        serde_json::json!([])
    );
    assert_eq!(
        s.req("DELETE", &format!("/v2/d/r/manifests/{md}"), &[], b"")
            .status,
        404
    );
}

fn tags_and_catalog_pagination(b: Backend) {
    let (_d, s) = server(b);
    let (md, m) = push_image(&s, "p/q", "a", b"layer", OCI_MANIFEST);
    for t in ["c", "b", "B", "e", "d"] {
        let r = s.req(
            "PUT",
            &format!("/v2/p/q/manifests/{t}"),
            &[("Content-Type", OCI_MANIFEST)],
            m.as_bytes(),
        );
        assert_eq!(r.status, 201);
    }
    let _ = md;
    let r = s.get("/v2/p/q/tags/list");
    assert_eq!(
        r.json(),
        serde_json::json!({"name": "p/q", "tags": ["B", "a", "b", "c", "d", "e"]})
    );
    assert!(r.header("link").is_none());
    let r = s.get("/v2/p/q/tags/list?n=2");
    assert_eq!(r.json()["tags"], serde_json::json!(["B", "a"]));
    assert_eq!(
        r.header("link"),
        Some("</v2/p/q/tags/list?n=2&last=a>; rel=\"next\"")
    );
    let r = s.get("/v2/p/q/tags/list?n=2&last=a");
    assert_eq!(r.json()["tags"], serde_json::json!(["b", "c"]));
    let r = s.get("/v2/p/q/tags/list?n=2&last=c");
    assert_eq!(r.json()["tags"], serde_json::json!(["d", "e"]));
    assert!(r.header("link").is_none());
    let r = s.get("/v2/p/q/tags/list?n=0");
    assert_eq!(r.json()["tags"], serde_json::json!([]));
    assert!(r.header("link").is_none());
    assert_eq!(
        s.get("/v2/p/q/tags/list?last=d").json()["tags"],
        serde_json::json!(["e"])
    );
    assert_eq!(s.get("/v2/p/q/tags/list?n=x").status, 400);
    let r = s.get("/v2/no/such/tags/list");
    assert_eq!((r.status, r.code().as_str()), (404, "NAME_UNKNOWN"));

    for repo in ["z/one", "a/two", "m/three/deep"] {
        push_image(&s, repo, "t", b"layer", OCI_MANIFEST);
    }
    let r = s.get("/v2/_catalog");
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["a/two", "m/three/deep", "p/q", "z/one"])
    );
    let r = s.get("/v2/_catalog?n=3");
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["a/two", "m/three/deep", "p/q"])
    );
    assert_eq!(
        r.header("link"),
        Some("</v2/_catalog?n=3&last=p/q>; rel=\"next\"")
    );
    let r = s.get("/v2/_catalog?n=3&last=p/q");
    assert_eq!(r.json()["repositories"], serde_json::json!(["z/one"]));
    assert!(r.header("link").is_none());
}

fn referrers_api(b: Backend) {
    let (_d, s) = server(b);
    let (subject, m) = push_image(&s, "ref/app", "v1", b"layer", OCI_MANIFEST);
    let empty_index = s.get(&format!("/v2/ref/app/referrers/{subject}"));
    assert_eq!(empty_index.status, 200);
    assert_eq!(empty_index.header("content-type"), Some(OCI_INDEX));
    assert_eq!(empty_index.json()["manifests"], serde_json::json!([]));

    let cfg = b"{}";
    let cd = s.push_blob("ref/app", cfg);
    let mut pushed = Vec::new();
    for (i, at) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    ]
    .iter()
    .enumerate()
    {
        let extra = format!(
            r#","artifactType":"{at}","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{}}},"annotations":{{"n":"{i}"}}"#,
            m.len()
        );
        let art = manifest_json(OCI_MANIFEST, (&cd, 2), &[], &extra);
        let r = s.req(
            "PUT",
            &format!("/v2/ref/app/manifests/{}", digest_of(art.as_bytes())),
            &[("Content-Type", OCI_MANIFEST)],
            art.as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.header("oci-subject"), Some(subject.as_str()));
        pushed.push(digest_of(art.as_bytes()));
    }
    // A subject that is not (yet) in the repository is allowed.
    let ghost = digest_of(b"not pushed");
    let extra =
        format!(r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{ghost}","size":3}}"#);
    let art = manifest_json(OCI_MANIFEST, (&cd, 2), &[], &extra);
    let r = s.req(
        "PUT",
        "/v2/ref/app/manifests/ghost-ref",
        &[("Content-Type", OCI_MANIFEST)],
        art.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());

    let r = s.get(&format!("/v2/ref/app/referrers/{subject}"));
    assert_eq!(r.status, 200);
    let list = r.json();
    let ms = list["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    assert!(r.header("oci-filters-applied").is_none());
    for d in &ms[..] {
        assert!(pushed.contains(&d["digest"].as_str().unwrap().to_string()));
        assert_eq!(d["mediaType"], OCI_MANIFEST);
        assert!(
            d["artifactType"]
                .as_str()
                .unwrap()
                .starts_with("application/vnd.example.")
        );
        assert!(d["annotations"]["n"].is_string());
    }
    let r = s.get(&format!(
        "/v2/ref/app/referrers/{subject}?artifactType=application/vnd.example.sig"
    ));
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    let ms = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(ms.len(), 1);
    assert_eq!(ms[0]["artifactType"], "application/vnd.example.sig");
    assert_eq!(
        s.get(&format!("/v2/ref/app/referrers/{ghost}")).json()["manifests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Deleting a referrer removes it from the list.
    assert_eq!(
        s.req(
            "DELETE",
            &format!("/v2/ref/app/manifests/{}", pushed[0]),
            &[],
            b""
        )
        .status,
        202
    );
    assert_eq!(
        s.get(&format!("/v2/ref/app/referrers/{subject}")).json()["manifests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.get("/v2/ref/app/referrers/sha256:bad").status, 400);
}

/// Push a referrer of `subject` to `repo` with `artifact_type` and an annotation of `pad` bytes;
/// returns its digest.
fn push_referrer(
    s: &Server,
    repo: &str,
    subject: (&str, usize),
    artifact_type: &str,
    i: usize,
    pad: usize,
) -> String {
    let cd = s.push_blob(repo, b"{}");
    let extra = format!(
        r#","artifactType":"{artifact_type}","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{}}},"annotations":{{"n":"{i}","pad":"{}"}}"#,
        subject.0,
        subject.1,
        "x".repeat(pad)
    );
    let art = manifest_json(OCI_MANIFEST, (&cd, 2), &[], &extra);
    let d = digest_of(art.as_bytes());
    let r = s.req(
        "PUT",
        &format!("/v2/{repo}/manifests/{d}"),
        &[("Content-Type", OCI_MANIFEST)],
        art.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    d
}

/// Follow `Link: <…>; rel="next"` from `first`; returns each page's response.
fn follow_pages(s: &Server, first: &str) -> Vec<Resp> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(url) = next.take() {
        assert!(pages.len() < 50, "endless pagination");
        let r = s.get(&url);
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        if let Some(link) = r.header("link") {
            assert!(link.ends_with(r#">; rel="next""#), "{link}");
            let target = &link[1..link.find('>').unwrap()];
            next = Some(target.to_string());
        }
        pages.push(r);
    }
    pages
}

fn referrers_too_large_for_one_index_are_paged_with_link(b: Backend) {
    let (_d, s) = server(b);
    let (subject, m) = push_image(&s, "big/refs", "v1", b"layer", OCI_MANIFEST);
    // Six referrers of ~900 KiB of annotations each: ~5.3 MiB of descriptors, more than one
    // index (a manifest, ≤ 4 MiB) may hold.
    let mut pushed: Vec<String> = (0..6)
        .map(|i| {
            push_referrer(
                &s,
                "big/refs",
                (&subject, m.len()),
                "application/vnd.example.sbom",
                i,
                900 << 10,
            )
        })
        .collect();
    pushed.sort();

    let pages = follow_pages(&s, &format!("/v2/big/refs/referrers/{subject}"));
    assert!(
        pages.len() >= 2,
        "one page of {} bytes",
        pages[0].body.len()
    );
    let mut seen = Vec::new();
    for p in &pages {
        assert_eq!(p.header("content-type"), Some(OCI_INDEX));
        assert!(p.body.len() <= 4 << 20, "page of {} bytes", p.body.len());
        let index = p.json();
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], OCI_INDEX);
        let ms = index["manifests"].as_array().unwrap();
        assert!(!ms.is_empty());
        for d in ms {
            assert_eq!(d["annotations"]["pad"].as_str().unwrap().len(), 900 << 10);
            seen.push(d["digest"].as_str().unwrap().to_string());
        }
    }
    // Every referrer exactly once, in digest order across pages; the last page has no Link.
    assert_eq!(seen, pushed);
    assert!(pages.last().unwrap().header("link").is_none());

    // `n` pages by count; the Link keeps `n` and the artifactType filter.
    let other = push_referrer(
        &s,
        "big/refs",
        (&subject, m.len()),
        "application/vnd.example.sig+json",
        9,
        10,
    );
    let first = s.get(&format!("/v2/big/refs/referrers/{subject}?n=2"));
    assert_eq!(first.json()["manifests"].as_array().unwrap().len(), 2);
    let link = first.header("link").unwrap();
    assert!(
        link.contains("n=2") && link.contains("last=sha256:"),
        "{link}"
    );
    let pages = follow_pages(
        &s,
        &format!("/v2/big/refs/referrers/{subject}?n=1&artifactType=application/vnd.example.sbom"),
    );
    assert_eq!(pages.len(), 6);
    for p in &pages {
        assert_eq!(p.header("oci-filters-applied"), Some("artifactType"));
        let ms = p.json()["manifests"].as_array().unwrap().clone();
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0]["artifactType"], "application/vnd.example.sbom");
    }
    let pages = follow_pages(
        &s,
        &format!(
            "/v2/big/refs/referrers/{subject}?n=1&artifactType=application/vnd.example.sig%2Bjson"
        ),
    );
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].json()["manifests"][0]["digest"], other.as_str());
    // A small list stays on one page, with no Link.
    let r = s.get(&format!("/v2/big/refs/referrers/{other}"));
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
    assert!(r.header("link").is_none());
    let r = s.get(&format!("/v2/big/refs/referrers/{subject}?n=x"));
    assert_eq!(r.status, 400);
}

fn upload_sessions_announce_chunk_min_length(b: Backend) {
    let (_d, s) = server(b);
    // Default: 1 MiB (on a bucket: its 8 MiB part size), on every response that opens a session.
    let default = match b {
        Backend::Fs => "1048576",
        Backend::S3 | Backend::Azure => "8388608",
    };
    let r = s.req(
        "POST",
        "/v2/c/blobs/uploads/",
        &[("Content-Length", "0")],
        b"",
    );
    assert_eq!(r.status, 202);
    assert_eq!(r.header("oci-chunk-min-length"), Some(default));
    let d = digest_of(b"nowhere");
    let r = s.req(
        "POST",
        &format!("/v2/c/blobs/uploads/?mount={d}&from=other"),
        &[],
        b"",
    );
    assert_eq!(r.status, 202);
    assert_eq!(r.header("oci-chunk-min-length"), Some(default));
    // Not on a completed monolithic POST, nor on PATCH.
    let r = s.req(
        "POST",
        &format!("/v2/c/blobs/uploads/?digest={}", digest_of(b"abc")),
        &[],
        b"abc",
    );
    assert_eq!(r.status, 201);
    assert!(r.header("oci-chunk-min-length").is_none());

    let dir = TempDir::new().unwrap();
    let s = Server::start_on(b, &dir.path().join("s"), &["--chunk-min-length", "5242880"]);
    let r = s.req("POST", "/v2/c/blobs/uploads/", &[], b"");
    assert_eq!(r.header("oci-chunk-min-length"), Some("5242880"));
    // Smaller chunks are still accepted: the minimum is advice to clients.
    let loc = r.header("location").unwrap().to_string();
    let r = s.req("PATCH", &loc, &[("Content-Range", "0-2")], b"abc");
    assert_eq!(r.status, 202);
    assert!(r.header("oci-chunk-min-length").is_none());

    let dir = TempDir::new().unwrap();
    let cfg = dir.path().join("registry.toml");
    std::fs::write(&cfg, "chunk-min-length = 0\n").unwrap();
    let s = Server::start_on(
        b,
        &dir.path().join("s"),
        &["--config", cfg.to_str().unwrap()],
    );
    let r = s.req("POST", "/v2/c/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 202);
    assert!(r.header("oci-chunk-min-length").is_none());
}

fn invalid_names(b: Backend) {
    let (_d, s) = server(b);
    for path in [
        "/v2/UPPER/tags/list",
        "/v2/a/../b/tags/list",
        "/v2/a/..%2Fb/tags/list",
        "/v2/a%2Fb/blobs/uploads/",
        "/v2/a//b/tags/list",
        "/v2/-a/tags/list",
        "/v2/a_/manifests/latest",
    ] {
        let r = s.req(
            if path.ends_with("uploads/") {
                "POST"
            } else {
                "GET"
            },
            path,
            &[],
            b"",
        );
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "NAME_INVALID"),
            "{path}"
        );
    }
    let r = s.get("/v2/a/blobs/sha256:abc");
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));
    assert!(!s.stored_under("repositories/b"));
}

fn body_shorter_than_content_length_is_refused(b: Backend) {
    let (_d, s) = server(b);
    let r = s.req("POST", "/v2/c/blobs/uploads/", &[], b"");
    let loc = r.header("location").unwrap().to_string();
    assert_eq!(s.req("PATCH", &loc, &[], b"12345").status, 202);
    // Announce 10 bytes, send 4, close the sending half.
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
    );
    let conn = start_request(s.port, &head, b"abcd");
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = read_response_lenient(conn);
    let r = s.get(&loc);
    assert_eq!(
        (r.status, r.header("range")),
        (204, Some("0-4")),
        "the short chunk was discarded"
    );
    // A monolithic PUT whose body is short: nothing stored.
    let d = digest_of(b"1234567890");
    let head = format!(
        "PUT {loc}?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
    );
    let conn = start_request(s.port, &head, b"678");
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let _ = read_response_lenient(conn);
    assert_eq!(
        s.req("HEAD", &format!("/v2/c/blobs/{d}"), &[], b"").status,
        404
    );
    assert!(s.stored_blobs().is_empty());
    // The session still works.
    let r = s.req("PUT", &format!("{loc}?digest={d}"), &[], b"67890");
    assert_eq!(r.status, 201, "{}", r.text());
}

fn read_response_lenient(mut s: std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v);
    v
}

fn concurrent_pushes_of_the_same_blob(b: Backend) {
    let (_d, s) = server(b);
    let data: Vec<u8> = (0..(4u32 << 20)).map(|i| (i * 7 % 256) as u8).collect();
    let d = digest_of(&data);
    let port = s.port;
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let data = data.clone();
            let d = d.clone();
            std::thread::spawn(move || {
                let repo = format!("con/r{}", i % 2);
                let r = request(
                    port,
                    "POST",
                    &format!("/v2/{repo}/blobs/uploads/"),
                    &[],
                    b"",
                );
                let loc = r.header("location").unwrap().to_string();
                let half = data.len() / 2;
                let r = request(
                    port,
                    "PATCH",
                    &loc,
                    &[("Content-Range", &format!("0-{}", half - 1))],
                    &data[..half],
                );
                assert_eq!(r.status, 202);
                let r = request(
                    port,
                    "PUT",
                    &format!("{loc}?digest={d}"),
                    &[],
                    &data[half..],
                );
                assert_eq!(r.status, 201, "{}", r.text());
            })
        })
        .collect();
    for t in threads {
        t.join().expect("pusher");
    }
    for repo in ["con/r0", "con/r1"] {
        assert_eq!(s.get(&format!("/v2/{repo}/blobs/{d}")).body, data);
    }
    assert_eq!(s.stored_blobs().len(), 1);
}

fn upload_resumes_after_kill_9(b: Backend) {
    let dir = TempDir::new().unwrap();
    let storage = dir.path().join("storage");
    let mut s = Server::start_on(b, &storage, &[]);
    let data: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 253) as u8).collect();
    let d = digest_of(&data);
    let r = s.req("POST", "/v2/k/blobs/uploads/", &[], b"");
    let loc = r.header("location").unwrap().to_string();
    let first = 1 << 20;
    let r = s.req(
        "PATCH",
        &loc,
        &[("Content-Range", &format!("0-{}", first - 1))],
        &data[..first],
    );
    assert_eq!(r.status, 202);
    // A second chunk in flight when the server dies.
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Range: {first}-{}\r\nContent-Length: {}\r\n\r\n",
        data.len() - 1,
        data.len() - first
    );
    let conn = start_request(s.port, &head, &data[first..first + 300_000]);
    wait_read_by_server(&conn);
    s.kill9();
    drop(conn);
    assert!(s.stored_blobs().is_empty(), "no partial blob visible");

    let s = Server::start_on(b, &storage, &[]);
    let r = s.get(&loc);
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", first - 1).as_str()),
        "offset survives the restart"
    );
    assert_eq!(
        s.req("HEAD", &format!("/v2/k/blobs/{d}"), &[], b"").status,
        404
    );
    let r = s.req(
        "PATCH",
        &loc,
        &[("Content-Range", &format!("{first}-{}", data.len() - 1))],
        &data[first..],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let r = s.req("PUT", &format!("{loc}?digest={d}"), &[], b"");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.get(&format!("/v2/k/blobs/{d}")).body, data);
}

fn read_only_mode_and_config_file(b: Backend) {
    let dir = TempDir::new().unwrap();
    let storage = dir.path().join("storage");
    let d = {
        let s = Server::start_on(b, &storage, &[]);
        push_image(&s, "ro/app", "v1", b"layer", OCI_MANIFEST);
        s.push_blob("ro/app", b"blob")
    };
    let s = Server::start_on(b, &storage, &["--read-only"]);
    let s_bucket = s.bucket.clone();
    assert_eq!(s.get("/v2/ro/app/manifests/v1").status, 200);
    assert_eq!(s.get(&format!("/v2/ro/app/blobs/{d}")).body, b"blob");
    for (m, p) in [
        ("POST", "/v2/ro/app/blobs/uploads/".to_string()),
        ("DELETE", format!("/v2/ro/app/blobs/{d}")),
        ("PUT", "/v2/ro/app/manifests/v2".to_string()),
        ("DELETE", "/v2/ro/app/manifests/v1".to_string()),
    ] {
        let r = s.req(m, &p, &[], b"");
        assert_eq!(
            (r.status, r.code().as_str()),
            (405, "UNSUPPORTED"),
            "{m} {p}"
        );
    }
    drop(s);

    let cfg = dir.path().join("registry.toml");
    let setting = match &s_bucket {
        Some(bucket) => b.storage_table(bucket),
        None => format!("storage = {:?}\n", storage.to_str().unwrap()),
    };
    std::fs::write(
        &cfg,
        format!("addr = \"127.0.0.1:0\"\nread-only = true\n{setting}"),
    )
    .unwrap();
    let s = Server::start_with_on(b, &["--config", cfg.to_str().unwrap()], &storage, &[]);
    assert_eq!(
        s.get("/v2/ro/app/manifests/v1").status,
        200,
        "storage comes from the file"
    );
    assert_eq!(
        s.req("POST", "/v2/ro/app/blobs/uploads/", &[], b"").status,
        405
    );
}

fn sigterm_lets_requests_in_flight_finish(b: Backend) {
    let dir = TempDir::new().unwrap();
    let mut s = Server::start_on(b, &dir.path().join("storage"), &[]);
    let r = s.req("POST", "/v2/g/blobs/uploads/", &[], b"");
    let loc = r.header("location").unwrap().to_string();
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
    );
    let mut conn = start_request(s.port, &head, b"01234");
    wait_read_by_server(&conn);
    s.signal("TERM");
    // New connections are refused once shutdown began.
    common::wait_for(
        "new connections to be refused",
        std::time::Duration::from_secs(10),
        || std::net::TcpStream::connect(("127.0.0.1", s.port)).is_err(),
    );
    use std::io::Write;
    conn.write_all(b"56789").unwrap();
    let resp = read_response(conn, false);
    assert_eq!(resp.status, 202);
    assert_eq!(resp.header("range"), Some("0-9"));
    assert!(s.wait_exit(10).success());
}

fn htpasswd_basic_auth(b: Backend) {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("htpasswd");
    for (user, pw) in [("alice", "first"), ("bob", "pw2"), ("alice", "second")] {
        let out = assert_cmd::Command::cargo_bin("berth")
            .unwrap()
            .args(["--root", dir.path().join("root").to_str().unwrap()])
            .args([
                "registry",
                "htpasswd",
                user,
                "--file",
                file.to_str().unwrap(),
            ])
            .write_stdin(format!("{pw}\n"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text.lines().count(),
        2,
        "alice replaced, not duplicated: {text}"
    );

    let s = Server::start_on(
        b,
        &dir.path().join("storage"),
        &["--htpasswd", file.to_str().unwrap()],
    );
    let basic =
        |u: &str, p: &str| format!("Basic {}", base64_encode(format!("{u}:{p}").as_bytes()));
    let r = s.get("/v2/");
    assert_eq!((r.status, r.code().as_str()), (401, "UNAUTHORIZED"));
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"berth-registry\"")
    );
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    let r = s.req(
        "GET",
        "/v2/",
        &[("Authorization", &basic("alice", "first"))],
        b"",
    );
    assert_eq!(r.status, 401, "old password no longer works");
    let r = s.req(
        "POST",
        "/v2/a/blobs/uploads/",
        &[("Authorization", &basic("mallory", "x"))],
        b"",
    );
    assert_eq!(r.status, 401);
    for (u, p) in [("alice", "second"), ("bob", "pw2")] {
        let r = s.req("GET", "/v2/", &[("Authorization", &basic(u, p))], b"");
        assert_eq!(r.status, 200, "{u}");
    }
    let r = s.req(
        "POST",
        "/v2/a/blobs/uploads/",
        &[("Authorization", &basic("bob", "pw2"))],
        b"",
    );
    assert_eq!(r.status, 202);
    assert_eq!(
        s.get("/healthz").status,
        200,
        "health checks need no credentials"
    );
}

fn base64_encode(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

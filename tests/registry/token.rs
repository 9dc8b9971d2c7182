//! Bearer-token auth end to end: `berth registry serve` in token mode (with its built-in token
//! server, or trusting an outside issuer's certificate), raw HTTP for the challenges and scopes,
//! `berth login/push/pull` and skopeo as clients going through the whole token flow.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::client::*;
use common::{Env, have};
use tempfile::TempDir;

const SERVICE: &str = "berth-registry";

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An EC P-256 key and a self-signed certificate for it, in `dir`.
fn keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let crt = dir.join(format!("{name}.crt"));
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        key.to_str().unwrap(),
    ]);
    openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
        "-days",
        "1",
        "-subj",
        "/CN=berth token test",
    ]);
    (key, crt)
}

/// An htpasswd file with alice (password `wonderland`) and bob (`builder`).
fn htpasswd(dir: &Path) -> PathBuf {
    let file = dir.join("htpasswd");
    for (user, pw) in [("alice", "wonderland"), ("bob", "builder")] {
        let out = assert_cmd::Command::cargo_bin("berth")
            .unwrap()
            .args(["--root", dir.join("root").to_str().unwrap()])
            .args(["registry", "htpasswd", user, "--file"])
            .arg(&file)
            .write_stdin(format!("{pw}\n"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    file
}

/// A registry with the built-in token server (EC key), plus `extra` flags.
fn token_server(dir: &TempDir, extra: &[&str]) -> Server {
    let (key, _) = keypair(dir.path(), "issuer");
    let h = htpasswd(dir.path());
    let mut args = vec![
        "--htpasswd".to_string(),
        h.to_str().unwrap().to_string(),
        "--auth-token-key".to_string(),
        key.to_str().unwrap().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&dir.path().join("storage"), &args)
}

fn basic(user: &str, pw: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

/// A token from the built-in server for `scopes`, as `creds` (None: anonymous).
fn fetch_token(s: &Server, creds: Option<(&str, &str)>, scopes: &[&str]) -> String {
    let mut q = format!("/token?service={SERVICE}");
    for sc in scopes {
        q.push_str(&format!("&scope={sc}"));
    }
    let auth = creds.map(|(u, p)| basic(u, p));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let r = s.req("GET", &q, &headers, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["token"], v["access_token"]);
    v["token"].as_str().expect("token").to_string()
}

/// The Authorization header for a token (leaked: a test's few strings live as long as it).
fn with_token(t: &str) -> [(&'static str, &'static str); 1] {
    [(
        "Authorization",
        Box::leak(format!("Bearer {t}").into_boxed_str()),
    )]
}

#[test]
fn challenges_name_the_scope_each_endpoint_needs() {
    let dir = TempDir::new().unwrap();
    let s = token_server(&dir, &[]);
    let realm = format!("http://127.0.0.1:{}/token", s.port);
    let challenge = |method: &str, path: &str| {
        let r = s.req(method, path, &[], b"");
        assert_eq!(r.status, 401, "{method} {path}");
        if method != "HEAD" {
            assert_eq!(r.code(), "UNAUTHORIZED", "{method} {path}");
        }
        r.header("www-authenticate").unwrap_or_default().to_string()
    };
    assert_eq!(
        challenge("GET", "/v2/"),
        format!(r#"Bearer realm="{realm}",service="{SERVICE}""#)
    );
    let d = digest_of(b"x");
    for (method, path, scope) in [
        (
            "GET",
            "/v2/a/b/tags/list".to_string(),
            "repository:a/b:pull",
        ),
        ("HEAD", format!("/v2/a/b/blobs/{d}"), "repository:a/b:pull"),
        (
            "GET",
            "/v2/a/b/manifests/latest".into(),
            "repository:a/b:pull",
        ),
        (
            "POST",
            "/v2/a/b/blobs/uploads/".into(),
            "repository:a/b:pull,push",
        ),
        (
            "PUT",
            "/v2/a/b/manifests/v1".into(),
            "repository:a/b:pull,push",
        ),
        (
            "DELETE",
            "/v2/a/b/manifests/v1".into(),
            "repository:a/b:delete",
        ),
        ("GET", "/v2/_catalog".into(), "registry:catalog:*"),
        (
            "POST",
            format!("/v2/a/b/blobs/uploads/?mount={d}&from=c/d"),
            "repository:a/b:pull,push repository:c/d:pull",
        ),
    ] {
        assert_eq!(
            challenge(method, &path),
            format!(r#"Bearer realm="{realm}",service="{SERVICE}",scope="{scope}""#),
            "{method} {path}"
        );
    }
    assert_eq!(s.get("/healthz").status, 200, "health checks stay open");
}

#[test]
fn built_in_token_server_grants_what_users_ask_and_scopes_are_enforced() {
    let dir = TempDir::new().unwrap();
    let s = token_server(&dir, &[]);

    // Wrong credentials: 401 from the token server itself.
    let r = s.req(
        "GET",
        &format!("/token?service={SERVICE}&scope=repository:a/b:pull"),
        &[("Authorization", &basic("alice", "queen"))],
        b"",
    );
    assert_eq!((r.status, r.code().as_str()), (401, "UNAUTHORIZED"));
    let r = s.req(
        "GET",
        "/token?service=elsewhere&scope=repository:a/b:pull",
        &[("Authorization", &basic("alice", "wonderland"))],
        b"",
    );
    assert_eq!(r.status, 403, "tokens for another service are refused");

    // The token response carries the spec's fields.
    let r = s.req(
        "GET",
        &format!("/token?service={SERVICE}&scope=repository:a/b:pull,push&account=alice"),
        &[("Authorization", &basic("alice", "wonderland"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["expires_in"], 300);
    assert!(v["issued_at"].as_str().unwrap().ends_with('Z'), "{v}");
    let push = v["token"].as_str().unwrap().to_string();

    // pull,push: a whole push works.
    let h = with_token(&push);
    let r = s.req("POST", "/v2/a/b/blobs/uploads/", &h, b"");
    assert_eq!(r.status, 202, "{}", r.text());
    let loc = r.header("location").unwrap().to_string();
    let data = b"layer bytes".to_vec();
    let d = digest_of(&data);
    let r = s.req("PUT", &format!("{loc}?digest={d}"), &h, &data);
    assert_eq!(r.status, 201, "{}", r.text());
    let cfg = config_blob();
    let r = s.req(
        "POST",
        &format!("/v2/a/b/blobs/uploads/?digest={}", digest_of(&cfg)),
        &h,
        &cfg,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let m = manifest_json(
        OCI_MANIFEST,
        (&digest_of(&cfg), cfg.len()),
        &[(&d, data.len())],
        "",
    );
    let mut hm = h.to_vec();
    hm.push(("Content-Type", OCI_MANIFEST));
    let r = s.req("PUT", "/v2/a/b/manifests/v1", &hm, m.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    // The same token does not open another repository, nor deletes.
    let r = s.req("GET", "/v2/other/tags/list", &h, b"");
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains(r#"error="insufficient_scope""#),
        "{:?}",
        r.headers
    );
    let r = s.req("DELETE", "/v2/a/b/manifests/v1", &h, b"");
    assert_eq!(r.status, 401);

    // A pull-only token reads but cannot push: 401 insufficient_scope naming pull,push.
    let pull = fetch_token(&s, Some(("bob", "builder")), &["repository:a/b:pull"]);
    let h = with_token(&pull);
    assert_eq!(s.req("GET", "/v2/a/b/manifests/v1", &h, b"").status, 200);
    assert_eq!(
        s.req("GET", &format!("/v2/a/b/blobs/{d}"), &h, b"").body,
        data
    );
    let r = s.req("POST", "/v2/a/b/blobs/uploads/", &h, b"");
    assert_eq!((r.status, r.code().as_str()), (401, "UNAUTHORIZED"));
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            format!(
                r#"Bearer realm="http://127.0.0.1:{}/token",service="{SERVICE}",scope="repository:a/b:pull,push",error="insufficient_scope""#,
                s.port
            )
            .as_str()
        )
    );
    let r = s.req("PUT", "/v2/a/b/manifests/v2", &hm[1..], m.as_bytes());
    assert_eq!(r.status, 401, "no token at all");

    // Catalog needs registry:catalog:*; users may ask for it.
    let cat = fetch_token(&s, Some(("bob", "builder")), &["registry:catalog:*"]);
    let r = s.req("GET", "/v2/_catalog", &with_token(&cat), b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["repositories"], serde_json::json!(["a/b"]));

    // Anonymous requests get a token that grants nothing (no --auth-token-anonymous-pull).
    let anon = fetch_token(&s, None, &["repository:a/b:pull"]);
    let r = s.req("GET", "/v2/a/b/manifests/v1", &with_token(&anon), b"");
    assert_eq!(r.status, 401);
    // ... but any valid token opens the base route.
    assert_eq!(s.req("GET", "/v2/", &with_token(&anon), b"").status, 200);
    let log = s.access_log();
    assert!(log.contains("GET /token?service="), "{log}");
}

#[test]
fn anonymous_pull_only_when_allowed() {
    let dir = TempDir::new().unwrap();
    let s = token_server(&dir, &["--auth-token-anonymous-pull"]);
    let push = fetch_token(
        &s,
        Some(("alice", "wonderland")),
        &["repository:pub/x:pull,push"],
    );
    let data = b"public".to_vec();
    let d = digest_of(&data);
    let r = s.req(
        "POST",
        &format!("/v2/pub/x/blobs/uploads/?digest={d}"),
        &with_token(&push),
        &data,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // Anonymous asks for pull and push: only pull is granted.
    let anon = fetch_token(&s, None, &["repository:pub/x:pull,push"]);
    let claims = token_claims(&anon);
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "pub/x", "actions": ["pull"]}])
    );
    assert_eq!(claims["sub"], "");
    let h = with_token(&anon);
    assert_eq!(
        s.req("GET", &format!("/v2/pub/x/blobs/{d}"), &h, b"").body,
        data
    );
    let r = s.req("POST", "/v2/pub/x/blobs/uploads/", &h, b"");
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("insufficient_scope")
    );
    // The catalog is never anonymous.
    let anon = fetch_token(&s, None, &["registry:catalog:*"]);
    assert_eq!(
        s.req("GET", "/v2/_catalog", &with_token(&anon), b"").status,
        401
    );
}

/// `POST /token` with a form body.
fn post_token(s: &Server, form: &str) -> Resp {
    s.req(
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
}

#[test]
fn oauth2_post_grants_password_and_refresh_tokens() {
    let dir = TempDir::new().unwrap();
    let s = token_server(&dir, &[]);
    let form = format!(
        "grant_type=password&username=alice&password=wonderland&service={SERVICE}\
         &client_id=berth-test&access_type=offline&scope=repository%3Aa%2Fb%3Apull%2Cpush"
    );
    let r = post_token(&s, &form);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["scope"], "repository:a/b:pull,push");
    assert_eq!(v["expires_in"], 300);
    let access = v["access_token"].as_str().unwrap().to_string();
    let refresh = v["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    // The access token works at the registry; the refresh token does not.
    let data = b"oauth".to_vec();
    let d = digest_of(&data);
    let up = format!("/v2/a/b/blobs/uploads/?digest={d}");
    assert_eq!(s.req("POST", &up, &with_token(&access), &data).status, 201);
    let r = s.req(
        "GET",
        &format!("/v2/a/b/blobs/{d}"),
        &with_token(&refresh),
        b"",
    );
    assert_eq!(r.status, 401, "a refresh token is not an access token");
    // The refresh token buys new access tokens, for the same user.
    let r = post_token(
        &s,
        &format!(
            "grant_type=refresh_token&refresh_token={refresh}&service={SERVICE}\
             &client_id=berth-test&scope=repository:a/b:pull"
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let renewed = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(token_claims(&renewed)["sub"], "alice");
    assert!(r.json().get("refresh_token").is_none());
    assert_eq!(
        s.req(
            "GET",
            &format!("/v2/a/b/blobs/{d}"),
            &with_token(&renewed),
            b""
        )
        .body,
        data
    );
    // Bad input, RFC 6749's answers.
    for (form, status, error) in [
        (
            format!(
                "grant_type=password&username=alice&password=nope&client_id=x&service={SERVICE}"
            ),
            400,
            "invalid_grant",
        ),
        (
            format!("grant_type=refresh_token&refresh_token={access}&client_id=x"),
            400,
            "invalid_grant",
        ),
        (
            "grant_type=client_credentials&client_id=x".to_string(),
            400,
            "unsupported_grant_type",
        ),
        (
            "grant_type=password&username=alice&password=wonderland".to_string(),
            400,
            "invalid_request",
        ),
        ("client_id=x".to_string(), 400, "invalid_request"),
    ] {
        let r = post_token(&s, &form);
        assert_eq!(r.status, status, "{form}: {}", r.text());
        assert_eq!(r.json()["error"], error, "{form}");
    }
}

/// The claims of a JWT, unverified (for asserting on what the server issued).
fn token_claims(t: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = t.split('.').nth(1).expect("JWT");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&raw).expect("JSON claims")
}

/// Sign claims with an EC key, as an outside token server would.
fn sign(key: &Path, claims: serde_json::Value) -> String {
    let k = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(key).unwrap()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &k,
    )
    .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn outside_issuer_tokens_are_checked_for_signature_issuer_audience_and_time() {
    let dir = TempDir::new().unwrap();
    let (key, crt) = keypair(dir.path(), "trusted");
    let (rogue, _) = keypair(dir.path(), "rogue");
    // Token settings from registry.toml, as distribution's auth.token section.
    let cfg = dir.path().join("registry.toml");
    std::fs::write(
        &cfg,
        format!(
            "auth-token-realm = \"https://auth.example/token\"\nauth-token-service = \"reg.example\"\nauth-token-issuer = \"example-issuer\"\nauth-token-rootcert = \"{}\"\n",
            crt.display()
        ),
    )
    .unwrap();
    let s = Server::start(
        &dir.path().join("storage"),
        &["--config", cfg.to_str().unwrap()],
    );
    let r = s.get("/v2/a/tags/list");
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            r#"Bearer realm="https://auth.example/token",service="reg.example",scope="repository:a:pull""#
        )
    );
    assert_eq!(
        s.get("/token").status,
        404,
        "no built-in token server without a key"
    );
    let claims = |exp: u64, iss: &str, aud: &str| {
        serde_json::json!({
            "iss": iss, "sub": "ci", "aud": aud, "exp": exp, "nbf": now() - 10, "iat": now(),
            "jti": "t1",
            "access": [{"type": "repository", "name": "a", "actions": ["pull", "push"]}]
        })
    };
    let good = sign(&key, claims(now() + 300, "example-issuer", "reg.example"));
    let r = s.req("POST", "/v2/a/blobs/uploads/", &with_token(&good), b"");
    assert_eq!(r.status, 202, "{}", r.text());
    for (what, token) in [
        (
            "expired",
            sign(&key, claims(now() - 300, "example-issuer", "reg.example")),
        ),
        (
            "signed by another key",
            sign(&rogue, claims(now() + 300, "example-issuer", "reg.example")),
        ),
        (
            "another issuer",
            sign(&key, claims(now() + 300, "mallory", "reg.example")),
        ),
        (
            "for another service",
            sign(&key, claims(now() + 300, "example-issuer", "other")),
        ),
        ("garbage", "a.b.c".to_string()),
    ] {
        let r = s.req("GET", "/v2/a/tags/list", &with_token(&token), b"");
        assert_eq!(
            (r.status, r.code().as_str()),
            (401, "UNAUTHORIZED"),
            "{what}"
        );
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .ends_with(r#"error="invalid_token""#),
            "{what}: {:?}",
            r.headers
        );
    }
    // Expired a few seconds ago is within distribution's leeway.
    let fresh = sign(&key, claims(now() - 5, "example-issuer", "reg.example"));
    assert_eq!(
        s.req("GET", "/v2/a/tags/list", &with_token(&fresh), b"")
            .status,
        404
    );
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn berth_login_push_and_pull_through_tokens() {
    let dir = TempDir::new().unwrap();
    let s = token_server(&dir, &[]);
    let addr = format!("127.0.0.1:{}", s.port);
    let a = Env::new();
    let auth = a.path("auth.json");
    let login = |env: &Env, pw: &str| {
        env.berth()
            .env("BERTH_AUTH_FILE", &auth)
            .env("DOCKER_CONFIG", env.path("docker"))
            .args(["login", "-u", "alice", "--password-stdin", &addr])
            .write_stdin(format!("{pw}\n"))
            .output()
            .unwrap()
    };
    let out = login(&a, "queen");
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "unauthorized: incorrect username or password for {addr}"
        )),
        "{err}"
    );
    assert!(
        err.lines().filter(|l| !l.trim().is_empty()).count() <= 3,
        "{err}"
    );
    assert!(!auth.exists(), "nothing stored for a failed login");
    let out = login(&a, "wonderland");
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains("Login Succeeded"));

    let name = format!("{addr}/team/app:1");
    let id = a.import_busybox(&name);
    let run = |env: &Env, args: &[&str]| {
        env.berth()
            .env("BERTH_AUTH_FILE", &auth)
            .env("DOCKER_CONFIG", env.path("docker"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&a, &["push", &name]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let digest = stdout_of(&out)
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    // Pushing again to another repository (cross-repository mount needs pull on the source).
    let again = format!("{addr}/team/copy:1");
    a.ok(&["tag", &name, &again]);
    let out = run(&a, &["push", &again]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    // The layer was mounted, not uploaded: the first try is refused for want of scope on
    // team/app, the retry with a token for both repositories lands.
    let log = s.access_log();
    let mounts: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("POST /v2/team/copy/blobs/uploads/?mount="))
        .collect();
    assert!(mounts.iter().any(|l| l.contains(" 401 ")), "{log}");
    assert!(mounts.iter().any(|l| l.contains(" 201 ")), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("PATCH /v2/team/copy/")),
        "nothing uploaded to the copy: {log}"
    );

    let b = Env::new();
    let out = run(&b, &["pull", &name]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stdout_of(&out).contains(&format!("Digest: {digest}")));
    assert_eq!(b.ok(&["inspect", "-f", "{{.Id}}", &name]).trim(), id);
    b.check_store();
    let log = s.access_log();
    assert!(log.contains("GET /token?"), "{log}");

    // Without credentials (another auth file): no anonymous pull here.
    let c = Env::new();
    let out = c
        .berth()
        .env("BERTH_AUTH_FILE", c.path("none.json"))
        .env("DOCKER_CONFIG", c.path("docker"))
        .args(["pull", &name])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains("unauthorized"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn berth_pulls_anonymously_when_the_token_server_allows_it() {
    let dir = TempDir::new().unwrap();
    let s = token_server(&dir, &["--auth-token-anonymous-pull"]);
    let addr = format!("127.0.0.1:{}", s.port);
    let a = Env::new();
    let auth = a.path("auth.json");
    let out = a
        .berth()
        .env("BERTH_AUTH_FILE", &auth)
        .args(["login", "-u", "bob", "--password-stdin", &addr])
        .write_stdin("builder\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let name = format!("{addr}/pub/app:1");
    let id = a.import_busybox(&name);
    let out = a
        .berth()
        .env("BERTH_AUTH_FILE", &auth)
        .args(["push", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));

    let b = Env::new();
    let anon = |args: &[&str]| {
        b.berth()
            .env("BERTH_AUTH_FILE", b.path("none.json"))
            .env("DOCKER_CONFIG", b.path("docker"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = anon(&["pull", &name]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(b.ok(&["inspect", "-f", "{{.Id}}", &name]).trim(), id);
    let mine = format!("{addr}/pub/mine:1");
    b.ok(&["tag", &name, &mine]);
    let out = anon(&["push", &mine]);
    assert!(!out.status.success(), "anonymous push must fail");
    assert!(
        stderr_of(&out).contains("unauthorized"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn skopeo_goes_through_the_token_flow() {
    if !have("skopeo") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let s = token_server(&dir, &[]);
    let addr = format!("127.0.0.1:{}", s.port);
    let a = Env::new();
    let name = format!("{addr}/sk/src:1");
    let id = a.import_busybox(&name);
    let auth = a.path("auth.json");
    let out = a
        .berth()
        .env("BERTH_AUTH_FILE", &auth)
        .args(["login", "-u", "alice", "--password-stdin", &addr])
        .write_stdin("wonderland\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = a
        .berth()
        .env("BERTH_AUTH_FILE", &auth)
        .args(["push", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));

    let skopeo = |args: &[&str]| {
        Command::new("skopeo")
            .env("REGISTRY_AUTH_FILE", a.path("skopeo-auth.json"))
            .args(args)
            .output()
            .expect("skopeo")
    };
    // skopeo pulls what berth pushed and pushes a copy: both sides through tokens.
    let copied = format!("{addr}/sk/copied:2");
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        "alice:wonderland",
        "--dest-creds",
        "bob:builder",
        &format!("docker://{name}"),
        &format!("docker://{copied}"),
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        "alice:wonderland",
        "--dest-creds",
        "bob:wrong",
        &format!("docker://{name}"),
        &format!("docker://{addr}/sk/denied:1"),
    ]);
    assert!(!out.status.success(), "wrong credentials must fail");
    let log = s.access_log();
    assert!(log.contains("GET /token?"), "{log}");

    let b = Env::new();
    let out = b
        .berth()
        .env("BERTH_AUTH_FILE", &auth)
        .args(["pull", &copied])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(b.ok(&["inspect", "-f", "{{.Id}}", &copied]).trim(), id);
    let t = fetch_token(&s, Some(("bob", "builder")), &["repository:sk/denied:pull"]);
    assert_eq!(
        s.req("GET", "/v2/sk/denied/manifests/1", &with_token(&t), b"")
            .status,
        404,
        "nothing was pushed with wrong credentials"
    );
}

/// Debian's docker-registry (distribution 2.8) trusting berth's token server: it finds the
/// signing key by the token's `kid` among its root certificate bundle's keys.
#[test]
fn distribution_accepts_tokens_from_the_built_in_token_server() {
    if !have("docker-registry") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let (key, crt) = keypair(dir.path(), "issuer");
    let h = htpasswd(dir.path());
    let s = Server::start(
        &dir.path().join("storage"),
        &[
            "--htpasswd",
            h.to_str().unwrap(),
            "--auth-token-key",
            key.to_str().unwrap(),
        ],
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog: {{level: info}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: {addr}}}\nauth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {SERVICE}\n    issuer: {SERVICE}\n    rootcertbundle: {}\n",
            dir.path().join("dist").display(),
            s.port,
            crt.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("dist.log");
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("dist.err")).unwrap())
        .spawn()
        .expect("docker-registry");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "docker-registry did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let a = Env::new();
    let auth = a.path("auth.json");
    let out = a
        .berth()
        .env("BERTH_AUTH_FILE", &auth)
        .args(["login", "-u", "alice", "--password-stdin", &addr])
        .write_stdin("wonderland\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let name = format!("{addr}/dist/app:1");
    let id = a.import_busybox(&name);
    let out = a
        .berth()
        .env("BERTH_AUTH_FILE", &auth)
        .args(["push", &name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr_of(&out),
        std::fs::read_to_string(dir.path().join("dist.err")).unwrap_or_default()
    );
    let b = Env::new();
    let out = b
        .berth()
        .env("BERTH_AUTH_FILE", &auth)
        .args(["pull", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(b.ok(&["inspect", "-f", "{{.Id}}", &name]).trim(), id);
    // Without credentials distribution refuses what the token server granted nothing for.
    let c = Env::new();
    let out = c
        .berth()
        .env("BERTH_AUTH_FILE", c.path("none.json"))
        .env("DOCKER_CONFIG", c.path("docker"))
        .args(["pull", &name])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("unauthorized"),
        "{}",
        stderr_of(&out)
    );
}

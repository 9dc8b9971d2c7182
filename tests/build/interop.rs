//! A built image travels: pushed to `berth registry serve` and pulled into a fresh state root,
//! it runs the same and inspects the same (image ID, config, rootfs, history), and serves as the
//! base of a build there.

use crate::common;
use crate::registry_client as client;

use std::fs;

use client::Server;
use common::Env;
use serde_json::Value;

const DOCKERFILE: &str = r#"FROM bb:1
ENV GREETING=hello
WORKDIR /app
COPY msg.txt ./
RUN echo "$GREETING from $(cat msg.txt)" > out.txt && mkdir -p data && echo x > data/f
EXPOSE 8080
LABEL org.example=interop
CMD ["cat", "/app/out.txt"]
"#;

fn inspect(env: &Env, r: &str) -> Value {
    let v: Value = serde_json::from_str(&env.ok(&["inspect", r])).unwrap();
    v[0].clone()
}

#[test]
fn a_built_image_pushed_and_pulled_into_a_fresh_root_runs_and_inspects_the_same() {
    let a = Env::new();
    a.import_busybox("bb:1");
    let ctx = a.path("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::write(ctx.join("msg.txt"), "berth").unwrap();
    let id = a
        .ok(&["build", "-q", "-t", "app:1", ctx.to_str().unwrap()])
        .trim()
        .to_string();
    let run = |env: &Env, r: &str| env.ok(&["run", "--rm", "--network", "none", r]);
    assert_eq!(run(&a, "app:1"), "hello from berth\n");

    let storage = a.path("registry");
    let server = Server::start(&storage, &[]);
    let remote = format!("127.0.0.1:{}/team/app:1", server.port);
    a.ok(&["tag", "app:1", &remote]);
    a.ok(&["push", &remote]);

    // A fresh root that never saw the base image or the build.
    let b = Env::new();
    b.ok(&["pull", &remote]);
    assert_eq!(run(&b, &remote), "hello from berth\n");
    let (ia, ib) = (inspect(&a, "app:1"), inspect(&b, &remote));
    assert_eq!(ib["Id"], Value::String(id.clone()));
    assert_eq!(ia["Id"], ib["Id"]);
    assert_eq!(ia["Config"], ib["Config"]);
    assert_eq!(ia["RootFS"], ib["RootFS"]);
    assert_eq!(ib["Config"]["WorkingDir"], "/app");
    assert_eq!(ib["Config"]["Labels"]["org.example"], "interop");
    assert!(ib["Config"]["ExposedPorts"].get("8080/tcp").is_some());
    let history =
        |env: &Env, r: &str| env.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", r]);
    assert_eq!(history(&a, "app:1"), history(&b, &remote));

    // The pulled image is a base like any other: a build on it in the fresh root.
    let ctx2 = b.path("ctx2");
    fs::create_dir_all(&ctx2).unwrap();
    fs::write(
        ctx2.join("Dockerfile"),
        format!("FROM {remote}\nRUN cat data/f >> out.txt\n"),
    )
    .unwrap();
    b.ok(&["build", "-q", "-t", "child:1", ctx2.to_str().unwrap()]);
    assert_eq!(run(&b, "child:1"), "hello from berth\nx\n");
    b.check_store();
}

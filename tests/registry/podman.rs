//! podman, a real client, pushes to and pulls from `berth registry serve`; berth pulls what
//! podman pushed and podman pulls what berth pushed, with the same image IDs.

use crate::client as registry_client;
use crate::common;

use std::process::Command;

use common::{Env, have};
use registry_client::Server;

fn podman(env: &Env, args: &[&str]) -> String {
    let out = Command::new("podman")
        .arg("--root")
        .arg(env.path("podman-storage"))
        .arg("--runroot")
        .arg(env.path("podman-run"))
        .args(["--storage-driver", "vfs"])
        .args(args)
        .output()
        .expect("run podman");
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn podman_and_berth_exchange_images_through_berth_registry() {
    if !have("podman") {
        return;
    }
    let env = Env::new();
    let server = Server::start(&env.path("registry"), &[]);
    let reg = format!("127.0.0.1:{}", server.port);

    // podman → registry → podman and berth.
    let tar = env.path("rootfs.tar");
    common::busybox_rootfs_tar(&tar);
    let pid = podman(&env, &["import", tar.to_str().unwrap(), "localhost/bb:1"]);
    let pid = pid.trim().trim_start_matches("sha256:").to_string();
    podman(
        &env,
        &[
            "push",
            "--tls-verify=false",
            "localhost/bb:1",
            &format!("{reg}/from/podman:1"),
        ],
    );
    podman(&env, &["rmi", "-f", "localhost/bb:1"]);
    podman(
        &env,
        &[
            "pull",
            "--tls-verify=false",
            &format!("{reg}/from/podman:1"),
        ],
    );
    let pulled = podman(
        &env,
        &[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &format!("{reg}/from/podman:1"),
        ],
    );
    assert_eq!(pulled.trim(), pid);
    env.ok(&["pull", &format!("{reg}/from/podman:1")]);
    let bid = env.ok(&["inspect", "-f", "{{.Id}}", &format!("{reg}/from/podman:1")]);
    assert_eq!(bid.trim(), format!("sha256:{pid}"));

    // berth → registry → podman.
    let id = env.import_busybox(&format!("{reg}/from/berth:1"));
    env.ok(&["push", &format!("{reg}/from/berth:1")]);
    podman(
        &env,
        &["pull", "--tls-verify=false", &format!("{reg}/from/berth:1")],
    );
    let got = podman(
        &env,
        &[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &format!("{reg}/from/berth:1"),
        ],
    );
    assert_eq!(format!("sha256:{}", got.trim()), id);
}

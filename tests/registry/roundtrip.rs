//! The whole loop on berth alone: `berth registry serve`, `berth push`, `berth pull` into a
//! fresh root, and a peer (skopeo) reading the same registry.

use crate::client as registry_client;
use crate::common;

use common::{Env, have};
use registry_client::Server;

#[test]
fn berth_pushes_to_and_pulls_from_its_own_registry() {
    let env = Env::new();
    let server = Server::start(&env.path("registry"), &[]);
    let name = format!("127.0.0.1:{}/demo/busybox:v1", server.port);
    let id = env.import_busybox(&name);
    let out = env.ok(&["push", &name]);
    assert!(out.starts_with("v1: digest: sha256:"), "{out}");
    let digest = out.split_whitespace().nth(2).unwrap().to_string();

    let other = Env::new();
    let pulled = other.ok(&["pull", &name]);
    assert!(pulled.contains(&format!("Digest: {digest}")), "{pulled}");
    assert_eq!(other.ok(&["inspect", "-f", "{{.Id}}", &name]).trim(), id);
    // By digest too, and the pulled image unpacks like an imported one.
    other.ok(&[
        "pull",
        &format!("127.0.0.1:{}/demo/busybox@{digest}", server.port),
    ]);
    let m = other.ok(&["image", "mount", &name]);
    assert!(std::path::Path::new(m.trim()).join("bin/busybox").is_file());
    other.ok(&["image", "unmount", &name]);
    other.check_store();

    if have("skopeo") {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(format!("docker://{name}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(registry_client::digest_of(&out.stdout), digest);
    }
}

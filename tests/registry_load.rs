//! Many clients at once: 200 concurrent small-blob uploads all complete, each blob readable.

mod common;
#[path = "registry_client.rs"]
mod registry_client;

use common::Env;
use registry_client::Server;

#[test]
fn two_hundred_concurrent_small_blob_uploads_complete() {
    let env = Env::new();
    let server = std::sync::Arc::new(Server::start(&env.path("registry"), &[]));
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let s = server.clone();
            std::thread::spawn(move || {
                let data = format!("blob number {i} {}", "x".repeat(i * 13));
                let repo = format!("load/r{}", i % 7);
                let d = s.push_blob(&repo, data.as_bytes());
                (repo, d, data)
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("upload thread"))
        .collect();
    for (repo, d, data) in results {
        let r = server.get(&format!("/v2/{repo}/blobs/{d}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, data.as_bytes());
    }
    assert_eq!(server.stored_blobs().len(), 200);
}

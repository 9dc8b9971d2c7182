//! Many clients at once: 200 concurrent small-blob uploads all complete, each blob readable;
//! and how connections are set up.

use crate::client as registry_client;
use crate::common;

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

/// Every accepted connection has TCP_NODELAY. A response is written as headers, then body;
/// without it a small body (a manifest, a build cache's config) waits behind Nagle for the
/// client's delayed ACK of the headers: 40 ms a request on Linux. Checked on the server's own
/// socket (taken with pidfd_getfd), not by timing.
#[test]
fn accepted_connections_have_tcp_nodelay() {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    let env = Env::new();
    let server = Server::start(&env.path("registry"), &[]);
    // A connection that stays open while the server's end of it is looked at.
    let mut conn = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let mut buf = [0u8; 1024];
    assert!(conn.read(&mut buf).expect("response") > 0);
    let ours = conn.local_addr().expect("local address");

    let pid = rustix::process::Pid::from_raw(server.pid() as i32).expect("server pid");
    let pidfd =
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).expect("pidfd_open");
    let mut seen = 0;
    for e in std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .expect("server fds")
        .flatten()
    {
        let Ok(n) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(fd) =
            rustix::process::pidfd_getfd(&pidfd, n, rustix::process::PidfdGetfdFlags::empty())
        else {
            continue;
        };
        let peer = rustix::net::getpeername(&fd)
            .ok()
            .flatten()
            .and_then(|a| SocketAddr::try_from(a).ok());
        if peer == Some(ours) {
            seen += 1;
            assert!(
                rustix::net::sockopt::tcp_nodelay(&fd).expect("getsockopt"),
                "the server's end of the connection has Nagle on"
            );
        }
    }
    assert_eq!(seen, 1, "the server's end of the connection was not found");
}

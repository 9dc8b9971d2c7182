//! A push whose connection drops in the middle of a layer upload resumes from the offset the
//! registry reports, and the image arrives intact.

use crate::common;
use crate::registry_client;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::Env;
use registry_client::Server;

/// Forwards TCP to `backend`; the first connection that carries more than `cut` bytes from the
/// client is closed abruptly (once per proxy).
fn start_proxy(backend: u16, cut: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fired = Arc::new(AtomicBool::new(false));
    let drops = Arc::new(AtomicUsize::new(0));
    let drops_out = drops.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
                break;
            };
            let (fired, drops) = (fired.clone(), drops.clone());
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                let mut total = 0usize;
                loop {
                    let n = match c_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    total += n;
                    if total > cut && !fired.swap(true, Ordering::SeqCst) {
                        drops.fetch_add(1, Ordering::SeqCst);
                        let _ = c_read.shutdown(Shutdown::Both);
                        let _ = s_write.shutdown(Shutdown::Both);
                        break;
                    }
                    if s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_write.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(Shutdown::Both);
            });
        }
    });
    (port, drops_out)
}

#[test]
fn push_resumes_after_a_dropped_connection() {
    let env = Env::new();
    let server = Server::start(&env.path("registry"), &[]);
    let (proxy, drops) = start_proxy(server.port, 12 << 20);

    // A 40 MiB incompressible layer: several 8 MiB PATCHes, the second one cut.
    let tar = env.path("big.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let data: Vec<u8> = (0..40 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "random.bin", &data[..]).unwrap();
        b.finish().unwrap();
    }
    let name = format!("127.0.0.1:{proxy}/resume/big:v1");
    let id = env
        .ok(&["import", tar.to_str().unwrap(), &name])
        .trim()
        .to_string();
    let out = env.ok(&["push", &name]);
    assert!(out.starts_with("v1: digest: sha256:"), "{out}");
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the proxy never cut a connection"
    );
    // The client asked the registry where the upload stood, then went on from there.
    let log = server.access_log();
    assert!(
        log.lines()
            .any(|l| l.starts_with("GET /v2/resume/big/blobs/uploads/")),
        "{log}"
    );

    // What arrived is intact: pull straight from the registry into a fresh root.
    let other = Env::new();
    let direct = format!("127.0.0.1:{}/resume/big:v1", server.port);
    other.ok(&["pull", &direct]);
    assert_eq!(other.ok(&["inspect", "-f", "{{.Id}}", &direct]).trim(), id);
    let m = other.ok(&["image", "mount", &direct]);
    let got = std::fs::metadata(std::path::Path::new(m.trim()).join("random.bin"))
        .unwrap()
        .len();
    other.ok(&["image", "unmount", &direct]);
    assert_eq!(got, 40 << 20);
    other.check_store();
}

//! `berth registry serve` against clients that try to exhaust it (issue 15), over real TCP:
//! - many idle connections beyond what its file descriptors allow: a normal client is still
//!   served, the server never runs out of descriptors or dies;
//! - a slowloris client sending headers a byte at a time, a silent connection (plain and TLS),
//!   an idle keep-alive connection and a stalled upload body are each closed after their
//!   timeout;
//! - a client that asks for a large blob and never reads is cut off after the write timeout,
//!   while other clients are served;
//! - a chunk whose `Content-Range` covers 2^64 bytes is refused with 416, never a panic.

use crate::registry_client as client;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use client::*;
use tempfile::TempDir;

/// Start `berth registry serve` on a directory with `extra` flags; with `nofile`, under that
/// open-file limit (soft and hard, so the server cannot raise it).
fn start(dir: &TempDir, nofile: Option<u64>, extra: &[&str]) -> Server {
    let storage = dir.path().join("storage");
    let berth = assert_cmd::cargo::cargo_bin("berth");
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg(berth);
            c
        }
        None => Command::new(berth),
    };
    cmd.args(["--root", dir.path().join("root").to_str().unwrap()])
        .args(["registry", "serve", "--addr", "127.0.0.1:0", "--storage"])
        .arg(&storage)
        .args(extra);
    Server::spawn(cmd, &storage)
}

/// Whether the peer closed `s` within `within` (EOF or reset), reading and discarding whatever
/// it sends first (a 408 or an error response).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(
            deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1),
        ))
        .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// One `GET /v2/` on a fresh connection: the status, or None when no answer came within
/// `within` (connect included: the server may not be accepting).
fn probe(port: u16, within: Duration) -> Option<u16> {
    let deadline = Instant::now() + within;
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), within).ok()?;
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(
            deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1),
        ))
        .ok()?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if raw.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&raw);
    head.split(' ').nth(1)?.parse().ok()
}

fn alive(s: &mut Server) -> bool {
    Command::new("kill")
        .args(["-0", &s.pid().to_string()])
        .status()
        .is_ok_and(|st| st.success())
}

#[test]
fn idle_connections_beyond_the_fd_limit_do_not_lock_out_other_clients() {
    let dir = TempDir::new().unwrap();
    // 160 descriptors: the default cap is (160 - 64) / 2 = 48 connections; 400 idle ones would
    // exhaust a server without a cap many times over.
    let mut s = start(&dir, Some(160), &[]);
    assert_eq!(probe(s.port, Duration::from_secs(10)), Some(200));
    let mut idle = Vec::new();
    for _ in 0..400 {
        // A server that stopped accepting fills its backlog, and connects then time out.
        match TcpStream::connect_timeout(&([127, 0, 0, 1], s.port).into(), Duration::from_secs(10))
        {
            Ok(c) => idle.push(c),
            Err(e) => panic!("connect: {e} after {} connections", idle.len()),
        }
    }
    // A normal client is served while they are all still open: connections idle past the
    // eviction grace make room, and the server keeps accepting.
    let t = Instant::now();
    let got = probe(s.port, Duration::from_secs(30));
    let took = t.elapsed();
    assert_eq!(got, Some(200), "a normal client was not served ({took:?})");
    eprintln!(
        "normal client served after {took:?} with {} idle connections open",
        idle.len()
    );
    // A second one, now that the backlog is drained, at once.
    let t = Instant::now();
    assert_eq!(probe(s.port, Duration::from_secs(10)), Some(200));
    eprintln!("second client after {:?}", t.elapsed());
    drop(idle);
    assert!(alive(&mut s), "the registry died");
    let log = s.access_log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(log.contains("connections open (the limit)"), "{log}");
}

#[test]
fn slow_and_silent_clients_are_closed_after_their_timeouts() {
    let dir = TempDir::new().unwrap();
    let s = start(
        &dir,
        None,
        &["--header-timeout", "1s", "--idle-timeout", "2s"],
    );
    let addr = ("127.0.0.1", s.port);

    // Silent: connects, sends nothing.
    let mut silent = TcpStream::connect(addr).unwrap();
    // Slowloris: a request head that never ends, one header line every 200 ms.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /v2/ HTTP/1.1\r\nHost: r\r\n").unwrap();
    let t = Instant::now();
    let mut slow_closed = None;
    for i in 0..50 {
        if slow
            .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
            .is_err()
        {
            slow_closed = Some(t.elapsed());
            break;
        }
        slow.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 512];
        match slow.read(&mut b) {
            Ok(0) => {
                slow_closed = Some(t.elapsed());
                break;
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                slow_closed = Some(t.elapsed());
                break;
            }
        }
    }
    let slow_closed = slow_closed.expect("a slowloris client kept its connection for 10 s");
    assert!(
        slow_closed < Duration::from_secs(4),
        "slowloris closed only after {slow_closed:?}"
    );
    assert!(closed_within(&mut silent, Duration::from_secs(3)));

    // Kept alive after a request, then idle: closed after the header timeout.
    let mut ka = TcpStream::connect(addr).unwrap();
    ka.write_all(b"GET /v2/ HTTP/1.1\r\nHost: r\r\n\r\n")
        .unwrap();
    let mut b = [0u8; 1024];
    ka.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let n = ka.read(&mut b).unwrap();
    assert!(b[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &b[..n]);
    let t = Instant::now();
    assert!(closed_within(&mut ka, Duration::from_secs(5)));
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );

    // A stalled upload body: 10 of 100 bytes, then nothing. The request fails after the idle
    // timeout and the connection goes.
    let r = s.req("POST", "/v2/a/b/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 202);
    let loc = r.header("location").unwrap().to_string();
    let mut stalled = start_request(
        s.port,
        &format!(
            "PATCH {loc} HTTP/1.1\r\nHost: r\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\n"
        ),
        &[7u8; 10],
    );
    let t = Instant::now();
    assert!(
        closed_within(&mut stalled, Duration::from_secs(8)),
        "a stalled upload kept its connection"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );

    // Meanwhile, and after, normal clients are served.
    assert_eq!(probe(s.port, Duration::from_secs(5)), Some(200));
}

/// The TCP state of the server's end of a connection from the client's `client_port` to the
/// server's `server_port` over IPv4 loopback (`/proc/net/tcp`: 01 is ESTABLISHED); None once
/// the server has no such socket.
fn server_socket_state(server_port: u16, client_port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{server_port:04X}");
    let remote = format!(":{client_port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 3 && f[1].ends_with(&local) && f[2].ends_with(&remote)).then(|| f[3].to_string())
    })
}

#[test]
fn a_client_that_never_reads_is_cut_off_after_the_write_timeout() {
    let dir = TempDir::new().unwrap();
    let s = start(&dir, None, &["--write-timeout", "2s"]);
    // Far more than the socket buffers on both sides hold while the client reads nothing
    // (the receive buffer only grows as the application reads).
    let blob: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
    let d = s.push_blob("big/blob", &blob);

    let mut stuck = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let client_port = stuck.local_addr().unwrap().port();
    stuck
        .write_all(format!("GET /v2/big/blob/blobs/{d} HTTP/1.1\r\nHost: r\r\n\r\n").as_bytes())
        .unwrap();
    let t = Instant::now();
    // Meanwhile others are served: a ping, and the whole blob.
    assert_eq!(probe(s.port, Duration::from_secs(5)), Some(200));
    let r = s.get(&format!("/v2/big/blob/blobs/{d}"));
    assert_eq!(r.status, 200);
    assert!(r.body == blob, "another client got a different blob");

    crate::common::wait_for(
        "the server to close the connection of a client that reads nothing (15 s)",
        Duration::from_secs(15).saturating_sub(t.elapsed()),
        || server_socket_state(s.port, client_port).is_none_or(|st| st != "01"),
    );
    let closed = t.elapsed();
    assert!(
        closed >= Duration::from_millis(1500),
        "closed after {closed:?}"
    );
    // The client got the start of the response, never all of it.
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = stuck.read_to_end(&mut got);
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &got[..got.len().min(64)]
    );
    assert!(
        got.len() < blob.len(),
        "the client got the whole blob ({} bytes)",
        got.len()
    );
    assert_eq!(probe(s.port, Duration::from_secs(5)), Some(200));
}

#[test]
fn tls_handshakes_that_never_come_are_closed_and_tls_still_serves() {
    if !common_have("openssl") || !common_have("curl") {
        return;
    }
    let dir = TempDir::new().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = start(
        &dir,
        None,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--header-timeout",
            "1s",
        ],
    );
    let mut silent = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    for http in ["--http1.1", "--http2"] {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                http,
            ])
            .arg("--cacert")
            .arg(&cert)
            .arg(format!("https://127.0.0.1:{}/v2/", s.port))
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            got.starts_with("200 "),
            "{http}: {got} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(closed_within(&mut silent, Duration::from_secs(4)));
}

fn common_have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "{tool} is required in CI");
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

#[test]
fn a_content_range_of_two_to_the_64_bytes_is_refused_not_a_panic() {
    let dir = TempDir::new().unwrap();
    let s = start(&dir, None, &[]);
    let r = s.req("POST", "/v2/a/b/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 202);
    let loc = r.header("location").unwrap().to_string();
    for (range, len) in [
        ("0-18446744073709551615", "0"),
        ("0-18446744073709551615", "1"),
        ("bytes 0-18446744073709551615", "0"),
    ] {
        let r = s.req(
            "PATCH",
            &loc,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", range),
                ("Content-Length", len),
            ],
            &b"x"[..len.parse::<usize>().unwrap()],
        );
        assert_eq!(r.status, 416, "{range}: {}", r.text());
        assert_eq!(r.code(), "BLOB_UPLOAD_INVALID", "{}", r.text());
        assert!(r.text().contains("2^64"), "{}", r.text());
    }
    // The session is untouched and still takes its first chunk.
    let r = s.req(
        "PATCH",
        &loc,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", "0-2"),
        ],
        b"abc",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("range"), Some("0-2"));
    assert!(!s.access_log().contains("panicked"), "{}", s.access_log());
}

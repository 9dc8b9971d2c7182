//! The serving side: sockets bound inside the container's network namespace, UDP and TCP loops
//! on threads in the host namespace, forwarding bounded in number, and the stop flag.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::answer::*;
use super::upstream::*;
use tracing::{debug, warn};

/// How often blocked socket reads wake up to look at the stop flag.
pub const POLL: Duration = Duration::from_millis(200);
/// A client TCP connection idle this long is closed.
pub(super) const TCP_IDLE: Duration = Duration::from_secs(10);
/// Most UDP queries being forwarded at once (Docker's limit is 100 too).
pub(super) const MAX_FORWARDS: usize = 100;
/// Most client TCP connections served at once.
pub(super) const MAX_TCP_CONNS: usize = 64;
/// Consecutive hard errors on a listening socket before giving up on it.
pub(super) const MAX_SOCKET_ERRORS: u32 = 50;
/// The listening sockets of the embedded server.
#[derive(Debug)]
pub struct Sockets {
    /// UDP socket, normally `127.0.0.11:53` inside the container.
    pub udp: UdpSocket,
    /// TCP listener, normally `127.0.0.11:53` inside the container.
    pub tcp: TcpListener,
}

impl Sockets {
    /// Bind both sockets to `addr` in the calling thread's network namespace.
    pub fn bind(addr: SocketAddr) -> io::Result<Sockets> {
        let udp = UdpSocket::bind(addr)?;
        let tcp = TcpListener::bind(addr)?;
        Ok(Sockets { udp, tcp })
    }
}

/// Open UDP and TCP sockets on `127.0.0.11:53` inside the network namespace
/// of process `pid`.
///
/// A short-lived thread joins the namespace (`setns(CLONE_NEWNET)` on
/// `/proc/PID/ns/net`), creates and binds the sockets, and exits; the sockets
/// keep that namespace. The loopback interface there must be up. The caller
/// needs `CAP_SYS_ADMIN` over the namespace (and the right to bind port 53
/// in it).
pub fn bind_in_netns(pid: i32) -> io::Result<Sockets> {
    super::super::netns::run_in(pid, || {
        Sockets::bind(SocketAddr::from((DNS_ADDR, DNS_PORT)))
    })
}

/// State shared by the serving threads.
pub(super) struct Shared {
    resolver: Arc<dyn Resolver>,
    upstreams: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    /// Set when one listening socket failed for good: the other stops too.
    failed: AtomicBool,
    forwards: AtomicUsize,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.failed.load(Ordering::Relaxed)
    }
}

/// Serve until `stop` is set (or the sockets fail): returns a handle to
/// join. The handle's thread serves UDP itself and runs TCP on another
/// thread; both, and the threads they start, have ended when it returns.
///
/// # Panics
/// If the OS cannot start the serving thread (like `std::thread::spawn`).
pub fn serve(
    sockets: Sockets,
    resolver: Arc<dyn Resolver>,
    upstreams: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let shared = Arc::new(Shared {
        resolver,
        upstreams,
        stop,
        failed: AtomicBool::new(false),
        forwards: AtomicUsize::new(0),
    });
    thread::Builder::new()
        .name("berth-dns".into())
        .spawn(move || {
            let Sockets { udp, tcp } = sockets;
            let tcp_shared = Arc::clone(&shared);
            let tcp_thread = thread::Builder::new()
                .name("berth-dns-tcp".into())
                .spawn(move || tcp_loop(tcp, &tcp_shared));
            if let Err(err) = &tcp_thread {
                warn!(%err, "cannot start the DNS TCP thread; serving UDP only");
            }
            udp_loop(udp, &shared);
            if let Ok(handle) = tcp_thread {
                let _ = handle.join();
            }
        })
        .expect("cannot start the DNS server thread")
}

/// Note a hard socket error; true when the socket should be given up.
pub(super) fn socket_failed(errors: &mut u32, err: &io::Error, what: &str) -> bool {
    *errors += 1;
    if *errors >= MAX_SOCKET_ERRORS {
        warn!(%err, "DNS {what} socket keeps failing; stopping");
        return true;
    }
    debug!(%err, "DNS {what} socket error");
    thread::sleep(Duration::from_millis(10));
    false
}

pub(super) fn udp_loop(sock: UdpSocket, shared: &Arc<Shared>) {
    if let Err(err) = sock.set_read_timeout(Some(POLL)) {
        warn!(%err, "cannot set the DNS UDP socket timeout");
        shared.failed.store(true, Ordering::Relaxed);
        return;
    }
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut buf = vec![0u8; 65535];
    let mut errors = 0;
    while !shared.stopping() {
        workers.retain(|h| !h.is_finished());
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(got) => {
                errors = 0;
                got
            }
            Err(err) if is_timeout(&err) => continue,
            Err(err) => {
                if socket_failed(&mut errors, &err, "UDP") {
                    shared.failed.store(true, Ordering::Relaxed);
                    break;
                }
                continue;
            }
        };
        let query = &buf[..n];
        let reply = match safe_answer(query, &*shared.resolver) {
            Action::Drop => continue,
            Action::Reply(reply) => fit(reply, udp_limit(query)),
            Action::Forward => match spawn_forward(&sock, query, peer, shared) {
                Ok(handle) => {
                    workers.push(handle);
                    continue;
                }
                Err(()) => servfail(query),
            },
        };
        if let Err(err) = sock.send_to(&reply, peer) {
            debug!(%peer, %err, "cannot send DNS reply");
        }
    }
    for handle in workers {
        let _ = handle.join();
    }
}

/// Forward a UDP query on its own thread, which sends the reply; Err when
/// the query should be answered SERVFAIL right away.
pub(super) fn spawn_forward(
    sock: &UdpSocket,
    query: &[u8],
    peer: SocketAddr,
    shared: &Arc<Shared>,
) -> Result<JoinHandle<()>, ()> {
    if shared.upstreams.is_empty() {
        return Err(());
    }
    if shared.forwards.fetch_add(1, Ordering::AcqRel) >= MAX_FORWARDS {
        shared.forwards.fetch_sub(1, Ordering::AcqRel);
        debug!("too many DNS queries being forwarded");
        return Err(());
    }
    let release = |shared: &Shared| {
        shared.forwards.fetch_sub(1, Ordering::AcqRel);
    };
    let Ok(sock) = sock.try_clone() else {
        release(shared);
        return Err(());
    };
    let query = query.to_vec();
    let worker = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("berth-dns-fwd".into())
        .spawn(move || {
            let limit = udp_limit(&query);
            let reply = forward_udp(&query, &worker.upstreams, FORWARD_BUDGET, limit)
                .map(|r| fit(r, limit))
                .unwrap_or_else(|| servfail(&query));
            if let Err(err) = sock.send_to(&reply, peer) {
                debug!(%peer, %err, "cannot send DNS reply");
            }
            release(&worker);
        });
    spawned.map_err(|err| {
        debug!(%err, "cannot start a DNS forwarding thread");
        release(shared);
    })
}

pub(super) fn tcp_loop(listener: TcpListener, shared: &Arc<Shared>) {
    // accept(2) honours SO_RCVTIMEO on Linux: wake up to look at the flag.
    if let Err(err) = rustix::net::sockopt::set_socket_timeout(
        &listener,
        rustix::net::sockopt::Timeout::Recv,
        Some(POLL),
    ) {
        warn!(%err, "cannot set the DNS TCP socket timeout");
        shared.failed.store(true, Ordering::Relaxed);
        return;
    }
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    let mut errors = 0;
    while !shared.stopping() {
        let (stream, peer) = match listener.accept() {
            Ok(got) => {
                errors = 0;
                got
            }
            Err(err) if is_timeout(&err) || err.kind() == io::ErrorKind::ConnectionAborted => {
                continue;
            }
            Err(err) => {
                if socket_failed(&mut errors, &err, "TCP") {
                    shared.failed.store(true, Ordering::Relaxed);
                    break;
                }
                continue;
            }
        };
        conns.retain(|h| !h.is_finished());
        if conns.len() >= MAX_TCP_CONNS {
            debug!(%peer, "too many DNS TCP connections");
            continue;
        }
        let worker = Arc::clone(shared);
        match thread::Builder::new()
            .name("berth-dns-conn".into())
            .spawn(move || tcp_conn(stream, &worker))
        {
            Ok(handle) => conns.push(handle),
            Err(err) => debug!(%err, "cannot start a DNS TCP thread"),
        }
    }
    for handle in conns {
        let _ = handle.join();
    }
}

/// Serve one client TCP connection: length-prefixed queries, one after the
/// other, until EOF, an idle timeout, an error or stop.
pub(super) fn tcp_conn(mut stream: TcpStream, shared: &Shared) {
    if stream.set_read_timeout(Some(POLL)).is_err()
        || stream.set_write_timeout(Some(FORWARD_BUDGET)).is_err()
    {
        return;
    }
    let _ = stream.set_nodelay(true);
    loop {
        let mut len = [0u8; 2];
        if !read_full(&mut stream, &mut len, shared) {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if !read_full(&mut stream, &mut query, shared) {
            return;
        }
        let reply = match safe_answer(&query, &*shared.resolver) {
            Action::Drop => return,
            Action::Reply(reply) => reply,
            Action::Forward => forward_tcp(&query, &shared.upstreams, FORWARD_BUDGET)
                .unwrap_or_else(|| servfail(&query)),
        };
        let reply = fit(reply, usize::from(u16::MAX));
        let Ok(frame) = framed(&reply) else { return };
        if stream.write_all(&frame).is_err() {
            return;
        }
    }
}

/// Fill `buf` from the stream; false on EOF, error, stop or idle timeout.
pub(super) fn read_full(stream: &mut TcpStream, buf: &mut [u8], shared: &Shared) -> bool {
    let deadline = Instant::now() + TCP_IDLE;
    let mut filled = 0;
    while filled < buf.len() {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return false,
            Ok(n) => filled += n,
            Err(err) if is_timeout(&err) => {
                if shared.stopping() || Instant::now() >= deadline {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

//! Accepting and keeping connections, with limits a hostile or broken client cannot exhaust:
//! - at most `max_connections` at once (default: half the file descriptors the process may
//!   open); beyond that the server stops accepting and the kernel's listen backlog holds new
//!   clients (back-pressure), while connections idle for a moment are closed to make room;
//! - a request head (and a TLS handshake) must arrive within `header_timeout`: a client that
//!   opens a connection and sends nothing, or headers a byte at a time (slowloris), is dropped.
//!   On HTTP/1 this also bounds how long a keep-alive connection waits for its next request;
//! - a connection with no request in flight for `idle_timeout` is closed (HTTP/2 included);
//! - a request body that sends nothing for `idle_timeout` fails, so a stalled upload does not
//!   hold its connection forever;
//! - a write to the client that makes no progress for `write_timeout` ends the connection
//!   (nginx's `send_timeout`): a client that requests a large blob and never reads (a zero
//!   window) does not hold its connection, its slot and its buffers forever. HTTP/2 flow control
//!   is not covered: a stream whose window the client keeps at zero while the connection stays
//!   readable holds its request (not more than the window in memory) until the client goes.
//!
//! An answer given before the request body was read keeps the connection usable ([`linger`]).
//!
//! The soft `RLIMIT_NOFILE` is raised to the hard limit at start ([`raise_nofile_limit`]).
//! Graceful shutdown stops accepting and lets requests in flight finish.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{Version, header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::linger::{self, Lingering, Unread};

/// Defaults: hyper's own header timeout; idle keep-alive a little over common clients'
/// (Go's transport keeps idle connections 90 s).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// nginx's `send_timeout`: time allowed between two successive writes that make progress.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// File descriptors kept for everything but client sockets (runtime, listener, storage, logs).
const RESERVED_FDS: u64 = 64;

/// Under pressure, a connection is evicted only after this long without a request: one just
/// accepted has had time to send its first.
const EVICT_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

impl Limits {
    /// The connection cap when none is configured, for a process that may open `nofile` files:
    /// a connection is one descriptor, and a request in flight may open one or two more.
    pub fn default_max_connections(nofile: u64) -> usize {
        let n = nofile.saturating_sub(RESERVED_FDS) / 2;
        usize::try_from(n.max(16)).unwrap_or(usize::MAX)
    }
}

/// Raise the soft limit on open files to the hard limit (without CAP_SYS_RESOURCE the hard
/// limit itself cannot move); returns the soft limit in force.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let cur = getrlimit(Resource::Nofile);
    let (Some(soft), hard) = (cur.current, cur.maximum) else {
        return u64::MAX;
    };
    // Unlimited hard limits exist; the kernel still caps the soft one at nr_open.
    let want = hard.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(soft)
    });
    if want <= soft {
        return soft;
    }
    let new = rustix::process::Rlimit {
        current: Some(want),
        maximum: hard,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) => want,
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit from {soft} to {want}: {e}");
            soft
        }
    }
}

/// Serve `router` on `listener` (TLS when `tls` is set) until `shutdown` completes, then
/// finish the requests in flight.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let pressure = Arc::new(Notify::new());
    let (closing_tx, closing) = watch::channel(false);
    let mut full_logged = false;
    tokio::pin!(shutdown);
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => {
                full_logged = false;
                p
            }
            Err(_) => {
                if !full_logged {
                    tracing::warn!(
                        "{max} connections open (the limit): new ones wait until one closes"
                    );
                    full_logged = true;
                }
                // Ask connections idle long enough to make room, and again while none frees a
                // slot (idle ones become evictable over time).
                let wait = async {
                    loop {
                        pressure.notify_waiters();
                        tokio::select! {
                            p = slots.clone().acquire_owned() => return p,
                            _ = tokio::time::sleep(EVICT_AFTER / 4) => {}
                        }
                    }
                };
                tokio::select! {
                    p = wait => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = &mut shutdown => break,
                }
            }
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = &mut shutdown => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors or buffers: wait rather than spin; the connections in
                // flight will free some.
                tracing::error!("accept error: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        // Responses are written as headers, then body: without TCP_NODELAY a small body waits
        // for the client's delayed ACK of the headers (40 ms on Linux) behind Nagle.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(%err, "cannot set TCP_NODELAY");
        }
        let conn = Connection {
            router: router.clone(),
            limits,
            pressure: pressure.clone(),
            closing: closing.clone(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            conn.run(tcp, tls).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every connection holds a slot until it ends: having them all back means none is left.
    let _ = slots.acquire_many(max as u32).await;
}

/// Errors of one connection that `accept` reports (the listener itself is fine).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

struct Connection {
    router: Router,
    limits: Limits,
    pressure: Arc<Notify>,
    closing: watch::Receiver<bool>,
}

impl Connection {
    async fn run(self, tcp: TcpStream, tls: Option<TlsAcceptor>) {
        // Below TLS, so the handshake's and the records' writes are bounded too.
        let tcp = WriteTimeout::new(Lingering::new(tcp), self.limits.write_timeout);
        match tls {
            None => self.http(tcp).await,
            Some(acceptor) => {
                match tokio::time::timeout(self.limits.header_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => self.http(stream).await,
                    Ok(Err(e)) => tracing::debug!("TLS handshake: {e}"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            }
        }
    }

    async fn http<IO>(mut self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new());
        let svc = {
            let activity = activity.clone();
            let router = self.router.clone();
            let body_timeout = self.limits.idle_timeout;
            tower::service_fn(move |req: Request<Incoming>| {
                let busy = activity.begin();
                let (parts, body) = req.into_parts();
                let body = Stalling::new(body, body_timeout);
                // A body the handler may leave unread comes back to be drained (HTTP/1 only:
                // HTTP/2 ends one stream, not the connection).
                let expect = parts.headers.contains_key(header::EXPECT);
                let (body, unread) = if parts.version < Version::HTTP_2 && !body.is_end_stream() {
                    let (b, rx) = Unread::new(body);
                    (Body::new(b), Some(rx))
                } else {
                    (Body::new(body), None)
                };
                let call = router.clone().oneshot(Request::from_parts(parts, body));
                async move {
                    let mut resp = call.await?;
                    if let Some(left) = unread.and_then(|mut rx| rx.try_recv().ok()) {
                        // With `Expect: 100-continue`, reading would invite the body.
                        if expect || !linger::drain(left).await {
                            linger::close_after(&mut resp);
                        }
                    }
                    // The request stays in flight until its response body is written.
                    Ok::<_, std::convert::Infallible>(resp.map(|b| {
                        Body::new(Tracked {
                            inner: b,
                            _busy: busy,
                        })
                    }))
                }
            })
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout);
        builder.http2().timer(TokioTimer::new());
        let conn =
            builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(svc));
        tokio::pin!(conn);
        let mut shutting_down = false;
        loop {
            let left = activity.time_left(&self.limits);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!("connection: {e}");
                    }
                    return;
                }
                _ = self.closing.changed(), if !shutting_down => {
                    conn.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
                _ = self.pressure.notified(), if !shutting_down => {
                    if activity.idle_for().is_some_and(|d| d >= EVICT_AFTER) {
                        tracing::debug!("closing an idle connection: at the connection limit");
                        return;
                    }
                }
                // A request ended: the idle clock starts.
                _ = activity.ended.notified() => {}
                _ = tokio::time::sleep(left.unwrap_or_default()), if left.is_some() && !shutting_down => {
                    if activity.time_left(&self.limits) == Some(Duration::ZERO) {
                        tracing::debug!("closing a connection: no request within its timeout");
                        return;
                    }
                }
            }
        }
    }
}

/// Requests in flight on one connection, and since when it has had none.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Requests begun so far.
    requests: AtomicU64,
    /// Milliseconds after `start` when the last request ended.
    idle_since: AtomicU64,
    /// Signalled when a request ends.
    ended: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            ended: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.requests.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// How long no request has been in flight; None while one is.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since.load(Ordering::SeqCst));
        Some(self.start.elapsed().saturating_sub(since))
    }

    /// How long until the connection is closed for want of a request: the first must come
    /// within the header timeout (before it, the version sniffing of the HTTP/1-or-2 server
    /// has no timer of its own), later ones within the idle timeout. None while one is in
    /// flight.
    fn time_left(&self, limits: &Limits) -> Option<Duration> {
        let idle = self.idle_for()?;
        if self.requests.load(Ordering::SeqCst) == 0 {
            return Some(limits.header_timeout.saturating_sub(self.start.elapsed()));
        }
        Some(limits.idle_timeout.saturating_sub(idle))
    }
}

/// One request in flight; dropped when its response body is done (or abandoned).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let now = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since.store(now, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.ended.notify_one();
    }
}

/// A response body that keeps its request counted as in flight.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails when the client keeps the server waiting for data for `timeout`
/// (a stalled upload must not hold its connection and its slot forever). Only time spent
/// waiting on the client counts, not pauses of the handler between reads.
struct Stalling {
    inner: Incoming,
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// The timer runs for the wait that is under way.
    waiting: bool,
    done: bool,
}

impl Stalling {
    fn new(inner: Incoming, timeout: Duration) -> Stalling {
        Stalling {
            inner,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            waiting: false,
            done: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the client sent no request body data for {0:?}")]
struct BodyStalled(Duration);

impl HttpBody for Stalling {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.waiting = false;
                this.done = r.is_none();
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let deadline = tokio::time::Instant::now() + this.timeout;
                    this.timer.as_mut().reset(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyStalled(this.timeout).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket whose writes fail with `TimedOut` once one has waited `timeout` without the
/// client taking a byte; any progress restarts the clock.
struct WriteTimeout<IO> {
    inner: IO,
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// The timer runs for the write that is pending.
    waiting: bool,
}

impl<IO> WriteTimeout<IO> {
    fn new(inner: IO, timeout: Duration) -> WriteTimeout<IO> {
        WriteTimeout {
            inner,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
            waiting: false,
        }
    }

    /// Account for one poll of a write-side operation: progress stops the clock, a pending
    /// one starts it (or fails once it has run out).
    fn check<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.waiting = false;
            return r;
        }
        if !self.waiting {
            self.waiting = true;
            let deadline = tokio::time::Instant::now() + self.timeout;
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took no data for {:?}", self.timeout),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteTimeout<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.check(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.check(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cap_follows_the_fd_limit() {
        assert_eq!(Limits::default_max_connections(1024), 480);
        assert_eq!(Limits::default_max_connections(20000), 9968);
        assert_eq!(Limits::default_max_connections(10), 16);
    }
}

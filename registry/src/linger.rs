//! Early answers on HTTP/1: a handler may answer before reading the request body (416 for a
//! chunk out of order, 401 before credentials, 400 for a bad digest). Left alone, hyper then
//! closes the connection with the body still arriving, without having said `Connection: close`:
//! the client's next request on that connection fails (`broken pipe`, `EOF`), and the kernel
//! answers the unread bytes with a reset that can destroy the answer itself. So, as
//! distribution does:
//! - a body the handler left unread is read to its end ([`drain`]) when it is small enough
//!   (at most [`DRAIN_MAX`]), and the connection stays open;
//! - a larger one (or one sent with `Expect: 100-continue`, which the client would only send
//!   when told to continue) gets `Connection: close` on the answer ([`close_after`]), and the
//!   socket closes in order ([`Lingering`]): the write side is shut (FIN after the answer),
//!   then what the client still sends is read and dropped until it stops, within bounds,
//!   before the socket is closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Bytes, HttpBody};
use axum::http::{HeaderValue, Response, header};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

/// The most of an unread body read to keep its connection: chunks of common clients fit
/// (a few MiB), a whole large layer does not and ends its connection instead.
pub const DRAIN_MAX: u64 = 8 << 20;

/// Closing in order: how long the client may keep sending after the answer, in all and
/// between two reads (nginx's `lingering_time` and `lingering_timeout` are 30 s and 5 s).
const LINGER_TIME: Duration = Duration::from_secs(10);
const LINGER_QUIET: Duration = Duration::from_secs(2);

/// A request body that, dropped before its end, hands itself back through `back`.
pub struct Unread<B: HttpBody> {
    body: Option<B>,
    done: bool,
    back: Option<oneshot::Sender<B>>,
}

impl<B: HttpBody> Unread<B> {
    /// Wrap `body`; the receiver gets it back if whoever reads it drops it unfinished.
    pub fn new(body: B) -> (Unread<B>, oneshot::Receiver<B>) {
        let (tx, rx) = oneshot::channel();
        let done = body.is_end_stream();
        (
            Unread {
                body: Some(body),
                done,
                back: Some(tx),
            },
            rx,
        )
    }
}

impl<B: HttpBody> Drop for Unread<B> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let (Some(body), Some(tx)) = (self.body.take(), self.back.take())
            && !body.is_end_stream()
        {
            let _ = tx.send(body);
        }
    }
}

impl<B> HttpBody for Unread<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let r = Pin::new(body).poll_frame(cx);
        match &r {
            Poll::Ready(None) => this.done = true,
            // An error ends the body too: nothing left to give back.
            Poll::Ready(Some(Err(_))) => this.done = true,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.body.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

/// Read what is left of `body` and drop it; false when it is longer than [`DRAIN_MAX`] (or
/// says it will be) or fails: its connection must then close.
pub async fn drain<B>(mut body: B) -> bool
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    if body.size_hint().lower() > DRAIN_MAX {
        return false;
    }
    let mut read = 0u64;
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => return true,
            Some(Err(_)) => return false,
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    read += d.len() as u64;
                    if read > DRAIN_MAX {
                        return false;
                    }
                }
            }
        }
    }
}

/// Tell the client this answer is the connection's last.
pub fn close_after<B>(resp: &mut Response<B>) {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// A socket whose shutdown closes in order: the write side is shut, then what the client
/// still sends is read and dropped until it closes its side, stops sending for
/// [`LINGER_QUIET`], or [`LINGER_TIME`] has passed. Dropping it then closes a socket with
/// nothing unread, which the kernel ends with a FIN rather than a reset.
pub struct Lingering<IO> {
    inner: IO,
    linger: Option<Linger>,
}

struct Linger {
    until: Instant,
    quiet: Pin<Box<Sleep>>,
}

impl<IO> Lingering<IO> {
    pub fn new(inner: IO) -> Lingering<IO> {
        Lingering {
            inner,
            linger: None,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Lingering<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.linger.is_none() {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.linger = Some(Linger {
                until: Instant::now() + LINGER_TIME,
                quiet: Box::pin(tokio::time::sleep(LINGER_QUIET)),
            });
        }
        let Some(l) = this.linger.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 16 * 1024];
        // Bounded, so a client sending as fast as we read does not hold the worker.
        for _ in 0..64 {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    let now = Instant::now();
                    if now >= l.until {
                        return Poll::Ready(Ok(()));
                    }
                    l.quiet.as_mut().reset(now + LINGER_QUIET);
                }
                // Reset or closed: nothing left to be polite to.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    return match l.quiet.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

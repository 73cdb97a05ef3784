//! The write deadline: a client that takes nothing of a response for the header read
//! timeout is cut off, instead of holding its connection (and a `max_connections` slot)
//! for good. Neither hyper nor the OS times a blocked write; a client that pipelines
//! requests and never reads, or a TLS or HTTP/2 peer that stops reading, would otherwise
//! keep the connection open forever.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Whether writes are making progress. The timer is armed when a write cannot go on and
/// re-armed whenever bytes went out since, so a slow but reading client is never cut; it
/// is allocated only for a connection whose writes ever blocked.
#[derive(Default)]
struct WriteStall {
    timer: Option<Pin<Box<Sleep>>>,
    /// Bytes written so far (wrapping: only compared for change), and when `timer` was
    /// armed.
    written: u32,
    armed_at: u32,
}

impl WriteStall {
    /// Notes the outcome of a write: bytes written count as progress, and `Pending` is
    /// turned into an error once nothing went out for `after`.
    fn note(
        &mut self,
        after: Duration,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                self.written = self.written.wrapping_add(n as u32);
                Poll::Ready(Ok(n))
            }
            Poll::Pending => self.poll_blocked(after, cx),
            r @ Poll::Ready(Err(_)) => r,
        }
    }

    /// A write or flush could not go on: pending until the client takes bytes again, or
    /// an error (hyper then closes the connection) once it took none for `after`.
    fn poll_blocked<T>(&mut self, after: Duration, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timer = match &mut self.timer {
            Some(t) if self.armed_at == self.written => t.as_mut(),
            slot => {
                self.armed_at = self.written;
                let deadline = tokio::time::Instant::now() + after;
                match slot {
                    Some(t) => {
                        t.as_mut().reset(deadline);
                        t.as_mut()
                    }
                    None => slot
                        .insert(Box::pin(tokio::time::sleep_until(deadline)))
                        .as_mut(),
                }
            }
        };
        if timer.poll(cx).is_pending() {
            return Poll::Pending;
        }
        metrics::counter!("callhook_http_write_timeouts_total").increment(1);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing of the response within the header read timeout",
        )))
    }
}

/// A connection's IO with the write deadline: TLS and HTTP/2 connections as hyper serves
/// them, and the socket inside a plain HTTP/1 connection's own wrapper (`Releasing`).
pub(in crate::server) struct Deadlined<I> {
    io: I,
    after: Duration,
    stall: WriteStall,
}

impl<I> Deadlined<I> {
    pub(in crate::server) fn new(io: I, after: Duration) -> Self {
        Self {
            io,
            after,
            stall: WriteStall::default(),
        }
    }

    pub(in crate::server) fn into_inner(self) -> I {
        self.io
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Deadlined<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Deadlined<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.stall.note(this.after, cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.stall.note(this.after, cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            // A TLS stream flushes its buffered records here: blocked like a write.
            Poll::Pending => this.stall.poll_blocked(this.after, cx),
            r => r,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_shutdown(cx) {
            Poll::Pending => this.stall.poll_blocked(this.after, cx),
            r => r,
        }
    }
}

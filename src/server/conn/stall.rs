//! The write deadline: a client that takes nothing of a response for the header read
//! timeout is cut off, instead of holding its connection (and a `max_connections` slot)
//! for good. Neither hyper nor the OS times a blocked write; a client that pipelines
//! requests and never reads, or a TLS or HTTP/2 peer that stops reading, would otherwise
//! keep the connection open forever.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Whether writes are making progress. The timer is armed when a write cannot go on and
/// re-armed whenever bytes went out since, or when it fires and the socket's send queue
/// has shrunk (the client took bytes: the kernel wakes a blocked writer only once a
/// third or so of a send buffer of up to megabytes is free, which a slow reader can take
/// longer than the timeout to free), so a slow but reading client is never cut; it is
/// allocated only for a connection whose writes ever blocked.
#[derive(Default)]
struct WriteStall {
    timer: Option<Pin<Box<Sleep>>>,
    /// Bytes written so far (wrapping: only compared for change), and when `timer` was
    /// armed.
    written: u32,
    armed_at: u32,
    /// The socket's unsent and unacknowledged bytes when `timer` was armed or re-armed.
    queued: Option<u32>,
}

impl WriteStall {
    /// Notes the outcome of a write: bytes written count as progress, and `Pending` is
    /// turned into an error once nothing went out for `after`.
    fn note(
        &mut self,
        after: Duration,
        fd: RawFd,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                self.written = self.written.wrapping_add(n as u32);
                Poll::Ready(Ok(n))
            }
            Poll::Pending => self.poll_blocked(after, fd, cx),
            r @ Poll::Ready(Err(_)) => r,
        }
    }

    /// A write or flush could not go on: pending until the client takes bytes again, or
    /// an error (hyper then closes the connection) once it took none for `after`.
    fn poll_blocked<T>(
        &mut self,
        after: Duration,
        fd: RawFd,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        let mut timer = match &mut self.timer {
            Some(t) if self.armed_at == self.written => t.as_mut(),
            slot => {
                self.armed_at = self.written;
                self.queued = send_queue(fd);
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
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let queued = send_queue(fd);
            let took = matches!((queued, self.queued), (Some(now), Some(then)) if now < then);
            if !took {
                break;
            }
            // The client took bytes from the socket: a whole period again.
            self.queued = queued;
            timer.as_mut().reset(tokio::time::Instant::now() + after);
        }
        metrics::counter!("callhook_http_write_timeouts_total").increment(1);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing of the response within the header read timeout",
        )))
    }
}

/// The socket's bytes not yet sent or not yet acknowledged by the client (`SIOCOUTQ`,
/// the same request as `TIOCOUTQ`); `None` if it cannot be read, which counts as no
/// progress.
fn send_queue(fd: RawFd) -> Option<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, which is valid for it.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    if r == 0 { u32::try_from(n).ok() } else { None }
}

/// A connection's socket with the write deadline: under a TLS stream, an HTTP/2
/// connection as hyper serves it, inside a plain HTTP/1 connection's own wrapper
/// (`Releasing`), and the ops listener's connections.
pub(in crate::server) struct Deadlined<I> {
    io: I,
    after: Duration,
    stall: WriteStall,
    /// Told whether the last write or flush could not finish ([`Deadlined::noting`]).
    noted: Option<Arc<super::Activity>>,
}

impl<I> Deadlined<I> {
    pub(in crate::server) fn new(io: I, after: Duration) -> Self {
        Self {
            io,
            after,
            stall: WriteStall::default(),
            noted: None,
        }
    }

    /// Keeps `act.write_blocked` up to date: a connection whose response is still going
    /// out to a slow reader is not idle, and ending it would cut the response off.
    pub(in crate::server) fn noting(mut self, act: Arc<super::Activity>) -> Self {
        self.noted = Some(act);
        self
    }

    pub(in crate::server) fn into_inner(self) -> I {
        self.io
    }

    fn note<T>(&self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Some(act) = &self.noted {
            act.write_blocked.store(r.is_pending(), Ordering::Relaxed);
        }
        r
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

impl<I: AsyncWrite + AsRawFd + Unpin> AsyncWrite for Deadlined<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        let r = this.stall.note(this.after, this.io.as_raw_fd(), cx, r);
        this.note(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        let r = this.stall.note(this.after, this.io.as_raw_fd(), cx, r);
        this.note(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = match Pin::new(&mut this.io).poll_flush(cx) {
            // An IO that buffers (none wraps one now: a socket's flush is immediate)
            // would send here: blocked like a write.
            Poll::Pending => this.stall.poll_blocked(this.after, this.io.as_raw_fd(), cx),
            r => r,
        };
        this.note(r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_shutdown(cx) {
            Poll::Pending => this.stall.poll_blocked(this.after, this.io.as_raw_fd(), cx),
            r => r,
        }
    }
}

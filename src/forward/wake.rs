//! Waiting for librdkafka's delivery reports without spinning.
//!
//! rust-rdkafka 0.39's `BaseProducer::poll(timeout)` polls librdkafka's queue until the
//! timeout is over, each time with the time left cut to whole milliseconds. Once less than
//! a millisecond is left it polls with a zero timeout, again and again, reading the clock
//! between calls: every poll ended in up to a millisecond of spinning, and the forwarder's
//! 1 ms wait while records were in flight spun for all of it. Under an event load that was
//! 10-12.6 µs of the forwarder thread per event (68% of it in `clock_gettime`), on the
//! cores the requests need, and with nothing to do the thread still used 18% of a core.
//!
//! Instead librdkafka writes to an eventfd when an event lands on the empty queue the
//! producer polls (its main queue, where delivery reports and errors arrive), once per
//! poll (`rd_kafka_queue_io_event_enable`), and the forwarder sleeps in `poll(2)` on that
//! fd, then serves what came with zero-timeout polls. It sleeps only with the queue empty
//! ([`ReportWake::pending`]): an event left queued would mean no write for the next one.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::Client;

use super::producer::{Context, Producer};

/// The eventfd and the queue handle that writes to it. Drop it before its producer: the
/// handle refers to the producer's queue.
pub(crate) struct ReportWake {
    /// `None` where the eventfd could not be made: waits then sleep their whole timeout.
    fd: Option<OwnedFd>,
    /// The producer's main queue (a handle of our own, never null).
    queue: *mut rd::rd_kafka_queue_t,
}

// SAFETY: librdkafka's queue handles may be used from any thread; this one is used only by
// the forwarder thread that owns it.
unsafe impl Send for ReportWake {}

impl ReportWake {
    pub(crate) fn new(client: &Client<Context>) -> Self {
        // SAFETY: the client is alive; the queue handle is released in `drop`, before it.
        let queue = unsafe { rd::rd_kafka_queue_get_main(client.native_ptr()) };
        assert!(!queue.is_null(), "librdkafka returned no main queue");
        // SAFETY: plain syscall; the fd it returns, if any, is owned from here on.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "no eventfd for Kafka delivery reports; the forwarder polls on a timer"
            );
            return Self { fd: None, queue };
        }
        // SAFETY: `raw` is a new, open fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one = 1u64.to_ne_bytes();
        // SAFETY: librdkafka copies the payload (an eventfd takes an 8-byte count); the fd
        // stays open until the wake-ups are turned off in `drop`.
        unsafe {
            rd::rd_kafka_queue_io_event_enable(queue, raw, one.as_ptr().cast(), one.len());
        }
        Self {
            fd: Some(fd),
            queue,
        }
    }

    /// Events waiting on the producer's queue (delivery reports, errors, logs). Sleep in
    /// [`wait`](Self::wait) only when this is 0.
    pub(crate) fn pending(&self) -> usize {
        // SAFETY: the handle is alive until `drop`.
        unsafe { rd::rd_kafka_queue_length(self.queue) }
    }

    /// Returns once an event may have arrived on the (empty) queue, or after `timeout` (at
    /// least 1 ms). The caller then polls with a zero timeout.
    pub(crate) fn wait(&self, timeout: Duration) {
        let Some(fd) = &self.fd else {
            std::thread::sleep(timeout);
            return;
        };
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, ms) };
        // Reset the count (non-blocking: nothing to read is fine); librdkafka writes again
        // only after the queue has been polled.
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `buf`.
        unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    }

    /// Serves the events waiting on `producer`'s queue, `max` at most (events that keep
    /// coming are left to the caller's next round). At a zero timeout rust-rdkafka's poll
    /// serves one event (one batch's reports) per call.
    pub(crate) fn serve(&self, producer: &Producer, max: usize) {
        for _ in 0..max {
            if self.pending() == 0 {
                break;
            }
            producer.poll(Duration::ZERO);
        }
    }

    /// Serves the events waiting; with none, sleeps until one comes (`timeout` at most) and
    /// serves what came: rust-rdkafka's `poll(timeout)` without its spin, and without
    /// waiting out the timeout once an event is in.
    pub(crate) fn serve_or_wait(&self, producer: &Producer, timeout: Duration, max: usize) {
        if self.pending() == 0 {
            self.wait(timeout);
        }
        self.serve(producer, max);
    }
}

impl Drop for ReportWake {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_queue_get_main` and its producer is still
        // alive (see the type's doc); wake-ups are turned off before the fd closes (after
        // this function).
        unsafe {
            if self.fd.is_some() {
                rd::rd_kafka_queue_io_event_enable(self.queue, -1, std::ptr::null(), 0);
            }
            rd::rd_kafka_queue_destroy(self.queue);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rdkafka::producer::{BaseRecord, Producer as _};

    use super::ReportWake;
    use crate::forward::producer;

    /// A record that cannot be delivered (nothing listens on the port) gets its failed
    /// report after `message.timeout.ms`; the eventfd must wake the wait for it, long
    /// before the wait's own timeout.
    #[test]
    fn a_delivery_report_ends_the_wait() {
        let producer = producer::unreachable(300);
        let wake = ReportWake::new(producer.client());
        let rec: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to("t", 7).payload(&b"x"[..]);
        producer.send(rec).map_err(|(e, _)| e).unwrap();
        let started = Instant::now();
        let report = loop {
            // Errors (connection refused) come first; serve them until the report is in.
            wake.serve(&producer, usize::MAX);
            if let Some(r) = producer.context().reports.lock().unwrap().pop() {
                break r;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no report");
            wake.wait(Duration::from_secs(60));
        };
        assert_eq!(report.0, 7, "the report is the record's");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "waited {:?}: the eventfd never woke the wait",
            started.elapsed()
        );
        drop(wake);
    }
}

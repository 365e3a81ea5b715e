//! Idle HTTP connections: a stream that notes when it last moved a byte, and
//! the watch that ends a connection silent for `--http-idle-timeout`. Bytes,
//! not requests, are watched: a keep-alive connection between requests is
//! idle, an event stream (a comment every 15 s) or a request being answered
//! is not.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::core::clock::Clock;

/// A stream and the clock millisecond it last moved a byte.
pub(super) struct Watched<S> {
    inner: S,
    last: Arc<AtomicU64>,
    clock: Clock,
}

impl<S> Watched<S> {
    /// `inner`, active now; its activity is readable through [`Watched::activity`].
    pub(super) fn new(inner: S, clock: Clock) -> Self {
        Watched {
            inner,
            last: Arc::new(AtomicU64::new(clock.now_ms())),
            clock,
        }
    }

    /// When the stream last moved a byte, shared with the watch.
    pub(super) fn activity(&self) -> Activity {
        Activity {
            last: self.last.clone(),
            clock: self.clock,
        }
    }

    fn touch(&self) {
        self.last.store(self.clock.now_ms(), Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The watch's side of a [`Watched`] stream.
pub(super) struct Activity {
    last: Arc<AtomicU64>,
    clock: Clock,
}

impl Activity {
    /// Returns once the stream has moved no byte for `limit` (never, without one).
    pub(super) async fn silent_for(&self, limit: Option<Duration>) {
        let Some(limit) = limit else {
            return std::future::pending().await;
        };
        loop {
            let last = self.clock.instant_at(self.last.load(Ordering::Relaxed));
            let due = last + limit;
            if std::time::Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

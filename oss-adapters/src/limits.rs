//! Connection limits for the HTTP front-ends (Nchf): at most `max_connections` open at
//! once, and a connection that moves no byte either way for `idle_timeout` is closed.
//!
//! `axum::serve` accepts every connection and keeps it as long as the client wants, so a
//! client that opens connections and sends nothing (or trickles a header) holds a file
//! descriptor and a task each until the process runs out. [`LimitedListener`] wraps any
//! `axum::serve::Listener`: it takes a permit before accepting (at the limit, new
//! connections wait in the kernel's backlog instead of being served half-way), and each
//! connection's reads and writes go through [`Limited`], whose timer restarts on every
//! byte that moves and fails the connection (`TimedOut`) when it runs out. hyper then
//! closes it and the permit is given back.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How many connections a front-end holds at once, and how long one may stay silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// 10,000 connections (a core network has a few dozen NFs, each with a few), 120 s idle.
    fn default() -> Self {
        ConnectionLimits { max_connections: 10_000, idle_timeout: Duration::from_secs(120) }
    }
}

/// What a limited listener counts, for logs and `/metrics`.
#[derive(Debug, Default)]
pub struct LimitCounters {
    /// Connections closed because they were idle too long.
    pub idle_closed: AtomicU64,
    /// Times an accept waited because the limit was reached.
    pub at_limit: AtomicU64,
}

/// A listener whose connections are limited in number and idle time.
#[derive(Debug)]
pub struct LimitedListener<L> {
    inner: L,
    permits: Arc<Semaphore>,
    idle: Duration,
    counters: Arc<LimitCounters>,
    server: &'static str,
}

impl<L> LimitedListener<L> {
    /// `server` names the front-end in logs.
    pub fn new(inner: L, limits: ConnectionLimits, server: &'static str) -> LimitedListener<L> {
        LimitedListener {
            inner,
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            idle: limits.idle_timeout,
            counters: Arc::new(LimitCounters::default()),
            server,
        }
    }

    /// Its counters.
    pub fn counters(&self) -> Arc<LimitCounters> {
        Arc::clone(&self.counters)
    }
}

impl<L: axum::serve::Listener> axum::serve::Listener for LimitedListener<L>
where
    L::Io: Unpin,
{
    type Io = Limited<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.counters.at_limit.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(server = self.server, "at the connection limit: new connections wait");
                match Arc::clone(&self.permits).acquire_owned().await {
                    Ok(permit) => permit,
                    // The semaphore is never closed.
                    Err(_) => std::future::pending().await,
                }
            }
        };
        let (io, addr) = self.inner.accept().await;
        let limited = Limited {
            io,
            _permit: permit,
            idle: self.idle,
            timer: Box::pin(tokio::time::sleep(self.idle)),
            counters: Arc::clone(&self.counters),
        };
        (limited, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that holds its permit and fails when idle too long.
#[derive(Debug)]
pub struct Limited<S> {
    io: S,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    counters: Arc<LimitCounters>,
}

impl<S> Limited<S> {
    fn moved(&mut self) {
        self.timer.as_mut().reset(Instant::now() + self.idle);
    }

    /// After the inner stream said `Pending`: an error once the idle time ran out (the
    /// timer's waker is registered otherwise).
    fn idle_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.counters.idle_closed.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "the connection was idle too long"))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => this.idle_out(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    this.moved();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => this.idle_out(cx).map(Err),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    this.moved();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => this.idle_out(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;
    use axum::Router;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn server(limits: ConnectionLimits) -> (std::net::SocketAddr, Arc<LimitCounters>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let limited = LimitedListener::new(listener, limits, "test");
        let counters = limited.counters();
        let router = Router::new().route("/", get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(limited, router).await });
        (address, counters)
    }

    async fn get_once(stream: &mut tokio::net::TcpStream) -> String {
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send");
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_after_the_idle_time_and_a_busy_one_is_not() {
        let limits = ConnectionLimits { max_connections: 8, idle_timeout: Duration::from_millis(1500) };
        let (address, counters) = server(limits).await;
        let mut silent = tokio::net::TcpStream::connect(address).await.expect("connect");
        let mut busy = tokio::net::TcpStream::connect(address).await.expect("connect");
        // The busy one asks every 100 ms for two and a half seconds: never idle for 1.5 s.
        for _ in 0..25 {
            assert!(get_once(&mut busy).await.starts_with("HTTP/1.1 200"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The silent one was closed: its read ends (EOF or reset), long before a generous bound.
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await.expect("closed");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        assert!(counters.idle_closed.load(Ordering::Relaxed) >= 1);
    }

    #[tokio::test]
    async fn past_the_limit_a_connection_waits_until_another_closes() {
        let limits = ConnectionLimits { max_connections: 2, idle_timeout: Duration::from_secs(60) };
        let (address, counters) = server(limits).await;
        let mut first = tokio::net::TcpStream::connect(address).await.expect("connect");
        let mut second = tokio::net::TcpStream::connect(address).await.expect("connect");
        assert!(get_once(&mut first).await.starts_with("HTTP/1.1 200"));
        assert!(get_once(&mut second).await.starts_with("HTTP/1.1 200"));
        // The third is accepted by the kernel, not served: no answer while two are open.
        let mut third = tokio::net::TcpStream::connect(address).await.expect("connect");
        third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send");
        let mut buf = vec![0u8; 1024];
        let waited = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
        assert!(waited.is_err(), "served past the limit: {waited:?}");
        assert!(counters.at_limit.load(Ordering::Relaxed) >= 1);
        // One closes: the third is served.
        drop(first);
        let n =
            tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf)).await.expect("served").expect("read");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
}

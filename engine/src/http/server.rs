//! The accept loop: every connection is bounded in time and in number, so that idle,
//! slow or stalled callers cannot hold the server's sockets or file descriptors.
//!
//! - A caller has `header_timeout` to send a request's head; the same time bounds how long
//!   a keep-alive connection may sit idle between requests (hyper restarts the timer when
//!   a connection goes idle). A request being answered (a caller held for its run) is not
//!   cut: it is bounded by its own deadlines.
//! - At most `max_connections` are open at once. Past it the loop stops accepting: further
//!   clients wait in the kernel's listen backlog and hold no descriptor of ours.
//! - A connection whose peer stops reading our answer is closed after `header_timeout`
//!   without progress (`StalledWrites`): hyper times reads of a head, not writes.
//! - Bodies are bounded in `read_body` (size, a minimum rate, and the bytes all bodies being
//!   read may hold at once).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time to send a request's head, and the longest a keep-alive connection sits idle.
    pub header_timeout: Duration,
    /// hyper's read buffer for a request head: a head that has not ended once the buffer
    /// holds this much gets 431. Its last read may overshoot by up to as much again, so a
    /// head of this size is always read and one of twice it never is.
    pub max_head_bytes: usize,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a shutdown waits for requests being answered.
    pub shutdown_grace: Duration,
}

/// Serves `app` until `shutdown` resolves, then lets requests being answered finish.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // hyper refuses a buffer under 8 KiB (the flag's floor).
        .max_buf_size(limits.max_head_bytes.max(8192))
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first: with none free, nothing is accepted.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without it a response written as head then body waits ~40 ms for a delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!("cannot set TCP_NODELAY: {e}");
        }
        let stream = StalledWrites { io: stream, timeout: limits.header_timeout, stalled: None };
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Timeouts and resets are routine for a public server.
                tracing::debug!(%peer, "connection ended: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => tracing::warn!("shutting down with requests still open"),
    }
}

/// A connection that fails a write which made no progress for `timeout`.
struct StalledWrites<S> {
    io: S,
    timeout: Duration,
    /// Armed while a write waits; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S: AsyncWrite + Unpin> StalledWrites<S> {
    fn guard<T>(&mut self, cx: &mut Context<'_>, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::ErrorKind::TimedOut.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StalledWrites<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StalledWrites<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.guard(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.guard(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.guard(cx, polled)
    }
}

/// A failed accept: one connection's trouble is skipped at once; running out of
/// descriptors or buffers backs off instead of spinning.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused) {
        return;
    }
    tracing::error!("accepting a connection failed: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// How many descriptors this process may open (its soft limit), if known.
pub fn descriptor_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

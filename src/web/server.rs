//! The connection loop: accepts TCP connections within a cap and serves each
//! over HTTP/1.1 with a header-read timeout.
//!
//! `axum::serve` keeps a connection open for as long as the client likes
//! before and between requests, and accepts until the process runs out of
//! file descriptors: a few hundred sockets sending one header byte a second
//! take the service away from everyone. Here hyper's header-read timeout
//! (which also runs while a kept-alive connection waits for its next request)
//! closes slow and idle connections, and at most `max_connections` are open
//! at once; beyond that new ones wait in the kernel's listen backlog until
//! one closes, and the server says so in its log.
//!
//! Answers sent before a request's body is read (413 for a declared length
//! over the limit, 503 when the queue is full) close the connection while the
//! client may still be sending. Closing a socket with unread data makes the
//! kernel send a reset, which can destroy the answer before the client reads
//! it; so a closing connection lingers as nginx's does: [`LingeringClose`]
//! sends FIN, then reads and discards what is still arriving for a short
//! while.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower::ServiceExt;

/// File descriptors kept for everything but client connections (the
/// listener, model files, logs, the blocking pool's needs).
const RESERVED_DESCRIPTORS: u64 = 64;

/// How long shutdown waits for requests in flight before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long a closing connection keeps reading (and discarding) what the
/// client still sends, so that an early answer reaches it (nginx's
/// `lingering_time` is 30 s; an upload at the limit takes well under this on
/// any link the request timeout allows).
const LINGER: Duration = Duration::from_secs(5);

/// Reads done in one poll while lingering before yielding to other tasks.
const LINGER_READS_PER_POLL: usize = 32;

/// A TCP stream whose shutdown is a lingering close: FIN first, then the
/// rest of the client's upload is read and dropped until it ends, fails or
/// [`LINGER`] passes. Everything else passes straight through.
struct LingeringClose {
    stream: TcpStream,
    /// Set once FIN is sent: when lingering stops.
    linger_until: Option<Pin<Box<Sleep>>>,
}

impl LingeringClose {
    fn new(stream: TcpStream) -> Self {
        Self { stream, linger_until: None }
    }
}

impl AsyncRead for LingeringClose {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LingeringClose {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.linger_until.is_none() {
            std::task::ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
            this.linger_until = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        let mut scratch = [0u8; 16 * 1024];
        for _ in 0..LINGER_READS_PER_POLL {
            if let Some(deadline) = this.linger_until.as_mut() {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(()));
                }
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.stream).poll_read(cx, &mut buf) {
                // End of the upload, or the client gave up: close now.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
        // A fast sender: let other connections run, then keep draining.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Raises the soft open-file limit to the hard one (as most servers do) and
/// returns the connection cap it allows: the limit less a reserve, or
/// `wanted` if that is smaller.
pub fn connection_cap(wanted: Option<usize>) -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let allowed = limit.saturating_sub(RESERVED_DESCRIPTORS).max(16) as usize;
    wanted.map_or(allowed.min(10_000), |w| w.clamp(1, allowed))
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and lets the requests in flight finish (for up to 30 s).
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_warning: Option<Instant> = None;
    tracing::info!(max_connections, header_timeout_s = header_timeout.as_secs_f64(), "accepting connections");
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        max_connections,
                        "connection limit reached: new connections wait in the listen backlog until one closes \
                         (slow or idle ones are closed after the header timeout)"
                    );
                    last_warning = Some(Instant::now());
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    _ = &mut shutdown => break,
                }
            }
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept:
                    // back off a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(remote));
            router.clone().oneshot(request)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(LingeringClose::new(stream)), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection.await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing requests in flight");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still running after {} s; stopping anyway", SHUTDOWN_GRACE.as_secs());
    }
    Ok(())
}

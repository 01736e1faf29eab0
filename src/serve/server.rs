//! The listener: accepts connections up to [`ServeConfig::max_connections`], drives each
//! with hyper's HTTP/1.1 connection under the header-read and idle timeouts, and on
//! shutdown closes idle connections at once and gives requests in flight
//! [`ServeConfig::shutdown_timeout`] to finish.
//!
//! hyper's own `header_read_timeout` starts when the connection begins waiting for a
//! request, so it cannot tell a keep-alive connection that is idle between requests
//! from one that stalls half-way through a request head. [`ConnClock`] tells them apart
//! by watching the socket: the first bytes read while no request is in flight start the
//! header timer; a finished response starts the idle timer; while a request is in
//! flight neither runs (its body has its own timeout in the handler, and a search may
//! legitimately take long).

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use super::ServeConfig;

/// The per-connection timeouts.
#[derive(Clone, Copy, Debug)]
struct Limits {
    header: Duration,
    idle: Duration,
}

/// "No head under way" in [`ConnClock::head_started`].
const NONE: u64 = u64::MAX;

/// What one connection is doing, for its timeouts. Updated from inside the connection's
/// own future (socket reads, request start and end), read by the watchdog in the same
/// task: the atomics are there to make the future `Send`, not for cross-thread races.
struct ConnClock {
    start: Instant,
    /// Requests whose response is not yet produced.
    in_flight: AtomicUsize,
    /// Milliseconds after `start` when the first byte of the next request arrived, or
    /// [`NONE`].
    head_started: AtomicU64,
    /// Milliseconds after `start` when the connection last became idle.
    idle_since: AtomicU64,
    /// Signalled whenever the deadline may have moved.
    changed: Notify,
}

impl ConnClock {
    fn new() -> Self {
        ConnClock {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            head_started: AtomicU64::new(NONE),
            idle_since: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    /// Bytes came in: with no request in flight they begin a new request head.
    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == NONE
        {
            self.head_started.store(self.now_ms(), Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    /// A request head is complete and its handler starts; the guard ends it.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(NONE, Ordering::Relaxed);
        self.changed.notify_one();
        InFlight(Arc::clone(self))
    }

    /// When the connection must close if nothing changes; `None` while a request is in
    /// flight (or when a timeout is too long to represent).
    fn deadline(&self, limits: Limits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let (since, limit) = match self.head_started.load(Ordering::Relaxed) {
            NONE => (self.idle_since.load(Ordering::Relaxed), limits.idle),
            t => (t, limits.header),
        };
        self.start
            .checked_add(Duration::from_millis(since))?
            .checked_add(limit)
    }
}

/// A request in flight; dropping it (response produced, or handler cancelled) starts
/// the idle timer.
struct InFlight(Arc<ConnClock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = &self.0;
        c.idle_since.store(c.now_ms(), Ordering::Relaxed);
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        c.changed.notify_one();
    }
}

/// A TCP stream that reports arriving bytes to its [`ConnClock`].
struct Tracked {
    tcp: TcpStream,
    clock: Arc<ConnClock>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_arrived();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Serves one connection until the client leaves, a timeout closes it, or shutdown.
/// Holding `_permit` is what counts it against `max_connections`.
async fn connection(
    tcp: TcpStream,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let clock = Arc::new(ConnClock::new());
    let io = TokioIo::new(Tracked {
        tcp,
        clock: Arc::clone(&clock),
    });
    let requests = Arc::clone(&clock);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = requests.begin();
        let response = app.clone().oneshot(req);
        async move {
            let r = response.await;
            drop(busy);
            r
        }
    });
    let mut builder = http1::Builder::new();
    // ConnClock times heads; hyper's timer would also run while the connection idles.
    builder.header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, service));
    loop {
        let deadline = clock.deadline(limits);
        tokio::select! {
            // Done, or a protocol error hyper has already answered: either way, closed.
            _ = conn.as_mut() => return,
            _ = clock.changed.notified() => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                if deadline.is_some() =>
            {
                if clock.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                    // Dropping the connection closes the socket.
                    return;
                }
            }
            _ = stop.changed() => break,
        }
    }
    // Shutting down: a connection owed no response closes now; one with a request in
    // flight finishes it (the server aborts this task at the shutdown deadline).
    if clock.in_flight.load(Ordering::Relaxed) == 0 {
        return;
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Errors of one incoming connection (the client gave up before `accept`), as opposed
/// to errors of the listener (such as running out of file descriptors).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Accepts and serves connections on `listener` until `shutdown` completes, then
/// drains them within the shutdown deadline. `config` must be valid.
pub(super) async fn run<F>(listener: TcpListener, app: Router, config: &ServeConfig, shutdown: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let limits = Limits {
        header: config.header_read_timeout,
        idle: config.idle_timeout,
    };
    let slots = Arc::new(Semaphore::new(
        config.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let (stop, stopped) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        // Take a slot before accepting: at the bound, new clients wait in the kernel's
        // listen backlog instead of being accepted and starved.
        let permit = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let tcp = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) if is_connection_error(&e) => continue,
                Err(_) => {
                    // Out of file descriptors or similar: retrying at once would spin;
                    // connections closing will free what is missing.
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        // Small request/response pairs: never wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        while conns.try_join_next().is_some() {}
        conns.spawn(connection(
            tcp,
            app.clone(),
            limits,
            stopped.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(config.shutdown_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        // The deadline passed with requests still running: drop their connections.
        conns.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_the_connection_state() {
        let limits = Limits {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        };
        let c = Arc::new(ConnClock::new());
        // Fresh: idle since the start.
        assert_eq!(c.deadline(limits), Some(c.start + limits.idle));
        // Bytes arrive: the header timer runs from then, and later bytes do not reset it.
        c.bytes_arrived();
        let head = c.head_started.load(Ordering::Relaxed);
        assert_ne!(head, NONE);
        let header_deadline = c.start + Duration::from_millis(head) + limits.header;
        assert_eq!(c.deadline(limits), Some(header_deadline));
        c.bytes_arrived();
        assert_eq!(c.deadline(limits), Some(header_deadline));
        // A request in flight: no deadline, and its body bytes start no header timer.
        let busy = c.begin();
        assert_eq!(c.deadline(limits), None);
        c.bytes_arrived();
        assert_eq!(c.head_started.load(Ordering::Relaxed), NONE);
        // Done: idle again, from the end of the request.
        drop(busy);
        let idle = c.idle_since.load(Ordering::Relaxed);
        assert_eq!(
            c.deadline(limits),
            Some(c.start + Duration::from_millis(idle) + limits.idle)
        );
        // A timeout too long to represent means no deadline, not a panic.
        let forever = Limits {
            header: Duration::MAX,
            idle: Duration::MAX,
        };
        assert_eq!(c.deadline(forever), None);
    }
}

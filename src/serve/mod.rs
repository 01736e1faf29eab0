//! An embeddable HTTP search service over any [`Index`] (feature `server`, on by default).
//!
//! | route | request | response |
//! | --- | --- | --- |
//! | `POST /search` | `{"vector": [f32, ...], "k": 10, "nprobe"?: n, "ef"?: n, "rerank"?: n}` | `{"neighbors": [{"id": u64, "distance": f32}, ...]}` |
//! | `POST /search_batch` | `{"vectors": [[f32, ...], ...], "k": 10, ...}` | `{"results": [[{"id", "distance"}, ...], ...]}` |
//! | `GET /vectors/{id}` | | `{"id", "vector": [f32, ...]}` (the stored vector, decoded; 404 if not held) |
//! | `GET /stats` | | `{"kind", "spec", "n", "dim", "metric", "bytes", "bytes_per_vector"}` |
//! | `GET /health` | | `{"status": "ok"}` |
//!
//! Neighbours come in the order [`Index::search`] returns them: best first, ties broken by
//! id. `k` defaults to 10; `nprobe` (IVF), `ef` (HNSW, alias `ef_search`) and `rerank`
//! default to [`SearchParams::default`]'s values.
//!
//! Every failure is a JSON body `{"error": "message"}`: malformed JSON → 400, a
//! `Content-Type` other than `application/json` → 415, a body over
//! [`ServeConfig::max_body_bytes`] → 413, a vector of the wrong dimension or with a
//! component that is not a finite `f32` (such as `1e39`, which overflows) → 422, `k` or
//! a batch out of range → 400, an unknown route → 404, a wrong method → 405, an empty
//! index → 503, a body that does not arrive within [`ServeConfig::body_read_timeout`]
//! → 408 (and the connection closes).
//!
//! Searches run on tokio's blocking pool behind a semaphore of [`ServeConfig::threads`]
//! permits, with JSON parsing and serialisation of results, so the async workers only
//! move bytes: a slow search never delays `/health`.
//!
//! [`serve`] and [`serve_with_shutdown`] guard the connections as well (slow or stalled
//! clients cannot hold the server): a request head must arrive within
//! [`ServeConfig::header_read_timeout`] of its first byte, a keep-alive connection idle
//! for [`ServeConfig::idle_timeout`] closes, at most [`ServeConfig::max_connections`]
//! are served at once (more wait in the listen backlog), and on shutdown idle and
//! stalled connections close at once while requests in flight get
//! [`ServeConfig::shutdown_timeout`] to finish.
//!
//! Embed the routes in your own [axum](https://docs.rs/axum) application with
//! [`router`] and run it with [`serve_app`] (or any server you like, which then owns the
//! connection limits), or run the search service alone with [`serve`] /
//! [`serve_with_shutdown`]; the CLI's `vecquant serve` is [`run_cli`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use vecquant::serve::{self, ServeConfig};
//!
//! # async fn demo() -> vecquant::Result<()> {
//! let index = Arc::from(vecquant::index::open("sq8.vq")?);
//! let app = axum::Router::new()
//!     .route("/version", axum::routing::get(|| async { "1.0" }))
//!     .merge(serve::router(index, ServeConfig::default()));
//! let listener = serve::bind("localhost:8080").await?;
//! serve::serve_app(listener, app, &ServeConfig::default(), serve::shutdown_signal()).await
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::index::Index;
#[cfg(doc)]
use crate::index::SearchParams;

mod api;
mod cli;
mod handlers;
mod server;

pub use api::{
    ApiError, BatchRequest, BatchResponse, SearchRequest, SearchResponse, Stats, VectorResponse,
};
pub use cli::{ServeArgs, run_cli};
pub use handlers::router;

/// Limits, timeouts and concurrency of the service.
///
/// The request limits apply wherever [`router`] runs; the connection limits (header and
/// idle timeouts, `max_connections`, `shutdown_timeout`) apply when [`serve`] or
/// [`serve_with_shutdown`] runs the server. Timeouts guard against clients, not
/// searches: nothing limits how long a search may take.
///
/// ```
/// use std::time::Duration;
/// use vecquant::serve::ServeConfig;
/// let config = ServeConfig { max_k: 100, ..ServeConfig::default() };
/// assert_eq!(config.max_batch, 1024);
/// assert_eq!(config.shutdown_timeout, Duration::from_secs(10));
/// assert!(config.validate().is_ok());
/// assert!(ServeConfig { max_connections: 0, ..config }.validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// Largest `k` a request may ask for (default 1024).
    pub max_k: usize,
    /// Most query vectors in one `/search_batch` request (default 1024).
    pub max_batch: usize,
    /// Largest request body in bytes (default 16 MiB); larger bodies get 413.
    pub max_body_bytes: usize,
    /// Largest `ef` and `rerank` a request may ask for (default 65,536): both size
    /// per-query candidate lists.
    pub max_candidates: usize,
    /// Searches running at once on the blocking pool; further requests wait their turn.
    /// 0 (the default) means the number of CPUs; otherwise at most
    /// [`max_threads`](crate::threads::max_threads).
    pub threads: usize,
    /// Time a client has to send a whole request head, from its first byte (default
    /// 10 s). A client that sends half a head and stalls, or trickles it a byte at a
    /// time, is disconnected when it runs out (without a response: there is no request
    /// to answer).
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole request body, from the end of its head
    /// (default 30 s); past it the request gets 408 and the connection closes.
    pub body_read_timeout: Duration,
    /// Time a keep-alive connection may sit between requests (from the end of one
    /// response to the first byte of the next request) before the server closes it
    /// (default 60 s).
    pub idle_timeout: Duration,
    /// Connections served at once (default 1024). At the bound the server stops
    /// accepting, so further clients wait in the kernel's listen backlog until a
    /// connection closes.
    pub max_connections: usize,
    /// On shutdown, how long requests in flight get to finish (default 10 s); then
    /// their connections are dropped and the server returns. Idle and stalled
    /// connections are closed at once.
    pub shutdown_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_k: 1024,
            max_batch: 1024,
            max_body_bytes: 16 << 20,
            max_candidates: 1 << 16,
            threads: 0,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl ServeConfig {
    /// The number of concurrent searches: [`ServeConfig::threads`], or the number of
    /// CPUs when that is 0.
    ///
    /// ```
    /// use vecquant::serve::ServeConfig;
    /// assert!(ServeConfig::default().effective_threads() >= 1);
    /// assert_eq!(ServeConfig { threads: 3, ..Default::default() }.effective_threads(), 3);
    /// ```
    pub fn effective_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            crate::threads::cores()
        }
    }

    /// Checks that the server can run with these settings: every limit and timeout at
    /// least 1 (0 would refuse every request or close every connection at once) and
    /// `threads` 0 or accepted by [`check_threads`](crate::threads::check_threads).
    /// [`serve`] and [`serve_with_shutdown`] call it first.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("max_k", self.max_k),
            ("max_batch", self.max_batch),
            ("max_body_bytes", self.max_body_bytes),
            ("max_candidates", self.max_candidates),
            ("max_connections", self.max_connections),
        ] {
            if value == 0 {
                return Err(Error::param(name, "must be at least 1"));
            }
        }
        for (name, value) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::param(name, "must be longer than zero"));
            }
        }
        if self.threads != 0 {
            crate::threads::check_threads(self.threads)?;
        }
        Ok(())
    }
}

/// Binds a listener to `addr`, `HOST:PORT` with a host name (`localhost:8080`) or an IP
/// address (`127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:0`). A name that resolves to
/// several addresses binds the first that works.
///
/// Fails with [`Error::InvalidParameter`] naming `addr` when it does not resolve, or
/// [`Error::Io`] naming it when no resolved address can be bound (in use, not local,
/// no permission).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let listener = vecquant::serve::bind("localhost:0").await.unwrap();
/// assert!(listener.local_addr().unwrap().ip().is_loopback());
/// let e = vecquant::serve::bind("localhost").await.unwrap_err().to_string();
/// assert!(e.contains("`localhost`"), "{e}");
/// # }
/// ```
pub async fn bind(addr: &str) -> Result<TcpListener> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| {
            Error::param(
                "addr",
                format!(
                    "cannot resolve `{addr}`: {e} (expected HOST:PORT, such as \
                     127.0.0.1:8080 or localhost:8080)"
                ),
            )
        })?
        .collect();
    let mut last = None;
    for a in &resolved {
        match TcpListener::bind(a).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some((a, e)),
        }
    }
    Err(match last {
        Some((a, e)) if resolved.len() > 1 || a.to_string() != addr => {
            Error::io(format!("{addr} ({a})"), e)
        }
        Some((_, e)) => Error::io(addr, e),
        None => Error::param("addr", format!("`{addr}` resolves to no address")),
    })
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM; never if neither handler can be
/// installed.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Serves `index` on `addr` (`HOST:PORT`, resolved by [`bind`]) until Ctrl-C or
/// SIGTERM, then shuts down as [`serve_with_shutdown`] does.
///
/// ```no_run
/// # async fn demo() -> vecquant::Result<()> {
/// let index = std::sync::Arc::from(vecquant::index::open("sq8.vq")?);
/// vecquant::serve::serve(index, "localhost:8080", Default::default()).await
/// # }
/// ```
pub async fn serve(index: Arc<dyn Index>, addr: &str, config: ServeConfig) -> Result<()> {
    config.validate()?;
    let listener = bind(addr).await?;
    serve_with_shutdown(listener, index, config, shutdown_signal()).await
}

/// Serves `index` on an already bound `listener` (bind port 0 to let the system pick
/// one) until `shutdown` completes, then stops accepting, closes idle and stalled
/// connections, gives requests in flight up to [`ServeConfig::shutdown_timeout`] to
/// finish, drops whatever is left and returns.
///
/// Fails only when `config` is invalid ([`ServeConfig::validate`]).
///
/// ```no_run
/// # async fn demo(index: std::sync::Arc<dyn vecquant::Index>) -> vecquant::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// println!("listening on {}", listener.local_addr().unwrap());
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let server = tokio::spawn(vecquant::serve::serve_with_shutdown(
///     listener, index, Default::default(), async { let _ = stopped.await; }));
/// // ... send requests ...
/// let _ = stop.send(());
/// server.await.unwrap()
/// # }
/// ```
pub async fn serve_with_shutdown<F>(
    listener: TcpListener,
    index: Arc<dyn Index>,
    config: ServeConfig,
    shutdown: F,
) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    config.validate()?;
    let app = router(index, config.clone());
    server::run(listener, app, &config, shutdown).await;
    Ok(())
}

/// Serves any axum application (such as [`router`] merged into routes of your own) on
/// `listener` under the connection limits of `config` (header and idle timeouts,
/// `max_connections`, `shutdown_timeout`) until `shutdown` completes, as
/// [`serve_with_shutdown`] serves the search routes. The request limits of `config`
/// are the application's: `router` applies them to its routes.
///
/// Fails only when `config` is invalid ([`ServeConfig::validate`]).
///
/// ```no_run
/// # async fn demo(index: std::sync::Arc<dyn vecquant::Index>) -> vecquant::Result<()> {
/// use vecquant::serve::{self, ServeConfig};
/// let config = ServeConfig::default();
/// let app = axum::Router::new()
///     .route("/version", axum::routing::get(|| async { "1.0" }))
///     .merge(serve::router(index, config.clone()));
/// let listener = serve::bind("localhost:8080").await?;
/// serve::serve_app(listener, app, &config, serve::shutdown_signal()).await
/// # }
/// ```
pub async fn serve_app<F>(
    listener: TcpListener,
    app: axum::Router,
    config: &ServeConfig,
    shutdown: F,
) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    config.validate()?;
    server::run(listener, app, config, shutdown).await;
    Ok(())
}

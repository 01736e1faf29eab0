//! An embeddable HTTP search service over any [`Index`] (feature `server`, on by default).
//!
//! | route | request | response |
//! | --- | --- | --- |
//! | `POST /search` | `{"vector": [f32, ...], "k": 10, "nprobe"?: n, "ef"?: n, "rerank"?: n}` | `{"neighbors": [{"id": u64, "distance": f32}, ...]}` |
//! | `POST /search_batch` | `{"vectors": [[f32, ...], ...], "k": 10, ...}` | `{"results": [[{"id", "distance"}, ...], ...]}` |
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
//! index → 503.
//!
//! Searches run on tokio's blocking pool behind a semaphore of [`ServeConfig::threads`]
//! permits, with JSON parsing and serialisation of results, so the async workers only
//! move bytes: a slow search never delays `/health`.
//!
//! Embed the routes in your own [axum](https://docs.rs/axum) application with
//! [`router`], or run a server with [`serve`] / [`serve_with_shutdown`]; the CLI's
//! `vecquant serve` is [`run_cli`].
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
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::index::{Index, SearchParams};
use crate::topk::Neighbor;

/// Limits and concurrency of the service.
///
/// ```
/// use vecquant::serve::ServeConfig;
/// let config = ServeConfig { max_k: 100, ..ServeConfig::default() };
/// assert_eq!(config.max_batch, 1024);
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
    /// 0 (the default) means the number of CPUs.
    pub threads: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_k: 1024,
            max_batch: 1024,
            max_body_bytes: 16 << 20,
            max_candidates: 1 << 16,
            threads: 0,
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
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

fn default_k() -> usize {
    10
}

/// The body of `POST /search`.
///
/// ```
/// use vecquant::serve::SearchRequest;
/// let r: SearchRequest = serde_json::from_str(r#"{"vector": [0.5, 1.0], "k": 3}"#).unwrap();
/// assert_eq!((r.vector.len(), r.k, r.nprobe), (2, 3, None));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query.
    pub vector: Vec<f32>,
    /// Neighbours wanted (default 10).
    #[serde(default = "default_k")]
    pub k: usize,
    /// IVF: inverted lists probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nprobe: Option<usize>,
    /// HNSW: candidate-list size (`ef_search`).
    #[serde(default, alias = "ef_search", skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
    /// Quantized indexes: candidates re-scored exactly (needs raw vectors kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank: Option<usize>,
}

/// The body of `POST /search_batch`.
///
/// ```
/// use vecquant::serve::BatchRequest;
/// let r: BatchRequest = serde_json::from_str(r#"{"vectors": [[1, 2], [3, 4]], "k": 1}"#).unwrap();
/// assert_eq!(r.vectors.len(), 2);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The queries, each of the index's dimension.
    pub vectors: Vec<Vec<f32>>,
    /// Neighbours wanted per query (default 10).
    #[serde(default = "default_k")]
    pub k: usize,
    /// IVF: inverted lists probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nprobe: Option<usize>,
    /// HNSW: candidate-list size (`ef_search`).
    #[serde(default, alias = "ef_search", skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
    /// Quantized indexes: candidates re-scored exactly (needs raw vectors kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank: Option<usize>,
}

/// The answer to `POST /search`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Best first, as [`Index::search`] returns them.
    pub neighbors: Vec<Neighbor>,
}

/// The answer to `POST /search_batch`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchResponse {
    /// One list per query, in request order.
    pub results: Vec<Vec<Neighbor>>,
}

/// The answer to `GET /stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// The index kind as a container file names it: `flat`, `sq`, `pq`, `ivf` or `hnsw`.
    pub kind: String,
    /// The spec the index was built from (`"SQ8"`, `"IVF256,PQ16x4fs"`, ...).
    pub spec: String,
    /// Number of (live) vectors.
    pub n: usize,
    /// Vector dimension.
    pub dim: usize,
    /// `l2`, `ip` or `cosine`.
    pub metric: String,
    /// Bytes the index holds ([`Index::memory_bytes`]).
    pub bytes: usize,
    /// Bytes of code per vector ([`Index::bytes_per_vector`]).
    pub bytes_per_vector: f64,
}

impl Stats {
    /// The statistics of `index`.
    ///
    /// ```
    /// use vecquant::{Flat, Index, Metric};
    /// let mut index = Flat::new(2, Metric::L2);
    /// index.add(&[0.0, 1.0, 2.0, 3.0], None).unwrap();
    /// let s = vecquant::serve::Stats::of(&index);
    /// assert_eq!((s.kind.as_str(), s.n, s.dim), ("flat", 2, 2));
    /// ```
    pub fn of(index: &dyn Index) -> Stats {
        let spec = index.spec();
        Stats {
            kind: kind_of_spec(&spec).to_string(),
            n: index.len(),
            dim: index.dim(),
            metric: index.metric().name().to_string(),
            bytes: index.memory_bytes(),
            bytes_per_vector: index.bytes_per_vector(),
            spec,
        }
    }
}

/// The container kind of a spec string (the outermost structure decides: an IVF over
/// SQ8 is `ivf`).
fn kind_of_spec(spec: &str) -> &'static str {
    let s = spec.trim().to_ascii_lowercase();
    if s.starts_with("ivf") {
        "ivf"
    } else if s.starts_with("hnsw") {
        "hnsw"
    } else if s.starts_with("pq") || s.starts_with("opq") {
        "pq"
    } else if s.starts_with("sq") {
        "sq"
    } else if s.starts_with("flat") {
        "flat"
    } else {
        "unknown"
    }
}

/// An HTTP error: a status and a message sent as `{"error": message}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::DimensionMismatch { .. } | Error::NonFinite { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Error::InvalidParameter { .. } | Error::Spec { .. } => StatusCode::BAD_REQUEST,
            Error::EmptyIndex => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message }).to_string();
        json_bytes(self.status, body.into_bytes())
    }
}

fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// State shared by every request.
struct Shared {
    index: Arc<dyn Index>,
    config: ServeConfig,
    stats: Vec<u8>,
    permits: Arc<Semaphore>,
}

impl Shared {
    /// Runs `f` on the blocking pool once a permit is free, returning its JSON.
    async fn blocking<F>(self: &Arc<Self>, f: F) -> Response
    where
        F: FnOnce(&Shared) -> std::result::Result<Vec<u8>, ApiError> + Send + 'static,
    {
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => {
                return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping")
                    .into_response();
            }
        };
        let shared = Arc::clone(self);
        // The permit moves into the task, so a client that hangs up does not free it
        // before the search it started has finished.
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&shared)
        });
        match task.await {
            Ok(Ok(body)) => json_bytes(StatusCode::OK, body),
            Ok(Err(e)) => e.into_response(),
            Err(e) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                if e.is_panic() {
                    "the search panicked (a bug: please report it)".to_string()
                } else {
                    format!("the search was cancelled: {e}")
                },
            )
            .into_response(),
        }
    }

    /// Checks `k` and the optional knobs and builds the search parameters.
    fn params(
        &self,
        k: usize,
        nprobe: Option<usize>,
        ef: Option<usize>,
        rerank: Option<usize>,
    ) -> std::result::Result<SearchParams, ApiError> {
        let c = &self.config;
        if k == 0 {
            return Err(ApiError::bad("`k` must be at least 1"));
        }
        if k > c.max_k {
            return Err(ApiError::bad(format!(
                "`k` = {k} exceeds this server's maximum of {}",
                c.max_k
            )));
        }
        let mut p = SearchParams::with_k(k);
        if let Some(n) = nprobe {
            if n == 0 {
                return Err(ApiError::bad("`nprobe` must be at least 1"));
            }
            p.nprobe = n;
        }
        if let Some(ef) = ef {
            if ef == 0 || ef > c.max_candidates {
                return Err(ApiError::bad(format!(
                    "`ef` = {ef} is out of range: use 1 to {}",
                    c.max_candidates
                )));
            }
            p.ef_search = ef;
        }
        if let Some(r) = rerank {
            if r > c.max_candidates {
                return Err(ApiError::bad(format!(
                    "`rerank` = {r} exceeds this server's maximum of {}",
                    c.max_candidates
                )));
            }
            p.rerank = r;
        }
        Ok(p)
    }

    /// Checks one query's dimension and values; `what` names it in messages.
    fn check_vector(&self, v: &[f32], what: &str) -> std::result::Result<(), ApiError> {
        let dim = self.index.dim();
        if v.is_empty() {
            return Err(ApiError::unprocessable(format!(
                "`{what}` is empty: expected {dim} components"
            )));
        }
        if v.len() != dim {
            return Err(ApiError::unprocessable(format!(
                "dimension mismatch in `{what}`: expected {dim} components, got {}",
                v.len()
            )));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(ApiError::unprocessable(format!(
                "`{what}[{i}]` is not a finite f32 ({}): JSON numbers beyond ±3.4e38 overflow",
                v[i]
            )));
        }
        Ok(())
    }

    fn search(&self, body: &[u8]) -> std::result::Result<Vec<u8>, ApiError> {
        let r: SearchRequest = parse_json(body)?;
        let p = self.params(r.k, r.nprobe, r.ef, r.rerank)?;
        self.check_vector(&r.vector, "vector")?;
        let neighbors = self.index.search(&r.vector, &p)?;
        to_json(&SearchResponse { neighbors })
    }

    fn search_batch(&self, body: &[u8]) -> std::result::Result<Vec<u8>, ApiError> {
        let r: BatchRequest = parse_json(body)?;
        let p = self.params(r.k, r.nprobe, r.ef, r.rerank)?;
        if r.vectors.is_empty() {
            return Err(ApiError::bad("`vectors` is empty: send at least one query"));
        }
        if r.vectors.len() > self.config.max_batch {
            return Err(ApiError::bad(format!(
                "a batch of {} vectors exceeds this server's maximum of {}",
                r.vectors.len(),
                self.config.max_batch
            )));
        }
        let mut flat = Vec::with_capacity(r.vectors.len() * self.index.dim());
        for (i, v) in r.vectors.iter().enumerate() {
            self.check_vector(v, &format!("vectors[{i}]"))?;
            flat.extend_from_slice(v);
        }
        let results = self.index.search_batch(&flat, &p)?;
        to_json(&BatchResponse { results })
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::unprocessable(format!("invalid request: {e}")),
            _ => ApiError::bad(format!("malformed JSON: {e}")),
        }
    })
}

fn to_json<T: Serialize>(v: &T) -> std::result::Result<Vec<u8>, ApiError> {
    serde_json::to_vec(v).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the response: {e}"),
        )
    })
}

/// Reads a JSON request body: checks the content type and the declared length before
/// reading anything (so `Expect: 100-continue` clients are refused without sending),
/// then buffers at most [`ServeConfig::max_body_bytes`].
async fn json_body(shared: &Shared, req: Request) -> std::result::Result<Bytes, ApiError> {
    check_content_type(req.headers())?;
    let limit = shared.config.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds this server's limit of {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Bytes::from_request(req, &()).await {
        Ok(b) => Ok(b),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
        Err(e) => Err(rejection(e)),
    }
}

fn rejection(e: BytesRejection) -> ApiError {
    ApiError::new(e.status(), e.body_text())
}

fn check_content_type(headers: &HeaderMap) -> std::result::Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else if essence.is_empty() {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "missing `Content-Type: application/json` header",
        ))
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected `Content-Type: application/json`, got `{ct}`"),
        ))
    }
}

async fn search_handler(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    match json_body(&shared, req).await {
        Ok(body) => shared.blocking(move |s| s.search(&body)).await,
        Err(e) => e.into_response(),
    }
}

async fn batch_handler(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    match json_body(&shared, req).await {
        Ok(body) => shared.blocking(move |s| s.search_batch(&body)).await,
        Err(e) => e.into_response(),
    }
}

async fn health_handler() -> Response {
    json_bytes(StatusCode::OK, br#"{"status":"ok"}"#.to_vec())
}

async fn stats_handler(State(shared): State<Arc<Shared>>) -> Response {
    json_bytes(StatusCode::OK, shared.stats.clone())
}

async fn not_found(method: Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {method} {}: try POST /search, POST /search_batch, GET /stats or GET /health",
            uri.path()
        ),
    )
    .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let allowed = match uri.path() {
        "/search" | "/search_batch" => "POST",
        _ => "GET",
    };
    let mut r = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}: use {allowed}", uri.path()),
    )
    .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allowed));
    r
}

/// The service's routes over `index`, ready to serve or to merge into a larger axum
/// application.
///
/// The router carries a JSON fallback for unknown routes (404) and wrong methods
/// (405); axum refuses to `merge` two routers that both have a fallback, so an
/// application with its own fallback should `nest` this router under a prefix instead.
///
/// ```
/// use std::sync::Arc;
/// use vecquant::{Flat, Index, Metric};
/// use vecquant::serve::{router, ServeConfig};
///
/// let mut index = Flat::new(2, Metric::L2);
/// index.add(&[0.0, 0.0, 1.0, 1.0], None).unwrap();
/// let app: axum::Router = axum::Router::new()
///     .route("/hello", axum::routing::get(|| async { "hi" }))
///     .merge(router(Arc::new(index), ServeConfig::default()));
/// ```
pub fn router(index: Arc<dyn Index>, config: ServeConfig) -> Router {
    let stats = serde_json::to_vec(&Stats::of(index.as_ref())).unwrap_or_default();
    let permits = Arc::new(Semaphore::new(config.effective_threads()));
    let limit = config.max_body_bytes;
    let shared = Arc::new(Shared {
        index,
        config,
        stats,
        permits,
    });
    Router::new()
        .route("/search", post(search_handler))
        .route("/search_batch", post(batch_handler))
        .route("/health", get(health_handler))
        .route("/stats", get(stats_handler))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
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

/// Serves `index` on `addr` until Ctrl-C or SIGTERM, then finishes the requests in
/// flight and returns.
///
/// ```no_run
/// # async fn demo() -> vecquant::Result<()> {
/// let index = std::sync::Arc::from(vecquant::index::open("sq8.vq")?);
/// let addr = "127.0.0.1:8080".parse().unwrap();
/// vecquant::serve::serve(index, addr, Default::default()).await
/// # }
/// ```
pub async fn serve(index: Arc<dyn Index>, addr: SocketAddr, config: ServeConfig) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(addr.to_string(), e))?;
    serve_with_shutdown(listener, index, config, shutdown_signal()).await
}

/// Serves `index` on an already bound `listener` (bind port 0 to let the system pick
/// one) until `shutdown` completes, then finishes the requests in flight and returns.
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
    let addr = listener
        .local_addr()
        .map_or_else(|_| "listener".to_string(), |a| a.to_string());
    let listener = listener.tap_io(|tcp| {
        // Small request/response pairs: never wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(index, config))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::io(addr, e))
}

/// Options of the `vecquant serve` command.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// Index file to serve (any kind `vecquant build` writes).
    #[arg(long)]
    pub index: PathBuf,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Largest k a request may ask for.
    #[arg(long, default_value_t = 1024)]
    pub max_k: usize,
    /// Most vectors in one /search_batch request.
    #[arg(long, default_value_t = 1024)]
    pub max_batch: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body: usize,
    /// Searches running at once, and threads of a batch search (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Runs `vecquant serve`: opens the index, starts a tokio runtime, prints the address
/// and serves until Ctrl-C or SIGTERM.
pub fn run_cli(args: &ServeArgs) -> Result<()> {
    if args.threads == Some(0) {
        return Err(Error::param("threads", "must be at least 1"));
    }
    if args.max_k == 0 || args.max_batch == 0 || args.max_body == 0 {
        return Err(Error::param(
            "serve",
            "--max-k, --max-batch and --max-body must be at least 1",
        ));
    }
    let config = ServeConfig {
        max_k: args.max_k,
        max_batch: args.max_batch,
        max_body_bytes: args.max_body,
        threads: args.threads.unwrap_or(0),
        ..ServeConfig::default()
    };
    let threads = config.effective_threads();
    // Batch searches fan out on rayon's global pool: give it the same bound. It may
    // already exist (an embedding program), which is fine.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    let index: Arc<dyn Index> = Arc::from(crate::index::open(&args.index)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.clamp(1, 4))
        .thread_name("vecquant-serve")
        .enable_all()
        .build()
        .map_err(|e| Error::io(&args.index, e))?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(args.addr)
            .await
            .map_err(|e| Error::io(args.addr.to_string(), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io(args.addr.to_string(), e))?;
        println!(
            "serving {} ({} vectors, dim {}, {}) from {} on http://{local} with {threads} search thread(s)",
            index.spec(),
            index.len(),
            index.dim(),
            index.metric(),
            args.index.display()
        );
        println!("routes: POST /search, POST /search_batch, GET /stats, GET /health; Ctrl-C to stop");
        serve_with_shutdown(listener, index, config, shutdown_signal()).await?;
        println!("stopped");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_specs() {
        for (spec, kind) in [
            ("Flat", "flat"),
            ("SQ8", "sq"),
            ("PQ8", "pq"),
            ("OPQ8,PQ8", "pq"),
            ("PQ16x4fs", "pq"),
            ("IVF256,SQ8", "ivf"),
            ("HNSW32,Flat", "hnsw"),
            ("Weird", "unknown"),
        ] {
            assert_eq!(kind_of_spec(spec), kind, "{spec}");
        }
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert_eq!(
            check_content_type(&h).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(check_content_type(&h).is_ok(), "{ok}");
        }
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let e = check_content_type(&h).unwrap_err();
        assert!(e.message.contains("text/plain"), "{}", e.message);
    }
}

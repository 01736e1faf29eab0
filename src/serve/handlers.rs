//! The routes: request parsing and validation, searches on the blocking pool, and the
//! JSON fallbacks for unknown routes and wrong methods.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::ServeConfig;
use super::api::{
    ApiError, BatchRequest, BatchResponse, SearchRequest, SearchResponse, Stats, VectorResponse,
    json_bytes,
};
use crate::index::{Index, SearchParams};

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
        let n = crate::index::checks::norm_sq(v);
        if n > crate::index::MAX_NORM_SQ {
            return Err(ApiError::unprocessable(format!(
                "`{what}` has squared norm {n:.3e}, beyond the limit {:.0e} (a norm of at most \
                 1e18): its distances would overflow f32",
                crate::index::MAX_NORM_SQ
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
/// then buffers at most [`ServeConfig::max_body_bytes`], giving up with 408 when the
/// whole body has not arrived within [`ServeConfig::body_read_timeout`].
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
    let timeout = shared.config.body_read_timeout;
    match tokio::time::timeout(timeout, Bytes::from_request(req, &())).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
        Ok(Err(e)) => Err(rejection(e)),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within this server's limit of {} s",
                timeout.as_secs_f64()
            ),
        )),
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

/// `GET /vectors/{id}`: the stored vector with that id, decoded
/// ([`Index::reconstruct_ids`]): `{"id": 42, "vector": [...]}`; 404 for an id the index
/// does not hold.
async fn vector_handler(
    State(shared): State<Arc<Shared>>,
    id: std::result::Result<Path<String>, PathRejection>,
) -> Response {
    let id = match id {
        Ok(Path(id)) => id,
        Err(e) => return ApiError::bad(format!("bad vector id in the path: {e}")).into_response(),
    };
    let Ok(id) = id.parse::<u64>() else {
        return ApiError::bad(format!(
            "`{id}` is not a vector id: use GET /vectors/{{id}} with a non-negative integer"
        ))
        .into_response();
    };
    shared
        .blocking(move |s| {
            let vector = s.index.reconstruct_ids(&[id])?;
            Ok(serde_json::to_vec(&VectorResponse { id, vector }).unwrap_or_default())
        })
        .await
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
            "no route for {method} {}: try POST /search, POST /search_batch, GET /vectors/{{id}}, GET /stats or GET /health",
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
/// The router applies the request limits of `config` (`max_k`, `max_batch`,
/// `max_body_bytes`, `max_candidates`, `body_read_timeout`, `threads`); the connection
/// limits (header and idle timeouts, `max_connections`, the shutdown deadline) belong to
/// the server that runs it: [`serve_app`](super::serve_app) (and
/// [`serve`](super::serve), [`serve_with_shutdown`](super::serve_with_shutdown)) apply
/// them, a plain `axum::serve` does not.
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
    // `Semaphore::new` panics above MAX_PERMITS; no machine runs that many searches.
    let permits = Arc::new(Semaphore::new(
        config.effective_threads().min(Semaphore::MAX_PERMITS),
    ));
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
        .route("/vectors/{id}", get(vector_handler))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! The service's wire types: request and response bodies and the JSON error.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::index::Index;
use crate::topk::Neighbor;

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

/// The answer to `GET /vectors/{id}`: the stored vector, decoded (the vector itself for
/// exact indexes and those that keep raw vectors; normalised under cosine).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VectorResponse {
    /// The id asked for.
    pub id: u64,
    /// Its vector.
    pub vector: Vec<f32>,
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
    spec.parse::<crate::index::spec::IndexSpec>()
        .map_or("unknown", |t| t.kind())
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
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(super) fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(super) fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::DimensionMismatch { .. } | Error::NonFinite { .. } | Error::TooLarge { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Error::DuplicateId { .. } => StatusCode::CONFLICT,
            Error::UnknownId { .. } => StatusCode::NOT_FOUND,
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
        let mut response = json_bytes(self.status, body.into_bytes());
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still be on its way: the connection cannot carry
            // another request, so say so and let hyper close it after this answer.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// A response with a JSON body already encoded.
pub(super) fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_specs() {
        for (spec, kind) in [
            ("Flat", "flat"),
            ("SQ8", "codes"),
            ("PQ8", "pq"),
            ("OPQ8,PQ8", "pq"),
            ("PQ16x4fs", "pq"),
            ("IVF256,SQ8", "ivf"),
            ("HNSW32,Flat", "hnsw"),
            ("OPQ8,IVF16,PQ8", "ivf"),
            ("Weird", "unknown"),
        ] {
            assert_eq!(kind_of_spec(spec), kind, "{spec}");
        }
    }

    #[test]
    fn timeouts_close_the_connection() {
        let r = ApiError::new(StatusCode::REQUEST_TIMEOUT, "slow").into_response();
        assert_eq!(r.headers()[header::CONNECTION], "close");
        let r = ApiError::bad("no").into_response();
        assert!(r.headers().get(header::CONNECTION).is_none());
    }
}

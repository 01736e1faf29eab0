//! The HTTP service end to end on loopback: every kind of bad request gets its 4xx and a
//! JSON error, and answers equal the library's. The service's limits (timeouts, the
//! connection bound, shutdown, the CLI) are in `tests/serve_limits.rs`.
//!
//! No test measures how fast anything is (throughput and latency are
//! `examples/serve_load.rs`).
//!
//! The client is a minimal HTTP/1.1 keep-alive client on `tokio::net::TcpStream`; each
//! server runs on its own runtime in its own thread, as a separate process would.

use crate::serve_util;
use serve_util::*;

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn bad_requests_get_a_4xx_and_a_json_error() {
    let index: Arc<dyn Index> = Arc::from(build("Flat", 500, 1, false));
    let config = ServeConfig {
        max_batch: 8,
        max_body_bytes: 1 << 20,
        ..ServeConfig::default()
    };
    let server = Server::start(index, config);
    let a = server.addr;
    let v31 = serde_json::to_string(&vec![0.5f32; 31]).unwrap();
    let v32 = serde_json::to_string(&vec![0.5f32; 32]).unwrap();
    let mut big = vec![0.5f64; 32];
    big[5] = 1e39;
    let big = serde_json::to_string(&big).unwrap();

    // Vectors.
    assert_error(
        "wrong dimension",
        post(a, "/search", &format!(r#"{{"vector": {v31}, "k": 3}}"#)).await,
        422,
        &["expected 32", "got 31"],
    );
    assert_error(
        "empty vector",
        post(a, "/search", r#"{"vector": [], "k": 3}"#).await,
        422,
        &["empty", "32"],
    );
    assert_error(
        "overflow to inf",
        post(a, "/search", &format!(r#"{{"vector": {big}}}"#)).await,
        422,
        &["vector[5]", "finite"],
    );
    assert_error(
        "non-number component",
        post(a, "/search", r#"{"vector": [1, "x"], "k": 3}"#).await,
        422,
        &["invalid request", "f32"],
    );
    assert_error(
        "missing vector",
        post(a, "/search", r#"{"k": 3}"#).await,
        422,
        &["missing field `vector`"],
    );
    assert_error(
        "unknown field",
        post(a, "/search", &format!(r#"{{"vectors": [{v32}]}}"#)).await,
        422,
        &["unknown field `vectors`"],
    );
    // Parameters.
    assert_error(
        "k = 0",
        post(a, "/search", &format!(r#"{{"vector": {v32}, "k": 0}}"#)).await,
        400,
        &["`k`", "at least 1"],
    );
    assert_error(
        "k too large",
        post(a, "/search", &format!(r#"{{"vector": {v32}, "k": 1025}}"#)).await,
        400,
        &["1025", "maximum of 1024"],
    );
    assert_error(
        "negative k",
        post(a, "/search", &format!(r#"{{"vector": {v32}, "k": -1}}"#)).await,
        422,
        &["invalid request"],
    );
    assert_error(
        "ef = 0",
        post(a, "/search", &format!(r#"{{"vector": {v32}, "ef": 0}}"#)).await,
        400,
        &["`ef`"],
    );
    assert_error(
        "nprobe = 0",
        post(
            a,
            "/search",
            &format!(r#"{{"vector": {v32}, "nprobe": 0}}"#),
        )
        .await,
        400,
        &["`nprobe`"],
    );
    // Batches.
    assert_error(
        "empty batch",
        post(a, "/search_batch", r#"{"vectors": [], "k": 3}"#).await,
        400,
        &["empty"],
    );
    let nine = vec![vec![0.5f32; 32]; 9];
    assert_error(
        "batch too large",
        post(
            a,
            "/search_batch",
            &json!({ "vectors": nine, "k": 3 }).to_string(),
        )
        .await,
        400,
        &["9 vectors", "maximum of 8"],
    );
    assert_error(
        "ragged batch",
        post(
            a,
            "/search_batch",
            &format!(r#"{{"vectors": [{v32}, {v31}], "k": 3}}"#),
        )
        .await,
        422,
        &["vectors[1]", "expected 32", "got 31"],
    );
    assert_error(
        "inf in a batch",
        post(
            a,
            "/search_batch",
            &format!(r#"{{"vectors": [{v32}, {v32}, {big}], "k": 3}}"#),
        )
        .await,
        422,
        &["vectors[2][5]", "finite"],
    );
    // Bodies.
    assert_error(
        "malformed JSON",
        post(a, "/search", r#"{"vector": [1, 2"#).await,
        400,
        &["malformed JSON"],
    );
    assert_error(
        "not JSON at all",
        post(a, "/search", "vector=1,2,3").await,
        400,
        &["malformed JSON"],
    );
    assert_error(
        "wrong content type",
        call(a, "POST", "/search", Some("text/plain"), &v32).await,
        415,
        &["application/json", "text/plain"],
    );
    assert_error(
        "no content type",
        call(a, "POST", "/search", None, &v32).await,
        415,
        &["Content-Type"],
    );
    // Too large, declared: refused before the body is sent (Expect: 100-continue).
    let mut c = Conn::connect(a).await.unwrap();
    c.send_raw(
        b"POST /search HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
          content-length: 2097152\r\nexpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let (s, body) = c.read_response().await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_error("declared body too large", (s, v), 413, &["1048576 bytes"]);
    // Too large, chunked (no length declared): cut off while reading.
    let mut c = Conn::connect(a).await.unwrap();
    let chunk = vec![b' '; (1 << 20) + 100];
    let mut msg = format!(
        "POST /search HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n{:x}\r\n",
        chunk.len()
    )
    .into_bytes();
    msg.extend_from_slice(&chunk);
    msg.extend_from_slice(b"\r\n0\r\n\r\n");
    let _ = c.send_raw(&msg).await;
    let (s, body) = c.read_response().await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_error("streamed body too large", (s, v), 413, &["limit"]);
    // Routes and methods.
    assert_error(
        "unknown route",
        call(a, "GET", "/nope", None, "").await,
        404,
        &["/nope", "/search"],
    );
    assert_error(
        "wrong method",
        call(a, "GET", "/search", None, "").await,
        405,
        &["POST"],
    );
    // Still alive and well.
    let (s, v) = call(a, "GET", "/health", None, "").await;
    assert_eq!((s, v), (200, json!({"status": "ok"})));
    let (s, v) = post(a, "/search", &format!(r#"{{"vector": {v32}, "k": 3}}"#)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["neighbors"].as_array().unwrap().len(), 3);

    // An empty index is the server's state, not the client's fault.
    let empty = Server::start(Arc::new(Flat::new(DIM, Metric::L2)), ServeConfig::default());
    assert_error(
        "empty index",
        post(empty.addr, "/search", &format!(r#"{{"vector": {v32}}}"#)).await,
        503,
        &["empty"],
    );
}

#[tokio::test]
async fn answers_equal_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let q = queries(20, 99);
    for (spec, keep_raw, rerank) in [
        ("Flat", false, None),
        ("SQ8", true, Some(40)),
        ("IVF16,SQ8", true, None),
    ] {
        let index = saved(spec, 2000, 7, keep_raw, dir.path());
        let server = Server::start(Arc::clone(&index), ServeConfig::default());
        let a = server.addr;
        let mut conn = Conn::connect(a).await.unwrap();
        let mut params = SearchParams::with_k(10);
        params.rerank = rerank.unwrap_or(0);
        params.nprobe = 4;

        // One query at a time, on one keep-alive connection.
        for (i, v) in q.rows().enumerate() {
            let req = SearchRequest {
                vector: v.to_vec(),
                k: 10,
                nprobe: Some(4),
                ef: None,
                rerank,
            };
            let (s, body) = conn
                .post_json("/search", &serde_json::to_vec(&req).unwrap())
                .await
                .unwrap();
            assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
            let got: SearchResponse = serde_json::from_slice(&body).unwrap();
            let want = index.search(v, &params).unwrap();
            assert_same(&format!("{spec} query {i}"), &got.neighbors, &want);
        }

        // The same queries as one batch; k defaults to 10.
        let req = BatchRequest {
            vectors: q.rows().map(|r| r.to_vec()).collect(),
            k: 10,
            nprobe: Some(4),
            ef: None,
            rerank,
        };
        let (s, body) = conn
            .post_json("/search_batch", &serde_json::to_vec(&req).unwrap())
            .await
            .unwrap();
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
        let got: BatchResponse = serde_json::from_slice(&body).unwrap();
        let want = index.search_batch(q.as_slice(), &params).unwrap();
        assert_eq!(got.results.len(), q.len());
        for (i, (g, w)) in got.results.iter().zip(&want).enumerate() {
            assert_same(&format!("{spec} batch row {i}"), g, w);
        }

        // Stats describe the index.
        let (s, body) = conn.request("GET", "/stats", &[], b"").await.unwrap();
        assert_eq!(s, 200);
        let st: Stats = serde_json::from_slice(&body).unwrap();
        let kind = match spec {
            "Flat" => "flat",
            "SQ8" => "codes",
            _ => "ivf",
        };
        assert_eq!(
            (
                st.kind.as_str(),
                st.spec.as_str(),
                st.n,
                st.dim,
                st.metric.as_str()
            ),
            (kind, index.spec().as_str(), 2000, DIM, "l2")
        );
        assert_eq!(st.bytes, index.memory_bytes());
        let (s, body) = conn.request("GET", "/health", &[], b"").await.unwrap();
        assert_eq!((s, body.as_slice()), (200, &br#"{"status":"ok"}"#[..]));
    }
}

#[tokio::test]
async fn get_vectors_by_id_decodes_what_the_index_stores() {
    for (spec, keep_raw) in [("Flat", false), ("SQ8", false), ("IVF16,PQ8x4fs", true)] {
        let mut index = build(spec, 2000, 7, keep_raw);
        index.delete(&[5]).unwrap();
        let index: Arc<dyn Index> = Arc::from(index);
        let server = Server::start(Arc::clone(&index), ServeConfig::default());
        let a = server.addr;
        for id in [0u64, 1999, 777] {
            let (s, v) = call(a, "GET", &format!("/vectors/{id}"), None, "").await;
            assert_eq!(s, 200, "{spec}: {v}");
            let got: VectorResponse = serde_json::from_value(v).unwrap();
            assert_eq!(got.id, id);
            assert_eq!(
                got.vector,
                index.reconstruct_ids(&[id]).unwrap(),
                "{spec} {id}"
            );
        }
        assert_error(
            &format!("{spec} deleted"),
            call(a, "GET", "/vectors/5", None, "").await,
            404,
            &["id 5", "deleted"],
        );
        assert_error(
            &format!("{spec} unknown"),
            call(a, "GET", "/vectors/123456", None, "").await,
            404,
            &["id 123456", "not in the index"],
        );
        assert_error(
            &format!("{spec} not a number"),
            call(a, "GET", "/vectors/-3", None, "").await,
            400,
            &["`-3` is not a vector id"],
        );
        assert_error(
            &format!("{spec} wrong method"),
            call(a, "POST", "/vectors/3", Some("application/json"), "{}").await,
            405,
            &["use GET"],
        );
    }
}

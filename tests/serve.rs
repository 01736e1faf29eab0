//! The HTTP service end to end on loopback: every kind of bad request gets its 4xx and a
//! JSON error, answers equal the library's, a slow search leaves `/health` alone, the
//! CLI serves and stops on SIGTERM, and a load test (20,000 requests at concurrency 32)
//! reports throughput and latency with zero errors.
//!
//! The client is a minimal HTTP/1.1 keep-alive client on `tokio::net::TcpStream`; each
//! server runs on its own runtime in its own thread, as a separate process would.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use vecquant::data::generate::gaussian;
use vecquant::index::spec::{BuildOptions, new_index};
use vecquant::serve::{
    BatchRequest, BatchResponse, SearchRequest, SearchResponse, ServeConfig, Stats,
    serve_with_shutdown,
};
use vecquant::store::ContainerWriter;
use vecquant::{Flat, Index, Metric, Neighbor, SearchParams, VectorSet};

const DIM: usize = 32;

// ---------------------------------------------------------------- server and client

/// A server on 127.0.0.1:<free port>, on its own two-worker runtime; dropping it shuts
/// it down gracefully and checks that it stopped without error.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<vecquant::Result<()>>>,
}

impl Server {
    fn start(index: Arc<dyn Index>, config: ServeConfig) -> Server {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                serve_with_shutdown(listener, index, config, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let addr = addr_rx.recv().expect("the server starts");
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.expect("server thread").expect("server stopped cleanly");
            }
        }
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::new(s),
        })
    }

    /// Sends one request with a `content-length` and the given extra headers.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<(u16, Vec<u8>)> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut msg = head.into_bytes();
        msg.extend_from_slice(body);
        self.send_raw(&msg).await?;
        self.read_response().await
    }

    async fn post_json(&mut self, path: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        self.request("POST", path, &[("content-type", "application/json")], body)
            .await
    }

    async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let s = self.r.get_mut();
        s.write_all(bytes).await?;
        s.flush().await
    }

    /// Reads one final response (skipping 1xx), by `content-length` or to EOF.
    async fn read_response(&mut self) -> io::Result<(u16, Vec<u8>)> {
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a response",
                ));
            }
            let status: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("status line {line:?}"))
                })?;
            let mut len = None;
            loop {
                line.clear();
                if self.r.read_line(&mut line).await? == 0 {
                    break;
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':')
                    && k.trim().eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse::<usize>().ok();
                }
            }
            if (100..200).contains(&status) {
                continue;
            }
            let mut body = Vec::new();
            match len {
                Some(n) => {
                    body.resize(n, 0);
                    self.r.read_exact(&mut body).await?;
                }
                None => {
                    self.r.read_to_end(&mut body).await?;
                }
            }
            return Ok((status, body));
        }
    }
}

/// One request on a fresh connection; the answer must be JSON.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut c = Conn::connect(addr).await.unwrap();
    let headers: Vec<(&str, &str)> = content_type
        .map(|t| ("content-type", t))
        .into_iter()
        .collect();
    let (status, body) = c
        .request(method, path, &headers, body.as_bytes())
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{method} {path} → {status}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, v)
}

async fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    call(addr, "POST", path, Some("application/json"), body).await
}

/// Asserts a status and a JSON `{"error": ...}` naming every one of `needles`.
fn assert_error(what: &str, got: (u16, Value), status: u16, needles: &[&str]) {
    let (s, v) = got;
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no \"error\" string in {v}"));
    assert_eq!(s, status, "{what}: status {s}, body {v}");
    for n in needles {
        assert!(
            msg.contains(n),
            "{what}: error {msg:?} does not mention {n:?}"
        );
    }
}

// ---------------------------------------------------------------- indexes

fn build(spec: &str, n: usize, seed: u64, keep_raw: bool) -> Box<dyn Index> {
    let base = gaussian(n, DIM, 0.0, 1.0, seed).unwrap();
    let opts = BuildOptions {
        keep_raw,
        ..BuildOptions::default()
    };
    let mut idx = new_index(spec, DIM, &opts).unwrap();
    idx.train(base.as_slice()).unwrap();
    idx.add(base.as_slice(), None).unwrap();
    idx
}

/// Builds, saves and reopens (memory-mapped) an index, as `vecquant serve` would.
fn saved(spec: &str, n: usize, seed: u64, keep_raw: bool, dir: &std::path::Path) -> Arc<dyn Index> {
    let path = dir.join(format!("{}.vq", spec.replace(',', "_")));
    build(spec, n, seed, keep_raw).save(&path).unwrap();
    Arc::from(vecquant::index::open(&path).unwrap())
}

fn queries(n: usize, seed: u64) -> VectorSet {
    gaussian(n, DIM, 0.0, 1.0, seed).unwrap()
}

fn assert_same(what: &str, got: &[Neighbor], want: &[Neighbor]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.id, w.id, "{what}: ids {got:?} vs {want:?}");
        assert!(
            (g.distance - w.distance).abs() <= 1e-6 * w.distance.abs().max(1.0),
            "{what}: distances {got:?} vs {want:?}"
        );
    }
}

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
            "SQ8" => "sq",
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

/// A Flat index whose searches take `delay`.
struct Slow(Flat, Duration);

impl Index for Slow {
    fn spec(&self) -> String {
        self.0.spec()
    }
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn metric(&self) -> Metric {
        self.0.metric()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn bytes_per_vector(&self) -> f64 {
        self.0.bytes_per_vector()
    }
    fn memory_bytes(&self) -> usize {
        self.0.memory_bytes()
    }
    fn add(&mut self, v: &[f32], ids: Option<&[u64]>) -> vecquant::Result<()> {
        self.0.add(v, ids)
    }
    fn delete(&mut self, ids: &[u64]) -> vecquant::Result<usize> {
        self.0.delete(ids)
    }
    fn deleted(&self) -> usize {
        self.0.deleted()
    }
    fn compact(&mut self) -> vecquant::Result<usize> {
        self.0.compact()
    }
    fn search(&self, q: &[f32], p: &SearchParams) -> vecquant::Result<Vec<Neighbor>> {
        std::thread::sleep(self.1);
        self.0.search(q, p)
    }
    fn to_container(&self) -> vecquant::Result<ContainerWriter<'_>> {
        self.0.to_container()
    }
}

#[tokio::test]
async fn slow_searches_do_not_block_health() {
    let mut flat = Flat::new(DIM, Metric::L2);
    flat.add(queries(100, 3).as_slice(), None).unwrap();
    let delay = Duration::from_millis(800);
    let config = ServeConfig {
        threads: 1,
        ..ServeConfig::default()
    };
    let server = Server::start(Arc::new(Slow(flat, delay)), config);
    let a = server.addr;
    let body = json!({ "vector": vec![0.1f32; DIM], "k": 2 }).to_string();
    // Three slow searches: one runs, two wait for the single permit.
    let t0 = Instant::now();
    let searches: Vec<_> = (0..3)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(async move { post(a, "/search", &body).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        let t = Instant::now();
        let (s, v) = call(a, "GET", "/health", None, "").await;
        assert_eq!((s, v), (200, json!({"status": "ok"})));
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "/health took {:?} behind slow searches",
            t.elapsed()
        );
    }
    for s in searches {
        let (status, v) = s.await.unwrap();
        assert_eq!(status, 200, "{v}");
    }
    // One permit: the three searches ran one after the other.
    assert!(t0.elapsed() >= delay * 3, "{:?}", t0.elapsed());
}

#[cfg(unix)]
#[tokio::test]
async fn cli_serves_and_stops_on_sigterm() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.vq");
    build("Flat", 300, 5, false).save(&path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vecquant"))
        .args(["serve", "--index"])
        .arg(&path)
        .args(["--addr", "127.0.0.1:0", "--threads", "1", "--max-k", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    assert!(line.contains("300 vectors"), "{line}");

    let (s, v) = call(addr, "GET", "/stats", None, "").await;
    assert_eq!(s, 200);
    assert_eq!(
        (v["kind"].as_str(), v["n"].as_u64()),
        (Some("flat"), Some(300))
    );
    let q = json!({ "vector": vec![0.0f32; DIM], "k": 5 }).to_string();
    let (s, v) = post(addr, "/search", &q).await;
    assert_eq!(s, 200, "{v}");
    let q = json!({ "vector": vec![0.0f32; DIM], "k": 6 }).to_string();
    assert_error(
        "--max-k",
        post(addr, "/search", &q).await,
        400,
        &["maximum of 5"],
    );

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("vecquant serve did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(status.success(), "exit {status:?}; stdout {rest}");
    assert!(rest.contains("stopped"), "{rest}");
}

#[tokio::test]
async fn load_test() {
    const REQUESTS: usize = 20_000;
    const CONCURRENCY: usize = 32;
    const N: usize = 10_000;
    const BUDGET: Duration = Duration::from_secs(120);

    let dir = tempfile::tempdir().unwrap();
    let index = saved("SQ8", N, 11, false, dir.path());
    let server = Server::start(Arc::clone(&index), ServeConfig::default());
    let a = server.addr;
    let q = queries(256, 12);
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        q.rows()
            .map(|v| serde_json::to_vec(&json!({ "vector": v, "k": 10 })).unwrap())
            .collect(),
    );
    // Spot check before timing: the first query's answer equals the library's.
    let mut c = Conn::connect(a).await.unwrap();
    let (s, body) = c.post_json("/search", &bodies[0]).await.unwrap();
    assert_eq!(s, 200);
    let got: SearchResponse = serde_json::from_slice(&body).unwrap();
    assert_same(
        "spot check",
        &got.neighbors,
        &index.search(q.row(0), &SearchParams::with_k(10)).unwrap(),
    );
    // Re-ranking needs raw vectors this index was built without: a 400 that says so.
    let (s, body) = c
        .post_json(
            "/search",
            &serde_json::to_vec(&json!({ "vector": q.row(0), "rerank": 5 })).unwrap(),
        )
        .await
        .unwrap();
    assert_error(
        "rerank",
        (s, serde_json::from_slice(&body).unwrap()),
        400,
        &["--keep-raw"],
    );
    drop(c);

    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let deadline = t0 + BUDGET;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (next, bodies) = (Arc::clone(&next), Arc::clone(&bodies));
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(REQUESTS / CONCURRENCY + 1);
            let mut errors: Vec<String> = Vec::new();
            let mut conn = Conn::connect(a).await.ok();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= REQUESTS || Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                let res = match conn.as_mut() {
                    Some(c) => c.post_json("/search", &bodies[i % bodies.len()]).await,
                    None => Err(io::Error::other("not connected")),
                };
                match res {
                    Ok((200, body)) if body.starts_with(br#"{"neighbors":[{"id":"#) => {
                        lat.push(t.elapsed())
                    }
                    Ok((s, body)) => {
                        errors.push(format!("{s}: {}", String::from_utf8_lossy(&body)))
                    }
                    Err(e) => {
                        errors.push(e.to_string());
                        conn = Conn::connect(a).await.ok();
                    }
                }
            }
            (lat, errors)
        });
    }
    let mut lat = Vec::with_capacity(REQUESTS);
    let mut errors = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (l, e) = r.unwrap();
        lat.extend(l);
        errors.extend(e);
    }
    let elapsed = t0.elapsed();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "load test: {} requests to /search ({} × {DIM} {}, k = 10), concurrency {CONCURRENCY}, \
         {:.2} s: {:.0} req/s, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors",
        lat.len(),
        N,
        index.spec(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(1.0),
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert_eq!(lat.len(), REQUESTS, "did not finish within {BUDGET:?}");
}

//! The HTTP service end to end on loopback: every kind of bad request gets its 4xx and a
//! JSON error, answers equal the library's, `/health` answers while searches wait for
//! the one search thread, stalled and idle clients are disconnected by the header, body
//! and idle timeouts while normal traffic flows, the connection bound holds, shutdown
//! returns at its deadline with stalled connections open and a search still running,
//! and the CLI resolves host names, refuses absurd thread counts and stops on SIGTERM.
//!
//! No test measures how fast anything is (throughput and latency are
//! `examples/serve_load.rs`): timeouts below are configuration under test, and
//! [`LIMIT`] only turns a hang into a failure.
//!
//! The client is a minimal HTTP/1.1 keep-alive client on `tokio::net::TcpStream`; each
//! server runs on its own runtime in its own thread, as a separate process would.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

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

/// How long a test waits for something that must happen before calling it a hang. Not
/// a performance bound: everything it guards takes milliseconds to a few seconds.
const LIMIT: Duration = Duration::from_secs(60);

/// A timeout that never fires during a test.
const NEVER: Duration = Duration::from_secs(3600);

/// Awaits `f`, failing the test if it has not finished within [`LIMIT`].
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("hang: {what} did not happen within {LIMIT:?}"),
    }
}

// ---------------------------------------------------------------- server and client

/// A server on 127.0.0.1:<free port>, on its own two-worker runtime. [`Server::shutdown`]
/// stops it and returns what `serve_with_shutdown` returned; dropping it does the same
/// and checks that it stopped without error.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::sync::oneshot::Receiver<vecquant::Result<()>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(index: Arc<dyn Index>, config: ServeConfig) -> Server {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let r = rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                serve_with_shutdown(listener, index, config, async {
                    let _ = stopped.await;
                })
                .await
            });
            let _ = done_tx.send(r);
            // A search the shutdown deadline cut off may still be blocked in a test
            // index: do not wait for it.
            rt.shutdown_background();
        });
        let addr = addr_rx.recv().expect("the server starts");
        Server {
            addr,
            stop: Some(stop),
            done: Some(done),
            thread: Some(thread),
        }
    }

    /// Triggers shutdown and waits for `serve_with_shutdown` to return.
    async fn shutdown(&mut self) -> vecquant::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let done = self.done.take().expect("shut down once");
        within("the server's return after shutdown", done)
            .await
            .expect("the server thread reports")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let done = self.done.take();
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.expect("server thread");
                if let Some(mut done) = done {
                    done.try_recv()
                        .expect("the server reports")
                        .expect("server stopped cleanly");
                }
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

// ---------------------------------------------------------------- raw sockets

/// Ways a client can stall.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stall {
    /// Sends half a request head, then nothing.
    Head,
    /// Sends a whole head announcing 100 bytes of body, then 16 of them.
    Body,
    /// Connects and sends nothing.
    Silent,
}

const STALLS: [Stall; 3] = [Stall::Head, Stall::Body, Stall::Silent];

async fn stalled(addr: SocketAddr, kind: Stall) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let bytes: &[u8] = match kind {
        Stall::Head => b"POST /search HTTP/1.1\r\nhost: localhost\r\ncontent-ty",
        Stall::Body => {
            b"POST /search HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"vector\": [0.1, "
        }
        Stall::Silent => b"",
    };
    s.write_all(bytes).await.unwrap();
    s
}

/// Reads until the server closes the connection (EOF or reset); returns what it sent.
async fn until_closed(what: &str, s: &mut TcpStream) -> Vec<u8> {
    within(&format!("the server closing {what}"), async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return got,
                Err(e) => panic!("{what}: {e}"),
            }
        }
    })
    .await
}

/// Whether the server has left `s` open, asked of the kernel directly (a non-blocking
/// `peek`), so the answer does not depend on when tokio's reactor last looked.
fn still_open(s: TcpStream) -> (bool, TcpStream) {
    let std = s.into_std().unwrap();
    let open = match std.peek(&mut [0u8; 1]) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
        Ok(0) => false,
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => false,
        other => panic!("unexpected peek result {other:?}"),
    };
    (open, TcpStream::from_std(std).unwrap())
}

/// The status and JSON body of one raw response.
fn parse_response(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let v = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    (status, v)
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

// ---------------------------------------------------------------- a search the test holds

/// What [`Gated`] searches are doing; the test releases them one ticket at a time.
#[derive(Default)]
struct GateState {
    tickets: usize,
    entered: usize,
    running: usize,
    max_running: usize,
    finished: usize,
}

#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
}

impl Gate {
    fn release(&self, n: usize) {
        let mut s = self.state.lock().unwrap();
        s.tickets = s.tickets.saturating_add(n);
        self.cv.notify_all();
    }

    fn snapshot(&self) -> (usize, usize, usize) {
        let s = self.state.lock().unwrap();
        (s.entered, s.max_running, s.finished)
    }

    /// Waits until `n` searches have entered the index.
    async fn entered(&self, n: usize) {
        within(&format!("search {n} starting"), async {
            while self.snapshot().0 < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }
}

/// A Flat index whose searches wait for a ticket from their [`Gate`].
struct Gated(Flat, Arc<Gate>);

impl Index for Gated {
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
        let gate = &self.1;
        let mut s = gate.state.lock().unwrap();
        s.entered += 1;
        s.running += 1;
        s.max_running = s.max_running.max(s.running);
        while s.tickets == 0 {
            s = gate.cv.wait(s).unwrap();
        }
        s.tickets -= 1;
        s.running -= 1;
        drop(s);
        let r = self.0.search(q, p);
        gate.state.lock().unwrap().finished += 1;
        r
    }
    fn to_container(&self) -> vecquant::Result<ContainerWriter<'_>> {
        self.0.to_container()
    }
}

fn gated(n: usize) -> (Arc<dyn Index>, Arc<Gate>) {
    let mut flat = Flat::new(DIM, Metric::L2);
    flat.add(queries(n, 3).as_slice(), None).unwrap();
    let gate = Arc::new(Gate::default());
    (Arc::new(Gated(flat, Arc::clone(&gate))), gate)
}

async fn health(addr: SocketAddr) {
    let (s, v) = call(addr, "GET", "/health", None, "").await;
    assert_eq!((s, v), (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn health_answers_while_searches_wait() {
    let (index, gate) = gated(100);
    let config = ServeConfig {
        threads: 1,
        ..ServeConfig::default()
    };
    let server = Server::start(index, config);
    let a = server.addr;
    let body = json!({ "vector": vec![0.1f32; DIM], "k": 2 }).to_string();
    // Three searches: one runs (and waits at the gate), two wait for the single permit.
    let searches: Vec<_> = (0..3)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(async move { post(a, "/search", &body).await })
        })
        .collect();
    for i in 1..=3 {
        gate.entered(i).await;
        // Search `i` is held at the gate and the others queue behind the permit, yet
        // /health answers.
        health(a).await;
        assert_eq!(gate.snapshot().2, i - 1, "search {i} was released early");
        gate.release(1);
    }
    for s in searches {
        let (status, v) = within("a released search", s).await.unwrap();
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["neighbors"].as_array().map(Vec::len), Some(2), "{v}");
    }
    // One permit: never two searches inside the index at once.
    assert_eq!(gate.snapshot(), (3, 1, 3));
}

/// The acceptance test of the slow-client limits: 64 stalled connections (half heads,
/// half bodies, silence) while normal clients search; every normal request succeeds,
/// every stalled connection is closed by its timeout, half bodies with a 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_cut_off_while_normal_traffic_flows() {
    let index: Arc<dyn Index> = Arc::from(build("Flat", 1000, 21, false));
    let config = ServeConfig {
        header_read_timeout: Duration::from_secs(2),
        body_read_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        ..ServeConfig::default()
    };
    let server = Server::start(Arc::clone(&index), config);
    let a = server.addr;
    let mut stalls = Vec::new();
    for i in 0..64 {
        let kind = STALLS[i % STALLS.len()];
        stalls.push((kind, stalled(a, kind).await));
    }

    // Normal traffic: 8 clients × 16 searches, each on a fresh connection; answers
    // equal the library's.
    let q = Arc::new(queries(128, 22));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..8 {
        let (index, q) = (Arc::clone(&index), Arc::clone(&q));
        clients.spawn(async move {
            for i in c * 16..(c + 1) * 16 {
                let body = json!({ "vector": q.row(i), "k": 5 }).to_string();
                let (s, v) = post(a, "/search", &body).await;
                assert_eq!(s, 200, "query {i}: {v}");
                let got: SearchResponse = serde_json::from_value(v).unwrap();
                let want = index.search(q.row(i), &SearchParams::with_k(5)).unwrap();
                assert_same(&format!("query {i}"), &got.neighbors, &want);
            }
        });
    }
    while let Some(r) = within("normal traffic", clients.join_next()).await {
        r.unwrap();
    }

    for (i, (kind, s)) in stalls.iter_mut().enumerate() {
        let got = until_closed(&format!("stalled connection {i} ({kind:?})"), s).await;
        if *kind == Stall::Body {
            assert_error(
                &format!("stalled body {i}"),
                parse_response(&got),
                408,
                &["body", "2 s"],
            );
        } else {
            // No request to answer: the connection just closes.
            assert!(
                got.is_empty(),
                "{kind:?} {i}: {:?}",
                String::from_utf8_lossy(&got)
            );
        }
    }
    // The server is still serving.
    health(a).await;
}

#[tokio::test]
async fn the_header_timeout_runs_from_the_first_byte_and_spares_idle_connections() {
    let config = ServeConfig {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: NEVER,
        ..ServeConfig::default()
    };
    let server = Server::start(Arc::from(build("Flat", 100, 1, false)), config);
    let a = server.addr;
    let idle = stalled(a, Stall::Silent).await;
    let mut half = stalled(a, Stall::Head).await;
    // A slowloris: one byte of a head every 50 ms, which must not reset the timer.
    let mut trickle = TcpStream::connect(a).await.unwrap();
    let trickler = tokio::spawn(async move {
        let head = b"GET /health HTTP/1.1\r\nhost: localhost\r\n";
        let mut sent = 0usize;
        loop {
            let byte = if sent < head.len() { head[sent] } else { b'x' };
            if trickle.write_all(&[byte]).await.is_err() {
                return sent;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(until_closed("a half head", &mut half).await.is_empty());
    let sent = within("the trickling client being cut off", trickler)
        .await
        .unwrap();
    assert!(sent > 0);
    // The silent connection sent no head, so no header timer ran: still open, and it
    // can still make a request.
    let (open, idle) = still_open(idle);
    assert!(open, "the header timeout closed an idle connection");
    let mut c = Conn {
        r: BufReader::new(idle),
    };
    let (s, body) = c.request("GET", "/health", &[], b"").await.unwrap();
    assert_eq!((s, body.as_slice()), (200, &br#"{"status":"ok"}"#[..]));
}

#[tokio::test]
async fn the_idle_timeout_closes_quiet_keep_alive_connections_only() {
    let config = ServeConfig {
        header_read_timeout: NEVER,
        idle_timeout: Duration::from_secs(1),
        ..ServeConfig::default()
    };
    let server = Server::start(Arc::from(build("Flat", 100, 1, false)), config);
    let a = server.addr;
    let half = stalled(a, Stall::Head).await;
    // A keep-alive client that makes one request and goes quiet.
    let mut quiet = Conn::connect(a).await.unwrap();
    let (s, _) = quiet.request("GET", "/health", &[], b"").await.unwrap();
    assert_eq!(s, 200);
    let mut quiet = quiet.r.into_inner();
    assert!(
        until_closed("a quiet keep-alive connection", &mut quiet)
            .await
            .is_empty()
    );
    // The half head is in the header phase, which the idle timer does not govern: still
    // open, and finishing the request gets an answer.
    let (open, half) = still_open(half);
    assert!(open, "the idle timeout closed a connection sending a head");
    let mut c = Conn {
        r: BufReader::new(half),
    };
    let body = json!({ "vector": vec![0.0f32; DIM], "k": 1 }).to_string();
    let rest = format!(
        "pe: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    c.send_raw(rest.as_bytes()).await.unwrap();
    let (s, body) = c.read_response().await.unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn the_connection_bound_holds_new_clients_until_one_closes() {
    let config = ServeConfig {
        max_connections: 2,
        header_read_timeout: NEVER,
        idle_timeout: Duration::from_secs(1),
        ..ServeConfig::default()
    };
    let server = Server::start(Arc::from(build("Flat", 100, 1, false)), config);
    let a = server.addr;
    // Two keep-alive clients take both slots (a response proves a slot).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = Conn::connect(a).await.unwrap();
        let (s, _) = c.request("GET", "/health", &[], b"").await.unwrap();
        assert_eq!(s, 200);
        held.push(c.r.into_inner());
    }
    // A third client is answered only once the idle timeout has closed one of them.
    let mut third = Conn::connect(a).await.unwrap();
    let (s, _) = within(
        "the third client's answer",
        third.request("GET", "/health", &[], b""),
    )
    .await
    .unwrap();
    assert_eq!(s, 200);
    let closed = held
        .into_iter()
        .map(|s| !still_open(s).0)
        .filter(|&c| c)
        .count();
    assert!(
        closed >= 1,
        "the third connection was served while both slots were held"
    );
}

/// Shutdown with 64 stalled connections open and a search that never finishes: the
/// server returns (at the shutdown deadline) while the search is still held, and every
/// connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_meets_its_deadline_with_stalled_clients_and_a_stuck_search() {
    let (index, gate) = gated(100);
    let config = ServeConfig {
        threads: 1,
        header_read_timeout: NEVER,
        body_read_timeout: NEVER,
        idle_timeout: NEVER,
        shutdown_timeout: Duration::from_secs(1),
        ..ServeConfig::default()
    };
    let mut server = Server::start(index, config);
    let a = server.addr;
    let mut stalls = Vec::new();
    for i in 0..64 {
        let kind = STALLS[i % STALLS.len()];
        stalls.push((kind, stalled(a, kind).await));
    }
    let body = json!({ "vector": vec![0.1f32; DIM], "k": 2 }).to_string();
    let search = tokio::spawn(async move {
        let mut c = Conn::connect(a).await.unwrap();
        c.post_json("/search", body.as_bytes()).await
    });
    gate.entered(1).await;
    // Every stalled connection has been accepted (the server answers a request made
    // after them), so shutdown has them all to deal with.
    health(a).await;

    server.shutdown().await.unwrap();
    assert_eq!(
        gate.snapshot().2,
        0,
        "the server waited for the search instead of its deadline"
    );
    let r = within("the cut-off search's client", search).await.unwrap();
    assert!(r.is_err(), "a search cut off by shutdown answered: {r:?}");
    for (i, (kind, s)) in stalls.iter_mut().enumerate() {
        let got = until_closed(&format!("stalled connection {i} ({kind:?})"), s).await;
        assert!(
            got.is_empty(),
            "{kind:?} {i}: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    gate.release(usize::MAX);
}

#[tokio::test]
async fn addresses_are_host_names_or_ips() {
    for addr in ["localhost:0", "127.0.0.1:0"] {
        let l = vecquant::serve::bind(addr).await.unwrap();
        assert!(l.local_addr().unwrap().ip().is_loopback(), "{addr}");
    }
    for (addr, needle) in [
        ("localhost", "`localhost`"),
        ("no-such-host.invalid:8080", "`no-such-host.invalid:8080`"),
        ("127.0.0.1:99999", "`127.0.0.1:99999`"),
    ] {
        let e = within(addr, vecquant::serve::bind(addr))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle) && e.contains("HOST:PORT"), "{addr}: {e}");
    }
    // Taken: the error names the address.
    let l = vecquant::serve::bind("127.0.0.1:0").await.unwrap();
    let taken = l.local_addr().unwrap().to_string();
    let e = vecquant::serve::bind(&taken).await.unwrap_err().to_string();
    assert!(e.contains(&taken), "{e}");
}

#[test]
fn invalid_configs_are_refused_before_serving() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (config, needle) in [
        (
            ServeConfig {
                threads: 3000,
                ..ServeConfig::default()
            },
            "--threads",
        ),
        (
            ServeConfig {
                max_connections: 0,
                ..ServeConfig::default()
            },
            "max_connections",
        ),
        (
            ServeConfig {
                shutdown_timeout: Duration::ZERO,
                ..ServeConfig::default()
            },
            "shutdown_timeout",
        ),
    ] {
        let e = rt
            .block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                // A shutdown that never comes: only the refusal can end this.
                let index: Arc<dyn Index> = Arc::new(Flat::new(2, Metric::L2));
                within(
                    needle,
                    serve_with_shutdown(listener, index, config, std::future::pending()),
                )
                .await
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{e}");
    }
}

/// Runs the `vecquant` binary with `args`; fails the test if it runs past [`LIMIT`].
#[cfg(unix)]
fn vecquant_fails(args: &[&str]) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_vecquant"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("hang: vecquant {args:?} still running after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "vecquant {args:?} succeeded");
    err
}

#[cfg(unix)]
#[test]
fn cli_refuses_absurd_thread_counts_and_unresolvable_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.vq");
    build("Flat", 50, 5, false).save(&path).unwrap();
    let index = path.to_str().unwrap();
    for (threads, needle) in [("0", "at least 1"), ("3000", "3000 threads")] {
        let err = vecquant_fails(&["serve", "--index", index, "--threads", threads]);
        assert!(err.contains("--threads") && err.contains(needle), "{err}");
    }
    let err = vecquant_fails(&["serve", "--index", index, "--addr", "localhost"]);
    assert!(err.contains("`localhost`"), "{err}");
    let err = vecquant_fails(&["serve", "--index", index, "--shutdown-timeout", "0"]);
    assert!(err.contains("--shutdown-timeout"), "{err}");
}

/// `vecquant serve --addr localhost:0` serves; SIGTERM with a stalled client connected
/// stops it (the stalled connection is closed, not waited for).
#[cfg(unix)]
#[tokio::test]
async fn cli_serves_on_a_host_name_and_stops_on_sigterm() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.vq");
    build("Flat", 300, 5, false).save(&path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vecquant"))
        .args(["serve", "--index"])
        .arg(&path)
        .args(["--addr", "localhost:0", "--threads", "1", "--max-k", "5"])
        .args(["--shutdown-timeout", "2"])
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
    assert!(addr.ip().is_loopback(), "{line}");
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
    let mut half = stalled(addr, Stall::Head).await;
    health(addr).await;

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("hang: vecquant serve still running {LIMIT:?} after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(status.success(), "exit {status:?}; stdout {rest}");
    assert!(rest.contains("stopped"), "{rest}");
    assert!(
        until_closed("the stalled client", &mut half)
            .await
            .is_empty()
    );
}

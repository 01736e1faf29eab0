//! Shared by `tests/serve.rs` and `tests/serve_limits.rs`: a server on its own runtime, a
//! minimal keep-alive HTTP/1.1 client, raw stalling sockets, indexes and a search the test
//! holds at a gate. Each test crate uses part of it.
#![allow(dead_code, unused_imports)]

pub use std::io;
pub use std::net::SocketAddr;
pub use std::sync::{Arc, Condvar, Mutex};
pub use std::time::Duration;

pub use serde_json::{Value, json};
pub use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
pub use tokio::net::{TcpListener, TcpStream};

pub use vecquant::data::generate::gaussian;
pub use vecquant::index::spec::{BuildOptions, new_index};
pub use vecquant::serve::{
    BatchRequest, BatchResponse, SearchRequest, SearchResponse, ServeConfig, Stats, VectorResponse,
    serve_with_shutdown,
};
pub use vecquant::store::ContainerWriter;
pub use vecquant::{Flat, Index, Metric, Neighbor, SearchParams, VectorSet};

pub const DIM: usize = 32;

/// How long a test waits for something that must happen before calling it a hang. Not
/// a performance bound: everything it guards takes milliseconds to a few seconds.
pub const LIMIT: Duration = Duration::from_secs(60);

/// A timeout that never fires during a test.
pub const NEVER: Duration = Duration::from_secs(3600);

/// Awaits `f`, failing the test if it has not finished within [`LIMIT`].
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("hang: {what} did not happen within {LIMIT:?}"),
    }
}

// ---------------------------------------------------------------- server and client

/// A server on 127.0.0.1:<free port>, on its own two-worker runtime. [`Server::shutdown`]
/// stops it and returns what `serve_with_shutdown` returned; dropping it does the same
/// and checks that it stopped without error.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::sync::oneshot::Receiver<vecquant::Result<()>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(index: Arc<dyn Index>, config: ServeConfig) -> Server {
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
    pub async fn shutdown(&mut self) -> vecquant::Result<()> {
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
pub struct Conn {
    pub r: BufReader<TcpStream>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::new(s),
        })
    }

    /// Sends one request with a `content-length` and the given extra headers.
    pub async fn request(
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

    pub async fn post_json(&mut self, path: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        self.request("POST", path, &[("content-type", "application/json")], body)
            .await
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let s = self.r.get_mut();
        s.write_all(bytes).await?;
        s.flush().await
    }

    /// Reads one final response (skipping 1xx), by `content-length` or to EOF.
    pub async fn read_response(&mut self) -> io::Result<(u16, Vec<u8>)> {
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
pub async fn call(
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

pub async fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    call(addr, "POST", path, Some("application/json"), body).await
}

/// Asserts a status and a JSON `{"error": ...}` naming every one of `needles`.
pub fn assert_error(what: &str, got: (u16, Value), status: u16, needles: &[&str]) {
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
pub enum Stall {
    /// Sends half a request head, then nothing.
    Head,
    /// Sends a whole head announcing 100 bytes of body, then 16 of them.
    Body,
    /// Connects and sends nothing.
    Silent,
}

pub const STALLS: [Stall; 3] = [Stall::Head, Stall::Body, Stall::Silent];

pub async fn stalled(addr: SocketAddr, kind: Stall) -> TcpStream {
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
pub async fn until_closed(what: &str, s: &mut TcpStream) -> Vec<u8> {
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
pub fn still_open(s: TcpStream) -> (bool, TcpStream) {
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
pub fn parse_response(raw: &[u8]) -> (u16, Value) {
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

pub fn build(spec: &str, n: usize, seed: u64, keep_raw: bool) -> Box<dyn Index> {
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
pub fn saved(
    spec: &str,
    n: usize,
    seed: u64,
    keep_raw: bool,
    dir: &std::path::Path,
) -> Arc<dyn Index> {
    let path = dir.join(format!("{}.vq", spec.replace(',', "_")));
    build(spec, n, seed, keep_raw).save(&path).unwrap();
    Arc::from(vecquant::index::open(&path).unwrap())
}

pub fn queries(n: usize, seed: u64) -> VectorSet {
    gaussian(n, DIM, 0.0, 1.0, seed).unwrap()
}

pub fn assert_same(what: &str, got: &[Neighbor], want: &[Neighbor]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.id, w.id, "{what}: ids {got:?} vs {want:?}");
        assert!(
            (g.distance - w.distance).abs() <= 1e-6 * w.distance.abs().max(1.0),
            "{what}: distances {got:?} vs {want:?}"
        );
    }
}

// ---------------------------------------------------------------- a search the test holds

/// What [`Gated`] searches are doing; the test releases them one ticket at a time.
#[derive(Default)]
pub struct GateState {
    tickets: usize,
    entered: usize,
    running: usize,
    max_running: usize,
    finished: usize,
}

#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
}

impl Gate {
    pub fn release(&self, n: usize) {
        let mut s = self.state.lock().unwrap();
        s.tickets = s.tickets.saturating_add(n);
        self.cv.notify_all();
    }

    pub fn snapshot(&self) -> (usize, usize, usize) {
        let s = self.state.lock().unwrap();
        (s.entered, s.max_running, s.finished)
    }

    /// Waits until `n` searches have entered the index.
    pub async fn entered(&self, n: usize) {
        within(&format!("search {n} starting"), async {
            while self.snapshot().0 < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }
}

/// A Flat index whose searches wait for a ticket from their [`Gate`].
pub struct Gated(Flat, Arc<Gate>);

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
    fn next_id(&self) -> Option<u64> {
        self.0.next_id()
    }
    fn check_ids(&self, ids: &[u64]) -> vecquant::Result<()> {
        self.0.check_ids(ids)
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

pub fn gated(n: usize) -> (Arc<dyn Index>, Arc<Gate>) {
    let mut flat = Flat::new(DIM, Metric::L2);
    flat.add(queries(n, 3).as_slice(), None).unwrap();
    let gate = Arc::new(Gate::default());
    (Arc::new(Gated(flat, Arc::clone(&gate))), gate)
}

pub async fn health(addr: SocketAddr) {
    let (s, v) = call(addr, "GET", "/health", None, "").await;
    assert_eq!((s, v), (200, json!({"status": "ok"})));
}

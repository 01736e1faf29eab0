//! Load test of the HTTP service: requests per second and latency percentiles of
//! `POST /search` over loopback keep-alive connections.
//!
//! `cargo run --release --features examples --example serve_load` builds a 10,000 × 32 SQ8 index, saves and
//! memory-maps it as `vecquant serve` would, serves it on a free port from its own
//! two-worker runtime, checks one answer against the library, then sends 20,000
//! searches (k = 10) from 32 concurrent keep-alive clients and prints throughput and
//! latency (p50, p90, p99, max) and the number of errors (it exits with status 1 if
//! there were any).
//!
//! Options: `--requests N`, `--concurrency C`, `--n N` (index size), `--spec SPEC`
//! (default `SQ8`), and `--addr HOST:PORT` to load an already running server instead
//! (such as `vecquant serve`; queries are random vectors of the dimension `/stats`
//! reports).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use vecquant::data::generate::gaussian;
use vecquant::index::spec::{BuildOptions, new_index};
use vecquant::prelude::*;
use vecquant::serve::{self, SearchResponse, ServeConfig, Stats};

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

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> io::Result<(u16, Vec<u8>)> {
        let mut msg = format!(
            "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        msg.extend_from_slice(body);
        self.r.get_mut().write_all(&msg).await?;
        let mut line = String::new();
        if self.r.read_line(&mut line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, line.clone()))?;
        let mut len = 0;
        loop {
            line.clear();
            if self.r.read_line(&mut line).await? == 0 || line.trim_end().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.trim().eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::param(name, "missing or unparsable value")),
    }
}

/// Serves `index` on a free loopback port from its own runtime, as a separate process
/// would; returns the address and the handle that stops it.
fn start_server(index: Arc<dyn Index>) -> Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = addr_tx.send(Err(Error::io("runtime", e)));
                return;
            }
        };
        let r = rt.block_on(async move {
            let listener = serve::bind("127.0.0.1:0").await?;
            let addr = listener
                .local_addr()
                .map_err(|e| Error::io("listener", e))?;
            let _ = addr_tx.send(Ok(addr));
            let shutdown = async {
                let _ = stopped.await;
            };
            serve::serve_with_shutdown(listener, index, ServeConfig::default(), shutdown).await
        });
        if let Err(e) = r {
            eprintln!("server: {e}");
        }
    });
    let addr = addr_rx
        .recv()
        .map_err(|e| Error::param("server", e.to_string()))??;
    Ok((addr, stop))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let requests: usize = flag(&args, "--requests", 20_000)?;
    let concurrency: usize = flag(&args, "--concurrency", 32)?.max(1);
    let n: usize = flag(&args, "--n", 10_000)?;
    let spec: String = flag(&args, "--spec", "SQ8".to_string())?;
    let external: Option<String> = match args.iter().position(|a| a == "--addr") {
        None => None,
        Some(i) => Some(
            args.get(i + 1)
                .cloned()
                .ok_or_else(|| Error::param("--addr", "missing HOST:PORT"))?,
        ),
    };

    let dir = tempfile::tempdir().map_err(|e| Error::io("temporary directory", e))?;
    let (addr, stop, what, queries) = match &external {
        Some(a) => {
            let addr = tokio::net::lookup_host(a.as_str())
                .await
                .map_err(|e| Error::io(a.as_str(), e))?
                .next()
                .ok_or_else(|| Error::param("--addr", format!("`{a}` resolves to nothing")))?;
            let mut c = Conn::connect(addr)
                .await
                .map_err(|e| Error::io(a.as_str(), e))?;
            let (_, body) = c
                .request("GET", "/stats", b"")
                .await
                .map_err(|e| Error::io(a.as_str(), e))?;
            let stats: Stats =
                serde_json::from_slice(&body).map_err(|e| Error::param("/stats", e.to_string()))?;
            let what = format!("{} × {} {} at {a}", stats.n, stats.dim, stats.spec);
            (addr, None, what, gaussian(256, stats.dim, 0.0, 1.0, 12)?)
        }
        None => {
            const DIM: usize = 32;
            let base = gaussian(n, DIM, 0.0, 1.0, 11)?;
            let mut built = new_index(&spec, DIM, &BuildOptions::default())?;
            built.train(base.as_slice())?;
            built.add(base.as_slice(), None)?;
            let path = dir.path().join("load.vq");
            built.save(&path)?;
            let index: Arc<dyn Index> = Arc::from(vecquant::index::open(&path)?);
            let q = gaussian(256, DIM, 0.0, 1.0, 12)?;
            let (addr, stop) = start_server(Arc::clone(&index))?;
            // Before timing: the first query's answer equals the library's.
            let mut c = Conn::connect(addr)
                .await
                .map_err(|e| Error::io("server", e))?;
            let body = serde_json::to_vec(&json!({ "vector": q.row(0), "k": 10 }))
                .map_err(|e| Error::param("query", e.to_string()))?;
            let (status, body) = c
                .request("POST", "/search", &body)
                .await
                .map_err(|e| Error::io("server", e))?;
            let got: SearchResponse = serde_json::from_slice(&body)
                .map_err(|e| Error::param("response", format!("{status}: {e}")))?;
            let want = index.search(q.row(0), &SearchParams::with_k(10))?;
            let same = got
                .neighbors
                .iter()
                .map(|x| x.id)
                .eq(want.iter().map(|x| x.id));
            if !same {
                return Err(Error::param(
                    "spot check",
                    format!("server {:?} vs library {want:?}", got.neighbors),
                ));
            }
            (addr, Some(stop), format!("{n} × {DIM} {}", index.spec()), q)
        }
    };

    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        queries
            .rows()
            .map(|v| serde_json::to_vec(&json!({ "vector": v, "k": 10 })).unwrap_or_default())
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (next, bodies) = (Arc::clone(&next), Arc::clone(&bodies));
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(requests / concurrency + 1);
            let mut errors: Vec<String> = Vec::new();
            let mut conn = Conn::connect(addr).await.ok();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let t = Instant::now();
                let res = match conn.as_mut() {
                    Some(c) => {
                        c.request("POST", "/search", &bodies[i % bodies.len()])
                            .await
                    }
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
                        conn = Conn::connect(addr).await.ok();
                    }
                }
            }
            (lat, errors)
        });
    }
    let mut lat: Vec<Duration> = Vec::with_capacity(requests);
    let mut errors = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (l, e) = r.map_err(|e| Error::param("client", e.to_string()))?;
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
        "{} requests to /search ({what}, k = 10), concurrency {concurrency}, {:.2} s: \
         {:.0} req/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors",
        lat.len(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
        errors.len()
    );
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
    if let Some(first) = errors.first() {
        eprintln!("first error: {first}");
        std::process::exit(1);
    }
    Ok(())
}

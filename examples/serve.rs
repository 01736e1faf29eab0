//! Embed vecquant's HTTP search routes in your own axum application.
//!
//! Run: `cargo run --features examples --example serve -- --demo` builds a small index, serves it with an
//! extra route on a free port, sends it two requests and stops.
//!
//! `cargo run --release --features examples --example serve -- --index sq8.vq --addr localhost:8080` serves a
//! saved index until Ctrl-C, with the service's connection limits (slow clients are
//! timed out, shutdown has a deadline); then try
//! `curl -s localhost:8080/stats` or `curl -s localhost:8080/version`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use vecquant::data::generate::gaussian;
use vecquant::prelude::*;
use vecquant::serve::{self, ServeConfig};

/// Limits of our service: smaller `k`, a shorter shutdown deadline.
fn config() -> ServeConfig {
    ServeConfig {
        max_k: 100,
        shutdown_timeout: Duration::from_secs(5),
        ..ServeConfig::default()
    }
}

/// The application: vecquant's routes plus one of our own.
fn app(index: Arc<dyn Index>) -> Router {
    Router::new()
        .route("/version", get(|| async { env!("CARGO_PKG_VERSION") }))
        .merge(serve::router(index, config()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.iter().any(|a| a == "--demo") {
        return demo().await;
    }
    let Some(path) = flag("--index") else {
        eprintln!("usage: serve --demo | serve --index INDEX.vq [--addr 127.0.0.1:8080]");
        std::process::exit(2);
    };
    let addr = flag("--addr").unwrap_or_else(|| "127.0.0.1:8080".into());
    let index: Arc<dyn Index> = Arc::from(vecquant::index::open(&path)?);
    // `bind` resolves host names (`localhost:8080`) as well as IP addresses.
    let listener = serve::bind(&addr).await?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io(addr.as_str(), e))?;
    println!(
        "serving {} on http://{local} (Ctrl-C to stop)",
        index.spec()
    );
    serve::serve_app(listener, app(index), &config(), serve::shutdown_signal()).await
}

async fn demo() -> Result<()> {
    let base = gaussian(2_000, 16, 0.0, 1.0, 1)?;
    let mut flat = Flat::new(16, Metric::L2);
    flat.add(base.as_slice(), None)?;
    let index: Arc<dyn Index> = Arc::new(flat);
    let index_for_server = Arc::clone(&index);

    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::io("127.0.0.1:0", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("listener", e))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        serve::serve_app(listener, app(index_for_server), &config(), shutdown).await
    });
    println!("serving {} vectors on http://{addr}", index.len());

    let body = serde_json::json!({ "vector": base.row(7), "k": 3 }).to_string();
    let (status, answer) = http(addr, "POST", "/search", &body).await?;
    println!("POST /search → {status} {answer}");
    let hits: serve::SearchResponse =
        serde_json::from_str(&answer).map_err(|e| Error::param("response", e.to_string()))?;
    assert_eq!(
        hits.neighbors[0].id, 7,
        "a stored vector is its own nearest neighbour"
    );

    let (status, answer) = http(addr, "GET", "/version", "").await?;
    println!("GET /version → {status} {answer}");

    let _ = stop.send(());
    server
        .await
        .map_err(|e| Error::param("server", e.to_string()))??;
    println!("stopped");
    Ok(())
}

/// A one-shot HTTP/1.1 request (`connection: close`); returns the status and the body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let io = |e| Error::io(addr.to_string(), e);
    let mut s = TcpStream::connect(addr).await.map_err(io)?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.map_err(io)?;
    let mut response = String::new();
    s.read_to_string(&mut response).await.map_err(io)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

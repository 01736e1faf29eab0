//! The service's limits on loopback: `/health` answers while searches wait for the one
//! search thread, stalled and idle clients are disconnected by the header, body and idle
//! timeouts while normal traffic flows, the connection bound holds, shutdown returns at
//! its deadline with stalled connections open and a search still running, and the CLI
//! resolves host names, refuses absurd thread counts and stops on SIGTERM.
//!
//! No test measures how fast anything is (throughput and latency are
//! `examples/serve_load.rs`): timeouts are configuration under test, and `LIMIT` only
//! turns a hang into a failure.

use crate::serve_util;
use serve_util::*;

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
// Issue 17, item 7.
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

// Issue 17, item 7.
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

// Issue 17, item 7.
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

// Issue 17, item 7.
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
// Issue 17, item 7.
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

// Issue 17, item 8.
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

// Issue 17, item 8.
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
// Issue 17, items 7 and 8.
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

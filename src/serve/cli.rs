//! `vecquant serve`: its options and the function that runs it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{ServeConfig, bind, serve_with_shutdown, shutdown_signal};
use crate::error::{Error, Result};
use crate::index::Index;

/// Options of the `vecquant serve` command.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// Index file to serve (any kind `vecquant build` writes).
    #[arg(long)]
    pub index: PathBuf,
    /// Address to listen on, HOST:PORT: a host name (localhost:8080) or an IP address
    /// (`[::1]:8080`, 0.0.0.0:8080); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Largest k a request may ask for.
    #[arg(long, default_value_t = 1024)]
    pub max_k: usize,
    /// Most vectors in one /search_batch request.
    #[arg(long, default_value_t = 1024)]
    pub max_batch: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body: usize,
    /// Searches running at once, and threads of a batch search (default: all cores;
    /// at most 4 per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Connections served at once; more wait until one closes.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a client has to send a request head, from its first byte.
    #[arg(long, default_value_t = 10.0)]
    pub header_timeout: f64,
    /// Seconds a client has to send a request body.
    #[arg(long, default_value_t = 30.0)]
    pub body_timeout: f64,
    /// Seconds a keep-alive connection may sit idle between requests.
    #[arg(long, default_value_t = 60.0)]
    pub idle_timeout: f64,
    /// Seconds requests in flight get to finish after Ctrl-C or SIGTERM.
    #[arg(long, default_value_t = 10.0)]
    pub shutdown_timeout: f64,
}

/// A timeout flag in seconds: positive and finite (at most a year).
fn seconds(flag: &str, s: f64) -> Result<Duration> {
    const YEAR: f64 = 365.0 * 24.0 * 3600.0;
    if s.is_finite() && s > 0.0 && s <= YEAR {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(Error::param(
            flag,
            format!("{s} is not a timeout: give a number of seconds above 0"),
        ))
    }
}

impl ServeArgs {
    /// The service configuration these options describe, checked.
    ///
    /// ```
    /// use clap::Parser;
    /// #[derive(Parser)]
    /// struct Cli {
    ///     #[command(flatten)]
    ///     serve: vecquant::serve::ServeArgs,
    /// }
    /// let cli = Cli::parse_from(["x", "--index", "a.vq", "--idle-timeout", "5"]);
    /// let config = cli.serve.config().unwrap();
    /// assert_eq!(config.idle_timeout, std::time::Duration::from_secs(5));
    /// let cli = Cli::parse_from(["x", "--index", "a.vq", "--threads", "3000"]);
    /// assert!(cli.serve.config().unwrap_err().to_string().contains("--threads"));
    /// ```
    pub fn config(&self) -> Result<ServeConfig> {
        if let Some(n) = self.threads {
            crate::threads::check_threads(n)?;
        }
        for (flag, value) in [
            ("--max-k", self.max_k),
            ("--max-batch", self.max_batch),
            ("--max-body", self.max_body),
            ("--max-connections", self.max_connections),
        ] {
            if value == 0 {
                return Err(Error::param(flag, "must be at least 1"));
            }
        }
        let config = ServeConfig {
            max_k: self.max_k,
            max_batch: self.max_batch,
            max_body_bytes: self.max_body,
            threads: self.threads.unwrap_or(0),
            max_connections: self.max_connections,
            header_read_timeout: seconds("--header-timeout", self.header_timeout)?,
            body_read_timeout: seconds("--body-timeout", self.body_timeout)?,
            idle_timeout: seconds("--idle-timeout", self.idle_timeout)?,
            shutdown_timeout: seconds("--shutdown-timeout", self.shutdown_timeout)?,
            ..ServeConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

/// Runs `vecquant serve`: checks the options, opens the index, starts a tokio runtime,
/// binds the address (host names resolve), prints it and serves until Ctrl-C or
/// SIGTERM; returns within `--shutdown-timeout` of the signal.
pub fn run_cli(args: &ServeArgs) -> Result<()> {
    let config = args.config()?;
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
    let result = runtime.block_on(async move {
        let listener = bind(&args.addr).await?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io(&args.addr, e))?;
        announce(format_args!(
            "serving {} ({} vectors, dim {}, {}) from {} on http://{local} with {threads} search thread(s)",
            index.spec(),
            index.len(),
            index.dim(),
            index.metric(),
            args.index.display()
        ));
        announce(format_args!("routes: POST /search, POST /search_batch, GET /vectors/{{id}}, GET /stats, GET /health; Ctrl-C to stop"));
        serve_with_shutdown(listener, index, config, shutdown_signal()).await
    });
    // A search cut off by the shutdown deadline may still be running on the blocking
    // pool; dropping the runtime would wait for it, so leave it behind.
    runtime.shutdown_background();
    result?;
    announce(format_args!("stopped"));
    Ok(())
}

/// A line of the service's log on standard output. A failed write is ignored: the
/// service keeps serving when whoever read its first line (`vecquant serve … | head -1`,
/// to learn the port) has gone; `println!` would panic and take it down.
fn announce(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

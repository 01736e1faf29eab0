//! Every integration test, in one test binary.
//!
//! One binary instead of one per file: the release profile links with fat LTO, and a
//! link per test file cost CI minutes each. Each module is the test file it was (its
//! doc comment says what it covers); the shared helpers live in `common/`. Modules that
//! run the `vecquant` binary need the `cli` feature, those that start the HTTP service
//! need `server`.

#[cfg(feature = "cli")]
#[path = "common/cli_util.rs"]
mod cli_util;
#[path = "common/golden_io.rs"]
mod golden_io;
#[cfg(feature = "server")]
#[path = "common/serve_util.rs"]
mod serve_util;

#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod cli_bench;
#[cfg(feature = "cli")]
mod cli_files;
#[cfg(feature = "cli")]
mod cli_model;
#[cfg(feature = "cli")]
mod cli_stream;
#[cfg(feature = "cli")]
mod cli_words;
mod database;
mod fixtures_v1;
mod gguf_golden;
mod golden;
mod import_hnsw_rs;
#[cfg(all(feature = "cli", feature = "server"))]
mod no_surprises_cli;
mod no_surprises_index;
mod rabitq;
mod rabitq_fast;
mod rabitq_rerank;
mod reconstruct;
#[cfg(feature = "server")]
mod serve;
#[cfg(all(feature = "cli", feature = "server"))]
mod serve_limits;
mod store;
mod toy_codec;
#[cfg(feature = "cli")]
mod weights;

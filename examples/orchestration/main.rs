//! The main example: the whole orchestration loop of orch in one process,
//! over real loopback sockets, under seeded chaos, with its invariants
//! checked at the end.
//!
//! ```text
//!  load generator (v1 and v2 clients)
//!    │ version → retry + budget → breaker → Idempotency-Key → P2C peak-EWMA
//!    ▼
//!  orders ×N (axum)  ── VersioningLayer, ChainLayer, IdempotencyLayer
//!    │ queue (WorkQueue) ◀── Autoscaler (backlog policy) scales orders
//!    │ workers: idempotency-key → retry + budget → breaker → P2C
//!    ▼
//!  payments ×M (tonic) ── GrpcIdempotencyLayer, ledger
//!
//!  Supervisor: probes, restarts, scaling, drain; its events feed the
//!  registries the balancers follow. Chaos: crashes, a slow replica,
//!  injected errors, a stalled probe.
//! ```
//!
//! Run it with `cargo run --example orchestration`; it ends by itself after
//! about 20 s with a report, and exits non-zero if an invariant failed: an
//! order charged twice, an accepted order never answered (or answered
//! with another charge than the ledger's), a crashed replica not back.
//!
//! Flags: `--duration 20s`, `--replicas 2`, `--chaos off|low|high`,
//! `--seed 1`, `--serve` (keep serving after the load until Ctrl-C or
//! SIGTERM), `--json` (log JSON lines). Every setting is also read from
//! the environment with the prefix `ORCH_DEMO` (`config.rs`), flags
//! winning. Ctrl-C and SIGTERM stop the load, shut the tree down
//! gracefully, and still print the report.
//!
//! The loop is `run::run`, which `tests/orchestration_loop.rs` runs too.

mod chaos;
mod clients;
mod config;
mod load;
mod orders;
mod payments;
mod progress;
mod proto;
mod report;
mod run;
mod stats;
mod timeline;
mod worker;

use std::process::ExitCode;

use orch::core::shutdown_signal;
use tracing_subscriber::EnvFilter;

use crate::run::RunOptions;

#[tokio::main]
async fn main() -> ExitCode {
    let (config, flags) = match config::load(std::env::args().skip(1)) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("orchestration: {error}");
            return ExitCode::from(2);
        }
    };
    // Our own lines at info, the libraries' warnings (a breaker opening).
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,orchestration=info"));
    if flags.json {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        // Colours only on a terminal: a CI log or a pipe gets plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(ansi)
            .init();
    }
    // The crashes are injected failures, not bugs worth a backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));

    let shutdown = async {
        match shutdown_signal().await {
            Ok(signal) => tracing::info!(%signal, "received"),
            // No handler could be installed: only the load's end stops us.
            Err(error) => {
                tracing::warn!(%error, "cannot listen for Ctrl-C or SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    let options = RunOptions {
        serve: flags.serve,
        progress: true,
    };
    let report = match run::run(config, options, shutdown).await {
        Ok(report) => report,
        Err(error) => {
            eprintln!("orchestration: {error}");
            return ExitCode::FAILURE;
        }
    };
    if flags.json {
        match serde_json::to_string(&report) {
            Ok(line) => println!("{line}"),
            Err(error) => eprintln!("orchestration: the report does not serialize: {error}"),
        }
    } else {
        println!("{report}");
    }
    if report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! Instructions per call of a few benchmark lines, counted under callgrind,
//! for choices worth a handful of instructions (an `#[inline(always)]`, a
//! field fewer in a future): on the project's shared two-core machines the
//! wall time of one line moves by a third between runs, instruction counts
//! do not move at all.
//!
//! Usage: `cargo bench --bench instructions --no-run`, then run the binary
//! it names as `valgrind --tool=callgrind --callgrind-out-file=/dev/null
//! <binary> <line> <calls>` with 10,000 and 30,000 calls; the difference of
//! the two totals over 20,000 is the count per call, setup and warm-up
//! excluded. Lines: `bare`, `retry`, `retry_without_budget`,
//! `tower_retry_backoff`, `tower_retry_budget`, `hedge_fixed`, `hedge_p95`,
//! `tower_hedge_p95` (as in `benches/resilience.rs`),
//! and `p2c_ewma`, `p2c_pending`, `round_robin`, `maglev`, `tower_p2c_ewma`
//! followed by `@` and a number of endpoints (as in `benches/balance.rs`).
//! The balancer lines run with tokio's clock paused, so the balancer reads
//! a clock that stands still and decides the same way however slowly
//! valgrind runs. Without arguments (as `cargo bench` runs it) it prints
//! this usage and exits.

use std::{hint::black_box, time::Duration};

use orch::{
    discovery::balance::Algorithm,
    resilience::{AlwaysSafe, HedgeConfig, HedgeDelay, HedgeLayer, RetryConfig, RetryLayer},
};
use tower::{Layer, Service};

#[path = "support/balancer.rs"]
mod balancer;
// `bench_service` is for criterion's benchmarks, not this one.
#[allow(dead_code)]
#[path = "support/drive.rs"]
mod drive;
#[path = "support/tower_hedge.rs"]
mod tower_hedge;
// `Attempts` is for `benches/resilience.rs`.
#[allow(dead_code)]
#[path = "support/tower_retry.rs"]
mod tower_retry;

use balancer::orch_balancer;
use drive::{bare, call_now};
use tower_hedge::tower_hedge;
use tower_retry::{backoff_attempts, budgeted_attempts};

/// `calls` calls of `svc`.
fn run<S: Service<u64>>(mut svc: S, calls: u64) {
    for i in 0..calls {
        black_box(call_now(&mut svc, black_box(i)));
    }
}

fn retry_line(line: &str, calls: u64) -> Result<(), String> {
    let orch_retry = |config: RetryConfig| {
        RetryLayer::new(config)
            .map(|layer| layer.safety(AlwaysSafe).layer(bare()))
            .map_err(|error| error.to_string())
    };
    match line {
        "bare" => run(bare(), calls),
        "retry" => run(orch_retry(RetryConfig::default())?, calls),
        "retry_without_budget" => run(orch_retry(RetryConfig::default().budget(None))?, calls),
        "tower_retry_backoff" => run(
            tower::retry::RetryLayer::new(backoff_attempts()).layer(bare()),
            calls,
        ),
        "tower_retry_budget" => run(
            tower::retry::RetryLayer::new(budgeted_attempts()).layer(bare()),
            calls,
        ),
        "hedge_fixed" | "hedge_p95" | "tower_hedge_p95" => hedge_line(line, calls)?,
        other => return Err(format!("unknown line `{other}`")),
    }
    Ok(())
}

/// A current-thread runtime with tokio's clock paused, entered by the
/// lines whose layers read that clock.
fn paused_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|error| error.to_string())
}

/// The `hedge` lines of `benches/resilience.rs` whose first attempt answers
/// at once, under tokio's paused clock (every latency is zero, so the
/// percentile and the work to find it do not depend on valgrind's speed).
fn hedge_line(line: &str, calls: u64) -> Result<(), String> {
    let runtime = paused_runtime()?;
    let _entered = runtime.enter();
    let orch_hedge = |config: HedgeConfig| {
        HedgeLayer::new(config)
            .map(|layer| layer.safety(AlwaysSafe).layer(bare()))
            .map_err(|error| error.to_string())
    };
    match line {
        "hedge_fixed" => {
            let config = HedgeConfig::default().delay(HedgeDelay::Fixed(Duration::from_millis(10)));
            warm_then_run(orch_hedge(config)?, calls);
        }
        "hedge_p95" => warm_then_run(orch_hedge(HedgeConfig::default())?, calls),
        _ => warm_then_run(tower_hedge(bare()), calls),
    }
    Ok(())
}

/// `svc` warmed up (connects, first readiness), then called `calls` times.
fn warm_then_run<S: Service<u64>>(mut svc: S, calls: u64) {
    for i in 0..1_000 {
        black_box(call_now(&mut svc, i));
    }
    run(svc, calls);
}

fn balance_line(line: &str, n: usize, calls: u64) -> Result<(), String> {
    let runtime = paused_runtime()?;
    let _entered = runtime.enter();
    match line {
        "p2c_ewma" => warm_then_run(orch_balancer(n, Algorithm::peak_ewma().into()), calls),
        "p2c_pending" => warm_then_run(orch_balancer(n, Algorithm::pending_requests().into()), calls),
        "round_robin" => warm_then_run(orch_balancer(n, Algorithm::RoundRobin), calls),
        "maglev" => {
            let keyed = orch_balancer(n, Algorithm::maglev().into()).hash_with(|key: &u64| Some(*key));
            warm_then_run(keyed, calls);
        }
        "tower_p2c_ewma" => {
            use tower::{
                balance::p2c::Balance,
                discover::ServiceList,
                load::{CompleteOnResponse, PeakEwmaDiscover},
            };
            let endpoints = ServiceList::new((0..n).map(|_| bare()).collect::<Vec<_>>());
            let discover = PeakEwmaDiscover::new::<u64>(
                endpoints,
                Duration::from_millis(30),
                Duration::from_secs(10),
                CompleteOnResponse::default(),
            );
            warm_then_run(Balance::new(discover), calls);
        }
        other => return Err(format!("unknown line `{other}`")),
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    let [line, calls] = args.as_slice() else {
        println!("usage: instructions <line> <calls> (under valgrind --tool=callgrind; see the file's docs)");
        return Ok(());
    };
    let calls: u64 = calls
        .parse()
        .map_err(|_| format!("`{calls}` is not a number of calls"))?;
    match line.split_once('@') {
        Some((line, n)) => {
            let n = n
                .parse()
                .map_err(|_| format!("`{n}` is not a number of endpoints"))?;
            balance_line(line, n, calls)
        }
        None => retry_line(line, calls),
    }
}

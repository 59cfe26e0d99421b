//! Per-request overhead of the client-side load balancer over a bare
//! service, against `tower::balance::p2c` in the same run.
//!
//! Every endpoint is an in-process service that is always ready and answers
//! at once (`std::future::Ready`), so what is measured is the balancer:
//! applying nothing (discovery is quiet), `poll_ready`, the pick, `call`,
//! the response future and its load bookkeeping. Calls are driven by hand
//! with a no-op waker (`poll_ready`, `call`, one `poll`), inside an entered
//! tokio runtime (tower's peak-EWMA reads `tokio::time::Instant`).
//!
//! Groups:
//! - `balance_16`, `balance_1000`: 16 and 1,000 endpoints. Lines: `bare`
//!   (one endpoint service, no balancer), `ours_p2c_ewma` (the default),
//!   `ours_p2c_pending`, `ours_round_robin` (smooth WRR), `ours_maglev`
//!   (a new key per request, the key being its own hash: the cost of the
//!   user's key hashing is left out), `tower_p2c_peak_ewma`
//!   (`PeakEwmaDiscover`, 30 ms default RTT, 10 s decay, as ours),
//!   `tower_p2c_pending` (`PendingRequestsDiscover`). tower has no round
//!   robin or consistent hashing balancer. Ours run with their default
//!   passive health (outlier detection on), whose per-request cost is
//!   recording each outcome.
//! - `clock`: one read of each clock the balancer can use, which decided
//!   the default outside paused-time tests (the TSC; see
//!   [`ClockSource::Auto`](orch::discovery::balance::ClockSource::Auto)).
//!   Our dev-dependencies compile tokio with `test-util`, so
//!   `tokio::time::Instant::now` checks for a paused clock first.
//!
//! Run: `cargo bench --bench balance`. The overhead of a line is its time
//! minus `bare` of its group.

use std::{hint::black_box, time::Duration};

use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime};
use orch::discovery::balance::Algorithm;
use tower::{
    balance::p2c::Balance,
    discover::ServiceList,
    load::{CompleteOnResponse, PeakEwmaDiscover, PendingRequestsDiscover},
};

#[path = "support/balancer.rs"]
mod balancer;
#[path = "support/drive.rs"]
mod drive;

use balancer::orch_balancer;
use drive::{Bare, bare, bench_service, call_now};

/// Maglev with a different key per request.
fn bench_maglev(g: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    let mut svc = orch_balancer(n, Algorithm::maglev().into()).hash_with(|key: &u64| Some(*key));
    let mut key = 0u64;
    for _ in 0..1_000 {
        key += 1;
        black_box(call_now(&mut svc, key));
    }
    g.bench_function("ours_maglev", |b| {
        b.iter(|| {
            key = key.wrapping_add(1);
            black_box(call_now(&mut svc, black_box(key)))
        })
    });
}

fn endpoints(n: usize) -> ServiceList<Vec<Bare>> {
    ServiceList::new((0..n).map(|_| bare()).collect::<Vec<_>>())
}

fn balance(c: &mut Criterion, n: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let _entered = runtime.enter();
    let mut g = c.benchmark_group(format!("balance_{n}"));
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    bench_service(&mut g, "bare", bare());
    bench_service(
        &mut g,
        "ours_p2c_ewma",
        orch_balancer(n, Algorithm::peak_ewma().into()),
    );
    bench_service(
        &mut g,
        "ours_p2c_pending",
        orch_balancer(n, Algorithm::pending_requests().into()),
    );
    bench_service(
        &mut g,
        "ours_round_robin",
        orch_balancer(n, Algorithm::RoundRobin),
    );
    bench_maglev(&mut g, n);
    let peak_ewma = PeakEwmaDiscover::new::<u64>(
        endpoints(n),
        Duration::from_millis(30),
        Duration::from_secs(10),
        CompleteOnResponse::default(),
    );
    bench_service(&mut g, "tower_p2c_peak_ewma", Balance::new(peak_ewma));
    let pending = PendingRequestsDiscover::new::<u64>(endpoints(n), CompleteOnResponse::default());
    bench_service(&mut g, "tower_p2c_pending", Balance::new(pending));
    g.finish();
}

fn balance_16(c: &mut Criterion) {
    balance(c, 16);
}

fn balance_1000(c: &mut Criterion) {
    balance(c, 1_000);
}

fn clock(c: &mut Criterion) {
    let mut g = c.benchmark_group("clock");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("std_instant", |b| b.iter(|| black_box(std::time::Instant::now())));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let entered = runtime.enter();
    g.bench_function("tokio_instant", |b| {
        b.iter(|| black_box(tokio::time::Instant::now()))
    });
    drop(entered);
    let tsc = quanta::Clock::new();
    g.bench_function("quanta_tsc", |b| b.iter(|| black_box(tsc.raw())));
    g.finish();
}

criterion_group!(benches, balance_16, balance_1000, clock);
criterion_main!(benches);

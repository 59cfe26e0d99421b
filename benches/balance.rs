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

use std::{convert::Infallible, future::Ready, hint::black_box, time::Duration};

use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime};
use futures_util::{Stream, stream};
use orch::discovery::{
    Endpoint, EndpointChange,
    balance::{Algorithm, Balancer, BalancerConfig, connect_fn},
};
use tower::{
    Service,
    balance::p2c::Balance,
    discover::ServiceList,
    load::{CompleteOnResponse, PeakEwmaDiscover, PendingRequestsDiscover},
};

#[path = "support/drive.rs"]
mod drive;

use drive::{Bare, bare, bench_service, call_now};

fn ours(
    n: usize,
    algorithm: Algorithm,
) -> Balancer<
    impl Stream<Item = EndpointChange> + Unpin,
    impl Service<Endpoint, Response = Bare, Error = Infallible, Future = Ready<Result<Bare, Infallible>>>,
> {
    let changes: Vec<EndpointChange> = (0..n)
        .map(|i| {
            let address = std::net::SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16));
            EndpointChange::Insert(Endpoint::new(format!("e{i}"), address))
        })
        .collect();
    let config = BalancerConfig::default().algorithm(algorithm).seed(1);
    let connect = connect_fn(|_: &Endpoint| bare());
    Balancer::with_config(&config, stream::iter(changes), connect).expect("a valid config")
}

/// Maglev with a different key per request.
fn bench_maglev(g: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    let mut svc = ours(n, Algorithm::maglev().into()).hash_with(|key: &u64| Some(*key));
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
    bench_service(&mut g, "ours_p2c_ewma", ours(n, Algorithm::peak_ewma().into()));
    bench_service(
        &mut g,
        "ours_p2c_pending",
        ours(n, Algorithm::pending_requests().into()),
    );
    bench_service(&mut g, "ours_round_robin", ours(n, Algorithm::RoundRobin));
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

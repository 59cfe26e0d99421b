//! Per-call overhead of the resilience layers over a bare service, against
//! the peers from crates.io in the same run.
//!
//! Every service answers at once (`std::future::Ready`), so what is measured
//! is the layer itself: admission, bookkeeping and the future it wraps.
//! Calls are driven by hand with a no-op waker (`poll_ready`, `call`, one
//! `poll`), so no executor cost is in the numbers; timeouts run inside an
//! entered tokio runtime, whose timer they need.
//!
//! Groups:
//! - `breaker`: closed breaker, single thread: ours through the service and
//!   through the plain permit API, `tower-resilience`, `failsafe`.
//! - `breaker_2_threads`: two OS threads calling clones of one shared breaker.
//!   Criterion reports the time per call per thread; with perfect scaling it
//!   equals the single-thread time (2× throughput).
//! - `retry` (no retry needed): ours vs `tower::retry`, each with and
//!   without a retry budget; tower's also with its own exponential backoff
//!   in the policy, as a production policy without a budget has.
//! - `retry_2_threads`: two OS threads calling clones of one retry layer,
//!   ours (with and without a budget) and tower's with its `TpsBudget`.
//! - `timeout` (answer before the deadline): ours vs `tower::timeout`, for a
//!   future ready at once and for one pending at its first poll (which makes
//!   both arm their timers).
//! - `hedge` (the first attempt answers, so no hedge is sent): ours with a
//!   fixed delay and with its default (the 95th percentile of recent
//!   latencies, which records every call's latency) vs `tower::hedge`
//!   (always percentile-based), for a future ready at once and for one
//!   pending at its first poll (which makes both arm their timers).
//! - `rate_limit` (permit available): our `RateLimiter` on tokio's clock and
//!   on the TSC vs `governor`.
//!
//! Run: `cargo bench --bench resilience`. The table in the closing
//! note is the ratio of each line to `bare` of its own group.

use std::{
    future::Future,
    hint::black_box,
    num::NonZeroU32,
    pin::Pin,
    sync::{Arc, Barrier, mpsc},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use orch::resilience::{
    AlwaysSafe, CircuitBreakerConfig, CircuitBreakerLayer, ClockSource, HedgeConfig, HedgeDelay, HedgeLayer,
    Outcome, RateLimitConfig, RetryConfig, RetryLayer, TimeoutLayer,
};
use tower::{Layer, Service};

#[path = "support/drive.rs"]
mod drive;
#[path = "support/tower_hedge.rs"]
mod tower_hedge;
#[path = "support/tower_retry.rs"]
mod tower_retry;

use drive::{bare, bench_service, call_now};
use tower_hedge::tower_hedge;
use tower_retry::{Attempts, backoff_attempts, budgeted_attempts};

/// A breaker that never trips under the benchmark (it only sees successes).
fn our_breaker_config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::default().name("bench")
}

fn tower_resilience_breaker() -> tower_resilience::circuitbreaker::CircuitBreakerLayer {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .name("bench")
        .build()
        .expect("valid tower-resilience config")
}

fn breaker(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker");
    bench_service(&mut g, "bare", bare());
    let layer = CircuitBreakerLayer::new(our_breaker_config()).expect("valid config");
    bench_service(&mut g, "orch service", layer.layer(bare()));
    let breaker = our_breaker_config().build().expect("valid config");
    g.bench_function("orch permit", |b| {
        b.iter(|| {
            breaker
                .try_acquire()
                .expect("closed breaker")
                .record(Outcome::Success)
        })
    });
    bench_service(
        &mut g,
        "tower-resilience service",
        tower_resilience_breaker().layer(bare()),
    );
    let failsafe = failsafe::Config::new().build();
    g.bench_function("failsafe call", |b| {
        b.iter(|| black_box(failsafe.call(|| Ok::<u64, ()>(black_box(7)))))
    });
    g.finish();
}

/// `threads` worker threads that live for a whole benchmark, each owning
/// its own work closure (on its own stack, so two services that write their
/// own fields per call never share a cache line). Spawning threads inside
/// every sample, as a first version did, put thread start-up and the
/// threads' first-touch costs (thread-local caches, shard seeds) into the
/// figure; with workers kept alive only the calls are timed.
struct Workers {
    orders: Vec<mpsc::Sender<u64>>,
    times: mpsc::Receiver<Duration>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    fn start<F>(threads: usize, make: impl Fn() -> F) -> Self
    where
        F: FnMut() + Send + 'static,
    {
        let barrier = Arc::new(Barrier::new(threads));
        let (time_tx, times) = mpsc::channel();
        let mut orders = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..threads {
            let (order_tx, order_rx) = mpsc::channel::<u64>();
            let work = make();
            let barrier = barrier.clone();
            let time_tx = time_tx.clone();
            handles.push(std::thread::spawn(move || {
                let mut work = work;
                // Warm the thread up: its first calls meet the breaker.
                for _ in 0..1_000 {
                    work();
                }
                while let Ok(iters) = order_rx.recv() {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        work();
                    }
                    if time_tx.send(start.elapsed()).is_err() {
                        return;
                    }
                }
            }));
            orders.push(order_tx);
        }
        Self {
            orders,
            times,
            handles,
        }
    }

    /// Runs `iters` calls on every worker at once; the slowest worker's
    /// time, which criterion divides by `iters` (time per call per thread).
    fn run(&self, iters: u64) -> Duration {
        for order in &self.orders {
            order.send(iters).expect("bench worker alive");
        }
        (0..self.orders.len())
            .map(|_| self.times.recv().expect("bench worker alive"))
            .max()
            .unwrap_or_default()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.orders.clear();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// One line of a two-thread group: clones of `svc`, one per worker, each
/// called on its own thread.
fn bench_service_threads<S>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    threads: usize,
    svc: S,
) where
    S: Service<u64> + Clone + Send + 'static,
{
    bench_threads(g, name, threads, || {
        let mut svc = svc.clone();
        move || {
            black_box(call_now(&mut svc, black_box(7)));
        }
    });
}

/// One line of a two-thread group: `make` gives each worker its work.
fn bench_threads<F>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    threads: usize,
    make: impl Fn() -> F,
) where
    F: FnMut() + Send + 'static,
{
    let workers = Workers::start(threads, make);
    g.bench_function(format!("{name} x{threads}"), |b| {
        b.iter_custom(|iters| workers.run(iters))
    });
}

fn breaker_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker_2_threads");
    for threads in [1, 2] {
        // The machine's own scaling: the bare service on every thread.
        bench_service_threads(&mut g, "bare", threads, bare());
        let breaker = our_breaker_config().build().expect("valid config");
        bench_threads(&mut g, "orch permit", threads, || {
            let breaker = breaker.clone();
            move || {
                breaker
                    .try_acquire()
                    .expect("closed breaker")
                    .record(Outcome::Success)
            }
        });
        bench_threads(&mut g, "orch owned permit", threads, || {
            let breaker = breaker.clone();
            move || {
                breaker
                    .try_acquire_owned()
                    .expect("closed breaker")
                    .record(Outcome::Success)
            }
        });
        let layer = CircuitBreakerLayer::new(our_breaker_config()).expect("valid config");
        bench_service_threads(&mut g, "orch service", threads, layer.layer(bare()));
        bench_service_threads(
            &mut g,
            "tower-resilience service",
            threads,
            tower_resilience_breaker().layer(bare()),
        );
        let failsafe = failsafe::Config::new().build();
        bench_threads(&mut g, "failsafe call", threads, || {
            let failsafe = failsafe.clone();
            move || {
                let _ = black_box(failsafe.call(|| Ok::<u64, ()>(black_box(7))));
            }
        });
    }
    g.finish();
}

fn retry(c: &mut Criterion) {
    let mut g = c.benchmark_group("retry");
    bench_service(&mut g, "bare", bare());
    let ours = RetryLayer::new(RetryConfig::default())
        .expect("valid config")
        .safety(AlwaysSafe);
    bench_service(&mut g, "orch retry", ours.layer(bare()));
    let no_budget = RetryLayer::new(RetryConfig::default().budget(None))
        .expect("valid config")
        .safety(AlwaysSafe);
    bench_service(&mut g, "orch retry without budget", no_budget.layer(bare()));
    bench_service(
        &mut g,
        "tower::retry",
        tower::retry::RetryLayer::new(Attempts(2)).layer(bare()),
    );
    bench_service(
        &mut g,
        "tower::retry with ExponentialBackoff",
        tower::retry::RetryLayer::new(backoff_attempts()).layer(bare()),
    );
    let budgeted = budgeted_attempts();
    bench_service(
        &mut g,
        "tower::retry with TpsBudget",
        tower::retry::RetryLayer::new(budgeted).layer(bare()),
    );
    g.finish();
}

/// A service whose future is pending at its first poll (having woken its
/// task) and ready at the second: the shape of a call that waits for I/O, so
/// a timeout must arm its timer.
#[derive(Clone, Copy)]
struct PendingOnce;

impl Service<u64> for PendingOnce {
    type Response = u64;
    type Error = std::convert::Infallible;
    type Future = PendingOnceFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u64) -> Self::Future {
        PendingOnceFuture {
            value: request,
            polled: false,
        }
    }
}

struct PendingOnceFuture {
    value: u64,
    polled: bool,
}

impl Future for PendingOnceFuture {
    type Output = Result<u64, std::convert::Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polled {
            return Poll::Ready(Ok(self.value));
        }
        self.polled = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn retry_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("retry_2_threads");
    for threads in [1, 2] {
        bench_service_threads(&mut g, "bare", threads, bare());
        let ours = RetryLayer::new(RetryConfig::default())
            .expect("valid config")
            .safety(AlwaysSafe);
        bench_service_threads(&mut g, "orch retry", threads, ours.layer(bare()));
        let no_budget = RetryLayer::new(RetryConfig::default().budget(None))
            .expect("valid config")
            .safety(AlwaysSafe);
        bench_service_threads(
            &mut g,
            "orch retry without budget",
            threads,
            no_budget.layer(bare()),
        );
        let budgeted = budgeted_attempts();
        bench_service_threads(
            &mut g,
            "tower::retry with TpsBudget",
            threads,
            tower::retry::RetryLayer::new(budgeted).layer(bare()),
        );
    }
    g.finish();
}

/// A current-thread runtime with timers, entered by the groups whose
/// layers arm tokio timers or read its clock.
fn timer_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

fn timeout(c: &mut Criterion) {
    let runtime = timer_runtime();
    let _entered = runtime.enter();
    let mut g = c.benchmark_group("timeout");
    bench_service(&mut g, "bare", bare());
    bench_service(
        &mut g,
        "orch timeout",
        TimeoutLayer::attempt(Duration::from_secs(1)).layer(bare()),
    );
    bench_service(
        &mut g,
        "tower::timeout",
        tower::timeout::TimeoutLayer::new(Duration::from_secs(1)).layer(bare()),
    );
    bench_service(&mut g, "bare, pending once", PendingOnce);
    bench_service(
        &mut g,
        "orch timeout, pending once",
        TimeoutLayer::attempt(Duration::from_secs(1)).layer(PendingOnce),
    );
    bench_service(
        &mut g,
        "tower::timeout, pending once",
        tower::timeout::TimeoutLayer::new(Duration::from_secs(1)).layer(PendingOnce),
    );
    g.finish();
}

fn hedge(c: &mut Criterion) {
    let runtime = timer_runtime();
    let _entered = runtime.enter();
    let fixed = HedgeLayer::new(HedgeConfig::default().delay(HedgeDelay::Fixed(Duration::from_millis(10))))
        .expect("valid config")
        .safety(AlwaysSafe);
    let percentile = HedgeLayer::new(HedgeConfig::default())
        .expect("valid config")
        .safety(AlwaysSafe);
    let mut g = c.benchmark_group("hedge");
    bench_service(&mut g, "bare", bare());
    bench_service(&mut g, "orch hedge, fixed delay", fixed.layer(bare()));
    bench_service(&mut g, "orch hedge, p95", percentile.layer(bare()));
    bench_service(&mut g, "tower::hedge, p95", tower_hedge(bare()));
    bench_service(&mut g, "bare, pending once", PendingOnce);
    bench_service(
        &mut g,
        "orch hedge, fixed delay, pending once",
        fixed.layer(PendingOnce),
    );
    bench_service(
        &mut g,
        "orch hedge, p95, pending once",
        percentile.layer(PendingOnce),
    );
    bench_service(
        &mut g,
        "tower::hedge, p95, pending once",
        tower_hedge(PendingOnce),
    );
    g.finish();
}

fn rate_limit(c: &mut Criterion) {
    let runtime = timer_runtime();
    let _entered = runtime.enter();
    let mut g = c.benchmark_group("rate_limit");
    // A limit no benchmark can reach: every check admits.
    let per_second = 1_000_000_000;
    let ours = RateLimitConfig::new(per_second, Duration::from_secs(1))
        .limiter()
        .expect("valid config");
    g.bench_function("orch try_acquire", |b| b.iter(|| black_box(ours.try_acquire())));
    let ours_tsc = RateLimitConfig::new(per_second, Duration::from_secs(1))
        .clock(ClockSource::Tsc)
        .limiter()
        .expect("valid config");
    g.bench_function("orch try_acquire, tsc clock", |b| {
        b.iter(|| black_box(ours_tsc.try_acquire()))
    });
    let quota = governor::Quota::per_second(NonZeroU32::new(per_second).expect("non-zero"));
    let governor = governor::RateLimiter::direct(quota);
    g.bench_function("governor check", |b| b.iter(|| black_box(governor.check())));
    g.finish();
}

criterion_group! {
    name = benches;
    // Short samples: the table compares lines measured seconds apart, so
    // long runs buy little against the noise of a shared 2-core machine.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = breaker, breaker_threads, retry, retry_threads, timeout, hedge, rate_limit
}
criterion_main!(benches);

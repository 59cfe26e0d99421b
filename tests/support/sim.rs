//! A tail-latency simulation of client-side load balancers, in tokio's
//! paused time: what share of requests a slow or failing endpoint gets, and
//! what that does to p50, p99 and p99.9.
//!
//! Shared by `benches/tail_latency.rs` (every scenario × every balancer, as
//! a table) and `tests/tail_latency.rs` (the targets of our peak-EWMA).
//!
//! # The model
//!
//! - **Time.** Each run gets its own current-thread tokio runtime whose clock
//!   starts paused at zero and jumps to the next timer whenever every task is
//!   idle, so a 40 s run takes as long as its bookkeeping, and the same seed
//!   gives the same run. Tokio's timer has a resolution of 1 ms, so every
//!   latency, arrival and measurement is a whole number of milliseconds; the
//!   healthy median is 170 ms, so that quantisation is under 1 %.
//! - **Arrivals.** Open loop: requests arrive as a Poisson process at
//!   [`Load::rate`] per second (exponential gaps), whatever the balancer or
//!   the endpoints do, so a slow endpoint cannot slow the load down (no
//!   coordinated omission). An arrival between two ticks of the timer is
//!   taken up at the next tick, together with any others that fell there.
//! - **A request.** The driver waits for the balancer's `poll_ready`, calls
//!   it, and awaits the response future on a task of its own, which records
//!   the latency (from the instant the driver took the request up, so a
//!   balancer that keeps it waiting pays for it), which endpoint answered and
//!   whether it failed.
//! - **Endpoints.** [`Scenario::endpoints`] in-process services
//!   (`tower::service_fn`), always ready, with unbounded concurrency: each
//!   request sleeps for a latency drawn afresh from the endpoint's
//!   [`Latency`] distribution and answers with its endpoint's index (or an
//!   [`EndpointFailed`] error). Latency does not grow with load: the slow
//!   endpoint is slow for reasons of its own (a bad disk, a noisy neighbour,
//!   GC), so sending it less traffic does not make it faster, and all that a
//!   balancer decides is what share of requests lands there.
//! - **Healthy endpoints** draw from a log-normal distribution with median
//!   170 ms and σ = 0.3 ([`HEALTHY`]): p99 ≈ 2.0× and p99.9 ≈ 2.5× the
//!   median, a moderate tail for a service that is doing fine.
//! - **Scenarios** ([`Scenario::all`]): (a) all ten healthy, the baseline;
//!   (b) one endpoint 10× slower, the same log-normal shape around a 1.7 s
//!   median; (c) one endpoint at a constant 2 s while the others are ~170 ms
//!   (the setting the issue takes from Linkerd's published experiment,
//!   "Beyond Round Robin: Load Balancing for Latency", 2016); (d) one
//!   endpoint that fails fast, answering with an error after 1 ms.
//! - **What is measured.** Requests taken up in the first [`Load::warmup`]
//!   seconds are sent but not measured: each balancer starts knowing nothing
//!   (peak-EWMA assumes a 30 ms RTT for every endpoint), and the cold start
//!   is not the steady state the targets are about: until the slow
//!   endpoint's first answer comes back, it looks like the fastest, and
//!   peak-EWMA sends it hundreds of requests in those first seconds. The
//!   [`Report`] holds, for the requests taken up during the next
//!   [`Load::measured`] seconds: exact p50, p99 and
//!   p99.9 of the latencies of successful responses (nearest rank over all
//!   of them, sorted), how many requests each endpoint got (answered or
//!   failed), and how many failed. Failures are counted, not mixed into the
//!   latencies: a 1 ms error would make the percentiles look better.
//! - **Balancers** ([`Contender`]): a plain round robin ([`RoundRobin`]),
//!   our [`Balancer`] with P2C over requests in flight and over peak-EWMA
//!   (both on [`ClockSource::Tokio`], so they measure simulated time), and
//!   `tower::balance::p2c::Balance` over `PendingRequestsDiscover` and
//!   `PeakEwmaDiscover` (30 ms default RTT and 10 s decay, as ours). Every
//!   random choice (arrivals, each endpoint's latencies, each balancer's
//!   picks) comes from a [`SimRng`] seeded from [`Load::seed`]; an
//!   endpoint's k-th request takes the same time whichever balancer sent it.
//!
//! # Reading the numbers
//!
//! Since latency here does not depend on load, a balancer's whole effect
//! is the share `s` of requests it sends the bad endpoint: p99 stays near
//! healthy while `s` is well under 1 %, p99.9 only while it is well under
//! 0.1 % (about 0.05 % for 1.3× here). At 2,000 requests/s a healthy
//! endpoint has ~35 requests in flight, and P2C over
//! `rtt × (in flight + 1)` settles the slow endpoint's requests in flight
//! where its cost meets a healthy one's, so
//! `s ≈ (rtt_healthy / rtt_slow) × (latency_healthy / latency_slow) / 10`,
//! where the `rtt`s are the peak-EWMA estimates (well above the healthy
//! median: every slower response replaces the estimate at once). That is
//! about 0.2 % (tower's peak-EWMA, and ours with `InFlightBias::Linear`).
//! Our default cost, `rtt × √(in flight + 1)`, settles where the squares
//! meet, so `s` shrinks with the square of the latency ratio: about 0.04 %.
//! Least-pending equalises requests in flight instead, so
//! `s ≈ 1 / (1 + 9 × 10)` ≈ 1.1 % for a 10× slower endpoint.
//!
//! Not modelled: endpoints whose latency grows with their load (queueing).
//! There a busier endpoint's measured `rtt` rises, which both costs see.
#![allow(dead_code, reason = "shared by the bench and the test; each uses a part")]

use std::{
    cell::RefCell,
    fmt,
    net::SocketAddr,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::stream;
use orch::discovery::{
    Endpoint, EndpointChange,
    balance::{Algorithm, BalanceError, Balancer, BalancerConfig, ClockSource, connect_fn},
};
use tokio::{task::JoinSet, time::Instant};
use tower::{
    BoxError, Service, ServiceExt,
    balance::p2c::Balance,
    discover::ServiceList,
    load::{CompleteOnResponse, PeakEwmaDiscover, PendingRequestsDiscover},
    service_fn,
};

/// The latency of a healthy endpoint: log-normal, median 170 ms, σ = 0.3.
pub const HEALTHY: Latency = Latency::LogNormal {
    median: Duration::from_millis(170),
    sigma: 0.3,
};

/// Peak-EWMA's default RTT and decay, for ours and tower's alike
/// (linkerd2-proxy's defaults).
const DEFAULT_RTT: Duration = Duration::from_millis(30);
const DECAY: Duration = Duration::from_secs(10);

// ===== random numbers =====

/// SplitMix64 (Steele, Lea and Flood): a tiny, fast, well-mixed generator,
/// plenty for a simulation, and seedable so runs repeat exactly.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator starting from `seed`.
    pub const fn seeded(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `(0, 1]` (never zero, so its logarithm is finite).
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Exponential with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.unit().ln()
    }

    /// Standard normal (Box–Muller; the second value is dropped).
    pub fn standard_normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

impl tower::util::rng::Rng for SimRng {
    fn next_u64(&mut self) -> u64 {
        SimRng::next_u64(self)
    }
}

// ===== the endpoints =====

/// How long an endpoint takes to answer one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// `median × e^(σ·Z)` for a standard normal `Z`: right-skewed with a
    /// tail, like most service latencies; p99 is `e^(2.326σ)` × the median.
    LogNormal {
        /// The median latency.
        median: Duration,
        /// The spread of the logarithm.
        sigma: f64,
    },
    /// Always the same.
    Fixed(Duration),
}

impl Latency {
    /// One latency, rounded to whole milliseconds (tokio's timer
    /// resolution), at least 1 ms.
    pub fn sample(&self, rng: &mut SimRng) -> Duration {
        let ms = match *self {
            Self::LogNormal { median, sigma } => {
                median.as_secs_f64() * 1e3 * (sigma * rng.standard_normal()).exp()
            }
            Self::Fixed(latency) => latency.as_secs_f64() * 1e3,
        };
        Duration::from_millis(ms.round().max(1.0) as u64)
    }
}

/// What the one misbehaving endpoint of a scenario does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Misbehaviour {
    /// Answers successfully, after this latency.
    Slow(Latency),
    /// Answers with [`EndpointFailed`] after this latency.
    Fails(Latency),
}

/// A fleet of endpoints: all healthy but (possibly) one.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Short name for tables.
    pub name: &'static str,
    /// How many endpoints.
    pub endpoints: usize,
    /// The latency of every healthy endpoint.
    pub healthy: Latency,
    /// The misbehaving endpoint (index [`Scenario::BAD`]), if any.
    pub bad: Option<Misbehaviour>,
}

impl Scenario {
    /// The index of the misbehaving endpoint.
    pub const BAD: usize = 0;

    /// (a) Ten healthy endpoints: the baseline.
    pub fn all_healthy() -> Self {
        Self {
            name: "(a) all healthy",
            endpoints: 10,
            healthy: HEALTHY,
            bad: None,
        }
    }

    /// (b) One endpoint 10× slower: the healthy shape around a 1.7 s median.
    pub fn one_10x_slower() -> Self {
        Self {
            name: "(b) one 10× slower",
            bad: Some(Misbehaviour::Slow(Latency::LogNormal {
                median: Duration::from_millis(1_700),
                sigma: 0.3,
            })),
            ..Self::all_healthy()
        }
    }

    /// (c) One endpoint at 2 s, the others ~170 ms (Linkerd's experiment).
    pub fn one_at_2s() -> Self {
        Self {
            name: "(c) one at 2 s",
            bad: Some(Misbehaviour::Slow(Latency::Fixed(Duration::from_secs(2)))),
            ..Self::all_healthy()
        }
    }

    /// (d) One endpoint that fails fast: an error after 1 ms.
    pub fn one_fails_fast() -> Self {
        Self {
            name: "(d) one fails in 1 ms",
            bad: Some(Misbehaviour::Fails(Latency::Fixed(Duration::from_millis(1)))),
            ..Self::all_healthy()
        }
    }

    /// The four scenarios, baseline first.
    pub fn all() -> [Self; 4] {
        [
            Self::all_healthy(),
            Self::one_10x_slower(),
            Self::one_at_2s(),
            Self::one_fails_fast(),
        ]
    }

    /// What endpoint `index` does.
    fn behaviour(&self, index: usize) -> Misbehaviour {
        match self.bad {
            Some(bad) if index == Self::BAD => bad,
            _ => Misbehaviour::Slow(self.healthy),
        }
    }
}

/// A simulated request (it carries nothing: endpoints differ, requests not).
#[derive(Debug, Clone, Copy)]
pub struct Request;

/// A successful answer: which endpoint gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered(pub usize);

/// The error of a failing endpoint: which one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointFailed(pub usize);

impl fmt::Display for EndpointFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "endpoint {} failed", self.0)
    }
}

impl std::error::Error for EndpointFailed {}

/// Endpoint `index` of `scenario` as a service, drawing its latencies from
/// its own generator.
fn endpoint(
    scenario: &Scenario,
    index: usize,
    seed: u64,
) -> impl Service<Request, Response = Answered, Error = EndpointFailed, Future: 'static> + 'static {
    let behaviour = scenario.behaviour(index);
    let mut rng = SimRng::seeded(seed);
    service_fn(move |Request| {
        let (latency, fails) = match behaviour {
            Misbehaviour::Slow(latency) => (latency.sample(&mut rng), false),
            Misbehaviour::Fails(latency) => (latency.sample(&mut rng), true),
        };
        async move {
            tokio::time::sleep(latency).await;
            if fails {
                Err(EndpointFailed(index))
            } else {
                Ok(Answered(index))
            }
        }
    })
}

/// The address endpoint `index` is registered under (nothing listens).
fn address(index: usize) -> SocketAddr {
    let port = 10_000 + u16::try_from(index).expect("fewer than 55,000 endpoints");
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The endpoint index back from its address.
fn index_of(endpoint: &Endpoint) -> usize {
    usize::from(endpoint.address().port() - 10_000)
}

// ===== the balancers =====

/// The baseline: each request to the next endpoint in turn.
#[derive(Debug)]
pub struct RoundRobin<S> {
    services: Vec<S>,
    next: usize,
}

impl<S> RoundRobin<S> {
    /// Round robin over `services` (at least one).
    pub fn new(services: Vec<S>) -> Self {
        assert!(!services.is_empty(), "round robin over no service");
        Self { services, next: 0 }
    }
}

impl<S: Service<Req>, Req> Service<Req> for RoundRobin<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        // Round robin waits for its turn's endpoint, however long it takes.
        self.services[self.next].poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> S::Future {
        let future = self.services[self.next].call(request);
        self.next = (self.next + 1) % self.services.len();
        future
    }
}

/// One of the balancers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// [`RoundRobin`].
    RoundRobin,
    /// Our [`Balancer`], P2C over requests in flight.
    OursP2cPending,
    /// Our [`Balancer`], P2C over peak-EWMA (its default).
    OursP2cPeakEwma,
    /// `tower::balance::p2c::Balance` over `PendingRequestsDiscover`.
    TowerP2cPending,
    /// `tower::balance::p2c::Balance` over `PeakEwmaDiscover`.
    TowerP2cPeakEwma,
}

impl Contender {
    /// Every contender, in table order.
    pub const ALL: [Self; 5] = [
        Self::RoundRobin,
        Self::OursP2cPending,
        Self::OursP2cPeakEwma,
        Self::TowerP2cPending,
        Self::TowerP2cPeakEwma,
    ];

    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "round robin",
            Self::OursP2cPending => "ours P2C pending",
            Self::OursP2cPeakEwma => "ours P2C peak-EWMA",
            Self::TowerP2cPending => "tower P2C pending",
            Self::TowerP2cPeakEwma => "tower P2C peak-EWMA",
        }
    }
}

// ===== the load and the run =====

/// How much load, for how long, and the seed of every random choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// Mean arrivals per second (Poisson).
    pub rate: f64,
    /// Sent but not measured, from the start.
    pub warmup: Duration,
    /// Measured, after the warm-up.
    pub measured: Duration,
    /// Seeds arrivals, endpoint latencies and balancer picks.
    pub seed: u64,
}

/// What a run measured (requests taken up after the warm-up).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Latencies of successful responses, sorted.
    latencies: Vec<Duration>,
    /// Requests each endpoint got (answered or failed).
    per_endpoint: Vec<u64>,
    /// Requests that failed with an endpoint's error.
    failed: u64,
    /// Requests that failed with the balancer's own error (none expected).
    balancer_errors: u64,
}

impl Report {
    fn new(endpoints: usize) -> Self {
        Self {
            latencies: Vec::new(),
            per_endpoint: vec![0; endpoints],
            failed: 0,
            balancer_errors: 0,
        }
    }

    fn record(&mut self, latency: Duration, result: Result<Answered, BoxError>) {
        match result {
            Ok(Answered(index)) => {
                self.latencies.push(latency);
                self.per_endpoint[index] += 1;
            }
            Err(error) => match failed_endpoint(&*error) {
                Some(index) => {
                    self.failed += 1;
                    self.per_endpoint[index] += 1;
                }
                None => self.balancer_errors += 1,
            },
        }
    }

    /// Requests measured (answered, failed, or refused by the balancer).
    pub fn requests(&self) -> u64 {
        self.per_endpoint.iter().sum::<u64>() + self.balancer_errors
    }

    /// The `q`-quantile (`0 < q ≤ 1`) of successful latencies, nearest rank.
    pub fn quantile(&self, q: f64) -> Duration {
        assert!(q > 0.0 && q <= 1.0, "quantile {q} out of (0, 1]");
        let n = self.latencies.len();
        assert!(n > 0, "no successful response measured");
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.latencies[rank - 1]
    }

    /// The median latency.
    pub fn p50(&self) -> Duration {
        self.quantile(0.5)
    }

    /// The 99th percentile latency.
    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    /// The 99.9th percentile latency.
    pub fn p999(&self) -> Duration {
        self.quantile(0.999)
    }

    /// The share of measured requests endpoint `index` got.
    pub fn share(&self, index: usize) -> f64 {
        self.per_endpoint[index] as f64 / self.requests().max(1) as f64
    }

    /// The share of measured requests that failed with an endpoint's error.
    pub fn failed_share(&self) -> f64 {
        self.failed as f64 / self.requests().max(1) as f64
    }

    /// Requests the balancer itself failed (no endpoint, not ready).
    pub fn balancer_errors(&self) -> u64 {
        self.balancer_errors
    }
}

/// Which endpoint's error this is, looking through the balancers' wrappers.
fn failed_endpoint(error: &(dyn std::error::Error + 'static)) -> Option<usize> {
    if let Some(EndpointFailed(index)) = error.downcast_ref::<EndpointFailed>() {
        return Some(*index);
    }
    let inner = error.downcast_ref::<BalanceError>()?.inner_ref()?;
    inner.downcast_ref::<EndpointFailed>().map(|e| e.0)
}

/// Runs `contender` against `scenario` under `load`, in paused time on a
/// runtime of its own, and reports what it measured.
pub fn simulate(scenario: &Scenario, contender: Contender, load: &Load) -> Report {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run(scenario, contender, load))
}

async fn run(scenario: &Scenario, contender: Contender, load: &Load) -> Report {
    // Seeds are drawn in a fixed order, so endpoint `i` sees the same
    // latencies whichever balancer runs.
    let mut seeds = SimRng::seeded(load.seed);
    let arrivals = SimRng::seeded(seeds.next_u64());
    let picks = seeds.next_u64();
    let endpoint_seeds: Vec<u64> = (0..scenario.endpoints).map(|_| seeds.next_u64()).collect();
    let services = || {
        (0..scenario.endpoints)
            .map(|i| endpoint(scenario, i, endpoint_seeds[i]))
            .collect::<Vec<_>>()
    };
    let ours = |algorithm: Algorithm| {
        let changes = (0..scenario.endpoints)
            .map(|i| EndpointChange::Insert(Endpoint::new(format!("e{i}"), address(i))))
            .collect::<Vec<_>>();
        let config = BalancerConfig::default()
            .algorithm(algorithm)
            .clock(ClockSource::Tokio)
            .seed(picks);
        let connect = connect_fn(|e: &Endpoint| endpoint(scenario, index_of(e), endpoint_seeds[index_of(e)]));
        Balancer::with_config(&config, stream::iter(changes), connect).expect("a valid balancer config")
    };
    let n = scenario.endpoints;
    match contender {
        Contender::RoundRobin => drive(RoundRobin::new(services()), n, load, arrivals).await,
        Contender::OursP2cPending => {
            drive(ours(Algorithm::pending_requests().into()), n, load, arrivals).await
        }
        Contender::OursP2cPeakEwma => drive(ours(Algorithm::peak_ewma().into()), n, load, arrivals).await,
        Contender::TowerP2cPending => {
            let discover = PendingRequestsDiscover::new::<Request>(
                ServiceList::new::<Request>(services()),
                CompleteOnResponse::default(),
            );
            let balance = Balance::<_, Request>::from_rng(discover, SimRng::seeded(picks));
            drive(balance, n, load, arrivals).await
        }
        Contender::TowerP2cPeakEwma => {
            let discover = PeakEwmaDiscover::new::<Request>(
                ServiceList::new::<Request>(services()),
                DEFAULT_RTT,
                DECAY,
                CompleteOnResponse::default(),
            );
            let balance = Balance::<_, Request>::from_rng(discover, SimRng::seeded(picks));
            drive(balance, n, load, arrivals).await
        }
    }
}

/// The open-loop driver: Poisson arrivals into `service`, each response
/// awaited on its own task.
async fn drive<S>(mut service: S, endpoints: usize, load: &Load, mut arrivals: SimRng) -> Report
where
    S: Service<Request, Response = Answered>,
    S::Error: Into<BoxError>,
    S::Future: 'static,
{
    let report = Rc::new(RefCell::new(Report::new(endpoints)));
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.measured;
    let mean_gap = 1.0 / load.rate;
    let mut tasks = JoinSet::new();
    let mut at = start;
    loop {
        at += Duration::from_secs_f64(arrivals.exponential(mean_gap));
        if at >= end {
            break;
        }
        if at > Instant::now() {
            tokio::time::sleep_until(at).await;
        }
        let taken_up = Instant::now();
        service
            .ready()
            .await
            .map_err(Into::into)
            .expect("the balancer refused to get ready");
        let response = service.call(Request);
        let measured = taken_up >= measure_from;
        let report = Rc::clone(&report);
        tasks.spawn_local(async move {
            let result = response.await.map_err(Into::into);
            if measured {
                report.borrow_mut().record(taken_up.elapsed(), result);
            }
        });
        // Reap finished tasks as we go, so they do not pile up.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    drop(tasks);
    let mut report = Rc::try_unwrap(report)
        .map(RefCell::into_inner)
        .expect("every response task has finished");
    report.latencies.sort_unstable();
    report
}

//! What the balancer knows about one endpoint's load, shared with the
//! response futures of the requests in flight to it.
//!
//! Responses complete on any thread while the balancer picks on its own, so
//! the load is an `Arc` of atomics: a completion writes its outcome without
//! a lock, and a pick reads without writing (no cache line bounces between
//! the picking thread and the completing ones while nothing completes).
//!
//! # Seam for passive health
//!
//! This is where per-endpoint health plugs in: [`EndpointLoad::record`] is
//! the one place every completed request reports its [`Outcome`], from any
//! thread, and passes it on to the outlier detector's [`EndpointStats`]
//! (attached once the detector knows the endpoint: one atomic add and one
//! load more per request); the record that completes a run of consecutive
//! failures also wakes the balancer, which then ejects the endpoint at its
//! next `poll_ready` (so `poll_ready` itself checks nothing). A pick skips
//! an endpoint whose [`EndpointLoad::is_available`] is false: ejected,
//! while the balancer is not in panic mode.
//!
//! # Counting requests in flight
//!
//! The balancer's entry for the endpoint holds one long-lived strong
//! reference and, while the endpoint is ready, its slot in the ready list a
//! second (so a pick reads the load without going through the entry);
//! every request in flight holds one more, dropped when its response
//! completes. So `Arc::strong_count - 2` is the number in flight of a ready
//! endpoint, with no counter of its own to update (the same trick as
//! `tower::load::PendingRequests`). Anything else that needs the load
//! (health checks, metrics) must hold a `Weak`.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    task::Waker,
};

use super::clock::{Clock, duration_nanos};
use super::config::{Algorithm, InFlightBias, PendingRequestsConfig};
use crate::health::EndpointStats;

/// How one request to the endpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The classifier called the result a failure.
    pub(crate) failed: bool,
    /// When the request was sent, in [`Clock`] ticks (meaningful only when
    /// [`EndpointLoad::measures_latency`]).
    pub(crate) sent_at: u64,
}

/// The load model an endpoint's load follows, with its parameters in the
/// units the hot path wants.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LoadModel {
    /// Peak-EWMA response time, in nanoseconds.
    PeakEwma {
        /// The estimate of an endpoint with no responses yet, in ns.
        default_rtt_ns: f64,
        /// `1 / decay` per clock tick, so a decay is a multiplication.
        inv_decay: f64,
        /// Nanoseconds per clock tick.
        nanos_per_tick: f64,
        /// A failure adds this much to the estimate, in ns.
        penalty_ns: f64,
        /// [`InFlightBias::SquareRoot`]: the cost is `rtt² × queue`, which
        /// orders endpoints as `rtt × √queue` does, without a square root.
        square_root: bool,
    },
    /// Requests in flight, multiplied by `1 + decayed failure count`.
    Pending {
        /// `1 / failure_decay` per clock tick.
        inv_decay: f64,
    },
}

impl LoadModel {
    /// The model for `algorithm`, on `clock`.
    pub(crate) fn for_algorithm(algorithm: &Algorithm, clock: &Clock) -> Self {
        let per_tick = clock.nanos_per_tick();
        match algorithm {
            Algorithm::PeakEwma(ewma) => Self::PeakEwma {
                default_rtt_ns: duration_nanos(ewma.default_rtt) as f64,
                inv_decay: per_tick / duration_nanos(ewma.decay) as f64,
                nanos_per_tick: per_tick,
                penalty_ns: duration_nanos(ewma.failure_penalty) as f64,
                square_root: ewma.in_flight_bias == InFlightBias::SquareRoot,
            },
            Algorithm::PendingRequests(pending) => Self::pending(pending, per_tick),
            // Table pickers read no load, except Maglev for requests without
            // a key (P2C over requests in flight): the cheapest model, which
            // reads no clock for healthy endpoints.
            Algorithm::RoundRobin | Algorithm::Maglev(_) => {
                Self::pending(&PendingRequestsConfig::default(), per_tick)
            }
        }
    }

    fn pending(pending: &PendingRequestsConfig, per_tick: f64) -> Self {
        Self::Pending {
            inv_decay: per_tick / duration_nanos(pending.failure_decay) as f64,
        }
    }
}

/// One endpoint's load (and whether passive health lets it be picked),
/// shared with its requests in flight. See the module docs.
///
/// `repr(C)` keeps what a pick reads (`estimate`, `stamp`, `available`)
/// right after the `Arc`'s reference counts, on the same cache line as the
/// strong count a pick also reads.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct EndpointLoad {
    /// Peak-EWMA: the response-time estimate in ns. Pending: the failure
    /// count. As `f64` bits; the value at `stamp`, before any decay since.
    estimate: AtomicU64,
    /// Clock ticks when `estimate` was last written.
    stamp: AtomicU64,
    /// False while passive health ejects the endpoint.
    available: AtomicBool,
    /// The outlier detector's counters of this endpoint, once attached
    /// (never, with outlier detection off).
    health: OnceLock<HealthLink>,
    model: LoadModel,
    clock: Clock,
}

impl EndpointLoad {
    /// A fresh load: the default RTT (peak-EWMA) or no failures (pending).
    pub(crate) fn new(model: LoadModel, clock: Clock) -> Arc<Self> {
        let stamp = clock.now();
        let estimate = match model {
            LoadModel::PeakEwma { default_rtt_ns, .. } => default_rtt_ns,
            LoadModel::Pending { .. } => 0.0,
        };
        Arc::new(Self {
            model,
            clock,
            estimate: AtomicU64::new(estimate.to_bits()),
            stamp: AtomicU64::new(stamp),
            available: AtomicBool::new(true),
            health: OnceLock::new(),
        })
    }

    /// Sends every outcome from now on to the outlier detector's `stats`
    /// too, waking `balancer` when a run of failures trips the detector.
    /// Only the first attach counts: an endpoint keeps its stats for as
    /// long as it keeps its load.
    pub(crate) fn attach_health(&self, stats: &Arc<EndpointStats>, balancer: &Waker) {
        // Already attached means the same stats: the detector keeps an
        // endpoint's stats for as long as its id stays.
        let _ = self.health.set(HealthLink {
            stats: Arc::clone(stats),
            balancer: balancer.clone(),
        });
    }

    /// Attaches what `other` (the same endpoint's previous load) has.
    pub(crate) fn attach_health_of(&self, other: &EndpointLoad) {
        if let Some(link) = other.health.get() {
            self.attach_health(&link.stats, &link.balancer);
        }
    }

    /// False while the endpoint is ejected and the balancer is not in
    /// panic mode; picks skip it.
    #[inline]
    pub(crate) fn is_available(&self) -> bool {
        self.available.load(Relaxed)
    }

    /// Ejects (`false`) or restores (`true`) the endpoint.
    pub(crate) fn set_available(&self, available: bool) {
        self.available.store(available, Relaxed);
    }

    /// The endpoint's load at `now` (clock ticks; read only by peak-EWMA
    /// and by pending-requests for an endpoint with recent failures),
    /// relative to its weight: lower is better.
    #[inline]
    pub(crate) fn cost(&self, in_flight: usize, inv_weight: f64, now: &mut Now<'_>) -> f64 {
        let queue = in_flight as f64 * inv_weight + 1.0;
        let estimate = f64::from_bits(self.estimate.load(Relaxed));
        match self.model {
            LoadModel::PeakEwma {
                inv_decay,
                square_root,
                ..
            } => {
                let age = self.clock.ticks_between(self.stamp.load(Relaxed), now.get());
                let rtt = estimate * decay(age * inv_decay);
                // Costs are only compared, so `rtt² × queue` ranks
                // endpoints exactly as `rtt × √queue` would.
                if square_root {
                    rtt * rtt * queue
                } else {
                    rtt * queue
                }
            }
            LoadModel::Pending { inv_decay } => {
                if estimate == 0.0 {
                    // A healthy endpoint: no clock read.
                    return queue;
                }
                let age = self.clock.ticks_between(self.stamp.load(Relaxed), now.get());
                queue * (1.0 + estimate * decay(age * inv_decay))
            }
        }
    }

    /// Records how a request ended. Called once per completed request, from
    /// whichever thread completed it.
    ///
    /// Writes are last-writer-wins without a lock: two responses completing
    /// at the same instant on two threads may lose one sample, which a
    /// moving average over many samples does not notice, and every stored
    /// value is one a single update could have produced.
    ///
    /// Always inlined, with the rare work out of line: it runs once per
    /// request, and with only `#[inline]` the compiler kept it out of line,
    /// 11 to 13 more instructions a request (772 against 761 for P2C
    /// peak-EWMA at 16 endpoints, `benches/instructions.rs`).
    #[inline(always)]
    pub(crate) fn record(&self, outcome: Outcome) {
        if let Some(link) = self.health.get()
            && link.stats.record_tripping(!outcome.failed)
        {
            tripped(&link.balancer);
        }
        match self.model {
            LoadModel::PeakEwma {
                inv_decay,
                penalty_ns,
                nanos_per_tick,
                ..
            } => self.record_latency(outcome, inv_decay, penalty_ns, nanos_per_tick),
            LoadModel::Pending { inv_decay } => {
                if outcome.failed {
                    self.record_failure(inv_decay);
                }
            }
        }
    }

    /// Peak-EWMA: folds the response time into the estimate.
    #[inline]
    fn record_latency(&self, outcome: Outcome, inv_decay: f64, penalty_ns: f64, nanos_per_tick: f64) {
        let now = self.clock.now();
        let rtt = self.clock.ticks_between(outcome.sent_at, now) * nanos_per_tick;
        self.update(now, inv_decay, |previous, w| {
            if outcome.failed {
                // Failures add up: each adds the penalty to what the estimate
                // has decayed to. Raising the estimate to the penalty alone let
                // an endpoint that fails in a millisecond stay cheaper than
                // healthy endpoints with dozens of requests in flight (a fifth
                // of all requests failed in the simulation).
                (previous * w).max(rtt) + penalty_ns
            } else if rtt > previous {
                // The peak: a slower response replaces the estimate at once.
                rtt
            } else {
                previous * w + rtt * (1.0 - w)
            }
        });
    }

    /// Pending requests: counts one more (decaying) failure.
    fn record_failure(&self, inv_decay: f64) {
        self.update(self.clock.now(), inv_decay, |previous, w| previous * w + 1.0);
    }

    /// Writes `next(estimate, its decay weight since it was written)` as the
    /// estimate at `now`.
    #[inline]
    fn update(&self, now: u64, inv_decay: f64, next: impl FnOnce(f64, f64) -> f64) {
        let age = self.clock.ticks_between(self.stamp.load(Relaxed), now);
        let previous = f64::from_bits(self.estimate.load(Relaxed));
        let next = next(previous, decay(age * inv_decay));
        self.estimate.store(next.to_bits(), Relaxed);
        self.stamp.store(now, Relaxed);
    }
}

/// Where an endpoint's outcomes go besides its load.
#[derive(Debug)]
struct HealthLink {
    /// The outlier detector's counters of the endpoint.
    stats: Arc<EndpointStats>,
    /// The balancer's background waker.
    balancer: Waker,
}

/// A run of failures tripped the detector: the balancer ejects the
/// endpoint at its next `poll_ready`. Out of line: rare, and inlined it
/// lengthened every request's record (+5 ns a request at 1,000 endpoints
/// in `benches/balance.rs`).
#[cold]
#[inline(never)]
fn tripped(balancer: &Waker) {
    balancer.wake_by_ref();
}

/// A clock reading taken at most once, on first use, then reused: a pick
/// compares two endpoints at the same instant, and pending-requests with
/// healthy endpoints never reads the clock at all.
pub(crate) struct Now<'a> {
    clock: &'a Clock,
    reading: Option<u64>,
}

impl<'a> Now<'a> {
    /// A reading of `clock`, not yet taken.
    #[inline]
    pub(crate) fn lazy(clock: &'a Clock) -> Self {
        Self { clock, reading: None }
    }

    /// The reading, taken now if it was not yet.
    #[inline]
    pub(crate) fn get(&mut self) -> u64 {
        *self.reading.get_or_insert_with(|| self.clock.now())
    }
}

/// `e^(-x)` for `x ≥ 0`. Between requests to a busy endpoint `x` is tiny
/// (microseconds over a 10 s decay), where a cubic Taylor polynomial is
/// exact to 1e-9 and costs a fraction of `exp`.
#[inline]
pub(crate) fn decay(x: f64) -> f64 {
    debug_assert!(x >= 0.0, "decay of a negative age");
    if x < 1.0 / 128.0 {
        1.0 - x * (1.0 - x * (0.5 - x * (1.0 / 6.0)))
    } else {
        (-x).exp()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::balance::{clock::ClockSource, config::PeakEwmaConfig};

    impl EndpointLoad {
        fn measures_latency(&self) -> bool {
            matches!(self.model, LoadModel::PeakEwma { .. })
        }

        fn clock(&self) -> &Clock {
            &self.clock
        }

        fn estimate(&self) -> f64 {
            f64::from_bits(self.estimate.load(Relaxed))
        }
    }

    const MS: f64 = 1_000_000.0;

    fn ewma() -> Arc<EndpointLoad> {
        ewma_with(InFlightBias::Linear)
    }

    fn ewma_with(bias: InFlightBias) -> Arc<EndpointLoad> {
        let algorithm = Algorithm::PeakEwma(
            PeakEwmaConfig::default()
                .decay(Duration::from_secs(1))
                .in_flight_bias(bias),
        );
        let clock = Clock::start(ClockSource::Tokio);
        EndpointLoad::new(LoadModel::for_algorithm(&algorithm, &clock), clock)
    }

    /// The cost with as many requests in flight as references beyond one.
    fn cost(load: &Arc<EndpointLoad>) -> f64 {
        load.cost(Arc::strong_count(load) - 1, 1.0, &mut Now::lazy(load.clock()))
    }

    #[test]
    fn the_cheap_decay_matches_exp() {
        for i in 0..2_000 {
            let x = f64::from(i) / 1_000.0;
            assert!((decay(x) - (-x).exp()).abs() < 1e-9, "x = {x}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_jumps_to_peaks_and_decays_towards_zero_when_idle() {
        let load = ewma();
        assert_eq!(cost(&load), 30.0 * MS);

        // A slow response replaces the estimate at once.
        let sent_at = load.clock().now();
        tokio::time::advance(Duration::from_millis(100)).await;
        load.record(Outcome {
            failed: false,
            sent_at,
        });
        assert_eq!(load.estimate(), 100.0 * MS);

        // Two requests in flight triple the cost.
        let (a, b) = (Arc::clone(&load), Arc::clone(&load));
        assert_eq!(cost(&load), 300.0 * MS);
        drop((a, b));

        // Idle for one decay period: e^-1 of the estimate.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!((cost(&load) - 100.0 * MS * (-1.0f64).exp()).abs() < 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn fast_failures_add_up_their_penalties() {
        let load = ewma();
        for _ in 0..2 {
            let sent_at = load.clock().now();
            tokio::time::advance(Duration::from_millis(1)).await;
            load.record(Outcome {
                failed: true,
                sent_at,
            });
        }
        // 30 ms decayed for 1 ms, plus the penalty, decayed for 1 ms, plus
        // the penalty again.
        let w = (-0.001f64).exp();
        let expected = (30.0 * MS * w + 1_000.0 * MS) * w + 1_000.0 * MS;
        assert!((load.estimate() - expected).abs() < 1.0, "{}", load.estimate());
    }

    #[tokio::test(start_paused = true)]
    async fn the_square_root_bias_ranks_as_rtt_times_the_root_of_the_queue() {
        let load = ewma_with(InFlightBias::SquareRoot);
        // Three requests in flight: rtt² × 4, which orders as rtt × √4.
        let held: Vec<_> = (0..3).map(|_| Arc::clone(&load)).collect();
        assert_eq!(cost(&load), 30.0 * MS * 30.0 * MS * 4.0);
        drop(held);
        assert_eq!(cost(&load), 30.0 * MS * 30.0 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn pending_requests_counts_fading_failures() {
        let algorithm = Algorithm::PendingRequests(
            crate::balance::config::PendingRequestsConfig::default().failure_decay(Duration::from_secs(1)),
        );
        let clock = Clock::start(ClockSource::Tokio);
        let load = EndpointLoad::new(LoadModel::for_algorithm(&algorithm, &clock), clock);
        assert!(!load.measures_latency());
        assert_eq!(cost(&load), 1.0);
        load.record(Outcome {
            failed: false,
            sent_at: 0,
        });
        assert_eq!(cost(&load), 1.0);
        load.record(Outcome {
            failed: true,
            sent_at: 0,
        });
        load.record(Outcome {
            failed: true,
            sent_at: 0,
        });
        assert_eq!(cost(&load), 3.0);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!((cost(&load) - (1.0 + 2.0 * (-1.0f64).exp())).abs() < 1e-9);
        // Weight halves the in-flight part only.
        assert!(
            (load.cost(1, 0.5, &mut Now::lazy(load.clock())) - 1.5 * (1.0 + 2.0 * (-1.0f64).exp())).abs()
                < 1e-9
        );
    }
}

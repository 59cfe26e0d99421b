//! The balancer's configuration: plain data, validated when the balancer is
//! built, so nothing half-configured ever runs.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use super::clock::ClockSource;
use super::rng::Rng;
use crate::config::{check, setters};
use crate::health::HealthConfig;
use crate::pick::{Maglev, MaglevError};

pub use crate::ConfigError;

/// Configuration of a [`Balancer`](super::Balancer).
///
/// Plain data: every field is public, has a builder-style setter of the same
/// name, and (de)serialises with `serde`, durations in humantime form
/// (`"3s"`, `"30ms"`). Unknown fields are rejected; missing ones take the
/// defaults below, which are linkerd2-proxy's unless said otherwise.
/// Every duration is at most 365 days, as in [`HealthConfig`].
/// [`validate`](Self::validate) runs when the balancer is built and names
/// the first bad field.
///
/// ```
/// use std::time::Duration;
/// use orch_discovery::balance::{Algorithm, BalancerConfig, ClockSource};
///
/// let config: BalancerConfig = serde_json::from_str(r#"{
///     "name": "payments",
///     "algorithm": { "type": "peak_ewma", "default_rtt": "50ms" },
///     "failfast_timeout": "1s",
///     "clock": "std"
/// }"#).unwrap();
/// let Algorithm::PeakEwma(ewma) = &config.algorithm else { panic!() };
/// assert_eq!(ewma.default_rtt, Duration::from_millis(50));
/// assert_eq!(ewma.decay, Duration::from_secs(10)); // the default
/// assert_eq!(config.clock, ClockSource::Std);
/// config.validate().unwrap();
///
/// let err = BalancerConfig::default()
///     .algorithm(Algorithm::peak_ewma().decay(Duration::ZERO))
///     .validate()
///     .unwrap_err();
/// assert_eq!(err.field_name(), "balancer.algorithm.decay");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BalancerConfig {
    /// The `balancer` label of every metric and the name in tracing events.
    /// Default `"balancer"`.
    #[serde(with = "arc_str")]
    pub name: Arc<str>,
    /// How the endpoint for a request is chosen. Default P2C over peak-EWMA
    /// ([`Algorithm::peak_ewma`]).
    pub algorithm: Algorithm,
    /// How long `poll_ready` waits for a ready endpoint when there is none
    /// before it returns [`BalanceError::NoEndpoints`](super::BalanceError::NoEndpoints);
    /// later calls fail at once until an endpoint is ready again. Zero fails
    /// at once; at most 365 days. Default 3 s (linkerd2-proxy's outbound HTTP
    /// fail-fast timeout).
    #[serde(with = "humantime_serde")]
    pub failfast_timeout: Duration,
    /// How long a broken endpoint (failed connect, `poll_ready` error) waits
    /// before it is connected again.
    pub reconnect: ReconnectBackoff,
    /// Which clock measures latency. Default [`ClockSource::Auto`]: tokio's
    /// clock when it is paused where the balancer is built (tests), the TSC
    /// otherwise; see [`ClockSource`] for why and for the measured costs.
    pub clock: ClockSource,
    /// Seeds the balancer's random numbers, for reproducible picks in tests.
    /// Default `None`: a fresh random seed per balancer.
    pub seed: Option<u64>,
    /// Passive health: outlier ejection (on by default, Envoy's defaults),
    /// the panic threshold (50 %) and slow start (off). See
    /// [`HealthConfig`] and the [module docs](super#passive-health).
    pub health: HealthConfig,
    /// Requests a [`SharedBalancer`](super::SharedBalancer) holds for its
    /// driver before a caller's `poll_ready` waits (backpressure); at
    /// least 1. Default 1024 (tower's `Buffer` leaves the bound to the
    /// caller; 1024 covers bursts of a busy client without holding an
    /// unbounded backlog while no endpoint is ready).
    pub queue_capacity: usize,
}

/// How a [`Balancer`](super::Balancer) chooses the endpoint for a request.
///
/// The first two are the *power of two choices* (P2C, Mitzenmacher): two
/// ready endpoints are drawn at random (in proportion to their weights) and
/// the less loaded one is used. Comparing two random endpoints costs the
/// same for 16 endpoints as for 1,000 and, unlike least-loaded-of-all,
/// does not send a burst of requests to the one endpoint that just looked
/// idle. They differ in what "load" is. The other two ignore load:
/// [`RoundRobin`](Self::RoundRobin) takes turns by weight, and
/// [`Maglev`](Self::Maglev) sends each request key to the same endpoint.
///
/// Every algorithm honours weights (and slow start's ramped weights, except
/// Maglev), skips endpoints that are not ready, and skips ejected ones
/// unless the balancer is in panic mode.
///
/// Serialised with a `type` tag: `{"type": "peak_ewma", "decay": "10s"}`,
/// `{"type": "pending_requests"}`, `{"type": "round_robin"}` or
/// `{"type": "maglev", "table_size": 65537}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Algorithm {
    /// Load is the peak-EWMA response time times the requests in flight
    /// (Finagle's `PeakEwma`, as in linkerd2-proxy and `tower::load`).
    PeakEwma(PeakEwmaConfig),
    /// Load is the number of requests in flight (least-pending).
    PendingRequests(PendingRequestsConfig),
    /// Smooth weighted round robin (nginx's; [`SmoothWrr`](crate::pick::SmoothWrr)):
    /// endpoints take turns in proportion to their weights, interleaved.
    /// Every balancer starts its cycle at a random endpoint (the balancer's
    /// seed), so many clients do not begin in step.
    RoundRobin,
    /// Maglev consistent hashing ([`Maglev`]): a request whose key
    /// [`RequestKey`](super::RequestKey) extracts goes to the same endpoint
    /// every time, on every client with the same endpoints; requests
    /// without a key go to P2C over requests in flight.
    Maglev(MaglevConfig),
}

/// Parameters of [`Algorithm::Maglev`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaglevConfig {
    /// Entries of the lookup table: a prime, at most
    /// [`Maglev::MAX_TABLE_SIZE`]. It should be about 100 times the number
    /// of endpoints for an even spread; with as many endpoints as entries
    /// or more, no table can be built and every request goes to P2C over
    /// requests in flight (logged as a warning). Each entry is 4 bytes;
    /// a table is rebuilt (O(M log M), 3 to 5 ms for the default) when the
    /// membership or a weight changes. Default 65 537 (Envoy's).
    pub table_size: usize,
}

/// Parameters of [`Algorithm::PeakEwma`].
///
/// An endpoint's cost is `rtt × √(in_flight / weight + 1)` (or Finagle's
/// `rtt × (in_flight / weight + 1)`, see [`InFlightBias`]), where `rtt` is
/// a moving average of its response times that jumps to any slower
/// response at once (the *peak*) and decays back over `decay`; it also
/// decays towards zero while the endpoint gets no responses, so a once-slow
/// endpoint is tried again. This algorithm comes from Finagle (Twitter);
/// linkerd2-proxy's `pool-p2c` balancer uses it with the defaults here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeakEwmaConfig {
    /// The response time assumed for an endpoint with no responses yet.
    /// Default 30 ms (linkerd2-proxy; tower's example uses 1 s, which keeps
    /// new endpoints idle for long).
    #[serde(with = "humantime_serde")]
    pub default_rtt: Duration,
    /// The time constant of the moving average: an old response time
    /// weighs `e^(-age / decay)`. Default 10 s (linkerd2-proxy).
    #[serde(with = "humantime_serde")]
    pub decay: Duration,
    /// A response classified as a failure adds this much to the estimate
    /// (on top of what it has decayed to), so an endpoint that fails fast
    /// looks slower with every failure instead of fast. Zero counts failures
    /// by their real latency (as tower does). Default 1 s (our choice: over
    /// thirty times the default RTT; failures in a row add up, so even
    /// against endpoints with dozens of requests in flight a failing one
    /// soon loses every comparison, and is tried again as it decays).
    #[serde(with = "humantime_serde")]
    pub failure_penalty: Duration,
    /// How requests in flight weigh against response time; see
    /// [`InFlightBias`]. Default [`InFlightBias::SquareRoot`].
    pub in_flight_bias: InFlightBias,
}

/// How much an endpoint's requests in flight count against its response
/// time in peak-EWMA's cost, as Envoy's `active_request_bias` does for its
/// least-request balancer.
///
/// Finagle's cost, `rtt × (in_flight + 1)`, assumes an endpoint serves its
/// requests one after another. Servers that serve many at once do not slow
/// down in proportion, and under load that cost makes an idle but very slow
/// endpoint look cheaper than busy fast ones: in the tail-latency simulation
/// (2,000 requests/s over ten endpoints, one ten times slower) it still got
/// 0.2 % of the requests, which put p99.9 at about 3.7× the all-healthy run.
/// With the square root the slow endpoint's share falls below 0.05 % and
/// p99.9 stays within 1.3× (see `benches/tail_latency.rs`); a queue that
/// grows still raises an endpoint's measured `rtt`, so load is not ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InFlightBias {
    /// `rtt × (in_flight / weight + 1)`: Finagle's and linkerd2-proxy's cost.
    Linear,
    /// `rtt × √(in_flight / weight + 1)` (computed as its square, which
    /// orders endpoints the same, without a square root per pick).
    #[default]
    SquareRoot,
}

/// Parameters of [`Algorithm::PendingRequests`].
///
/// An endpoint's load is `(in_flight / weight + 1) × (1 + failures)`, where
/// `failures` counts the endpoint's recent failed responses, each fading
/// as `e^(-age / failure_decay)`. A healthy endpoint reads no clock at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PendingRequestsConfig {
    /// How fast a failure is forgotten. Default 10 s (the peak-EWMA decay).
    #[serde(with = "humantime_serde")]
    pub failure_decay: Duration,
}

/// Exponential backoff with jitter before a broken endpoint is connected
/// again. The `n`-th consecutive failure waits
/// `min(initial × multiplier^(n-1), max)`, spread by `± jitter`. A connection
/// that becomes ready resets the count.
///
/// Defaults are linkerd2-proxy's connect backoff (100 ms to 500 ms, 10 %
/// jitter) with a doubling multiplier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconnectBackoff {
    /// The wait after the first failure. Default 100 ms.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// The longest wait. Default 500 ms.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Growth per consecutive failure; at least 1. Default 2.
    pub multiplier: f64,
    /// Each wait is multiplied by a random factor in `[1 - jitter, 1 + jitter]`
    /// (then capped at `max`); in `[0, 1]`. Default 0.1.
    pub jitter: f64,
}

// ===== impl BalancerConfig =====

impl Default for BalancerConfig {
    fn default() -> Self {
        Self {
            name: Arc::from("balancer"),
            algorithm: Algorithm::default(),
            failfast_timeout: Duration::from_secs(3),
            reconnect: ReconnectBackoff::default(),
            clock: ClockSource::default(),
            seed: None,
            health: HealthConfig::default(),
            queue_capacity: 1024,
        }
    }
}

impl BalancerConfig {
    /// Sets [`name`](Self::name).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets [`algorithm`](Self::algorithm).
    pub fn algorithm(mut self, algorithm: impl Into<Algorithm>) -> Self {
        self.algorithm = algorithm.into();
        self
    }

    /// Sets [`seed`](Self::seed).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    setters! {
        failfast_timeout: Duration,
        reconnect: ReconnectBackoff,
        clock: ClockSource,
        health: HealthConfig,
        queue_capacity: usize,
    }

    /// Checks every field, naming the first bad one with the `balancer.`
    /// prefix (`balancer.reconnect.max`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|e| e.within("balancer"))
    }

    fn check(&self) -> Result<(), ConfigError> {
        check::that(!self.name.is_empty(), "name", "must not be empty")?;
        // Zero is allowed: fail at once when nothing is ready.
        check::at_most_a_year("failfast_timeout", self.failfast_timeout)?;
        check::that(self.queue_capacity > 0, "queue_capacity", "must be at least 1")?;
        let within = |prefix| move |e: ConfigError| e.within(prefix);
        self.algorithm.check().map_err(within("algorithm"))?;
        self.reconnect.check().map_err(within("reconnect"))?;
        self.health.check().map_err(within("health"))
    }
}

// ===== impl Algorithm =====

impl Default for Algorithm {
    fn default() -> Self {
        Self::PeakEwma(PeakEwmaConfig::default())
    }
}

impl Algorithm {
    /// P2C over peak-EWMA with the default parameters.
    pub fn peak_ewma() -> PeakEwmaConfig {
        PeakEwmaConfig::default()
    }

    /// P2C over requests in flight with the default parameters.
    pub fn pending_requests() -> PendingRequestsConfig {
        PendingRequestsConfig::default()
    }

    /// Maglev with the default table size (65 537).
    pub fn maglev() -> MaglevConfig {
        MaglevConfig::default()
    }

    fn check(&self) -> Result<(), ConfigError> {
        match self {
            Self::PeakEwma(ewma) => {
                check::non_zero_duration("default_rtt", ewma.default_rtt)?;
                check::non_zero_duration("decay", ewma.decay)?;
                // Zero is allowed: failures count by their real latency.
                check::at_most_a_year("failure_penalty", ewma.failure_penalty)
            }
            Self::PendingRequests(pending) => {
                check::non_zero_duration("failure_decay", pending.failure_decay)
            }
            Self::RoundRobin => Ok(()),
            Self::Maglev(maglev) => maglev.check(),
        }
    }
}

impl From<MaglevConfig> for Algorithm {
    fn from(config: MaglevConfig) -> Self {
        Self::Maglev(config)
    }
}

// ===== impl MaglevConfig =====

impl Default for MaglevConfig {
    fn default() -> Self {
        Self {
            table_size: Maglev::DEFAULT_TABLE_SIZE,
        }
    }
}

impl MaglevConfig {
    setters! { table_size: usize }

    /// The table size as the pick module checks it (a table over no
    /// endpoints is built without work).
    fn check(&self) -> Result<(), ConfigError> {
        let field = "table_size";
        match Maglev::with_table_size(std::iter::empty(), self.table_size) {
            Ok(_) => Ok(()),
            Err(MaglevError::NotPrime(_)) => Err(ConfigError::field(
                field,
                "must be a prime number (65537 is the usual choice)",
            )),
            Err(MaglevError::TooLarge(_)) => Err(ConfigError::field(field, "must be at most 5000011")),
            Err(_) => Err(ConfigError::field(field, "cannot be used for a Maglev table")),
        }
    }
}

impl From<PeakEwmaConfig> for Algorithm {
    fn from(config: PeakEwmaConfig) -> Self {
        Self::PeakEwma(config)
    }
}

impl From<PendingRequestsConfig> for Algorithm {
    fn from(config: PendingRequestsConfig) -> Self {
        Self::PendingRequests(config)
    }
}

impl Default for PeakEwmaConfig {
    fn default() -> Self {
        Self {
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(10),
            failure_penalty: Duration::from_secs(1),
            in_flight_bias: InFlightBias::default(),
        }
    }
}

impl PeakEwmaConfig {
    setters! {
        default_rtt: Duration,
        decay: Duration,
        failure_penalty: Duration,
        in_flight_bias: InFlightBias,
    }
}

impl Default for PendingRequestsConfig {
    fn default() -> Self {
        Self {
            failure_decay: Duration::from_secs(10),
        }
    }
}

impl PendingRequestsConfig {
    setters! { failure_decay: Duration }
}

// ===== impl ReconnectBackoff =====

impl Default for ReconnectBackoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
            multiplier: 2.0,
            jitter: 0.1,
        }
    }
}

impl ReconnectBackoff {
    setters! { initial: Duration, max: Duration, multiplier: f64, jitter: f64 }

    /// The wait before the next connect after `failures` consecutive
    /// failures (at least 1).
    pub(crate) fn delay(&self, failures: u32, rng: &mut Rng) -> Duration {
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let max = self.max.as_secs_f64();
        let base = (self.initial.as_secs_f64() * self.multiplier.powi(exponent)).min(max);
        let spread = 1.0 + self.jitter * (2.0 * rng.next_f64() - 1.0);
        Duration::from_secs_f64((base * spread).clamp(0.0, max))
    }

    fn check(&self) -> Result<(), ConfigError> {
        check::non_zero_duration("initial", self.initial)?;
        check::that(self.max >= self.initial, "max", "must be at least `initial`")?;
        // Bounded because a reconnect is scheduled at `now + delay`, which
        // would overflow (and panic) for a delay near `Duration::MAX`.
        check::at_most_a_year("max", self.max)?;
        check::that(
            self.multiplier.is_finite() && self.multiplier >= 1.0,
            "multiplier",
            "must be a finite number, at least 1",
        )?;
        check::that(
            (0.0..=1.0).contains(&self.jitter),
            "jitter",
            "must be between 0 and 1",
        )
    }
}

/// `Arc<str>` as a plain string in serde.
mod arc_str {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<str>, D::Error> {
        String::deserialize(deserializer).map(Arc::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_named() {
        let bad = |config: BalancerConfig| config.validate().unwrap_err().field_name().to_owned();
        let base = BalancerConfig::default;
        assert_eq!(
            bad(base().algorithm(Algorithm::peak_ewma().default_rtt(Duration::ZERO))),
            "balancer.algorithm.default_rtt"
        );
        assert_eq!(
            bad(base().algorithm(Algorithm::pending_requests().failure_decay(Duration::ZERO))),
            "balancer.algorithm.failure_decay"
        );
        let backoff = ReconnectBackoff::default;
        assert_eq!(
            bad(base().reconnect(backoff().initial(Duration::ZERO))),
            "balancer.reconnect.initial"
        );
        assert_eq!(
            bad(base().reconnect(backoff().max(Duration::from_millis(1)))),
            "balancer.reconnect.max"
        );
        assert_eq!(
            bad(base().reconnect(backoff().multiplier(f64::NAN))),
            "balancer.reconnect.multiplier"
        );
        assert_eq!(
            bad(base().reconnect(backoff().jitter(1.5))),
            "balancer.reconnect.jitter"
        );
        assert_eq!(
            bad(base().algorithm(Algorithm::maglev().table_size(65_535))),
            "balancer.algorithm.table_size"
        );
        assert_eq!(
            bad(base().algorithm(Algorithm::maglev().table_size(5_000_101))),
            "balancer.algorithm.table_size"
        );
        let outlier = crate::health::OutlierConfig::default().max_ejection_percent(101);
        assert_eq!(
            bad(base().health(HealthConfig::default().outlier_detection(outlier))),
            "balancer.health.outlier_detection.max_ejection_percent"
        );
        assert_eq!(
            bad(base().health(HealthConfig::default().healthy_panic_threshold(-1.0))),
            "balancer.health.healthy_panic_threshold"
        );
        // `Balancer::new` relies on the default being valid.
        base().validate().unwrap();
        base().failfast_timeout(Duration::ZERO).validate().unwrap();
        assert_eq!(
            bad(base().failfast_timeout(Duration::MAX)),
            "balancer.failfast_timeout"
        );
        // Every duration is bounded by a year, and the bound names its field.
        let year = Duration::from_secs(365 * 24 * 60 * 60);
        let too_long = year + Duration::from_secs(1);
        let ewma = Algorithm::peak_ewma;
        let too_long_is = |config: BalancerConfig, field: &str| {
            let err = config.validate().unwrap_err();
            assert_eq!(
                (err.field_name(), err.reason()),
                (field, "must be at most 365 days")
            );
        };
        too_long_is(
            base().algorithm(ewma().default_rtt(too_long)),
            "balancer.algorithm.default_rtt",
        );
        too_long_is(
            base().algorithm(ewma().decay(Duration::MAX)),
            "balancer.algorithm.decay",
        );
        too_long_is(
            base().algorithm(ewma().failure_penalty(too_long)),
            "balancer.algorithm.failure_penalty",
        );
        too_long_is(
            base().algorithm(Algorithm::pending_requests().failure_decay(too_long)),
            "balancer.algorithm.failure_decay",
        );
        too_long_is(
            base().reconnect(backoff().initial(too_long).max(too_long)),
            "balancer.reconnect.initial",
        );
        // Near `Duration::MAX` a reconnect deadline would overflow.
        too_long_is(
            base().reconnect(backoff().max(Duration::MAX)),
            "balancer.reconnect.max",
        );
        too_long_is(base().failfast_timeout(too_long), "balancer.failfast_timeout");
        base()
            .algorithm(ewma().failure_penalty(Duration::ZERO))
            .reconnect(backoff().initial(year).max(year))
            .failfast_timeout(year)
            .validate()
            .unwrap();
        base()
            .algorithm(Algorithm::maglev().table_size(11))
            .validate()
            .unwrap();
        base().algorithm(Algorithm::RoundRobin).validate().unwrap();
    }

    #[test]
    fn round_trips_through_serde_with_humantime_durations() {
        let config = BalancerConfig::default()
            .name("api")
            .algorithm(Algorithm::pending_requests())
            .seed(7);
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["failfast_timeout"], "3s");
        assert_eq!(json["algorithm"]["type"], "pending_requests");
        assert_eq!(json["clock"], "auto");
        let back: BalancerConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
        assert!(serde_json::from_str::<BalancerConfig>(r#"{"nmae": "x"}"#).is_err());

        for algorithm in [Algorithm::RoundRobin, Algorithm::maglev().table_size(101).into()] {
            let config = BalancerConfig::default().algorithm(algorithm);
            let back: BalancerConfig =
                serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
            assert_eq!(back, config);
        }
        let config: BalancerConfig = serde_json::from_str(
            r#"{"algorithm": {"type": "maglev"}, "health": {"slow_start": {"window": "1m"}}}"#,
        )
        .unwrap();
        assert_eq!(config.algorithm, Algorithm::Maglev(MaglevConfig::default()));
        assert_eq!(config.health.slow_start.unwrap().window, Duration::from_secs(60));
        let rr: BalancerConfig = serde_json::from_str(r#"{"algorithm": {"type": "round_robin"}}"#).unwrap();
        assert_eq!(rr.algorithm, Algorithm::RoundRobin);
    }

    #[test]
    fn backoff_grows_to_its_cap_within_the_jitter() {
        let backoff = ReconnectBackoff::default();
        let mut rng = Rng::seeded(3);
        for _ in 0..100 {
            let first = backoff.delay(1, &mut rng);
            assert!((Duration::from_millis(90)..=Duration::from_millis(110)).contains(&first));
            let second = backoff.delay(2, &mut rng);
            assert!((Duration::from_millis(180)..=Duration::from_millis(220)).contains(&second));
            let late = backoff.delay(40, &mut rng);
            assert!((Duration::from_millis(450)..=Duration::from_millis(500)).contains(&late));
        }
        let exact = backoff.jitter(0.0);
        assert_eq!(exact.delay(1, &mut rng), Duration::from_millis(100));
        assert_eq!(exact.delay(u32::MAX, &mut rng), Duration::from_millis(500));
    }
}

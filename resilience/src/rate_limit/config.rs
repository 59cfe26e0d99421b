use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{RateLimitLayer, RateLimiter, gcra};
use crate::{
    clock::ClockSource,
    config::{ConfigError, check},
};

/// Configuration of a [`RateLimiter`] (and so of a [`RateLimitLayer`]), as
/// plain data that can be loaded from a file or the environment.
///
/// The sustained rate is `permits` per `per`; `burst` calls may be made at
/// once after a quiet period. `"permits": 100, "per": "1s", "burst": 10` means
/// one call every 10 ms on average, never more than 10 back to back.
///
/// Defaults: 50 permits per second (Resilience4j's `limitForPeriod`, over a
/// second rather than its 500 ns refresh period), a burst equal to `permits`
/// (`governor`'s `Quota::per_second`), and no waiting (`max_wait` zero), so a
/// call without a permit fails at once.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::RateLimitConfig;
///
/// let config: RateLimitConfig = serde_json::from_str(
///     r#"{ "name": "api", "permits": 100, "per": "1s", "burst": 10, "max_wait": "20ms" }"#,
/// )
/// .unwrap();
/// assert_eq!(config.max_wait, Duration::from_millis(20));
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let limiter = config.limiter().unwrap();
/// assert_eq!(limiter.interval(), Duration::from_millis(10));
/// # });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Name used in errors, tracing events and metric labels. Default `"rate_limit"`.
    pub name: String,
    /// Permits per `per` at the sustained rate. Must not be zero, nor more
    /// than one per nanosecond. Default 50.
    pub permits: u32,
    /// The period over which `permits` are granted. Must not be zero. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    /// Calls that may be made back to back after a quiet period (the
    /// bucket's capacity). Must not be zero. `None` (the default) means
    /// `permits`.
    pub burst: Option<u32>,
    /// A call without a permit waits for one when it is at most this far
    /// away, and is rejected otherwise. Default zero: never wait.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// The clock read on every call, `"tokio"` (the default: follows paused
    /// time in tests) or `"tsc"` (the CPU's time-stamp counter, about 2.5×
    /// cheaper to read; see [`ClockSource`]).
    pub clock: ClockSource,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            name: super::DEFAULT_NAME.to_owned(),
            permits: 50,
            per: Duration::from_secs(1),
            burst: None,
            max_wait: Duration::ZERO,
            clock: ClockSource::Tokio,
        }
    }
}

impl RateLimitConfig {
    /// A config of `permits` per `per`, other fields at their defaults.
    pub fn new(permits: u32, per: Duration) -> Self {
        Self {
            permits,
            per,
            ..Self::default()
        }
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the permits per period.
    pub fn permits(mut self, permits: u32) -> Self {
        self.permits = permits;
        self
    }

    /// Sets the period.
    pub fn per(mut self, per: Duration) -> Self {
        self.per = per;
        self
    }

    /// Sets the burst.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Sets how long a call may wait for a permit.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Sets the clock read on every call.
    pub fn clock(mut self, clock: ClockSource) -> Self {
        self.clock = clock;
        self
    }

    /// The burst in effect: `burst`, or `permits` when unset.
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or(self.permits)
    }

    /// Rejects zero `rate_limit.permits`, `rate_limit.per` or
    /// `rate_limit.burst`, a rate above one permit per nanosecond (the
    /// resolution of the clock the limiter counts in), and a burst that takes
    /// more than 100 years to refill (named `rate_limit.burst`, or
    /// `rate_limit.per` when the burst defaults to `permits`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check::non_zero("rate_limit.permits", self.permits)?;
        check::non_zero_duration("rate_limit.per", self.per)?;
        if let Some(burst) = self.burst {
            check::non_zero("rate_limit.burst", burst)?;
        }
        if u128::from(self.permits) > self.per.as_nanos() {
            return Err(ConfigError::field(
                "rate_limit.permits",
                "must be at most one per nanosecond of `per`",
            ));
        }
        let tolerance =
            u128::from(gcra::interval_nanos(self.permits, self.per)) * u128::from(self.effective_burst());
        if tolerance > u128::from(gcra::MAX_TOLERANCE_NANOS) {
            let field = if self.burst.is_some() {
                "rate_limit.burst"
            } else {
                "rate_limit.per"
            };
            return Err(ConfigError::field(
                field,
                "the time to refill a whole burst (burst × per / permits) must be at most 100 years",
            ));
        }
        Ok(())
    }

    /// Validates the config and creates a standalone limiter.
    ///
    /// With the default clock the limiter reads tokio's clock from now on:
    /// create it inside the runtime that uses it, so that paused time in
    /// tests applies to it.
    pub fn limiter(self) -> Result<RateLimiter, ConfigError> {
        RateLimiter::new(self)
    }

    /// Validates the config and builds the layer.
    pub fn build(self) -> Result<RateLimitLayer, ConfigError> {
        RateLimitLayer::new(self)
    }
}

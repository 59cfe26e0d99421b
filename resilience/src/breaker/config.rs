//! The breaker's configuration: plain data, validated when the breaker is built.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, check};

use super::CircuitBreaker;

/// The largest count window, per shard: each slot is one byte, and a window
/// of a million calls is already far past what a failure rate needs.
const MAX_WINDOW_SIZE: u32 = 1 << 20;

/// The most buckets a time window may have.
const MAX_BUCKETS: u32 = 3_600;

/// The narrowest time bucket.
const MIN_BUCKET_WIDTH: Duration = Duration::from_millis(1);

/// Configuration of a [`CircuitBreaker`].
///
/// Plain data: every field is public, can be set with a builder-style
/// setter of the same name, and (de)serialises with `serde`, durations in
/// humantime form (`"30s"`, `"1m 30s"`). Unknown fields are rejected, and
/// missing ones take the defaults below, which are Resilience4j's
/// (`CircuitBreakerConfig.ofDefaults()`) unless said otherwise.
///
/// Nothing is checked until the breaker is built
/// ([`CircuitBreaker::new`], [`build`](Self::build),
/// [`CircuitBreakerLayer::new`](super::CircuitBreakerLayer::new)); then
/// [`validate`](Self::validate) refuses any value that cannot work, naming the
/// field (`breaker.window.size`).
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::breaker::{CircuitBreakerConfig, SlidingWindow};
///
/// let config: CircuitBreakerConfig = serde_json::from_str(r#"{
///     "name": "payments",
///     "window": { "type": "time", "length": "30s" },
///     "minimum_calls": 20,
///     "slow_call_duration": "2s",
///     "open_wait": "10s",
///     "open_wait_multiplier": 2.0,
///     "open_wait_max": "5m"
/// }"#).unwrap();
/// assert_eq!(config.window, SlidingWindow::Time { length: Duration::from_secs(30), buckets: None });
/// assert_eq!(config.failure_rate_threshold, 0.5); // the default
///
/// let breaker = config.build().unwrap();
/// assert_eq!(breaker.name(), "payments");
///
/// let err = CircuitBreakerConfig::default().minimum_calls(0).validate().unwrap_err();
/// assert_eq!(err.field_name(), "breaker.minimum_calls");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Name used in errors, tracing events and the `name` metric label.
    /// Default `"breaker"`. A [`BreakerRegistry`](super::BreakerRegistry)
    /// replaces it with the name it files the breaker under.
    #[serde(with = "arc_str")]
    pub name: Arc<str>,
    /// Which calls the closed breaker judges. Default: the last 100 calls
    /// (Resilience4j's `COUNT_BASED` window of 100).
    pub window: SlidingWindow,
    /// Trip when at least this share of the calls in the window failed
    /// (`failures / calls >= threshold`). In `(0, 1]`; default `0.5`
    /// (Resilience4j's 50%).
    pub failure_rate_threshold: f64,
    /// Trip when at least this share of the calls in the window were slow.
    /// In `(0, 1]`; default `1.0` (Resilience4j's 100%: only trip when every
    /// call is slow). Ignored without [`slow_call_duration`](Self::slow_call_duration).
    pub slow_call_rate_threshold: f64,
    /// A call that takes longer than this (strictly, as in Resilience4j) is
    /// slow, whether it succeeded or failed. Default `None`: no slow-call
    /// detection, and no clock read per call. (Resilience4j always detects,
    /// with 60 s; here the cost is opt-in.)
    #[serde(with = "humantime_serde::option")]
    pub slow_call_duration: Option<Duration>,
    /// Also trip after this many failures in a row, whatever the window
    /// says (a success resets the count). Default `None` (not in
    /// Resilience4j; the rule of Polly's basic breaker and of failsafe).
    pub consecutive_failures: Option<u32>,
    /// Rates are not judged until the window holds at least this many calls.
    /// Default `100` (Resilience4j). For a count window it is capped at the
    /// window size, as Resilience4j does.
    pub minimum_calls: u32,
    /// How long the breaker stays open before it lets trial calls through.
    /// Default 60 s (Resilience4j).
    #[serde(with = "humantime_serde")]
    pub open_wait: Duration,
    /// Each time trial calls fail and the breaker opens again, the open wait
    /// is multiplied by this, up to [`open_wait_max`](Self::open_wait_max); it
    /// goes back to [`open_wait`](Self::open_wait) once the breaker closes.
    /// At least 1; default `1.0` (a constant wait, as Resilience4j's default).
    pub open_wait_multiplier: f64,
    /// The longest open wait the multiplier can reach. At least
    /// [`open_wait`](Self::open_wait); required when the multiplier is above
    /// 1, so a wait never grows without bound. Default `None`.
    #[serde(with = "humantime_serde::option")]
    pub open_wait_max: Option<Duration>,
    /// How many trial calls the half-open breaker lets through; it closes
    /// when all of them are recorded and the rates stay below the thresholds.
    /// Default `10` (Resilience4j).
    pub half_open_permits: u32,
    /// The longest the breaker stays half-open without a decision (trials
    /// still running or never arriving); then it opens again, as after failed
    /// trials (the open wait grows by the multiplier). Default `None`: stay
    /// half-open until the trials decide (Resilience4j's 0).
    #[serde(with = "humantime_serde::option")]
    pub max_half_open_wait: Option<Duration>,
}

/// Which calls a closed breaker judges.
///
/// Serialised with a `type` tag: `{"type": "count", "size": 100}` or
/// `{"type": "time", "length": "60s", "buckets": 60}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SlidingWindow {
    /// The last `size` calls (Resilience4j's `COUNT_BASED` window). Costs
    /// no clock read.
    Count {
        /// Number of calls kept. At most 1 048 576.
        size: u32,
    },
    /// The calls of the last `length`, kept in `buckets` buckets of
    /// `length / buckets` each (Resilience4j's `TIME_BASED` window, whose
    /// buckets are one second). A call leaves the window when its bucket
    /// does: between `length - length / buckets` and `length` after it was
    /// recorded. Costs a clock read per call.
    Time {
        /// How much history the window keeps.
        #[serde(with = "humantime_serde")]
        length: Duration,
        /// Number of buckets; default (`None`) one per whole second of
        /// `length` (at least one), as Resilience4j. At most 3 600, and
        /// buckets must be at least 1 ms wide.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        buckets: Option<u32>,
    },
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            name: Arc::from("breaker"),
            window: SlidingWindow::default(),
            failure_rate_threshold: 0.5,
            slow_call_rate_threshold: 1.0,
            slow_call_duration: None,
            consecutive_failures: None,
            minimum_calls: 100,
            open_wait: Duration::from_secs(60),
            open_wait_multiplier: 1.0,
            open_wait_max: None,
            half_open_permits: 10,
            max_half_open_wait: None,
        }
    }
}

impl Default for SlidingWindow {
    /// The last 100 calls (Resilience4j's default).
    fn default() -> Self {
        Self::Count { size: 100 }
    }
}

impl SlidingWindow {
    /// The number of buckets of a time window (the explicit value, or one
    /// per whole second, at least one); `None` for a count window.
    pub fn bucket_count(&self) -> Option<u32> {
        match *self {
            Self::Count { .. } => None,
            Self::Time { buckets: Some(n), .. } => Some(n),
            Self::Time {
                length,
                buckets: None,
            } => Some(
                u32::try_from(length.as_secs())
                    .unwrap_or(u32::MAX)
                    .clamp(1, MAX_BUCKETS),
            ),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Self::Count { size } => {
                check::non_zero("window.size", size)?;
                if size > MAX_WINDOW_SIZE {
                    return Err(ConfigError::field("window.size", "must be at most 1048576"));
                }
            }
            Self::Time { length, buckets } => {
                check::non_zero_duration("window.length", length)?;
                if let Some(n) = buckets {
                    check::non_zero("window.buckets", n)?;
                    if n > MAX_BUCKETS {
                        return Err(ConfigError::field("window.buckets", "must be at most 3600"));
                    }
                }
                if length / self.bucket_count().unwrap_or(1) < MIN_BUCKET_WIDTH {
                    let reason = "too many for the window length: buckets must be at least 1ms wide";
                    return Err(ConfigError::field("window.buckets", reason));
                }
            }
        }
        Ok(())
    }
}

/// Builder-style setters named after their fields: `field: Type` sets the
/// field, `field: Type => Some` an optional one (as the `idempotency` config).
macro_rules! setters {
    (@wrap $value:ident) => { $value };
    (@wrap $value:ident $wrap:ident) => { $wrap($value) };
    ($($(#[$doc:meta])* $field:ident: $ty:ty $(=> $wrap:ident)?,)*) => {$(
        $(#[$doc])*
        pub fn $field(mut self, $field: $ty) -> Self {
            self.$field = setters!(@wrap $field $($wrap)?);
            self
        }
    )*};
}

impl CircuitBreakerConfig {
    /// Checks every field, naming the first bad one with the `breaker.`
    /// prefix (`breaker.window.size`, `breaker.open_wait_max`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_at("breaker")
    }

    /// [`validate`](Self::validate) with another prefix, for configs nested
    /// in a registry (`breakers.payments.minimum_calls`).
    pub(crate) fn validate_at(&self, prefix: &str) -> Result<(), ConfigError> {
        self.validate_fields().map_err(|e| e.within(prefix))
    }

    fn validate_fields(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::field("name", "must not be empty"));
        }
        self.window.validate()?;
        check::rate("failure_rate_threshold", self.failure_rate_threshold)?;
        check::rate("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        if let Some(slow) = self.slow_call_duration {
            check::non_zero_duration("slow_call_duration", slow)?;
        }
        if let Some(n) = self.consecutive_failures {
            check::non_zero("consecutive_failures", n)?;
        }
        check::non_zero("minimum_calls", self.minimum_calls)?;
        check::non_zero_duration("open_wait", self.open_wait)?;
        if !(self.open_wait_multiplier.is_finite() && self.open_wait_multiplier >= 1.0) {
            let reason = "must be a finite number, 1 or more";
            return Err(ConfigError::field("open_wait_multiplier", reason));
        }
        match self.open_wait_max {
            Some(max) if max < self.open_wait => {
                return Err(ConfigError::field("open_wait_max", "must be at least open_wait"));
            }
            None if self.open_wait_multiplier > 1.0 => {
                let reason = "must be set when open_wait_multiplier is above 1";
                return Err(ConfigError::field("open_wait_max", reason));
            }
            _ => {}
        }
        check::non_zero("half_open_permits", self.half_open_permits)?;
        if let Some(wait) = self.max_half_open_wait {
            check::non_zero_duration("max_half_open_wait", wait)?;
        }
        Ok(())
    }

    /// Validates the config and builds a breaker from it.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        CircuitBreaker::new(self)
    }

    /// Sets [`name`](Self::name).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    setters! {
        /// Sets [`window`](Self::window).
        window: SlidingWindow,
        /// Sets [`failure_rate_threshold`](Self::failure_rate_threshold).
        failure_rate_threshold: f64,
        /// Sets [`slow_call_rate_threshold`](Self::slow_call_rate_threshold).
        slow_call_rate_threshold: f64,
        /// Sets [`slow_call_duration`](Self::slow_call_duration), turning slow-call detection on.
        slow_call_duration: Duration => Some,
        /// Sets [`consecutive_failures`](Self::consecutive_failures).
        consecutive_failures: u32 => Some,
        /// Sets [`minimum_calls`](Self::minimum_calls).
        minimum_calls: u32,
        /// Sets [`open_wait`](Self::open_wait).
        open_wait: Duration,
        /// Sets [`half_open_permits`](Self::half_open_permits).
        half_open_permits: u32,
        /// Sets [`max_half_open_wait`](Self::max_half_open_wait).
        max_half_open_wait: Duration => Some,
    }

    /// Judges the last `size` calls: `window(SlidingWindow::Count { size })`.
    pub fn count_window(self, size: u32) -> Self {
        self.window(SlidingWindow::Count { size })
    }

    /// Judges the calls of the last `length`, in one-second buckets:
    /// `window(SlidingWindow::Time { length, buckets: None })`.
    pub fn time_window(self, length: Duration) -> Self {
        self.window(SlidingWindow::Time {
            length,
            buckets: None,
        })
    }

    /// Sets [`open_wait_multiplier`](Self::open_wait_multiplier) and
    /// [`open_wait_max`](Self::open_wait_max): the open wait grows by
    /// `multiplier` on each re-open, up to `max`.
    pub fn open_wait_backoff(mut self, multiplier: f64, max: Duration) -> Self {
        self.open_wait_multiplier = multiplier;
        self.open_wait_max = Some(max);
        self
    }

    /// The minimum number of calls as judged: capped at the size of a count
    /// window (Resilience4j does the same).
    pub(crate) fn effective_minimum_calls(&self) -> u64 {
        match self.window {
            SlidingWindow::Count { size } => u64::from(self.minimum_calls.min(size)),
            SlidingWindow::Time { .. } => u64::from(self.minimum_calls),
        }
    }

    /// The open wait after `reopens` consecutive re-opens:
    /// `open_wait * multiplier^reopens`, at most `open_wait_max`.
    pub(crate) fn open_wait_after(&self, reopens: u32) -> Duration {
        if reopens == 0 || self.open_wait_multiplier <= 1.0 {
            return self.open_wait;
        }
        let max = self.open_wait_max.unwrap_or(self.open_wait);
        let factor = self
            .open_wait_multiplier
            .powi(i32::try_from(reopens).unwrap_or(i32::MAX));
        let nanos = self.open_wait.as_nanos() as f64 * factor;
        if !nanos.is_finite() || nanos >= max.as_nanos() as f64 {
            max
        } else {
            // `nanos` is finite, non-negative and below `max`, so it fits a u64.
            Duration::from_nanos(nanos as u64)
        }
    }
}

/// Serialises an `Arc<str>` as a string (serde's `rc` feature is not enabled
/// for this crate, and a name needs no sharing on the wire).
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
    fn backoff_grows_to_the_max_and_defaults_are_constant() {
        let config = CircuitBreakerConfig::default()
            .open_wait(Duration::from_secs(1))
            .open_wait_backoff(2.0, Duration::from_secs(5));
        let waits: Vec<_> = (0..5).map(|k| config.open_wait_after(k).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(config.open_wait_after(u32::MAX), Duration::from_secs(5));
        let constant = CircuitBreakerConfig::default();
        assert_eq!(constant.open_wait_after(7), Duration::from_secs(60));
    }

    #[test]
    fn default_buckets_are_one_per_second() {
        let w = SlidingWindow::Time {
            length: Duration::from_secs(60),
            buckets: None,
        };
        assert_eq!(w.bucket_count(), Some(60));
        let w = SlidingWindow::Time {
            length: Duration::from_millis(500),
            buckets: None,
        };
        assert_eq!(w.bucket_count(), Some(1));
        assert!(w.validate().is_ok());
        let w = SlidingWindow::Time {
            length: Duration::from_millis(10),
            buckets: Some(20),
        };
        assert_eq!(w.validate().unwrap_err().field_name(), "window.buckets");
    }

    #[test]
    fn minimum_is_capped_by_a_count_window() {
        let c = CircuitBreakerConfig::default().count_window(10).minimum_calls(50);
        assert_eq!(c.effective_minimum_calls(), 10);
        let c = c.time_window(Duration::from_secs(10));
        assert_eq!(c.effective_minimum_calls(), 50);
    }
}

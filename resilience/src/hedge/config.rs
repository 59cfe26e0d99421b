//! Configuration of the hedging layer.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::layer::HedgeLayer;
use crate::config::{ConfigError, check};

/// How long a hedged call waits for an answer before it sends the request
/// again.
///
/// In JSON (or any `serde` format), durations are human-readable and the
/// percentile fields may be left out to take their defaults:
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::HedgeDelay;
///
/// let fixed: HedgeDelay = serde_json::from_str(r#"{ "fixed": "50ms" }"#).unwrap();
/// assert_eq!(fixed, HedgeDelay::Fixed(Duration::from_millis(50)));
///
/// let p99: HedgeDelay = serde_json::from_str(r#"{ "percentile": { "percentile": 0.99 } }"#).unwrap();
/// assert_eq!(p99, HedgeDelay::percentile(0.99));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HedgeDelay {
    /// Always wait this long. Zero sends every attempt at once (Polly's
    /// parallel mode): the fastest success wins, at the price of multiplying
    /// the load by `1 + max_hedged_attempts`.
    Fixed(#[serde(with = "humantime_serde")] Duration),
    /// Wait as long as the `percentile` of recent latencies of this layer's
    /// calls, so that only the slowest `1 - percentile` of calls are hedged
    /// and the extra load stays near that fraction.
    Percentile {
        /// Which percentile, as a fraction in `(0, 1]`: 0.95 hedges the calls
        /// slower than 95% of recent ones. Default 0.95.
        #[serde(default = "defaults::percentile")]
        percentile: f64,
        /// Samples needed in the tracked windows before the percentile is
        /// trusted; below it `fallback` is used. At least 1. Default 100.
        #[serde(default = "defaults::min_samples")]
        min_samples: u64,
        /// Length of one tracking window; the percentile is taken over the
        /// current and the previous window, so it follows a change in latency
        /// within one to two windows. Not zero. Default 10 seconds.
        #[serde(default = "defaults::window", with = "humantime_serde")]
        window: Duration,
        /// The delay while there are fewer than `min_samples` samples.
        /// Default 2 seconds (Polly's default hedging delay).
        #[serde(default = "defaults::fallback", with = "humantime_serde")]
        fallback: Duration,
    },
}

/// Configuration of a [`HedgeLayer`]: a plain `serde` struct, validated when
/// the layer is built.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::{HedgeConfig, HedgeDelay};
///
/// let config: HedgeConfig = serde_json::from_str(
///     r#"{ "name": "catalog", "delay": { "fixed": "40ms" }, "max_hedged_attempts": 2 }"#,
/// )
/// .unwrap();
/// assert_eq!(
///     config,
///     HedgeConfig::default()
///         .name("catalog")
///         .delay(HedgeDelay::Fixed(Duration::from_millis(40)))
///         .max_hedged_attempts(2)
/// );
///
/// let err = HedgeConfig::default().max_hedged_attempts(0).validate().unwrap_err();
/// assert_eq!(err.field_name(), "hedge.max_hedged_attempts");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HedgeConfig {
    /// Name used in errors, tracing events and the `name` label of metrics.
    /// Not empty. Default `"hedge"`.
    pub name: String,
    /// When to send the next attempt. Default: the 95th percentile of recent
    /// latencies ([`HedgeDelay::percentile`]`(0.95)`), after Dean and
    /// Barroso's "The Tail at Scale" (CACM 2013), where hedging at p95 cut the
    /// tail sharply for about 5% more load.
    pub delay: HedgeDelay,
    /// Attempts sent in addition to the first, between 1 and
    /// [`MAX_HEDGED_ATTEMPTS`](Self::MAX_HEDGED_ATTEMPTS). Default 1 (Polly's
    /// `MaxHedgedAttempts`).
    pub max_hedged_attempts: u32,
}

impl HedgeConfig {
    /// The largest accepted `max_hedged_attempts` (Polly's bound): beyond it
    /// hedging multiplies load more than it shortens the tail.
    pub const MAX_HEDGED_ATTEMPTS: u32 = 10;

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the hedging delay.
    pub fn delay(mut self, delay: HedgeDelay) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the number of attempts sent in addition to the first.
    pub fn max_hedged_attempts(mut self, attempts: u32) -> Self {
        self.max_hedged_attempts = attempts;
        self
    }

    /// Checks every field; the error names the first bad one as
    /// `hedge.<field>` (`hedge.delay.percentile`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_fields().map_err(|e| e.within("hedge"))
    }

    fn validate_fields(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::field("name", "must not be empty"));
        }
        if !(1..=Self::MAX_HEDGED_ATTEMPTS).contains(&self.max_hedged_attempts) {
            return Err(ConfigError::field(
                "max_hedged_attempts",
                "must be between 1 and 10",
            ));
        }
        self.delay.validate().map_err(|e| e.within("delay"))
    }

    /// Validates the config and builds the layer, with the default classifier
    /// and HTTP safety rules (see [`HedgeLayer`] to change them).
    pub fn build(self) -> Result<HedgeLayer, ConfigError> {
        HedgeLayer::new(self)
    }
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            name: "hedge".to_owned(),
            delay: HedgeDelay::default(),
            max_hedged_attempts: 1,
        }
    }
}

impl HedgeDelay {
    /// A fixed delay.
    pub const fn fixed(delay: Duration) -> Self {
        Self::Fixed(delay)
    }

    /// A delay at `percentile` of recent latencies, with the default
    /// `min_samples` (100), `window` (10s) and `fallback` (2s).
    pub const fn percentile(percentile: f64) -> Self {
        Self::Percentile {
            percentile,
            min_samples: defaults::min_samples(),
            window: defaults::window(),
            fallback: defaults::fallback(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Self::Fixed(_) => Ok(()),
            Self::Percentile {
                percentile,
                min_samples,
                window,
                fallback: _,
            } => {
                check::rate("percentile", percentile)?;
                check::non_zero("min_samples", min_samples)?;
                check::non_zero_duration("window", window)
            }
        }
    }
}

impl Default for HedgeDelay {
    fn default() -> Self {
        Self::percentile(defaults::percentile())
    }
}

/// Defaults of the percentile delay, shared by `Default` and `serde`
/// (`const fn`s, as `serde(default = ...)` takes a function).
mod defaults {
    use std::time::Duration;

    /// "The Tail at Scale": hedging at p95 adds about 5% load.
    pub(super) const fn percentile() -> f64 {
        0.95
    }
    /// Below a hundred samples, p95 rests on fewer than five observations.
    pub(super) const fn min_samples() -> u64 {
        100
    }
    /// Ten seconds hold a hundred samples at ten calls a second, and a shift
    /// in latency reaches the percentile within ten to twenty seconds.
    pub(super) const fn window() -> Duration {
        Duration::from_secs(10)
    }
    /// Polly's default hedging delay.
    pub(super) const fn fallback() -> Duration {
        Duration::from_secs(2)
    }
}

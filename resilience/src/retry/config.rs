//! The retry layer's configuration: plain `serde` data, validated when the
//! layer is built.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, check};

/// Configuration of a [`RetryLayer`](super::RetryLayer).
///
/// Every field has a default, so a config file names only what it changes.
/// Durations are human-readable (`"100ms"`, `"2s"`).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `name` | `"retry"` | label in errors, events and metrics |
/// | `max_attempts` | 3 | attempts per call, counting the first (Resilience4j's `maxAttempts`) |
/// | `backoff` | exponential, 100 ms doubling to 1 s, full jitter | delay before each retry, see [`BackoffConfig`] |
/// | `attempt_timeout` | none | limit on one attempt; an attempt that exceeds it is retryable |
/// | `overall_timeout` | none | limit on the whole call, all attempts and delays included |
/// | `budget` | Finagle's: 10 s window, 10 retries/s, 20 % of requests | see [`RetryBudgetConfig`]; `null` turns it off |
/// | `throttle` | none | gRPC retry throttling (gRFC A6), see [`RetryThrottleConfig`] |
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::RetryConfig;
///
/// let config: RetryConfig = serde_json::from_str(
///     r#"{"max_attempts": 4, "attempt_timeout": "250ms", "overall_timeout": "2s", "budget": null}"#,
/// ).unwrap();
/// assert_eq!(config.attempt_timeout, Some(Duration::from_millis(250)));
/// assert!(config.budget.is_none());
/// assert!(config.validate().is_ok());
///
/// let bad = RetryConfig::default().max_attempts(0);
/// assert_eq!(bad.validate().unwrap_err().field_name(), "retry.max_attempts");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Name used in errors, `tracing` events and the `name` label of metrics.
    pub name: String,
    /// Attempts per call, counting the first; 1 turns retries off. At least 1.
    pub max_attempts: u32,
    /// The delays between attempts.
    pub backoff: BackoffConfig,
    /// Limit on one attempt. An attempt that runs longer is cancelled and its
    /// result is `ResilienceError::Timeout { kind: Attempt, .. }`, which the
    /// default classifiers treat as retryable. At most `overall_timeout`.
    #[serde(with = "humantime_serde::option")]
    pub attempt_timeout: Option<Duration>,
    /// Limit on the whole call (attempts and delays). When it passes, the
    /// call ends with `ResilienceError::Timeout { kind: Overall, .. }`.
    #[serde(with = "humantime_serde::option")]
    pub overall_timeout: Option<Duration>,
    /// The Finagle-style retry budget shared by every service this layer
    /// makes; `None` turns it off.
    pub budget: Option<RetryBudgetConfig>,
    /// gRPC retry throttling (gRFC A6) shared by every service this layer
    /// makes; `None` (the default) turns it off.
    pub throttle: Option<RetryThrottleConfig>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            name: "retry".to_owned(),
            max_attempts: 3,
            backoff: BackoffConfig::default(),
            attempt_timeout: None,
            overall_timeout: None,
            budget: Some(RetryBudgetConfig::default()),
            throttle: None,
        }
    }
}

impl RetryConfig {
    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the attempts per call, counting the first.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets the backoff between attempts.
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets (or with `None` removes) the limit on one attempt.
    pub fn attempt_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.attempt_timeout = timeout.into();
        self
    }

    /// Sets (or with `None` removes) the limit on the whole call.
    pub fn overall_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.overall_timeout = timeout.into();
        self
    }

    /// Sets (or with `None` removes) the retry budget.
    pub fn budget(mut self, budget: impl Into<Option<RetryBudgetConfig>>) -> Self {
        self.budget = budget.into();
        self
    }

    /// Sets (or with `None` removes) gRPC retry throttling.
    pub fn throttle(mut self, throttle: impl Into<Option<RetryThrottleConfig>>) -> Self {
        self.throttle = throttle.into();
        self
    }

    /// Checks every field; the error names the first bad one by its full
    /// path (`retry.max_attempts`, `retry.budget.percent_can_retry`, ...).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::field("retry.name", "must not be empty"));
        }
        check::non_zero("retry.max_attempts", self.max_attempts)?;
        self.backoff.validate()?;
        if let Some(timeout) = self.attempt_timeout {
            check::non_zero_duration("retry.attempt_timeout", timeout)?;
        }
        if let Some(timeout) = self.overall_timeout {
            check::non_zero_duration("retry.overall_timeout", timeout)?;
        }
        if let (Some(attempt), Some(overall)) = (self.attempt_timeout, self.overall_timeout)
            && attempt > overall
        {
            return Err(ConfigError::field(
                "retry.attempt_timeout",
                "must not exceed retry.overall_timeout",
            ));
        }
        if let Some(budget) = &self.budget {
            budget.validate()?;
        }
        if let Some(throttle) = &self.throttle {
            throttle.validate()?;
        }
        Ok(())
    }

    /// Validates the config and builds the layer (default classifier, HTTP
    /// safety rules); same as [`RetryLayer::new`](super::RetryLayer::new).
    pub fn build(self) -> Result<super::RetryLayer, ConfigError> {
        super::RetryLayer::new(self)
    }
}

/// The shape of a backoff schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BackoffKind {
    /// Every delay is `initial_delay` (computed by `backon`'s `ConstantBuilder`).
    Constant,
    /// The n-th delay is `initial_delay × n`, capped at `max_delay` (Polly's
    /// linear backoff; `backon` has none, so this crate implements it).
    Linear,
    /// The n-th delay is `initial_delay × multiplier^(n−1)`, capped at
    /// `max_delay` (computed by `backon`'s `ExponentialBuilder`).
    Exponential,
    /// AWS's "decorrelated jitter": each delay is uniformly random in
    /// `[initial_delay, 3 × previous delay]`, capped at `max_delay`, the
    /// previous delay starting at `initial_delay` (`backon` has none, so this
    /// crate implements it). Already random: `jitter` does not apply.
    DecorrelatedJitter,
}

/// Randomisation applied to each delay of a constant, linear or exponential
/// schedule, so clients that failed together do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Jitter {
    /// The delays are used as computed.
    None,
    /// "Full jitter" (AWS Architecture Blog, *Exponential Backoff and
    /// Jitter*): each delay `d` becomes a uniformly random duration in
    /// `[0, d]`. `backon`'s own jitter adds `[0, d)` on top of `d` instead,
    /// so this crate applies full jitter itself.
    Full,
}

/// The delays before retries.
///
/// Defaults: exponential, 100 ms doubling up to 1 s, full jitter. 100 ms,
/// ×2 and a 1 s cap are the values of gRFC A6's example retry policy and
/// the AWS SDKs' base delay: long enough to let a replica restart or a
/// connection be re-established, short enough that three attempts stay well
/// inside a typical request deadline. Full jitter is what the AWS study
/// found spreads a synchronised burst of retries best.
///
/// `BackoffConfig` is itself a [`backon::BackoffBuilder`], so the same
/// schedule can drive `backon`'s own retry helpers.
///
/// ```
/// use std::time::Duration;
/// use backon::BackoffBuilder;
/// use orch_resilience::retry::{BackoffConfig, Jitter};
///
/// let linear = BackoffConfig::linear(Duration::from_millis(50), Duration::from_millis(120));
/// let delays: Vec<_> = linear.jitter(Jitter::None).build().take(4).collect();
/// assert_eq!(delays, [50, 100, 120, 120].map(Duration::from_millis));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// The shape of the schedule.
    pub kind: BackoffKind,
    /// The first delay (and the step of a linear schedule, the floor of a
    /// decorrelated one). May be zero only for a constant schedule.
    #[serde(with = "humantime_serde")]
    pub initial_delay: Duration,
    /// The largest delay. At least `initial_delay`; unused by a constant schedule.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Growth per retry of an exponential schedule; at least 1.
    pub multiplier: f32,
    /// Randomisation of each delay (not used by decorrelated jitter).
    pub jitter: Jitter,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            kind: BackoffKind::Exponential,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: Jitter::Full,
        }
    }
}

impl BackoffConfig {
    /// The same delay before every retry, without jitter.
    pub fn constant(delay: Duration) -> Self {
        Self {
            kind: BackoffKind::Constant,
            initial_delay: delay,
            max_delay: delay,
            jitter: Jitter::None,
            ..Self::default()
        }
    }

    /// Delays `step`, `2 × step`, `3 × step`, ... up to `max`, with full jitter.
    pub fn linear(step: Duration, max: Duration) -> Self {
        Self {
            kind: BackoffKind::Linear,
            initial_delay: step,
            max_delay: max,
            ..Self::default()
        }
    }

    /// Delays `initial`, doubling up to `max`, with full jitter.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        Self {
            kind: BackoffKind::Exponential,
            initial_delay: initial,
            max_delay: max,
            ..Self::default()
        }
    }

    /// AWS's decorrelated jitter between `initial` and `max`.
    pub fn decorrelated_jitter(initial: Duration, max: Duration) -> Self {
        Self {
            kind: BackoffKind::DecorrelatedJitter,
            initial_delay: initial,
            max_delay: max,
            ..Self::default()
        }
    }

    /// Sets the shape of the schedule.
    pub fn kind(mut self, kind: BackoffKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the first delay.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the largest delay.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets the growth per retry of an exponential schedule.
    pub fn multiplier(mut self, multiplier: f32) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets the jitter.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Checks the fields; errors name them as `retry.backoff.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_fields().map_err(|e| e.within("retry.backoff"))
    }

    fn validate_fields(&self) -> Result<(), ConfigError> {
        if self.kind != BackoffKind::Constant {
            check::non_zero_duration("initial_delay", self.initial_delay)?;
            if self.max_delay < self.initial_delay {
                return Err(ConfigError::field("max_delay", "must be at least initial_delay"));
            }
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(ConfigError::field(
                "multiplier",
                "must be a finite number, 1 or more",
            ));
        }
        Ok(())
    }
}

/// A Finagle-style retry budget: how many retries the layer may make, as a
/// share of recent requests plus a small floor.
///
/// Defaults are Finagle's (`RetryBudget()`) and tower's `TpsBudget`: a 10 s
/// window, 10 retries per second always allowed, and 20 % of the requests in
/// the window. With them a healthy client retries freely, and a client whose
/// every request fails adds at most 20 % load (plus the floor) to a service
/// that is already down, instead of the ×`max_attempts` of unbudgeted retries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// How long a request keeps the retries it earned, and a retry keeps
    /// counting against the budget. Between 1 s and 60 s (Finagle's bounds).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Retries always allowed, per second of `ttl`, however few requests
    /// there were (lets a client that just started, or sends little, retry).
    pub min_retries_per_sec: u32,
    /// Retries earned by each request: 0.2 means one retry per five
    /// requests. Between 0 and 1000 (Finagle's bounds); kept to six decimals.
    pub percent_can_retry: f64,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            min_retries_per_sec: 10,
            percent_can_retry: 0.2,
        }
    }
}

impl RetryBudgetConfig {
    /// Sets the window.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the retries per second always allowed.
    pub fn min_retries_per_sec(mut self, retries: u32) -> Self {
        self.min_retries_per_sec = retries;
        self
    }

    /// Sets the retries earned by each request.
    pub fn percent_can_retry(mut self, percent: f64) -> Self {
        self.percent_can_retry = percent;
        self
    }

    /// Checks the fields; errors name them as `retry.budget.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_fields().map_err(|e| e.within("retry.budget"))
    }

    fn validate_fields(&self) -> Result<(), ConfigError> {
        if self.ttl < Duration::from_secs(1) || self.ttl > Duration::from_secs(60) {
            return Err(ConfigError::field("ttl", "must be between 1s and 60s"));
        }
        check::finite_non_negative("percent_can_retry", self.percent_can_retry)?;
        if self.percent_can_retry > 1000.0 {
            return Err(ConfigError::field("percent_can_retry", "must be at most 1000"));
        }
        Ok(())
    }
}

/// gRPC retry throttling (gRFC A6): a token bucket that turns retries off
/// while most recent attempts fail.
///
/// Tokens start at `max_tokens`. Each attempt with a retryable outcome takes
/// one token; each successful attempt adds `token_ratio` (up to
/// `max_tokens`). Retries are allowed only while tokens are above
/// `max_tokens / 2`. Defaults are the values of gRFC A6's example service
/// config: 10 tokens, 0.1 per success (so after the bucket drained, about
/// ten successes restore one failure's worth).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryThrottleConfig {
    /// Size of the bucket, 1 to 1000 (gRFC A6's range).
    pub max_tokens: u32,
    /// Tokens a success adds; above 0, kept to three decimals as gRFC A6 says.
    pub token_ratio: f64,
}

impl Default for RetryThrottleConfig {
    fn default() -> Self {
        Self {
            max_tokens: 10,
            token_ratio: 0.1,
        }
    }
}

impl RetryThrottleConfig {
    /// Sets the size of the bucket.
    pub fn max_tokens(mut self, tokens: u32) -> Self {
        self.max_tokens = tokens;
        self
    }

    /// Sets the tokens a success adds.
    pub fn token_ratio(mut self, ratio: f64) -> Self {
        self.token_ratio = ratio;
        self
    }

    /// Checks the fields; errors name them as `retry.throttle.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_fields().map_err(|e| e.within("retry.throttle"))
    }

    fn validate_fields(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.max_tokens) {
            return Err(ConfigError::field("max_tokens", "must be between 1 and 1000"));
        }
        // Tokens are counted in thousandths (gRFC A6); a smaller ratio would
        // round to zero and successes would never refill the bucket.
        if !(self.token_ratio.is_finite() && self.token_ratio >= 0.001) {
            return Err(ConfigError::field(
                "token_ratio",
                "must be a finite number, at least 0.001",
            ));
        }
        Ok(())
    }
}

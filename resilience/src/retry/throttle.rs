//! gRPC retry throttling (gRFC A6, "Throttling Retry Attempts and Hedged
//! RPCs").
//!
//! Where a [`RetryBudget`](super::RetryBudget) caps retries as a share of
//! requests, throttling watches the failure rate: while most recent attempts
//! fail, it turns retries off altogether, and it turns them back on as
//! successes return. It is the mechanism gRPC clients use, so a Rust client
//! in a gRPC fleet can behave like the others.

use std::{
    fmt,
    sync::atomic::{AtomicU32, Ordering},
};

use super::config::RetryThrottleConfig;
use crate::config::ConfigError;

/// gRFC A6 counts tokens in thousandths.
const MILLI: u32 = 1_000;

/// The token bucket of gRPC retry throttling, shared by every service of a
/// [`RetryLayer`](super::RetryLayer), and by several layers when the same
/// `Arc<RetryThrottle>` is given to each (`RetryLayer::shared_throttle`).
///
/// Exactly as gRFC A6 says, with tokens counted in thousandths:
/// - tokens start at `max_tokens`;
/// - [`record_failure`](Self::record_failure) (an attempt with a retryable
///   outcome) takes 1 token, never going below 0;
/// - [`record_success`](Self::record_success) adds `token_ratio`, never
///   going above `max_tokens`;
/// - [`allows_retry`](Self::allows_retry) is true only while tokens are
///   strictly above `max_tokens / 2`.
///
/// Attempts whose outcome is a non-retryable failure or a local rejection
/// change nothing.
///
/// ```
/// use orch_resilience::{RetryThrottle, RetryThrottleConfig};
///
/// let throttle = RetryThrottle::new(RetryThrottleConfig::default().max_tokens(4).token_ratio(0.5)).unwrap();
/// throttle.record_failure(); // 3 tokens: above 2
/// assert!(throttle.allows_retry());
/// throttle.record_failure(); // 2 tokens: not above 2
/// assert!(!throttle.allows_retry());
/// throttle.record_success(); // 2.5 tokens
/// assert!(throttle.allows_retry());
/// assert_eq!(throttle.tokens(), 2.5);
/// ```
pub struct RetryThrottle {
    config: RetryThrottleConfig,
    max: u32,
    ratio: u32,
    tokens: AtomicU32,
}

impl RetryThrottle {
    /// A full bucket for `config`. Errors name the field as
    /// `retry.throttle.<field>`.
    pub fn new(config: RetryThrottleConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let max = config.max_tokens * MILLI;
        // Validation keeps the ratio at 0.001 or more; `as` saturates a huge one.
        let ratio = (config.token_ratio * f64::from(MILLI)).round() as u32;
        Ok(Self {
            config,
            max,
            ratio,
            tokens: AtomicU32::new(max),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RetryThrottleConfig {
        &self.config
    }

    /// An attempt failed with a retryable outcome: takes one token.
    pub fn record_failure(&self) {
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(MILLI))
            });
    }

    /// An attempt succeeded: adds `token_ratio` tokens, up to `max_tokens`.
    pub fn record_success(&self) {
        // The usual case is a full bucket: a read, and no write that would
        // bounce the cache line between cores on every success.
        if self.tokens.load(Ordering::Relaxed) >= self.max {
            return;
        }
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(self.ratio).min(self.max))
            });
    }

    /// True while tokens are above `max_tokens / 2`.
    pub fn allows_retry(&self) -> bool {
        // tokens > max / 2, in integers.
        u64::from(self.tokens.load(Ordering::Relaxed)) * 2 > u64::from(self.max)
    }

    /// The tokens now.
    pub fn tokens(&self) -> f64 {
        f64::from(self.tokens.load(Ordering::Relaxed)) / f64::from(MILLI)
    }
}

impl fmt::Debug for RetryThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryThrottle")
            .field("config", &self.config)
            .field("tokens", &self.tokens())
            .finish()
    }
}

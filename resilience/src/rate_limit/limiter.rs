use std::{fmt, sync::Arc, time::Duration};

use metrics::Counter;
use tokio::time::Instant;

use super::{RateLimitConfig, gcra::Gcra};
use crate::{config::ConfigError, error::ResilienceError};

/// A GCRA rate limiter usable without tower: clone it freely, every clone
/// draws from the same budget.
///
/// [`try_acquire`](Self::try_acquire) is the lean path (one clock read and,
/// usually, one compare-exchange; no metrics, no tracing) for callers that
/// handle rejection themselves. [`RateLimit`](super::RateLimit) uses the same
/// limiter and adds waiting up to `max_wait`, metrics and tracing.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::RateLimitConfig;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let limiter = RateLimitConfig::new(10, Duration::from_secs(1)).burst(2).limiter().unwrap();
/// assert!(limiter.try_acquire().is_ok());
/// assert!(limiter.try_acquire().is_ok());
/// // The burst is spent; the next permit comes one interval (100 ms) later.
/// assert_eq!(limiter.try_acquire(), Err(Duration::from_millis(100)));
/// tokio::time::advance(Duration::from_millis(100)).await;
/// assert!(limiter.clone().try_acquire().is_ok());
/// # }
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    gcra: Gcra,
    name: Arc<str>,
    max_wait: Duration,
    rejections: Counter,
}

// ===== impl RateLimiter =====

impl RateLimiter {
    /// Validates `config` and creates a limiter whose full burst is available
    /// now. Registers the rejection counter with the `metrics` recorder
    /// installed at this moment.
    pub fn new(config: RateLimitConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let name: Arc<str> = config.name.as_str().into();
        Ok(Self {
            shared: Arc::new(Shared {
                gcra: Gcra::new(config.permits, config.per, config.effective_burst(), config.clock),
                rejections: metrics::counter!("orch_rate_limit_rejections_total", "name" => Arc::clone(&name)),
                name,
                max_wait: config.max_wait,
            }),
        })
    }

    /// Takes a permit if one is available now, or returns how long until one
    /// is (if no other caller takes it first). Never waits.
    #[inline]
    pub fn try_acquire(&self) -> Result<(), Duration> {
        self.shared.gcra.try_acquire()
    }

    /// Waits until a permit is available and takes it, however long that is.
    ///
    /// The permit is reserved when `acquire` is first polled, so concurrent
    /// waiters are served in the order they reserved. Cancel safety: dropping
    /// the future while it waits forfeits the reserved permit (the schedule of
    /// later reservations cannot be rewound).
    pub async fn acquire(&self) {
        if let Ok(Some(at)) = self.shared.gcra.reserve(Duration::MAX) {
            tokio::time::sleep_until(at).await;
        }
    }

    /// The limiter's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configured maximum wait of [`RateLimit`](super::RateLimit) calls.
    pub fn max_wait(&self) -> Duration {
        self.shared.max_wait
    }

    /// The emission interval: the time between two permits at the sustained
    /// rate (`per / permits`, rounded up to a whole nanosecond).
    pub fn interval(&self) -> Duration {
        self.shared.gcra.interval()
    }

    /// The service path: a permit now (`Ok(None)`), one reserved for a
    /// later instant within `max_wait` (`Ok(Some(at))`), or the rejection,
    /// counted and traced.
    #[inline]
    pub(crate) fn admit(&self) -> Result<Option<Instant>, ResilienceError> {
        let shared = &*self.shared;
        match shared.gcra.reserve(shared.max_wait) {
            Ok(None) => Ok(None),
            Ok(Some(at)) => {
                tracing::trace!(name = %shared.name, wait = ?at.saturating_duration_since(Instant::now()), "rate limiter delayed call");
                Ok(Some(at))
            }
            Err(wait) => {
                shared.rejections.increment(1);
                tracing::debug!(name = %shared.name, ?wait, max_wait = ?shared.max_wait, "rate limiter rejected call");
                Err(ResilienceError::RateLimited {
                    name: Arc::clone(&shared.name),
                    wait,
                })
            }
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.shared.name)
            .field("gcra", &self.shared.gcra)
            .field("max_wait", &self.shared.max_wait)
            .finish()
    }
}

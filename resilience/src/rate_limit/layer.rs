use tower_layer::Layer;

use super::{RateLimit, RateLimitConfig, RateLimiter};
use crate::config::ConfigError;

/// Wraps services in a [`RateLimit`]. One layer is one limiter: every service
/// it wraps, and every clone of those, draws from the same budget.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::{RateLimitConfig, RateLimitLayer};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let layer = RateLimitLayer::new(RateLimitConfig::new(100, Duration::from_secs(1)).burst(10)).unwrap();
/// // Share the budget with code that does not go through tower:
/// let limiter = layer.limiter().clone();
/// assert!(limiter.try_acquire().is_ok());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
}

// ===== impl RateLimitLayer =====

impl RateLimitLayer {
    /// Validates `config` and creates the limiter (its clock starts now).
    pub fn new(config: RateLimitConfig) -> Result<Self, ConfigError> {
        Ok(Self::from_limiter(RateLimiter::new(config)?))
    }

    /// A layer drawing from an existing limiter.
    pub fn from_limiter(limiter: RateLimiter) -> Self {
        Self { limiter }
    }

    /// The limiter the layer's services share.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limiter.clone())
    }
}

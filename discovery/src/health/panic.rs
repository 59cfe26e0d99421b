//! Envoy's panic threshold: when too few endpoints are healthy, ignore health.

use super::config::ConfigError;
use crate::config::check;

/// Decides when a balancer should stop trusting health and spread requests
/// over all its endpoints (Envoy's `healthy_panic_threshold`).
///
/// When most endpoints are unhealthy at once, the cause is rarely the
/// endpoints: a bad deploy of a dependency, a network partition, a too
/// eager detector. Sending all traffic to the few left would overload them
/// too. Below the threshold, the balancer picks among all endpoints,
/// healthy or not; some requests fail, but the load stays spread.
///
/// ```
/// use orch_discovery::health::PanicThreshold;
///
/// let threshold = PanicThreshold::default(); // 50 %
/// assert!(!threshold.is_panic(5, 10)); // half healthy: trust health
/// assert!(threshold.is_panic(4, 10)); // fewer: spread over all 10
/// assert!(!PanicThreshold::new(0.0).unwrap().is_panic(0, 10)); // 0 turns it off
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PanicThreshold {
    percent: f64,
}

impl PanicThreshold {
    /// Envoy's default: panic below 50 % healthy.
    pub const DEFAULT: PanicThreshold = PanicThreshold { percent: 50.0 };

    /// A threshold in percent, in `[0, 100]`; 0 never panics, 100 panics
    /// as soon as one endpoint is unhealthy.
    pub fn new(percent: f64) -> Result<Self, ConfigError> {
        check::percent("healthy_panic_threshold", percent)?;
        Ok(Self { percent })
    }

    /// The threshold in percent.
    pub fn percent(&self) -> f64 {
        self.percent
    }

    /// Whether `healthy` of `total` endpoints is below the threshold, so
    /// the balancer should pick among all `total`. Never with no endpoints
    /// (there is nothing to spread over).
    #[inline]
    pub fn is_panic(&self, healthy: usize, total: usize) -> bool {
        total > 0 && (healthy as f64) * 100.0 < self.percent * total as f64
    }
}

impl Default for PanicThreshold {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_edges() {
        let t = PanicThreshold::default();
        assert!(!t.is_panic(0, 0));
        assert!(t.is_panic(0, 1));
        assert!(!t.is_panic(1, 2));
        assert!(t.is_panic(2, 5));
        assert!(!t.is_panic(3, 5));
        let all = PanicThreshold::new(100.0).unwrap();
        assert!(all.is_panic(9, 10));
        assert!(!all.is_panic(10, 10));
        assert_eq!(
            PanicThreshold::new(100.5).unwrap_err().field_name(),
            "healthy_panic_threshold"
        );
    }
}

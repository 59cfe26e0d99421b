//! The shared balancer's load as an autoscaling signal: requests in flight
//! per ready endpoint, which a target-tracking policy keeps near a target
//! the way HPA keeps CPU per pod near one.
//!
//! The reading takes the balancer's lock once per evaluation; calls pay
//! nothing for it (the in-flight counts are the reference counts the
//! balancer keeps anyway).

use std::sync::Weak;

use async_trait::async_trait;
use orch_core::autoscale::{MetricSource, Reading};

/// Endpoints ready and requests in flight to them, at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSnapshot {
    /// Endpoints that can be picked.
    pub ready: usize,
    /// Requests in flight to them.
    pub in_flight: usize,
}

/// What a shared balancer can say about its load, whatever its types.
pub(crate) trait LoadView: Send + Sync {
    /// `None` once the driver has dropped the balancer.
    fn load(&self) -> Option<LoadSnapshot>;
}

/// A [`MetricSource`] reading a [`SharedBalancer`](super::SharedBalancer)'s
/// requests in flight per ready endpoint, from
/// [`SharedBalancer::load`](super::SharedBalancer::load).
///
/// It does not keep the balancer alive: once every handle is dropped its
/// readings are missing. With no ready endpoint there is nothing to
/// average over, and the reading is missing too (the target-tracking
/// policy then holds).
///
/// ```
/// use orch_core::autoscale::{AutoscalerConfig, TargetTracking};
///
/// // Eight requests in flight per replica, as a policy reads it:
/// let config = AutoscalerConfig::default().policy(TargetTracking::new("inflight", 8.0));
/// // Autoscaler::builder(config).source("inflight", client.load()) …
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct BalancerLoad {
    pub(super) balancer: Weak<dyn LoadView>,
}

impl std::fmt::Debug for BalancerLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalancerLoad")
            .field("now", &self.snapshot())
            .finish()
    }
}

impl BalancerLoad {
    /// Ready endpoints and requests in flight now; `None` once the
    /// balancer is gone.
    pub fn snapshot(&self) -> Option<LoadSnapshot> {
        self.balancer.upgrade()?.load()
    }
}

#[async_trait]
impl MetricSource for BalancerLoad {
    async fn sample(&self) -> Reading {
        match self.snapshot() {
            None => Reading::missing("the balancer is gone"),
            Some(LoadSnapshot { ready: 0, .. }) => Reading::missing("no ready endpoint to average over"),
            Some(LoadSnapshot { ready, in_flight }) => Reading::now(in_flight as f64 / ready as f64),
        }
    }
}

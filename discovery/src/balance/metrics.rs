//! The balancer's metrics, registered once per balancer and once per
//! endpoint, so a request only bumps a handle it already holds.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `orch_balancer_picks_total` | counter | `balancer`, `endpoint` |
//! | `orch_balancer_endpoints` | gauge | `balancer`, `state` = `ready` / `total` / `ejected` |
//! | `orch_balancer_evictions_total` | counter | `balancer` |
//! | `orch_balancer_connect_failures_total` | counter | `balancer` |
//! | `orch_balancer_no_endpoints_total` | counter | `balancer` |
//! | `orch_balancer_ejections_total` | counter | `balancer`, `reason` = `consecutive_failures` / `success_rate` |
//! | `orch_balancer_panic` | gauge (0 or 1) | `balancer` |

use std::sync::Arc;

use metrics::{Counter, Gauge};

use crate::{EndpointId, health::EjectionReason};

/// Handles of one balancer's metrics.
#[derive(Debug)]
pub(crate) struct BalancerMetrics {
    pub(crate) name: Arc<str>,
    ready: Gauge,
    total: Gauge,
    /// Services dropped because `poll_ready` failed.
    pub(crate) evictions: Counter,
    /// Connects that failed.
    pub(crate) connect_failures: Counter,
    /// `NoEndpoints` errors returned.
    pub(crate) no_endpoints: Counter,
    /// Endpoints ejected now.
    pub(crate) ejected: Gauge,
    /// Ejections for runs of consecutive failures.
    consecutive_failures: Counter,
    /// Ejections for outlying success rates.
    success_rate: Counter,
    /// 1 while in panic mode.
    pub(crate) panic: Gauge,
}

impl BalancerMetrics {
    /// Registers the balancer-wide handles.
    pub(crate) fn new(name: Arc<str>) -> Self {
        let label = || Arc::clone(&name);
        Self {
            ready: metrics::gauge!("orch_balancer_endpoints", "balancer" => label(), "state" => "ready"),
            total: metrics::gauge!("orch_balancer_endpoints", "balancer" => label(), "state" => "total"),
            evictions: metrics::counter!("orch_balancer_evictions_total", "balancer" => label()),
            connect_failures: metrics::counter!("orch_balancer_connect_failures_total", "balancer" => label()),
            no_endpoints: metrics::counter!("orch_balancer_no_endpoints_total", "balancer" => label()),
            ejected: metrics::gauge!("orch_balancer_endpoints", "balancer" => label(), "state" => "ejected"),
            consecutive_failures: metrics::counter!(
                "orch_balancer_ejections_total",
                "balancer" => label(),
                "reason" => EjectionReason::ConsecutiveFailures.as_str()
            ),
            success_rate: metrics::counter!(
                "orch_balancer_ejections_total",
                "balancer" => label(),
                "reason" => EjectionReason::SuccessRate.as_str()
            ),
            panic: metrics::gauge!("orch_balancer_panic", "balancer" => label()),
            name,
        }
    }

    /// Registers the pick counter of one endpoint (at insert, never per call).
    pub(crate) fn picks(&self, id: &EndpointId) -> Counter {
        metrics::counter!(
            "orch_balancer_picks_total",
            "balancer" => Arc::clone(&self.name),
            "endpoint" => id.to_string()
        )
    }

    /// Publishes the endpoint counts.
    pub(crate) fn endpoints(&self, ready: usize, total: usize) {
        self.ready.set(ready as f64);
        self.total.set(total as f64);
    }

    /// Counts one ejection.
    pub(crate) fn ejection(&self, reason: EjectionReason) {
        match reason {
            EjectionReason::ConsecutiveFailures => self.consecutive_failures.increment(1),
            EjectionReason::SuccessRate => self.success_rate.increment(1),
        }
    }

    /// The balancer's name, for tracing.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

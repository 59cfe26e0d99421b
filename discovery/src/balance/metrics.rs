//! The balancer's metrics, registered once per balancer and once per
//! endpoint, so a request only bumps a handle it already holds.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `orch_balancer_picks_total` | counter | `balancer`, `endpoint` |
//! | `orch_balancer_endpoints` | gauge | `balancer`, `state` = `ready` / `total` |
//! | `orch_balancer_evictions_total` | counter | `balancer` |
//! | `orch_balancer_connect_failures_total` | counter | `balancer` |
//! | `orch_balancer_no_endpoints_total` | counter | `balancer` |

use std::sync::Arc;

use metrics::{Counter, Gauge};

use crate::EndpointId;

/// Handles of one balancer's metrics.
#[derive(Debug)]
pub(crate) struct BalancerMetrics {
    name: Arc<str>,
    ready: Gauge,
    total: Gauge,
    /// Services dropped because `poll_ready` failed.
    pub(crate) evictions: Counter,
    /// Connects that failed.
    pub(crate) connect_failures: Counter,
    /// `NoEndpoints` errors returned.
    pub(crate) no_endpoints: Counter,
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

    /// The balancer's name, for tracing.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

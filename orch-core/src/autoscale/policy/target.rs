//! Target tracking, Kubernetes HPA's formula: desired = ceil(current ×
//! value / target), no change within the tolerance, and HPA's rules for
//! replicas that are not ready (idle on a scale-up, left out of a
//! scale-down) and for a missing metric (hold: no scale-down).
//!
//! HPA's third case, ready pods with no metric (taken at the target on a
//! scale-down, idle on a scale-up), has no counterpart here: the metric
//! is one average over the ready replicas, so no ready replica is without
//! one; a missing average is a hold.

use serde::{Deserialize, Serialize};

use super::{Inputs, Vote, positive};
use crate::autoscale::AutoscaleError;

/// Keep a per-replica average near `target`: requests in flight per ready
/// replica, CPU per replica.
///
/// The metric is the average over ready replicas (HPA's `AverageValue`).
/// With no replica there is nothing to average: scaling from zero is the
/// queue-backlog policy's or the floor's job, as in HPA.
///
/// ```
/// use orch_core::autoscale::TargetTracking;
///
/// let policy = TargetTracking::new("inflight", 8.0);
/// assert_eq!(policy.tolerance, 0.1);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetTracking {
    /// The source's name, as given to the builder.
    pub metric: String,
    /// The per-replica value to keep.
    pub target: f64,
    /// No change while value / target is within 1 ± tolerance (HPA: 0.1).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_tolerance() -> f64 {
    0.1
}

impl TargetTracking {
    /// Tracks `target` per replica of `metric`, with HPA's tolerance.
    pub fn new(metric: impl Into<String>, target: f64) -> Self {
        Self {
            metric: metric.into(),
            target,
            tolerance: default_tolerance(),
        }
    }

    /// Sets the tolerance (0 to 1).
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), AutoscaleError> {
        positive("target", self.target)?;
        if !(0.0..1.0).contains(&self.tolerance) {
            return Err(AutoscaleError::field(
                "tolerance",
                format!("must be at least 0 and below 1, got {}", self.tolerance),
            ));
        }
        Ok(())
    }

    pub(super) fn recommend(&self, inputs: &Inputs<'_>) -> (Vote, bool, String) {
        let value = match inputs.metric {
            Ok(value) => value,
            Err(why) => return (Vote::Hold, true, format!("hold: {why}")),
        };
        let current = inputs.status.desired;
        let ready = inputs.status.ready.min(current);
        if current == 0 {
            return (Vote::Abstain, value > 0.0, "no replica to average over".into());
        }
        if ready == 0 {
            return (Vote::Hold, true, "hold: no replica is ready yet".into());
        }
        let (target, tolerance) = (self.target, self.tolerance);
        let within = |ratio: f64| (ratio - 1.0).abs() <= tolerance;
        let ratio = value / target;
        if within(ratio) {
            return (
                Vote::Replicas(current),
                value > 0.0,
                format!("{value:.2} per ready replica is within {tolerance} of the target {target}"),
            );
        }
        let unready = current - ready;
        // HPA's replica calculator (`calcPlainMetricReplicas`): replicas not
        // ready are left out of a scale-down, which sizes the group on the
        // ready ones alone, and count as idle on a scale-up, so that
        // replicas still starting neither hide load nor double-count it.
        if ratio < 1.0 || unready == 0 {
            let desired = (ratio * ready as f64 - 1e-9).ceil().max(0.0) as usize;
            let why = if unready == 0 {
                String::new()
            } else {
                format!(", the {unready} not ready left out")
            };
            return (
                Vote::Replicas(desired),
                value > 0.0,
                format!("{value:.2} per ready replica against a target of {target}{why}"),
            );
        }
        let adjusted_ratio = value * ready as f64 / (target * current as f64);
        if within(adjusted_ratio) || adjusted_ratio < 1.0 {
            return (
                Vote::Replicas(current),
                value > 0.0,
                format!(
                    "{value:.2} per ready replica, but counting the {unready} not ready as idle the change is within tolerance"
                ),
            );
        }
        let desired = (adjusted_ratio * current as f64 - 1e-9).ceil() as usize;
        (
            Vote::Replicas(desired),
            value > 0.0,
            format!(
                "{value:.2} per ready replica against a target of {target}, the {unready} not ready counted as idle"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScaleStatus;

    fn vote(policy: &TargetTracking, desired: usize, ready: usize, metric: Result<f64, &str>) -> Vote {
        policy
            .recommend(&Inputs {
                status: ScaleStatus { desired, ready },
                metric,
                #[cfg(feature = "schedule")]
                wall: jiff::Timestamp::UNIX_EPOCH,
            })
            .0
    }

    #[test]
    fn hpa_formula_and_tolerance() {
        let p = TargetTracking::new("m", 10.0);
        assert_eq!(vote(&p, 4, 4, Ok(20.0)), Vote::Replicas(8));
        assert_eq!(vote(&p, 4, 4, Ok(10.5)), Vote::Replicas(4), "within 10 %");
        assert_eq!(vote(&p, 4, 4, Ok(5.0)), Vote::Replicas(2));
        assert_eq!(vote(&p, 3, 3, Ok(11.5)), Vote::Replicas(4), "ceil(3 × 1.15)");
    }

    #[test]
    fn unready_replicas_and_missing_metrics() {
        let p = TargetTracking::new("m", 10.0);
        // Up: 2 ready at 20 each, 2 not ready count as 0: 40 / 10 = 4, no change.
        assert_eq!(vote(&p, 4, 2, Ok(20.0)), Vote::Replicas(4));
        // Up, more: 2 ready at 40, 2 not ready at 0: 80 / 10 = 8.
        assert_eq!(vote(&p, 4, 2, Ok(40.0)), Vote::Replicas(8));
        // Down: the 2 not ready are left out: ceil(2 × 3 / 10) = 1.
        assert_eq!(vote(&p, 4, 2, Ok(3.0)), Vote::Replicas(1));
        // Within tolerance of the ready ones: no change.
        assert_eq!(vote(&p, 4, 2, Ok(9.5)), Vote::Replicas(4));
        assert_eq!(vote(&p, 4, 4, Err("stale")), Vote::Hold);
        assert_eq!(vote(&p, 4, 0, Ok(2.0)), Vote::Hold);
    }
}

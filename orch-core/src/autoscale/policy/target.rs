//! Target tracking, Kubernetes HPA's formula: desired = ceil(current ×
//! value / target), no change within the tolerance, and HPA's rules for
//! replicas that are not ready (idle on scale-up, at target on
//! scale-down) and for a missing metric (hold: no scale-down).

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
        let unready = (current - ready) as f64;
        let used = value * ready as f64;
        // HPA: replicas not ready count as idle when scaling up and as at
        // target when scaling down, so neither direction is exaggerated
        // by replicas that are still starting.
        let adjusted = if ratio > 1.0 {
            used
        } else {
            used + target * unready
        };
        let adjusted_ratio = adjusted / (target * current as f64);
        if within(adjusted_ratio) || (adjusted_ratio > 1.0) != (ratio > 1.0) {
            return (
                Vote::Replicas(current),
                value > 0.0,
                format!(
                    "{value:.2} per ready replica, but counting the {unready} not ready the change is within tolerance"
                ),
            );
        }
        let desired = (adjusted / target - 1e-9).ceil().max(0.0) as usize;
        (
            Vote::Replicas(desired),
            value > 0.0,
            format!("{value:.2} per ready replica against a target of {target}"),
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
        // Down: 2 ready at 2, 2 not ready count as 10: (4 + 20) / 10 = 3.
        assert_eq!(vote(&p, 4, 2, Ok(2.0)), Vote::Replicas(3));
        assert_eq!(vote(&p, 4, 4, Err("stale")), Vote::Hold);
        assert_eq!(vote(&p, 4, 0, Ok(2.0)), Vote::Hold);
    }
}

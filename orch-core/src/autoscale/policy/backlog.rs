//! Queue backlog, KEDA's formula: desired = ceil(backlog / target per
//! replica), active only above the activation threshold, so that an idle
//! queue lets the group scale to zero and the first message brings it
//! back.

use serde::{Deserialize, Serialize};

use super::{Inputs, Vote, positive};
use crate::autoscale::AutoscaleError;

/// Size a worker group on the jobs waiting: `target_per_replica` jobs per
/// replica.
///
/// ```
/// use orch_core::autoscale::QueueBacklog;
///
/// let policy = QueueBacklog::new("jobs", 20.0).activation_threshold(0.0);
/// assert_eq!(policy.target_per_replica, 20.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueBacklog {
    /// The source's name, as given to the builder.
    pub metric: String,
    /// Jobs one replica should have waiting for it.
    pub target_per_replica: f64,
    /// The policy is active (and scales from zero) only while the backlog
    /// is above this (KEDA's `activationValue`, default 0).
    #[serde(default)]
    pub activation_threshold: f64,
}

impl QueueBacklog {
    /// `target_per_replica` jobs of `metric` per replica, active on any job.
    pub fn new(metric: impl Into<String>, target_per_replica: f64) -> Self {
        Self {
            metric: metric.into(),
            target_per_replica,
            activation_threshold: 0.0,
        }
    }

    /// Sets the activation threshold.
    pub fn activation_threshold(mut self, threshold: f64) -> Self {
        self.activation_threshold = threshold;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), AutoscaleError> {
        positive("target_per_replica", self.target_per_replica)?;
        if !(self.activation_threshold.is_finite() && self.activation_threshold >= 0.0) {
            return Err(AutoscaleError::field(
                "activation_threshold",
                format!(
                    "must be a number of at least 0, got {}",
                    self.activation_threshold
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn recommend(&self, inputs: &Inputs<'_>) -> (Vote, bool, String) {
        let backlog = match inputs.metric {
            Ok(backlog) => backlog.max(0.0),
            Err(why) => return (Vote::Hold, true, format!("hold: {why}")),
        };
        if backlog <= self.activation_threshold {
            return (
                Vote::Replicas(0),
                false,
                format!(
                    "inactive: backlog {backlog} at or below the activation threshold {}",
                    self.activation_threshold
                ),
            );
        }
        let desired = ((backlog / self.target_per_replica) - 1e-9).ceil().max(1.0) as usize;
        (
            Vote::Replicas(desired),
            true,
            format!("backlog {backlog} at {} per replica", self.target_per_replica),
        )
    }
}

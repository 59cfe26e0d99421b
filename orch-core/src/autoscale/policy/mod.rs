//! What each policy recommends from its signal.
//!
//! A policy votes once per evaluation: a number of replicas, "hold" (its
//! metric is missing or stale: never scale down on no data), or nothing
//! (a schedule outside its window). The highest number wins; a hold keeps
//! at least the current count; when no policy has an opinion the floor
//! (`min_replicas`) applies.

mod backlog;
#[cfg(feature = "schedule")]
mod schedule;
mod target;

use serde::{Deserialize, Serialize};

pub use backlog::QueueBacklog;
#[cfg(feature = "schedule")]
pub use schedule::Schedule;
pub use target::TargetTracking;

#[cfg(feature = "schedule")]
pub(crate) use schedule::CompiledSchedule;

use super::{AutoscaleError, ScaleStatus};

/// One scaling policy, as configured.
///
/// In a configuration file the kind is a tag:
///
/// ```
/// use orch_core::autoscale::PolicyConfig;
///
/// let policy: PolicyConfig = serde_json::from_str(
///     r#"{ "kind": "queue_backlog", "metric": "jobs", "target_per_replica": 20 }"#,
/// ).unwrap();
/// assert!(matches!(policy, PolicyConfig::QueueBacklog(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PolicyConfig {
    /// HPA's target tracking on a per-replica average.
    TargetTracking(TargetTracking),
    /// KEDA's queue backlog per replica, with activation and scale to zero.
    QueueBacklog(QueueBacklog),
    /// Cron windows in a time zone that raise the floor (feature
    /// `schedule`).
    #[cfg(feature = "schedule")]
    Schedule(Schedule),
}

impl PolicyConfig {
    /// The metric this policy reads, if it reads one.
    pub fn metric(&self) -> Option<&str> {
        match self {
            Self::TargetTracking(p) => Some(&p.metric),
            Self::QueueBacklog(p) => Some(&p.metric),
            #[cfg(feature = "schedule")]
            Self::Schedule(_) => None,
        }
    }

    /// A short name for decision records: `target_tracking(inflight)`.
    pub fn name(&self) -> String {
        match self {
            Self::TargetTracking(p) => format!("target_tracking({})", p.metric),
            Self::QueueBacklog(p) => format!("queue_backlog({})", p.metric),
            #[cfg(feature = "schedule")]
            Self::Schedule(p) => format!("schedule({})", p.start),
        }
    }

    pub(crate) fn compile(&self) -> Result<Policy, AutoscaleError> {
        Ok(match self {
            Self::TargetTracking(p) => {
                p.validate()?;
                Policy::Target(p.clone())
            }
            Self::QueueBacklog(p) => {
                p.validate()?;
                Policy::Backlog(p.clone())
            }
            #[cfg(feature = "schedule")]
            Self::Schedule(p) => Policy::Schedule(Box::new(p.compile()?)),
        })
    }
}

/// A validated policy, ready to vote.
#[derive(Debug, Clone)]
pub(crate) enum Policy {
    Target(TargetTracking),
    Backlog(QueueBacklog),
    // Boxed: a parsed cron pair is several times the size of the others.
    #[cfg(feature = "schedule")]
    Schedule(Box<CompiledSchedule>),
}

/// What a policy sees in one evaluation.
pub(crate) struct Inputs<'a> {
    pub(crate) status: ScaleStatus,
    /// The policy's metric: `Ok(value)`, or why it has none.
    pub(crate) metric: Result<f64, &'a str>,
    #[cfg(feature = "schedule")]
    pub(crate) wall: jiff::Timestamp,
}

/// A policy's vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vote {
    /// This many replicas.
    Replicas(usize),
    /// At least the current count: the policy's metric is missing or
    /// stale, or it cannot judge yet.
    Hold,
    /// No opinion (a schedule outside its window).
    Abstain,
}

/// One policy's recommendation, as a decision record shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// The policy ([`PolicyConfig::name`]).
    pub policy: String,
    /// Its vote.
    pub vote: Vote,
    /// Whether its signal shows work (KEDA's "active"): scaling to zero
    /// waits until no policy has been active for the cooldown.
    pub active: bool,
    /// How it got there, in words.
    pub reason: String,
}

impl Policy {
    pub(crate) fn recommend(&self, inputs: &Inputs<'_>) -> (Vote, bool, String) {
        match self {
            Self::Target(p) => p.recommend(inputs),
            Self::Backlog(p) => p.recommend(inputs),
            #[cfg(feature = "schedule")]
            Self::Schedule(p) => p.recommend(inputs),
        }
    }
}

/// A finite number greater than zero, or why not.
pub(crate) fn positive(field: &str, value: f64) -> Result<(), AutoscaleError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(AutoscaleError::field(
            field,
            format!("must be a number greater than 0, got {value}"),
        ))
    }
}

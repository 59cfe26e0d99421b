//! The autoscaler's settings as one serde struct, loadable with the rest
//! of a service's configuration, validated before anything runs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AutoscaleError, Behavior, PolicyConfig, policy::Policy};

/// How many replicas a group may have, what decides, how fast it may move.
///
/// ```
/// use std::time::Duration;
/// use orch_core::autoscale::{AutoscalerConfig, QueueBacklog};
///
/// let config = AutoscalerConfig::default()
///     .replicas(0, 8)
///     .evaluation_period(Duration::from_millis(500))
///     .policy(QueueBacklog::new("jobs", 10.0));
/// assert!(config.validate().is_ok());
///
/// let bad = AutoscalerConfig::default().replicas(5, 2).policy(QueueBacklog::new("jobs", 10.0));
/// assert_eq!(bad.validate().unwrap_err().to_string(), "invalid min_replicas: 5 is above max_replicas 2");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoscalerConfig {
    /// The floor (0 allows scaling to zero).
    pub min_replicas: usize,
    /// The ceiling.
    pub max_replicas: usize,
    /// How often to evaluate (HPA: 15 s; milliseconds make sense in-process).
    #[serde(with = "humantime_serde")]
    pub evaluation_period: Duration,
    /// A sample older than this counts as missing (default: three
    /// evaluation periods).
    #[serde(with = "humantime_serde")]
    pub max_sample_age: Option<Duration>,
    /// After the last evaluation in which a policy was active, how long
    /// before the group may go from one replica to zero (KEDA's
    /// `cooldownPeriod`, 300 s).
    #[serde(with = "humantime_serde")]
    pub scale_to_zero_cooldown: Duration,
    /// The policies; the highest recommendation wins.
    pub policies: Vec<PolicyConfig>,
    /// Stabilization, rate limits and cooldowns per direction.
    pub behavior: Behavior,
    /// Record decisions without acting on them.
    pub dry_run: bool,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        Self {
            min_replicas: 1,
            max_replicas: 10,
            evaluation_period: Duration::from_secs(15),
            max_sample_age: None,
            scale_to_zero_cooldown: Duration::from_secs(300),
            policies: Vec::new(),
            behavior: Behavior::default(),
            dry_run: false,
        }
    }
}

impl AutoscalerConfig {
    /// Sets the floor and the ceiling.
    pub fn replicas(mut self, min: usize, max: usize) -> Self {
        self.min_replicas = min;
        self.max_replicas = max;
        self
    }

    /// Sets how often to evaluate.
    pub fn evaluation_period(mut self, period: Duration) -> Self {
        self.evaluation_period = period;
        self
    }

    /// Adds a policy.
    pub fn policy(mut self, policy: impl Into<PolicyConfig>) -> Self {
        self.policies.push(policy.into());
        self
    }

    /// Sets the stabilization and rate rules.
    pub fn behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = behavior;
        self
    }

    /// Sets the cooldown before scaling to zero.
    pub fn scale_to_zero_cooldown(mut self, cooldown: Duration) -> Self {
        self.scale_to_zero_cooldown = cooldown;
        self
    }

    /// Sets the age past which a sample counts as missing.
    pub fn max_sample_age(mut self, age: Duration) -> Self {
        self.max_sample_age = Some(age);
        self
    }

    /// Records decisions without acting on them.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// The age past which a sample counts as missing.
    pub fn sample_age_limit(&self) -> Duration {
        self.max_sample_age
            .unwrap_or(self.evaluation_period.saturating_mul(3))
    }

    /// Checks every field; the error names the first wrong one.
    pub fn validate(&self) -> Result<(), AutoscaleError> {
        self.compile().map(drop)
    }

    pub(crate) fn compile(&self) -> Result<Vec<Policy>, AutoscaleError> {
        if self.max_replicas == 0 {
            return Err(AutoscaleError::field("max_replicas", "must be at least 1"));
        }
        if self.min_replicas > self.max_replicas {
            return Err(AutoscaleError::field(
                "min_replicas",
                format!(
                    "{} is above max_replicas {}",
                    self.min_replicas, self.max_replicas
                ),
            ));
        }
        if self.evaluation_period.is_zero() {
            return Err(AutoscaleError::field(
                "evaluation_period",
                "must be greater than zero",
            ));
        }
        if self.max_sample_age.is_some_and(|age| age.is_zero()) {
            return Err(AutoscaleError::field(
                "max_sample_age",
                "must be greater than zero",
            ));
        }
        if self.policies.is_empty() {
            return Err(AutoscaleError::field("policies", "at least one policy is needed"));
        }
        self.behavior.validate()?;
        self.policies
            .iter()
            .enumerate()
            .map(|(i, p)| p.compile().map_err(|e| e.within(&format!("policies[{i}]"))))
            .collect()
    }
}

impl From<super::TargetTracking> for PolicyConfig {
    fn from(policy: super::TargetTracking) -> Self {
        Self::TargetTracking(policy)
    }
}

impl From<super::QueueBacklog> for PolicyConfig {
    fn from(policy: super::QueueBacklog) -> Self {
        Self::QueueBacklog(policy)
    }
}

#[cfg(feature = "schedule")]
impl From<super::Schedule> for PolicyConfig {
    fn from(policy: super::Schedule) -> Self {
        Self::Schedule(policy)
    }
}

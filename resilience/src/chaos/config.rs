use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{FaultLayer, InjectError};
use crate::config::ConfigError;

/// Which faults to inject, how often and when, as plain data that can be
/// loaded with the rest of a service's configuration.
///
/// Every probability is in `[0, 1]`; a fault that is absent (`None`) is
/// never injected. Each request draws its fate from the seed and its
/// position in the sequence of requests, so the same seed and the same
/// request order give the same faults.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::chaos::FaultConfig;
///
/// let config: FaultConfig = serde_json::from_str(r#"{
///     "seed": 42,
///     "latency": { "probability": 0.1, "min": "50ms", "max": "200ms" },
///     "error": { "probability": 0.05 },
///     "schedule": { "window": { "from": "5s", "until": "15s" } }
/// }"#).unwrap();
/// assert!(config.build().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Name in metric labels and traces. Default `"faults"`.
    pub name: String,
    /// Seed of the draws.
    pub seed: u64,
    /// Added latency before the call.
    pub latency: Option<LatencyFault>,
    /// An error (or an injected response) instead of the call.
    pub error: Option<ErrorFault>,
    /// No answer at all: the call is never made and its future never
    /// completes, as a lost packet. Callers need a timeout.
    pub drop: Option<DropFault>,
    /// When faults are injected.
    pub schedule: FaultSchedule,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            name: "faults".to_owned(),
            seed: 0,
            latency: None,
            error: None,
            drop: None,
            schedule: FaultSchedule::Always,
        }
    }
}

/// Added latency, uniform between `min` and `max`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyFault {
    /// Share of requests delayed.
    pub probability: f64,
    /// Shortest delay.
    #[serde(with = "humantime_serde")]
    pub min: Duration,
    /// Longest delay.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

/// An injected error or response.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorFault {
    /// Share of requests that fail.
    pub probability: f64,
}

/// A dropped request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropFault {
    /// Share of requests dropped.
    pub probability: f64,
}

/// When faults are injected, from the moment the layer was built (tokio's
/// clock, so paused-time tests control it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultSchedule {
    /// All the time.
    #[default]
    Always,
    /// Between `from` and `until` after the build.
    Window {
        /// Start of the window.
        #[serde(with = "humantime_serde")]
        from: Duration,
        /// End of the window.
        #[serde(with = "humantime_serde")]
        until: Duration,
    },
    /// For `active` at the start of every `every`.
    Periodic {
        /// The period.
        #[serde(with = "humantime_serde")]
        every: Duration,
        /// How long faults are on in each period.
        #[serde(with = "humantime_serde")]
        active: Duration,
    },
}

impl FaultSchedule {
    /// Whether faults are on `elapsed` after the build.
    pub fn is_active(&self, elapsed: Duration) -> bool {
        match *self {
            Self::Always => true,
            Self::Window { from, until } => from <= elapsed && elapsed < until,
            Self::Periodic { every, active } => {
                let into = elapsed.as_nanos() % every.as_nanos().max(1);
                into < active.as_nanos()
            }
        }
    }
}

impl FaultConfig {
    /// Checks every field; the error names the first wrong one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let probability = |field: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(ConfigError::field(field, "must be a probability from 0 to 1"))
            }
        };
        if let Some(latency) = &self.latency {
            probability("latency.probability", latency.probability)?;
            if latency.min > latency.max {
                return Err(ConfigError::field("latency.min", "must not exceed latency.max"));
            }
        }
        if let Some(error) = &self.error {
            probability("error.probability", error.probability)?;
        }
        if let Some(drop) = &self.drop {
            probability("drop.probability", drop.probability)?;
        }
        match self.schedule {
            FaultSchedule::Window { from, until } if from >= until => Err(ConfigError::field(
                "schedule.window.until",
                "must be after schedule.window.from",
            )),
            FaultSchedule::Periodic { every, .. } if every.is_zero() => Err(ConfigError::field(
                "schedule.periodic.every",
                "must be greater than zero",
            )),
            FaultSchedule::Periodic { every, active } if active > every => Err(ConfigError::field(
                "schedule.periodic.active",
                "must not exceed schedule.periodic.every",
            )),
            _ => Ok(()),
        }
    }

    /// A layer injecting these faults; injected errors are
    /// [`InjectedFault`](super::InjectedFault)s.
    pub fn build(self) -> Result<FaultLayer<InjectError>, ConfigError> {
        self.validate()?;
        Ok(FaultLayer::from_config(self, InjectError))
    }
}

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::BulkheadLayer;
use crate::config::{ConfigError, check};

/// Configuration of a [`BulkheadLayer`], as plain data that can be loaded
/// from a file or the environment.
///
/// Defaults follow Resilience4j's `SemaphoreBulkhead`: 25 concurrent calls and
/// no waiting. The wait queue bound is ours (Resilience4j lets every caller
/// wait): its default of 25 lets at most one more full round of calls wait,
/// which bounds both the memory the queue holds and the latency it adds.
///
/// `max_wait` of zero means "never wait", whatever `max_queue` says: a call
/// that finds no free slot is rejected at once (Resilience4j's fail-fast
/// default). Likewise `max_queue` of zero disables waiting whatever
/// `max_wait` says. Both are valid configurations, so that either knob alone
/// can switch waiting off.
///
/// ```
/// use std::time::Duration;
/// use orch_resilience::BulkheadConfig;
///
/// let config: BulkheadConfig = serde_json::from_str(
///     r#"{ "name": "db", "max_concurrent": 8, "max_queue": 16, "max_wait": "250ms" }"#,
/// )
/// .unwrap();
/// assert_eq!(config.max_wait, Duration::from_millis(250));
/// let layer = config.build().unwrap();
/// assert_eq!(layer.handle().available(), 8);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BulkheadConfig {
    /// Name used in errors, tracing events and metric labels. Default `"bulkhead"`.
    pub name: String,
    /// Calls that may run at once. Must not be zero. Default 25
    /// (Resilience4j `maxConcurrentCalls`).
    pub max_concurrent: usize,
    /// Calls that may wait for a slot at once; a call that finds the queue
    /// full is rejected at once. Default 25.
    pub max_queue: usize,
    /// How long a queued call waits for a slot before it is rejected. Zero
    /// disables waiting. Default zero (Resilience4j `maxWaitDuration`).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            name: super::DEFAULT_NAME.to_owned(),
            max_concurrent: 25,
            max_queue: 25,
            max_wait: Duration::ZERO,
        }
    }
}

impl BulkheadConfig {
    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the number of calls that may run at once.
    pub fn max_concurrent(mut self, max_concurrent: usize) -> Self {
        self.max_concurrent = max_concurrent;
        self
    }

    /// Sets the number of calls that may wait for a slot at once.
    pub fn max_queue(mut self, max_queue: usize) -> Self {
        self.max_queue = max_queue;
        self
    }

    /// Sets how long a queued call waits for a slot.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Rejects a `bulkhead.max_concurrent` of zero (every call would be
    /// rejected) or beyond what a `tokio` semaphore can hold.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check::non_zero("bulkhead.max_concurrent", self.max_concurrent)?;
        if self.max_concurrent > Semaphore::MAX_PERMITS {
            return Err(ConfigError::field(
                "bulkhead.max_concurrent",
                "must be at most tokio's Semaphore::MAX_PERMITS",
            ));
        }
        Ok(())
    }

    /// Validates the config and builds the layer.
    pub fn build(self) -> Result<BulkheadLayer, ConfigError> {
        BulkheadLayer::new(self)
    }
}

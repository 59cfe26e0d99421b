use serde::{Deserialize, Serialize};

use super::ErrorClasses;
use crate::config::ConfigError;

/// Configuration of a [`FallbackLayer`](super::FallbackLayer), as plain data
/// that can be loaded from a file or the environment. The fallback function
/// itself is code, passed to [`FallbackLayer::from_config`](super::FallbackLayer::from_config).
///
/// ```
/// use orch_resilience::{ErrorClass, FallbackConfig};
///
/// let config: FallbackConfig =
///     serde_json::from_str(r#"{ "name": "prices", "on": ["circuit_open", "timeout"] }"#).unwrap();
/// assert!(config.on.contains(ErrorClass::Timeout));
/// assert!(!config.on.contains(ErrorClass::Inner));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FallbackConfig {
    /// Name used in tracing events and metric labels. Default `"fallback"`.
    pub name: String,
    /// The error classes the fallback answers: `"any"` or a list. Must not be
    /// empty. Default `"any"` (Polly's fallback handles every failure unless
    /// told otherwise).
    pub on: ErrorClasses,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        Self {
            name: super::DEFAULT_NAME.to_owned(),
            on: ErrorClasses::ANY,
        }
    }
}

impl FallbackConfig {
    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the classes the fallback answers.
    pub fn on(mut self, on: impl Into<ErrorClasses>) -> Self {
        self.on = on.into();
        self
    }

    /// Rejects an empty `fallback.on`: a fallback that never applies is a
    /// configuration mistake.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.on.is_empty() {
            return Err(ConfigError::field(
                "fallback.on",
                "must name at least one error class",
            ));
        }
        Ok(())
    }
}
